import pytest

from qla_sdk.data import QAExample, accuracy, exact_match, f1, normalize_answer, squad_scores, token_f1
from qla_sdk.errors import ConfigError


def example(id_: str, *golds: str) -> QAExample:
    return QAExample(
        id=id_, title="", question="?", context="", answers=[{"text": g, "answer_start": 0} for g in golds]
    )


@pytest.mark.parametrize(
    "text, normalized",
    [
        ("The  Quick, brown fox!", "quick brown fox"),
        ("An apple a day", "apple day"),
        ("theatre thespian", "theatre thespian"),  # only whole words a/an/the go
        ("U.S.", "us"),
        ("  Denver\tBroncos\n", "denver broncos"),
        ("rock-n-roll's", "rocknrolls"),
    ],
)
def test_normalize_answer(text, normalized):
    assert normalize_answer(text) == normalized


@pytest.mark.parametrize(
    "prediction, gold, em, f",
    [
        ("the Denver Broncos", "Denver Broncos", 1.0, 1.0),
        ("Bernadette", "Saint Bernadette Soubirous", 0.0, 0.5),  # P=1, R=1/3
        ("the statue of Mary", "a golden statue of Jesus", 0.0, 4 / 7),  # P=2/3, R=2/4
        ("the the cat cat", "cat", 0.0, 2 / 3),  # multiset overlap 1: P=1/2, R=1
        ("", "cat", 0.0, 0.0),
        ("dog", "cat", 0.0, 0.0),
    ],
)
def test_pair_scores(prediction, gold, em, f):
    assert exact_match(prediction, gold) == em
    assert token_f1(prediction, gold) == pytest.approx(f)


def test_squad_scores_by_hand():
    examples = [
        example("q1", "Denver Broncos", "The Denver Broncos"),
        example("q2", "Saint Bernadette Soubirous"),
        example("q3", "a golden statue of Jesus", "statue"),
        example("q4", "1.8 million"),
    ]
    predictions = {"q1": "denver broncos", "q2": "Bernadette", "q3": "the statue of Mary", "extra": "ignored"}
    scores = squad_scores(predictions, examples)
    # q1 EM 1 F1 1; q2 F1 1/2; q3 F1 max(4/7, 1/2); q4 has no prediction and scores 0.
    assert scores["exact_match"] == pytest.approx(25.0)
    assert scores["f1"] == pytest.approx(100 * (1 + 1 / 2 + 4 / 7 + 0) / 4)
    assert scores["f1"] == pytest.approx(51.785714, abs=1e-5)


def test_squad_scores_errors():
    with pytest.raises(ConfigError, match="no examples"):
        squad_scores({}, [])
    with pytest.raises(ConfigError, match="no gold answer"):
        squad_scores({"q": "x"}, [example("q")])


def test_accuracy_and_f1_by_hand():
    preds, labels = [1, 0, 1, 1, 0], [1, 0, 0, 1, 1]
    assert accuracy(preds, labels) == pytest.approx(3 / 5)
    assert f1(preds, labels) == pytest.approx(2 / 3)  # TP 2, predicted 3, actual 3
    assert f1(preds, labels, positive_label=0) == pytest.approx(1 / 2)  # TP 1, predicted 2, actual 2
    assert f1(preds, labels, average="macro") == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_multiclass_macro_f1():
    preds, labels = [0, 1, 2, 2, 1, 0], [0, 1, 2, 1, 1, 2]
    # class 0: TP1 pred2 act1 -> 2/3; class 1: TP2 pred2 act3 -> 4/5; class 2: TP1 pred2 act2 -> 1/2
    assert f1(preds, labels, average="macro") == pytest.approx((2 / 3 + 4 / 5 + 1 / 2) / 3)
    assert accuracy(preds, labels) == pytest.approx(4 / 6)


def test_tensor_inputs():
    torch = pytest.importorskip("torch")
    assert accuracy(torch.tensor([1, 1, 0]), torch.tensor([[1], [0], [0]])) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: accuracy([1, 0], [1]), "2 predictions for 1 labels"),
        (lambda: f1([], []), "empty"),
        (lambda: f1([1], [1], average="micro"), "'binary' or 'macro'"),
    ],
)
def test_classification_metric_errors(call, message):
    with pytest.raises(ConfigError, match=message):
        call()
