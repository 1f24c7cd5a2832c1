import shutil

import pytest

from qla_sdk.data import load_tokenizer
from qla_sdk.errors import ConfigError

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", ",", "!"]


@pytest.fixture
def vocab_txt(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(WORDS) + "\n")
    return path


def test_checkpoint_folder(minilm_dir):
    tokenizer = load_tokenizer(minilm_dir)
    assert tokenizer.is_fast and tokenizer.model_max_length == 512
    assert tokenizer.convert_ids_to_tokens(tokenizer("Hello WORLD")["input_ids"]) == [
        "[CLS]",
        "hello",
        "world",
        "[SEP]",
    ]


def test_vocab_txt_is_lower_case_wordpiece(vocab_txt):
    tokenizer = load_tokenizer(vocab_txt)
    assert tokenizer.is_fast and tokenizer.pad_token_id == 0
    encoded = tokenizer("Hello, Worlds!", "hello")
    assert encoded["input_ids"] == [2, 5, 8, 6, 7, 9, 3, 5, 3]  # ids are line numbers; "worlds" -> world ##s
    assert encoded["token_type_ids"] == [0] * 7 + [1] * 2
    assert tokenizer("fish")["input_ids"] == [2, 1, 3]  # unknown word -> [UNK]
    cased = load_tokenizer(vocab_txt, lowercase=False)
    assert cased("Hello")["input_ids"] == [2, 1, 3]


def test_folder_with_only_vocab_txt(tmp_path, vocab_txt):
    folder = tmp_path / "tok"
    folder.mkdir()
    shutil.copy(vocab_txt, folder / "vocab.txt")
    assert load_tokenizer(folder)("hello")["input_ids"] == [2, 5, 3]


def test_matches_the_checkpoint_tokenizer(minilm_dir):
    from_vocab, from_folder = load_tokenizer(minilm_dir / "vocab.txt"), load_tokenizer(minilm_dir)
    text = "The Normans' leader, Rollo, swore fealty in 911 AD. Café naïve"
    assert from_vocab(text, "second part")["input_ids"] == from_folder(text, "second part")["input_ids"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: p / "missing" / "vocab.txt", "does not exist"),
        (lambda p: p, "holds no tokenizer files"),
        (lambda p: (p / "config.json").write_text("{}") and p / "config.json", "must be a WordPiece vocab.txt"),
        (lambda p: (p / "words.txt").write_text("a\nb\n") and p / "words.txt", r"lacks \[PAD\], \[UNK\]"),
    ],
)
def test_errors(tmp_path, make, message):
    with pytest.raises(ConfigError, match=message):
        load_tokenizer(make(tmp_path))
