"""`qla demo`: a small real run on the pretrained MiniLM (the full recipe replaces it once every stage exists)."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the SDK on the embedded default (pretrained MiniLM-L6-H384)")
    p.add_argument("--seq-len", type=int, default=384)
    p.add_argument("--length-config", default="269,253,252,202,104,34")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoTokenizer

    from qla_sdk.modeling import count_macs, from_pretrained
    from qla_sdk.pretrained import minilm_path

    if args.threads:
        torch.set_num_threads(args.threads)
    path = minilm_path()
    print(f"pretrained MiniLM-L6-H384 from {path} (sha256 verified)")
    model = from_pretrained(path, task="question-answering").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    question = "Which layer drops tokens?"
    context = " ".join(["Each layer of the length-adaptive encoder keeps only its most significant tokens."] * 40)
    batch = tokenizer(
        question, context, truncation="only_second", max_length=args.seq_len, padding="max_length", return_tensors="pt"
    )
    inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    rows = []
    for name, lc in (("full length", None), ("length config", args.length_config)):
        with torch.inference_mode():
            for _ in range(3):
                model(*inputs, length_config=lc)
            start = time.perf_counter()
            for _ in range(10):
                out = model(*inputs, length_config=lc)
            ms = (time.perf_counter() - start) / 10 * 1000
        macs = count_macs(model.config, args.seq_len, lc)
        rows.append((name, lc or "-", macs, ms, out[0]))
    print(f"{'run':<14} {'length config':<26} {'GMACs':>7} {'ms':>7}")
    for name, lc, macs, ms, _ in rows:
        print(f"{name:<14} {lc!s:<26} {macs / 1e9:7.2f} {ms:7.1f}")
    print(
        f"speed-up {rows[0][3] / rows[1][3]:.2f}x for {rows[0][2] / rows[1][2]:.2f}x fewer MACs; "
        f"start logits cover all {rows[1][4].shape[1]} positions (drop-and-restore)"
    )
    return 0
