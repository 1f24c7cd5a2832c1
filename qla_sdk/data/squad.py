"""Extractive QA in SQuAD v1.1 form: load examples, split a file by article, tokenize into doc-stride windows.

Features follow transformers' run_qa: ``tokenizer(question, context, truncation="only_second", stride=...,
return_overflowing_tokens=True, return_offsets_mapping=True)``; offsets of non-context tokens are ``None`` so
post-processing only ever picks context spans; a training window that does not hold the whole answer points at
the CLS token.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qla_sdk.data.rows import TokenRows
from qla_sdk.errors import ConfigError
from qla_sdk.io import OutputError, write_bytes_atomic

SQUAD_LAYOUT = (
    '{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", "answers": '
    '[{"text", "answer_start"}]}]}]}]}'
)


@dataclass
class QAExample:
    id: str
    title: str
    question: str
    context: str
    answers: list[dict] = field(default_factory=list)  # [{"text": str, "answer_start": int}], empty when unknown


@dataclass
class QAFeatures(TokenRows):
    """One row per doc-stride window; rows are unpadded python lists (tensors are made per batch)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None  # None for tokenizers without segment ids (RoBERTa)
    example_index: list[int]  # window -> index of its example in the list given to qa_features
    offset_mapping: list[list[tuple[int, int] | None]]  # character span in the context; None outside the context
    start_positions: list[int] | None = None  # training labels; 0 (CLS) when the answer is not in the window
    end_positions: list[int] | None = None
    pad_token_id: int = 0
    clipped_questions: list[int] = field(default_factory=list)  # examples whose question was cut to fit
    # The tokenizer's word of each token, kept only when asked: answers aligned to whole words need them, and a
    # training set's would be one Python int per token. The question's words are counted apart from the context's:
    # read them only where offset_mapping is not None (context tokens).
    word_ids: list[list[int | None]] | None = None

    def row(self, i: int) -> dict:
        """The model inputs (and labels) of window ``i``, as ``collate`` takes them."""
        out = self.inputs(i)
        if self.start_positions is not None and self.end_positions is not None:
            out["start_positions"] = self.start_positions[i]
            out["end_positions"] = self.end_positions[i]
        return out

    def subset(self, indices: Sequence[int]) -> QAFeatures:
        """Windows ``indices`` (e.g. a calibration sample); ``example_index`` still points into the same examples."""

        def pick(values):
            return None if values is None else [values[i] for i in indices]

        return QAFeatures(
            input_ids=pick(self.input_ids),
            token_type_ids=pick(self.token_type_ids),
            example_index=pick(self.example_index),
            offset_mapping=pick(self.offset_mapping),
            start_positions=pick(self.start_positions),
            end_positions=pick(self.end_positions),
            pad_token_id=self.pad_token_id,
            word_ids=pick(self.word_ids),
        )


# ---------------------------------------------------------------------------------------------------- loading


def load_squad(path_or_name: str | Path, split: str = "validation", *, cache_dir: str | None = None) -> list[QAExample]:
    """Examples from a SQuAD v1.1 JSON file, or through ``datasets.load_dataset`` from a hub name (e.g.
    ``"rajpurkar/squad"``) or a local dataset folder (columns id, title, context, question, answers)."""
    path = Path(path_or_name)
    if path.is_file():
        examples = _examples_from_squad_json(_read_json(path), str(path))
    elif not path.exists() and _looks_like_file(str(path_or_name)):
        raise ConfigError(f"SQuAD file {path} does not exist: check the path (or pass a `datasets` name)")
    else:
        examples = _examples_from_datasets(str(path_or_name), split, cache_dir)
    _check_examples(examples, str(path_or_name))
    return examples


def _looks_like_file(text: str) -> bool:
    return text.endswith((".json", ".jsonl")) or text.startswith((".", "/", "~")) or text.count("/") > 1


def _read_json(path: Path) -> object:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        columns = qa_table_columns(path)
        if columns:
            raise ConfigError(
                f"{path} is a table of SQuAD's fields (columns {columns}), not SQuAD JSON: question answering reads "
                f"a SQuAD v1.1 JSON file, {SQUAD_LAYOUT}, or a `datasets` name or folder with columns id, title, "
                "context, question, answers ({'text': [...], 'answer_start': [...]}): write the rows in one of those"
            ) from exc
        raise ConfigError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): "
            f"a SQuAD v1.1 file looks like {SQUAD_LAYOUT}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason}): save it as UTF-8 JSON") from exc


def qa_table_columns(path: Path) -> list[str] | None:
    """The columns of a CSV/TSV file whose header names both a question and a context column, else None: such a
    table holds QA data in a form the loaders do not read, not another task's data."""
    if path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        return None
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            header = f.read(4096).lstrip().partition("\n")[0]
    except OSError:
        return None
    if header[:1] in ("{", "["):  # JSON with an error, whatever its text holds
        return None
    separator = "\t" if "\t" in header else ","
    columns = [c.strip().strip('"').strip() for c in header.split(separator)]
    return columns if {"question", "context"} <= {c.lower() for c in columns} else None


def _articles(squad: object, source: str) -> list[dict]:
    if not isinstance(squad, dict) or not isinstance(squad.get("data"), list):
        raise ConfigError(f"{source}: expected a JSON object with a 'data' list of articles, as in {SQUAD_LAYOUT}")
    return squad["data"]


def _get(record: object, key: str, kind: type | tuple[type, ...], where: str) -> object:
    if not isinstance(record, dict) or key not in record:
        raise ConfigError(f"{where} has no '{key}' key: every entry must follow {SQUAD_LAYOUT}")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' is {type(value).__name__}, expected {getattr(kind, '__name__', kind)}")
    return value


def _examples_from_squad_json(squad: object, source: str) -> list[QAExample]:
    examples = []
    for a, article in enumerate(_articles(squad, source)):
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p, paragraph in enumerate(_get(article, "paragraphs", list, f"{source}: article {a}")):
            where = f"{source}: article {a} paragraph {p}"
            context = _get(paragraph, "context", str, where)
            for q, qa in enumerate(_get(paragraph, "qas", list, where)):
                at = f"{where} question {q}"
                if isinstance(qa, dict) and qa.get("is_impossible") is True:
                    raise ConfigError(
                        f"{at} (id {qa.get('id')!r}) is a SQuAD v2.0 question without an answer (is_impossible): the "
                        "SDK answers SQuAD v1.1 questions, whose answer is in their context, and would score this one "
                        "as if it had one; drop the is_impossible questions from the file"
                    )
                answers = []
                for n, answer in enumerate(_get(qa, "answers", list, at)):
                    answers.append(
                        {
                            "text": _get(answer, "text", str, f"{at} answer {n}"),
                            "answer_start": _get(answer, "answer_start", int, f"{at} answer {n}"),
                        }
                    )
                examples.append(
                    QAExample(
                        id=str(_get(qa, "id", (str, int), at)),
                        title=str(title),
                        question=_get(qa, "question", str, at),
                        context=context,
                        answers=answers,
                    )
                )
    return examples


def _examples_from_datasets(name: str, split: str, cache_dir: str | None) -> list[QAExample]:
    from qla_sdk.data.hub import load_dataset

    instead = "a SQuAD v1.1 JSON file, or a dataset folder or hub name with id/title/context/question/answers columns"
    dataset = load_dataset(name, split, None, cache_dir, instead)
    expected = {"id", "title", "context", "question", "answers"}
    missing = expected - set(dataset.column_names)
    if missing:
        raise ConfigError(
            f"dataset {name!r} split {split!r} has columns {dataset.column_names}; SQuAD form needs "
            f"{sorted(expected)} (missing {sorted(missing)})"
        )
    columns = dataset.to_dict()
    return [
        QAExample(
            id=str(columns["id"][i]),
            title=columns["title"][i],
            question=columns["question"][i],
            context=columns["context"][i],
            answers=[
                {"text": t, "answer_start": int(s)}
                for t, s in zip(columns["answers"][i]["text"], columns["answers"][i]["answer_start"], strict=True)
            ],
        )
        for i in range(len(dataset))
    ]


def _check_examples(examples: list[QAExample], source: str) -> None:
    if not examples:
        raise ConfigError(f"{source} holds no questions: pass a SQuAD file with at least one article and question")
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise ConfigError(
                f"{source}: question id {ex.id!r} appears twice; ids must be unique (predictions are keyed by id)"
            )
        seen.add(ex.id)
        if any(not a["text"].strip() for a in ex.answers):
            raise ConfigError(
                f"{source}: question {ex.id!r} has an empty answer text; every answer must be the span of its context "
                "it names (text and answer_start): fix or drop that answer"
            )
    misplaced = [
        ex.id
        for ex in examples
        for a in ex.answers
        if ex.context[a["answer_start"] : a["answer_start"] + len(a["text"])] != a["text"]
    ]
    if misplaced:
        warnings.warn(
            f"{source}: {len(misplaced)} answers do not match their context at answer_start (first: question "
            f"{misplaced[0]!r}); their training labels point at the wrong span",
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------------------------- split


def split_squad_by_article(
    src: str | Path, train_path: str | Path, eval_path: str | Path, train_fraction: float = 0.8, seed: int = 0
) -> dict[str, dict[str, int]]:
    """Split a SQuAD file by article into two SQuAD files; no article (so no context) lands in both.

    The order depends only on the articles and the seed (sha256 keys, no RNG whose stream could change between
    versions), so the same input and seed give byte-identical outputs. Articles keep their source order in each
    part; articles without questions go with the training part. An existing output is replaced only where it is
    empty or an earlier split of the same source. Returns ``{"train": {"articles": n, "questions": m}, "eval": {...}}``.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"train_fraction {train_fraction}: must be between 0 and 1 (exclusive), e.g. 0.8")
    src = Path(src)
    if not src.is_file():
        raise ConfigError(f"SQuAD file {src} does not exist: pass the path of a SQuAD v1.1 JSON file")
    outputs = {"train": Path(train_path), "eval": Path(eval_path)}
    _check_split_outputs(src, outputs)
    squad = _read_json(src)
    articles = _articles(squad, str(src))
    _check_examples(_examples_from_squad_json(squad, str(src)), str(src))  # validates every key before writing
    # Only articles with questions are dealt out: one without any, drawn alone into a part, would leave that part
    # with no question to train on or score. Those go with the training part, where they change nothing.
    asked = [i for i, article in enumerate(articles) if any(p["qas"] for p in article["paragraphs"])]
    if len(asked) < 2:
        raise ConfigError(
            f"{src} has {len(asked)} article(s) with questions ({len(articles)} in all): splitting by article needs "
            "at least 2 (one to train on, one to evaluate on): give a file with more articles"
        )
    _check_earlier_outputs(articles, outputs)
    n_train = min(max(round(train_fraction * len(asked)), 1), len(asked) - 1)

    def key(i: int) -> str:
        text = json.dumps(articles[i], sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(f"{seed}\n{i}\n{text}".encode()).hexdigest()

    chosen = set(sorted(asked, key=key)[:n_train]) | (set(range(len(articles))) - set(asked))
    parts = {
        "train": [a for i, a in enumerate(articles) if i in chosen],
        "eval": [a for i, a in enumerate(articles) if i not in chosen],
    }
    version = squad.get("version", "1.1")
    written = []
    try:
        for name, target in outputs.items():
            write_bytes_atomic(target, json.dumps({"data": parts[name], "version": version}).encode())
            written.append(target)
    except BaseException:
        # No pair of this split and an earlier one (whose articles would overlap): the part written goes too.
        for target in written:
            target.unlink(missing_ok=True)
        raise
    return {
        name: {
            "articles": len(part),
            "questions": sum(len(p["qas"]) for article in part for p in article["paragraphs"]),
        }
        for name, part in parts.items()
    }


def _check_split_outputs(src: Path, outputs: dict[str, Path]) -> None:
    """Refuse outputs that would lose data or half-write the split: one path for both parts, the source itself, or
    a folder."""
    where = {name: path.resolve() for name, path in outputs.items()}
    if where["train"] == where["eval"]:
        raise ConfigError(f"the train and eval parts would both be written to {outputs['train']}: give two paths")
    for name, path in outputs.items():
        if where[name] == src.resolve():
            raise ConfigError(
                f"the {name} part would replace the source file {src}: write it to another path (the source keeps "
                "every article)"
            )
        if path.is_dir():
            raise ConfigError(f"the {name} output {path} is a folder: give a file path, e.g. {path / f'{name}.json'}")


def _check_earlier_outputs(articles: list, outputs: dict[str, Path]) -> None:
    """An output that exists is replaced only where it is empty or an earlier split of the same source (every
    article it holds is one of the source's): anything else there, such as the official train file given by
    mistake, would be lost. A symbolic link is refused: the rename would replace the link and leave its target."""
    source = None
    for name, path in outputs.items():
        if path.is_symlink():
            raise OutputError(
                f"the {name} output {path} is a symbolic link (to {os.readlink(path)}): it is left as it is; give "
                "the file it points to, or another path"
            )
        if not path.is_file() or path.stat().st_size == 0:
            continue
        if source is None:
            source = {json.dumps(a, sort_keys=True) for a in articles}
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))["data"]
            ours = all(json.dumps(a, sort_keys=True) in source for a in earlier)
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError):
            ours = False
        if not ours:
            raise OutputError(
                f"the {name} output {path} exists and is not a part of an earlier split of this file: it is left as "
                "it is; give another path, or move it away first"
            )


# ---------------------------------------------------------------------------------------------------- features


def qa_doc_stride(max_length: int, tokenizer, doc_stride: int | None = None) -> int:
    """The overlap of QA context windows an artifact is built, searched and served with: ``doc_stride``, by default
    128, at most half of ``max_length`` and what leaves each window room for a question and new context;
    ``ConfigError`` for a given value outside that."""
    most = max(1, min(max_length // 2, max_length - tokenizer.num_special_tokens_to_add(pair=True) - 2))
    if doc_stride is None:
        return min(128, most)
    if isinstance(doc_stride, bool) or not isinstance(doc_stride, int) or not 1 <= doc_stride <= most:
        # at least 1, as the recipe, training and qla search take it: one rule for the windows a model is trained,
        # searched and served with
        raise ConfigError(
            f"doc_stride {doc_stride!r}: must be an integer in [1, {most}] for max_length {max_length} (at most half "
            "of it, so that each window has room for the question and new context; 128 is usual for 384)"
        )
    return doc_stride


def qa_features(
    examples: Sequence[QAExample],
    tokenizer,
    max_length: int = 384,
    doc_stride: int = 128,
    training: bool = False,
    *,
    max_question_length: int = 64,
    word_ids: bool = False,
) -> QAFeatures:
    """Doc-stride windows of (question, context); with ``training`` also start/end token labels, with ``word_ids``
    the tokenizer's word of each token (for answers aligned to whole words).

    Questions longer than ``max_question_length`` tokens (or than what ``max_length`` and ``doc_stride`` leave
    room for) are cut, as in the original BERT SQuAD code; SQuAD questions are far shorter. ``clipped_questions``
    lists the examples whose question was cut.
    """
    if not examples:
        raise ConfigError("qa_features got no examples: load some with load_squad first")
    if doc_stride < 0 or max_length < 8:
        raise ConfigError(f"max_length {max_length} / doc_stride {doc_stride}: need max_length >= 8, doc_stride >= 0")
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    # The tokenizer panics (not raises) unless each window has more context tokens than the stride.
    question_room = min(max_question_length, max_length - specials - doc_stride - 1)
    if question_room < 1:
        raise ConfigError(
            f"doc_stride {doc_stride} leaves no room for the question in max_length {max_length}: use a "
            f"doc_stride below {max_length - specials - 2} (run_qa uses 128 for max_length 384)"
        )
    whole = [ex.question.lstrip() for ex in examples]
    questions = _clip_questions(whole, tokenizer, question_room)
    with_segments = "token_type_ids" in tokenizer.model_input_names
    windows = encode_windows(
        tokenizer, questions, [ex.context for ex in examples], max_length, doc_stride, word_ids=word_ids
    )
    offset_mapping = []
    starts, ends = [], []
    for i, (offsets, sequence_ids) in enumerate(zip(windows.offsets, windows.sequence_ids, strict=True)):
        context = [o if s == 1 else None for o, s in zip(offsets, sequence_ids, strict=True)]
        offset_mapping.append(context)
        if training:
            ids = windows.input_ids[i]
            cls_index = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
            start, end = _token_labels(examples[windows.example_index[i]], context, cls_index)
            starts.append(start)
            ends.append(end)
    return QAFeatures(
        input_ids=windows.input_ids,
        token_type_ids=windows.token_type_ids if with_segments else None,
        example_index=windows.example_index,
        offset_mapping=offset_mapping,
        start_positions=starts if training else None,
        end_positions=ends if training else None,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        clipped_questions=[i for i, (kept, given) in enumerate(zip(questions, whole, strict=True)) if kept != given],
        word_ids=windows.word_ids if word_ids else None,
    )


@dataclass
class Windows:
    """Doc-stride windows of (question, context) pairs, one entry per window: token ids, segment ids, character
    offsets, which part of the pair each token comes from (0 question, 1 context, None special), and the pair's
    index; with ``word_ids`` also each token's word (None for specials)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    offsets: list[list[tuple[int, int]]]
    sequence_ids: list[list[int | None]]
    example_index: list[int]
    word_ids: list[list[int | None]] = field(default_factory=list)


def encode_windows(
    tokenizer,
    questions: list[str],
    contexts: list[str],
    max_length: int,
    doc_stride: int,
    *,
    backend: bool = True,
    word_ids: bool = False,
) -> Windows:
    """``tokenizer(questions, contexts, truncation="only_second", max_length=..., stride=doc_stride,
    return_overflowing_tokens=True, ...)`` without padding, as ``Windows``. With ``backend`` and a fast tokenizer the
    pairs go to its ``tokenizers`` backend directly (a copy set up for these windows, kept per tokenizer): the same
    windows, without transformers turning every window into Python lists and dicts on each call, which a serving
    call pays per question. Otherwise, or for a slow tokenizer, through transformers."""
    encoder = _window_encoder(tokenizer, max_length, doc_stride) if backend else None
    if encoder is None:
        encoded = tokenizer(
            questions,
            contexts,
            truncation="only_second",
            max_length=max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_token_type_ids=True,
            return_attention_mask=False,
            padding=False,
        )
        count = len(encoded["input_ids"])
        return Windows(
            input_ids=list(encoded["input_ids"]),
            token_type_ids=list(encoded["token_type_ids"]),
            offsets=list(encoded["offset_mapping"]),
            sequence_ids=[encoded.sequence_ids(i) for i in range(count)],
            example_index=list(encoded["overflow_to_sample_mapping"]),
            word_ids=[encoded.word_ids(i) for i in range(count)] if word_ids else [],
        )
    windows = Windows([], [], [], [], [])
    for index, encoding in enumerate(encoder.encode_batch(list(zip(questions, contexts, strict=True)))):
        for window in (encoding, *encoding.overflowing):  # transformers' order: each pair's windows in turn
            windows.input_ids.append(window.ids)
            windows.token_type_ids.append(window.type_ids)
            windows.offsets.append(window.offsets)
            windows.sequence_ids.append(window.sequence_ids)
            windows.example_index.append(index)
            if word_ids:
                windows.word_ids.append(window.word_ids)
    return windows


_WINDOW_ENCODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _window_encoder(tokenizer, max_length: int | None, doc_stride: int):
    """A copy of a fast tokenizer's backend with the truncation and padding transformers would set for
    ``encode_windows`` (``max_length`` None: no truncation, for whole questions), or None for a slow tokenizer. The
    tokenizer's own backend is left as it is."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        return None
    encoders = _WINDOW_ENCODERS.setdefault(tokenizer, {})
    # A tokenizer given new tokens gets a fresh copy that knows them. Counted from the added-token table, not by
    # len(tokenizer): that builds the whole vocabulary in the backend on every call, a cost paid per question.
    key = (max_length, doc_stride, tokenizer.truncation_side, len(backend.get_added_tokens_decoder()))
    if key not in encoders:
        encoder = copy.deepcopy(backend)
        encoder.no_padding()
        if max_length is None:
            encoder.no_truncation()
        else:
            encoder.enable_truncation(max_length, stride=doc_stride, strategy="only_second", direction=key[2])
        encoders[key] = encoder
    return encoders[key]


def _question_offsets(questions: list[str], tokenizer, backend: bool) -> list[list[tuple[int, int]]]:
    """Each question's token offsets without special tokens: ``tokenizer(questions, add_special_tokens=False,
    return_offsets_mapping=True)``, through a fast tokenizer's backend where ``backend`` (what a serving call pays
    per question, without transformers' lists and dicts)."""
    encoder = _window_encoder(tokenizer, None, 0) if backend else None
    if encoder is None:
        encoded = tokenizer(
            questions, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False
        )
        return list(encoded["offset_mapping"])
    return [encoding.offsets for encoding in encoder.encode_batch(questions, add_special_tokens=False)]


def _clip_questions(questions: list[str], tokenizer, max_tokens: int, *, backend: bool = True) -> list[str]:
    out = list(questions)
    for i, offsets in enumerate(_question_offsets(questions, tokenizer, backend)):
        keep = max_tokens
        # Cutting inside a word can re-tokenize into more pieces: shorten until it fits.
        while len(offsets) > max_tokens and keep > 0:
            out[i] = questions[i][: offsets[keep - 1][1]]
            if len(tokenizer(out[i], add_special_tokens=False)["input_ids"]) <= max_tokens:
                break
            keep -= 1
    return out


def _token_labels(example: QAExample, context: list[tuple[int, int] | None], cls_index: int) -> tuple[int, int]:
    """First/last token of the first gold answer, or (cls, cls) when the window does not hold all of it."""
    if not example.answers:
        return cls_index, cls_index
    start_char = example.answers[0]["answer_start"]
    end_char = start_char + len(example.answers[0]["text"])
    tokens = [i for i, o in enumerate(context) if o is not None]
    if not tokens or context[tokens[0]][0] > start_char or context[tokens[-1]][1] < end_char:
        return cls_index, cls_index
    start = max(i for i in tokens if context[i][0] <= start_char)
    end = min(i for i in tokens if context[i][1] >= end_char)
    return start, max(start, end)
