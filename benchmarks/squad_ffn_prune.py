"""How much F1 the fine-tuned SQuAD MiniLM keeps when its feed-forward blocks are made narrower (no recovery training).

    python benchmarks/squad_ffn_prune.py --teacher WORK/run/teacher/final --train WORK/squad_train.json \
        --eval WORK/squad_eval.json [--widths 1024,768] [--questions 500] [--save-to DIR]

A route to the 5x bar of ``squad_recipe.md`` not tried before: on AMX the feed-forward FCs are most of the int8
graphs' FC time. Uniform pruning keeps a standard BERT config (``intermediate_size`` = width), so a pruned model runs
the whole chain unchanged. Each layer keeps its ``width`` neurons of highest importance: mean |GELU(ffn_in(x))| over
the real tokens of the first ``--importance-questions`` training questions, times the norm of the neuron's
``ffn_out`` column. F1 at full length, FP32, on the first ``--questions`` evaluation questions, for the model as
fine-tuned and for each width. ``--save-to`` keeps the pruned checkpoints (e.g. for ``qla finetune`` as recovery).
Writes benchmarks/results/squad_ffn_prune.json and .md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from qla_bench.script import run_script

RESULTS = Path(__file__).resolve().parent / "results"


def importance(model, features, batch_size: int = 16) -> list[torch.Tensor]:
    """Per layer, mean |GELU activation| of each FFN neuron over real tokens, times its output weights' norm."""
    from qla_sdk.backends import pad_rows

    sums = [torch.zeros(model.config.intermediate_size) for _ in model.encoder.layers]
    tokens = 0
    masks: list[torch.Tensor] = []

    def hook(i: int):
        def record(module, inputs, output):
            real = masks[-1].reshape(-1).bool()
            sums[i].add_(torch.nn.functional.gelu(output).abs().reshape(-1, output.shape[-1])[real].sum(0))

        return record

    handles = [layer.ffn_in.register_forward_hook(hook(i)) for i, layer in enumerate(model.encoder.layers)]
    rows = [features.row(i) for i in range(len(features))]
    longest = max(len(r["input_ids"]) for r in rows)
    try:
        with torch.inference_mode():
            for ids, mask, types in pad_rows(rows, longest, 0, batch_size):
                masks.append(mask)
                tokens += int(mask.sum())
                model(ids, mask, types, None)
    finally:
        for handle in handles:
            handle.remove()
    return [s / tokens * layer.ffn_out.weight.norm(dim=0) for s, layer in zip(sums, model.encoder.layers, strict=True)]


def narrowed(model, scores: list[torch.Tensor], width: int):
    """A copy of ``model`` whose every FFN keeps its ``width`` most important neurons, in their order."""
    import copy

    from qla_sdk.modeling import TaskModel

    config = copy.deepcopy(model.config)
    config.intermediate_size = width
    small = TaskModel(config, model.task)
    state = model.state_dict()
    for i, score in enumerate(scores):
        keep = score.topk(width).indices.sort().values
        prefix = f"encoder.layers.{i}."
        state[prefix + "ffn_in.weight"] = state[prefix + "ffn_in.weight"][keep]
        state[prefix + "ffn_in.bias"] = state[prefix + "ffn_in.bias"][keep]
        state[prefix + "ffn_out.weight"] = state[prefix + "ffn_out.weight"][:, keep]
    small.load_state_dict(state)
    return small.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="the fine-tuned QA checkpoint (the recipe's teacher stage)")
    parser.add_argument("--train", required=True, help="SQuAD-format training file (importance is measured on it)")
    parser.add_argument("--eval", required=True, help="SQuAD-format evaluation file")
    parser.add_argument("--widths", default="1024,768", help="FFN widths to keep, e.g. 1024,768")
    parser.add_argument("--questions", type=int, default=500, help="evaluation questions scored (first N)")
    parser.add_argument("--importance-questions", type=int, default=256, help="training questions for importance")
    parser.add_argument("--save-to", default=None, help="folder for the pruned checkpoints (ffn<width>/)")
    parser.add_argument("--out", default=str(RESULTS / "squad_ffn_prune.json"))
    args = parser.parse_args(argv)

    from qla_bench.report import publish_table
    from qla_sdk.data import load_squad, load_tokenizer, qa_features
    from qla_sdk.modeling import from_pretrained, save_pretrained
    from qla_sdk.train import evaluate

    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    model = from_pretrained(args.teacher, task="question-answering").eval()
    if not widths or any(not 1 <= w < model.config.intermediate_size for w in widths):
        raise ValueError(f"--widths {args.widths}: give widths in 1..{model.config.intermediate_size - 1}")
    tokenizer = load_tokenizer(args.teacher)
    start = time.perf_counter()
    train = load_squad(args.train)[: args.importance_questions]
    scores = importance(model, qa_features(train, tokenizer, 384, 128))
    examples = load_squad(args.eval)[: args.questions]
    features = qa_features(examples, tokenizer, 384, 128)
    rows = [{"ffn_width": model.config.intermediate_size, **evaluate(model, features, model.task, examples)}]
    for width in widths:
        small = narrowed(model, scores, width)
        rows.append({"ffn_width": width, **evaluate(small, features, model.task, examples)})
        if args.save_to:
            save_pretrained(small, Path(args.save_to) / f"ffn{width}", tokenizer=tokenizer, extra={"max_length": 384})
    figures = {
        "teacher": str(args.teacher),
        "eval_questions": len(examples),
        "importance_questions": len(train),
        "recovery_training": None,
        "rows": rows,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    table = [[r["ffn_width"], round(r["f1"], 2), round(r["exact_match"], 2)] for r in rows]
    publish_table(args.out, figures, ["FFN width", "F1", "EM"], table)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
