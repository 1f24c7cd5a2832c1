"""Length configurations: how many tokens leave each layer.

A length config is either absolute token counts, e.g. ``(269, 253, 252, 202, 104, 34)`` for a 6-layer model at
sequence length 384, or ratios of each input's real (unpadded) length, e.g. ``(0.7, 0.66, 0.65, 0.53, 0.27, 0.09)``,
so that an unpadded 120-token input keeps a share of 120 tokens rather than of a padded 384.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from qla_sdk.errors import ConfigError

LengthLike = "LengthConfig | str | Sequence[int] | Sequence[float] | None"


@dataclass(frozen=True)
class LengthConfig:
    """Per-layer output lengths (ints) or ratios (floats in (0, 1]), non-increasing.

    ``keep_cls`` keeps the first token ([CLS] / <s>) at every layer, whatever its significance.
    """

    lengths: tuple[int, ...] | tuple[float, ...]
    keep_cls: bool = True

    def __post_init__(self) -> None:
        values = tuple(self.lengths)
        object.__setattr__(self, "lengths", values)
        if not values:
            raise ConfigError("length config is empty: give one length (or ratio) per layer, e.g. 269,253,252")
        kinds = {isinstance(v, float) for v in values}
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values) or len(kinds) > 1:
            raise ConfigError(
                f"length config {values} mixes kinds: use only token counts (ints) or only ratios (floats in (0, 1])"
            )
        for i, v in enumerate(values):
            if not v > 0 or (isinstance(v, float) and (v > 1.0 or math.isnan(v))):
                allowed = "a ratio in (0, 1]" if self.is_ratio else "a token count >= 1"
                raise ConfigError(f"length config {values}: layer {i} has {v}; each entry must be {allowed}")
        for i in range(1, len(values)):
            if values[i] > values[i - 1]:
                raise ConfigError(
                    f"length config {values} grows at layer {i} ({values[i - 1]} -> {values[i]}): "
                    "a dropped token cannot come back, so lengths must be non-increasing"
                )

    @property
    def is_ratio(self) -> bool:
        return isinstance(self.lengths[0], float)

    def __len__(self) -> int:
        return len(self.lengths)

    def __str__(self) -> str:
        return ",".join(str(v) for v in self.lengths)

    @classmethod
    def parse(cls, value: object, keep_cls: bool = True) -> LengthConfig | None:
        """Accept a LengthConfig, ``"269,253,..."``, ``"0.7,0.66,..."``, a sequence, or None."""
        if value is None or isinstance(value, LengthConfig):
            return value
        if isinstance(value, str):
            text = value.strip().strip("()[]")
            if not text:
                return None
            items: list[int | float] = []
            for part in text.split(","):
                part = part.strip()
                try:
                    items.append(float(part) if any(c in part for c in ".eE") else int(part))
                except ValueError:
                    raise ConfigError(
                        f"length config {value!r}: {part!r} is not a number; write e.g. 269,253,252 or 0.7,0.66"
                    ) from None
            return cls(tuple(items), keep_cls)
        if isinstance(value, dict):
            return cls(tuple(value["lengths"]), bool(value.get("keep_cls", True)))
        if isinstance(value, Sequence):
            return cls(tuple(value), keep_cls)
        raise ConfigError(f"length config {value!r} has type {type(value).__name__}; give a string or a sequence")

    def check(self, num_layers: int, seq_len: int | None = None) -> None:
        """Raise if this config cannot run on a model of ``num_layers`` at input length ``seq_len``."""
        if len(self.lengths) != num_layers:
            raise ConfigError(
                f"length config {self.lengths} has {len(self.lengths)} entries but the model has "
                f"{num_layers} layers: give exactly one per layer"
            )
        if seq_len is not None and not self.is_ratio and self.lengths[0] > seq_len:
            raise ConfigError(
                f"length config {self.lengths} keeps {self.lengths[0]} tokens after layer 0 but the input has only "
                f"{seq_len}: use lengths <= the input length, or ratios"
            )

    def resolve(self, seq_len: int) -> tuple[int, ...]:
        """Token counts for an input of ``seq_len`` tokens (ratios are rounded up, at least 1)."""
        if self.is_ratio:
            return tuple(max(1, math.ceil(r * seq_len)) for r in self.lengths)
        return tuple(min(int(v), seq_len) for v in self.lengths)

    def to_ratios(self, seq_len: int) -> LengthConfig:
        if self.is_ratio:
            return self
        return LengthConfig(tuple(round(v / seq_len, 4) for v in self.lengths), self.keep_cls)

    def to_dict(self) -> dict:
        return {"lengths": list(self.lengths), "keep_cls": self.keep_cls}
