"""What load() checks beyond the sha256 of each file: that qla.json says what the model files say (task, labels,
length config, max_length, vocabulary), that every listed file is there even with verify=False, that damaged model
files fail as a CheckpointError naming the artifact, and that texts with no token the model reads are refused."""

import json
import shutil

import pytest
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model, tiny_openvino_qa

import qla_sdk
from qla_sdk.errors import CheckpointError, ConfigError, IntegrityError
from qla_sdk.io import sha256_file
from qla_sdk.modeling import LengthConfig


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def pristine(tokenizer, tmp_path_factory):
    """fp32 artifacts of a classifier and a QA model, by task."""
    root = tmp_path_factory.mktemp("fp32")
    lc = LengthConfig.parse("0.7,0.4")
    cls = tiny_model("text-classification", tokenizer, root / "cls", lc)
    qa = tiny_model("question-answering", tokenizer, root / "qa", lc)
    return {
        "text-classification": export_fp32(cls, tokenizer, root / "cls-art"),
        "question-answering": export_fp32(qa, tokenizer, root / "qa-art", doc_stride=16),
    }


@pytest.fixture(scope="module")
def openvino_pristine(tokenizer, tmp_path_factory):
    """int8 OpenVINO artifacts of a QA model (graphs of 32 and 64 tokens) and a classifier (32), by task."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from qla_sdk.deploy import export_model
    from qla_sdk.quantize import QuantConfig

    root = tmp_path_factory.mktemp("openvino")
    _, qa = tiny_openvino_qa(root / "qa")
    model = tiny_model("text-classification", tokenizer, root / "cls")
    calibration = [{"input_ids": [101, *range(2000, 2000 + n), 102]} for n in (10, 20)]
    config = QuantConfig(backend="openvino", inference_precision="f32", seq_lens=(32,))
    cls = export_model(model, root / "cls-art", tokenizer, config=config, calibration=calibration, max_length=32)
    return {"question-answering": qa, "text-classification": cls}


def _copy(pristine, task, tmp_path):
    return shutil.copytree(pristine[task], tmp_path / "art")


def _edit(artifact, change):
    data = json.loads((artifact / "qla.json").read_text())
    change(data)
    (artifact / "qla.json").write_text(json.dumps(data))


def _load(artifact, **kwargs):
    return qla_sdk.load(artifact, max_batch_size=1, **kwargs)  # OpenVINO: no dynamic-batch copies to compile


def test_pristine_artifacts_pass_every_check(pristine, openvino_pristine):
    for artifacts in (pristine, openvino_pristine):
        cls, qa = _load(artifacts["text-classification"]), _load(artifacts["question-answering"])
        assert cls.predict("a fine film")["label"] in ("negative", "positive")
        assert qa.predict(question="Who sat?", context="The cat sat on the mat.")["answer"]


# ------------------------------------------------------------------------------- A: missing files, vocabulary


@pytest.mark.parametrize("rel", ["tokenizer/tokenizer.json", "model/config.json", "model/model.safetensors"])
def test_a_listed_file_that_is_missing_is_refused_without_verify(pristine, tmp_path, rel):
    artifact = _copy(pristine, "text-classification", tmp_path)
    (artifact / rel).unlink()
    with pytest.raises(IntegrityError, match=f"{rel} is listed in qla.json but missing"):
        qla_sdk.load(artifact, verify=False)


def _save_tokenizer(folder, words):
    """A WordPiece tokenizer of BERT's special tokens and ``words``, saved in ``folder``."""
    from qla_sdk.data import load_tokenizer

    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]))
    load_tokenizer(folder / "vocab.txt").save_pretrained(str(folder))
    (folder / "vocab.txt").unlink()


def _replace_tokenizer(artifact, words):
    """Swap in another tokenizer and record its files in qla.json, as a hand edit that keeps the hashes would."""
    shutil.rmtree(artifact / "tokenizer")
    _save_tokenizer(artifact / "tokenizer", words)

    def rehash(data):
        kept = {rel: digest for rel, digest in data["files"].items() if not rel.startswith("tokenizer/")}
        added = {f"tokenizer/{p.name}": sha256_file(p) for p in (artifact / "tokenizer").iterdir()}
        data["files"] = {**kept, **added}

    _edit(artifact, rehash)


@pytest.mark.parametrize("backend", ["fp32", "openvino"])
@pytest.mark.parametrize(
    ("words", "message"),
    [
        ([f"w{i}" for i in range(30_600)], r"tokenizer has 30605 tokens and its model 30522 word embeddings"),
        ([], r"tokenizer has only its 5 special tokens"),  # the remains of one
    ],
)
def test_a_tokenizer_the_model_cannot_read_is_refused(pristine, openvino_pristine, tmp_path, backend, words, message):
    artifacts = openvino_pristine if backend == "openvino" else pristine
    artifact = _copy(artifacts, "question-answering", tmp_path)
    _replace_tokenizer(artifact, words)
    with pytest.raises(CheckpointError, match=message):
        _load(artifact)


def test_export_refuses_a_tokenizer_past_the_embeddings(tokenizer, tmp_path):
    from qla_sdk.deploy import export_model
    from qla_sdk.errors import ConfigError
    from qla_sdk.quantize import QuantConfig

    small = tiny_model("question-answering", tokenizer, tmp_path / "qa")
    small.config.vocab_size = 120  # as a model of a smaller vocabulary records it
    with pytest.raises(ConfigError, match="the tokenizer has 30522 tokens and the model 120 word embeddings"):
        export_model(small, tmp_path / "art", tokenizer, config=QuantConfig(backend="fp32"))
    assert not (tmp_path / "art").exists()


def test_a_smaller_vocabulary_than_the_embedding_table_loads(pristine, tmp_path):
    """Models may embed more ids than their tokenizer writes (a table padded to a round size, a trimmed vocabulary):
    only ids past the table, or a tokenizer of no words, are certain to be wrong."""
    artifact = _copy(pristine, "question-answering", tmp_path)
    _replace_tokenizer(artifact, ["a", "fine", "film"])
    _load(artifact)


# ------------------------------------------------------------------------------- B: task and labels


@pytest.mark.parametrize("labels", [["positive", "negative"], ["negative"], [], None, ["negative", "positive", "x"]])
def test_labels_that_disagree_with_the_model_are_refused(pristine, tmp_path, labels):
    artifact = _copy(pristine, "text-classification", tmp_path)
    _edit(artifact, lambda d: d.update(labels=labels))
    with pytest.raises(CheckpointError, match=r"labels .*\['negative', 'positive'\]"):
        _load(artifact)


@pytest.mark.parametrize("backend", ["fp32", "openvino"])
@pytest.mark.parametrize("task", ["text-classification", "question-answering"])
def test_a_task_that_disagrees_with_the_model_is_refused(pristine, openvino_pristine, tmp_path, backend, task):
    artifacts = openvino_pristine if backend == "openvino" else pristine
    other = "question-answering" if task == "text-classification" else "text-classification"
    artifact = _copy(artifacts, task, tmp_path)
    labels = None if other == "question-answering" else ["negative", "positive"]
    _edit(artifact, lambda d: d.update(task=other, labels=labels))
    with pytest.raises(CheckpointError, match=f"task is '{other}'.*{task}"):
        _load(artifact)


def test_an_openvino_classifier_with_fewer_labels_than_logits_is_refused(openvino_pristine, tmp_path):
    artifact = _copy(openvino_pristine, "text-classification", tmp_path)
    _edit(artifact, lambda d: d.update(labels=["negative"]))
    with pytest.raises(CheckpointError, match=r"labels is \['negative'\], but the model gives 2 logits"):
        _load(artifact)


# ------------------------------------------------------------------------------- C: length config, max_length


@pytest.mark.parametrize("length_config", [None, "0.5,0.25", "0.7,0.4,0.2"])
def test_a_length_config_the_model_does_not_run_is_refused(pristine, tmp_path, length_config):
    artifact = _copy(pristine, "question-answering", tmp_path)
    lc = LengthConfig.parse(length_config)
    _edit(artifact, lambda d: d.update(length_config=lc.to_dict() if lc else None))
    with pytest.raises(CheckpointError, match=r"length_config .*0\.7,0\.4"):
        _load(artifact)


def test_max_length_beyond_the_position_embeddings_is_refused(pristine, tmp_path):
    artifact = _copy(pristine, "question-answering", tmp_path)
    _edit(artifact, lambda d: d.update(max_length=129))  # 128 positions
    with pytest.raises(CheckpointError, match="max_length is 129"):
        _load(artifact)


def test_graphs_shorter_than_max_length_are_served_at_the_longest(openvino_pristine, tmp_path):
    """Exports before this check allowed --seq-lens that stop short of max_length: such an artifact still loads
    (it used to fail only on long inputs), served at its longest graph, with a warning saying so."""
    artifact = _copy(openvino_pristine, "question-answering", tmp_path)
    _edit(artifact, lambda d: d.update(max_length=129))  # graphs up to 64 tokens
    with pytest.warns(UserWarning, match="longest graph takes 64 tokens, fewer than its max_length 129"):
        predictor = qla_sdk.load(artifact)
    assert predictor.max_length == 64
    assert predictor.predict(question="Who scores?", context="The span head scores every position. " * 30)["answer"]
    assert qla_sdk.load(artifact, max_length=32).max_length == 32  # asked for: no warning needed
    with pytest.raises(ConfigError, match="max_length 100: the longest graph of .* takes 64 tokens"):
        qla_sdk.load(artifact, max_length=100)


def test_a_runtime_that_is_not_installed_is_not_called_a_damaged_file(pristine, tmp_path, monkeypatch):
    from qla_sdk.backends import get_backend
    from qla_sdk.quantize import QuantizationError

    def not_installed(*args, **kwargs):
        raise QuantizationError("OpenVINO is not installed: pip install 'qla-sdk[openvino]'")

    monkeypatch.setattr(type(get_backend("fp32")), "load", not_installed)
    with pytest.raises(QuantizationError, match="is not installed"):
        _load(_copy(pristine, "question-answering", tmp_path))


def test_export_refuses_graphs_that_stop_short_of_max_length(tokenizer, tmp_path):
    # The artifact load() would refuse is not written: refused before any quantization.
    from qla_sdk.deploy import export_model
    from qla_sdk.errors import ConfigError
    from qla_sdk.quantize import QuantConfig

    model = tiny_model("text-classification", tokenizer, tmp_path / "cls")
    config = QuantConfig(backend="openvino", seq_lens=(32,))
    with pytest.raises(ConfigError, match=r"seq_lens \[32\] stop short of max_length \(64\)"):
        export_model(
            model, tmp_path / "art", tokenizer, config=config, calibration=[{"input_ids": [101, 102]}], max_length=64
        )
    assert not (tmp_path / "art").exists()


def test_a_shorter_max_length_still_loads(pristine, tmp_path):
    artifact = _copy(pristine, "question-answering", tmp_path)
    _edit(artifact, lambda d: d.update(max_length=32, doc_stride=8))
    assert _load(artifact).max_length == 32


# ------------------------------------------------------------------------------- D: damaged model files


def test_a_graph_length_without_its_files_is_refused(openvino_pristine, tmp_path):
    artifact = _copy(openvino_pristine, "question-answering", tmp_path)
    _edit(artifact, lambda d: d["model"].update(seq_lens=[32, 64, 256]))
    with pytest.raises(CheckpointError, match=r"model.seq_lens lists 256.*seq256"):
        _load(artifact)


@pytest.mark.parametrize(
    ("backend", "rel"),
    [("fp32", "model/model.safetensors"), ("openvino", "model/weights.bin"), ("openvino", "model/seq32.xml")],
)
@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_a_truncated_model_file_is_a_checkpoint_error(pristine, openvino_pristine, tmp_path, backend, rel, keep):
    artifacts = openvino_pristine if backend == "openvino" else pristine
    artifact = _copy(artifacts, "question-answering", tmp_path)
    data = (artifact / rel).read_bytes()
    (artifact / rel).write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=f"{artifact}: its {backend} model files cannot be read") as err:
        _load(artifact, verify=False)
    assert "Exception from" not in str(err.value)  # OpenVINO's source location, not its reason
    assert "copy the artifact again" in str(err.value)


def test_a_truncated_tokenizer_is_a_checkpoint_error(pristine, tmp_path):
    artifact = _copy(pristine, "text-classification", tmp_path)
    data = (artifact / "tokenizer/tokenizer.json").read_bytes()
    (artifact / "tokenizer/tokenizer.json").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{artifact}: its tokenizer cannot be loaded"):
        _load(artifact, verify=False)


# ------------------------------------------------------------------------------- E: texts with no tokens

NO_TOKENS = ["\u200b\u200b", "\x00\x01\x02", "\ufeff"]


@pytest.fixture(scope="module")
def classifier(pristine):
    return _load(pristine["text-classification"])


@pytest.fixture(scope="module")
def reader(pristine):
    return _load(pristine["question-answering"])


@pytest.mark.parametrize("text", NO_TOKENS)
def test_a_context_with_no_tokens_is_refused(reader, text):
    with pytest.raises(ValueError, match="context #1 has no tokens the model reads"):
        reader.predict(question=["Who sat?", "Who sat?"], context=["The cat sat.", text])


@pytest.mark.parametrize("text", NO_TOKENS)
def test_a_question_with_no_tokens_is_refused(reader, text):
    with pytest.raises(ValueError, match="question #0 has no tokens the model reads"):
        reader.predict(question=text, context="The cat sat.")


@pytest.mark.parametrize("text", NO_TOKENS)
@pytest.mark.parametrize("pair", [False, True])
def test_a_text_with_no_tokens_is_refused(classifier, text, pair):
    texts = [("a fine film", "a fine film"), ("a fine film", text)] if pair else ["a fine film", text]
    with pytest.raises(ValueError, match="text #1 has no tokens the model reads"):
        classifier.predict(texts)
