"""The entry point of the scripts in benchmarks/: bad input is one line and exit 2, as in `qla` and `qla-bench`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from qla_sdk.errors import QlaError


def run_script(main: Callable[[], object]) -> int:
    """Run a benchmark script's ``main``. The SDK's errors, bad values and missing or unreadable files name the
    problem in one line (exit 2); any other exception keeps its traceback, since it is a bug to report."""
    try:
        result = main()
    except (QlaError, ValueError, OSError) as exc:
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{Path(sys.argv[0]).name}: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0  # some scripts return their figures
