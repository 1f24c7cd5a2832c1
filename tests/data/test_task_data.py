"""load_task_data: the other task's data is named as such, not as a malformed file of this task's kind."""

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
