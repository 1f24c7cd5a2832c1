"""The rows of the benchmark: each is a small spec that one fresh subprocess builds, loads and measures.

A row names a model source, a backend (a key of ``qla_bench.builders.BUILDERS``), a precision and an optional
length config; ``default_rows`` lists the comparison the SDK stands on: BERT-base FP32 eager (the baseline of
every speedup), our int8 rows, the FP32 references and the peers a user would reach for instead.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from qla_sdk.errors import ConfigError
from qla_sdk.modeling.length import LengthConfig

ROLES = ("baseline", "peer", "ours", "reference")
# "default": the runtime's own choice, unhinted (OpenVINO: bf16 where the CPU has AMX or AVX512-BF16, else f32).
PRECISIONS = ("fp32", "int8", "default")
# Where a row's weights come from: the named defaults, or a checkpoint folder.
MODELS = ("bert-base", "minilm", "quala-minilm")
OUR_INT8_BACKENDS = ("inductor", "openvino", "ipex")
DEFAULT_INT8_BACKENDS = ("inductor", "openvino")
DEFAULT_LENGTH_CONFIG = "269,253,252,202,104,34"
DEFAULT_LENGTH_CONFIG_SEQ_LEN = 384


@dataclass(frozen=True)
class RowSpec:
    """One model/backend/precision to measure. ``length_config`` is given at ``length_config_seq_len`` tokens
    (scaled proportionally to other sequence lengths) or as ratios (used as they are)."""

    name: str
    role: str
    backend: str
    precision: str
    model: str
    length_config: str | None = None
    length_config_seq_len: int = DEFAULT_LENGTH_CONFIG_SEQ_LEN
    task: str = "question-answering"

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() or c in "/\\" for c in self.name):
            raise ConfigError(f"row name {self.name!r}: use a non-empty name without spaces or slashes")
        if self.role not in ROLES:
            raise ConfigError(f"row {self.name}: role {self.role!r} is not one of {', '.join(ROLES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"row {self.name}: precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.length_config is not None:
            LengthConfig.parse(self.length_config)  # raises ConfigError naming the bad entry

    def length_config_at(self, seq_len: int) -> LengthConfig | None:
        """The length config to run at ``seq_len``: ratios as given, token counts scaled and kept valid, from the
        length they were searched at (their ``@reference``, else ``length_config_seq_len``)."""
        config = LengthConfig.parse(self.length_config)
        if config is None or config.is_ratio:
            return config
        return scale_length_config(config, config.reference_length or self.length_config_seq_len, seq_len)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RowSpec:
        return cls(**data)


def scale_length_config(config: LengthConfig, from_seq_len: int, to_seq_len: int) -> LengthConfig:
    """Token counts searched at ``from_seq_len`` rescaled to ``to_seq_len`` (rounded, >= 1, non-increasing)."""
    if from_seq_len < 1 or to_seq_len < 1:
        raise ConfigError(f"sequence lengths must be >= 1; got {from_seq_len} and {to_seq_len}")
    lengths: list[int] = []
    for value in config.lengths:
        scaled = max(1, min(to_seq_len, math.floor(value * to_seq_len / from_seq_len + 0.5)))
        lengths.append(min(scaled, lengths[-1]) if lengths else scaled)
    return LengthConfig(tuple(lengths), config.keep_cls)


def default_rows(
    int8_backends: tuple[str, ...] = DEFAULT_INT8_BACKENDS,
    length_config: str = DEFAULT_LENGTH_CONFIG,
    length_config_seq_len: int = DEFAULT_LENGTH_CONFIG_SEQ_LEN,
    task: str = "question-answering",
) -> list[RowSpec]:
    """All rows of one run, in table order."""
    unknown = [b for b in int8_backends if b not in OUR_INT8_BACKENDS]
    if unknown or not int8_backends:
        raise ConfigError(
            f"int8 backends {list(int8_backends)}: unknown {unknown or 'none given'}; "
            f"choose from {', '.join(OUR_INT8_BACKENDS)}"
        )
    lc = dict(length_config=length_config, length_config_seq_len=length_config_seq_len)

    def row(name: str, role: str, backend: str, precision: str, model: str, **kw) -> RowSpec:
        return RowSpec(name, role, backend, precision, model, task=task, **kw)

    rows = [row("bert-base-fp32-eager", "baseline", "transformers", "fp32", "bert-base")]  # what users run today
    rows += [row(f"bert-base-int8-{b}", "ours", b, "int8", "bert-base") for b in int8_backends]
    rows.append(row("minilm-fp32-eager", "reference", "eager", "fp32", "minilm"))
    rows += [row(f"minilm-int8-{b}", "ours", b, "int8", "minilm") for b in int8_backends]
    rows.append(row("lat-minilm-fp32-eager", "reference", "eager", "fp32", "quala-minilm", **lc))
    rows += [row(f"quala-minilm-int8-{b}", "ours", b, "int8", "quala-minilm", **lc) for b in int8_backends]
    rows += [
        row("optimum-intel-minilm-int8", "peer", "optimum-intel", "int8", "minilm"),
        # what a user gets from optimum-intel without quantizing: on AMX CPUs nearly as fast as int8
        row("optimum-intel-minilm-default", "peer", "optimum-intel", "default", "minilm"),
        row("onnxruntime-minilm-int8", "peer", "onnxruntime", "int8", "minilm"),
        row("torch-dynamic-minilm-int8", "peer", "torch-dynamic", "int8", "minilm"),
    ]
    return rows


def select_rows(rows: list[RowSpec], names: list[str] | None) -> list[RowSpec]:
    """The rows named (in the given order), or all; an unknown name is an error listing the known ones."""
    if not names:
        return rows
    by_name = {r.name: r for r in rows}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"unknown row(s) {unknown}; rows of this run: {', '.join(by_name)}")
    return [by_name[n] for n in names]
