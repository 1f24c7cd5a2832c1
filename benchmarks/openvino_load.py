"""What loading an ``openvino`` artifact costs, with and without its dynamic-batch copies: ``qla_sdk.load(path)``
against ``qla_sdk.load(path, max_batch_size=1)`` (a service that runs one row at a time).

    python benchmarks/openvino_load.py --artifact DIR [--rounds 3]

Each load runs in a fresh process, the two settings alternating round by round; each records the seconds
``load`` took, the compiled copies, and the process's resident memory (VmRSS) after ``load`` and after a warm-up
call per graph length (``Runner.warmup``). Writes benchmarks/results/openvino_load.json + .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from qla_bench.script import run_script

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SETTINGS = {"max_batch_size=32 (default)": 32, "max_batch_size=1": 1}


def _rss_mb() -> float:
    from openvino_memory import memory_mb  # benchmarks/ is the script's folder

    return memory_mb()["rss_mb"]


def measure_one(artifact: str, max_batch_size: int) -> dict:
    """One load in this process."""
    # Imports paid before the clock starts, as a server has them.
    import openvino  # noqa: F401

    import qla_sdk
    import qla_sdk.backends.openvino

    before = _rss_mb()
    start = time.perf_counter()
    predictor = qla_sdk.load(artifact, max_batch_size=max_batch_size)
    seconds = time.perf_counter() - start
    loaded = _rss_mb()
    predictor.runner.warmup()
    return {
        "load_s": round(seconds, 2),
        "copies": len(predictor.runner._compiled),
        "rss_mb_before": before,
        "rss_mb_loaded": loaded,
        "rss_mb_warm": _rss_mb(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", required=True, help="an artifact exported with --backend openvino")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "openvino_load.json"))
    parser.add_argument("--one", nargs=2, metavar=("MAX_BATCH_SIZE", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        Path(args.one[1]).write_text(json.dumps(measure_one(args.artifact, int(args.one[0]))))
        return 0
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: must be >= 1")

    import tempfile

    from qla_bench.report import markdown_table, write_results
    from qla_sdk.deploy.artifact import read_manifest

    manifest = read_manifest(args.artifact)
    if manifest.backend != "openvino":
        parser.error(f"{args.artifact} is a {manifest.backend} artifact; give one exported with --backend openvino")
    runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            for name, max_batch_size in SETTINGS.items():
                result = Path(tmp) / f"{round_index}-{max_batch_size}.json"
                command = [sys.executable, __file__, "--artifact", args.artifact, "--one", str(max_batch_size)]
                subprocess.run([*command, str(result)], check=True)
                runs[name].append(json.loads(result.read_text()))
    rows = {
        name: {
            "copies": found[0]["copies"],
            "load_s_median": round(statistics.median(r["load_s"] for r in found), 2),
            "rss_mb_loaded_median": round(statistics.median(r["rss_mb_loaded"] for r in found), 1),
            "rss_mb_warm_median": round(statistics.median(r["rss_mb_warm"] for r in found), 1),
            "runs": found,
        }
        for name, found in runs.items()
    }
    figures = {
        "artifact": args.artifact,
        "seq_lens": list(manifest.data["model"]["seq_lens"]),
        "rounds": args.rounds,
        "settings": rows,
    }
    headers = ["load", "compiled copies", "load s (median)", "RSS MB after load", "RSS MB after warm-up"]
    table = [
        [name, r["copies"], r["load_s_median"], r["rss_mb_loaded_median"], r["rss_mb_warm_median"]]
        for name, r in rows.items()
    ]
    write_results(args.out, figures, markdown_table(headers, table))
    print(markdown_table(headers, table))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
