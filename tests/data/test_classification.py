import json
import shutil
from pathlib import Path

import pytest

from qla_sdk.data import ClassificationData, classification_features, load_classification, load_tokenizer
from qla_sdk.errors import ConfigError

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return load_tokenizer(minilm_dir)


def test_sst2_tsv():
    data = load_classification(FIXTURES / "sst2_tiny.tsv")
    assert len(data) == 10 and data.text_columns == ("sentence",) and not data.is_pair
    assert data.texts[0] == ("hide new secretions from the parental units",)  # GLUE's trailing space stripped
    assert data.texts[6][0].startswith('demonstrates that the director of such hollywood blockbusters as " patriot')
    assert data.texts[9] == ("are more deeply thought through than in most ` right-thinking ' films",)
    assert data.labels == [0, 0, 1, 0, 0, 0, 1, 1, 0, 1]
    assert data.label_names == ["0", "1"]


def test_glue_folder_finds_dev_for_validation(tmp_path):
    shutil.copy(FIXTURES / "sst2_tiny.tsv", tmp_path / "dev.tsv")
    assert len(load_classification(tmp_path, "validation")) == 10
    with pytest.raises(ConfigError, match=r"no 'train' file in .*data files there: \['dev.tsv'\]"):
        load_classification(tmp_path, "train")


def test_mrpc_tsv_pair():
    data = load_classification(FIXTURES / "mrpc_tiny.tsv")  # "#1 String"/"#2 String"/"Quality" are GLUE's names
    assert data.is_pair and data.text_columns == ("sentence1", "sentence2")
    assert data.texts[0][0].startswith('Amrozi accused his brother , whom he called " the witness "')
    assert data.texts[3][1] == "Tab shares jumped 20 cents , or 4.6 % , to set a record closing high at A $ 4.57 ."
    assert data.labels == [1, 0, 1, 0]


def test_column_map_and_string_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('review_text,sentiment\n"Great, really great",pos\nawful,neg\n"said ""meh""",neg\n')
    data = load_classification(path, column_map={"review_text": "text", "sentiment": "label"})
    assert data.texts == [("Great, really great",), ("awful",), ('said "meh"',)]
    assert data.label_names == ["neg", "pos"] and data.labels == [1, 0, 0]
    same = load_classification(path, text_columns=["review_text"], label_column="sentiment")
    assert same.texts == data.texts and same.labels == data.labels


def test_an_empty_label_cell_is_named(tmp_path):
    """An empty cell is a missing label, not a class named ''."""
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\ngood\t1\nbad\t\nfine\t0\n")
    with pytest.raises(ConfigError, match="data row 2 has no label"):
        load_classification(path)


@pytest.mark.parametrize(
    "label_names, labels",
    [(["entailment", "not_entailment"], [0, 1, 1, 0]), (["not_entailment", "entailment"], [1, 0, 0, 1])],
)
def test_qnli_jsonl_pair_with_label_names(label_names, labels):
    data = load_classification(FIXTURES / "qnli_tiny.jsonl", label_names=label_names)
    assert data.text_columns == ("question", "sentence")  # a pair, though "sentence" alone would also match
    assert data.labels == labels and data.label_names == label_names


@pytest.mark.parametrize(
    "payload",
    [
        [
            {"premise": "A man sleeps.", "hypothesis": "A person rests.", "label": 0},
            {"premise": "x", "hypothesis": "y", "label": 2},
        ],
        {"premise": ["A man sleeps.", "x"], "hypothesis": ["A person rests.", "y"], "label": [0, 2]},
        {
            "data": [
                {"premise": "A man sleeps.", "hypothesis": "A person rests.", "label": 0},
                {"premise": "x", "hypothesis": "y", "label": 2},
            ]
        },
    ],
)
def test_json_layouts(tmp_path, payload):
    path = tmp_path / "nli.json"
    path.write_text(json.dumps(payload))
    data = load_classification(path)
    assert data.texts == [("A man sleeps.", "A person rests."), ("x", "y")]
    assert data.labels == [0, 2] and data.label_names == ["0", "1", "2"]


def test_json_lines_in_a_json_file(tmp_path):
    path = tmp_path / "sst.json"  # datasets' Dataset.to_json writes JSON lines
    path.write_text('{"sentence": "good", "label": 1}\n{"sentence": "bad", "label": 0}\n')
    data = load_classification(path)
    assert data.texts == [("good",), ("bad",)] and data.labels == [1, 0]


def test_unlabelled(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("index\tsentence\n0\tfine\n1\tnot fine\n")
    data = load_classification(path, label_column=None, label_names=["negative", "positive"])
    assert data.labels == [] and data.label_names == ["negative", "positive"]
    assert classification_features(data, load_tokenizer_tiny(tmp_path)).labels is None


def load_tokenizer_tiny(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "fine", "not"]) + "\n")
    return load_tokenizer(vocab)


def test_single_sentence_features(tokenizer):
    data = load_classification(FIXTURES / "sst2_tiny.tsv")
    features = classification_features(data, tokenizer, max_length=8)
    assert len(features) == 10 and features.labels == data.labels and features.label_names == ["0", "1"]
    assert features.input_ids[7] == tokenizer("of saucy")["input_ids"]
    assert all(len(ids) <= 8 and ids[0] == tokenizer.cls_token_id for ids in features.input_ids)
    assert max(len(ids) for ids in features.input_ids) == 8  # long sentences are truncated, short ones not padded
    assert all(set(t) == {0} for t in features.token_type_ids)


def test_pair_features(tokenizer):
    data = load_classification(FIXTURES / "mrpc_tiny.tsv")
    features = classification_features(data, tokenizer, max_length=128)
    for (first, second), ids, segments in zip(data.texts, features.input_ids, features.token_type_ids, strict=True):
        assert ids == tokenizer(first, second)["input_ids"]
        assert segments.count(0) == len(tokenizer(first)["input_ids"])  # [CLS] a [SEP]
        assert segments[-1] == 1
    short = classification_features(data, tokenizer, max_length=16)
    assert all(
        len(ids) == 16 and 1 in segments for ids, segments in zip(short.input_ids, short.token_type_ids, strict=True)
    )


# ---------------------------------------------------------------------------------------------------- errors


def write(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "name, text, kwargs, message",
    [
        (
            "a.tsv",
            "phrase\tsentiment\nok\t1\n",
            {},
            r"no text columns found in .*columns \['phrase', 'sentiment'\], expected one of sentence \| text",
        ),
        ("a.tsv", "sentence\tscore\nok\t1\n", {}, r"no label column 'label'; its columns are \['sentence', 'score'\]"),
        ("a.tsv", "sentence\tlabel\n", {}, "holds no rows"),
        ("a.tsv", "", {}, "is empty"),
        ("a.tsv", "sentence\tlabel\nok\t1\nbad\trow\textra\n", {}, "line 3 has 3 fields, the header has 2"),
        ("a.tsv", "sentence\tlabel\nok\tpositive\n", {"label_names": ["0", "1"]}, r"labels \['positive'\] match none"),
        ("a.tsv", "sentence\tlabel\nok\t2\n", {"label_names": ["neg", "pos"]}, r"labels \['2'\] match none"),
        ("a.tsv", "sentence\tlabel\nok\t-3\n", {}, "label -3 is negative"),
        ("a.json", '[{"sentence": "ok", "label": 0.5}]', {}, "label column 'label' holds 0.5"),
        ("a.json", '[{"sentence": null, "label": 0}]', {}, "column 'sentence' holds None"),
        ("a.json", "{oops", {}, "is not valid JSON"),
        ("a.json", '"text"', {}, "expected a list of records"),
        ("a.tsv", "sentence\tlabel\nok\t1\n", {"text_columns": ["sentence", "other"]}, r"missing \['other'\]"),
        ("a.tsv", "sentence\tlabel\nok\t1\n", {"column_map": {"txt": "sentence"}}, "column_map names column 'txt'"),
        ("a.xml", "<a/>", {}, "unsupported file type '.xml'"),
    ],
)
def test_errors(tmp_path, name, text, kwargs, message):
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=message):
        load_classification(path, **kwargs)


def test_dataset_folder_through_datasets(tmp_path):
    pytest.importorskip("datasets")
    (tmp_path / "snapshot" / "qnli").mkdir(parents=True)  # a hub snapshot keeps its data under subfolders
    shutil.copy(FIXTURES / "qnli_tiny.jsonl", tmp_path / "snapshot" / "qnli" / "validation.jsonl")
    data = load_classification(tmp_path / "snapshot", "validation", cache_dir=str(tmp_path / "cache"))
    assert data.text_columns == ("question", "sentence") and len(data) == 4
    assert data.labels == [0, 1, 1, 0] and data.label_names == ["entailment", "not_entailment"]
    with pytest.raises(ConfigError, match="cannot load .* split 'train' with datasets.load_dataset"):
        load_classification(tmp_path / "snapshot", "train", cache_dir=str(tmp_path / "cache"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_classification(tmp_path / "train.tsv")


def test_data_checks():
    with pytest.raises(ConfigError, match="2 labels for 1 texts"):
        ClassificationData([("a",)], [0, 1], ["0", "1"])
    with pytest.raises(ConfigError, match=r"label ids \[3\] are outside 0..1"):
        ClassificationData([("a",)], [3], ["0", "1"])


@pytest.mark.parametrize(
    "name, make",
    [
        (
            "mrpc.tsv",
            lambda: (FIXTURES / "mrpc_tiny.tsv").read_text(encoding="utf-8"),
        ),  # GLUE's MRPC train.tsv has a BOM
        ("pairs.csv", lambda: "sentence1,sentence2,label\nthe cat sat,a cat sat,1\nrain,sun,0\n"),
        ("pairs.jsonl", lambda: (FIXTURES / "qnli_tiny.jsonl").read_text(encoding="utf-8")),
        ("pairs.json", lambda: json.dumps([{"sentence1": "a", "sentence2": "b", "label": 1}])),
    ],
)
def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path, name, make):
    plain, marked = tmp_path / f"plain-{name}", tmp_path / f"bom-{name}"
    plain.write_text(make(), encoding="utf-8")
    marked.write_text(make(), encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    expected, got = load_classification(plain), load_classification(marked)
    assert got.texts == expected.texts and got.labels == expected.labels and got.text_columns == expected.text_columns


def test_a_squad_file_with_a_byte_order_mark_loads(tmp_path):
    from qla_sdk.data import load_squad

    marked = tmp_path / "squad.json"
    marked.write_text((FIXTURES / "squad_tiny.json").read_text(encoding="utf-8"), encoding="utf-8-sig")
    assert [e.id for e in load_squad(marked)] == [e.id for e in load_squad(FIXTURES / "squad_tiny.json")]
