import pytest
from transformers import BertConfig

from qla_sdk.cli import main
from qla_sdk.errors import ConfigError
from qla_sdk.modeling import count_macs

BERT_BASE = BertConfig()
MINILM = BertConfig(hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=12)


@pytest.mark.parametrize(
    "config, length_config, published",
    [
        (BERT_BASE, None, 35_340_779_904),  # Length-Adaptive Transformer, bert-base at 1x384
        (MINILM, "269,253,252,202,104,34", 2_485_456_896),  # MiniLM-L6-H384 with the QuaLA config
    ],
)
def test_agrees_with_published_figures(config, length_config, published):
    assert abs(count_macs(config, 384, length_config) - published) / published < 0.005


def test_pruning_lowers_macs_monotonically():
    a = count_macs(MINILM, 384, "300,300,300,300,300,300")
    b = count_macs(MINILM, 384, "300,250,200,150,100,50")
    assert count_macs(MINILM, 384) > a > b


@pytest.mark.parametrize(
    "args, words",
    [
        ((MINILM, 0), ["seq_len 0", "integer >= 1"]),
        ((MINILM, 38.4), ["seq_len 38.4"]),
        ((MINILM, 384, None, "summarization"), ["'summarization' is not supported"]),
        (({"hidden_size": 384}, 384), ["needs a model config", "got dict", "AutoConfig"]),
        ((MINILM, 384, "269,253,252"), ["3 entries but the model has 6 layers"]),
    ],
)
def test_bad_arguments_are_named(args, words):
    with pytest.raises(ConfigError) as err:
        count_macs(*args)
    for word in words:
        assert word in str(err.value)


def test_cli(minilm_dir, capsys):
    assert (
        main(["macs", "--model", str(minilm_dir), "--seq-len", "384", "--length-config", "269,253,252,202,104,34"]) == 0
    )
    assert "2,484,318,720 MACs" in capsys.readouterr().out


@pytest.mark.parametrize(
    "length_config, read_as",
    [
        ("1,1,1,1,1,1", "read as token counts: 1, 1, 1, 1, 1, 1 (for ratios, write 1 as 1.0)"),
        ("1,1,0.5,0.5,0.5,0.5", "read as ratios of the input's real length: 1, 1, 0.5, 0.5, 0.5, 0.5"),
        ("100,90,80,70,60,50@128", "read as token counts chosen at 128: 100, 90, 80, 70, 60, 50\n"),
    ],
)
def test_cli_says_how_it_read_the_length_config(minilm_dir, capsys, length_config, read_as):
    assert main(["macs", "--model", str(minilm_dir), "--seq-len", "128", "--length-config", length_config]) == 0
    assert read_as in capsys.readouterr().out


def test_cli_bad_config(minilm_dir, capsys):
    assert main(["macs", "--model", str(minilm_dir), "--seq-len", "384", "--length-config", "1,2,3,4,5,6"]) == 2
    assert "grows" in capsys.readouterr().err


def test_cli_counts_the_checkpoints_own_head(tiny_checkpoint, capsys):
    """A classifier's MACs with its classification head, as the search counted them; --task overrides."""
    from qla_sdk.modeling import count_macs, load_config

    folder, _ = tiny_checkpoint("bert", "text-classification")
    config = load_config(folder)
    assert main(["macs", "--model", str(folder), "--seq-len", "16"]) == 0
    assert f"{count_macs(config, 16, None, 'text-classification'):,} MACs" in capsys.readouterr().out
    assert main(["macs", "--model", str(folder), "--seq-len", "16", "--task", "question-answering"]) == 0
    assert f"{count_macs(config, 16, None, 'question-answering'):,} MACs" in capsys.readouterr().out
    assert main(["macs", "--model", str(folder), "--seq-len", "100000"]) == 2
    assert "the model takes at most" in capsys.readouterr().err
