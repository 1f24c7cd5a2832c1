"""Training: the one loop (fine-tuning, distillation and length-adaptive training all run through ``train``)."""

from qla_sdk.train.config import TrainConfig, add_train_arguments, config_from_args, cpu_supports_bf16
from qla_sdk.train.loop import LossTerms, TrainResult, train
from qla_sdk.train.tasks import evaluate, model_inputs, predict, task_loss, task_loss_fn

__all__ = [
    "LossTerms",
    "TrainConfig",
    "TrainResult",
    "add_train_arguments",
    "config_from_args",
    "cpu_supports_bf16",
    "evaluate",
    "model_inputs",
    "predict",
    "task_loss",
    "task_loss_fn",
    "train",
]
