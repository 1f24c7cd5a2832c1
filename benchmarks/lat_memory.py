"""Peak memory and step time of length-adaptive training on SQuAD: sandwich terms back-propagated in turn or summed.

    python benchmarks/lat_memory.py [--steps 20] [--rounds 2] [--batch-size 32] [--max-length 384]

``lat_train``'s sandwich loss is ``LossTerms``: the loop back-propagates the full model's term, then each random
sub-model's, then the smallest one's, so one sub-model's activations are held at a time. "summed" is the same loss
added up first and back-propagated once (what the SDK did before): every sub-model's graph is alive at the end.
Both run the pretrained MiniLM-L6-H384 with a QA head on the training articles of the SQuAD v1.1 dev file (split
by article, 80/20, seed 0, as ``squad_minilm.yaml`` does), batch 32, length 384, stride 128, LengthDrop 0.2,
LayerDrop 0.2, 2 random sub-models, the model itself as the frozen external teacher (as the recipe passes its
fine-tuned model), fp32. Each run is a fresh process (its VmHWM is its own peak), the two modes alternate in
``--rounds`` rounds, and every run trains the same steps on the same batches.

Writes benchmarks/results/lat_memory.json (+ .md): per run the peak resident memory (VmHWM), the median and the
largest of VmRSS sampled every 0.5 s while training, seconds per step and the training loss (the same in both
modes up to float rounding: the gradients are equal).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from qla_bench.script import run_script

REPO = Path(__file__).resolve().parent.parent
MODES = ("in_turn", "summed")


def _memory_kb() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":")
            fields[name] = int(value.split()[0])
    return fields


def measure_one(mode: str, args: argparse.Namespace, work: Path) -> dict:
    """Train ``args.steps`` LAT steps in this process with ``mode``; its memory and time."""
    import copy

    import torch

    from qla_sdk.data import load_squad, load_tokenizer, qa_features
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.pretrained import minilm_path
    from qla_sdk.train import LossTerms, TrainConfig
    from qla_sdk.train.distill import train_on_features
    from qla_sdk.train.length_drop import LatConfig, sandwich_loss_fn

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # the QA head starts random: the same head in every run, so the modes' losses must agree
    model = from_pretrained(minilm_path(), task="question-answering")
    teacher = copy.deepcopy(model)
    tokenizer = load_tokenizer(minilm_path())
    features = qa_features(
        load_squad(work / "squad_train.json"), tokenizer, args.max_length, args.doc_stride, training=True
    )
    lat = LatConfig(length_drop_prob=0.2, layer_drop_prob=0.2, num_sandwich=2, teacher_weight=0.5)
    in_turn = sandwich_loss_fn(model.num_layers, "question-answering", lat, teacher)

    def summed(module, batch) -> tuple[torch.Tensor, dict]:
        loss: LossTerms = in_turn(module, batch)
        return sum(term() for term in loss.terms), loss.extras

    config = TrainConfig(
        work / f"run-{mode}-{time.monotonic_ns()}",
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=5e-5,
        bf16=False,
        checkpoint_every=0,
        progress=False,
        seed=42,
    )
    samples, done = [], threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            samples.append(_memory_kb()["VmRSS"])

    before = _memory_kb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = train_on_features(model, in_turn if mode == "in_turn" else summed, features, config)
    finally:
        done.set()
        sampler.join()
    after = _memory_kb()
    return {
        "mode": mode,
        "steps": result.steps,
        "seconds_per_step": round(result.wall_time_s / result.steps, 3),
        "train_loss": round(result.metrics["train_loss"], 5),
        "rss_before_training_gb": round(before["VmRSS"] / 2**20, 2),
        "peak_rss_gb": round(after["VmHWM"] / 2**20, 2),
        "median_rss_gb": round(statistics.median(samples) / 2**20, 2) if samples else None,
        "max_sampled_rss_gb": round(max(samples) / 2**20, 2) if samples else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad", type=Path, default=REPO.parent / "shared" / "data" / "squad_v1.1" / "dev-v1.1.json")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--doc-stride", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "lat_memory.json")
    parser.add_argument("--one", nargs=3, metavar=("MODE", "WORK", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        mode, work, result = args.one
        Path(result).write_text(json.dumps(measure_one(mode, args, Path(work))))
        return 0

    from qla_bench.report import publish_table
    from qla_sdk.data.squad import split_squad_by_article

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        split = split_squad_by_article(args.squad, work / "squad_train.json", work / "squad_eval.json", 0.8, 0)
        for round_index in range(args.rounds):
            order = MODES if round_index % 2 == 0 else MODES[::-1]
            for mode in order:
                result = work / f"{mode}-{round_index}.json"
                command = [sys.executable, __file__, "--one", mode, str(work), str(result)]
                for flag in ("steps", "batch_size", "max_length", "doc_stride", "threads"):
                    command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
                subprocess.run(command, check=True)
                rows.append({"round": round_index, **json.loads(result.read_text())})
                print(json.dumps(rows[-1]), flush=True)
    by_mode = {mode: [r for r in rows if r["mode"] == mode] for mode in MODES}
    summary = {
        mode: {
            "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
            "median_seconds_per_step": statistics.median(r["seconds_per_step"] for r in runs),
        }
        for mode, runs in by_mode.items()
    }
    figures = {
        "train_questions": split["train"]["questions"],
        "settings": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "doc_stride": args.doc_stride,
            "threads": args.threads,
            "length_drop_prob": 0.2,
            "layer_drop_prob": 0.2,
            "num_sandwich": 2,
            "teacher": "the pretrained model itself, frozen",
            "precision": "fp32",
        },
        "rows": rows,
        "summary": summary,
        "peak_ratio_summed_over_in_turn": round(
            summary["summed"]["peak_rss_gb"] / summary["in_turn"]["peak_rss_gb"], 2
        ),
    }
    headers = ["round", "mode", "peak RSS GB", "median RSS GB", "s/step", "train loss"]
    table = [
        [r["round"], r["mode"], r["peak_rss_gb"], r["median_rss_gb"], r["seconds_per_step"], r["train_loss"]]
        for r in rows
    ]
    publish_table(args.out, figures, headers, table)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
