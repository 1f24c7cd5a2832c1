"""``DevColumns``: the columns a dev or calibration set is read in, shared by qla eval, search, export and quantize:
given, else recorded (what training read), else detected; given ones unlike the record are named."""

import pytest

from qla_sdk.data.columns import DevColumns
from qla_sdk.errors import ConfigError

RECORD = {"text_columns": ["title"], "label_column": "verdict"}


@pytest.mark.parametrize(
    ("text", "label", "record", "read"),
    [
        (None, None, RECORD, (["title"], "verdict")),  # the record
        (["body"], None, RECORD, (["body"], "verdict")),  # a given flag wins
        (None, "stars", RECORD, (["title"], "stars")),
        (None, None, {}, (None, "label")),  # nothing recorded: detection, and "label"
    ],
)
def test_given_else_recorded_else_detected(text, label, record, read):
    columns = DevColumns.of(text, label, record)
    assert (columns.text_columns, columns.label_column) == read


def test_only_flags_unlike_the_record_are_named():
    assert DevColumns.of(["title"], "verdict", RECORD).unlike_training("eval", "m", "it counts") == []
    assert DevColumns.of(["body"], None, {}).unlike_training("eval", "m", "it counts") == []  # nothing recorded
    lines = DevColumns.of(["title", "body"], "label", RECORD).unlike_training("search", "m", "scores mean something")
    assert lines == [
        "qla search: warning: --text-columns 'title', 'body': m was trained on 'title' (its qla.json records it); "
        "scores mean something only if 'title', 'body' hold(s) the same text",
        "qla search: warning: --label-column 'label': m was trained on 'verdict' (its qla.json records it); "
        "scores mean something only if 'label' hold(s) the same labels",
    ]


def test_flags_for_a_question_answering_model_are_refused():
    DevColumns.of(None, None, {}).refuse_for_qa("question-answering", "m")  # none given: nothing to refuse
    DevColumns.of(["title"], None, {}).refuse_for_qa("text-classification", "m")
    with pytest.raises(ConfigError, match="m is a question-answering model"):
        DevColumns.of(None, "verdict", {}).refuse_for_qa("question-answering", "m")
