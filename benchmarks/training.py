"""Training benchmark: fine-tuning, length-adaptive training, distillation on SST-2; SQuAD; training throughput.

    python benchmarks/training.py            # the full run: about an hour on 2 idle Xeon cores (estimated)
    python benchmarks/training.py --quick    # a few steps of every stage: a smoke run (written under --work)

The committed ``benchmarks/results/training.json`` came from (its "command" key; about 65 minutes):

    python benchmarks/training.py --sst2-train-limit 30000 --lat-train-limit 0 --bf16 off \
        --distill-relation-weight 0.1 --distill-temperature 2 --lat-epochs 3 --layer-drop-prob 0

Stages, each in its own folder under --work, skipped when its stage.json exists and resumed from its last
checkpoint when it was killed (delete a folder to redo that stage):

  sst2_finetune    pretrained MiniLM-L6-H384 + random head, fine-tuned on SST-2 train (the teacher)
  sst2_lat         the teacher trained length-adaptively (qla_sdk.train.length_drop.lat_train)
  (not cached)     dev accuracy of both at the half length config (nolat_half, lat_half)
  sst2_student_distilled / sst2_student_plain
                   a 3-layer student copied from layers 0,2,4 of the teacher, trained with MiniLM distillation
                   (qla_sdk.train.distill.distill) or with the task loss only
  squad            MiniLM fine-tuned on 80% of the SQuAD v1.1 dev articles (by default on the first 4,000 of
                   their questions, one epoch), scored (EM/F1) on all questions of the other 20%
  throughput       training samples/s of MiniLM at a fixed shape, fp32 and bf16 autocast, over a fixed step count

Time on 2 cores, estimated from FLOPs at ~40 GFLOP/s: fine-tuning ~8 min, LAT ~11, students ~10, SQuAD ~23,
throughput ~2; every size has a flag (see --help).

Writes benchmarks/results/training.json (figures, settings, machine, versions, command, date) and training.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from qla_bench import write_results
from qla_bench.script import run_script
from qla_sdk.io import markdown_table, write_json_atomic

RESULTS = Path(__file__).parent / "results"
SST2 = "text-classification"
QA = "question-answering"
# Ratios of each input's length: LengthDrop's smallest sub-model at the default bound p = 0.2, (1 - p)^layer,
# fixed before any run. It keeps 49% of the tokens per layer on average.
HALF_LENGTH_CONFIG = "0.8,0.64,0.51,0.41,0.33,0.26"
QUICK = {  # a few steps of everything, on small subsets
    "sst2_train_limit": 256,
    "sst2_dev_limit": 64,
    "squad_train_limit": 48,
    "squad_eval_limit": 24,
    "squad_max_length": 128,
    "squad_doc_stride": 32,
    "max_steps": 3,
    "throughput_steps": 2,
    "throughput_batch": 8,
    "throughput_seq_len": 32,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/work/shared/data", help="folder with glue/SST-2 and squad_v1.1")
    p.add_argument("--model", default=None, help="pretrained checkpoint (default: the bundled MiniLM-L6-H384)")
    p.add_argument("--work", default=None, help="stage folders (default runs/training-bench[-quick])")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/training.json)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny subsets, a few steps per stage")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto", help="bf16 autocast in training stages")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between resumable checkpoints")
    p.add_argument("--max-steps", type=int, default=None, help="cap every training stage (smoke runs)")
    g = p.add_argument_group("SST-2")
    g.add_argument("--sst2-max-length", type=int, default=64)
    g.add_argument("--sst2-train-limit", type=int, default=20000, help="training sentences (0: all 67,349)")
    g.add_argument("--sst2-dev-limit", type=int, default=0, help="dev sentences (0: all 872)")
    g.add_argument("--finetune-epochs", type=int, default=1)
    g.add_argument("--finetune-lr", type=float, default=1e-4)
    g.add_argument("--half-length-config", default=HALF_LENGTH_CONFIG)
    g.add_argument("--lat-epochs", type=int, default=3)
    g.add_argument("--lat-lr", type=float, default=5e-5)
    g.add_argument("--lat-train-limit", type=int, default=0, help="sentences for LAT (0: as fine-tuning)")
    g.add_argument("--length-drop-prob", type=float, default=0.2, help="LengthDrop p (smallest sub-model)")
    # LayerDrop trains sub-models without some layers; the search and the half-length figure only change lengths.
    # With it off and 3 LAT epochs the half config lost 0.92 points, with it on and 2 epochs 2.64 (training.json
    # before and after; the two changes were not run apart).
    g.add_argument("--layer-drop-prob", type=float, default=0.0, help="LayerDrop q (0: off)")
    g.add_argument("--num-sandwich", type=int, default=2)
    g.add_argument("--student-layers", default="0,2,4", help="teacher layers copied into the student")
    g.add_argument("--student-epochs", type=int, default=1)
    g.add_argument("--student-lr", type=float, default=1e-4)
    g.add_argument("--distill-version", choices=["v1", "v2"], default="v2")
    g.add_argument("--distill-relation-weight", type=float, default=1.0, help="MiniLM v2 q-q/k-k/v-v relations")
    g.add_argument("--distill-prediction-weight", type=float, default=1.0, help="soft cross-entropy on logits")
    g.add_argument("--distill-task-weight", type=float, default=1.0, help="hard-label loss")
    g.add_argument("--distill-temperature", type=float, default=1.0)
    g = p.add_argument_group("SQuAD")
    g.add_argument("--squad-max-length", type=int, default=256)
    g.add_argument("--squad-doc-stride", type=int, default=128)
    g.add_argument("--squad-epochs", type=int, default=1)
    g.add_argument("--squad-lr", type=float, default=1e-4)
    g.add_argument("--squad-train-limit", type=int, default=4000, help="training questions (0: all ~8,300)")
    g.add_argument("--squad-eval-limit", type=int, default=0, help="evaluation questions (0: all ~2,300)")
    g = p.add_argument_group("throughput")
    g.add_argument("--throughput-steps", type=int, default=20)
    g.add_argument("--throughput-batch", type=int, default=32)
    g.add_argument("--throughput-seq-len", type=int, default=128)
    args = p.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    args.work = Path(args.work or ("runs/training-bench-quick" if args.quick else "runs/training-bench"))
    args.out = Path(args.out or (args.work / "training.json" if args.quick else RESULTS / "training.json"))
    return args


class Bench:
    """Shared inputs of the stages: tokenizer, features, training options."""

    def __init__(self, args: argparse.Namespace) -> None:
        from qla_sdk.data import load_tokenizer
        from qla_sdk.pretrained import minilm_path

        self.args = args
        self.model_path = Path(args.model) if args.model else minilm_path()
        self.tokenizer = load_tokenizer(self.model_path)
        self.bf16 = {"auto": None, "on": True, "off": False}[args.bf16]
        self._sst2 = None

    def train_config(self, folder: Path, epochs: int, lr: float, **overrides):
        from qla_sdk.train import TrainConfig
        from qla_sdk.train.checkpointing import latest_checkpoint

        a = self.args
        options = dict(batch_size=a.batch_size, seed=a.seed, bf16=self.bf16, checkpoint_every=a.checkpoint_every)
        resume = latest_checkpoint(folder / "train") is not None  # a killed stage continues where it stopped
        options.update(max_steps=a.max_steps, resume=resume, **overrides)
        return TrainConfig(folder / "train", epochs=epochs, lr=lr, **options)

    def sst2(self) -> tuple:
        """(train features, dev features, label names), each subset deterministic."""
        if self._sst2 is None:
            from qla_sdk.data import classification_features, load_classification

            folder = Path(self.args.data) / "glue" / "SST-2"
            train = load_classification(folder, "train")
            dev = load_classification(folder, "validation", label_names=train.label_names)
            length = self.args.sst2_max_length
            train_features = subset(classification_features(train, self.tokenizer, length), self.args.sst2_train_limit)
            dev_features = subset(classification_features(dev, self.tokenizer, length), self.args.sst2_dev_limit)
            self._sst2 = (train_features, dev_features, list(train.label_names))
        return self._sst2

    def teacher(self):
        from qla_sdk.modeling import from_pretrained

        return from_pretrained(self.args.work / "sst2_finetune" / "train" / "final")


def subset(features, limit: int, seed: int = 0):
    """A fixed random subset of ``limit`` rows (all when ``limit`` is 0 or larger than the data)."""
    if not limit or limit >= len(features):
        return features
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[:limit]
    return features.subset(sorted(order.tolist()))


def run_stage(folder: Path, body: Callable[[Path], dict]) -> dict:
    done = folder / "stage.json"
    if done.is_file():
        print(f"== {folder.name}: done before, reusing {done}", flush=True)
        return json.loads(done.read_text())
    print(f"== {folder.name}", flush=True)
    started = time.perf_counter()
    figures = body(folder)
    figures["stage_wall_s"] = round(time.perf_counter() - started, 1)
    write_json_atomic(done, figures)
    print(f"== {folder.name}: {figures}", flush=True)
    return figures


# ---------------------------------------------------------------------------------------------------- stages


def sst2_finetune(bench: Bench, folder: Path) -> dict:
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.train.finetune import finetune

    train_features, dev, labels = bench.sst2()
    model = from_pretrained(bench.model_path, task=SST2, labels=labels)
    config = bench.train_config(folder, bench.args.finetune_epochs, bench.args.finetune_lr)
    result = finetune(model, train_features, dev, SST2, config, tokenizer=bench.tokenizer)
    return {
        "finetune_dev_acc": result.metrics["accuracy"],
        **train_figures("finetune", result, len(train_features)),
    }


def sst2_lat(bench: Bench, folder: Path) -> dict:

    train_features, dev, _ = bench.sst2()
    train_features = subset(train_features, bench.args.lat_train_limit, seed=1)
    model = bench.teacher()
    config = bench.train_config(folder, bench.args.lat_epochs, bench.args.lat_lr)
    result = lat_stage(model, train_features, dev, config, bench)
    return {
        "lat_full_dev_acc": result.metrics["accuracy"],
        **train_figures("lat", result, len(train_features)),
    }


def half_length_accuracies(bench: Bench) -> dict:
    """Dev accuracy of the teacher (no LAT) and the LAT model at the half length config. Not cached in a stage, so
    a changed --half-length-config never meets a stale figure."""
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.train import evaluate

    _, dev, _ = bench.sst2()
    half = bench.args.half_length_config
    lat_model = from_pretrained(bench.args.work / "sst2_lat" / "train" / "final")
    return {
        "nolat_half_dev_acc": evaluate(bench.teacher(), dev, SST2, length_config=half)["accuracy"],
        "lat_half_dev_acc": evaluate(lat_model, dev, SST2, length_config=half)["accuracy"],
    }


def lat_stage(model, train_features, dev, config, bench: Bench):
    """Length-adaptive training: LengthDrop + LayerDrop + the sandwich rule with in-place distillation."""
    from qla_sdk.train.length_drop import LatConfig, lat_train

    lat = LatConfig(
        length_drop_prob=bench.args.length_drop_prob,
        layer_drop_prob=bench.args.layer_drop_prob,
        num_sandwich=bench.args.num_sandwich,
    )
    return lat_train(model, train_features, dev, SST2, lat, config, tokenizer=bench.tokenizer)


def sst2_student(bench: Bench, folder: Path, distilled: bool) -> dict:
    from qla_sdk.train.finetune import finetune
    from qla_sdk.train.student import parse_layers, student_from_layers

    train_features, dev, _ = bench.sst2()
    teacher = bench.teacher()
    student = student_from_layers(teacher, parse_layers(bench.args.student_layers))
    config = bench.train_config(folder, bench.args.student_epochs, bench.args.student_lr)
    if distilled:
        result = distill_stage(teacher, student, train_features, dev, config, bench)
    else:
        result = finetune(student, train_features, dev, SST2, config, tokenizer=bench.tokenizer)
    name = "student_distilled" if distilled else "student_plain"
    return {f"{name}_dev_acc": result.metrics["accuracy"], **train_figures(name, result, len(train_features))}


def distill_stage(teacher, student, train_features, dev, config, bench: Bench):
    """MiniLM distillation (self-attention relations of the last layer + predictions + task loss)."""
    from qla_sdk.train.distill import DistillConfig, distill

    a = bench.args
    distill_config = DistillConfig(
        version=a.distill_version,
        relation_weight=a.distill_relation_weight,
        prediction_weight=a.distill_prediction_weight,
        task_weight=a.distill_task_weight,
        temperature=a.distill_temperature,
    )
    return distill(teacher, student, train_features, dev, SST2, distill_config, config, tokenizer=bench.tokenizer)


def squad(bench: Bench, folder: Path) -> dict:
    from qla_sdk.data import load_squad, qa_features, split_squad_by_article
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.train.finetune import finetune

    a = bench.args
    split = split_squad_by_article(
        Path(a.data) / "squad_v1.1" / "dev-v1.1.json", folder / "train.json", folder / "eval.json", 0.8
    )
    train_examples = load_squad(folder / "train.json")
    eval_examples = load_squad(folder / "eval.json")
    train_examples = limit_examples(train_examples, a.squad_train_limit)
    eval_examples = limit_examples(eval_examples, a.squad_eval_limit)
    train_features = qa_features(train_examples, bench.tokenizer, a.squad_max_length, a.squad_doc_stride, True)
    eval_features = qa_features(eval_examples, bench.tokenizer, a.squad_max_length, a.squad_doc_stride)
    model = from_pretrained(bench.model_path, task=QA)
    config = bench.train_config(folder, a.squad_epochs, a.squad_lr)
    result = finetune(
        model,
        train_features,
        eval_features,
        QA,
        config,
        eval_examples=eval_examples,
        tokenizer=bench.tokenizer,
        extra_metadata={"max_length": a.squad_max_length},
    )
    return {
        "em": result.metrics["exact_match"],
        "f1": result.metrics["f1"],
        "split": split,
        "train_questions": len(train_examples),
        "eval_questions": len(eval_examples),
        "eval_features": len(eval_features),
        **train_figures("finetune", result, len(train_features)),
    }


def throughput(bench: Bench, folder: Path) -> dict:
    """Training samples/s at a fixed shape; a short warm-up run first so allocation and first-call costs stay out."""
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.train import TrainConfig, cpu_supports_bf16, task_loss_fn, train

    a = bench.args
    g = torch.Generator().manual_seed(0)
    vocab = bench.tokenizer.vocab_size
    batch = {
        "input_ids": torch.randint(1000, vocab, (a.throughput_batch, a.throughput_seq_len), generator=g),
        "attention_mask": torch.ones(a.throughput_batch, a.throughput_seq_len, dtype=torch.long),
        "token_type_ids": torch.zeros(a.throughput_batch, a.throughput_seq_len, dtype=torch.long),
        "labels": torch.randint(0, 2, (a.throughput_batch,), generator=g),
    }
    figures = {"batch": a.throughput_batch, "seq_len": a.throughput_seq_len, "steps": a.throughput_steps}
    figures["cpu_has_native_bf16"] = cpu_supports_bf16()
    for name, bf16 in (("fp32", False), ("bf16", True)):
        model = from_pretrained(bench.model_path, task=SST2, num_labels=2)
        for run, steps in (("warmup", 2), ("timed", a.throughput_steps)):
            config = TrainConfig(
                folder / f"{name}-{run}", max_steps=steps, bf16=bf16, checkpoint_every=0, progress=False, lr=1e-5
            )
            result = train(model, lambda epoch, n=steps: [batch] * n, task_loss_fn(SST2), config)
        figures[f"{name}_samples_per_s"] = round(result.samples_per_s, 2)
    figures["bf16_speedup"] = round(figures["bf16_samples_per_s"] / figures["fp32_samples_per_s"], 3)
    return figures


# ---------------------------------------------------------------------------------------------------- helpers


def limit_examples(examples: list, limit: int) -> list:
    """The first ``limit`` questions in article order (whole paragraphs stay together better than a sample)."""
    return examples[:limit] if limit else examples


def train_figures(name: str, result, rows: int) -> dict:
    return {
        f"{name}_train_rows": rows,
        f"{name}_steps": result.steps,
        f"{name}_train_s": round(result.wall_time_s, 1),
        f"{name}_samples_per_s": round(result.samples_per_s, 2),
        f"{name}_train_loss": result.metrics["train_loss"],
        f"{name}_bf16": result.bf16,
    }


def report(sst2: dict, squad_figures: dict, speed: dict, args: argparse.Namespace) -> str:
    pct = lambda x: f"{100 * x:.2f}"  # noqa: E731
    rows = [
        ["SST-2 dev accuracy %", "fine-tuned MiniLM-L6-H384 (teacher), full length", pct(sst2["finetune_dev_acc"])],
        ["", f"teacher at half length {sst2['half_length_config']}, no LAT", pct(sst2["nolat_half_dev_acc"])],
        ["", "after LAT, full length", pct(sst2["lat_full_dev_acc"])],
        ["", "after LAT, half length", pct(sst2["lat_half_dev_acc"])],
        [
            "",
            f"{sst2['student_layers']} student, MiniLM {args.distill_version} distilled",
            pct(sst2["student_distilled_dev_acc"]),
        ],
        ["", f"{sst2['student_layers']} student, task loss only", pct(sst2["student_plain_dev_acc"])],
        ["SQuAD v1.1 (20% of dev articles)", "exact match", f"{squad_figures['em']:.2f}"],
        ["", "F1", f"{squad_figures['f1']:.2f}"],
        [
            "training samples/s",
            f"fp32, batch {speed['batch']} x {speed['seq_len']} tokens",
            speed["fp32_samples_per_s"],
        ],
        ["", "bf16 autocast", speed["bf16_samples_per_s"]],
    ]
    table = markdown_table(["benchmark", "setting", "value"], rows)
    notes = (
        f"\n\nHalf length config: ratios of each input's length, {sst2['half_macs_fraction']:.1%} of full-length "
        f"MACs. SST-2: {sst2['finetune_train_rows']} training sentences, max length {args.sst2_max_length}. "
        f"SQuAD: {squad_figures['train_questions']} training / {squad_figures['eval_questions']} evaluation "
        f"questions, max length {args.squad_max_length}, stride {args.squad_doc_stride}."
    )
    return table + notes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from qla_sdk.modeling import LengthConfig, count_macs, load_config

    bench = Bench(args)
    work = args.work
    started = time.perf_counter()
    sst2: dict = {}
    for name, body in (
        ("sst2_finetune", lambda f: sst2_finetune(bench, f)),
        ("sst2_lat", lambda f: sst2_lat(bench, f)),
        ("sst2_student_distilled", lambda f: sst2_student(bench, f, distilled=True)),
        ("sst2_student_plain", lambda f: sst2_student(bench, f, distilled=False)),
    ):
        figures = run_stage(work / name, body)
        sst2[f"{name.removeprefix('sst2_')}_stage_wall_s"] = figures.pop("stage_wall_s")
        sst2.update(figures)
    sst2.update(half_length_accuracies(bench))
    squad_figures = run_stage(work / "squad", lambda f: squad(bench, f))
    speed = run_stage(work / "throughput", lambda f: throughput(bench, f))

    half = LengthConfig.parse(args.half_length_config)
    config = load_config(bench.model_path)
    sst2["half_length_config"] = list(half.lengths)
    sst2["half_macs_fraction"] = count_macs(config, args.sst2_max_length, half, SST2) / count_macs(
        config, args.sst2_max_length, None, SST2
    )
    sst2["student_layers"] = f"{len(args.student_layers.split(','))}-layer"
    figures = {
        "sst2": sst2,
        "squad": squad_figures,
        "throughput": speed,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "model": str(bench.model_path),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    markdown = report(sst2, squad_figures, speed, args)
    write_results(args.out, figures, markdown, [Path(sys.executable).name, *sys.argv])
    print(markdown)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
