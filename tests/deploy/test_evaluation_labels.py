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


def test_with_several_graph_lengths_each_row_runs_on_the_smallest_that_holds_it(tmp_path):
    """An artifact with graphs of 8 and 32 tokens serves a 5-token sentence on the 8-token graph: the int8 check
    scores it the same way, not every row at the longest graph alone."""
    tokenizer = minilm_tokenizer()
    model = tiny_model("text-classification", tokenizer, tmp_path / "model")
    texts = [*TEXTS, "a long and winding sentence about a film that goes on and on for a while"]
    data = tmp_path / "dev.tsv"
    # the label is whether the sentence has more than 4 real tokens ([CLS] and [SEP] included)
    rows = [(t, "positive" if len(tokenizer(t)["input_ids"]) > 4 else "negative") for t in texts]
    data.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    shapes = []

    def run(ids, mask, types):  # right where the real length is read from the mask, at any padding
        shapes.append(tuple(ids.shape))
        return torch.nn.functional.one_hot((mask.sum(-1) > 4).long(), 2).float()

    evaluate = evaluator(model, str(data), tokenizer, max_length=32, doc_stride=0)
    assert evaluate(run, (32, 8)) == 1.0
    assert sorted({s[1] for s in shapes}) == [8, 32] and sum(s[0] for s in shapes if s[1] == 32) == 1
    shapes.clear()
    assert evaluate(run, 32) == 1.0 and {s[1] for s in shapes} == {32}


def test_qa_windows_scored_on_several_graph_lengths_match_the_longest_graph(tmp_path):
    """Windows of one question may run on graphs of different lengths: their spans are put back in order."""
    from pathlib import Path

    tokenizer = minilm_tokenizer()
    model = tiny_model("question-answering", tokenizer, tmp_path / "model")
    squad = Path(__file__).resolve().parents[1] / "fixtures" / "squad_tiny.json"

    def run(ids, mask, types):
        with torch.inference_mode():
            return model(ids, mask, types, None)

    evaluate = evaluator(model, str(squad), tokenizer, max_length=48, doc_stride=16)
    _, (_, features) = task_rows("question-answering", str(squad), "validation", tokenizer, 48, 16, None)
    lengths = [len(features.row(i)["input_ids"]) for i in range(len(features))]
    assert min(lengths) <= 40 < max(lengths)  # both graphs serve windows
    assert evaluate(run, (40, 48)) == pytest.approx(evaluate(run, 48), abs=1e-6)
