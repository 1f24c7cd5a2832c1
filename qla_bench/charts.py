"""PNG charts of a benchmark record: p50 latency bars at batch 1 (one panel per sequence length, log scale), and
accuracy against latency for the rows with an accuracy figure."""

from __future__ import annotations

from pathlib import Path

from qla_sdk.io import write_bytes_atomic

ROLE_COLOURS = {"baseline": "#7f7f7f", "reference": "#9ecae1", "peer": "#fdae6b", "ours": "#2171b5"}


def _figure_bytes(figure) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def latency_chart(record: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in record["rows"] if r["batch_size"] == 1]
    seq_lens = sorted({r["seq_len"] for r in rows}, reverse=True)
    names = list(dict.fromkeys(r["name"] for r in rows))
    figure, axes = plt.subplots(1, max(1, len(seq_lens)), figsize=(6 * max(1, len(seq_lens)), 0.4 * len(names) + 1.5))
    axes = axes if hasattr(axes, "__len__") else [axes]
    for ax, seq_len in zip(axes, seq_lens, strict=False):
        by_name = {r["name"]: r for r in rows if r["seq_len"] == seq_len}
        for y, name in enumerate(names):
            r = by_name.get(name)
            if r is None or r.get("error") or r.get("p50_ms") is None:
                ax.text(1e-3, y, " failed" if r is not None else " -", va="center", transform=ax.get_yaxis_transform())
                continue
            ax.barh(y, r["p50_ms"], color=ROLE_COLOURS.get(r["role"], "#000000"))
            ax.errorbar(r["p90_ms"], y, xerr=[[r["p90_ms"] - r["p50_ms"]], [0]], fmt="none", ecolor="#333333")
            ax.text(r["p50_ms"], y, f" {r['p50_ms']:.1f}", va="center", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency, ms (log; whisker to p90)")
        ax.set_title(f"batch 1, seq {seq_len}")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ROLE_COLOURS.values()]
    axes[0].legend(handles, list(ROLE_COLOURS), loc="lower right", fontsize=7, framealpha=0.9)
    return figure


def accuracy_chart(record: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in record["rows"] if r["batch_size"] == 1 and not r.get("error") and r.get("p50_ms")]
    seq_len = max((r["seq_len"] for r in rows), default=None)
    points = [r for r in rows if r["seq_len"] == seq_len and r.get("accuracy") is not None]
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for r in points:
        ax.scatter(r["p50_ms"], r["accuracy"], color=ROLE_COLOURS.get(r["role"], "#000000"), s=40)
        ax.annotate(r["name"], (r["p50_ms"], r["accuracy"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    if points:
        ax.set_xscale("log")
        metrics = sorted({r["accuracy_metric"] for r in points})
        ax.set_ylabel(", ".join(metrics))
    else:
        ax.text(0.5, 0.5, "no accuracy figures: pass --accuracy-from results.json", ha="center", transform=ax.transAxes)
    ax.set_xlabel(f"p50 latency at batch 1, seq {seq_len}, ms")
    ax.set_title("accuracy vs latency")
    return figure


def write_charts(record: dict, folder: str | Path, stem: str = "bench") -> list[Path]:
    """Write ``<stem>_latency.png`` and ``<stem>_accuracy.png`` into ``folder``; return their paths."""
    import matplotlib.pyplot as plt

    folder = Path(folder)
    written = []
    for suffix, make in (("latency", latency_chart), ("accuracy", accuracy_chart)):
        figure = make(record)
        path = folder / f"{stem}_{suffix}.png"
        write_bytes_atomic(path, _figure_bytes(figure))
        plt.close(figure)
        written.append(path)
    return written
