"""Speedups, the markdown table, charts and the accuracy input, on hand-made records."""

import json

import pytest

from qla_bench.charts import write_charts
from qla_bench.suite import load_accuracy
from qla_bench.summary import bench_markdown, summarise
from qla_sdk.errors import ConfigError
from qla_sdk.timing import LatencyStats, measure_times


def record(name, role, p50, batch=1, seq_len=384, error=None, accuracy=None):
    return {
        "name": name, "role": role, "backend": "b", "precision": "int8", "weights": "random", "length_config": None,
        "seq_len": seq_len, "batch_size": batch, "p50_ms": None if error else p50, "p90_ms": None if error else p50,
        "p99_ms": None if error else p50, "throughput_per_s": None if error else batch * 1000 / p50,
        "size_mb": 10.0, "peak_rss_mb": 500.0, "accuracy": accuracy, "accuracy_metric": "f1" if accuracy else None,
        "error": error,
    }  # fmt: skip


def figures(records):
    return {"rows": records, "summary": summarise(records), "notes": ["a note"], "binding": {"warning": "no numactl"}}


def test_speedups_against_baseline_and_fastest_peer():
    rows = [
        record("base", "baseline", 270.0),
        record("peer-a", "peer", 9.0),
        record("peer-b", "peer", 12.0),
        record("ours", "ours", 4.5),
        record("broken", "peer", 1.0, error="RuntimeError: boom"),
        record("base", "baseline", 27000.0, batch=32),
        record("ours", "ours", 300.0, batch=32),
    ]
    summary = summarise(rows)
    ours = rows[3]
    assert ours["speedup_vs_baseline"] == pytest.approx(60.0)
    assert ours["speedup_vs_best_peer"] == pytest.approx(2.0)  # a failed peer is never the best peer
    assert rows[4]["speedup_vs_baseline"] is None
    assert rows[6]["speedup_vs_baseline"] == pytest.approx(90.0)  # batch 32: throughput ratio
    first = summary["groups"][0]
    assert (first["best_peer"], first["best_ours"], first["failed"]) == ("peer-a", "ours", ["broken"])


def test_markdown_marks_failures_and_headline():
    text = bench_markdown(figures([record("base", "baseline", 270.0), record("x", "peer", 1.0, error="E: bad|pipe")]))
    assert "FAILED: E: bad/pipe" in text and "### seq 384, batch 1" in text and "warning: no numactl" in text
    assert text.startswith("AMX ran: unknown")


def test_charts_are_pngs(tmp_path):
    rows = [record("base", "baseline", 270.0, accuracy=88.5), record("ours", "ours", 4.5, accuracy=87.9)]
    rows += [record("x", "peer", 1.0, error="boom"), record("ours", "ours", 2.0, seq_len=128)]
    paths = write_charts(figures(rows), tmp_path, "bench")
    assert [p.name for p in paths] == ["bench_latency.png", "bench_accuracy.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


@pytest.mark.parametrize(
    "content",
    [
        {"rows": [{"name": "quala", "f1": 88.2, "exact_match": 80.1}]},
        {"quala": 88.2},
        {"quala": {"f1": 88.2}},
    ],
)
def test_load_accuracy_formats(tmp_path, content):
    path = tmp_path / "acc.json"
    path.write_text(json.dumps(content))
    metric, value = load_accuracy(path)["quala"]
    assert value == 88.2 and metric in ("f1", "metric")


def test_load_accuracy_rejects_non_json(tmp_path):
    path = tmp_path / "acc.json"
    path.write_text("not json")
    with pytest.raises(ConfigError, match="not JSON"):
        load_accuracy(path)


def test_measure_times_stops_at_the_time_cap():
    times = measure_times(lambda: sum(range(20000)), runs=1000, warmup=0, max_seconds=0.0, min_runs=3)
    assert len(times) == 3
    stats = LatencyStats.from_times([3.0, 1.0, 2.0])
    assert (stats.p50_ms, stats.p99_ms, stats.runs) == (2.0, 3.0, 3)
