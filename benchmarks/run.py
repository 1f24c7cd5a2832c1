"""The benchmark suite, the same as `qla-bench` (see `python benchmarks/run.py --help`).

    python benchmarks/run.py                   # every row at seq 384 and 128, batch 1 and 32
    python benchmarks/run.py --quick           # tiny models, a few runs: a smoke run
    python benchmarks/run.py --cores 4 --instances 2 --backends openvino

Writes benchmarks/results/bench.json (every figure), bench.md (the table) and the PNG charts beside them.
"""

from __future__ import annotations

import argparse
import sys

from qla_bench.cli import add_arguments, run
from qla_sdk.errors import QlaError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (QlaError, ValueError) as exc:
        print(f"benchmarks/run.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
