import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qla_sdk.data import (
    QAExample,
    best_spans,
    load_squad,
    load_tokenizer,
    nbest_spans,
    postprocess_qa,
    qa_features,
    split_squad_by_article,
    squad_scores,
)
from qla_sdk.data.qa_postprocess import NO_ANSWER
from qla_sdk.errors import ConfigError
from qla_sdk.io import OutputError

SQUAD = Path(__file__).parent.parent / "fixtures" / "squad_tiny.json"


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    return load_tokenizer(minilm_dir)


@pytest.fixture(scope="module")
def examples():
    return load_squad(SQUAD)


def test_load_squad(examples):
    assert [e.id for e in examples] == ["n1", "n2", "w1", "w2"]
    assert [e.title for e in examples] == ["Normans", "Normans", "Warsaw", "Warsaw"]
    assert examples[0].context is examples[1].context  # a paragraph's context is shared, not copied
    n2 = examples[1]
    assert [a["text"] for a in n2.answers] == ["the French language", "French"]
    for e in examples:
        for a in e.answers:
            assert e.context[a["answer_start"] : a["answer_start"] + len(a["text"])] == a["text"]


def context_tokens(tokenizer, context: str) -> set[tuple[int, int]]:
    return set(tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"])


@pytest.mark.parametrize("max_length, doc_stride", [(40, 10), (48, 24), (384, 128)])
def test_windows_cover_the_context(tokenizer, examples, max_length, doc_stride):
    features = qa_features(examples, tokenizer, max_length, doc_stride)
    assert sorted(set(features.example_index)) == [0, 1, 2, 3]
    assert features.start_positions is None and features.token_type_ids is not None
    for e, example in enumerate(examples):
        windows = [i for i, owner in enumerate(features.example_index) if owner == e]
        covered = {o for i in windows for o in features.offset_mapping[i] if o is not None}
        assert covered == context_tokens(tokenizer, example.context)
        for i in windows:
            ids, segments, offsets = features.input_ids[i], features.token_type_ids[i], features.offset_mapping[i]
            assert len(ids) == len(segments) == len(offsets) <= max_length
            assert ids[0] == tokenizer.cls_token_id and offsets[0] is None  # specials and question: no offsets
            assert all(
                (o is not None) == (s == 1 and t != tokenizer.sep_token_id)
                for o, s, t in zip(offsets, segments, ids, strict=True)
            )
    if max_length == 40:  # the Normans paragraph needs several windows at this length
        assert features.example_index.count(0) >= 3


@pytest.mark.parametrize("max_length, doc_stride", [(40, 10), (48, 24), (384, 128)])
def test_training_labels_point_at_the_answer(tokenizer, examples, max_length, doc_stride):
    features = qa_features(examples, tokenizer, max_length, doc_stride, training=True)
    labelled = 0
    for i, (s, t) in enumerate(zip(features.start_positions, features.end_positions, strict=True)):
        example = examples[features.example_index[i]]
        answer = example.answers[0]
        offsets = features.offset_mapping[i]
        if s == 0:  # CLS: the window does not hold the whole first answer
            assert t == 0
            spans = [o for o in offsets if o is not None]
            assert spans[0][0] > answer["answer_start"] or spans[-1][1] < answer["answer_start"] + len(answer["text"])
        else:
            labelled += 1
            assert s <= t
            assert example.context[offsets[s][0] : offsets[t][1]] == answer["text"]
    assert labelled >= len(examples)  # every answer sits whole in at least one window
    if max_length < 384:
        assert 0 in features.start_positions  # some windows miss the answer


def test_question_longer_than_room_is_cut(tokenizer, examples):
    long = QAExample("long", "", "why " * 200 + "?", examples[0].context, examples[0].answers)
    features = qa_features([long], tokenizer, 64, 16, max_question_length=20)
    for ids, segments in zip(features.input_ids, features.token_type_ids, strict=True):
        assert segments.count(0) == 20 + 2  # [CLS] question [SEP]
        assert len(ids) <= 64


def test_doc_stride_too_large(tokenizer, examples):
    with pytest.raises(ConfigError, match="doc_stride 60 leaves no room"):
        qa_features(examples, tokenizer, max_length=64, doc_stride=60)


def oracle_logits(features, examples, tokenizer, max_length, doc_stride, seed=0):
    """Random low logits with the gold answer's tokens highest: post-processing must return the gold text."""
    train = qa_features(examples, tokenizer, max_length, doc_stride, training=True)
    assert train.input_ids == features.input_ids
    g = torch.Generator().manual_seed(seed)
    starts, ends = [], []
    for i, ids in enumerate(features.input_ids):
        s, e = torch.randn(len(ids), generator=g), torch.randn(len(ids), generator=g)
        if train.start_positions[i] != 0:
            s[train.start_positions[i]] += 10
            e[train.end_positions[i]] += 10
        starts.append(s)
        ends.append(e)
    return starts, ends


def test_postprocess_recovers_answers(tokenizer, examples):
    features = qa_features(examples, tokenizer, 40, 10)
    starts, ends = oracle_logits(features, examples, tokenizer, 40, 10)
    predictions = postprocess_qa(examples, features, starts, ends)
    assert predictions == {e.id: e.answers[0]["text"] for e in examples}
    assert squad_scores(predictions, examples) == {"exact_match": 100.0, "f1": 100.0}
    spans = best_spans(examples, features, starts, ends)
    for e in examples:
        span = spans[e.id]
        assert (span.start, span.end) == (e.answers[0]["answer_start"], e.answers[0]["answer_start"] + len(span.text))
        assert e.context[span.start : span.end] == span.text
        assert 0.5 < span.score <= 1.0
    # A padded tensor gives the same answers as the ragged rows.
    width = max(len(ids) for ids in features.input_ids) + 3
    padded = [torch.nn.functional.pad(r, (0, width - len(r)), value=-1e4) for r in starts]
    padded_end = [torch.nn.functional.pad(r, (0, width - len(r)), value=-1e4) for r in ends]
    assert postprocess_qa(examples, features, torch.stack(padded), np.stack(padded_end)) == predictions


@pytest.fixture(scope="module")
def numbers(tokenizer):
    context = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    example = QAExample("x", "", "which number?", context, [])
    features = qa_features([example], tokenizer, 384, 128)
    token = {context[o[0] : o[1]]: i for i, o in enumerate(features.offset_mapping[0]) if o is not None}
    return example, features, token


def answer(numbers, starts: dict, ends: dict, **options):
    """The best span when only the given positions (word or token index) have logits above -100."""
    example, features, token = numbers
    start, end = np.full(len(features.input_ids[0]), -100.0), np.full(len(features.input_ids[0]), -100.0)
    for row, marks in ((start, starts), (end, ends)):
        for where, value in marks.items():
            row[token.get(where, where)] = value
    return best_spans([example], features, [start], [end], **options)["x"]


def test_postprocess_only_context_tokens(numbers):
    span = answer(numbers, {0: 100, 2: 90, "ten": 5}, {0: 100, 3: 90, "twelve": 5})  # CLS, question tokens
    assert span.text == "ten eleven twelve" and span.logit == 10.0


def test_postprocess_max_answer_length(numbers):
    starts, ends = {"one": 80, "ten": 5}, {"sixteen": 80, "eleven": 5}
    assert answer(numbers, starts, ends, max_answer_length=5).text == "ten eleven"
    assert answer(numbers, starts, ends, max_answer_length=16).text == numbers[0].context
    assert answer(numbers, starts, ends, max_answer_length=6).text == "ten eleven"
    assert (
        answer(numbers, starts, ends, max_answer_length=7).text == "ten eleven twelve thirteen fourteen fifteen sixteen"
    )


def test_postprocess_end_before_start(numbers):
    span = answer(numbers, {"twelve": 70, "four": 5}, {"three": 70, "five": 5})
    assert span.text == "four five" and span.logit == 10.0


def test_postprocess_nbest(numbers):
    example, features, token = numbers
    start, end = np.full(len(features.input_ids[0]), -100.0), np.full(len(features.input_ids[0]), -100.0)
    start[token["two"]], start[token["seven"]], end[token["three"]], end[token["nine"]] = 3, 2, 3, 1
    ranked = nbest_spans([example], features, [start], [end], n_best=3)["x"]
    assert [(s.text, s.logit) for s in ranked] == [
        ("two three", 6.0),
        ("two three four five six seven eight nine", 4.0),
        ("seven eight nine", 3.0),
    ]
    assert [s.score for s in ranked] == pytest.approx(np.exp([6, 4, 3]) / np.exp([6, 4, 3]).sum())


@pytest.fixture(scope="module")
def eiffel(tokenizer):
    context = "The tower was designed by Gustave Eiffel's company, in 1889."
    example = QAExample("x", "", "who built it?", context, [])
    features = qa_features([example], tokenizer, 384, 128, word_ids=True)
    pieces = tokenizer.convert_ids_to_tokens(features.input_ids[0])
    token = {p: i for i, p in enumerate(pieces) if features.offset_mapping[0][i] is not None}
    assert [p for p in pieces if p in ("e", "##iff", "##el")] == ["e", "##iff", "##el"]  # "Eiffel" is three pieces
    return example, features, token


def eiffel_spans(eiffel, starts: dict, ends: dict, align: bool) -> list[tuple[str, float]]:
    example, features, token = eiffel
    start, end = np.full(len(features.input_ids[0]), -100.0), np.full(len(features.input_ids[0]), -100.0)
    for row, marks in ((start, starts), (end, ends)):
        for piece, value in marks.items():
            row[token[piece]] = value
    ranked = nbest_spans([example], features, [start], [end], n_best=3, align_to_words=align)["x"]
    return [(s.text, s.logit) for s in ranked]


@pytest.mark.parametrize(
    "start, end, tokens, words",
    [
        ("gustave", "e", "Gustave E", "Gustave Eiffel"),  # ends inside a word: the word's end
        ("##iff", "##el", "iffel", "Eiffel"),  # starts inside a word: the word's start
        ("e", "e", "E", "Eiffel"),
        ("##el", "'", "el'", "Eiffel'"),  # punctuation is a word of its own
        ("designed", "by", "designed by", "designed by"),  # whole words stay as they are
    ],
)
def test_postprocess_aligns_answers_to_words(eiffel, start, end, tokens, words):
    assert eiffel_spans(eiffel, {start: 5}, {end: 5}, align=False)[0] == (tokens, 10.0)
    assert eiffel_spans(eiffel, {start: 5}, {end: 5}, align=True)[0] == (words, 10.0)


def test_spans_that_align_to_the_same_words_count_once(eiffel):
    starts, ends = {"gustave": 5, "by": 1}, {"e": 5, "##el": 4}
    assert eiffel_spans(eiffel, starts, ends, align=False) == [
        ("Gustave E", 10.0),
        ("Gustave Eiffel", 9.0),
        ("by Gustave E", 6.0),
    ]
    assert eiffel_spans(eiffel, starts, ends, align=True) == [("Gustave Eiffel", 10.0), ("by Gustave Eiffel", 6.0)]


def test_aligning_needs_the_features_words(tokenizer, eiffel):
    example, features, _ = eiffel
    assert qa_features([example], tokenizer, 384, 128).word_ids is None  # kept only when asked
    assert features.subset([0]).word_ids == features.word_ids
    plain = qa_features([example], tokenizer, 384, 128)
    rows = [np.zeros(len(plain.input_ids[0]))]
    with pytest.raises(ConfigError, match=r"qa_features\(\.\.\., word_ids=True\)"):
        best_spans([example], plain, rows, rows, align_to_words=True)


def test_a_word_cut_by_the_window_edge_is_whole_in_the_answer():
    from qla_sdk.data.squad import QAFeatures

    example = QAExample("a", "", "which?", "hello wonderful world")
    # Window 0 ends after "won"; window 1 holds the whole word ("won", "##der", "##ful", word 1 in both).
    features = QAFeatures(
        input_ids=[[1, 2, 3, 4, 5, 6], [1, 2, 3, 5, 7, 8, 9, 3]],
        token_type_ids=None,
        example_index=[0, 0],
        offset_mapping=[
            [None, None, None, (0, 5), (6, 9), None],
            [None, None, None, (6, 9), (9, 12), (12, 15), (16, 21), None],
        ],
        word_ids=[[None, None, None, 0, 1, None], [None, None, None, 1, 1, 1, 2, None]],
    )
    starts = [np.array([0, 0, 0, 9.0, 0, 0]), np.zeros(8)]
    ends = [np.array([0, 0, 0, 0, 9.0, 0]), np.zeros(8)]
    assert best_spans([example], features, starts, ends)["a"].text == "hello won"
    assert best_spans([example], features, starts, ends, align_to_words=True)["a"].text == "hello wonderful"


@pytest.mark.parametrize("option", [{"n_best": 0}, {"max_answer_length": 0}, {"n_best": True}, {"n_best": 2.5}])
def test_postprocess_options_are_checked(eiffel, option):
    example, features, _ = eiffel
    rows = [np.zeros(len(features.input_ids[0]))]
    with pytest.raises(ConfigError, match=f"{next(iter(option))} .*: must be an integer >= 1"):
        best_spans([example], features, rows, rows, **option)


def plain_rule(example, features, starts, ends, n_best, max_answer_length):
    """transformers' run_qa rule as nested loops over each window's top positions: what nbest_spans must give."""
    candidates = {}
    for f in range(len(features.input_ids)):
        offsets, start, end = features.offset_mapping[f], starts[f], ends[f]
        for s in np.argsort(start)[::-1][:n_best]:
            for t in np.argsort(end)[::-1][:n_best]:
                if offsets[s] is None or offsets[t] is None or not 0 <= t - s < max_answer_length:
                    continue
                span = (offsets[s][0], offsets[t][1])
                if 0 <= span[0] <= span[1] <= len(example.context):
                    candidates[span] = max(candidates.get(span, -np.inf), float(start[s]) + float(end[t]))
    ranked = sorted(candidates.items(), key=lambda item: item[1], reverse=True)[:n_best]
    return [(example.context[s:t], s, t, logit) for (s, t), logit in ranked]


@pytest.mark.parametrize("n_best, max_answer_length", [(20, 30), (3, 2), (50, 1), (1, 384)])
@pytest.mark.parametrize("seed", range(3))
def test_postprocess_gives_the_plain_rule_with_ties_and_windows(tokenizer, examples, seed, n_best, max_answer_length):
    features = qa_features(examples[:2], tokenizer, 48, 16)  # several overlapping windows per example
    rng = np.random.default_rng(seed)
    # Logits rounded to one decimal: many equal sums, so the order of ties is checked too.
    starts = [np.round(rng.normal(size=len(ids)), 1).astype(np.float32) for ids in features.input_ids]
    ends = [np.round(rng.normal(size=len(ids)), 1).astype(np.float32) for ids in features.input_ids]
    ranked = nbest_spans(examples[:2], features, starts, ends, n_best, max_answer_length)
    best = best_spans(examples[:2], features, starts, ends, n_best, max_answer_length)
    for e, example in enumerate(examples[:2]):
        mine = [f for f, i in enumerate(features.example_index) if i == e]
        sub = type(features)(
            input_ids=[features.input_ids[f] for f in mine],
            token_type_ids=None,
            example_index=[0] * len(mine),
            offset_mapping=[features.offset_mapping[f] for f in mine],
        )
        expected = plain_rule(
            example, sub, [starts[f] for f in mine], [ends[f] for f in mine], n_best, max_answer_length
        )
        assert expected or n_best < 20, "the wide settings should find spans"
        assert [(a.text, a.start, a.end, a.logit) for a in ranked[example.id]] == expected
        assert best[example.id] == (ranked[example.id][0] if expected else NO_ANSWER)


def test_postprocess_a_window_without_tokens_has_no_span():
    from qla_sdk.data.squad import QAFeatures

    example = QAExample("a", "", "which?", "hello world")
    empty = QAFeatures(input_ids=[[]], token_type_ids=None, example_index=[0], offset_mapping=[[]])
    assert best_spans([example], empty, [np.zeros(0)], [np.zeros(0)]) == {"a": NO_ANSWER}
    both = QAFeatures(
        input_ids=[[], [1, 2, 3]],
        token_type_ids=None,
        example_index=[0, 0],
        offset_mapping=[[], [None, (0, 5), (6, 11)]],
    )
    starts, ends = [np.zeros(0), np.array([9.0, 2.0, 1.0])], [np.zeros(0), np.array([9.0, 1.0, 2.0])]
    assert best_spans([example], both, starts, ends)["a"].text == "hello world"  # [CLS] (no offsets) is not a span


def test_postprocess_best_window_wins(tokenizer, examples):
    features = qa_features(examples[:1], tokenizer, 40, 10)
    windows = len(features)
    assert windows >= 3
    starts = [np.zeros(len(ids)) for ids in features.input_ids]
    ends = [np.zeros(len(ids)) for ids in features.input_ids]
    for w, score in ((0, 5.0), (windows - 1, 9.0)):
        first = next(i for i, o in enumerate(features.offset_mapping[w]) if o is not None)
        starts[w][first] = ends[w][first] = score
    o = features.offset_mapping[windows - 1]
    first = next(i for i, x in enumerate(o) if x is not None)
    assert postprocess_qa(examples[:1], features, starts, ends)["n1"] == examples[0].context[o[first][0] : o[first][1]]


def test_postprocess_checks_shapes(tokenizer, examples):
    features = qa_features(examples, tokenizer, 384, 128)
    rows = [np.zeros(len(ids)) for ids in features.input_ids]
    with pytest.raises(ConfigError, match="rows for"):
        postprocess_qa(examples, features, rows[:-1], rows)
    with pytest.raises(ConfigError, match="fewer than its"):
        postprocess_qa(examples, features, [r[:5] for r in rows], rows)


# ---------------------------------------------------------------------------------------------------- split


def write_articles(path: Path, n: int) -> Path:
    articles = []
    for a in range(n):
        context = f"Article {a} is about topic number {a}."
        qas = [
            {
                "id": f"a{a}q{q}",
                "question": f"What is article {a} about?",
                "answers": [{"text": f"{a}", "answer_start": 8}],
            }
            for q in range(a % 3 + 1)
        ]
        articles.append({"title": f"T{a}", "paragraphs": [{"context": context, "qas": qas}]})
    path.write_text(json.dumps({"data": articles, "version": "1.1"}))
    return path


def titles(path: Path) -> list[str]:
    return [a["title"] for a in json.loads(path.read_text())["data"]]


def test_split_is_deterministic_and_disjoint(tmp_path):
    src = write_articles(tmp_path / "src.json", 10)
    counts = split_squad_by_article(src, tmp_path / "a/train.json", tmp_path / "a/eval.json", 0.8, seed=3)
    split_squad_by_article(src, tmp_path / "b/train.json", tmp_path / "b/eval.json", 0.8, seed=3)
    for name in ("train.json", "eval.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    train, held_out = titles(tmp_path / "a/train.json"), titles(tmp_path / "a/eval.json")
    assert not set(train) & set(held_out)
    assert sorted(train + held_out, key=lambda t: int(t[1:])) == [f"T{a}" for a in range(10)]
    assert train == sorted(train, key=lambda t: int(t[1:]))  # source order kept
    questions = {f"T{a}": a % 3 + 1 for a in range(10)}
    assert counts == {
        "train": {"articles": 8, "questions": sum(questions[t] for t in train)},
        "eval": {"articles": 2, "questions": sum(questions[t] for t in held_out)},
    }
    assert len(load_squad(tmp_path / "a/eval.json")) == counts["eval"]["questions"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["eval.json", "train.json"]  # no temp files left


def test_split_depends_on_seed(tmp_path):
    src = write_articles(tmp_path / "src.json", 10)
    held_out = set()
    for seed in range(5):
        split_squad_by_article(src, tmp_path / "t.json", tmp_path / "e.json", 0.8, seed=seed)
        held_out.add(tuple(titles(tmp_path / "e.json")))
    assert len(held_out) > 1


def test_split_fixture_keeps_one_article_each(tmp_path):
    counts = split_squad_by_article(SQUAD, tmp_path / "t.json", tmp_path / "e.json", 0.8)
    assert counts["train"]["articles"] == counts["eval"]["articles"] == 1
    assert counts["train"]["questions"] + counts["eval"]["questions"] == 4


def test_split_squad_command(tmp_path, capsys):
    from qla_sdk.cli import main

    src = write_articles(tmp_path / "src.json", 5)
    code = main(["split-squad", str(src), "--train", str(tmp_path / "t.json"), "--eval", str(tmp_path / "e.json")])
    assert code == 0
    assert "train: 4 articles" in capsys.readouterr().out
    assert main(["split-squad", str(tmp_path / "missing.json"), "--train", "t", "--eval", "e"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "train, eval_, message",
    [
        ("same.json", "same.json", "would both be written to"),
        ("src.json", "e.json", "the train part would replace the source file"),
        ("t.json", "src.json", "the eval part would replace the source file"),
        ("t.json", "folder", "the eval output .* is a folder"),
    ],
)
def test_split_refuses_outputs_that_lose_data(tmp_path, train, eval_, message):
    """Nothing is written (the source and every other file unchanged) when an output would overwrite the source,
    the other part, or is a folder."""
    src = write_articles(tmp_path / "src.json", 5)
    (tmp_path / "folder").mkdir()
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=message):
        split_squad_by_article(src, tmp_path / train, tmp_path / eval_, 0.8)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("held", ["t.json", "e.json"])
@pytest.mark.parametrize(
    "content", ["squad of other articles", "not json", '{"data": "x"}'], ids=["other-squad", "text", "bad-data"]
)
def test_split_does_not_replace_a_file_that_is_not_an_earlier_split(tmp_path, held, content):
    """Replacing an earlier split of the same source is how a re-split works; anything else at an output path (the
    official train file, given as --train by mistake) is refused with nothing written."""
    src = write_articles(tmp_path / "src.json", 6)
    if content == "squad of other articles":
        content = write_articles(tmp_path / "other.json", 3).read_text().replace("Article", "Story")
    (tmp_path / held).write_text(content)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(OutputError, match=f"the .* output .*{held} exists and is not a part of an earlier split"):
        split_squad_by_article(src, tmp_path / "t.json", tmp_path / "e.json", 0.5)
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_split_refuses_a_symlinked_output_and_replaces_an_empty_file(tmp_path):
    """The rename would replace a link and leave its target as it was; an empty file (touch, mktemp) holds nothing
    to lose."""
    src = write_articles(tmp_path / "src.json", 6)
    split_squad_by_article(src, tmp_path / "t0.json", tmp_path / "e0.json", 0.5)
    (tmp_path / "t.json").symlink_to(tmp_path / "t0.json")
    with pytest.raises(OutputError, match=r"the train output .*t.json is a symbolic link \(to .*t0.json\)"):
        split_squad_by_article(src, tmp_path / "t.json", tmp_path / "e.json", 0.5)
    assert (tmp_path / "t.json").is_symlink() and not (tmp_path / "e.json").exists()
    (tmp_path / "t.json").unlink()
    (tmp_path / "t.json").touch()
    split_squad_by_article(src, tmp_path / "t.json", tmp_path / "e.json", 0.5)
    assert (tmp_path / "t.json").read_bytes() == (tmp_path / "t0.json").read_bytes()


def test_articles_without_questions_are_not_dealt_out(tmp_path):
    """An article with no question, drawn into the evaluation part alone, left it with nothing to score: only
    articles with questions are dealt out, the rest go with the training part."""
    src = write_articles(tmp_path / "src.json", 4)
    data = json.loads(src.read_text())
    for article in data["data"][1:3]:
        article["paragraphs"][0]["qas"] = []
    src.write_text(json.dumps(data))
    for seed in range(8):
        counts = split_squad_by_article(src, tmp_path / "t.json", tmp_path / "e.json", 0.5, seed=seed)
        assert counts["train"]["questions"] and counts["eval"]["questions"]
        assert counts["train"]["articles"] == 3 and {"T1", "T2"} <= set(titles(tmp_path / "t.json"))
    for article in data["data"][:3]:
        article["paragraphs"][0]["qas"] = []
    src.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"1 article\(s\) with questions \(4 in all\): .* at least 2"):
        split_squad_by_article(src, tmp_path / "t2.json", tmp_path / "e2.json")


def _eval_part_cannot_be_written(monkeypatch) -> None:
    """``e.json`` fails as a full disk fails; other files are written."""
    import qla_sdk.data.squad as squad

    real = squad.write_bytes_atomic

    def write(path, payload):
        if Path(path).name == "e.json":
            raise OSError(28, "No space left on device")
        return real(path, payload)

    monkeypatch.setattr(squad, "write_bytes_atomic", write)


def test_split_removes_its_first_part_when_the_second_fails(tmp_path, monkeypatch):
    src = write_articles(tmp_path / "src.json", 5)
    _eval_part_cannot_be_written(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        split_squad_by_article(src, tmp_path / "t.json", tmp_path / "e.json", 0.8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.json"]


def test_a_failed_split_over_an_earlier_one_leaves_no_mixed_pair(tmp_path, monkeypatch):
    """Re-split with another seed over earlier outputs, the eval part failing: the new train part would share
    articles with the earlier eval part, so it goes; the earlier eval part stays as it was."""
    src = write_articles(tmp_path / "src.json", 6)
    split_squad_by_article(src, tmp_path / "t.json", tmp_path / "e.json", 0.5, seed=0)
    earlier_eval = (tmp_path / "e.json").read_bytes()
    _eval_part_cannot_be_written(monkeypatch)
    with pytest.raises(OSError, match="No space"):
        split_squad_by_article(src, tmp_path / "t.json", tmp_path / "e.json", 0.5, seed=7)
    assert not (tmp_path / "t.json").exists() and (tmp_path / "e.json").read_bytes() == earlier_eval


# ---------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ('{"version": "1.1"}', "'data' list of articles"),
        ('{"data": [{"title": "t", "paragraphs": [{"qas": []}]}]}', "paragraph 0 has no 'context' key"),
        (
            '{"data": [{"title": "t", "paragraphs": [{"context": "c", "qas": [{"id": "1", "answers": []}]}]}]}',
            "question 0 has no 'question' key",
        ),
        (
            '{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q", '
            '"answers": [{"text": "c", "answer_start": "0"}]}]}]}]}',
            "'answer_start' is str, expected int",
        ),
        ('{"data": []}', "holds no questions"),
        (
            '{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q", "answers": []}, '
            '{"id": "1", "question": "q", "answers": []}]}]}]}',
            "appears twice",
        ),
        (  # SQuAD v2.0: scored as if it had an answer, had it been read
            '{"version": "v2.0", "data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q", '
            '"is_impossible": true, "answers": [{"text": "c", "answer_start": 0}]}]}]}]}',
            r"question 0 \(id '1'\) is a SQuAD v2.0 question without an answer",
        ),
        (
            '{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "question": "q", '
            '"answers": [{"text": " ", "answer_start": 0}]}]}]}]}',
            "question '1' has an empty answer text",
        ),
    ],
)
def test_load_squad_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_squad(path)


def test_load_squad_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_squad(tmp_path / "dev-v1.1.json")
    with pytest.raises(ConfigError, match="cannot load .* with datasets.load_dataset"):
        load_squad(tmp_path, cache_dir=str(tmp_path / "cache"))


def test_load_squad_from_a_dataset_folder(tmp_path):
    """The `datasets` path (hub names use it too): rows with answers as {"text": [...], "answer_start": [...]}."""
    pytest.importorskip("datasets")
    squad = json.loads(SQUAD.read_text())
    rows = [
        {
            "id": qa["id"],
            "title": article["title"],
            "context": paragraph["context"],
            "question": qa["question"],
            "answers": {k: [a[k] for a in qa["answers"]] for k in ("text", "answer_start")},
        }
        for article in squad["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    (tmp_path / "squad").mkdir()
    (tmp_path / "squad" / "validation.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    examples = load_squad(tmp_path / "squad", "validation", cache_dir=str(tmp_path / "cache"))
    assert examples == load_squad(SQUAD)


def test_misplaced_answer_warns(tmp_path):
    data = {"data": [{"paragraphs": [{"context": "abc def", "qas": [
        {"id": "1", "question": "q", "answers": [{"text": "def", "answer_start": 0}]}]}]}]}  # fmt: skip
    (tmp_path / "s.json").write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="1 answers do not match"):
        load_squad(tmp_path / "s.json")


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_split_errors(tmp_path, fraction):
    with pytest.raises(ConfigError, match="train_fraction"):
        split_squad_by_article(SQUAD, tmp_path / "t.json", tmp_path / "e.json", fraction)
    src = write_articles(tmp_path / "one.json", 1)
    with pytest.raises(ConfigError, match="at least 2"):
        split_squad_by_article(src, tmp_path / "t.json", tmp_path / "e.json")


def test_backend_copies_follow_tokens_added_after_a_first_call():
    from qla_sdk.data.squad import _clip_questions, encode_windows
    from qla_sdk.pretrained import minilm_path

    tokenizer = load_tokenizer(minilm_path())  # its own: the test adds a token to it
    questions, contexts = ["what is qlazorb made of ?"], ["qlazorb is made of stone and of qlazorb dust."]
    encode_windows(tokenizer, questions, contexts, 32, 8)  # caches backend copies without the token
    _clip_questions(questions, tokenizer, 3)
    tokenizer.add_tokens(["qlazorb"])
    windows = encode_windows(tokenizer, questions, contexts, 32, 8)
    assert windows == encode_windows(tokenizer, questions, contexts, 32, 8, backend=False)
    assert len(tokenizer) - 1 in windows.input_ids[0]  # the added token's id
    assert _clip_questions(questions, tokenizer, 3) == _clip_questions(questions, tokenizer, 3, backend=False)


def test_backend_copies_are_found_without_building_the_vocabulary(monkeypatch):
    # len() of a fast tokenizer builds its whole vocabulary (tens of thousands of entries) in the backend: looked up
    # per question, it cost more than the windows' tokenization itself.
    from qla_sdk.data.squad import encode_windows
    from qla_sdk.pretrained import minilm_path

    tokenizer = load_tokenizer(minilm_path())
    expected = encode_windows(tokenizer, ["what is it ?"], ["it is stone."], 32, 8, backend=False)

    def no_len(self):
        raise AssertionError("len(tokenizer) called on the serving path")

    monkeypatch.setattr(type(tokenizer), "__len__", no_len)
    assert encode_windows(tokenizer, ["what is it ?"], ["it is stone."], 32, 8) == expected
    assert (
        qa_features([QAExample("0", "", "what is it ?", "it is stone.")], tokenizer, 32, 8).input_ids
        == expected.input_ids
    )


@pytest.mark.parametrize(
    "context, word, served",
    [
        ("The cafe\u0301 is run by Jose\u0301 Luis.", "jose", "Jose\u0301"),  # a decomposed accent
        ("I \u2764\ufe0f Paris.", "\u2764", "\u2764\ufe0f"),  # an emoji's variation selector
        ("The nin\u0303o is here.", "nin\u0303o", "nin\u0303o"),  # a mark inside the word: in the offsets already
        ("Run by Jose Luis.", "jose", "Jose"),  # nothing to take in
    ],
)
def test_a_word_aligned_answer_keeps_the_marks_the_tokenizer_dropped(tokenizer, context, word, served):
    example = QAExample("x", "", "who?", context, [])
    features = qa_features([example], tokenizer, 64, 16, word_ids=True)
    offsets = features.offset_mapping[0]
    (token,) = [i for i, o in enumerate(offsets) if o is not None and context[o[0] : o[1]].lower() == word]
    start, end = np.full(len(offsets), -100.0), np.full(len(offsets), -100.0)
    start[token] = end[token] = 5.0
    run_qa_rule = best_spans([example], features, [start], [end])["x"]
    aligned = best_spans([example], features, [start], [end], align_to_words=True)["x"]
    assert context[run_qa_rule.start : run_qa_rule.end].lower() == word  # the token's own offsets, as run_qa
    assert aligned.text == served and context[aligned.start : aligned.end] == served


def test_listing_more_answers_keeps_the_scores_of_the_best_ones(eiffel):
    example, features, token = eiffel
    start, end = np.zeros(len(features.input_ids[0])), np.zeros(len(features.input_ids[0]))
    start[token["gustave"]], end[token["##el"]], start[token["designed"]], end[token["company"]] = 6, 6, 3, 3
    narrow = nbest_spans([example], features, [start], [end], n_best=3)["x"]
    wide = nbest_spans([example], features, [start], [end], n_best=8, score_over=3)["x"]
    assert len(wide) == 8 and [s.text for s in wide[:3]] == [s.text for s in narrow]
    assert [s.score for s in wide[:3]] == pytest.approx([s.score for s in narrow])
    assert sum(s.score for s in narrow) == pytest.approx(1.0)
    assert nbest_spans([example], features, [start], [end], n_best=8)["x"][0].score < narrow[0].score
    with pytest.raises(ConfigError, match="score_over 0: must be an integer >= 1"):
        nbest_spans([example], features, [start], [end], score_over=0)
