"""Length configurations: how many tokens leave each layer.

A length config is either absolute token counts, e.g. ``(269, 253, 252, 202, 104, 34)`` searched at the
*reference length* 384, or ratios of each input's real (unpadded) length, e.g. ``(0.7, 0.66, 0.65, 0.53, 0.27,
0.09)``, so that an unpadded 120-token input keeps a share of 120 tokens rather than of a padded 384.

The rule for other lengths, the same in eager, exported and int8 graphs:
- token counts: an input of n <= reference tokens keeps min(count, n) real tokens after each layer, which is what
  the config does to that input padded to the reference length (padding always leaves first). Longer inputs are
  refused: the config was searched at the reference length.
- ratios: an input of n real tokens keeps ceil(ratio * n) of them (at least 1), with the product taken in float32
  (``ratio_keep``), because the exported graphs compute it per row in float32.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qla_sdk.errors import ConfigError


def ratio_keep(ratio: float, n: int) -> int:
    """Tokens an input of ``n`` real tokens keeps under ``ratio``: ceil(float32(n) * float32(ratio)), at least 1.
    The encoder computes the same product on float32 tensors, so the two never disagree by a rounding."""
    return max(1, math.ceil(float(np.float32(n) * np.float32(ratio))))


LengthLike = "LengthConfig | str | Sequence[int] | Sequence[float] | None"


@dataclass(frozen=True)
class LengthConfig:
    """Per-layer output lengths (ints) or ratios (floats in (0, 1]), non-increasing.

    ``keep_cls`` keeps the first token ([CLS] / <s>) at every layer, whatever its significance.
    ``reference_length``: for token counts, the input length they were chosen for (the search's sequence length);
    inputs may be shorter, never longer. None for ratios, and for counts whose reference is not known (then they
    apply as given to inputs of any length).
    """

    lengths: tuple[int, ...] | tuple[float, ...]
    keep_cls: bool = True
    reference_length: int | None = None

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
        ref = self.reference_length
        if ref is not None:
            if self.is_ratio:
                raise ConfigError(f"length config {values}: ratios apply to any length; give no reference_length")
            if isinstance(ref, bool) or not isinstance(ref, int) or ref < values[0]:
                raise ConfigError(
                    f"length config {values}: reference_length={ref!r} must be an integer >= the first count "
                    f"({values[0]}): the input length the counts were chosen for, e.g. 384"
                )

    @property
    def is_ratio(self) -> bool:
        return isinstance(self.lengths[0], float)

    def __len__(self) -> int:
        return len(self.lengths)

    def __str__(self) -> str:
        text = ",".join(str(v) for v in self.lengths)
        return text if self.reference_length is None else f"{text}@{self.reference_length}"

    @property
    def max_input_length(self) -> int | None:
        """The longest input this config runs on (None: any)."""
        return None if self.is_ratio else self.reference_length

    @classmethod
    def parse(cls, value: object, keep_cls: bool = True, reference_length: int | None = None) -> LengthConfig | None:
        """Accept a LengthConfig, ``"269,253,...@384"`` (token counts at their reference length), ``"269,253,..."``
        (``reference_length`` given here, or unknown), ``"0.7,0.66,..."``, a dict (``to_dict``), a sequence, or
        None / ``"none"`` (full length).

        In ratios, an entry of 1 means the whole length (``"1,1,0.83"`` reads as ``1.0,1.0,0.83``): it cannot be a
        token count beside ratios."""
        if value is None or isinstance(value, LengthConfig):
            return value
        if isinstance(value, str):
            text, at, ref_text = value.partition("@")
            if not at and text.strip().lower() == "none":
                return None
            if at:
                try:
                    reference_length = int(ref_text.strip())
                except ValueError:
                    raise ConfigError(
                        f"length config {value!r}: {ref_text.strip()!r} after '@' is not a token count; write e.g. "
                        "269,253,252@384"
                    ) from None
            text = text.strip().strip("()[]").strip()
            if not text:
                raise ConfigError(
                    f"length config {value!r} has no lengths: give one per layer (e.g. 269,253,252@384 or "
                    "0.7,0.66,0.5), or 'none' for full length"
                )
            items: list[int | float] = []
            for part in text.split(","):
                part = part.strip()
                try:
                    items.append(float(part) if any(c in part for c in ".eE") else int(part))
                except ValueError:
                    raise ConfigError(
                        f"length config {value!r}: {part!r} is not a number; write e.g. 269,253,252 or 0.7,0.66"
                    ) from None
            items = _whole_ratios(items)
            return cls(tuple(items), keep_cls, _reference(items, reference_length))
        if isinstance(value, dict):
            if "lengths" not in value:
                raise ConfigError(
                    f"length config {value!r} has no 'lengths' key: write {{'lengths': [269, 253, 252], "
                    "'reference_length': 384}"
                )
            items = _whole_ratios(_numbers(value["lengths"], value))
            return cls(items, bool(value.get("keep_cls", True)), _reference(items, value.get("reference_length")))
        if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
            items = _whole_ratios(_numbers(value, value))
            return cls(items, keep_cls, _reference(items, reference_length))
        raise ConfigError(f"length config {value!r} has type {type(value).__name__}; give a string or a sequence")

    def check(self, num_layers: int, seq_len: int | None = None) -> None:
        """Raise if this config cannot run on a model of ``num_layers`` at input length ``seq_len``."""
        if len(self.lengths) != num_layers:
            raise ConfigError(
                f"length config {self.lengths} has {len(self.lengths)} entries but the model has "
                f"{num_layers} layers: give exactly one per layer"
            )
        longest = self.max_input_length
        if seq_len is not None and longest is not None and seq_len > longest:
            raise ConfigError(
                f"length config {self} was chosen for inputs of {longest} tokens (its reference length); this input "
                f"has {seq_len}: truncate to {longest} (or use windows), or use a ratio config"
            )

    def resolve(self, seq_len: int) -> tuple[int, ...]:
        """Tokens kept after each layer by an input of ``seq_len`` tokens (see the module docstring)."""
        if self.is_ratio:
            return tuple(ratio_keep(r, seq_len) for r in self.lengths)
        return tuple(min(int(v), seq_len) for v in self.lengths)

    def drops_at(self, layer: int, width: int, length_in: int) -> bool:
        """Whether ``layer`` selects tokens: it keeps fewer than it gets, or (ratios) it may keep fewer in a
        shorter row of a padded batch."""
        return width < length_in or (self.is_ratio and self.lengths[layer] < 1.0)

    def to_ratios(self, seq_len: int) -> LengthConfig:
        if self.is_ratio:
            return self
        return LengthConfig(tuple(round(v / seq_len, 4) for v in self.lengths), self.keep_cls)

    def to_dict(self) -> dict:
        data = {"lengths": list(self.lengths), "keep_cls": self.keep_cls}
        if self.reference_length is not None:
            data["reference_length"] = self.reference_length
        return data


def _numbers(values: object, given: object) -> tuple:
    """Python ints and floats from any integer or real kind (numpy scalars from a search), other entries as they
    are, for the dataclass to name."""
    if isinstance(values, (str, bytes, bytearray)) or not isinstance(values, Sequence):
        raise ConfigError(f"length config {given!r}: 'lengths' must be a list of numbers, e.g. [269, 253, 252]")
    out = []
    for v in values:
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):
            v = int(v)
        elif isinstance(v, numbers.Real) and not isinstance(v, bool):
            v = float(v)
        out.append(v)
    return tuple(out)


def _whole_ratios(items: Sequence) -> tuple:
    """Among ratios, an entry of 1 is the whole length (1.0); other ints stay, for the dataclass to name the mix."""
    if any(isinstance(v, float) for v in items):
        return tuple(1.0 if type(v) is int and v == 1 else v for v in items)
    return tuple(items)


def _reference(items: Sequence, reference_length: int | None) -> int | None:
    """A reference length applies to token counts only: a ratio config parsed with one ignores it."""
    if reference_length is None or any(isinstance(v, float) for v in items):
        return None
    if isinstance(reference_length, numbers.Integral) and not isinstance(reference_length, bool):
        return int(reference_length)  # numpy integers too
    return reference_length
