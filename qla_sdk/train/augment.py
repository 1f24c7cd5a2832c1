"""Data augmentation for distillation, after TinyBERT (Jiao et al. 2020, section 3.1 and appendix A).

A small task set (the demo's 4,000 sentences, SQuAD's 8,295 training questions here) caps what a student learns from
its teacher: the teacher's soft predictions and attention relations exist for any input, not only the labelled
ones. TinyBERT distils on ~20 augmented copies of each training sentence, made by replacing each single-piece word
with probability ``p_t`` (0.4) by one of its ``K`` (15) nearest words, and trains on the teacher's outputs alone.

Here a copy is made on the fly from a batch's token ids (no text is re-tokenized, so QA windows keep their
offsets), with fresh draws each epoch: ``copies`` per original batch, mixed into the epoch in a seeded order. Words
are replaced by their nearest neighbours in the teacher's own input-embedding space (cosine; TinyBERT used BERT's
masked-LM predictions and GloVe, neither of which a fine-tuned checkpoint carries). Only whole words of one word
piece, made of letters, are replaced and only by such words: special tokens, padding, digits, punctuation and the
pieces of longer words stay, and so does a QA window's answer span. An augmented batch carries no labels (the
replacement may change the answer or the sentiment): the student learns the teacher's outputs on it, and the
hard-label task term counts on the original batches only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from qla_sdk.data.batching import LABEL_KEYS
from qla_sdk.errors import ConfigError
from qla_sdk.options import option


@dataclass
class AugmentConfig:
    """How many augmented copies of the training data a distillation sees per epoch, and how they are made."""

    copies: int = option(0, "augmented copies of each training batch per epoch (default %(default)s: none)")
    replace_prob: float = option(0.4, "chance that a word is replaced (default %(default)s, TinyBERT's p_t)")
    neighbors: int = option(15, "nearest words a replacement is drawn from (default %(default)s, TinyBERT's K)")

    def __post_init__(self) -> None:
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or self.copies < 0:
            raise ConfigError(f"augment copies={self.copies!r}: give a whole number >= 0 (0: no augmentation)")
        if isinstance(self.replace_prob, bool) or not (
            isinstance(self.replace_prob, (int, float)) and 0 < self.replace_prob <= 1
        ):
            raise ConfigError(f"augment replace_prob={self.replace_prob!r}: give a chance in (0, 1], e.g. 0.4")
        if isinstance(self.neighbors, bool) or not isinstance(self.neighbors, int) or self.neighbors < 1:
            raise ConfigError(f"augment neighbors={self.neighbors!r}: give a whole number >= 1, e.g. 15")

    @property
    def enabled(self) -> bool:
        return self.copies > 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class WordNeighbors:
    """For each token id, the ids it may be replaced by (``-1``: none, the token is never replaced), and which ids
    continue a word (``##ing``): a token followed by one is part of a longer word and is kept."""

    candidates: torch.Tensor  # (vocab, K) long
    continues_word: torch.Tensor  # (vocab,) bool

    @property
    def replaceable(self) -> torch.Tensor:
        return self.candidates[:, 0] >= 0


def word_neighbors(embeddings: torch.Tensor, tokenizer, neighbors: int, chunk: int = 2048) -> WordNeighbors:
    """The ``neighbors`` nearest whole words of each whole word of ``tokenizer``'s WordPiece vocabulary, by cosine
    similarity of the rows of ``embeddings`` (the teacher's input embeddings, one row per token id)."""
    prefix = continuing_prefix(tokenizer)
    vocab = embeddings.shape[0]
    tokens = tokenizer.convert_ids_to_tokens(list(range(min(vocab, len(tokenizer)))))
    special = set(getattr(tokenizer, "all_special_ids", ()))
    words = [
        i
        for i, token in enumerate(tokens)
        if i not in special and token is not None and token.isalpha() and not token.startswith(prefix)
    ]
    continues = torch.zeros(vocab, dtype=torch.bool)
    continues[[i for i, token in enumerate(tokens) if token is not None and token.startswith(prefix)]] = True
    candidates = torch.full((vocab, neighbors), -1, dtype=torch.long)
    if len(words) <= neighbors:
        raise ConfigError(
            f"the tokenizer has {len(words)} whole words, too few to draw from {neighbors} neighbours: lower "
            "augment neighbors (--augment-neighbors), or switch augmentation off (--augment-copies 0)"
        )
    ids = torch.tensor(words, dtype=torch.long)
    unit = torch.nn.functional.normalize(embeddings.detach().float().cpu()[ids], dim=1)
    for start in range(0, len(words), chunk):
        sims = unit[start : start + chunk] @ unit.T
        rows = torch.arange(sims.shape[0])
        sims[rows, rows + start] = -math.inf  # a word is not its own neighbour
        candidates[ids[start : start + chunk]] = ids[sims.topk(neighbors, dim=1).indices]
    return WordNeighbors(candidates, continues)


def continuing_prefix(tokenizer) -> str:
    """The prefix of word pieces that continue a word (``##`` for BERT); refuses a tokenizer that is not WordPiece,
    whose words augmentation cannot tell apart."""
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    prefix = getattr(model, "continuing_subword_prefix", None)
    if type(model).__name__ != "WordPiece" or not prefix:
        raise ConfigError(
            f"distillation augmentation replaces whole WordPiece words, and this tokenizer is "
            f"{type(model).__name__ if model is not None else type(tokenizer).__name__}: use a BERT-family "
            "(WordPiece) tokenizer, or switch augmentation off (--augment-copies 0; distill.augment.copies: 0)"
        )
    return prefix


AUGMENTED = "augmented"  # the key that marks a batch as a copy: the task loss skips it


def augment_batch(batch: dict, table: WordNeighbors, replace_prob: float, generator: torch.Generator) -> dict:
    """A copy of ``batch`` (collated ids, mask, labels) with words replaced, the labels left out and ``AUGMENTED``
    set."""
    ids = batch["input_ids"]
    if int(ids.max()) >= len(table.continues_word):
        raise ConfigError(
            f"token id {int(ids.max())} is outside the teacher's {len(table.continues_word)}-word vocabulary: "
            "tokenize the data with the teacher's tokenizer"
        )
    real = batch["attention_mask"].bool()
    following = torch.zeros_like(ids, dtype=torch.bool)
    following[:, :-1] = table.continues_word[ids[:, 1:]] & real[:, 1:]  # the next piece continues this word
    keep = ~real | following | ~table.replaceable[ids]
    if "start_positions" in batch and "end_positions" in batch:
        positions = torch.arange(ids.shape[1])[None, :]
        start, end = batch["start_positions"][:, None], batch["end_positions"][:, None]
        keep |= (start > 0) & (positions >= start) & (positions <= end)  # the window's answer span
    draw = torch.rand(ids.shape, generator=generator) < replace_prob
    pick = torch.randint(table.candidates.shape[1], ids.shape, generator=generator)
    replaced = table.candidates[ids, pick]
    new_ids = torch.where(draw & ~keep, replaced, ids)
    return {**{k: v for k, v in batch.items() if k not in LABEL_KEYS}, "input_ids": new_ids, AUGMENTED: True}


_ORDER, _DRAWS = 1, 2  # the random streams of an epoch's batch order and of its copies' draws


class Augmenter:
    """Makes an epoch's batches: each original batch and ``copies`` augmented copies of it, in an order and with
    draws fixed by ``(seed, epoch)``, so a resumed run sees the batches it would have seen."""

    def __init__(self, config: AugmentConfig, table: WordNeighbors, seed: int) -> None:
        self.config, self.table, self.seed = config, table, seed

    @classmethod
    def for_teacher(cls, config: AugmentConfig, teacher, tokenizer, seed: int) -> Augmenter | None:
        """None where ``config`` makes no copies; else an augmenter from ``teacher``'s input embeddings."""
        if not config.enabled:
            return None
        if tokenizer is None:
            raise ConfigError(
                "distillation augmentation needs the tokenizer, to tell whole words apart: pass tokenizer= to "
                "distill(), or augment=AugmentConfig(copies=0)"
            )
        embeddings = teacher.encoder.embeddings.word.weight
        return cls(config, word_neighbors(embeddings, tokenizer, config.neighbors), seed)

    def batches_per_epoch(self, originals: int) -> int:
        return originals * (1 + self.config.copies)

    def epoch(self, groups: list[list[int]], make_batch: Callable[[list[int]], dict], epoch: int) -> Iterator[dict]:
        """The batches of one epoch: ``make_batch(group)`` of each of ``groups`` (the rows of the original batches,
        in the epoch's order) and its copies, in a shuffled order."""
        copies = self.config.copies
        plan = [(index, copy) for index in range(len(groups)) for copy in range(1 + copies)]
        # Streams of their own: (seed, epoch) alone already shuffles the rows (data.batching.batch_indices).
        order = np.random.default_rng([self.seed, epoch, _ORDER]).permutation(len(plan))
        for position in order:
            index, copy = plan[position]
            batch = make_batch(groups[index])
            if copy:
                state = np.random.SeedSequence([self.seed, epoch, index, copy, _DRAWS]).generate_state(1)[0]
                batch = augment_batch(
                    batch, self.table, self.config.replace_prob, torch.Generator().manual_seed(int(state))
                )
            yield batch
