"""QuaLA on SQuAD v1.1 end to end, and what a QA service sees: accuracy kept, latency on real questions.

    python benchmarks/squad_recipe.py --work /path/outside/the/repo [--squad ../shared/data/squad_v1.1/dev-v1.1.json]

Steps, each resumable (re-run the same command after an interruption; finished work is skipped):
1. split: only the official dev file exists here (no train file), so it is split by article (`qla split-squad`,
   80/20, seed 0): no article is in both parts.
2. recipe: `qla run --config qla_sdk/recipes/squad_minilm.yaml` on the split: fine-tune the pretrained MiniLM-L6-H384
   (length 384, stride 128) -> length-adaptive training -> search (F1 on a fixed subset: the cheapest gene within
   0.5 F1 of the fine-tuned model, confirmed on every evaluation question) -> int8 OpenVINO (32-token buckets) ->
   export -> report.
3. curve: the same fine-tuning on 25% and 50% of the training questions (100% is the recipe's own teacher stage):
   where the data caps F1.
4. latency: every evaluation question, one at a time, through what a service would call, with tokenization, windows
   and answer extraction: `qla_sdk.load(artifact).predict(question=..., context=...)` for the QuaLA artifact and for
   the fine-tuned model FP32 eager (an fp32 artifact: the SDK's eager runtime; and as transformers runs it), and
   optimum-intel int8 of the same fine-tuned model (`OVQuantizer`, then `OVModelForQuestionAnswering` on the same
   doc-stride windows and span extraction; transformers 5 has no "question-answering" pipeline any more) twice: at
   our artifact's inference precision and at OpenVINO's default (bf16 on AMX: what a user gets unasked), the bar
   counting the faster. All in
   interleaved blocks of 25 questions (a system right after PyTorch eager would otherwise pay for its spinning
   OpenMP threads).
   Each system's F1/EM on those questions is scored from the same predictions.

Writes benchmarks/results/squad_recipe.json and .md. Run nothing else heavy meanwhile: the latency step is timed.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

from qla_bench.script import run_script

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
RECIPE = REPO / "qla_sdk" / "recipes" / "squad_minilm.yaml"
SQUAD = REPO.parent / "shared" / "data" / "squad_v1.1" / "dev-v1.1.json"
CURVE_SHARES = (0.25, 0.5)
LATENCY_BLOCK = 25  # questions each system answers in a row in the latency step
BARS = {"finetuned_f1_min": 70.0, "max_f1_drop": 1.0, "min_speedup_vs_optimum_intel": 1.5, "min_speedup_vs_fp32": 5.0}


def split(squad: Path, work: Path) -> tuple[Path, Path]:
    from qla_sdk.data import split_squad_by_article

    train, evaluation = work / "squad_train.json", work / "squad_eval.json"
    if not (train.exists() and evaluation.exists()):
        split_squad_by_article(squad, train, evaluation, 0.8, 0)
    return train, evaluation


def teacher_folder(work: Path, bf16: bool) -> Path:
    """Where the teacher stage runs: ``run`` as this script and the other SQuAD scripts have it (FP32), a folder of
    its own for a bf16-trained teacher, which would otherwise replace theirs."""
    return work / ("run_bf16" if bf16 else "run")


def share_teacher(run_dir: Path, teacher_run: Path) -> None:
    """Give ``run_dir`` the teacher stage of the recipe run in ``teacher_run``, as a link: a run in ``run_dir`` with
    the same teacher options skips that stage instead of fine-tuning again."""
    run_dir.mkdir(exist_ok=True)
    if not (run_dir / "teacher").exists():
        (run_dir / "teacher").symlink_to(teacher_run / "teacher", target_is_directory=True)


def run_recipe(train: Path, evaluation: Path, work: Path) -> dict:
    from qla_sdk.recipe.config import load_recipe
    from qla_sdk.recipe.run import run_recipe

    recipe = load_recipe(RECIPE, [f"data.train={train}", f"data.eval={evaluation}"])
    return run_recipe(recipe, work / "run")


def learning_curve(train: Path, evaluation: Path, work: Path, outputs: dict) -> list[dict]:
    """Fine-tune on a share of the training questions (a fixed random subset of question ids), with the recipe's
    teacher settings, scored on the same evaluation questions."""
    from qla_sdk.recipe.clock import StageClock
    from qla_sdk.recipe.config import load_recipe

    squad = json.loads(train.read_text(encoding="utf-8"))
    ids = [qa["id"] for article in squad["data"] for p in article["paragraphs"] for qa in p["qas"]]
    recipe = load_recipe(RECIPE, [f"data.train={train}", f"data.eval={evaluation}"])
    curve = []
    for share in CURVE_SHARES:
        folder = curve_folder(work, share)
        result_file = folder / "result.json"
        if not result_file.exists():
            folder.mkdir(parents=True, exist_ok=True)
            with StageClock(folder):  # its seconds over every attempt, for wall_time_s
                _finetune_share(share, squad, ids, folder, evaluation, recipe, result_file)
        curve.append(json.loads(result_file.read_text()))
    curve.append(
        {
            "questions": len(ids),
            "f1": outputs["teacher"]["dev"]["f1"],
            "exact_match": outputs["teacher"]["dev"]["exact_match"],
        }
    )
    return curve


def _finetune_share(
    share: float, squad: dict, ids: list[str], folder: Path, evaluation: Path, recipe, result_file: Path
):
    """The recipe's teacher fine-tuning on ``share`` of the training questions, its F1/EM into ``result_file``."""
    from qla_sdk.data import load_tokenizer
    from qla_sdk.data.task_data import load_task_data
    from qla_sdk.io import write_json_atomic
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.train.finetune import finetune

    teacher = recipe.teacher
    keep = set(random.Random(0).sample(ids, round(share * len(ids))))
    subset = {
        "version": squad.get("version", "1.1"),
        "data": [
            {
                **a,
                "paragraphs": [{**p, "qas": [q for q in p["qas"] if q["id"] in keep]} for p in a["paragraphs"]],
            }
            for a in squad["data"]
        ],
    }
    subset_file = folder / "train_subset.json"
    write_json_atomic(subset_file, subset)
    tokenizer = load_tokenizer(teacher.model)
    data = load_task_data(
        subset_file,
        evaluation,
        tokenizer,
        recipe.task,
        None,
        max_length=recipe.max_length,
        doc_stride=recipe.data.doc_stride,
    )
    model = from_pretrained(teacher.model, task=recipe.task, seed=teacher.finetune.seed)
    result = finetune(
        model,
        data.train_features,
        data.eval_features,
        recipe.task,
        teacher.finetune.for_run(folder, resume=True),
        eval_examples=data.eval_examples,
        tokenizer=tokenizer,
        eval_batch_size=teacher.finetune.eval_batch_size,
    )
    write_json_atomic(
        result_file,
        {"questions": len(keep), "f1": result.metrics["f1"], "exact_match": result.metrics["exact_match"]},
    )


def optimum_intel_pipeline(finetuned: Path, train: Path, work: Path, precision: str | None, samples: int = 300):
    """What a user would deploy otherwise: optimum-intel's OVQuantizer (NNCF int8) of the same fine-tuned model,
    served by ``OVModelForQuestionAnswering`` at the inference ``precision`` given (our artifact's), or with None at
    OpenVINO's default: bf16 for what stays floating point on CPUs with native bf16 (AMX, AVX512-BF16), f32
    elsewhere, which is what a user gets without asking."""
    from datasets import Dataset
    from optimum.intel import OVConfig, OVModelForQuestionAnswering, OVQuantizationConfig, OVQuantizer
    from transformers import AutoTokenizer

    from qla_bench.peers import staged_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(str(finetuned))
    target = work / "optimum-intel-int8"
    if not (target / "openvino_model.xml").exists():
        from qla_sdk.data import load_squad, qa_features

        features = qa_features(load_squad(train)[:samples], tokenizer, max_length=384, doc_stride=128)
        rows = []
        for i in range(min(samples, len(features))):  # windows padded to 384, as the pipeline feeds them
            ids = features.input_ids[i]
            pad = 384 - len(ids)
            types = features.token_type_ids[i] if features.token_type_ids is not None else [0] * len(ids)
            rows.append(
                {
                    "input_ids": ids + [tokenizer.pad_token_id] * pad,
                    "attention_mask": [1] * len(ids) + [0] * pad,
                    "token_type_ids": types + [0] * pad,
                }
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = OVModelForQuestionAnswering.from_pretrained(
                str(staged_checkpoint(finetuned, work)), export=True, compile=False
            )
            OVQuantizer.from_pretrained(model).quantize(
                calibration_dataset=Dataset.from_list(rows),
                ov_config=OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(rows))),
                save_directory=str(target),
            )
    ov_config = {"PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        ov_config["INFERENCE_PRECISION_HINT"] = precision
    model = OVModelForQuestionAnswering.from_pretrained(str(target), ov_config=ov_config)
    return question_answerer(model, tokenizer)


def transformers_pipeline(finetuned: Path):
    """The fine-tuned model as transformers runs it, FP32 eager (``AutoModelForQuestionAnswering``), on the same
    windows and span extraction: the plain baseline, slower than the SDK's own FP32 eager runtime."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForQuestionAnswering.from_pretrained(str(finetuned)).eval()

    def call(**arrays):
        with torch.inference_mode():
            return model(**{name: torch.from_numpy(value) for name, value in arrays.items()})

    return question_answerer(call, AutoTokenizer.from_pretrained(str(finetuned)))


def question_answerer(model, tokenizer):
    """What ``transformers.pipeline("question-answering", model=OVModelForQuestionAnswering)`` did before
    transformers 5 removed that pipeline: doc-stride windows of 384 (stride 128), the model on them, the best span of
    at most 30 tokens. Windows and span extraction are the SDK's own (the same code the Predictor runs), so the
    systems differ only in the model call."""
    import numpy as np

    from qla_sdk.data import QAExample, postprocess_qa, qa_features

    def answer(question: str, context: str) -> str:
        example = QAExample("q", "", question, context)
        features = qa_features([example], tokenizer, max_length=384, doc_stride=128)
        width = max(len(ids) for ids in features.input_ids)
        ids = np.zeros((len(features), width), dtype=np.int64)
        mask, types = np.zeros_like(ids), np.zeros_like(ids)
        for i, row in enumerate(features.input_ids):
            ids[i, : len(row)], mask[i, : len(row)] = row, 1
            if features.token_type_ids is not None:
                types[i, : len(row)] = features.token_type_ids[i]
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
        starts, ends = (np.asarray(t, dtype=np.float32) for t in (out.start_logits, out.end_logits))
        return postprocess_qa([example], features, list(starts), list(ends))["q"]

    return answer


def latency(outputs: dict, train: Path, evaluation: Path, work: Path, limit: int | None) -> dict:
    import qla_sdk
    from qla_sdk.data import load_squad, load_tokenizer, squad_scores
    from qla_sdk.deploy import export_model
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.quantize import QuantConfig
    from qla_sdk.timing import LatencyStats

    finetuned = Path(outputs["teacher"]["model"])
    fp32_artifact = work / "finetuned-fp32"
    if not fp32_artifact.exists():
        model = from_pretrained(finetuned, task="question-answering").eval()
        export_model(
            model,
            fp32_artifact,
            load_tokenizer(finetuned),
            config=QuantConfig(backend="fp32"),
            length_config=None,
            max_length=384,
            doc_stride=128,
        )
    ours = qla_sdk.load(outputs["export"]["artifact"], warmup=True)
    precision = ours.manifest.data["model"].get("inference_precision", "f32")
    if precision == "auto":  # resolved per graph: what ours runs here
        from qla_sdk.backends.openvino import graph_precision

        precision = graph_precision(precision, getattr(ours.runner, "fused_attention", None) == "int8")
    fp32 = qla_sdk.load(fp32_artifact, warmup=True)
    systems = {
        # run_qa's span rule, as the recipe's F1 figures (predict's default aligns answers to whole words).
        "ours": lambda q, c: ours.predict(question=q, context=c, align_to_words=False)["answer"],
        "finetuned_fp32": lambda q, c: fp32.predict(question=q, context=c, align_to_words=False)["answer"],
        "optimum_intel_int8": optimum_intel_pipeline(finetuned, train, work, precision),
        "optimum_intel_int8_default": optimum_intel_pipeline(finetuned, train, work, None),
        "transformers_fp32": transformers_pipeline(finetuned),
    }
    examples = load_squad(evaluation)[:limit]
    times, predictions = time_in_blocks(systems, examples)
    lengths = input_lengths(load_tokenizer(finetuned), examples)
    figures = {}
    for name in systems:
        stats = LatencyStats.from_times(times[name])
        figures[name] = {
            "p50_ms": round(stats.p50_ms, 3),
            "p90_ms": round(stats.p90_ms, 3),
            "p99_ms": round(stats.p99_ms, 3),
            "questions_per_s": round(1000.0 / stats.mean_ms, 2),
            **{k: round(v, 2) for k, v in squad_scores(predictions[name], examples).items()},
        }
    return {
        "systems": figures,
        "questions": len(examples),
        "mean_input_tokens": round(statistics.mean(lengths), 1),
        "openvino_inference_precision": precision,
    }


def input_lengths(tokenizer, examples: list) -> list[int]:
    """Each question's tokens with its context, as its first window holds them (up to 384)."""
    return [
        len(tokenizer(e.question, e.context, truncation="only_second", max_length=384)["input_ids"]) for e in examples
    ]


def time_in_blocks(systems: dict, examples: list) -> tuple[dict[str, list[float]], dict[str, dict[str, str]]]:
    """Each system's milliseconds per question and its answers by question id: ``systems[name](question, context)``
    on every example, one at a time, after 5 untimed questions each (every graph bucket and pipeline warm).

    Interleaved in blocks of questions, each system in turn (rotated per block, so no system always runs first). Not
    per question: PyTorch's OpenMP threads keep spinning for a while after an eager call and slow down the OpenVINO
    call right after it, which a service running one system never sees. One untimed call per block absorbs what the
    previous system left behind."""
    for answer in systems.values():
        for e in examples[:5]:
            answer(e.question, e.context)
    times: dict[str, list[float]] = {name: [] for name in systems}
    predictions: dict[str, dict[str, str]] = {name: {} for name in systems}
    for b, first in enumerate(range(0, len(examples), LATENCY_BLOCK)):
        block = examples[first : first + LATENCY_BLOCK]
        order = list(systems)
        order = order[b % len(order) :] + order[: b % len(order)]
        for name in order:
            systems[name](block[0].question, block[0].context)
            for e in block:
                start = time.perf_counter()
                predictions[name][e.id] = systems[name](e.question, e.context)
                times[name].append((time.perf_counter() - start) * 1000.0)
    return times, predictions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--work", required=True, help="folder for the split, stage outputs and peers (outside the repo)"
    )
    parser.add_argument(
        "--squad", default=str(SQUAD), help="SQuAD v1.1 file to split by article (default: %(default)s)"
    )
    parser.add_argument("--out", default=str(RESULTS / "squad_recipe.json"))
    parser.add_argument("--skip-curve", action="store_true", help="leave out the 25%%/50%% fine-tuning runs")
    parser.add_argument("--limit", type=int, default=None, help="time only the first N evaluation questions")
    args = parser.parse_args(argv)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train, evaluation = split(Path(args.squad), work)
    outputs = run_recipe(train, evaluation, work)
    # Timed before the curve's hour of training, and written at once: the curve only adds rows to the same results.
    start = time.perf_counter()
    timed = latency(outputs, train, evaluation, work, args.limit)
    timed["latency_seconds"] = round(time.perf_counter() - start, 1)
    from qla_sdk.recipe.runner import stage_seconds

    timed["stage_seconds"], timed["unclocked_stages"] = stage_seconds(work / "run")
    write_report(args.out, outputs, timed, [], train, evaluation, work, complete=False)
    if not args.skip_curve:
        curve = learning_curve(train, evaluation, work, outputs)
        write_report(args.out, outputs, timed, curve, train, evaluation, work, complete=True)
    return 0


def curve_seconds(work: Path) -> dict[str, float]:
    """Each learning-curve fine-tuning's seconds, over every attempt."""
    from qla_sdk.recipe.clock import read_clock

    return {
        curve_folder(work, share).name: round(read_clock(curve_folder(work, share))[0], 1) for share in CURVE_SHARES
    }


def curve_folder(work: Path, share: float) -> Path:
    return work / f"curve_{round(share * 100)}"


def write_report(
    out: str, outputs: dict, timed: dict, curve: list[dict], train: Path, evaluation: Path, work: Path, complete: bool
) -> None:
    from qla_bench.report import markdown_table, write_results
    from qla_sdk.data import load_squad

    s = timed["systems"]
    curve_time = curve_seconds(work) if curve else {}
    # The peer the bar counts: optimum-intel int8 at our precision or at OpenVINO's default, whichever is faster.
    peer = min(("optimum_intel_int8", "optimum_intel_int8_default"), key=lambda name: s[name]["p50_ms"])
    figures = {
        "train_questions": len(load_squad(train)),
        "eval_questions": len(load_squad(evaluation)),
        "split": "official SQuAD v1.1 dev file split by article (80/20, seed 0): no train file exists offline",
        "finetuned_f1": round(outputs["teacher"]["dev"]["f1"], 2),
        "finetuned_em": round(outputs["teacher"]["dev"]["exact_match"], 2),
        "lat_full_f1": round(outputs["lat"]["dev"]["f1"], 2),
        "searched_fp32_f1": round(outputs["search"]["dev"]["f1"], 2),
        "final_f1": s["ours"]["f1"],
        "final_em": s["ours"]["exact_match"],
        "length_config": outputs["search"]["length_config"],
        "macs_ratio": outputs["search"]["macs_ratio"],
        "final_backend": outputs["export"]["backend"],
        "openvino_inference_precision": timed["openvino_inference_precision"],
        "latency_ms": {
            "ours_p50": s["ours"]["p50_ms"],
            "ours_p99": s["ours"]["p99_ms"],
            "finetuned_fp32_p50": s["finetuned_fp32"]["p50_ms"],
            "optimum_intel_int8_p50": s[peer]["p50_ms"],
            "optimum_intel_int8_same_precision_p50": s["optimum_intel_int8"]["p50_ms"],
            "optimum_intel_int8_default_precision_p50": s["optimum_intel_int8_default"]["p50_ms"],
            "transformers_fp32_p50": s["transformers_fp32"]["p50_ms"],
        },
        "optimum_intel_int8_system": peer,
        "optimum_intel_note": "optimum_intel_int8 runs at our artifact's inference precision, "
        "optimum_intel_int8_default at OpenVINO's default (bf16 where the CPU has it); "
        "latency_ms.optimum_intel_int8_p50 and the bar take the faster of the two",
        "fp32_reference": "finetuned_fp32 is the SDK's own FP32 eager runtime (the bar's reference: the stricter one); "
        "transformers_fp32 is the same model as transformers runs it",
        "answer_rule": "every system's answers are run_qa's spans (as the tokens give them, the recipe's F1 rule): "
        "predict(..., align_to_words=False) for ours and finetuned_fp32, the same span extraction for the others",
        "speedup_p50": {
            f"vs_{name}": round(s[name]["p50_ms"] / s["ours"]["p50_ms"], 2) for name in s if name != "ours"
        },
        "latency_order": f"blocks of {LATENCY_BLOCK} questions per system, the systems' order rotated per block, "
        "one untimed call per block",
        "int8_build_f1": round(100 * outputs["quantize"]["build"]["int8_metric"], 2),
        "systems": s,
        "timed_questions": timed["questions"],
        "mean_input_tokens": timed["mean_input_tokens"],
        "learning_curve": curve,
        "learning_curve_complete": complete,
        "stage_seconds": timed["stage_seconds"],
        "curve_seconds": curve_time,
        "latency_seconds": timed["latency_seconds"],
        "wall_time_s": round(
            sum(timed["stage_seconds"].values()) + sum(curve_time.values()) + timed["latency_seconds"], 1
        ),
        "wall_time_scope": "the recipe's stages and the learning curve's fine-tuning runs, each over every attempt "
        "(a killed attempt to within 30 s: qla_sdk.recipe.clock), and this invocation's latency step"
        + (
            f"; the markers of {', '.join(timed['unclocked_stages'])} predate the clock and count their last attempt"
            if timed["unclocked_stages"]
            else ""
        ),
        "bars": BARS,
    }
    figures["bars_met"] = {
        "finetuned_f1": figures["finetuned_f1"] >= BARS["finetuned_f1_min"],
        "final_f1_within": figures["finetuned_f1"] - figures["final_f1"] <= BARS["max_f1_drop"],
        "speedup_vs_optimum_intel": figures["speedup_p50"][f"vs_{peer}"] >= BARS["min_speedup_vs_optimum_intel"],
        "speedup_vs_fp32": figures["speedup_p50"]["vs_finetuned_fp32"] >= BARS["min_speedup_vs_fp32"],
    }
    rows = [
        [name, v["f1"], v["exact_match"], v["p50_ms"], v["p90_ms"], v["p99_ms"], v["questions_per_s"]]
        for name, v in s.items()
    ]
    markdown = "\n\n".join(
        [
            f"QuaLA-MiniLM on SQuAD v1.1 ({figures['split']}): {figures['train_questions']} training / "
            f"{figures['eval_questions']} evaluation questions. Fine-tuned F1 {figures['finetuned_f1']}, final "
            f"{figures['final_backend']} int8 F1 {figures['final_f1']} with length config {figures['length_config']}.",
            markdown_table(["system", "F1", "EM", "p50 ms", "p90 ms", "p99 ms", "questions/s"], rows),
            f"Mean input length {figures['mean_input_tokens']} tokens (question + context, capped at 384). "
            f"Latency: every evaluation question at batch 1, {figures['latency_order']}. p50 speed-up of ours: "
            + ", ".join(f"{k} {v}x" for k, v in figures["speedup_p50"].items())
            + f"; bars met: {figures['bars_met']}.",
            markdown_table(["training questions", "F1"], [[c["questions"], c["f1"]] for c in curve]) if curve else "",
        ]
    )
    write_results(out, figures, markdown, command=[sys.executable, *sys.argv])
    print(json.dumps(figures["latency_ms"]), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_script(main))
