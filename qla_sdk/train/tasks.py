"""What each task trains on and how it is scored, shared by fine-tuning, distillation, LAT and the search.

QA: mean of start and end cross-entropy; scored with SQuAD v1.1 EM/F1 (0-100) after n-best span decoding.
Classification: cross-entropy (MSE for a single-output regression head); scored with accuracy and F1 (0-1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import TASKS, LengthConfig

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors the model takes (labels and bookkeeping keys left out)."""
    return {k: batch[k] for k in INPUT_KEYS if k in batch}


def task_loss(outputs, batch: dict[str, torch.Tensor], task: str) -> torch.Tensor:
    """Training loss of the model outputs for ``task`` against the labels in ``batch``."""
    if task == "question-answering":
        start_logits, end_logits = outputs
        if "start_positions" not in batch or "end_positions" not in batch:
            raise ConfigError("QA batch has no start_positions/end_positions: build features with training=True")
        length = start_logits.shape[1]
        # Positions past the input (truncated answers) are ignored, as in transformers' QA heads.
        starts = batch["start_positions"].clamp(0, length)
        ends = batch["end_positions"].clamp(0, length)
        start_loss = F.cross_entropy(start_logits.float(), starts, ignore_index=length)
        end_loss = F.cross_entropy(end_logits.float(), ends, ignore_index=length)
        return (start_loss + end_loss) / 2
    if task == "text-classification":
        if "labels" not in batch:
            raise ConfigError("classification batch has no labels: load the data with its label column")
        logits = outputs.float()
        if logits.shape[-1] == 1:
            return F.mse_loss(logits.squeeze(-1), batch["labels"].float())
        return F.cross_entropy(logits, batch["labels"])
    raise ConfigError(f"task {task!r} is not supported; choose one of {', '.join(TASKS)}")


def task_loss_fn(
    task: str, length_config: LengthConfig | str | None = None
) -> Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]:
    """``loss_fn(model, batch)`` for ``qla_sdk.train.train``: forward, then ``task_loss``."""
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is not supported; choose one of {', '.join(TASKS)}")
    length_config = LengthConfig.parse(length_config)

    def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return task_loss(model(**model_inputs(batch), length_config=length_config), batch, task)

    return loss_fn


def predict(
    model: nn.Module,
    features,
    batch_size: int = 64,
    length_config: LengthConfig | str | None = None,
    pad_to: int | None = None,
) -> list:
    """Raw outputs per feature row, in the order of ``features``: a logits vector (classification) or a pair of
    start/end logit rows cut to the row's real length (QA).

    Batches are sorted by length (least padding). ``pad_to`` pads every batch to that length instead, as a
    fixed-shape deployed model sees its inputs; an integer length config (token counts) needs it, and gets the
    longest row of ``features`` when it is omitted.
    """
    from qla_sdk.data import batches

    length_config = LengthConfig.parse(length_config)
    if pad_to is None and length_config is not None and not length_config.is_ratio:
        pad_to = max(features.lengths)
    device = next(model.parameters()).device
    results: list = [None] * len(features)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches(
                features, batch_size, shuffle=False, sort_by_length=True, with_index=True, pad_to_multiple_of=pad_to
            ):
                index = batch.pop("index").tolist()
                inputs = {k: v.to(device) for k, v in model_inputs(batch).items()}
                outputs = model(**inputs, length_config=length_config)
                lengths = batch["attention_mask"].sum(dim=1).tolist()
                if isinstance(outputs, tuple):
                    starts, ends = (o.float().cpu().numpy() for o in outputs)
                    for row, (i, n) in enumerate(zip(index, lengths, strict=True)):
                        results[i] = (starts[row, :n], ends[row, :n])
                else:
                    logits = outputs.float().cpu().numpy()
                    for row, i in enumerate(index):
                        results[i] = logits[row]
    finally:
        model.train(was_training)
    return results


def evaluate(
    model: nn.Module,
    features,
    task: str,
    examples: Sequence | None = None,
    batch_size: int = 64,
    length_config: LengthConfig | str | None = None,
    pad_to: int | None = None,
) -> dict[str, float]:
    """Score ``model`` on ``features``: ``{"accuracy", "f1"}`` (0-1) for classification, ``{"exact_match",
    "f1"}`` (0-100) for QA, where ``examples`` are the ``QAExample``s the features were made from.
    ``length_config`` runs a sub-model (a LAT/search candidate)."""
    from qla_sdk.data import accuracy, f1, postprocess_qa, squad_scores

    if task == "question-answering":
        if examples is None:
            raise ConfigError("QA evaluation needs the examples the features were made from (examples=...)")
        outputs = predict(model, features, batch_size, length_config, pad_to)
        predictions = postprocess_qa(examples, features, [o[0] for o in outputs], [o[1] for o in outputs])
        return squad_scores(predictions, examples)
    if task == "text-classification":
        if not getattr(features, "labels", None):
            raise ConfigError("classification evaluation needs labelled features (the data has no label column)")
        logits = np.stack(predict(model, features, batch_size, length_config, pad_to))
        if logits.shape[-1] == 1:
            raise ConfigError("a regression head (num_labels=1) has no accuracy; evaluate it with its own metric")
        preds, labels = logits.argmax(-1), np.asarray(features.labels)
        average = "binary" if logits.shape[-1] == 2 else "macro"
        return {"accuracy": accuracy(preds, labels), "f1": f1(preds, labels, average=average)}
    raise ConfigError(f"task {task!r} is not supported; choose one of {', '.join(TASKS)}")
