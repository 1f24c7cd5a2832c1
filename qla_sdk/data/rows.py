"""The shared shape of feature sets: unpadded token rows."""

from __future__ import annotations

import hashlib

import numpy as np


class TokenRows:
    """What batching and the trainers need of any set of unpadded token rows (``input_ids``, ``token_type_ids``)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def attention_mask(self) -> list[list[int]]:
        return [[1] * len(ids) for ids in self.input_ids]

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def inputs(self, i: int) -> dict:
        out: dict = {"input_ids": self.input_ids[i]}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids[i]
        return out


def rows_digest(rows: TokenRows) -> str:
    """A short sha256 of the rows' tokens, segments and labels (whichever they have), in order: what a resumed
    training run compares with the run that wrote its checkpoint."""
    digest = hashlib.sha256()
    for name in ("input_ids", "token_type_ids", "labels", "start_positions", "end_positions"):
        values = getattr(rows, name, None)
        if values is None:
            continue
        digest.update(name.encode())
        for value in values:
            digest.update(np.asarray(value, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()[:16]
