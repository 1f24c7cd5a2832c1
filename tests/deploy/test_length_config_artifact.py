"""A searched model's token-count config travels with its reference length and runs on inputs of any length up to
it, in the fp32 artifact as in the model (the old artifact refused every input shorter than the first count)."""

import pytest
import torch
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model

import qla_sdk
from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig, from_pretrained
from qla_sdk.search.genes import GeneSpace


def test_the_search_gives_token_genes_their_reference_length():
    lc = GeneSpace(num_layers=3, seq_len=64).length_config((52, 43, 33))
    assert lc.reference_length == 64 and str(lc) == "52,43,33@64"


@pytest.mark.parametrize("text", ["bad", "a gorgeous, witty, seductive movie that goes on and on " * 3])
def test_an_fp32_artifact_with_token_counts_predicts_short_and_long_inputs(tmp_path, text):
    tokenizer = minilm_tokenizer()
    lc = LengthConfig((52, 43), reference_length=64)
    model = tiny_model("text-classification", tokenizer, tmp_path / "m", length_config=lc)
    art = export_fp32(model, tokenizer, tmp_path / "art")
    predictor = qla_sdk.load(art)
    assert predictor.runner.length_config == lc  # saved and loaded with its reference length
    assert len(predictor.predict([text])) == 1
    ids = torch.tensor([tokenizer(text, truncation=True, max_length=64)["input_ids"]])
    with torch.inference_mode():
        reloaded = from_pretrained(tmp_path / "art" / "model").eval()
        assert torch.equal(reloaded(ids), reloaded(ids, length_config=lc))  # the model runs its own config


def test_inputs_longer_than_the_reference_are_refused_with_the_fix(tmp_path):
    tokenizer = minilm_tokenizer()
    model = tiny_model("text-classification", tokenizer, tmp_path / "m", length_config=LengthConfig((20, 10), True, 32))
    ids = torch.randint(1000, 2000, (1, 40))
    with pytest.raises(ConfigError, match="chosen for inputs of 32 tokens.*truncate to 32"):
        model(ids)
