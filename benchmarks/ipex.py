"""The IPEX backend, actually run: its rows of the suite and its accuracy, in IPEX's own environment.

    make ipex-env
    .venv-ipex/bin/python benchmarks/ipex.py --search-model demo_output/search/model

1. Speed: the suite's rows minilm-fp32-eager, minilm-int8-ipex, lat-minilm-fp32-eager and quala-minilm-int8-ipex at
   seq 384 and 128, batch 1, each in its own process as `qla-bench` runs them (same fields as bench.json), written
   to benchmarks/results/bench_ipex.json (+ .md, charts).
2. Accuracy: a trained length-adaptive model with its searched length config (the demo's search model will do) on
   SST-2 dev, FP32 (an fp32 artifact: the eager runtime) against IPEX static int8 (uint8 asymmetric activations,
   int8 per-channel weights, calibrated on training sentences, the length config inside the TorchScript graph),
   both served by ``qla_sdk.load``. Added to bench_ipex.json under "accuracy".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from qla_bench.script import run_script

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SST2 = REPO / "qla_sdk" / "resources" / "sst2"
ROWS = ("minilm-fp32-eager", "minilm-int8-ipex", "lat-minilm-fp32-eager", "quala-minilm-int8-ipex")


def accuracy(search_model: Path, work: Path, calibration_samples: int, max_length: int) -> dict:
    import qla_sdk
    from qla_sdk.data import accuracy as score
    from qla_sdk.data import load_classification, load_tokenizer
    from qla_sdk.deploy import export_model
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.quantize import QuantConfig

    model = from_pretrained(search_model).eval()
    tokenizer = load_tokenizer(search_model)
    train = load_classification(SST2 / "train.tsv")
    rows = [{"input_ids": tokenizer(t[0], truncation=True, max_length=max_length)["input_ids"]} for t in train.texts]
    dev = load_classification(SST2 / "dev.tsv", label_names=[model.config.id2label[i] for i in range(2)])
    figures = {}
    for backend in ("fp32", "ipex"):
        folder = work / f"{backend}-artifact"
        if not folder.exists():
            config = QuantConfig(backend=backend, calibration_samples=calibration_samples, seq_lens=(max_length,))
            export_model(model, folder, tokenizer, config=config, max_length=max_length, calibration=rows)
        predictor = qla_sdk.load(folder, trust_torchscript=backend == "ipex", max_batch_size=32)
        predicted = predictor.predict([t[0] for t in dev.texts])
        index = {name: i for i, name in enumerate(predictor.labels)}
        figures[f"{backend}_dev_acc"] = round(100 * score([index[p["label"]] for p in predicted], dev.labels), 2)
    figures["drop_points"] = round(figures["fp32_dev_acc"] - figures["ipex_dev_acc"], 2)
    figures.update(
        model=str(search_model),
        length_config=str(model.length_config),
        dev_sentences=len(dev.texts),
        calibration_sentences=calibration_samples,
        max_length=max_length,
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search-model", type=Path, required=True, help="a searched model folder (qla search output)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_ipex.json")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep builds here (default: a temp dir)")
    parser.add_argument("--calibration-samples", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=64, help="padded length of the SST-2 graph (the demo's)")
    parser.add_argument("--skip-speed", action="store_true", help="accuracy only")
    args = parser.parse_args(argv)

    import intel_extension_for_pytorch as ipex
    import torch

    from qla_bench.suite import BenchSettings, run_suite
    from qla_sdk.io import write_bytes_atomic, write_json_atomic

    print(f"torch {torch.__version__}, IPEX {ipex.__version__}", file=sys.stderr)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="qla-ipex-"))
    if not args.skip_speed:
        settings = BenchSettings(
            seq_lens=(384, 128), batch_sizes=(1,), int8_backends=("ipex",), rows=ROWS, out=args.out,
            work_dir=work / "suite",
        )  # fmt: skip
        run_suite(settings, command=[Path(sys.executable).name, *sys.argv])
    figures = accuracy(args.search_model, work / "accuracy", args.calibration_samples, args.max_length)
    record = json.loads(args.out.read_text()) if args.out.exists() else {}
    record["accuracy"] = figures
    write_json_atomic(args.out, record)
    markdown = args.out.with_suffix(".md")
    text = (markdown.read_text().rstrip() if markdown.exists() else "") + (
        f"\n\nAccuracy (SST-2 dev, {figures['dev_sentences']} sentences, `{figures['model']}` with length config "
        f"{figures['length_config']}): FP32 {figures['fp32_dev_acc']}%, IPEX int8 {figures['ipex_dev_acc']}% "
        f"({figures['drop_points']:+.2f} points lost).\n"
    )
    write_bytes_atomic(markdown, text.encode())
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
