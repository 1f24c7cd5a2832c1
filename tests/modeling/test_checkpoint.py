import json

import pytest
import torch
from conftest import padded_batch

from qla_sdk.data import load_tokenizer
from qla_sdk.errors import CheckpointError, ConfigError
from qla_sdk.modeling import LengthConfig, from_pretrained, save_pretrained


@pytest.mark.parametrize("family", ["bert", "roberta"])
@pytest.mark.parametrize("task", ["question-answering", "text-classification"])
def test_save_roundtrip_loads_in_transformers(tiny_checkpoint, tmp_path, family, task):
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    folder, hf_model = tiny_checkpoint(family, task)
    model = from_pretrained(folder, task)
    model.length_config = LengthConfig.parse("10,6")
    save_pretrained(model, tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "qla.json").read_text())
    assert meta["task"] == task and meta["length_config"]["lengths"] == [10, 6]
    auto = AutoModelForQuestionAnswering if task == "question-answering" else AutoModelForSequenceClassification
    back = auto.from_pretrained(tmp_path / "out").eval()
    ids, mask = padded_batch(hf_model.config.vocab_size, hf_model.config.pad_token_id)
    with torch.no_grad():
        a, b = hf_model(input_ids=ids, attention_mask=mask), back(input_ids=ids, attention_mask=mask)
    key = "start_logits" if task == "question-answering" else "logits"
    assert torch.equal(a[key], b[key])
    reloaded = from_pretrained(tmp_path / "out")  # task and length config come from qla.json
    assert reloaded.task == task and reloaded.length_config == model.length_config


def test_missing_config(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        from_pretrained(tmp_path, "question-answering")


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        from_pretrained(tmp_path / "nope", "question-answering")


def test_unsupported_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="'gpt2' is not supported; supported: bert, roberta"):
        from_pretrained(tmp_path, "question-answering")


def test_pickle_checkpoint_refused(tiny_checkpoint, tmp_path):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pickle"):
        from_pretrained(tmp_path, "question-answering")


def test_unknown_task(tiny_checkpoint):
    folder, _ = tiny_checkpoint("bert", "question-answering")
    with pytest.raises(ValueError, match="'summarization' is not supported"):
        from_pretrained(folder, "summarization")


def test_a_head_for_other_labels_is_named(tiny_checkpoint):
    folder, _ = tiny_checkpoint("bert", "text-classification")  # 2 labels
    with pytest.raises(CheckpointError, match=r"head has weights of shape \(2, \d+\), and 3 labels need \(3, "):
        from_pretrained(folder, "text-classification", num_labels=3)


def test_a_teacher_without_a_trained_head_is_refused(tiny_checkpoint):
    folder, _ = tiny_checkpoint("bert", "text-classification")
    with pytest.raises(CheckpointError, match="has no trained question-answering head"):
        from_pretrained(folder, "question-answering", trained_head=True)


def test_base_model_gets_random_head_with_warning(minilm_dir):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = from_pretrained(minilm_dir, "text-classification", num_labels=3)
    assert model.head.out.out_features == 3
    assert any("head starts random" in str(w.message) for w in caught)


def test_a_random_head_is_drawn_from_the_seed_given(minilm_dir):
    """A training run's seed decides its random head (without one, torch's global generator draws it)."""
    heads = [from_pretrained(minilm_dir, "text-classification", seed=s).head.out.weight for s in (1, 1, 2)]
    assert torch.equal(heads[0], heads[1]) and not torch.equal(heads[0], heads[2])


def test_length_config_is_checked_where_it_is_set(tiny_checkpoint):
    model = from_pretrained(tiny_checkpoint("bert", "question-answering")[0], "question-answering")
    model.length_config = "10,6"  # parsed on assignment
    assert model.length_config == LengthConfig((10, 6))
    with pytest.raises(ConfigError, match="3 entries but the model has 2 layers"):
        model.length_config = "10,6,4"
    with pytest.raises(ConfigError, match="grows"):
        model.length_config = [4, 6]
    assert model.length_config == LengthConfig((10, 6))  # a refused value leaves the model's own
    model.length_config = None
    assert model.length_config is None


def test_a_saved_length_config_for_other_layers_is_named(tiny_checkpoint, tmp_path):
    model = from_pretrained(tiny_checkpoint("bert", "question-answering")[0], "question-answering")
    model.length_config = "10,6"
    save_pretrained(model, tmp_path / "ckpt")
    meta_path = tmp_path / "ckpt" / "qla.json"
    meta = json.loads(meta_path.read_text())
    meta["length_config"]["lengths"] = [10, 6, 4]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"qla.json does not fit this model.*3 entries.*2 layers"):
        from_pretrained(tmp_path / "ckpt", "question-answering")


def test_saving_back_into_its_folder_keeps_the_tokenizer_and_the_history(tiny_checkpoint, tmp_path):
    """Load, set the searched config, save back: the folder keeps its tokenizer files and qla.json records."""
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint("bert", "question-answering")[0], folder)
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
    record = {"task": "question-answering", "length_adaptive": {"p": 0.2}, "search": {"value": 70.1}}
    (folder / "qla.json").write_text(json.dumps(record))
    model = from_pretrained(folder)
    model.length_config = "10,6"
    save_pretrained(model, folder)
    meta = json.loads((folder / "qla.json").read_text())
    assert meta["length_adaptive"] == {"p": 0.2} and meta["length_config"]["lengths"] == [10, 6]
    assert "search" not in meta  # it described the config it chose, which the save replaced
    assert (folder / "vocab.txt").read_text().startswith("[PAD]")
    assert from_pretrained(folder).length_config == LengthConfig((10, 6))
    save_pretrained(from_pretrained(folder), folder, tokenizer=load_tokenizer(folder / "vocab.txt"))  # a new one
    assert (folder / "tokenizer.json").is_file()

    save_pretrained(model, tmp_path / "elsewhere")  # a new folder gets what this save writes, nothing more
    assert "length_adaptive" not in json.loads((tmp_path / "elsewhere" / "qla.json").read_text())
    assert not (tmp_path / "elsewhere" / "vocab.txt").exists()


def test_saving_back_refuses_to_drop_other_files(tiny_checkpoint, tmp_path):
    """A folder with more than a checkpoint (a sentence-transformers layout, other weights) is not replaced."""
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint("bert", "question-answering")[0], folder)
    (folder / "1_Pooling").mkdir()
    (folder / "rust_model.ot").write_bytes(b"weights")
    model = from_pretrained(folder, "question-answering")
    with pytest.raises(CheckpointError, match=r"loaded from, and a save would replace it without 1_Pooling, rust_m"):
        save_pretrained(model, folder)
    assert (folder / "1_Pooling").is_dir() and (folder / "rust_model.ot").read_bytes() == b"weights"


def test_init_weights_from_a_seed_leaves_the_global_generator_alone():
    from transformers import BertConfig

    from qla_sdk.modeling import TaskModel, init_weights

    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    a, b, c = (TaskModel(config, "question-answering") for _ in range(3))
    torch.manual_seed(0)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    init_weights(a, seed=5)
    assert torch.equal(torch.rand(3), expected_next)
    init_weights(b, seed=5)
    init_weights(c, seed=6)
    weight = "encoder.layers.0.query.weight"
    state_a, state_b, state_c = a.state_dict(), b.state_dict(), c.state_dict()
    assert weight in state_a
    assert torch.equal(state_a[weight], state_b[weight]) and not torch.equal(state_a[weight], state_c[weight])
