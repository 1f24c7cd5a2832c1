"""Post-training static int8: INC 3.x (PT2E) for Inductor, with accuracy-aware tuning; int8 serialization."""

from qla_sdk.quantize.config import BACKENDS, INT8_BACKENDS, QuantConfig, default_seq_lens
from qla_sdk.quantize.inc import QuantizationError, TuningResult, quantize, static_config, tune, tuning_configs

__all__ = [
    "BACKENDS",
    "INT8_BACKENDS",
    "QuantConfig",
    "QuantizationError",
    "TuningResult",
    "default_seq_lens",
    "quantize",
    "static_config",
    "tune",
    "tuning_configs",
]
