"""The report stage: ``report.json``, ``report.md`` and PNG charts (per-stage metric/latency/size against the teacher,
and the search's Pareto front), with the final artifact's path and how to load it."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from qla_sdk.recipe.config import RecipeConfig


def write_report(recipe: RecipeConfig, earlier: dict, folder: Path, out_dir: Path) -> dict:
    from qla_sdk.config import to_dict
    from qla_sdk.io import markdown_table, write_bytes_atomic, write_json_atomic
    from qla_sdk.recipe.runner import stage_seconds as marker_seconds

    bench = earlier["benchmark"]
    rows = {r["stage"]: r for r in bench["rows"]}
    teacher, final = rows["teacher"], rows["final"]
    stage_seconds, _ = marker_seconds(out_dir, list(earlier))
    artifact = earlier["export"]["artifact"]
    metric = bench["metric"]
    report = {
        "recipe": recipe.name,
        "task": recipe.task,
        "metric": metric,
        "teacher_dev_acc": teacher["dev_metric"],
        "final_dev_acc": final["dev_metric"],
        "dev_acc_drop_points": _points(teacher["dev_metric"] - final["dev_metric"], metric),
        "teacher_latency_ms": teacher["latency_ms"],
        "final_latency_ms": final["latency_ms"],
        "speedup": round(teacher["latency_ms"] / final["latency_ms"], 2) if final["latency_ms"] else None,
        "speedup_by_round": bench.get("speedup_by_round"),  # absent in a benchmark stage timed before rounds
        "final_backend": earlier["export"]["backend"],
        "length_config": earlier["search"]["length_config"],
        "latency_batch_size": 1,
        "latency_seq_len": bench["seq_len"],
        "final_latency_seq_len": bench.get("final_seq_len", bench["seq_len"]),
        "artifact": artifact,
        "load": f"import qla_sdk; qla_sdk.load({artifact!r}).predict([...])",
        "stages": bench["rows"],
        "stage_seconds": stage_seconds,
        "wall_time_s": round(sum(s for s in stage_seconds.values() if s), 1),
        "search": {k: earlier["search"][k] for k in ("metric", "search_metric", "dev_rows_scored", "scored")},
        "training": {
            name: {k: earlier[name].get(k) for k in ("steps", "train_wall_time_s", "samples_per_s", "bf16")}
            for name in ("teacher", "distill", "lat")
            if name in earlier
        },
        "machine": bench["machine"],
        "config": to_dict(recipe),
    }
    checked = _checked_on(artifact)
    if checked is not None:
        report["accuracy_checked_on"] = checked
    charts = _write_charts(bench["rows"], metric, folder)
    pareto = Path(earlier["search"]["plot"])
    if pareto.is_file():
        shutil.copyfile(pareto, folder / "pareto.png")
        charts.append(folder / "pareto.png")
    report["charts"] = [str(p) for p in charts]

    table = markdown_table(
        ["stage", "model", metric, "GMACs", "latency ms (b=1)", "p90 ms", "speed-up", "size MB"],
        [
            [
                r["stage"],
                r["model"],
                f"{shown(r['dev_metric'], metric)}",
                f"{r['macs'] / 1e9:.3f}",
                f"{r['latency_ms']:.3f}",
                _p90(r),
                f"{teacher['latency_ms'] / r['latency_ms']:.2f}x",
                f"{r['size_bytes'] / 1e6:.1f}",
            ]
            for r in bench["rows"]
        ],
    )
    faster = f"{report['speedup']}x faster than the teacher at batch 1{_round_range(report['speedup_by_round'])}"
    markdown = f"""# QuaLA recipe report: {recipe.name}

Task {recipe.task}; dev {metric} on the whole dev set; latency at batch 1 on one dev input of median length,
{_timed_lengths(bench)}, {_count(bench["threads"], "thread")}, median (and 90th percentile) of {bench["runs"]} runs,
{_rounds(bench)} in one process on {bench["machine"].get("cpu_model", "this CPU")}.

{table}

- Teacher {shown(teacher["dev_metric"], metric)} -> final {shown(final["dev_metric"], metric)} \
({_lost(report["dev_acc_drop_points"])}), {faster}.
- Length config: {_described(report["length_config"])}.
- Final artifact ({report["final_backend"]}): `{artifact}`{_checked_line(checked)}

```python
import qla_sdk
model = qla_sdk.load("{artifact}")
print(model.predict({_example_call(recipe, earlier)}))
```

Charts: {", ".join(Path(c).name for c in charts)}. Wall time {report["wall_time_s"]:.0f} s; per stage:
{", ".join(f"{name} {seconds:.0f} s" for name, seconds in stage_seconds.items() if seconds is not None)}.
"""
    write_json_atomic(folder / "report.json", report)
    write_bytes_atomic(folder / "report.md", markdown.encode())
    return {
        k: report[k]
        for k in (
            "teacher_dev_acc",
            "final_dev_acc",
            "teacher_latency_ms",
            "final_latency_ms",
            "final_backend",
            "length_config",
            "speedup",
            "artifact",
        )
    } | {
        "metric": metric,
        "report_json": str(folder / "report.json"),
        "report_md": str(folder / "report.md"),
    }


def _checked_on(artifact: str) -> dict[str, str] | None:
    """The kernel classes that matter for the artifact and the CPU its int8 accuracy check ran on
    (``deploy.accuracy_check``), or None where it records no check (a float artifact) or cannot be read."""
    from qla_sdk.deploy.accuracy_check import checked_on, classes_that_matter
    from qla_sdk.deploy.artifact import read_manifest

    try:
        manifest = read_manifest(artifact, verify=False)
    except (OSError, ValueError):  # gone or damaged since export: the report still says what the stages measured
        return None
    record = checked_on(manifest)
    return None if record is None else classes_that_matter(record, manifest)


def _checked_line(checked: dict[str, str] | None) -> str:
    if checked is None:
        return ""
    kinds = ", ".join(f"{kind} kernels {value}" for kind, value in checked.items() if kind != "cpu_model")
    return (
        f"\n- Its int8 accuracy was checked on {checked['cpu_model'] or 'the build machine'} ({kinds}): it holds on "
        "CPUs of these kernel classes; on others `qla_sdk.load` warns, and `qla eval` scores it there."
    )


def _points(delta: float, metric: str) -> float:
    return round(delta * 100 if metric == "accuracy" else delta, 2)


def shown(value: float, metric: str) -> str:
    """A metric as people read it: accuracy (a fraction) in percent, SQuAD F1 / EM (0-100) as they are."""
    return f"{value * 100:.2f}%" if metric == "accuracy" else f"{value:.2f}"


def _lost(points: float) -> str:
    """``1.95 points lost`` / ``1.26 points gained``: "-1.26 points lost" read as a loss at a glance."""
    return f"{points:.2f} points lost" if points >= 0 else f"{-points:.2f} points gained"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _rounds(bench: dict) -> str:
    rounds = bench.get("rounds")
    return f"timed in {rounds} interleaved rounds" if rounds else "measured back to back"


def _round_range(speedups: list[float] | None) -> str:
    if not speedups or len(speedups) < 2:
        return ""
    return f" (per round {min(speedups):.2f}-{max(speedups):.2f}x)"


def _p90(row: dict) -> str:
    p90 = (row.get("latency") or {}).get("p90_ms")  # reports before the spread was shown may lack it
    return "-" if p90 is None else f"{p90:.3f}"


def _described(length_config: dict | None) -> str:
    """``0.83,0.74`` as the share of each input's real tokens kept after each layer, ``52,42@64`` as token counts."""
    from qla_sdk.modeling import LengthConfig

    if not length_config:
        return "none (every token through every layer)"
    config = LengthConfig.parse(length_config)
    if config.is_ratio:
        return f"`{config}`, the share of each input's real tokens kept after each layer"
    at = f" of {config.reference_length}" if config.reference_length else ""
    return f"`{config}`, the tokens{at} kept after each layer"


def _example_call(recipe: RecipeConfig, earlier: dict) -> str:
    sample = earlier["export"]["sample_inputs"][0]
    if recipe.task == "question-answering":
        return f"question={sample[0]!r}, context={sample[1][:60]!r}"
    return repr([sample[0] if len(sample) == 1 else tuple(sample)])


def _write_charts(rows: list[dict], metric: str, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qla_sdk.io import write_bytes_atomic

    names = [r["stage"] for r in rows]
    panels = [
        (f"dev {metric}", [r["dev_metric"] * (100 if metric == "accuracy" else 1) for r in rows]),
        ("latency ms (batch 1)", [r["latency_ms"] for r in rows]),
        ("GMACs", [r["macs"] / 1e9 for r in rows]),
        ("size MB", [r["size_bytes"] / 1e6 for r in rows]),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (title, values) in zip(axes, panels, strict=True):
        bars = ax.bar(names, values, color=["#888888", "#4c72b0", "#55a868", "#c44e52"][: len(values)])
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=20)
        if title.startswith("dev"):
            low = min(values)
            ax.set_ylim(max(0.0, low - 0.1 * abs(low) - 1), max(values) * 1.02 + 0.5)
    figure.suptitle("QuaLA recipe: each stage against the teacher")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    path = folder / "stages.png"
    write_bytes_atomic(path, buffer.getvalue())
    return [path]


def _timed_lengths(bench: dict) -> str:
    final = bench.get("final_seq_len", bench["seq_len"])
    if bench.get("padded", True):  # reports before the as-served timing padded every model to one length
        return f"padded to {bench['seq_len']} tokens for every model ({bench.get('input_real_tokens', '?')} real)"
    artifact = f"padded to the artifact's {final}-token graph" if bench.get("final_graphs", True) else "the same"
    return f"as each is served: {bench['seq_len']} tokens unpadded for the eager models, {artifact} for the artifact"
