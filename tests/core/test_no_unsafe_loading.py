"""No code path in the package may deserialise pickles: a model file must never be able to run code."""

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "qla_sdk"
FORBIDDEN = [
    (re.compile(r"^\s*(import|from)\s+(c?pickle|dill|joblib|cloudpickle)\b", re.M), "pickle-family import"),
    (re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)[^)]*\)"), "torch.load without weights_only=True"),
    (re.compile(r"allow_pickle\s*=\s*True"), "numpy allow_pickle=True"),
    (re.compile(r"trust_remote_code\s*=\s*True"), "trust_remote_code=True"),
    (re.compile(r"(?<![\w.])(eval|exec)\("), "eval/exec"),
    (re.compile(r"yaml\.load\((?![^)]*Loader\s*=\s*yaml\.SafeLoader)"), "yaml.load without SafeLoader"),
]


def package_files():
    return sorted(PACKAGE.rglob("*.py"))


def test_package_has_files():
    assert len(package_files()) > 10


@pytest.mark.parametrize("pattern, what", FORBIDDEN, ids=[w for _, w in FORBIDDEN])
def test_no_unsafe_loading(pattern, what):
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{text[: m.start()].count(chr(10)) + 1}"
        for path in package_files()
        for text in [path.read_text()]
        for m in pattern.finditer(text)
    ]
    assert not offenders, f"{what} in: {offenders}"


@pytest.mark.parametrize(
    "snippet, index",
    [("torch.load(f)", 1), ("torch.load(f, weights_only=False)", 1), ("import pickle", 0), ("eval(code)", 4)],
)
def test_patterns_catch_offenders(snippet, index):
    assert FORBIDDEN[index][0].search(snippet)


def test_patterns_allow_safe_calls():
    assert not FORBIDDEN[1][0].search("torch.load(f, map_location='cpu', weights_only=True)")
    assert not FORBIDDEN[4][0].search("model.eval()")
