"""benchmarks/squad_recipe.py's latency loop (shared with squad_speed_ceiling.py): every system answers every
question once, timed, in blocks whose system order rotates, each block after one untimed call of that system."""

from types import SimpleNamespace

import pytest
from conftest import load_benchmark

from qla_sdk.errors import ConfigError


@pytest.fixture(scope="module")
def squad_recipe():
    return load_benchmark("squad_recipe")


def test_systems_take_turns_in_rotated_blocks(squad_recipe, monkeypatch):
    monkeypatch.setattr(squad_recipe, "LATENCY_BLOCK", 2)
    examples = [SimpleNamespace(id=f"q{i}", question=f"question {i}", context="c") for i in range(5)]
    calls = []

    def system(name):
        def answer(question, context):
            calls.append((name, question))
            return f"{name}: {question}"

        return answer

    times, predictions = squad_recipe.time_in_blocks({"a": system("a"), "b": system("b")}, examples)
    warm, timed = calls[:10], calls[10:]
    assert warm == [(n, f"question {i}") for n in "ab" for i in range(5)]  # 5 untimed questions each
    # blocks of 2 questions (the last of 1), a first untimed call each, the first system rotating per block
    assert [n for n, _ in timed] == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3 + ["a"] * 2 + ["b"] * 2
    assert timed[:3] == [("a", "question 0"), ("a", "question 0"), ("a", "question 1")]
    assert {n: len(t) for n, t in times.items()} == {"a": 5, "b": 5}
    assert predictions["b"] == {f"q{i}": f"b: question {i}" for i in range(5)}


def test_the_speed_ceiling_script_refuses_a_bad_gene_before_building(tmp_path, capsys):
    module = load_benchmark("squad_speed_ceiling")
    with pytest.raises(ConfigError, match="has 2 entries but the model has 6 layers"):
        module.main(["--work", str(tmp_path / "w"), "--genes", "1,0.5"])
    assert not (tmp_path / "w").exists()  # nothing split or built


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("none", (None, "none")),
        ("1,1,0.5,0.3,0.2,0.1", (None, "1,1,0.5,0.3,0.2,0.1")),
        ("0-2-4-5:none", ([0, 2, 4, 5], "none")),
        ("0-2-4-5:1,1,0.66,0.27", ([0, 2, 4, 5], "1,1,0.66,0.27")),
    ],
)
def test_the_speed_ceiling_reads_whole_model_and_student_entries(entry, expected):
    assert load_benchmark("squad_speed_ceiling").parse_system(entry) == expected


@pytest.mark.parametrize(
    ("entry", "error", "match"),
    [
        ("0-x:none", SystemExit, "dash-separated layer indices"),
        ("2-1:none", SystemExit, "increasing MiniLM-L6 layers"),
        ("0-6:none", SystemExit, "increasing MiniLM-L6 layers"),
        ("0-2-4-5:1,0.5", ConfigError, "has 2 entries but the model has 4 layers"),
    ],
)
def test_the_speed_ceiling_refuses_a_bad_student_entry(entry, error, match):
    with pytest.raises(error, match=match):
        load_benchmark("squad_speed_ceiling").parse_system(entry)


def test_a_students_macs_share_counts_its_layers_against_the_whole_model():
    """A 4-layer student at full length does 4/6 of the layers' MACs, plus the span head both models share (tiny),
    and its artifact gets a folder of its own."""
    module = load_benchmark("squad_speed_ceiling")
    lengths = [120, 184, 384]
    assert module.macs_share("none", lengths) == 1.0
    student = module.macs_share("0-2-4-5:none", lengths)
    assert student == pytest.approx(4 / 6, abs=0.001) and student > 4 / 6
    assert module.macs_share("0-2-4-5:1,1,0.5,0.5", lengths) < student
    assert module.artifact_name("0-2-4-5:none") != module.artifact_name("none")
