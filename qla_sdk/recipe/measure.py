"""The benchmark stage: batch-1 latency, MACs, size and dev metric of every model the recipe produced.

The teacher (FP32, eager PyTorch, full length), the final artifact (its own backend, through the deployed
``Predictor``'s runner) and the intermediate students (eager FP32) are timed on the same dev input, same process,
same threads, in ``benchmark.rounds`` interleaved rounds (``timing.interleaved_latency``). The input is one dev
row of median real length, as each model is served at batch 1: unpadded for the eager models (an eager runtime
needs no padding for one row), padded to its graph length for the artifact (``Predictor.graph_length``). Padding
the teacher's row to ``max_length`` too would bill it for tokens a service never runs, while the artifact drops
them first. ``benchmark.seq_len`` pads every model's row to one length instead (a fixed-shape comparison; the
artifact at the smallest of its graphs that holds it). MACs are counted at the lengths timed (a ratio length config
at the real tokens: padding is dropped first). The final artifact's dev metric is measured through
``qla_sdk.load(...).predict`` on the whole dev set, as a user would see it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from qla_sdk.recipe.config import RecipeConfig

PRIMARY_METRIC = {"text-classification": "accuracy", "question-answering": "f1"}


def benchmark_input(features, seq_len: int | None, pad_token_id: int) -> tuple[torch.Tensor, ...]:
    """One dev row of median real length, padded to ``seq_len`` (None: unpadded, as an eager runtime runs it)."""
    from qla_sdk.backends import pad_rows

    lengths = list(features.lengths)
    median = sorted(range(len(lengths)), key=lambda i: lengths[i])[len(lengths) // 2]
    return pad_rows([features.row(median)], seq_len or lengths[median], pad_token_id, batch_size=1)[0]


def artifact_metric(predictor, recipe: RecipeConfig) -> float:
    """The task's primary metric of an exported model on the whole dev set, through ``Predictor.predict``."""
    from qla_sdk.data import accuracy, load_classification, load_squad, squad_scores
    from qla_sdk.data.columns import DevColumns

    d = recipe.data
    if recipe.task == "question-answering":
        examples = load_squad(d.eval, "validation")
        # run_qa's span rule, as the teacher's F1 it is compared with (predict's default aligns answers to words).
        answers = predictor.predict(
            question=[e.question for e in examples], context=[e.context for e in examples], align_to_words=False
        )
        return squad_scores({e.id: a["answer"] for e, a in zip(examples, answers, strict=True)}, examples)["f1"]
    record = {"text_columns": predictor.manifest.text_columns}  # what training read, where the recipe names none
    columns = DevColumns.of(d.text_columns, d.label_column, record).text_columns
    data = load_classification(d.eval, "validation", columns, d.label_column, label_names=predictor.labels)
    predicted = predictor.predict([t if len(t) == 2 else t[0] for t in data.texts])
    index = {name: i for i, name in enumerate(predictor.labels or [])}
    return accuracy([index.get(p["label"], -1) for p in predicted], data.labels)


def benchmark_models(recipe: RecipeConfig, earlier: dict, tokenizer, load_data, folder: Path, progress: bool) -> dict:
    from tqdm.auto import tqdm

    from qla_sdk.deploy import load
    from qla_sdk.machine import machine_info
    from qla_sdk.modeling import count_macs, from_pretrained
    from qla_sdk.recipe.common import checkpoint_bytes, folder_bytes, model_labels
    from qla_sdk.runtime import EagerRuntime
    from qla_sdk.timing import interleaved_latency

    b, task = recipe.benchmark, recipe.task
    threads_before = torch.get_num_threads()
    if b.threads:
        torch.set_num_threads(b.threads)
    try:
        teacher = from_pretrained(earlier["teacher"]["model"], task=task).eval()
        data = load_data(tuple(model_labels(teacher) or ()) or None)
        pad = tokenizer.pad_token_id or 0
        inputs = benchmark_input(data.eval_features, b.seq_len, pad)  # the eager models' row
        real_tokens = int(inputs[1].sum())
        artifact = earlier["export"]["artifact"]
        predictor = load(artifact, threads=b.threads)
        graph_length = predictor.graph_length(b.seq_len or real_tokens)  # the smallest graph holding the row
        arrays = [t.numpy() for t in benchmark_input(data.eval_features, graph_length, pad)]
        distilled = None
        if not earlier["distill"].get("skipped"):  # student: null compresses the teacher itself
            distilled = from_pretrained(earlier["distill"]["model"], task=task).eval()
        searched = from_pretrained(earlier["search"]["model"], task=task).eval()
        searched_lc = searched.length_config

        def eager(model, length_config=None):
            runtime = EagerRuntime(model)  # FP32 eager as the fp32 backend serves it

            def run():
                with torch.inference_mode():
                    return runtime(*inputs, length_config=length_config)

            return run

        # The headline speed-up compares the teacher and the final artifact.
        timed = {
            "teacher": eager(teacher),
            "final": lambda: predictor.runner.run(*arrays),
            "search": eager(searched, searched_lc),
        }
        if distilled is not None:
            timed["distill"] = eager(distilled)
        with tqdm(total=b.rounds, desc="benchmark (batch 1)", unit="round", disable=not progress) as bar:
            stats, round_medians = interleaved_latency(
                timed, b.runs, b.warmup, b.rounds, b.round_warmup, after_round=bar.update
            )
        latency = {name: s.to_dict() for name, s in stats.items()}
        final_metric = artifact_metric(predictor, recipe)
    finally:
        torch.set_num_threads(threads_before)

    metric = PRIMARY_METRIC[task]

    eager_len = b.seq_len or real_tokens
    ratio_or_full = searched_lc is None or searched_lc.is_ratio

    def macs(model, length_config=None) -> int:
        return count_macs(model.config, eager_len, length_config, task=task)

    rows = [
        _row(
            "teacher",
            "teacher (fine-tuned, FP32 eager)",
            earlier["teacher"]["dev"][metric],
            macs(teacher),
            latency["teacher"],
            checkpoint_bytes(earlier["teacher"]["model"]),
            teacher.num_layers,
            None,
        ),
        None
        if distilled is None
        else _row(
            "distill",
            "distilled student (FP32 eager)",
            earlier["distill"]["dev"][metric],
            macs(distilled),
            latency["distill"],
            checkpoint_bytes(earlier["distill"]["model"]),
            distilled.num_layers,
            None,
        ),
        _row(
            "search",
            "length-adaptive student, searched lengths (FP32 eager)",
            earlier["search"]["dev"][metric],
            macs(searched, searched_lc),
            latency["search"],
            checkpoint_bytes(earlier["search"]["model"]),
            searched.num_layers,
            searched_lc.to_dict(),
        ),
        _row(
            "final",
            f"final artifact ({predictor.manifest.backend}, {predictor.manifest.data.get('precision')})",
            final_metric,
            # Ratios keep shares of the real tokens; token counts keep up to that many of the graph's positions
            macs(searched, searched_lc)
            if ratio_or_full
            else count_macs(searched.config, graph_length, searched_lc, task=task),
            latency["final"],
            folder_bytes(Path(artifact) / "model"),
            searched.num_layers,
            searched_lc.to_dict(),
        ),
    ]
    rows = [row for row in rows if row is not None]
    return {
        "metric": metric,
        # The timed lengths: the eager models' (the row's real tokens, or benchmark.seq_len) and the artifact's.
        "seq_len": eager_len,
        "final_seq_len": graph_length,
        "final_graphs": bool(predictor.runner.seq_lens),  # False: the artifact runs any length, unpadded
        "padded": b.seq_len is not None,
        "batch_size": 1,
        "input_real_tokens": real_tokens,
        "threads": b.threads or threads_before,
        "runs": b.runs,
        "warmup": b.warmup,
        "rounds": b.rounds,
        "round_warmup": b.round_warmup,
        # teacher / final artifact, each round's medians: how far one round's speed-up strays from the pooled one
        "speedup_by_round": [
            round(t / f, 2) for t, f in zip(round_medians["teacher"], round_medians["final"], strict=True)
        ],
        "rows": rows,
        "machine": machine_info(),
    }


def _row(stage, what, metric, macs, latency, size, layers, length_config) -> dict:
    return {
        "stage": stage,
        "model": what,
        "dev_metric": float(metric),
        "macs": int(macs),
        "latency_ms": round(float(latency["p50_ms"]), 4),
        "latency": latency,
        "size_bytes": int(size),
        "layers": layers,
        "length_config": length_config,
    }


__all__ = ["artifact_metric", "benchmark_input", "benchmark_models"]
