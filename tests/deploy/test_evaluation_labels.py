"""The accuracy check of int8 builds (``qla quantize --eval-data``, the recipe's quantize stage) scores labels as the
model names them, not in the sorted order a data file alone would give."""

import pytest
import torch
from deploy_helpers import minilm_tokenizer, tiny_model

from qla_sdk.deploy.evaluation import evaluator, task_rows
from qla_sdk.errors import ConfigError

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


def test_the_evaluator_reads_the_columns_it_is_given_and_qa_data_has_none(tmp_path):
    """A dev set with two text columns: the one named is scored, not detection's pick ("sentence", by name)."""
    tokenizer = minilm_tokenizer()
    model = tiny_model("text-classification", tokenizer, tmp_path / "model")
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\treview\tverdict\n" + "".join(f"ok\tthe film, {t}\tpositive\n" for t in TEXTS))

    def run(ids, mask, types):  # "positive" (id 1) for inputs longer than [CLS] ok [SEP]
        return torch.nn.functional.one_hot((mask.sum(-1) > 3).long(), 2).float()

    for column, accuracy in (("review", 1.0), ("sentence", 0.0)):
        evaluate = evaluator(model, str(data), tokenizer, 32, 0, text_columns=[column], label_column="verdict")
        assert evaluate(run, 32) == accuracy
    with pytest.raises(ConfigError, match="question-answering data is SQuAD form"):
        task_rows("question-answering", str(data), "validation", tokenizer, 32, 16, None, text_columns=["review"])
