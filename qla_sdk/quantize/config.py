"""What `qla quantize` / `qla export` do: the backend, its precision, calibration and the accuracy budget."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from qla_sdk.errors import ConfigError

BACKENDS = ("inductor", "openvino", "ipex", "fp32", "bf16")
INT8_BACKENDS = ("inductor", "openvino", "ipex")
ACT_ALGOS = ("minmax", "kl")
# Which tuned config accuracy-aware quantization keeps (see ``QuantConfig.keep``).
KEEP_RULES = ("first", "best")
# What OpenVINO runs the operations that stay floating point in (softmax, layer norms, GELU, the significance sums);
# ``auto`` picks per graph (see ``QuantConfig``).
INFERENCE_PRECISIONS = ("f32", "bf16", "auto")
# What accuracy-aware tuning's tolerance counts from (see ``QuantConfig.tolerance_from``).
TOLERANCE_FROM = ("fp32", "reference")
# Buckets a ratio length config is exported at (one graph per length; inputs pad to the next bucket).
RATIO_BUCKET_STEP = 64


@dataclass
class QuantConfig:
    """Options of post-training static int8 quantization and export.

    ``tolerance``: the largest relative drop of the dev metric int8 may have against fp32 (0.01 = 1%).
    ``tolerance_from``: ``fp32``, the model being quantized (with its length config); or ``reference``, a reference
    model scored the same way at full length, e.g. the fine-tuned model a recipe compresses (``qla quantize
    --reference-model``): the bound then covers pruning and int8 together, whatever the pruned fp32 model scores.
    ``seq_lens``: sequence lengths to export graphs for; default: ``max_length`` for a token-count length config,
    multiples of 64 up to ``max_length`` for a ratio config (so short inputs run short graphs).
    ``keep``: with a dev set, ``first`` stops at the first tuning config within ``tolerance`` (INC's rule);
    ``best`` scores all ``max_trials`` configs and keeps the most accurate one (OpenVINO backend; on a tie, one
    without smooth quant, whose graphs share their weights), which spends a few more dev-set evaluations to keep the
    int8 loss as small as the tried configs allow.
    ``inference_precision`` (openvino backend): what the operations that stay floating point run in. ``bf16`` is
    what OpenVINO picks unasked on CPUs with AMX or AVX512-BF16 (optimum-intel's default); the accuracy check and
    the artifact use the same setting, and CPUs without native bf16 run f32 (the build report says which ran).
    ``f32`` keeps the token ranking exactly the fp32 graph's. ``auto``: bf16, except for the graphs whose pruning
    attention runs fused in the int8 operation (``runtime.openvino_attention``), which run f32: that operation reads
    and writes f32, so bf16 around it only adds a conversion per input and output (benchmarks/results/
    openvino_attention.md).
    """

    backend: str = "inductor"
    calibration_samples: int = 128
    tolerance: float = 0.01
    tolerance_from: str = "fp32"
    act_algo: str = "minmax"
    seq_lens: tuple[int, ...] | None = None
    quantize_embeddings: bool = True
    max_trials: int = 4
    keep: str = "first"
    inference_precision: str = "f32"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r} is unknown; choose one of {', '.join(BACKENDS)}")
        self.calibration_samples = _integer("calibration_samples", self.calibration_samples, 1, "100-300 is typical")
        self.max_trials = _integer("max_trials", self.max_trials, 1)
        tolerance = self.tolerance
        if not _is_number(tolerance) or not 0.0 <= tolerance < 1.0:
            raise ConfigError(f"tolerance {tolerance!r}: a relative drop in [0, 1), e.g. 0.01 for 1%")
        self.tolerance = float(tolerance)
        if not isinstance(self.quantize_embeddings, bool):
            raise ConfigError(
                f"quantize_embeddings {self.quantize_embeddings!r}: must be True or False (the CLI's "
                "--no-int8-embeddings sets False)"
            )
        if self.tolerance_from not in TOLERANCE_FROM:
            raise ConfigError(
                f"tolerance_from {self.tolerance_from!r}: choose one of {', '.join(TOLERANCE_FROM)} (reference: the "
                "tolerance counts from a reference model's metric, e.g. the fine-tuned model)"
            )
        if self.act_algo not in ACT_ALGOS:
            raise ConfigError(f"act_algo {self.act_algo!r}: choose one of {', '.join(ACT_ALGOS)}")
        if self.keep not in KEEP_RULES:
            raise ConfigError(f"keep {self.keep!r}: choose one of {', '.join(KEEP_RULES)}")
        if self.keep == "best" and self.backend != "openvino":
            raise ConfigError(
                f"keep 'best' is implemented for the openvino backend only ({self.backend} tunes with INC, which "
                "stops at the first config within tolerance): use keep 'first' or backend openvino "
                "(--keep first or --backend openvino)"
            )
        if self.inference_precision not in INFERENCE_PRECISIONS:
            raise ConfigError(
                f"inference_precision {self.inference_precision!r}: choose one of {', '.join(INFERENCE_PRECISIONS)}"
            )
        if self.inference_precision != "f32" and self.backend != "openvino":
            raise ConfigError(
                f"inference_precision {self.inference_precision!r} applies to the openvino backend only "
                f"({self.backend} runs its floating-point operations in fp32): use backend openvino, or "
                "backend bf16 for a bf16 model without int8"
            )
        if self.seq_lens is not None:
            self.seq_lens = _seq_lens(self.seq_lens)

    @property
    def is_int8(self) -> bool:
        return self.backend in INT8_BACKENDS


def default_seq_lens(max_length: int, ratio_config: bool) -> tuple[int, ...]:
    """One graph at ``max_length`` for token-count configs; 64, 128, ... up to ``max_length`` for ratio configs."""
    if not ratio_config:
        return (max_length,)
    return tuple(sorted({*range(RATIO_BUCKET_STEP, max_length, RATIO_BUCKET_STEP), max_length}))


def check_seq_lens(
    seq_lens: Sequence[int], max_length: int, int8: bool, *, names: tuple[str, str] = ("seq_lens", "max_length")
) -> None:
    """Graph lengths an artifact can be built with: none past ``max_length`` (the inputs are cut there), and for
    int8 one at it (an input of that length would find no graph: int8 graphs have fixed shapes). ``names``: the two
    settings as the caller's user spells them."""
    lengths, (seq_name, max_name) = list(seq_lens), names
    if max(lengths) > max_length:
        raise ConfigError(
            f"{seq_name} {lengths} go past {max_name} ({max_length}): give graph lengths of at most {max_length}"
        )
    if int8 and max(lengths) < max_length:
        raise ConfigError(
            f"{seq_name} {lengths} stop short of {max_name} ({max_length}): an input of that length would find no "
            f"int8 graph; add {max_length} to them, or lower {max_name}"
        )


def _is_number(value: object) -> bool:
    """A real number (numpy's too) that is not a bool: True would read as 1."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(name: str, value: object, low: int, hint: str = "") -> int:
    """``value`` as an int (numpy integers too), refused unless an integer >= ``low`` (a bool is no integer)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(f"{name} {value!r}: must be an integer >= {low}" + (f" ({hint})" if hint else ""))
    return int(value)


def _seq_lens(value: object) -> tuple[int, ...]:
    """Graph lengths, sorted and unique. Text such as ``"128,384"`` is the CLI's spelling (``--seq-lens``, which
    the command parses): refused here, as in a recipe, rather than read character by character."""
    example = "give integers >= 2, e.g. (128, 384)"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(f"seq_lens {value!r}: not a list of lengths; {example}")
    lengths = list(value)
    if not lengths or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2 for n in lengths):
        raise ConfigError(f"seq_lens {value!r}: {example}")
    return tuple(sorted({int(n) for n in lengths}))
