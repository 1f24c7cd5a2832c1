"""The accuracy check of int8 builds (``qla quantize --eval-data``, the recipe's quantize stage) scores labels as the
model names them, not in the sorted order a data file alone would give."""

import pytest
import torch
from deploy_helpers import minilm_tokenizer, tiny_model

from qla_sdk.deploy.evaluation import evaluator

TEXTS = ["a good movie", "a bad film", "fine acting", "a dull plot", "great fun", "awful", "moving", "boring"]


def test_the_evaluator_scores_labels_as_the_model_names_them(tmp_path):
    tokenizer = minilm_tokenizer()
    model = tiny_model("text-classification", tokenizer, tmp_path / "model")
    model.config.id2label = {0: "positive", 1: "negative"}  # not the sorted order of the names

    def run(ids, mask, types):
        with torch.inference_mode():
            return model(ids, mask, types, None)

    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    predicted = run(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).argmax(-1).tolist()
    names = [model.config.id2label[p] for p in predicted]
    flipped = {"positive": "negative", "negative": "positive"}
    labels = names[:6] + [flipped[n] for n in names[6:]]  # 6 of 8 right: 0.75, and 0.25 with the ids mixed up
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in zip(TEXTS, labels, strict=True)))

    evaluate = evaluator(model, str(data), tokenizer, max_length=32, doc_stride=0)
    assert evaluate(run, 32) == pytest.approx(0.75)
