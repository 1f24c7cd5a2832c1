"""What setup.cfg promises to ship exists."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_data_pattern_matches_a_file():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    for package, patterns in config["options.package_data"].items():
        base = ROOT / package.replace(".", "/")
        for pattern in (p.strip() for p in patterns.split(",") if p.strip()):
            assert list(base.glob(pattern)), f"setup.cfg ships {package}/{pattern}, which matches no file"
