"""The benchmark scripts' entry point: bad input is one line and exit 2; a bug keeps its traceback."""

import re
from pathlib import Path

import pytest

from qla_bench.script import run_script
from qla_sdk.errors import ConfigError

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def fails_with(exc: BaseException):
    def main():
        raise exc

    return main


@pytest.mark.parametrize(
    "exc, code, message",
    [
        (ConfigError("length config (10, 20) grows at layer 1"), 2, "error: length config (10, 20) grows at layer 1"),
        (ValueError("--rounds 0: give 1 or more"), 2, "error: --rounds 0"),
        (FileNotFoundError(2, "No such file or directory", "/no/model"), 2, "No such file or directory: '/no/model'"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_bad_input_is_one_line(capsys, exc, code, message):
    assert run_script(fails_with(exc)) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        run_script(fails_with(ZeroDivisionError("a bug")))


@pytest.mark.parametrize("returned, code", [(None, 0), (3, 3), ({"p50_ms": 1.0}, 0)])
def test_exit_code_follows_main(returned, code):
    assert run_script(lambda: returned) == code


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "run.py"))
def test_every_script_enters_through_run_script(script):
    """run.py is ``qla-bench``, whose own main reports errors the same way."""
    text = (BENCHMARKS / script).read_text()
    assert re.search(r'if __name__ == "__main__":\n    sys\.exit\(run_script\(main\)\)\n$', text), script
