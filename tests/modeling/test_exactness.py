"""Without a length config our encoder equals transformers on the same weights (fp32, padded batch)."""

import pytest
import torch
from conftest import padded_batch

from qla_sdk.modeling import from_pretrained


def _reference_outputs(hf_model, ids, mask, task):
    with torch.no_grad():
        out = hf_model(input_ids=ids, attention_mask=mask)
    return (out.start_logits, out.end_logits) if task == "question-answering" else (out.logits,)


@pytest.mark.parametrize("family", ["bert", "roberta"])
@pytest.mark.parametrize("task", ["question-answering", "text-classification"])
def test_matches_transformers(tiny_checkpoint, family, task):
    folder, hf_model = tiny_checkpoint(family, task)
    model = from_pretrained(folder, task).eval()
    ids, mask = padded_batch(hf_model.config.vocab_size, hf_model.config.pad_token_id)
    expected = _reference_outputs(hf_model, ids, mask, task)
    with torch.no_grad():
        got = model(ids, mask)
    got = got if task == "question-answering" else (got,)
    for e, g in zip(expected, got, strict=False):
        assert (e - g).abs().max().item() <= 1e-4


@pytest.mark.parametrize("task", ["question-answering", "text-classification"])
def test_matches_transformers_on_pretrained_minilm(minilm_dir, task):
    from transformers import BertForQuestionAnswering, BertForSequenceClassification

    cls = BertForQuestionAnswering if task == "question-answering" else BertForSequenceClassification
    torch.manual_seed(0)
    hf_model = cls.from_pretrained(str(minilm_dir)).eval()  # the head starts random: copy it into ours
    model = from_pretrained(minilm_dir, task).eval()
    if task == "question-answering":
        model.head.qa.load_state_dict(hf_model.qa_outputs.state_dict())
    else:
        model.head.dense.load_state_dict(hf_model.bert.pooler.dense.state_dict())
        model.head.out.load_state_dict(hf_model.classifier.state_dict())
    ids, mask = padded_batch(30522, 0, lengths=(40, 17, 3))
    expected = _reference_outputs(hf_model, ids, mask, task)
    with torch.no_grad():
        got = model(ids, mask)
    got = got if task == "question-answering" else (got,)
    for e, g in zip(expected, got, strict=False):
        assert (e - g).abs().max().item() <= 1e-4
