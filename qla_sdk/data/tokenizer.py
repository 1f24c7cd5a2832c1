"""Fast tokenizers from a checkpoint folder, a hub id, or a bare ``vocab.txt``.

QA features need character offsets, which only the Rust ("fast") tokenizers give, so a slow one is refused.
"""

from __future__ import annotations

from pathlib import Path

from qla_sdk.errors import ConfigError

# Files any transformers tokenizer folder holds at least one of.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "sentencepiece.bpe.model", "spiece.model")
BERT_MAX_LENGTH = 512


def load_tokenizer(path_or_vocab_txt: str | Path, *, lowercase: bool = True, model_max_length: int = BERT_MAX_LENGTH):
    """``AutoTokenizer`` (fast) from a checkpoint folder or hub id, or ``BertTokenizerFast`` from a ``vocab.txt``.

    ``lowercase`` applies to a bare ``vocab.txt`` (BERT uncased vocabularies); a folder's own config decides for
    itself. A folder holding only ``vocab.txt`` is read as a BERT WordPiece vocabulary too.
    """
    path = Path(path_or_vocab_txt)
    if path.is_file():
        if path.suffix != ".txt":
            raise ConfigError(
                f"tokenizer {path}: a file must be a WordPiece vocab.txt; for other tokenizers pass the folder "
                "that holds tokenizer.json / tokenizer_config.json"
            )
        return _from_vocab_txt(path, lowercase, model_max_length)
    if path.is_dir():
        if not any((path / name).exists() for name in _TOKENIZER_FILES):
            if (path / "vocab.txt").exists():
                return _from_vocab_txt(path / "vocab.txt", lowercase, model_max_length)
            raise ConfigError(
                f"tokenizer folder {path} holds no tokenizer files (expected one of {', '.join(_TOKENIZER_FILES)} "
                "or vocab.txt): save the tokenizer with the checkpoint (tokenizer.save_pretrained) or pass a vocab.txt"
            )
    elif _looks_like_path(str(path_or_vocab_txt)):
        raise ConfigError(f"tokenizer path {path} does not exist: pass a checkpoint folder, a vocab.txt or a hub id")
    return _auto(str(path_or_vocab_txt))


def _looks_like_path(text: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else with a separator, a dot-prefix or a suffix is a path.
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or text.endswith((".txt", ".json"))


def _auto(name_or_path: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load a tokenizer from {name_or_path!r}: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"tokenizer {name_or_path!r} is a slow (Python) tokenizer; QA features need character offsets, which "
            "only fast tokenizers give: save a tokenizer.json for it (tokenizer.save_pretrained of a fast tokenizer)"
        )
    if tokenizer.model_max_length > 100_000:  # "unset" sentinel of transformers
        tokenizer.model_max_length = BERT_MAX_LENGTH
    return tokenizer


def _from_vocab_txt(vocab_txt: Path, lowercase: bool, model_max_length: int):
    from transformers import BertTokenizerFast

    # One token per line, its id is the line number (as BERT's own load_vocab reads it).
    with open(vocab_txt, encoding="utf-8-sig") as f:
        vocab = {line.rstrip("\n"): index for index, line in enumerate(f)}
    missing = [token for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if token not in vocab]
    if missing:
        raise ConfigError(f"{vocab_txt} is not a BERT WordPiece vocabulary: it lacks {', '.join(missing)}")
    # transformers 5 takes the vocabulary itself (its old vocab_file argument is silently ignored).
    return BertTokenizerFast(vocab=vocab, do_lower_case=lowercase, model_max_length=model_max_length)
