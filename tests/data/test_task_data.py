"""load_task_data: the other task's data is named as such, not as a malformed file of this task's kind; the evaluation
data is read through the training data's text columns."""

from pathlib import Path

import pytest

from qla_sdk.data import load_tokenizer
from qla_sdk.data.task_data import load_task_data
from qla_sdk.errors import ConfigError

FIXTURES = Path(__file__).parent.parent / "fixtures"
SST, SQUAD = FIXTURES / "sst2_tiny.tsv", FIXTURES / "squad_tiny.json"


@pytest.mark.parametrize(
    "task, data, message",
    [
        ("question-answering", SST, "looks like text-classification data, and the model is a question-answering model"),
        ("text-classification", SQUAD, "looks like question-answering data, and the model is a text-classification"),
    ],
)
def test_the_other_tasks_data_is_named(minilm_dir, task, data, message):
    with pytest.raises(ConfigError, match=message):
        load_task_data(str(data), str(data), load_tokenizer(minilm_dir), task)


def test_a_malformed_file_of_the_tasks_own_kind_keeps_its_message(minilm_dir, tmp_path):
    bad = tmp_path / "dev.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON") as caught:
        load_task_data(str(bad), str(bad), load_tokenizer(minilm_dir), "question-answering")
    assert "the model is a" not in str(caught.value)


def test_a_squad_file_with_a_text_suffix_is_not_taken_for_classification_data(minilm_dir, tmp_path):
    bad = tmp_path / "dev.txt"
    bad.write_text('{"data": [{"title": "t", "paragraphs": [}')  # SQuAD JSON with an error, saved as .txt
    with pytest.raises(ConfigError) as caught:
        load_task_data(str(bad), str(bad), load_tokenizer(minilm_dir), "question-answering")
    assert "the model is a" not in str(caught.value)


def _tsv(path: Path, header: str, rows: list[str]) -> str:
    path.write_text("\n".join([header, *rows]) + "\n")
    return str(path)


@pytest.mark.parametrize("given", [None, ["sentence"]])
def test_the_evaluation_data_reads_the_training_datas_text_columns(minilm_dir, tmp_path, given):
    train = _tsv(tmp_path / "train.tsv", "sentence\tlabel", ["a good film\t1", "a bad film\t0"])
    # on its own this file would be read as a pair (question, sentence), not as the sentence training used
    dev = _tsv(tmp_path / "dev.tsv", "question\tsentence\tlabel", ["is it good?\ta good film\t1"])
    data = load_task_data(train, dev, load_tokenizer(minilm_dir), "text-classification", text_columns=given)
    assert data.text_columns == ("sentence",)
    alone = load_task_data(dev, dev, load_tokenizer(minilm_dir), "text-classification")
    assert alone.text_columns == ("question", "sentence")
    assert data.eval_features.lengths[0] < alone.eval_features.lengths[0]


def test_evaluation_data_without_the_training_datas_text_column_is_named(minilm_dir, tmp_path):
    train = _tsv(tmp_path / "train.tsv", "sentence\tlabel", ["a good film\t1", "a bad film\t0"])
    dev = _tsv(tmp_path / "dev.tsv", "text\tlabel", ["a good film\t1"])
    with pytest.raises(ConfigError, match=r"has no column 'sentence', the text column\(s\) found in the training data"):
        load_task_data(train, dev, load_tokenizer(minilm_dir), "text-classification")


@pytest.mark.parametrize(
    "name, header",
    [
        ("qa.csv", "id,question,context,answers"),
        ("qa.tsv", "Question\tContext\tanswer_text"),
        ("qa.txt", "question,context"),
    ],
)
def test_a_table_of_squad_fields_is_not_taken_for_classification_data(minilm_dir, tmp_path, name, header):
    table = _tsv(tmp_path / name, header, ["who went?,Bob went.,Bob".replace(",", "\t" if "\t" in header else ",")])
    with pytest.raises(ConfigError, match="is a table of SQuAD's fields") as caught:
        load_task_data(table, table, load_tokenizer(minilm_dir), "question-answering")
    assert "text-classification" not in str(caught.value)


def test_a_question_and_sentence_pair_table_still_reads_as_classification_data(minilm_dir, tmp_path):
    table = _tsv(tmp_path / "qnli.tsv", "question\tsentence\tlabel", ["who went?\tBob went.\t0"])
    with pytest.raises(ConfigError, match="looks like text-classification data"):
        load_task_data(table, table, load_tokenizer(minilm_dir), "question-answering")


def test_a_csv_of_squad_fields_after_blank_lines_is_named_as_a_table(minilm_dir, tmp_path):
    table = _tsv(tmp_path / "qa.csv", "\n\nquestion,context,answers", ["who went?,Bob went.,Bob"])
    with pytest.raises(ConfigError, match="is a table of SQuAD's fields"):
        load_task_data(table, table, load_tokenizer(minilm_dir), "question-answering")


@pytest.mark.parametrize("name", ["squad.json", "squad.txt"])
def test_broken_one_line_squad_json_mentioning_question_and_context_keeps_the_json_error(minilm_dir, tmp_path, name):
    broken = tmp_path / name  # minified, its closing brackets lost; its text holds ", question, context, "
    broken.write_text(
        '{"data": [{"title": "t, question, context, x", "paragraphs": [{"context": "a, question, context"'
    )
    with pytest.raises(ConfigError, match="is not valid JSON") as caught:
        load_task_data(str(broken), str(broken), load_tokenizer(minilm_dir), "question-answering")
    assert "table" not in str(caught.value) and "the model is a" not in str(caught.value)
