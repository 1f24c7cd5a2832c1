"""``SearchConfig``: every option of a length-config search besides which model and data it runs on — the evolution,
the fitness (metric, dev subset), the cost axis and its budget, and how latency is measured. Defined once: the
flags of ``qla search`` and the recipe's ``search`` section are generated from it."""

from __future__ import annotations

import math
import numbers
import re
import warnings
from dataclasses import dataclass, field, fields
from typing import Literal

from qla_sdk.config import from_dict
from qla_sdk.errors import ConfigError
from qla_sdk.options import option
from qla_sdk.quantize.config import INFERENCE_PRECISIONS
from qla_sdk.search.cost import LATENCY_BACKENDS
from qla_sdk.search.evolution import EvolutionConfig

_SUFFIXES = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
COSTS = ("macs", "latency")
_BUDGETS = ("max_macs", "min_macs", "max_latency_ms", "min_latency_ms")
_BOOLS = ("ratio", "confirm", "measure_latency", "latency_int8")
_LATENCY_OPTIONS = (
    "latency_backend",
    "latency_precision",
    "latency_int8",
    "latency_batch_size",
    "latency_seq_len",
    "latency_runs",
    "latency_warmup",
    "threads",
)


@dataclass
class SearchConfig:
    """Budgets are absolute (``1.2G`` MACs, ``8`` ms) or a share of the full model (``55%``); without one the best
    gene is the most accurate on the front."""

    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    metric: str | None = option(None, "accuracy|f1 (classification, default accuracy); f1|exact_match (QA, default f1)")
    subset: int | None = option(None, "score genes on this many dev examples, a fixed random subset (default: all)")
    subset_seed: int = option(0, "seed of that subset (default %(default)s)")
    batch_size: int = option(64, "evaluation batch size (default %(default)s)")
    ratio: bool = option(False, "search ratios of each input's real length (unpadded inference), not token counts")
    ratio_steps: int = option(100, "ratio resolution: 100 searches whole percents (default %(default)s)")
    max_macs: str | float | None = option(None, "MACs budget, e.g. 1.2G or 55%%")
    min_macs: str | float | None = option(None, "lower end of a MACs band")
    max_metric_drop: float | None = option(
        None,
        "choose the cheapest gene whose metric is at most this far below the full model's, in the metric's units "
        "(SQuAD F1 / EM: points, e.g. 0.5; a classifier's accuracy / F1: a fraction, 0.005 is half a point), "
        "instead of the most accurate within the cost budget",
    )
    confirm: bool = option(
        False,
        "with --max-metric-drop and --subset: score the chosen gene on every dev example, and take costlier genes "
        "of the front until one keeps the drop there too (a subset's metric can be a point off); with "
        "--measure-latency, faster ones first, as timed",
    )
    max_latency_ms: str | float | None = option(
        None, "latency budget in ms, e.g. 8 or 60%%: searches on measured latency"
    )
    min_latency_ms: str | float | None = option(None, "lower end of a latency band")
    cost: Literal["macs", "latency"] | None = option(
        None, "axis of the front (default: latency with a latency budget, else macs)"
    )
    measure_latency: bool = option(False, "with MACs as cost, also time the front")
    latency_backend: str = option(
        "eager",
        "time each gene as this backend runs it, fp32 graph of the pruned model (default %(default)s)",
        choices=LATENCY_BACKENDS,
    )
    latency_precision: str = option(
        "f32",
        "openvino latency backend: what its floating-point ops run in, as the artifact will (default %(default)s)",
        choices=INFERENCE_PRECISIONS,
    )
    latency_int8: bool = option(
        False,
        "openvino latency backend: time each gene's int8 graph (NNCF, calibrated on the timing batch), as an int8 "
        "artifact runs it; fp32 graphs misrank genes where int8 and fp32 differ in what they make cheap (AMX)",
    )
    latency_batch_size: int = option(1, "batch size while timing (default %(default)s)")
    latency_seq_len: int | None = option(None, "input length while timing (default: --seq-len, or mean real length)")
    threads: int | None = option(None, "intra-op threads while timing (default: torch's)")
    latency_runs: int = option(20, "timed runs per gene; the median counts (default %(default)s)")
    latency_warmup: int = option(5, "untimed runs before them (default %(default)s)")

    def __post_init__(self) -> None:
        if isinstance(self.evolution, dict):  # Python callers may pass the evolution's options as a mapping
            self.evolution = from_dict(EvolutionConfig, self.evolution, where="evolution")
        elif not isinstance(self.evolution, EvolutionConfig):
            raise ConfigError(
                f"evolution={self.evolution!r}: give an EvolutionConfig or a dict of its options, e.g. "
                "{'iterations': 10}"
            )
        for name in _BOOLS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be True or False")
        for name, low in (("ratio_steps", 1), ("batch_size", 1), ("latency_runs", 1), ("latency_batch_size", 1)):
            setattr(self, name, _integer(name, getattr(self, name), low))
        self.latency_warmup = _integer("latency_warmup", self.latency_warmup, 0)
        self.subset_seed = _integer("subset_seed", self.subset_seed, None)
        for name, tail in (
            ("subset", " dev examples, or null for all"),
            ("latency_seq_len", ", or null for the search's length"),
            ("threads", ", or null for torch's default"),
        ):
            if getattr(self, name) is not None:
                setattr(self, name, _integer(name, getattr(self, name), 1, tail))
        if self.metric is not None and not isinstance(self.metric, str):  # which names: the task decides (job.py)
            raise ConfigError(f"metric={self.metric!r}: give a metric name such as accuracy or f1, or null")
        if self.cost is not None and self.cost not in COSTS:
            raise ConfigError(
                f"cost={self.cost!r} is unknown; choose one of {', '.join(COSTS)} (--cost), or leave it unset"
            )
        for name in _BUDGETS:
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):
                    raise ConfigError(f"{name}={value!r}: give a number or text such as 1.2G or 55%")
                setattr(self, name, str(value))
                parse_amount(
                    str(value), 1.0, "ms" if "latency" in name else "MACs", lower_bound=name.startswith("min_")
                )
        macs = self.max_macs is not None or self.min_macs is not None
        latency = self.max_latency_ms is not None or self.min_latency_ms is not None
        if macs and latency:
            raise ConfigError("give a MACs budget or a latency budget, not both: the front has one cost axis")
        if (self.cost == "macs" and latency) or (self.cost == "latency" and macs):
            raise ConfigError(f"cost={self.cost!r} does not match the budget given; drop one of them")
        drop = self.max_metric_drop
        if drop is not None:
            if isinstance(drop, bool) or not isinstance(drop, numbers.Real) or math.isnan(drop):
                raise ConfigError(f"max_metric_drop={drop!r}: must be a number of metric points >= 0, or null")
            if not 0 <= drop < math.inf:
                raise ConfigError(f"max_metric_drop={drop!r}: must be >= 0 metric points and finite, or null")
            self.max_metric_drop = float(drop)
        if self.confirm and self.max_metric_drop is None:
            raise ConfigError(
                "confirm (--confirm) re-checks a metric drop on every dev example: give max_metric_drop too "
                "(--max-metric-drop)"
            )
        if self.latency_backend not in LATENCY_BACKENDS:
            choose = ", ".join(LATENCY_BACKENDS)
            raise ConfigError(f"latency backend {self.latency_backend!r} is not supported; choose one of {choose}")
        if self.latency_precision not in INFERENCE_PRECISIONS:
            choose = ", ".join(INFERENCE_PRECISIONS)
            raise ConfigError(f"latency_precision {self.latency_precision!r}: choose one of {choose}")
        if self.latency_precision != "f32" and self.latency_backend != "openvino":
            raise ConfigError(
                f"latency_precision {self.latency_precision!r} applies to latency_backend openvino only "
                f"({self.latency_backend} times fp32 graphs): set latency_backend (--latency-backend) openvino"
            )
        if self.latency_int8 and self.latency_backend != "openvino":
            raise ConfigError(
                f"latency_int8 applies to latency_backend openvino only ({self.latency_backend} times fp32 graphs): "
                "set latency_backend (--latency-backend) openvino, or drop latency_int8 (--latency-int8)"
            )
        self._check_latency_options_are_used()

    def _check_latency_options_are_used(self) -> None:
        """Timing options change nothing unless genes are timed (a latency budget or cost, or measure_latency): a
        warning says so, rather than ignoring them without a word. Not an error: a recipe that sets them beside
        measure_latency may turn measure_latency off alone (``--set search.measure_latency=false``)."""
        if self.cost_kind == "latency" or self.measure_latency:
            return
        defaults = {f.name: f.default for f in fields(self) if f.name in _LATENCY_OPTIONS}
        given = [name for name in _LATENCY_OPTIONS if getattr(self, name) != defaults[name]]
        if given:
            flags = ", ".join(f"{name} (--{name.replace('_', '-')})" for name in given)
            warnings.warn(
                f"{flags} set how genes are timed, and this search times none: they have no effect. Add "
                "measure_latency (--measure-latency) or a latency budget (--max-latency-ms) to time genes",
                UserWarning,
                stacklevel=4,  # the caller of SearchConfig(...)
            )

    @property
    def cost_kind(self) -> str:
        """The front's axis: ``cost`` if given, else latency when a latency budget is, else MACs."""
        if self.cost is not None:
            return self.cost
        return "latency" if self.max_latency_ms is not None or self.min_latency_ms is not None else "macs"


def parse_amount(text: str | None, full: float, unit: str, lower_bound: bool = False) -> float | None:
    """``"1.2G"`` -> 1.2e9, ``"55%"`` -> 0.55 * full, ``"8"`` -> 8.0; a budget must be > 0, the lower end of a band
    (``lower_bound``) >= 0 (0: no lower end)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgGtT%]?)\s*", str(text))
    if not match:
        raise ConfigError(f"budget {text!r} ({unit}) is not a number: write e.g. 1.2G, 900M, 8.5 or 55%")
    value, suffix = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(value):
        raise ConfigError(f"budget {text!r} ({unit}) is too large: write e.g. 1.2G, 900M, 8.5 or 55%")
    if value < 0 or (value == 0 and not lower_bound):
        least = ">= 0" if lower_bound else "> 0"
        raise ConfigError(f"budget {text!r} ({unit}) must be {least}: write e.g. 1.2G, 900M, 8.5 or 55%")
    if suffix == "%":
        return value / 100.0 * full
    return value * _SUFFIXES.get(suffix, 1.0)


def _integer(name: str, value: object, low: int | None, tail: str = "") -> int:
    """``value`` as an int (numpy integers too); refused unless an integer (not a bool) >= ``low``."""
    bound = "" if low is None else f">= {low}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name}={value!r}: must be an integer {bound}".rstrip() + tail)
    if low is not None and value < low:
        raise ConfigError(f"{name}={value!r}: must be {bound}{tail}")
    return int(value)


def check_drop_scale(drop: float | None, task: str, metric: str) -> None:
    """A drop is in the metric's own units: SQuAD F1 / EM run 0-100, a classifier's accuracy / F1 0-1. A drop of 1
    or more on a fraction lets every gene through (the worst scores 0); one above 0.1 is ten points or more, most
    likely a value meant in points (the SQuAD recipe's 0.5)."""
    if drop is None or task == "question-answering":
        return
    points = f"{drop:g} on {metric}, a fraction, is {100 * drop:g} points"
    if drop >= 1:
        raise ConfigError(f"max_metric_drop {points}: any gene keeps it; for 1 point give 0.01")
    if drop > 0.1:
        warnings.warn(f"max_metric_drop {points}; for {drop:g} points give {drop / 100:g}", stacklevel=3)
