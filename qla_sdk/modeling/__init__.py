"""The compact length-adaptive encoder: load HF checkpoints, prune tokens per layer, restore, count MACs."""

from qla_sdk.modeling.checkpoint import from_pretrained, init_weights, load_config, save_pretrained
from qla_sdk.modeling.encoder import Encoder, EncoderOutput, LayerTrace
from qla_sdk.modeling.heads import TASKS, FixedLengthModel, TaskModel
from qla_sdk.modeling.length import LengthConfig
from qla_sdk.modeling.macs import count_macs

__all__ = [
    "TASKS",
    "Encoder",
    "EncoderOutput",
    "FixedLengthModel",
    "LayerTrace",
    "LengthConfig",
    "TaskModel",
    "count_macs",
    "from_pretrained",
    "init_weights",
    "load_config",
    "save_pretrained",
]
