"""Fine-tuning: the task loss through the one loop (``qla finetune`` and the recipe's teacher stage call it)."""

from __future__ import annotations

from torch import nn

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import TaskModel
from qla_sdk.train.config import TrainConfig
from qla_sdk.train.distill import train_on_features
from qla_sdk.train.loop import TrainResult
from qla_sdk.train.tasks import evaluate, task_loss_fn


def finetune(
    model: TaskModel,
    train_features,
    eval_features,
    task: str,
    train_config: TrainConfig,
    *,
    eval_examples=None,
    tokenizer=None,
    eval_batch_size: int | None = None,  # default: train_config.eval_batch_size
    extra_metadata: dict | None = None,
) -> TrainResult:
    """Train ``model`` (in place) on the task loss, written to ``train_config.output_dir/final``; metrics are the
    dev scores of ``eval_features`` (None: no evaluation; QA needs ``eval_examples``)."""
    if model.task != task:
        raise ConfigError(f"the model's task is {model.task!r}, not {task!r}")
    eval_batch_size = eval_batch_size or train_config.eval_batch_size

    def eval_fn(trained: nn.Module) -> dict:
        return evaluate(trained, eval_features, task, examples=eval_examples, batch_size=eval_batch_size)

    evaluation = eval_fn if eval_features is not None else None
    return train_on_features(
        model, task_loss_fn(task), train_features, train_config, evaluation, tokenizer, extra_metadata
    )
