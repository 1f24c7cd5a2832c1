"""load(path) -> Predictor on tiny exported models: answers, batching, unpadded ratios, bad inputs, threads."""

import json
import re
import threading
import warnings

import pytest
import torch
from deploy_helpers import export_fp32, minilm_tokenizer, tiny_model

import qla_sdk
from qla_sdk.cli import main
from qla_sdk.modeling import LengthConfig


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


@pytest.fixture(scope="module")
def classifier(tokenizer, tmp_path_factory):
    return tiny_model("text-classification", tokenizer, tmp_path_factory.mktemp("cls"), LengthConfig.parse("0.7,0.4"))


@pytest.fixture(scope="module")
def qa_model(tokenizer, tmp_path_factory):
    return tiny_model("question-answering", tokenizer, tmp_path_factory.mktemp("qa"), LengthConfig.parse("0.7,0.4"))


@pytest.fixture(scope="module")
def cls_artifact(classifier, tokenizer, tmp_path_factory):
    return export_fp32(classifier, tokenizer, tmp_path_factory.mktemp("cls") / "art")


@pytest.fixture(scope="module")
def qa_artifact(qa_model, tokenizer, tmp_path_factory):
    return export_fp32(qa_model, tokenizer, tmp_path_factory.mktemp("qa") / "art", doc_stride=16)


CONTEXT = (
    "The length-adaptive transformer drops tokens layer by layer. Dropped tokens keep their last state. "
    "The span head scores every position after the restore step, so answers can come from any token. "
) * 3


def test_classification_matches_the_model_unpadded(cls_artifact, classifier, tokenizer):
    predictor = qla_sdk.load(cls_artifact, max_batch_size=2)
    texts = ["a fine film", "a long and rather tedious film that never ends", "ok"]
    results = predictor.predict(texts)
    assert [set(r) for r in results] == [{"label", "score"}] * 3
    for text, result in zip(texts, results, strict=True):
        ids = torch.tensor([tokenizer(text)["input_ids"]])  # alone and unpadded: ratios of its own length
        with torch.no_grad():
            probs = classifier(ids, torch.ones_like(ids), length_config="0.7,0.4").softmax(-1)[0]
        assert result["label"] == ["negative", "positive"][int(probs.argmax())]
        assert result["score"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert predictor.predict("a fine film") == results[0]  # a single text gives a single result


def test_pairs_and_truncation_warning(cls_artifact):
    predictor = qla_sdk.load(cls_artifact)
    assert set(predictor.predict(("premise", "hypothesis"))) == {"label", "score"}
    with pytest.warns(UserWarning, match="1 input"):
        long, short = predictor.predict(["word " * 200, "a fine film"])
    # The long text runs as its first 62 words (64 tokens with [CLS] and [SEP]); the short one as it is.
    assert long == predictor.predict("word " * 62) and short == predictor.predict("a fine film")


def test_qa_answers_are_spans_of_the_context(qa_artifact):
    predictor = qla_sdk.load(qa_artifact)
    result = predictor.predict(question="What do dropped tokens keep?", context=CONTEXT)
    assert set(result) == {"answer", "score", "start", "end"}
    assert CONTEXT[result["start"] : result["end"]] == result["answer"] and 0.0 <= result["score"] <= 1.0
    # The context is longer than max_length 64: it ran as several doc-stride windows.
    assert len(predictor.tokenizer(CONTEXT)["input_ids"]) > 64
    batch = predictor.predict(question=["What do dropped tokens keep?", "Who scores?"], context=[CONTEXT, "Heads."])
    assert batch[0] == result and len(batch) == 2


# Rare words the tokenizer cuts into pieces: a random model's spans often start or end inside them.
PIECES = "Zorblax quuxified the blorptastic snarfwidget near Vlorpington, thrumbling xylophonically. " * 2


def on_word_edges(context: str, answer: dict) -> bool:
    start, end = answer["start"], answer["end"]
    before = start == 0 or not (context[start - 1].isalnum() and context[start].isalnum())
    after = end == len(context) or not (context[end - 1].isalnum() and context[end].isalnum())
    return before and after


def test_qa_answers_end_on_whole_words_unless_asked(qa_artifact):
    predictor = qla_sdk.load(qa_artifact)
    aligned = predictor.predict(question="Who quuxified it?", context=PIECES, top_k=20)
    tokens = predictor.predict(question="Who quuxified it?", context=PIECES, top_k=20, align_to_words=False)
    assert len(aligned) > 1 and all(on_word_edges(PIECES, a) for a in aligned)
    assert not all(on_word_edges(PIECES, a) for a in tokens)  # run_qa's rule: spans as the tokens give them
    assert all(PIECES[a["start"] : a["end"]] == a["answer"] for a in aligned + tokens)
    assert predictor.predict(question="Who quuxified it?", context=PIECES) == aligned[0]  # the default aligns


def test_qa_top_k_gives_the_best_answers_first(qa_artifact):
    predictor = qla_sdk.load(qa_artifact)
    best = predictor.predict(question="What do dropped tokens keep?", context=CONTEXT)
    top = predictor.predict(question="What do dropped tokens keep?", context=CONTEXT, top_k=3)
    assert len(top) == 3 and top[0] == best
    assert [a["score"] for a in top] == sorted((a["score"] for a in top), reverse=True)
    assert len({(a["start"], a["end"]) for a in top}) == 3
    batch = predictor.predict(question=["What do dropped tokens keep?", "Who?"], context=[CONTEXT, "Heads."], top_k=3)
    assert batch[0] == top and 1 <= len(batch[1]) <= 3  # "Heads." holds fewer than 3 spans
    many = predictor.predict(question="What do dropped tokens keep?", context=CONTEXT, top_k=40)
    assert len(many) > 20 and many[:3] == top  # more answers than the 20 best spans: the same scores for the best
    short = predictor.predict(
        question="Who scores?", context=CONTEXT, top_k=5, max_answer_length=1, align_to_words=False
    )  # one token each (aligned, a word of several pieces)
    assert all(len(predictor.tokenizer(a["answer"], add_special_tokens=False)["input_ids"]) == 1 for a in short)


def test_numpy_integers_are_options_too(qa_artifact):
    import numpy as np

    predictor = qla_sdk.load(qa_artifact)
    plain = predictor.predict(question="Who scores?", context=CONTEXT, top_k=2, max_answer_length=5)
    assert (
        predictor.predict(question="Who scores?", context=CONTEXT, top_k=np.int64(2), max_answer_length=np.int64(5))
        == plain
    )


def test_classification_top_k_ranks_the_labels(cls_artifact):
    predictor = qla_sdk.load(cls_artifact)
    best = predictor.predict(["a fine film", "a dull film"])
    ranked = predictor.predict(["a fine film", "a dull film"], top_k=5)  # more than the 2 labels: all of them
    for one, labels in zip(best, ranked, strict=True):
        assert labels[0] == one and {r["label"] for r in labels} == {"negative", "positive"}
        assert labels[0]["score"] >= labels[1]["score"] and sum(r["score"] for r in labels) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "which, options, error, message",
    [
        ("qa", {"top_k": 0}, ValueError, "top_k=0: must be an integer >= 1"),
        ("qa", {"top_k": True}, ValueError, "top_k=True"),
        ("qa", {"top_k": "2"}, ValueError, "top_k='2'"),
        ("qa", {"max_answer_length": 0}, ValueError, "max_answer_length=0"),
        ("qa", {"align_to_words": "yes"}, TypeError, "align_to_words='yes': pass True or False"),
        ("cls", {"top_k": 0}, ValueError, "top_k=0"),
        ("cls", {"max_answer_length": 5}, TypeError, "question-answering options"),
        ("cls", {"align_to_words": False}, TypeError, "question-answering options"),
    ],
)
def test_bad_predict_options_are_named(cls_artifact, qa_artifact, which, options, error, message):
    predictor = qla_sdk.load(qa_artifact if which == "qa" else cls_artifact)
    inputs = {"question": "Who?", "context": CONTEXT} if which == "qa" else {"texts": "a fine film"}
    with pytest.raises(error, match=re.escape(message)):
        predictor.predict(**inputs, **options)


def test_cli_predict_top_k_and_answer_options(cls_artifact, qa_artifact, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("a fine film\n\na dull film\n")
    assert main(["predict", str(cls_artifact), "--file", str(texts), "--top-k", "2"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["line"] for r in records] == [1, 2, 3] and records[1]["top_k"] is None
    for record in (records[0], records[2]):
        assert len(record["top_k"]) == 2 and record["top_k"][0] == {"label": record["label"], "score": record["score"]}
    qa = ["predict", str(qa_artifact), "--question", "Who quuxified it?", "--context", PIECES]
    assert main([*qa, "--top-k", "3", "--no-align-to-words", "--max-answer-length", "4"]) == 0
    assert json.loads(capsys.readouterr().out) == qla_sdk.load(qa_artifact).predict(
        question="Who quuxified it?", context=PIECES, top_k=3, align_to_words=False, max_answer_length=4
    )
    assert main(["predict", str(cls_artifact), "--text", "good", "--max-answer-length", "3"]) == 2
    assert "--max-answer-length is a question-answering option" in capsys.readouterr().err


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda p: p.predict(None), TypeError, "None"),
        (lambda p: p.predict(""), ValueError, "empty"),
        (lambda p: p.predict("   \n"), ValueError, "whitespace"),
        (lambda p: p.predict(["ok", 3]), TypeError, "int, not a string"),
        (lambda p: p.predict(["ok", None]), TypeError, "text #1 is None"),
        (lambda p: p.predict([]), ValueError, "empty"),
        (lambda p: p.predict(b"bytes"), TypeError, "bytes"),
        (lambda p: p.predict(["a", ("b", "c")]), ValueError, "mix"),
        (lambda p: p.predict(question="q?", context="c"), TypeError, "not question="),
    ],
)
def test_bad_classification_inputs(cls_artifact, call, error, message):
    with pytest.raises(error, match=message):
        call(qla_sdk.load(cls_artifact))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"question": "Who?"}, ValueError, "context is missing"),
        ({"context": "Text."}, ValueError, "question is missing"),
        ({"question": "", "context": "Text."}, ValueError, "question #0 is empty"),
        ({"question": "Who?", "context": 5}, TypeError, "context must be"),
        ({"question": ["a?", "b?"], "context": ["x"]}, ValueError, "2 questions for 1 contexts"),
    ],
)
def test_bad_qa_inputs(qa_artifact, kwargs, error, message):
    with pytest.raises(error, match=message):
        qla_sdk.load(qa_artifact).predict(**kwargs)


def test_predictor_options_are_checked(cls_artifact):
    with pytest.raises(ValueError, match="max_batch_size 0"):
        qla_sdk.load(cls_artifact, max_batch_size=0)
    with pytest.raises(ValueError, match="max_length 4096"):
        qla_sdk.load(cls_artifact, max_length=4096)
    with pytest.raises(ValueError, match="threads 0"):
        qla_sdk.load(cls_artifact, threads=0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_batch_size": 2.5}, "max_batch_size 2.5: must be an integer >= 1"),
        ({"max_batch_size": "4"}, "max_batch_size '4': must be an integer >= 1"),
        ({"max_length": 32.5}, "max_length 32.5: must be an integer >= 1 or None"),
        ({"threads": "2"}, "threads '2': must be an integer >= 1 or None"),
        ({"threads": True}, "threads True"),
    ],
)
def test_predictor_options_of_the_wrong_type_are_named(cls_artifact, options, message):
    with pytest.raises(ValueError, match=message):
        qla_sdk.load(cls_artifact, **options)


def test_load_names_a_path_of_the_wrong_type():
    with pytest.raises(TypeError, match="as a str or path, not NoneType"):
        qla_sdk.load(None)


def test_load_takes_any_path_and_integer_kind(cls_artifact):
    import numpy as np

    class Folder:  # os.PathLike, as py.path.local is
        def __fspath__(self):
            return str(cls_artifact)

    assert qla_sdk.load(Folder(), max_batch_size=np.int64(4)).max_batch_size == 4


def test_a_cut_question_is_reported(qa_artifact):
    """A question longer than a window keeps is cut from the end, as the BERT SQuAD code does: with a warning that
    names it, since the answer is then for another question."""
    predictor = qla_sdk.load(qa_artifact)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictor.predict(question="Which tokens leave?", context=CONTEXT)
    with pytest.warns(UserWarning, match=r"1 question\(s\) \(e.g. #1\) were cut from the end"):
        predictor.predict(question=["Which tokens leave?", "word " * 80 + "?"], context=[CONTEXT, CONTEXT])


def test_a_short_max_length_still_answers(qa_artifact):
    """``load(max_length=8)``: the stride shrinks so that each window keeps room for a question and context."""
    predictor = qla_sdk.load(qa_artifact, max_length=8)
    with pytest.warns(UserWarning, match="cut from the end"):
        answer = predictor.predict(question="Which tokens leave?", context=CONTEXT)
    assert CONTEXT[answer["start"] : answer["end"]] == answer["answer"]


def test_eight_threads_agree_with_one(qa_artifact):
    predictor = qla_sdk.load(qa_artifact)
    questions = [f"Question number {i} about tokens?" for i in range(8)]
    expected = [predictor.predict(question=q, context=CONTEXT) for q in questions]
    results, errors = [None] * 8, []

    def work(i):
        try:
            for _ in range(3):
                results[i] = predictor.predict(question=questions[i], context=CONTEXT)
        except Exception as exc:  # surfaced below with the thread's index
            errors.append((i, exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == expected


def test_each_thread_tokenizes_with_its_own_tokenizer(qa_artifact):
    """Fast tokenizers cannot be shared across threads ("Already borrowed"): a thread gets its own copy, kept for its
    later calls, so serving threads tokenize in parallel; the loaded tokenizer is only copied from."""
    predictor = qla_sdk.load(qa_artifact)
    main = predictor._thread_tokenizer()
    assert main is predictor._thread_tokenizer() and main is not predictor.tokenizer
    seen = {}

    def work(i):
        seen[i] = (predictor._thread_tokenizer(), predictor._thread_tokenizer())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a, a_again), (b, b_again) = seen[0], seen[1]
    assert a is a_again and b is b_again
    assert len({id(a), id(b), id(main), id(predictor.tokenizer)}) == 4


def test_openvino_artifact_served_one_row_at_a_time(qa_model, tokenizer, tmp_path):
    """``load(max_batch_size=1)`` gives an ``openvino`` artifact's runner no dynamic-batch copies, and the same
    answers, windows and all."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from qla_sdk.deploy import export_model
    from qla_sdk.quantize import QuantConfig

    calibration = [{"input_ids": [101, *range(2000, 2000 + n), 102]} for n in (10, 20, 30)]
    config = QuantConfig(backend="openvino", inference_precision="f32", seq_lens=(32, 64))
    export_model(qa_model, tmp_path / "art", tokenizer, config=config, calibration=calibration, max_length=64)
    batched, one = qla_sdk.load(tmp_path / "art"), qla_sdk.load(tmp_path / "art", max_batch_size=1)
    assert (batched.runner.dynamic_batch, one.runner.dynamic_batch) == (True, False)
    assert len(one.runner._compiled) * 2 == len(batched.runner._compiled)
    questions = ["Which tokens leave?", "What does the span head score?"]
    mine, want = (p.predict(question=questions, context=[CONTEXT] * 2) for p in (one, batched))
    assert [{**a, "score": None} for a in mine] == [{**a, "score": None} for a in want]
    assert [a["score"] for a in mine] == pytest.approx([a["score"] for a in want], rel=1e-5)  # other kernels


def test_cli_predict_and_eval(cls_artifact, qa_artifact, tmp_path, capsys):
    assert main(["predict", str(cls_artifact), "--text", "good", "--text", "bad"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["predict", str(qa_artifact), "--question", "Who scores?", "--context", CONTEXT]) == 0
    assert json.loads(capsys.readouterr().out)["answer"]
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\na fine film\t1\na dull film\t0\n")
    assert main(["eval", str(cls_artifact), "--data", str(data)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 2 and 0.0 <= metrics["accuracy"] <= 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["predict", str(qa_artifact), "--question", "Who?"]) == 2  # a clear error, not a traceback
    assert "pass --question and --context" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["cls", "qa"])
def test_cli_eval_sends_a_dev_set_in_calls_under_the_predictor_bounds(cls_artifact, qa_artifact, capsys, which):
    """A dev set larger than one predict call takes (the official SQuAD dev set: 10,570 questions) is scored in
    chunks, with the same metrics as in one call."""
    from pathlib import Path

    import qla_sdk.commands.eval as eval_command

    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    artifact, data = (cls_artifact, "sst2_tiny.tsv") if which == "cls" else (qa_artifact, "squad_tiny.json")
    argv = ["eval", str(artifact), "--data", str(fixtures / data)]
    assert main(argv) == 0
    whole = json.loads(capsys.readouterr().out)
    eval_command.CHUNK, chunk = 3, eval_command.CHUNK
    try:
        assert main(argv) == 0
    finally:
        eval_command.CHUNK = chunk
    pieces = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in pieces.items() if k != "seconds"} == {k: v for k, v in whole.items() if k != "seconds"}
    assert pieces["examples"] > 3
    assert main([*argv, "--limit", "0"]) == 2
    assert "--limit 0: must be >= 1" in capsys.readouterr().err


def test_a_checkpoint_given_as_an_artifact_is_named(classifier, tokenizer, tmp_path):
    from qla_sdk.errors import CheckpointError
    from qla_sdk.modeling import save_pretrained

    save_pretrained(classifier, tmp_path / "ckpt", tokenizer=tokenizer)
    with pytest.raises(CheckpointError, match="is a model checkpoint .* not an exported artifact: export it first"):
        qla_sdk.load(tmp_path / "ckpt")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--question", "What?", "--context", "@{tmp}"], "--context @{tmp}: a folder; give the path of a UTF-8 text"),
        (["--question", "What?", "--context", "@{tmp}/latin1.txt"], "latin1.txt is not UTF-8 text .*: save it as"),
    ],
)
def test_cli_predict_names_a_bad_context_file(qa_artifact, tmp_path, capsys, argv, message):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["predict", str(qa_artifact), *argv]) == 2
    err = capsys.readouterr().err
    assert re.search(message.replace("{tmp}", re.escape(str(tmp_path))), err) and "Traceback" not in err


def test_cli_predict_names_a_file_without_text(cls_artifact, tmp_path, capsys):
    (tmp_path / "blank.txt").write_text("\n  \n")
    assert main(["predict", str(cls_artifact), "--file", str(tmp_path / "blank.txt")]) == 2
    assert "blank.txt has no text: write one text per line" in capsys.readouterr().err
    assert main(["predict", str(cls_artifact), "--file", str(tmp_path)]) == 2  # a folder: named, no traceback
    assert f"--file {tmp_path}: a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seq-lens", "32,abc"], "--seq-lens '32,abc': give integers separated by commas"),
        (["--doc-stride", "-5", "--max-length", "64"], r"doc_stride -5: must be an integer in \[1, 32\]"),
        (["--doc-stride", "50", "--max-length", "64"], r"doc_stride 50: must be an integer in \[1, 32\]"),
        (["--doc-stride", "0"], r"doc_stride 0: must be an integer in \[1, 64\]"),  # as training and the recipe
        (["--max-length", "0"], r"max_length 0: must lie in \[2, 128\]"),
    ],
)
def test_cli_export_names_bad_lengths(qa_model, tokenizer, tmp_path, capsys, argv, message):
    checkpoint = tmp_path / "ckpt"
    from qla_sdk.modeling import save_pretrained

    save_pretrained(qa_model, checkpoint, tokenizer=tokenizer)
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "art"), *argv]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "art").exists()


@pytest.mark.parametrize("flag", ["--out", "--output"])  # --output: as the training commands, qla run and qla search
def test_cli_export_writes_the_artifact_folder_given_by_either_name(qa_model, tokenizer, tmp_path, flag):
    from qla_sdk.modeling import save_pretrained

    save_pretrained(qa_model, tmp_path / "ckpt", tokenizer=tokenizer)
    assert main(["export", str(tmp_path / "ckpt"), "--backend", "fp32", flag, str(tmp_path / "art")]) == 0
    assert qla_sdk.load(tmp_path / "art").task == "question-answering"


def test_a_model_trained_for_another_task_is_not_exported_with_a_random_head(classifier, tokenizer, tmp_path, capsys):
    from qla_sdk.modeling import save_pretrained

    save_pretrained(classifier, tmp_path / "ckpt", tokenizer=tokenizer)  # qla.json: text-classification
    argv = ["export", str(tmp_path / "ckpt"), "--backend", "fp32", "--out", str(tmp_path / "art")]
    assert main([*argv, "--task", "question-answering"]) == 2
    assert "has no trained question-answering head (text-classification in its qla.json)" in capsys.readouterr().err
    assert not (tmp_path / "art").exists()
    assert main(argv) == 0  # its own task


def test_export_records_a_stride_that_fits(qa_model, tokenizer, tmp_path):
    """No ``doc_stride``: 128 at most, and at most half of ``max_length``, recorded as the artifact serves it."""
    for max_length, want in ((64, 32), (128, 64), (8, 3)):  # 8: room for [CLS] q [SEP] c [SEP] after 3
        art = export_fp32(qa_model, tokenizer, tmp_path / f"art{max_length}", max_length=max_length)
        assert json.loads((art / "qla.json").read_text())["doc_stride"] == want
        assert qla_sdk.load(art).doc_stride == want


@pytest.mark.parametrize(
    "command, extra, message",
    [
        ("finetune", {"resume": False}, "--resume continues"),
        ("run", {}, "the same command continues"),
        ("demo", {}, "the same command continues"),
        ("export", {}, "no output was written half-way"),
    ],
)
def test_an_interrupted_command_says_how_to_go_on(command, extra, message):
    import argparse

    from qla_sdk.cli import _after_interrupt

    assert message in _after_interrupt(argparse.Namespace(command=command, **extra))
