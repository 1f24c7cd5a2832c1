"""The suite end to end, outside Docker through docker/entrypoint.sh: rows in fresh subprocesses, two pinned
instances, a row that fails without stopping the run, and the results files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qla_sdk.bench.launcher import Instance
from qla_sdk.bench.runner import Job, MeasureSettings, run_measure

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ["name", "backend", "precision", "seq_len", "batch_size", "p50_ms", "p90_ms", "p99_ms"]
REQUIRED += ["throughput_per_s", "size_mb", "peak_rss_mb", "role", "error"]


@pytest.fixture(scope="module")
def entrypoint_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    rows = "bert-base-fp32-eager,lat-minilm-fp32-eager,bert-base-int8-ipex"
    env = {**os.environ, "QLA_RESULTS": str(results), "QLA_PYTHON": sys.executable}
    command = ["bash", str(ROOT / "docker" / "entrypoint.sh"), "--quick", "--rows", rows, "--backends", "ipex"]
    command += ["--instances", "2", "--cores", "2"] if len(os.sched_getaffinity(0)) >= 2 else []
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return results, json.loads((results / "bench.json").read_text()), done.stdout


def test_results_schema(entrypoint_run):
    results, bench, _ = entrypoint_run
    assert {"rows", "machine", "versions", "command", "date", "summary", "binding"} <= set(bench)
    assert {"cpu_model", "isa_flags", "usable_cores"} <= set(bench["machine"])
    assert "--quick" in bench["command"]
    for row in bench["rows"]:
        assert set(REQUIRED) <= set(row)
    assert {(r["name"], r["batch_size"]) for r in bench["rows"]} == {
        (name, batch) for name in ("bert-base-fp32-eager", "lat-minilm-fp32-eager", "bert-base-int8-ipex")
        for batch in (1, 4)
    }  # fmt: skip
    for name in ("bench.md", "bench_latency.png", "bench_accuracy.png"):
        assert (results / name).stat().st_size > 0


def test_rows_ran_and_were_measured(entrypoint_run):
    _, bench, _ = entrypoint_run
    ok = [r for r in bench["rows"] if r["error"] is None]
    assert {r["name"] for r in ok} == {"bert-base-fp32-eager", "lat-minilm-fp32-eager"}
    for r in ok:
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["throughput_per_s"] > 0
        assert r["size_mb"] > 0 and r["peak_rss_mb"] > 50  # a python process with torch loaded
        assert r["runs"] == 5 * len(r["instances"]) if r["batch_size"] == 1 else r["runs"] >= 2
    lat = next(r for r in ok if r["name"] == "lat-minilm-fp32-eager" and r["batch_size"] == 1)
    assert lat["length_config"] == "45,42,42,34,17,6"  # 269,...,34 at 384 scaled to the quick length 64
    assert lat["kernels"]["isa"] and lat["kernels"]["primitives"]
    baseline = next(r for r in ok if r["role"] == "baseline" and r["batch_size"] == 1)
    assert baseline["speedup_vs_baseline"] == pytest.approx(1.0)


def test_instances_are_pinned_to_their_own_cores(entrypoint_run):
    _, bench, _ = entrypoint_run
    row = next(r for r in bench["rows"] if r["error"] is None)
    cores = [tuple(i["cores"]) for i in row["instances"]]
    assert len(set(cores)) == len(cores) and all(i["threads"] == len(i["cores"]) for i in row["instances"])
    assert (bench["binding"]["numactl"] is None) == (bench["binding"]["warning"] is not None)


def test_failed_row_is_reported_and_the_run_goes_on(entrypoint_run):
    _, bench, stdout = entrypoint_run
    failed = [r for r in bench["rows"] if r["name"] == "bert-base-int8-ipex"]
    if all(r["error"] is None for r in failed):
        pytest.skip("intel-extension-for-pytorch is installed here")
    assert all("intel_extension_for_pytorch" in r["error"] and r["p50_ms"] is None for r in failed)
    assert "bert-base-int8-ipex" in stdout and "failed" in stdout


def test_crashing_child_is_a_failed_row(tmp_path):
    job = Job(
        spec={"name": "ort", "role": "peer", "backend": "onnxruntime", "precision": "int8", "model": "minilm"},
        source=str(tmp_path),
        seq_len=8,
        length_config=None,
        artifact=str(tmp_path / "missing"),
        workdir=str(tmp_path),
        settings=MeasureSettings(batch_sizes=(1,), runs=1, warmup=0).__dict__,
    )
    (outcome,) = run_measure(job, job.save(tmp_path / "job.json"), [Instance(0, (0,), 0)], None, timeout_s=120)
    assert "model.onnx" in outcome.result["error"]  # the child's own error, not a generic one


def test_every_row_process_keeps_freed_memory_unless_the_user_says(monkeypatch):
    from qla_sdk.bench.allocator import GLIBC_ENV
    from qla_sdk.bench.runner import _child_env

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    env = _child_env(threads=2, pin=False)
    assert env["MALLOC_TRIM_THRESHOLD_"] == GLIBC_ENV["MALLOC_TRIM_THRESHOLD_"]
    assert env["MALLOC_MMAP_THRESHOLD_"] == "65536"  # the user's value wins


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_child_reports_its_own_peak_memory_not_its_parents():
    # Linux carries ru_maxrss across exec: a child of a large process would inherit the parent's peak.
    script = (
        "import subprocess, sys; big = bytearray(600 * 2**20); big[::4096] = b'x' * len(big[::4096]); "
        "print(subprocess.run([sys.executable, '-c', 'from qla_sdk.bench.runner import peak_rss_mb; "
        "print(peak_rss_mb())'], capture_output=True, text=True, check=True).stdout)"
    )
    child_mb = float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    assert 10 < child_mb < 500
