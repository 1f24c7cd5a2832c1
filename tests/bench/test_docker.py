"""The Docker images install the way `make` does (no Docker engine here: the files are checked as text)."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==", 1) for line in lines if "==" in line)


def run_steps(dockerfile: str) -> list[str]:
    text = (ROOT / "docker" / dockerfile).read_text().replace("\\\n", " ")
    return [line for line in text.splitlines() if line.startswith("RUN ")]


def test_dockerfile_uses_the_makefile_install_step():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\tbash scripts/install\.sh ", makefile, re.M)
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert "requirements/constraints.txt" in install  # the one pinned list, read by make and Docker alike
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert text.splitlines()[next(i for i, line in enumerate(text.splitlines()) if line.startswith("FROM"))] == (
        "FROM python:3.11-slim"
    )
    assert any("bash scripts/install.sh" in step for step in run_steps("Dockerfile"))
    assert not any("pip install" in step for step in run_steps("Dockerfile"))  # nothing installed beside it
    assert "download.pytorch.org/whl/cpu" in text and "numactl" in text
    assert 'ENTRYPOINT ["bash", "docker/entrypoint.sh"]' in text


def test_ipex_image_pins_differ_only_in_the_torch_stack():
    main, ipex = pins(ROOT / "requirements" / "constraints.txt"), pins(ROOT / "requirements" / "constraints-ipex.txt")
    changed = {name for name in main.keys() | ipex.keys() if main.get(name) != ipex.get(name)}
    assert changed == {"torch", "intel-extension-for-pytorch", "torchao"}
    assert "torchao" not in ipex  # torchao 0.18 needs torch >= 2.11: importing transformers would fail
    assert ipex["torch"].startswith("2.8") and ipex["intel-extension-for-pytorch"].startswith("2.8")
    steps = " ".join(run_steps("Dockerfile.ipex"))
    assert "-r requirements/constraints-ipex.txt" in steps and "--no-deps -e ." in steps


def test_entrypoint_is_executable_and_writes_to_the_mounted_folder():
    entrypoint = ROOT / "docker" / "entrypoint.sh"
    assert os.access(entrypoint, os.X_OK)
    assert '--out "$results/bench.json"' in entrypoint.read_text()
