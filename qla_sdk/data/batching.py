"""Dynamic padding: each batch is padded to its own longest row, not to max_length.

``batches`` takes ``QAFeatures``/``ClassificationFeatures`` (anything with ``__len__``, ``row(i)``, ``lengths``
and ``pad_token_id``) or a list of row dicts. The order depends only on ``(seed, epoch)``, so a resumed run that
skips the batches it already saw continues with exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from qla_sdk.errors import ConfigError

SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids")
LABEL_KEYS = ("labels", "start_positions", "end_positions")
# Bucketed shuffling sorts by length inside windows of this many batches, keeping batches random but similar.
BUCKET_BATCHES = 50


def collate(
    features: Sequence[Mapping], pad_token_id: int = 0, *, pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """Rows (dicts with ``input_ids`` and optionally ``attention_mask``, ``token_type_ids``, labels) -> LongTensors
    padded on the right to the longest row (rounded up to ``pad_to_multiple_of``)."""
    if not features:
        raise ConfigError("collate got no rows")
    longest = max(len(row["input_ids"]) for row in features)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of

    def pad(values: Sequence[int], fill: int) -> list[int]:
        return [*values, *([fill] * (longest - len(values)))]

    batch = {
        "input_ids": torch.tensor([pad(row["input_ids"], pad_token_id) for row in features], dtype=torch.long),
        "attention_mask": torch.tensor(
            [pad(row.get("attention_mask") or [1] * len(row["input_ids"]), 0) for row in features], dtype=torch.long
        ),
    }
    if all(row.get("token_type_ids") is not None for row in features):
        batch["token_type_ids"] = torch.tensor([pad(row["token_type_ids"], 0) for row in features], dtype=torch.long)
    for key in LABEL_KEYS:
        if all(key in row for row in features):
            batch[key] = torch.tensor([row[key] for row in features], dtype=torch.long)
    return batch


def batch_indices(
    features,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    *,
    epoch: int = 0,
    sort_by_length: bool = False,
    drop_last: bool = False,
) -> list[list[int]]:
    """The row indices of each batch ``batches`` yields, in order (``len(...)`` is the number of batches).

    ``sort_by_length`` without ``shuffle``: longest rows first, for fast evaluation (least padding). With
    ``shuffle``: rows are shuffled, sorted by length within windows of ``BUCKET_BATCHES`` batches, and the batch
    order shuffled again, so training batches are random yet carry little padding.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size {batch_size}: must be >= 1")
    if seed < 0 or epoch < 0:
        raise ConfigError(f"seed {seed} / epoch {epoch}: must be >= 0")
    n = len(features)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n) if shuffle else np.arange(n)
    if sort_by_length:
        lengths = np.asarray(_lengths(features), dtype=np.int64)
        window = batch_size * BUCKET_BATCHES if shuffle else max(n, 1)
        chunks = [order[i : i + window] for i in range(0, n, window)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks]) if chunks else order
    groups = [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
    if drop_last and groups and len(groups[-1]) < batch_size:
        groups.pop()
    if shuffle and sort_by_length:
        groups = [groups[i] for i in rng.permutation(len(groups))]
    return groups


def batches(
    features,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    *,
    epoch: int = 0,
    sort_by_length: bool = False,
    drop_last: bool = False,
    pad_token_id: int | None = None,
    pad_to_multiple_of: int | None = None,
    with_index: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Padded LongTensor batches (``input_ids, attention_mask``, ``token_type_ids`` when the tokenizer makes them,
    ``labels`` or ``start_positions/end_positions`` when present). ``with_index`` adds ``"index"``: the feature
    rows of the batch, needed to map outputs back when ``sort_by_length`` reorders them."""
    for group in batch_indices(
        features, batch_size, shuffle, seed, epoch=epoch, sort_by_length=sort_by_length, drop_last=drop_last
    ):
        batch = collate_rows(features, group, pad_token_id, pad_to_multiple_of=pad_to_multiple_of)
        if with_index:
            batch["index"] = torch.tensor(group, dtype=torch.long)
        yield batch


def collate_rows(
    features, rows: Sequence[int], pad_token_id: int | None = None, *, pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """The batch of ``features``' ``rows`` (one of ``batch_indices``' groups); ``pad_token_id`` defaults to the
    features' own."""
    if pad_token_id is None:
        pad_token_id = getattr(features, "pad_token_id", 0)
    row = features.row if hasattr(features, "row") else features.__getitem__
    return collate([row(i) for i in rows], pad_token_id, pad_to_multiple_of=pad_to_multiple_of)


def _lengths(features) -> list[int]:
    if hasattr(features, "lengths"):
        return list(features.lengths)
    return [len(row["input_ids"]) for row in features]
