"""No code path in the package (or its scripts and benchmarks) may deserialise pickles or run code from a file: a
model file must never be able to run code. The one exception, TorchScript for the IPEX backend, is allowed only in
qla_sdk/backends/ipex.py, behind ``trust_torchscript=True`` (tests/deploy/test_artifact_robust.py checks that)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("qla_sdk", "scripts", "benchmarks")
TORCHSCRIPT_LOADER = "qla_sdk/backends/ipex.py"
# torch.load( ... ) whose arguments (one level of nested parentheses allowed) say weights_only=True.
_SAFE_TORCH_LOAD = r"\((?:[^()]|\([^()]*\))*weights_only\s*=\s*True"

FORBIDDEN = {
    "pickle-family import": (
        r"^\s*(import|from)\s+(c?pickle|_pickle|dill|joblib|cloudpickle|jsonpickle|shelve|marshal)\b"
    ),
    "torch.load without weights_only=True": rf"torch\.load\b(?!{_SAFE_TORCH_LOAD})",
    "bare load imported from torch": r"from\s+torch(\.serialization)?\s+import\s+[^\n]*\bload\b",
    "weights_only=False": r"weights_only\s*=\s*False",
    "widening torch.load's allow-list": r"add_safe_globals|safe_globals\(",
    "numpy allow_pickle=True": r"allow_pickle\s*=\s*True",
    "pandas read_pickle": r"read_pickle\(",
    "torch.export.load (pickled parts)": r"torch\.export\.load\(",
    "torch.package": r"torch\.package|PackageImporter",
    "trust_remote_code=True": r"trust_remote_code\s*=\s*True",
    "eval/exec": r"(?<![\w.])(eval|exec)\(",
    "yaml.load without SafeLoader": (
        r"yaml\.load\((?![^)]*Loader\s*=\s*yaml\.SafeLoader)|yaml\.(unsafe_load|full_load)\("
    ),
    "torch.jit.load outside the IPEX backend": r"torch\.jit\.load\(",
}
ALLOWED = {"torch.jit.load outside the IPEX backend": {TORCHSCRIPT_LOADER}}


def scanned_files():
    return sorted(p for folder in SCANNED if (ROOT / folder).is_dir() for p in (ROOT / folder).rglob("*.py"))


def offenders(what: str) -> list[str]:
    pattern = re.compile(FORBIDDEN[what], re.M)
    found = []
    for path in scanned_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED.get(what, ()):
            continue
        text = path.read_text()
        found += [f"{rel}:{text[: m.start()].count(chr(10)) + 1}" for m in pattern.finditer(text)]
    return found


def test_scans_the_package():
    assert len([p for p in scanned_files() if p.is_relative_to(ROOT / "qla_sdk")]) > 10


@pytest.mark.parametrize("what", FORBIDDEN)
def test_no_unsafe_loading(what):
    assert not offenders(what), f"{what} in: {offenders(what)}"


def test_torchscript_is_loaded_in_one_place_behind_an_opt_in():
    text = (ROOT / TORCHSCRIPT_LOADER).read_text()
    load = text.index("torch.jit.load(")
    guard = text.rfind("if trust_torchscript is not True:", 0, load)
    assert text.count("torch.jit.load(") == 1 and guard != -1 and "def load(" not in text[guard:load]


@pytest.mark.parametrize(
    "what, snippet",
    [
        ("torch.load without weights_only=True", "torch.load(f)"),
        ("torch.load without weights_only=True", "torch.load(f, weights_only=False)"),
        ("torch.load without weights_only=True", "torch.load(f, weights_only=flag)"),
        ("torch.load without weights_only=True", "loader = torch.load"),
        ("torch.load without weights_only=True", "torch.load(open(f), map_location='cpu')"),
        ("bare load imported from torch", "from torch import nn, load"),
        ("pickle-family import", "import pickle"),
        ("pickle-family import", "from joblib import load"),
        ("weights_only=False", "torch.load(f, weights_only = False)"),
        ("numpy allow_pickle=True", "np.load(f, allow_pickle=True)"),
        ("torch.export.load (pickled parts)", "torch.export.load('m.pt2')"),
        ("eval/exec", "eval(code)"),
        ("yaml.load without SafeLoader", "yaml.load(text)"),
        ("yaml.load without SafeLoader", "yaml.unsafe_load(text)"),
        ("torch.jit.load outside the IPEX backend", "torch.jit.load(path)"),
        ("trust_remote_code=True", "AutoModel.from_pretrained(name, trust_remote_code=True)"),
    ],
)
def test_patterns_catch_offenders(what, snippet):
    assert re.search(FORBIDDEN[what], snippet, re.M)


@pytest.mark.parametrize(
    "what, snippet",
    [
        ("torch.load without weights_only=True", "torch.load(f, map_location='cpu', weights_only=True)"),
        ("torch.load without weights_only=True", "torch.load(open(f, 'rb'), weights_only=True)"),
        ("torch.load without weights_only=True", "torch.load(\n    folder / 'x.pt',\n    weights_only=True,\n)"),
        ("eval/exec", "model.eval()"),
        ("yaml.load without SafeLoader", "yaml.safe_load(text)"),
        ("bare load imported from torch", "from torch import nn"),
    ],
)
def test_patterns_allow_safe_calls(what, snippet):
    assert not re.search(FORBIDDEN[what], snippet, re.M)
