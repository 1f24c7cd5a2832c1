"""``load(path) -> Predictor``: tokenize, batch, pad to the model's graph length, run, post-process.

Classification: ``predict("text")`` / ``predict(["a", "b"])`` / ``predict(("premise", "hypothesis"))`` ->
``{"label", "score"}`` (a list for a list). QA: ``predict(question=..., context=...)`` -> ``{"answer", "score",
"start", "end"}`` (character offsets into the context); long contexts run as doc-stride windows.

``top_k=N`` gives each input a list of its N best records instead (labels, or answer spans), best first. QA also
takes ``max_answer_length`` (tokens, default 30) and ``align_to_words`` (default True: answers end on whole words, as
transformers 4's question-answering pipeline gave them; False is run_qa's rule, which SQuAD figures use).

Rows are padded to the smallest graph length that holds them (the longest row of the batch for eager backends),
so with a ratio length config a 120-token input keeps a share of 120 tokens, not of a padded 384.
"""

from __future__ import annotations

import copy
import numbers
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qla_sdk.data import qa_doc_stride
from qla_sdk.data.qa_postprocess import DEFAULT_MAX_ANSWER_LENGTH, N_BEST, NO_ANSWER
from qla_sdk.deploy.accuracy_check import warn_if_checked_elsewhere
from qla_sdk.deploy.artifact import Manifest, read_manifest
from qla_sdk.deploy.int8_speed_check import warn_if_int8_does_not_pay
from qla_sdk.deploy.manifest_checks import check_manifest_against_model
from qla_sdk.errors import CheckpointError, ConfigError, QlaError

# Bounds of one predict() call (load(..., max_chars=...) sets them), so that a single request cannot exhaust memory.
# They do not bound its time, which grows with the text (a QA context runs one window per doc stride of its tokens):
# a service with a deadline sets lower ones.
MAX_CHARS = 1_000_000  # characters of one text; tokenizing far more stalls the caller for no useful answer
MAX_ITEMS = 10_000  # texts (or question/context pairs) per call
MAX_TOTAL_CHARS = 10_000_000  # characters of all texts of one call
TORCHSCRIPT_BACKEND = "ipex"  # its artifact is TorchScript: loaded only with trust_torchscript=True


class Predictor:
    """``max_chars`` / ``max_items`` / ``max_total_chars`` bound one call (``ValueError`` beyond them)."""

    def __init__(
        self,
        manifest: Manifest,
        runner,
        tokenizer,
        max_batch_size: int = 32,
        max_length: int | None = None,
        *,
        max_chars: int = MAX_CHARS,
        max_items: int = MAX_ITEMS,
        max_total_chars: int = MAX_TOTAL_CHARS,
    ):
        if max_batch_size < 1:
            raise ConfigError(f"max_batch_size {max_batch_size}: must be >= 1")
        for name, value in (("max_chars", max_chars), ("max_items", max_items), ("max_total_chars", max_total_chars)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} {value!r}: must be an integer >= 1")
        self.max_chars, self.max_items, self.max_total_chars = max_chars, max_items, max_total_chars
        if max_length is not None and not 8 <= max_length <= manifest.max_length:
            raise ConfigError(f"max_length {max_length}: must lie in [8, {manifest.max_length}] (the artifact's)")
        self.manifest, self.runner, self.tokenizer = manifest, runner, tokenizer
        self.task = manifest.task
        self.labels = manifest.labels
        self.max_length = max_length or manifest.max_length
        # The recorded stride; with a shorter max_length than the artifact's, one that still fits its windows.
        fitting = qa_doc_stride(self.max_length, tokenizer)
        self.doc_stride = fitting if manifest.doc_stride is None else min(manifest.doc_stride, fitting)
        self.max_batch_size = max_batch_size
        self.pad_token_id = tokenizer.pad_token_id or 0
        # Tokens the tokenizer adds to a text / a pair: a row with no more holds nothing of the text.
        self._specials = tokenizer.num_special_tokens_to_add(pair=False)
        self._pair_specials = tokenizer.num_special_tokens_to_add(pair=True)
        # Fast tokenizers mutate their truncation state per call and raise "Already borrowed" when shared across
        # threads: each thread tokenizes with its own copy (made on its first call), so threads serving requests
        # tokenize in parallel instead of queueing on one tokenizer. ``self.tokenizer`` itself is only copied
        # (under a lock), never called here: a copy read while another thread's call mutates it could fail too.
        self._local = threading.local()
        self._copy_lock = threading.Lock()

    def _thread_tokenizer(self):
        """This thread's own copy of ``self.tokenizer``."""
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            with self._copy_lock:
                tokenizer = self._local.tokenizer = copy.deepcopy(self.tokenizer)
        return tokenizer

    def __repr__(self) -> str:
        lc = self.manifest.length_config
        return (
            f"Predictor(task={self.task!r}, backend={self.manifest.backend!r}, length_config={lc!s}, "
            f"max_length={self.max_length}, graphs={self.runner.seq_lens or 'any length'})"
        )

    def predict(
        self,
        texts=None,
        *,
        question=None,
        context=None,
        top_k: int = 1,
        max_answer_length: int | None = None,
        align_to_words: bool | None = None,
    ):
        _check_count_option("top_k", top_k)
        top_k = int(top_k)  # numpy integers too
        if self.task == "question-answering":
            if texts is not None:
                raise TypeError("this is a question-answering model: call predict(question=..., context=...)")
            if max_answer_length is None:
                max_answer_length = DEFAULT_MAX_ANSWER_LENGTH
            _check_count_option("max_answer_length", max_answer_length)
            max_answer_length = int(max_answer_length)
            if align_to_words is None:
                align_to_words = True
            if not isinstance(align_to_words, bool):
                raise TypeError(f"align_to_words={align_to_words!r}: pass True or False")
            return self._answer(question, context, top_k, max_answer_length, align_to_words)
        if question is not None or context is not None:
            raise TypeError(f"this is a {self.task} model: call predict(texts), not question=/context=")
        if max_answer_length is not None or align_to_words is not None:
            raise TypeError(
                f"this is a {self.task} model: max_answer_length and align_to_words are question-answering options"
            )
        return self._classify(texts, top_k)

    # ------------------------------------------------------------------------------------------ classification

    def _classify(self, texts, top_k: int = 1):
        single = isinstance(texts, (str, tuple))
        items = [texts] if single else texts
        if texts is None:
            raise TypeError("predict(texts): texts is None; pass a string, a (text, text) pair or a list of them")
        if not isinstance(items, Sequence) or isinstance(items, (bytes, bytearray)):
            raise TypeError(f"predict(texts): got {type(texts).__name__}; pass a string or a list of strings")
        if not items:
            raise ValueError("predict(texts): the list is empty")
        self._check_count(len(items), "texts")
        pairs = [_check_text_item(item, i, self.max_chars) for i, item in enumerate(items)]
        self._check_total(sum(len(t) for p in pairs for t in p))
        widths = {len(p) for p in pairs}
        if len(widths) > 1:
            raise ValueError("predict(texts): mix of single texts and (text, text) pairs; use one kind per call")
        first = [p[0] for p in pairs]
        second = [p[1] for p in pairs] if widths == {2} else None
        tokenizer = self._thread_tokenizer()
        encoded = tokenizer(first, second, truncation=False, verbose=False)
        full = encoded["input_ids"]
        self._check_tokens(encoded, paired=second is not None)
        cut = [i for i, ids in enumerate(full) if len(ids) > self.max_length]
        if cut:  # only then a second pass: untruncated, the first one already is what the model takes
            encoded = tokenizer(first, second, truncation=True, max_length=self.max_length)
        if cut:
            warnings.warn(
                f"{len(cut)} input(s) (e.g. #{cut[0]}, {len(full[cut[0]])} tokens) exceed max_length "
                f"{self.max_length} and were truncated",
                stacklevel=3,
            )
        rows = [
            {"input_ids": ids, "token_type_ids": (encoded.get("token_type_ids") or [None] * len(full))[i]}
            for i, ids in enumerate(encoded["input_ids"])
        ]
        logits = [out[0] for out in self._run_rows(rows)]
        results = []
        for row in logits:
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            ranked = [int(probs.argmax())] if top_k == 1 else np.argsort(-probs, kind="stable")[:top_k].tolist()
            records = [{"label": self._label(i), "score": float(probs[i])} for i in ranked]
            results.append(records[0] if top_k == 1 else records)
        return results[0] if single else results

    def _label(self, index: int) -> str:
        return self.labels[index] if self.labels and index < len(self.labels) else str(index)

    # ---------------------------------------------------------------------------------------------------- QA

    def _answer(self, question, context, top_k: int, max_answer_length: int, align_to_words: bool):
        from qla_sdk.data import QAExample, best_spans, nbest_spans, qa_features

        if question is None or context is None:
            missing = "context" if context is None else "question"
            raise ValueError(f"predict(question=..., context=...): {missing} is missing; give both")
        single = isinstance(question, str) and isinstance(context, str)
        questions = [question] if isinstance(question, str) else question
        contexts = [context] if isinstance(context, str) else context
        for name, values in (("question", questions), ("context", contexts)):
            if not isinstance(values, Sequence) or isinstance(values, (bytes, bytearray)):
                raise TypeError(f"{name} must be a string or a list of strings; got {type(values).__name__}")
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions for {len(contexts)} contexts: give one context per question")
        if not questions:
            raise ValueError("predict(question=[], context=[]): nothing to answer")
        self._check_count(len(questions), "question/context pairs")
        for i, (q, c) in enumerate(zip(questions, contexts, strict=True)):
            check_text(q, f"question #{i}", self.max_chars)
            check_text(c, f"context #{i}", self.max_chars)
        self._check_total(sum(len(q) + len(c) for q, c in zip(questions, contexts, strict=True)))
        examples = [QAExample(str(i), "", q, c) for i, (q, c) in enumerate(zip(questions, contexts, strict=True))]
        tokenizer = self._thread_tokenizer()
        features = qa_features(examples, tokenizer, self.max_length, self.doc_stride, word_ids=align_to_words)
        if features.clipped_questions:
            cut = features.clipped_questions
            warnings.warn(
                f"{len(cut)} question(s) (e.g. #{cut[0]}) were cut from the end to fit a window (64 tokens at most, "
                f"fewer with max_length {self.max_length}): the answers are for the cut questions; shorten them",
                stacklevel=3,
            )
        self._check_qa_tokens(features, len(examples))
        outputs = self._run_rows([features.row(i) for i in range(len(features))])
        starts = [out[0][: len(ids)] for out, ids in zip(outputs, features.input_ids, strict=True)]
        ends = [out[1][: len(ids)] for out, ids in zip(outputs, features.input_ids, strict=True)]
        options = {"max_answer_length": max_answer_length, "align_to_words": align_to_words}
        if top_k == 1:
            best = best_spans(examples, features, starts, ends, **options)
            results = [_answer_record(best[ex.id]) for ex in examples]
        else:
            # Candidates are each window's n_best top starts and ends: at least top_k of them, so top_k can be met;
            # the scores stay those over the N_BEST best spans, as with a smaller top_k (and top_k 1).
            ranked = nbest_spans(
                examples, features, starts, ends, n_best=max(N_BEST, top_k), score_over=N_BEST, **options
            )
            results = [
                [_answer_record(s) for s in ranked[ex.id][:top_k]] or [_answer_record(NO_ANSWER)] for ex in examples
            ]
        return results[0] if single else results

    # Texts of characters the tokenizer drops (zero-width spaces, control characters, a byte-order mark) pass the
    # empty-text check, and the model would answer from its special tokens alone.

    def _check_tokens(self, encoded, paired: bool) -> None:
        for i, ids in enumerate(encoded["input_ids"]):
            if paired:
                which = set(encoded.sequence_ids(i))
                empty = 0 not in which or 1 not in which  # a token of each text of the pair
            else:
                empty = len(ids) <= self._specials
            if empty:
                raise ValueError(f"text #{i} {_NO_TOKENS}")

    def _check_qa_tokens(self, features, count: int) -> None:
        first: dict[int, int] = {}  # example -> its first window, which holds the whole question
        for window, example in enumerate(features.example_index):
            first.setdefault(example, window)
        for i in range(count):
            window = first.get(i)
            if window is None:
                raise ValueError(f"context #{i} {_NO_TOKENS}")
            # Only context tokens have offsets, and they follow the question and the specials before them: the
            # scan stops after the question (predict's hot path; counting every offset cost a window's length).
            offsets = features.offset_mapping[window]
            start = next((j for j, o in enumerate(offsets) if o is not None), None)
            question = len(offsets) - self._pair_specials if start is None else start - (self._pair_specials - 1)
            if question < 1:
                raise ValueError(f"question #{i} {_NO_TOKENS}")
            if start is None:
                raise ValueError(f"context #{i} {_NO_TOKENS}")

    def _check_count(self, count: int, what: str) -> None:
        if count > self.max_items:
            raise ValueError(f"predict got {count:,} {what}; the limit per call is {self.max_items:,}: split the batch")

    def _check_total(self, chars: int) -> None:
        if chars > self.max_total_chars:
            raise ValueError(
                f"predict got {chars:,} characters in all; the limit per call is {self.max_total_chars:,}: "
                "split the batch"
            )

    # ------------------------------------------------------------------------------------------------ running

    def _run_rows(self, rows: list[dict]) -> list[list[np.ndarray]]:
        """Per row, its outputs (one array per model output, over the padded length)."""
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
        outputs: list = [None] * len(rows)
        start = 0
        while start < len(order):
            # Shortest rows first, at most max_batch_size of them: with graph buckets a batch holds rows of one bucket;
            # a backend that runs any length (fp32/bf16) pads the batch to its longest row.
            seq_len = self.graph_length(len(rows[order[start]]["input_ids"]))
            group = []
            for i in order[start : start + self.max_batch_size]:
                if group and self.runner.seq_lens and self.graph_length(len(rows[i]["input_ids"])) != seq_len:
                    break
                group.append(i)
            seq_len = self.graph_length(max(len(rows[i]["input_ids"]) for i in group))
            ids, mask, types = _pad([rows[i] for i in group], seq_len, self.pad_token_id)
            result = self.runner.run(ids, mask, types)
            for j, i in enumerate(group):
                outputs[i] = [r[j] for r in result]
            start += len(group)
        return outputs

    def graph_length(self, length: int) -> int:
        """The length a row of ``length`` tokens runs at: the smallest graph that holds it, or its own length where
        the backend runs any length."""
        if not self.runner.seq_lens:
            return length
        for seq_len in self.runner.seq_lens:
            if seq_len >= length:
                return seq_len
        raise ValueError(f"an input of {length} tokens exceeds the longest graph ({self.runner.seq_lens[-1]})")


def _answer_record(span) -> dict:
    return {"answer": span.text, "score": span.score, "start": span.start, "end": span.end}


def _check_count_option(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}={value!r}: must be an integer >= 1")


_NO_TOKENS = (
    "has no tokens the model reads: only characters its tokenizer drops (zero-width or control characters, a "
    "byte-order mark); pass text with words in it"
)


def _pad(rows: list[dict], seq_len: int, pad_token_id: int):
    ids = np.full((len(rows), seq_len), pad_token_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        ids[i, :n] = row["input_ids"]
        mask[i, :n] = 1
        if row.get("token_type_ids") is not None:
            types[i, :n] = row["token_type_ids"]
    return ids, mask, types


def check_text(value: object, what: str, max_chars: int = MAX_CHARS) -> str:
    """``value`` if the Predictor takes it as a text, else ``TypeError`` / ``ValueError`` naming it as ``what``
    (callers that read texts from files check them all before the first prediction)."""
    if value is None:
        raise TypeError(f"{what} is None; pass a string")
    if not isinstance(value, str):
        raise TypeError(f"{what} is a {type(value).__name__}, not a string")
    if len(value) > max_chars:  # before anything that walks the text
        raise ValueError(f"{what} has {len(value):,} characters; the limit is {max_chars:,}: split it")
    if not value.strip():
        raise ValueError(f"{what} is empty or only whitespace")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates, e.g. from badly decoded bytes; the tokenizer rejects them
        raise ValueError(
            f"{what} is not valid Unicode: {exc.reason} at character {exc.start}; decode the bytes with "
            "errors='replace'"
        ) from None
    return value


def _check_text_item(item, index: int, max_chars: int = MAX_CHARS) -> tuple[str, ...]:
    if isinstance(item, tuple):
        if len(item) not in (1, 2):
            raise ValueError(f"text #{index} is a tuple of {len(item)}; give one text or a (text, text) pair")
        return tuple(check_text(t, f"text #{index}", max_chars) for t in item)
    return (check_text(item, f"text #{index}", max_chars),)


def load(
    path: str | Path,
    threads: int | None = None,
    max_batch_size: int = 32,
    max_length: int | None = None,
    verify: bool = True,
    warmup: bool = False,
    *,
    trust_torchscript: bool = False,
    max_chars: int = MAX_CHARS,
    max_items: int = MAX_ITEMS,
    max_total_chars: int = MAX_TOTAL_CHARS,
) -> Predictor:
    """A ``Predictor`` over an exported folder (checked file by file against the sha256 in qla.json).

    ``threads``: intra-op threads (OpenVINO per model; torch process-wide). ``max_batch_size``: the most rows one
    graph run takes; 1, for a service that answers one request at a time, lets an ``openvino`` artifact skip its
    dynamic-batch copies (half its compiled copies: less load time and memory). ``warmup`` compiles every graph now.
    ``trust_torchscript``: load an ``ipex`` artifact (TorchScript, which ``torch.jit.load`` runs like code: only
    for artifacts you built yourself; see SECURITY.md). ``max_chars`` / ``max_items`` / ``max_total_chars`` bound
    one ``predict`` call.
    """
    from safetensors import SafetensorError

    from qla_sdk.backends import get_backend
    from qla_sdk.data import load_tokenizer

    for name, value, optional in (
        ("threads", threads, True),
        ("max_batch_size", max_batch_size, False),
        ("max_length", max_length, True),
    ):
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigError(f"{name} {value!r}: must be an integer >= 1{' or None' if optional else ''}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load() takes the artifact folder as a str or path, not {type(path).__name__}")
    manifest = read_manifest(path, verify=verify)
    backend = get_backend(manifest.backend)
    trust = {}
    if manifest.backend == TORCHSCRIPT_BACKEND:
        if not trust_torchscript:
            raise CheckpointError(
                f"{manifest.folder} is an {TORCHSCRIPT_BACKEND} artifact: TorchScript, which torch.jit.load runs like "
                "code, so it is refused by default. Load it with trust_torchscript=True only if you built it yourself "
                "(see SECURITY.md), or export with --backend inductor / openvino"
            )
        trust = {"trust_torchscript": True}
    try:
        runner = backend.load(
            manifest.model_dir, manifest.data["model"], threads, max_batch_size=max_batch_size, **trust
        )
    except (OSError, KeyError, TypeError) as exc:  # files or entries the manifest's backend expects are not there
        raise CheckpointError(
            f"{manifest.folder}: its {manifest.backend} model cannot be loaded ({type(exc).__name__}: {exc}); "
            "export the model again"
        ) from exc
    except QlaError:  # ours say what is wrong already (a backend package not installed: QuantizationError)
        raise
    except (RuntimeError, SafetensorError) as exc:  # what OpenVINO, torch and safetensors raise on a damaged file
        raise CheckpointError(
            f"{manifest.folder}: its {manifest.backend} model files cannot be read ({_reason(exc)}): a damaged or "
            "incomplete copy (copy the artifact again), or files of another version of the runtime (export the "
            "model again here)"
        ) from exc
    try:
        tokenizer = load_tokenizer(manifest.tokenizer_dir)
    except ConfigError as exc:
        raise CheckpointError(
            f"{manifest.folder}: its tokenizer cannot be loaded ({exc}); copy the artifact again, or export the model "
            "again"
        ) from exc
    check_manifest_against_model(manifest, runner, tokenizer)
    warn_if_checked_elsewhere(manifest)
    warn_if_int8_does_not_pay(manifest)
    longest = max(runner.seq_lens) if runner.seq_lens else None
    if longest is not None and max_length is None and manifest.max_length > longest:
        # Exports before 2026-12 allowed graphs shorter than max_length (--seq-lens 128,256 at 384): serve at the
        # longest graph, as load(max_length=...) would, rather than fail on every long input.
        warnings.warn(
            f"{manifest.folder}: its longest graph takes {longest} tokens, fewer than its max_length "
            f"{manifest.max_length}: inputs are served at {longest} (pass max_length={longest} to say so, or export "
            f"again with --seq-lens ending in {manifest.max_length})",
            stacklevel=2,
        )
        max_length = longest
    if longest is not None and max_length is not None and max_length > longest:
        raise ConfigError(f"max_length {max_length}: the longest graph of {manifest.folder} takes {longest} tokens")
    predictor = Predictor(
        manifest,
        runner,
        tokenizer,
        max_batch_size,
        max_length,
        max_chars=max_chars,
        max_items=max_items,
        max_total_chars=max_total_chars,
    )
    if warmup:
        runner.warmup()
    return predictor


def _reason(exc: Exception) -> str:
    """The first line of ``exc``'s message that says what went wrong: OpenVINO's messages start with the source
    locations of the checks that failed."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(("Exception from ", "Check '")) and not line.endswith(":")]
    return (said or lines or [type(exc).__name__])[0]
