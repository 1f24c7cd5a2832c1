"""Fixtures for deploy tests: a tiny model over the real MiniLM WordPiece vocabulary (texts tokenize as in
deployment). Plain functions: a second conftest.py would clash with tests/conftest.py."""

import functools

import torch

from qla_sdk.modeling import from_pretrained


def tiny_model(task: str, tokenizer, folder, length_config=None):
    from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    cls = BertForQuestionAnswering if task == "question-answering" else BertForSequenceClassification
    cls(config).eval().save_pretrained(folder)
    model = from_pretrained(folder, task).eval()
    model.length_config = length_config
    return model


@functools.cache
def minilm_tokenizer():
    from qla_sdk.data import load_tokenizer
    from qla_sdk.pretrained import minilm_path

    return load_tokenizer(minilm_path())


def export_fp32(model, tokenizer, path, **kwargs):
    from qla_sdk.deploy import export_model
    from qla_sdk.quantize import QuantConfig

    kwargs.setdefault("max_length", 64)
    return export_model(model, path, tokenizer, config=QuantConfig(backend="fp32"), **kwargs)


def tiny_openvino_qa(folder, seq_lens=(32, 64)):
    """A tiny QA checkpoint (``folder/hf``, ratio length config 0.5,0.25) and its int8 OpenVINO artifact
    (``folder/artifact``, f32 inference precision, one graph per ``seq_lens``)."""
    from qla_sdk.deploy import export_model
    from qla_sdk.quantize import QuantConfig

    tokenizer = minilm_tokenizer()
    model = tiny_model("question-answering", tokenizer, folder / "hf", length_config="0.5,0.25")
    calibration = [{"input_ids": [101, *range(2000, 2000 + n), 102]} for n in (10, 20, 30, 40)]
    config = QuantConfig(backend="openvino", inference_precision="f32", seq_lens=tuple(seq_lens))
    artifact = folder / "artifact"
    export_model(model, artifact, tokenizer, config=config, calibration=calibration, max_length=max(seq_lens))
    return folder / "hf", artifact
