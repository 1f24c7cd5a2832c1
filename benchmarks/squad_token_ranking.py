"""Where the SQuAD recipe's accuracy goes when tokens leave early: is it which tokens leave, or that any leave?

    python benchmarks/squad_token_ranking.py --work /path/outside/the/repo [--train-windows 3000]

The length-adaptive MiniLM-L6 of ``squad_recipe.py`` keeps layers 1-2 whole and most of layers 3-4: on this split a
drop before layer 5 costs F1 fast, so the int8 artifact still runs ~3.9 of its 6 layers' worth of tokens and misses
the 5x bar (squad_recipe.md). This asks why, on the fine-tuned teacher (the recipe's teacher stage, FP32, no
length-adaptive training: what the layers know before LAT teaches them to work with fewer tokens). The same per-layer
length configs are run with four ways of ranking the tokens that stay, on every evaluation question:

- ``attention``: PoWER-BERT's significance, the attention a token receives from every real query (the SDK's);
- ``question_attention``: the attention a token receives from the first segment only ([CLS] question [SEP]);
- ``probe``: a linear probe per layer on the layer's input, trained (teacher frozen) on ``--train-windows`` training
  windows to put its softmax mass on the gold answer's tokens; its answer recall per layer is reported;
- ``oracle``: the gold answer's tokens first, then by attention. Not deployable, and not a bound either: keeping the
  answer while distractors leave also narrows the span head's choice, so it can score above full length.

A check first: the study's encoder loop, with the ``attention`` ranker, gives the SDK encoder's outputs.
Resumable as ``squad_student.py`` (split and teacher stage shared with ``squad_recipe.py`` in ``--work``).
Writes benchmarks/results/squad_token_ranking.json and .md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from squad_recipe import RECIPE, RESULTS, SQUAD, split  # beside this file: python puts its folder on the path
from torch import nn

import qla_sdk.modeling.encoder as encoder_module
from qla_bench.script import run_script

# (0-based layer, attention probabilities, layer input, live-token mask, tracked flags) -> a score per token
Ranker = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]

RANKERS = ("attention", "question_attention", "probe", "oracle")
# Ratio configs: the recipe's searched gene (from squad_recipe.json), then ones that drop from earlier layers.
FIXED_CONFIGS = {
    "mid": [1.0, 1.0, 0.7, 0.5, 0.25, 0.12],
    "early": [1.0, 0.8, 0.6, 0.4, 0.2, 0.1],
    "aggressive": [1.0, 0.6, 0.4, 0.25, 0.15, 0.1],
}
RECALL_SHARE = 0.3  # probe recall: windows whose whole answer is among this share of their tokens, by probe score


class RankedEncoder(nn.Module):
    """The reference encoder's loop (``Encoder.forward``) for what this study runs: ratio configs that keep the first
    token, drop-and-restore, no LayerDrop; with the significance replaced by ``rank(layer, probs, x, mask, tracked)``.
    ``tracked`` holds per-token flags (``question``, ``gold``) that follow the selection."""

    def __init__(self, encoder: nn.Module, rank: Ranker, gold: dict[tuple[int, ...], list[int]]) -> None:
        super().__init__()
        self.inner, self.rank, self.gold = encoder, rank, gold

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        length_config=None,
        layer_config: tuple[bool, ...] | None = None,
        output_traces: bool = False,
    ):
        if token_type_ids is None or layer_config is not None or output_traces:
            raise ValueError("the study runs BERT inputs with segment ids, without LayerDrop or traces")
        if length_config is not None and not (length_config.is_ratio and length_config.keep_cls):
            raise ValueError(f"the study runs ratio configs that keep the first token, not {length_config}")
        e = encoder_module  # the reference encoder's own pieces, so the loop differs only in the ranking
        batch, seq_len = input_ids.shape
        mask = attention_mask.to(torch.float32)
        real = [int(n) for n in attention_mask.sum(dim=1)]
        tracked = {
            "question": (token_type_ids == 0).to(torch.float32) * mask,
            "gold": torch.tensor(
                [
                    self.gold[tuple(row[:n].tolist())] + [0] * (seq_len - n)
                    for row, n in zip(input_ids, real, strict=True)
                ],
                dtype=torch.float32,
            ),
        }
        widths = None if length_config is None else length_config.resolve(seq_len)
        x = self.inner.embeddings(input_ids, token_type_ids)
        positions = torch.arange(seq_len).expand(batch, seq_len)
        restore = e._Restore()
        for i, layer in enumerate(self.inner.layers):
            prunes = widths is not None and length_config.drops_at(i, widths[i], x.shape[1])
            mask_in = mask
            context, probs, _ = layer.attend(x, mask, need_probs=prunes)
            if prunes:
                keep = e.ratio_keep_rows(attention_mask.sum(dim=1), length_config.lengths[i])
                index, mask = e.select_tokens(self.rank(i, probs, x, mask, tracked), mask, widths[i], keep)
                tracked = {name: flags.gather(1, index) for name, flags in tracked.items()}
                restore.record(x, positions, mask_in)
                positions = positions.gather(1, index)
                context, x = e.gather_rows(context.flatten(2), index), e.gather_rows(x, index)
            x = layer.feed_forward(layer.attention_output(context, x))
        if not restore.states:
            return e.EncoderOutput(x, [])
        restore.record(x, positions, mask)
        return e.EncoderOutput(restore.result(), [])


def received(probs: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention each token receives from the queries weighted by ``rows``, summed over heads, with the SDK's
    conventions (padding -1, the first token kept): ``encoder.significance`` with other query rows."""
    b, heads, n, _ = probs.shape
    weights = rows.to(probs.dtype)[:, None, None, :].expand(b, heads, 1, n).reshape(b * heads, 1, n)
    score = torch.bmm(weights, probs.reshape(b * heads, n, n)).view(b, heads, n).sum(dim=1)
    return keep_first(torch.where(mask > 0, score, torch.full_like(score, -1.0)), float(heads * n + 1))


def keep_first(score: torch.Tensor, top: float) -> torch.Tensor:
    first = torch.arange(score.shape[1]) == 0
    return torch.where(first.unsqueeze(0), torch.full_like(score, top), score)


def rankers(probes: dict[int, nn.Module]) -> dict[str, Ranker]:
    def attention(i, probs, x, mask, tracked):
        return encoder_module.significance(probs, mask, keep_cls=True)

    def question_attention(i, probs, x, mask, tracked):
        return received(probs, mask * tracked["question"], mask)

    def probe(i, probs, x, mask, tracked):
        z = probes[i](x).squeeze(-1)
        return keep_first(torch.where(mask > 0, z, torch.full_like(z, -1e9)), 1e9)

    def oracle(i, probs, x, mask, tracked):
        return attention(i, probs, x, mask, tracked) + 1e6 * tracked["gold"] * mask

    return {"attention": attention, "question_attention": question_attention, "probe": probe, "oracle": oracle}


def gold_tokens(features, examples) -> dict[tuple[int, ...], list[int]]:
    """Per window (keyed by its token ids): 1 for the context tokens that overlap a gold answer. Windows with the same
    ids (the same question asked twice of a paragraph) get the union of their answers."""
    gold: dict[tuple[int, ...], list[int]] = {}
    for i, ids in enumerate(features.input_ids):
        answers = examples[features.example_index[i]].answers
        spans = [(a["answer_start"], a["answer_start"] + len(a["text"])) for a in answers]
        flags = [
            int(o is not None and any(o[0] < end and o[1] > start for start, end in spans))
            for o in features.offset_mapping[i]
        ]
        earlier = gold.get(tuple(ids), [0] * len(flags))
        gold[tuple(ids)] = [max(a, b) for a, b in zip(earlier, flags, strict=True)]
    return gold


def train_probes(model, features, windows: int, seed: int = 0) -> tuple[dict[int, nn.Module], dict[int, float]]:
    """One linear probe per layer but the first (keys 1..L-1, 0-based: layer i's input is layer i-1's output), the
    teacher frozen, trained on training windows that hold their answer: the loss is minus the log of the softmax mass
    (over the window's tokens but the first) on the answer's tokens. Returns the probes and each one's recall on those
    windows."""
    from qla_sdk.data import batches

    torch.manual_seed(seed)
    holding = [i for i in range(len(features.input_ids)) if features.start_positions[i] > 0]
    subset = features.subset(sorted(random.Random(seed).sample(holding, min(windows, len(holding)))))
    layers, hidden = model.config.num_hidden_layers, model.config.hidden_size
    states: dict[int, list[torch.Tensor]] = {i: [] for i in range(1, layers)}
    spans, lengths = [], []
    with torch.inference_mode():
        for batch in batches(subset, 16, sort_by_length=True):
            out = model.encoder(
                batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), None, None, True
            )
            for r, n in enumerate(batch["attention_mask"].sum(dim=1).tolist()):
                spans.append((int(batch["start_positions"][r]), int(batch["end_positions"][r])))
                lengths.append(n)
                for i in range(1, layers):
                    states[i].append(out.traces[i - 1].hidden_states[r, :n].to(torch.float16).clone())
    width = max(lengths)
    ranked = torch.zeros(len(lengths), width, dtype=torch.bool)
    answer = torch.zeros(len(lengths), width, dtype=torch.bool)
    for k, (n, (start, end)) in enumerate(zip(lengths, spans, strict=True)):
        ranked[k, 1:n] = True  # the first token is always kept: not ranked
        answer[k, start : end + 1] = True
    probes, recall = {}, {}
    for i in range(1, layers):
        x = torch.zeros(len(lengths), width, hidden, dtype=torch.float16)
        for k, rows in enumerate(states.pop(i)):
            x[k, : len(rows)] = rows
        probe = nn.Linear(hidden, 1)
        optimizer = torch.optim.Adam(probe.parameters(), lr=1e-3, weight_decay=1e-4)
        for _ in range(8):
            for chunk in torch.randperm(len(lengths)).split(64):
                z = probe(x[chunk].float()).squeeze(-1).masked_fill(~ranked[chunk], -1e4)
                loss = (torch.logsumexp(z, -1) - torch.logsumexp(z.masked_fill(~answer[chunk], -1e4), -1)).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            z = probe(x.float()).squeeze(-1).masked_fill(~ranked, -1e4)
            rank = z.argsort(-1, descending=True).argsort(-1)
            top = rank < (torch.tensor(lengths) * RECALL_SHARE).ceil().unsqueeze(1)
            recall[i] = round(float((top | ~answer).all(-1).float().mean()), 3)
        probes[i] = probe.eval()
    return probes, recall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="folder for the split and stage outputs (outside the repo)")
    parser.add_argument("--squad", default=str(SQUAD), help="SQuAD v1.1 file to split by article")
    parser.add_argument("--train-windows", type=int, default=3000, help="training windows the probes learn from")
    parser.add_argument("--out", default=str(RESULTS / "squad_token_ranking.json"))
    args = parser.parse_args(argv)

    from qla_bench.report import markdown_table, write_results
    from qla_sdk.data import load_tokenizer
    from qla_sdk.data.task_data import load_task_data
    from qla_sdk.modeling import LengthConfig, from_pretrained
    from qla_sdk.modeling.macs import count_macs
    from qla_sdk.recipe.config import load_recipe
    from qla_sdk.recipe.run import run_recipe
    from qla_sdk.train.tasks import evaluate, predict

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    train, evaluation = split(Path(args.squad), work)
    recipe = load_recipe(RECIPE, [f"data.train={train}", f"data.eval={evaluation}"])
    teacher = run_recipe(recipe, work / "run", until="teacher")["teacher"]
    tokenizer = load_tokenizer(teacher["model"])
    data = load_task_data(
        train, evaluation, tokenizer, recipe.task, None, max_length=recipe.max_length, doc_stride=recipe.data.doc_stride
    )
    model = from_pretrained(teacher["model"], task=recipe.task).eval()
    searched = json.loads((RESULTS / "squad_recipe.json").read_text())["length_config"]["lengths"]
    configs = {"searched": searched, **FIXED_CONFIGS}

    start = time.perf_counter()
    probes, recall = train_probes(model, data.train_features, args.train_windows)
    ranking = rankers(probes)
    gold = gold_tokens(data.eval_features, data.eval_examples)
    own_encoder = model.encoder

    def run(name: str | None, lengths: list[float] | None, score: bool = True):
        config = None if lengths is None else LengthConfig(tuple(lengths), keep_cls=True)
        model.encoder = own_encoder if name is None else RankedEncoder(own_encoder, ranking[name], gold)
        try:
            if not score:
                return predict(model, data.eval_features.subset(range(64)), 32, config)
            return evaluate(model, data.eval_features, recipe.task, data.eval_examples, 32, config)
        finally:
            model.encoder = own_encoder

    # The study's loop must be the SDK's encoder where it ranks as the SDK does.
    for own, study in zip(run(None, searched, False), run("attention", searched, False), strict=True):
        for a, b in zip(own, study, strict=True):
            torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=0, atol=1e-5)

    full = run(None, None)
    mean_length = round(sum(data.eval_features.lengths) / len(data.eval_features))
    full_macs = count_macs(model.config, mean_length)
    rows, results = [], {}
    for config_name, lengths in configs.items():
        share = count_macs(model.config, mean_length, LengthConfig(tuple(lengths))) / full_macs
        for name in RANKERS:
            scores = run(name, lengths)
            results[f"{config_name}/{name}"] = {
                "lengths": lengths,
                "macs_ratio": round(share, 4),
                "ranker": name,
                "f1": round(scores["f1"], 2),
                "exact_match": round(scores["exact_match"], 2),
            }
            rows.append(
                [config_name, lengths, f"{share:.0%}", name, round(scores["f1"], 2), round(scores["exact_match"], 2)]
            )
            print(rows[-1], flush=True)
    figures = {
        "model": "all-MiniLM-L6-v2 fine-tuned by the SQuAD recipe's teacher stage (FP32, no length-adaptive training)",
        "split": "official SQuAD v1.1 dev file split by article (80/20, seed 0): no train file exists offline",
        "eval_questions": len(data.eval_examples),
        "full_f1": round(full["f1"], 2),
        "full_em": round(full["exact_match"], 2),
        "mean_input_tokens": mean_length,
        "probe_train_windows": args.train_windows,
        "probe_answer_recall": {f"layer_{i + 1}_input": r for i, r in recall.items()},  # 1-based layers
        "probe_recall_share": RECALL_SHARE,
        "results": results,
        "wall_time_s": round(time.perf_counter() - start, 1),
        "wall_time_scope": "probes and evaluations (the teacher stage, shared with squad_recipe.py, not counted)",
    }
    recall_rows = [[f"{i + 1} (input = layer {i} output)", r] for i, r in recall.items()]
    markdown = "\n\n".join(
        [
            f"Which tokens leave, on the fine-tuned MiniLM-L6 teacher (FP32, no length-adaptive training), "
            f"{figures['eval_questions']} evaluation questions ({figures['split']}); full length F1 "
            f"{figures['full_f1']} / EM {figures['full_em']}. Layers are 1-based; a length is the share of a "
            f"window's real tokens a layer keeps; MACs at the mean input ({mean_length} tokens).",
            markdown_table(["config", "lengths", "MACs", "ranking", "F1", "EM"], rows),
            f"Linear probe of answer position, per layer input: windows whose whole answer is among the top "
            f"{RECALL_SHARE:.0%} of their tokens by probe score ({args.train_windows} training windows).",
            markdown_table(["layer", "answer recall"], recall_rows),
        ]
    )
    write_results(args.out, figures, markdown, command=[sys.executable, *sys.argv])
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
