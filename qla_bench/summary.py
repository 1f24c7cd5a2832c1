"""Speedups and the markdown table of a benchmark run.

At batch 1 a speedup is a ratio of p50 latencies; at larger batches a ratio of throughputs. The baseline is the
``baseline`` row (BERT-base FP32 eager) at the same sequence length and batch size; the best peer is the fastest
``peer`` row there.
"""

from __future__ import annotations

from qla_bench.kernels import amx_line
from qla_sdk.io import markdown_table


def _ok(record: dict) -> bool:
    return record.get("error") is None and record.get("p50_ms") is not None


def _speed(record: dict) -> float:
    """Higher is faster: 1/p50 at batch 1, throughput otherwise."""
    return 1.0 / record["p50_ms"] if record["batch_size"] == 1 else record["throughput_per_s"]


def summarise(records: list[dict]) -> dict:
    """Fill ``speedup_vs_baseline`` / ``speedup_vs_best_peer`` in every record; return the headline figures."""
    groups: dict[tuple[int, int], list[dict]] = {}
    for record in records:
        groups.setdefault((record["seq_len"], record["batch_size"]), []).append(record)
    summary = {"groups": []}
    for (seq_len, batch), group in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        baseline = next((r for r in group if r["role"] == "baseline" and _ok(r)), None)
        peers = [r for r in group if r["role"] == "peer" and _ok(r)]
        best_peer = max(peers, key=_speed, default=None)
        ours = [r for r in group if r["role"] == "ours" and _ok(r)]
        best_ours = max(ours, key=_speed, default=None)
        for record in group:
            record["speedup_vs_baseline"] = _speed(record) / _speed(baseline) if baseline and _ok(record) else None
            record["speedup_vs_best_peer"] = _speed(record) / _speed(best_peer) if best_peer and _ok(record) else None
        summary["groups"].append(
            {
                "seq_len": seq_len,
                "batch_size": batch,
                "baseline": baseline["name"] if baseline else None,
                "best_peer": best_peer["name"] if best_peer else None,
                "best_ours": best_ours["name"] if best_ours else None,
                "best_ours_speedup_vs_baseline": best_ours["speedup_vs_baseline"] if best_ours else None,
                "best_ours_speedup_vs_best_peer": best_ours["speedup_vs_best_peer"] if best_ours else None,
                "failed": [r["name"] for r in group if r.get("error")],
            }
        )
    return summary


def _fmt(value, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def bench_markdown(figures: dict) -> str:
    records = figures["rows"]
    sections = []
    for group in figures["summary"]["groups"]:
        seq_len, batch = group["seq_len"], group["batch_size"]
        rows = [r for r in records if r["seq_len"] == seq_len and r["batch_size"] == batch]
        table = []
        for r in rows:
            accuracy = f"{r['accuracy']:.2f} ({r['accuracy_metric']})" if r.get("accuracy") is not None else "-"
            if r.get("error"):
                first_line = r["error"].splitlines()[0][:120].replace("|", "/")
                table.append([r["name"], r["role"], r["backend"], r["precision"], f"FAILED: {first_line}"] + [""] * 9)
                continue
            table.append(
                [
                    r["name"],
                    r["role"],
                    r["backend"],
                    r["precision"],
                    r["length_config"] or "full",
                    _fmt(r["p50_ms"]),
                    _fmt(r["p90_ms"]),
                    _fmt(r["p99_ms"]),
                    " / ".join(_fmt(v) for v in r.get("round_p50_ms") or []) or "-",
                    _fmt(r["throughput_per_s"], 1),
                    _fmt(r["speedup_vs_baseline"], 1, "x"),
                    _fmt(r["speedup_vs_best_peer"], 2, "x"),
                    f"{_fmt(r['size_mb'], 1)} / {_fmt(r['peak_rss_mb'], 0)}",
                    f"{accuracy}; {r['weights']}",
                ]
            )
        headers = ["row", "role", "backend", "precision", "length config", "p50 ms", "p90 ms", "p99 ms", "p50 by round"]
        headers += ["samples/s", "vs baseline", "vs best peer", "size / peak RSS MB", "accuracy; weights"]
        title = f"### seq {seq_len}, batch {batch}"
        best = ""
        if group["best_ours"]:
            best = (
                f"\n\nBest of ours: **{group['best_ours']}**, "
                f"{_fmt(group['best_ours_speedup_vs_baseline'], 1, 'x')} vs {group['baseline'] or 'no baseline'}, "
                f"{_fmt(group['best_ours_speedup_vs_best_peer'], 2, 'x')} vs {group['best_peer'] or 'no peer'}."
            )
        sections.append(f"{title}\n\n{markdown_table(headers, table)}{best}")
    binding = figures.get("binding", {})
    notes = [f"- {note}" for note in figures.get("notes", [])]
    if binding.get("warning"):
        notes.append(f"- warning: {binding['warning']}")
    notes.append(f"- instances (cores, NUMA node): {binding.get('instances')}")
    return amx_line(records) + "\n\n" + "\n\n".join(sections) + "\n\n" + "\n".join(notes)
