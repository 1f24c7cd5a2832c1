"""The suite's bookkeeping, with the row processes stubbed (nothing is timed here): every row and batch gets a
record with the documented fields, pooled percentiles and summed throughput are computed from the children's
times, a failed build or child becomes that row's ``error`` and the run goes on, speed-ups are against the
baseline. Then the real child process paths: a crashing child, the environment, the memory figure."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import qla_bench.suite as suite
from qla_bench.launcher import Instance
from qla_bench.runner import ChildOutcome, Job, MeasureSettings, run_measure
from qla_bench.suite import quick_settings, run_suite
from qla_sdk.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ["name", "backend", "precision", "seq_len", "batch_size", "p50_ms", "p90_ms", "p99_ms"]
REQUIRED += ["throughput_per_s", "size_mb", "peak_rss_mb", "role", "error"]
ROWS = ("bert-base-fp32-eager", "lat-minilm-fp32-eager", "minilm-int8-openvino")
# the stub children: each row's batch-1 times (ms) per instance, so the pooled percentiles are known
TIMES = {"bert-base-fp32-eager": [40.0] * 4 + [80.0], "lat-minilm-fp32-eager": [10.0, 11.0, 12.0, 13.0, 90.0]}


def _stub(tmp_path, monkeypatch, rounds=1, slow_rounds=()):
    """Run the suite on stub children; a round in ``slow_rounds`` doubles every time measured in it."""
    built, measured = [], []

    def fake_build(job, job_path, prefix, timeout_s):
        built.append(job.spec["name"])
        if job.spec["name"] == "minilm-int8-openvino":
            return ChildOutcome({"error": "RuntimeError: calibration blew up"}, "log")
        return ChildOutcome({"artifact": str(tmp_path / job.spec["name"]), "build_s": 1.5}, "log")

    def fake_measure(job, job_path, plan, numactl, timeout_s):
        measured.append((job.spec["name"], job.seq_len, job.settings["kernels"]))
        slow = sum(1 for n, *_ in measured if n == job.spec["name"]) - 1 in slow_rounds
        times = [t * (2 if slow else 1) for t in TIMES[job.spec["name"]]]
        batches = {
            str(b): {"times_ms": times, "throughput_per_s": 100.0 / b, "p50_ms": sorted(times)[2]}
            for b in job.settings["batch_sizes"]
        }
        result = {
            "batches": batches,
            "load_s": 0.1,
            "first_call_s": {k: 0.2 for k in batches},
            "size_mb": 12.5,
            "peak_rss_mb": 300.0 + len(measured),
            "kernels": {"isa": "avx512_vnni"},
        }
        return [ChildOutcome({**result, "cores": list(i.cores), "threads": len(i.cores)}, "") for i in plan]

    monkeypatch.setattr(suite, "run_build", fake_build)
    monkeypatch.setattr(suite, "run_measure", fake_measure)
    settings = quick_settings(
        rows=ROWS, out=tmp_path / "bench.json", work_dir=tmp_path / "work", kernels=rounds > 1, rounds=rounds
    )
    record = run_suite(settings, command=["qla-bench", "--quick"], log=lambda line: None)
    return record, settings, built, [m[:2] for m in measured] if rounds == 1 else measured, tmp_path


@pytest.fixture
def stubbed_run(tmp_path, monkeypatch):
    return _stub(tmp_path, monkeypatch)


def test_every_row_and_batch_has_a_record_with_the_documented_fields(stubbed_run):
    record, settings, _, _, folder = stubbed_run
    assert {"rows", "machine", "versions", "command", "date", "summary", "binding", "notes"} <= set(record)
    assert {"cpu_model", "isa_flags", "usable_cores"} <= set(record["machine"])
    expected = {(n, s, b) for n in ROWS for s in settings.seq_lens for b in settings.batch_sizes}
    assert {(r["name"], r["seq_len"], r["batch_size"]) for r in record["rows"]} == expected
    for row in record["rows"]:
        assert set(REQUIRED) <= set(row)
    assert json.loads((folder / "bench.json").read_text())["rows"] == record["rows"]
    for name in ("bench.md", "bench_latency.png", "bench_accuracy.png"):
        assert (folder / name).stat().st_size > 0


def test_instances_are_pooled_and_speedups_are_against_the_baseline(stubbed_run):
    record, settings, _, _, _ = stubbed_run
    instances = len(record["binding"]["instances"])
    rows = {(r["name"], r["seq_len"]): r for r in record["rows"] if r["batch_size"] == 1}
    seq = settings.seq_lens[0]
    lat, base = rows[("lat-minilm-fp32-eager", seq)], rows[("bert-base-fp32-eager", seq)]
    assert lat["runs"] == 5 * instances and lat["p50_ms"] == 12.0 and lat["p99_ms"] == 90.0
    assert lat["throughput_per_s"] == pytest.approx(100.0 * instances)
    assert base["p50_ms"] == 40.0 and base["speedup_vs_baseline"] == pytest.approx(1.0)
    assert lat["speedup_vs_baseline"] == pytest.approx(40.0 / 12.0)
    assert lat["length_config"] == "45,42,42,34,17,6"  # 269,...,34 at 384 scaled to the quick length 64
    assert lat["build_s"] == 1.5 and lat["size_mb"] == 12.5 and lat["error"] is None


def test_rows_are_measured_in_interleaved_rounds_and_pooled(tmp_path, monkeypatch):
    record, settings, built, measured, _ = _stub(tmp_path, monkeypatch, rounds=2, slow_rounds=(1,))
    seq = settings.seq_lens[0]
    timed = [(n, k) for n, s, k in measured if s == seq]
    # built once, then round 1 of every row before round 2 of any; kernels recorded in the first round only
    first, second = [(n, True) for n in ROWS[:2]], [(n, False) for n in ROWS[:2]]
    assert timed == [*first, *second]
    assert built.count("lat-minilm-fp32-eager") == len(settings.seq_lens)  # built once per length, not per round
    rows = {r["name"]: r for r in record["rows"] if r["seq_len"] == seq and r["batch_size"] == 1}
    lat = rows["lat-minilm-fp32-eager"]
    instances = len(record["binding"]["instances"])
    assert lat["runs"] == 10 * instances  # both rounds' runs pooled
    assert lat["round_p50_ms"] == [12.0, 24.0]  # the second round ran slow for every row alike
    assert rows["bert-base-fp32-eager"]["round_p50_ms"] == [40.0, 80.0]
    assert lat["speedup_vs_baseline"] == pytest.approx(rows["bert-base-fp32-eager"]["p50_ms"] / lat["p50_ms"])
    assert lat["kernels"] == {"isa": "avx512_vnni"}


@pytest.mark.parametrize("rounds", [0, 6])
def test_rounds_must_fit_the_runs(rounds):
    with pytest.raises(ConfigError, match=f"--rounds {rounds}"):
        quick_settings(rounds=rounds)


def test_a_failed_build_is_that_rows_error_and_the_run_goes_on(stubbed_run):
    record, settings, built, measured, _ = stubbed_run
    failed = [r for r in record["rows"] if r["name"] == "minilm-int8-openvino"]
    assert failed and all("calibration blew up" in r["error"] and r["p50_ms"] is None for r in failed)
    assert built.count("minilm-int8-openvino") == len(settings.seq_lens)  # tried at each length (its own graph)
    assert ("minilm-int8-openvino", settings.seq_lens[0]) not in measured  # nothing measured for it
    assert {n for n, _ in measured} == {"bert-base-fp32-eager", "lat-minilm-fp32-eager"}
    groups = record["summary"]["groups"]
    assert all("minilm-int8-openvino" in g["failed"] for g in groups)


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
    from qla_bench.allocator import GLIBC_ENV
    from qla_bench.runner import _child_env

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
        "print(subprocess.run([sys.executable, '-c', 'from qla_bench.runner import peak_rss_mb; "
        "print(peak_rss_mb())'], capture_output=True, text=True, check=True).stdout)"
    )
    child_mb = float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    assert 10 < child_mb < 500
