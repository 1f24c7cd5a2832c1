"""Reproduce benchmarks/results/quantize.json: int8 (INC + Inductor, NNCF + OpenVINO) of an SST-2 length-adaptive
model against fp32: size, dev accuracy, batch-1 latency with and without the length config at 128 and 384 tokens,
and unpadded (ratio config, graphs every 64 tokens) against padded-to-384 inference on real SQuAD-length inputs.

    python benchmarks/quantize.py --model runs/sst2-lat --length-config 115,98,80,60,40,20 --lc-seq-len 128 \
        --sst2-train data/SST-2/train.tsv --sst2-dev data/SST-2/dev.tsv --squad-dev data/dev-v1.1.json

A token-count length config searched at ``--lc-seq-len`` runs as is at that length and as its ratios at the
other one. Each export is a real artifact under ``--work`` (kept, so sizes can be inspected).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from qla_bench import measure_latency, write_results
from qla_bench.script import run_script
from qla_sdk.backends import get_backend
from qla_sdk.backends.eager import EagerRunner
from qla_sdk.data import classification_features, load_classification, load_squad, load_tokenizer
from qla_sdk.deploy import export_model, read_manifest
from qla_sdk.deploy.evaluation import classification_evaluator
from qla_sdk.io import markdown_table
from qla_sdk.modeling import LengthConfig, from_pretrained
from qla_sdk.quantize import QuantConfig, default_seq_lens

EMBEDDINGS_NOTE = (
    "word embedding int8 (weight-only, one fp32 scale per row); position/token-type embeddings, LayerNorm and "
    "biases fp32; every encoder Linear int8 (weights per-channel symmetric, activations uint8 with zero point); "
    "the task head int8 with INC, fp32 with NNCF/OpenVINO"
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="SST-2 LAT-trained checkpoint folder")
    p.add_argument("--length-config", required=True)
    p.add_argument("--lc-seq-len", type=int, default=128, help="sequence length the length config was searched at")
    p.add_argument("--tokenizer", default=None, help="default: the model folder")
    p.add_argument("--sst2-train", required=True, help="calibration TSV")
    p.add_argument("--sst2-dev", required=True)
    p.add_argument("--squad-dev", required=True, help="SQuAD v1.1 dev json: real input lengths for unpadded runs")
    p.add_argument("--seq-lens", default="128,384")
    p.add_argument("--backends", default="inductor,openvino")
    p.add_argument("--calibration-samples", type=int, default=300)
    p.add_argument("--dev-limit", type=int, default=None)
    p.add_argument("--squad-inputs", type=int, default=100)
    p.add_argument("--runs", type=int, default=50, help="timed runs per row and round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds; each figure is their median")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--work", default="runs/bench-quantize")
    p.add_argument("--out", default="benchmarks/results/quantize.json")
    return p.parse_args(argv)


def mb(paths) -> float:
    return round(sum(p.stat().st_size for p in paths) / 2**20, 2)


def config_at(lc: LengthConfig, seq_len: int, searched_at: int) -> LengthConfig:
    return lc if lc.is_ratio or seq_len == searched_at else lc.to_ratios(searched_at)


def squad_rows(path: str, tokenizer, limit: int) -> list[list[int]]:
    examples = load_squad(path)[:limit]
    encoded = tokenizer(
        [e.question for e in examples], [e.context for e in examples], truncation="only_second", max_length=384
    )
    return encoded["input_ids"]


def padded(ids: list[int], seq_len: int, pad: int):
    n = min(len(ids), seq_len)
    x = np.full((1, seq_len), pad, dtype=np.int64)
    x[0, :n] = ids[:n]
    mask = (np.arange(seq_len) < n).astype(np.int64)[None]
    return x, mask, np.zeros_like(x)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    model = from_pretrained(args.model, task="text-classification").eval()
    tokenizer = load_tokenizer(args.tokenizer or args.model)
    pad = tokenizer.pad_token_id or 0
    lc = LengthConfig.parse(args.length_config)
    seq_lens = [int(s) for s in args.seq_lens.split(",")]
    backends = args.backends.split(",")
    train = load_classification(args.sst2_train, "train")
    train.texts, train.labels = train.texts[: args.calibration_samples], train.labels[: args.calibration_samples]
    calibration = [
        {"input_ids": r["input_ids"], "token_type_ids": r.get("token_type_ids")}
        for r in map(classification_features(train, tokenizer, max(seq_lens)).row, range(len(train.texts)))
    ]
    dev = load_classification(
        args.sst2_dev, "validation", label_names=[model.config.id2label[0], model.config.id2label[1]]
    )
    dev.texts, dev.labels = dev.texts[: args.dev_limit], dev.labels[: args.dev_limit]
    dev_features = classification_features(dev, tokenizer, args.lc_seq_len)
    dev_rows = [{"input_ids": dev_features.input_ids[i]} for i in range(len(dev_features))]
    evaluate = classification_evaluator(dev_rows, dev.labels, pad)
    squad = squad_rows(args.squad_dev, tokenizer, args.squad_inputs)
    figures: dict = {
        "length_config": {"lengths": list(lc.lengths), "searched_at": args.lc_seq_len},
        "embeddings": EMBEDDINGS_NOTE,
        "latency_ms": {},
        "batch_size": 1,
    }
    latency = figures["latency_ms"]

    # Every latency is taken after all builds, in interleaved rounds (median of the per-round medians), so load
    # from other tenants of the machine hits every row alike; one pass per row right after its build gave the same
    # int8 OpenVINO graph 12.7 ms in one run and 14.3 ms in the next.
    timers: dict[str, Callable[[], object]] = {}

    def timed(name: str, runner, seq_len: int) -> None:
        inputs = padded(squad[0] * (seq_len // max(1, len(squad[0])) + 1), seq_len, pad)  # all real tokens
        timers[name] = lambda: runner.run(*inputs)

    full_model, lc_model = copy.copy(model), copy.copy(model)  # the weights shared; each runs its own length config
    full_model.length_config, lc_model.length_config = None, lc
    for seq_len in seq_lens:
        timed(f"fp32_eager_full_{seq_len}", EagerRunner(full_model, bf16=False), seq_len)
    figures["fp32_size_mb"] = mb(Path(args.model).glob("*.safetensors"))
    figures["fp32_dev_acc"] = evaluate(EagerRunner(lc_model, bf16=False).run, args.lc_seq_len)

    for backend in backends:
        for seq_len in seq_lens:
            for variant, config in (("full", None), ("lc", config_at(lc, seq_len, args.lc_seq_len))):
                out = work / f"{backend}_{variant}_{seq_len}"
                start = time.perf_counter()
                export_model(
                    model,
                    out,
                    tokenizer,
                    length_config=config,
                    max_length=seq_len,
                    calibration=calibration,
                    config=QuantConfig(
                        backend=backend, seq_lens=(seq_len,), calibration_samples=args.calibration_samples
                    ),
                )
                manifest = read_manifest(out)
                runner = get_backend(backend).load(manifest.model_dir, manifest.data["model"], args.threads)
                timed(f"int8_{backend}_{variant}_{seq_len}", runner, seq_len)
                print(f"{backend} {variant} {seq_len}: built in {time.perf_counter() - start:.0f} s", flush=True)
                if variant == "lc" and seq_len == args.lc_seq_len:
                    key = "int8_dev_acc" if backend == "inductor" else f"int8_{backend}_dev_acc"
                    figures[key] = evaluate(lambda *x, r=runner: r.run(*x), seq_len)
                    size_key = "int8_size_mb" if backend == "inductor" else f"int8_{backend}_size_mb"
                    figures[size_key] = mb(p for p in manifest.model_dir.iterdir() if p.is_file())

    rounds: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(args.rounds):
        for name, run in timers.items():
            rounds[name].append(round(measure_latency(run, runs=args.runs, warmup=5).p50_ms, 3))
    latency.update({name: statistics.median(values) for name, values in rounds.items()})
    figures["latency_rounds_ms"] = rounds
    print({name: latency[name] for name in timers}, flush=True)

    # Unpadded (ratio config, graphs every 64 tokens) vs padded to 384, batch 1, real SQuAD question+context.
    ratio = lc.to_ratios(args.lc_seq_len)
    unpadded_dir, padded_dir = work / "openvino_ratio_buckets", work / "openvino_ratio_384"
    for out, buckets in ((unpadded_dir, default_seq_lens(384, True)), (padded_dir, (384,))):
        export_model(
            model,
            out,
            tokenizer,
            length_config=ratio,
            max_length=384,
            calibration=calibration,
            config=QuantConfig(backend="openvino", seq_lens=buckets, calibration_samples=args.calibration_samples),
        )
    for key, out in (("unpadded_squad_ms", unpadded_dir), ("padded_squad_ms", padded_dir)):
        manifest = read_manifest(out)
        runner = get_backend("openvino").load(manifest.model_dir, manifest.data["model"], args.threads)
        times = []
        for ids in squad:
            graph = next(s for s in runner.seq_lens if s >= len(ids))
            inputs = padded(ids, graph, pad)
            times.append(measure_latency(lambda inputs=inputs, r=runner: r.run(*inputs), runs=5, warmup=1).p50_ms)
        figures[key] = round(float(np.mean(times)), 3)
    figures["squad_inputs"] = {
        "count": len(squad),
        "mean_tokens": round(float(np.mean([len(s) for s in squad])), 1),
        "backend": "openvino int8",
        "length_config_ratios": list(ratio.lengths),
    }

    rows = [[name, value] for name, value in latency.items()]
    rows += [[k, figures[k]] for k in figures if k.endswith(("_size_mb", "_squad_ms"))]
    rows += [[k, f"{100 * figures[k]:.2f}%"] for k in figures if k.endswith("_dev_acc")]
    table = markdown_table(["figure", "value (ms, MB or dev accuracy)"], rows)
    record = write_results(args.out, figures, table + f"\n\nEmbeddings: {EMBEDDINGS_NOTE}.\n")
    print(table)
    return record


if __name__ == "__main__":
    sys.exit(run_script(main))
