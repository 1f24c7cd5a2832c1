#!/usr/bin/env bash
# The one install step, used by the Makefile and by docker/Dockerfile.
# torch is pinned through the constraints file: a resolver free to pick a newer torch pulls a CUDA build.
set -euo pipefail
py=${1:-python3}
extras=${QLA_EXTRAS:-all}
here=$(cd "$(dirname "$0")/.." && pwd)
"$py" -m pip install -q --disable-pip-version-check --upgrade "pip>=24" 2>&1 | grep -v "is ignored" || true
"$py" -m pip install -q --disable-pip-version-check -c "$here/requirements/constraints.txt" \
    -e "$here[$extras]" 2>&1 | grep -v "is ignored: it is neither" || true
# Fail loudly if anything slipped past the constraints.
"$py" - <<'PY'
import importlib.metadata as md
import sys
names = {d.metadata["Name"].lower() for d in md.distributions()}
bad = sorted(n for n in names if n.startswith("nvidia-") or n in {"torchvision", "torchaudio", "triton"})
torch_version = md.version("torch")
if bad or not torch_version.startswith("2.13.0"):
    sys.exit(f"install check failed: torch {torch_version}, unexpected packages {bad}. "
             "Install with -c requirements/constraints.txt so pip keeps the CPU torch 2.13.0.")
print(f"install ok: torch {torch_version}, no CUDA packages")
PY
