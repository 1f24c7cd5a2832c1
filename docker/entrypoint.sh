#!/usr/bin/env bash
# Container entry point: run `qla-bench` and write bench.json, bench.md and the charts into $QLA_RESULTS
# (mount a host folder there). Arguments are passed to `qla-bench`, e.g. --quick, --cores 8 --instances 2.
# Outside Docker: QLA_RESULTS=out QLA_PYTHON=.venv/bin/python bash docker/entrypoint.sh --quick
set -euo pipefail
results=${QLA_RESULTS:-/results}
python=${QLA_PYTHON:-python}
mkdir -p "$results"
if [ ! -w "$results" ]; then
    echo "entrypoint: cannot write to $results; mount a writable folder there (-v \"\$PWD/results:$results\")" >&2
    exit 2
fi
if ! command -v numactl >/dev/null 2>&1; then
    echo "entrypoint: numactl not found; instances are pinned without memory binding" >&2
fi
# Build the eager runtime's native kernels for this CPU before any row is timed (about 30 s; cached for the
# container's lifetime, or across runs with -v "$PWD/.torch_extensions:/root/.cache/torch_extensions").
"$python" -c "from qla_sdk.runtime import native_kernels; native_kernels()" \
    || echo "entrypoint: native kernels not built; the eager rows run on ATen ops" >&2
exec "$python" -m qla_bench.cli --out "$results/bench.json" "$@"
