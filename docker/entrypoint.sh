#!/usr/bin/env bash
# Container entry point: run `qla bench` and write bench.json, bench.md and the charts into $QLA_RESULTS
# (mount a host folder there). Arguments are passed to `qla bench`, e.g. --quick, --cores 8 --instances 2.
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
exec "$python" -m qla_sdk.cli bench --out "$results/bench.json" "$@"
