"""A PNG of metric against MACs (and against latency where measured): every scored gene, the front highlighted,
the constant-rate genes and the full-length model marked, the chosen gene and the budget drawn."""

from __future__ import annotations

from pathlib import Path

from qla_sdk.io import write_bytes_atomic

Row = dict  # {"gene", "macs", "latency_ms" (or None), "metric"}


def plot_search(
    path: str | Path,
    scored: list[Row],
    front: list[Row],
    constant_rate: list[Row],
    full: Row,
    best: Row | None = None,
    metric_name: str = "metric",
    budget: dict | None = None,
    title: str | None = None,
    front_axis: str = "macs",
    late_drop: list[Row] | None = None,
) -> Path:
    """Write the plot; ``budget`` may hold ``max_macs``/``min_macs``/``max_latency_ms``/``min_latency_ms``.

    ``front_axis`` (``"macs"`` or ``"latency_ms"``) is the cost the front was found on; on the other panel the
    same genes are drawn at their other cost, where they need not form a front.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_keys = [("macs", "GMACs per sequence", 1e-9)]
    if any(r.get("latency_ms") is not None for r in front):
        axes_keys.append(("latency_ms", "latency (ms per batch)", 1.0))
    fig, axes = plt.subplots(1, len(axes_keys), figsize=(6.4 * len(axes_keys), 4.8), squeeze=False)
    budget = budget or {}
    for ax, (key, label, scale) in zip(axes[0], axes_keys, strict=True):

        def xy(rows: list[Row], key=key, scale=scale) -> tuple[list[float], list[float]]:
            kept = [r for r in rows if r.get(key) is not None]
            return [r[key] * scale for r in kept], [r["metric"] for r in kept]

        ax.scatter(*xy(scored), s=8, color="0.75", label="scored genes", zorder=1)
        ax.scatter(*xy(constant_rate), s=22, marker="s", color="tab:orange", label="constant-rate genes", zorder=3)
        if late_drop:
            ax.scatter(*xy(late_drop), s=22, marker="^", color="tab:green", label="late-drop genes", zorder=3)
        fx, fy = xy(front)
        if key == front_axis:
            ax.step(fx, fy, where="post", color="tab:blue", linewidth=1.2, zorder=2)
        name = "Pareto front" if key == front_axis else f"Pareto front in {'MACs' if front_axis == 'macs' else 'ms'}"
        ax.scatter(fx, fy, s=22, color="tab:blue", label=name, zorder=4)
        ax.scatter(*xy([full]), s=90, marker="*", color="black", label="full length", zorder=5)
        if best is not None:
            ax.scatter(*xy([best]), s=110, facecolors="none", edgecolors="tab:red", linewidths=2, zorder=6)
            bx, by = xy([best])
            if bx:
                ax.annotate("chosen", (bx[0], by[0]), textcoords="offset points", xytext=(6, -12), color="tab:red")
        unit = "macs" if key == "macs" else "latency_ms"
        for bound in ("max", "min"):
            value = budget.get(f"{bound}_{unit}")
            if value is not None:
                ax.axvline(value * scale, color="tab:red", linestyle="--", linewidth=1, label=f"{bound} budget")
        ax.set_xlabel(label)
        ax.set_ylabel(metric_name)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return write_bytes_atomic(path, buffer.getvalue())
