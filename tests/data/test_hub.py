"""A data name that is no local file or folder: a hub dataset id goes to the hub (here, with no network, a patched
`datasets.load_dataset`), and a failed lookup says both that no such file or folder exists and why the hub failed
(it said only "Cannot send a request, as the client has been closed."); a name the hub cannot hold fails at once."""

import pytest

from qla_sdk.data import load_classification, load_squad
from qla_sdk.errors import ConfigError

datasets = pytest.importorskip("datasets")


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The names `datasets.load_dataset` was asked for; it fails as with no network. Run in an empty folder."""
    monkeypatch.chdir(tmp_path)
    asked = []

    def load_dataset(name, *args, **kwargs):
        asked.append(name)
        raise RuntimeError("Cannot send a request, as the client has been closed.\nTraceback lines of the retries")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return asked


@pytest.mark.parametrize("load", [load_classification, load_squad])
@pytest.mark.parametrize("name", ["nosuchname", "glue", "user/dataset"])
def test_a_failed_hub_lookup_says_no_such_file_and_why(hub, tmp_path, load, name):
    with pytest.raises(ConfigError) as caught:
        load(name)
    message = str(caught.value)
    assert hub == [name]  # hub names still go to the hub
    assert message.startswith(f"no such file or folder: {name!r} (in {tmp_path})")
    assert "Hugging Face Hub dataset" in message
    assert "RuntimeError: Cannot send a request, as the client has been closed." in message
    assert "Traceback lines" not in message  # the first line says why


@pytest.mark.parametrize("load", [load_classification, load_squad])
@pytest.mark.parametrize("name", ["my data", "a..b", "-dev"])
def test_a_name_the_hub_cannot_hold_fails_without_a_lookup(hub, load, name):
    with pytest.raises(ConfigError, match=f"no such file or folder: '{name}'.*no Hugging Face Hub dataset id"):
        load(name)
    assert hub == []


def test_a_hub_dataset_still_loads(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    rows = datasets.Dataset.from_dict({"sentence": ["a fine film", "a dull film"], "label": [1, 0]})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *a, **k: rows)
    data = load_classification("glue", "validation", subset="sst2")
    assert data.texts == [("a fine film",), ("a dull film",)] and data.labels == [1, 0]


def test_detection_reports_the_other_text_columns(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("id\ttitle\tcontent\tscore\tlabel\n1\tgood\tdull and long\t0.5\t1\n2\tbad\tgood grief\t2\t0\n")
    data = load_classification(path)
    assert data.text_columns == ("content",) and data.other_text_columns == ("title",)  # numbers are not text
    assert load_classification(path, text_columns=["title"]).other_text_columns == ()
