import re
import time

import pytest

from qla_sdk.errors import ConfigError
from qla_sdk.recipe.runner import Stage, option_changes, read_marker, run_stages, stage_seconds


def make_stages(calls, options=("a", "b", "c"), fail_at=None):
    def stage(name):
        def run(folder, earlier, resume):
            calls.append((name, resume))
            if name == fail_at:
                (folder / "partial").write_text("half")
                raise KeyboardInterrupt
            return {"value": name, "saw": sorted(earlier)}

        return run

    return [Stage(n, stage(n), opt) for n, opt in zip(["one", "two", "three"], options, strict=True)]


def test_rerun_skips_finished(tmp_path):
    calls = []
    first = run_stages(make_stages(calls), tmp_path, log=lambda s: None)
    assert [c[0] for c in calls] == ["one", "two", "three"]
    assert first["three"]["saw"] == ["one", "two"]
    calls.clear()
    again = run_stages(make_stages(calls), tmp_path, log=lambda s: None)
    assert calls == [] and again == first


def test_killed_run_resumes_where_it_stopped(tmp_path):
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_stages(make_stages(calls, fail_at="two"), tmp_path, log=lambda s: None)
    calls.clear()
    run_stages(make_stages(calls), tmp_path, log=lambda s: None)
    assert calls == [("two", True), ("three", False)]
    assert (tmp_path / "two" / "partial").exists()  # the stage's partial work was handed to it, not deleted


def test_stages_after_a_resumed_stage_run_again(tmp_path):
    # stage two's options change and its rerun is killed: stage three still holds a marker of the old run, built
    # on the old outputs of stage two, so it must run again after two resumes and finishes
    calls = []
    run_stages(make_stages(calls), tmp_path, log=lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        run_stages(make_stages(calls, options=("a", "B", "c"), fail_at="two"), tmp_path, log=lambda s: None)
    calls.clear()
    run_stages(make_stages(calls, options=("a", "B", "c")), tmp_path, log=lambda s: None)
    assert calls == [("two", True), ("three", False)]


def test_from_stage_and_changed_options(tmp_path):
    calls = []
    run_stages(make_stages(calls), tmp_path, log=lambda s: None)
    calls.clear()
    run_stages(make_stages(calls), tmp_path, from_stage="two", log=lambda s: None)
    assert calls == [("two", False), ("three", False)]
    calls.clear()
    run_stages(make_stages(calls, options=("a", "B", "c")), tmp_path, log=lambda s: None)
    assert calls == [("two", False), ("three", False)]


@pytest.mark.parametrize(
    ("section", "neutral", "root"),
    [
        ("length_adaptive", 0, ()),
        ("length_adaptive", 0, ("lat",)),
        ("evolution", None, ("search",)),
        ("evolution", 0, ("search",)),
    ],
)
def test_an_option_added_later_reruns_nothing_at_the_value_that_does_what_older_markers_did(section, neutral, root):
    def options(**added):
        value = {section: {"length_drop_prob": 0.2, **added}, "use_teacher": True}
        for key in reversed(root):
            value = {key: value}
        return value

    where = "".join(f"{key}." for key in root) + section
    assert option_changes(options(), options(full_length_layers=neutral)) == []
    assert option_changes(options(), options(full_length_layers=2)) == [f"{where}.full_length_layers: '(unset)' -> 2"]
    assert option_changes(options(full_length_layers=2), options(full_length_layers=neutral)) == [
        f"{where}.full_length_layers: 2 -> {neutral!r}"
    ]
    assert option_changes(options(), options(full_length_layers=False)) != []  # False is no count of layers


def test_markers_written_before_augmentation_existed_rerun_nothing_at_its_defaults():
    from dataclasses import asdict

    from qla_sdk.recipe.config import DistillSection
    from qla_sdk.train.augment import AugmentConfig

    now = {"distill": asdict(DistillSection())}
    before = {"distill": {k: v for k, v in now["distill"].items() if k != "augment"}}
    assert option_changes(before, now) == []
    copies = {"distill": asdict(DistillSection(augment=AugmentConfig(copies=2)))}
    assert option_changes(before, copies) == ["distill.augment.copies: '(unset)' -> 2"]


def test_unknown_from_stage(tmp_path):
    with pytest.raises(ConfigError, match="'four' is not a stage; stages: one, two, three"):
        run_stages(make_stages([]), tmp_path, from_stage="four")


def test_until_stops_after_the_stage_and_a_later_run_goes_on(tmp_path):
    calls = []
    outputs = run_stages(make_stages(calls), tmp_path, until="two", log=lambda s: None)
    assert calls == [("one", False), ("two", False)] and list(outputs) == ["one", "two"]
    assert not (tmp_path / "three").exists()
    calls.clear()
    assert list(run_stages(make_stages(calls), tmp_path, until="two", log=lambda s: None)) == ["one", "two"]
    assert calls == []  # both skipped, and still nothing after them
    run_stages(make_stages(calls), tmp_path, log=lambda s: None)
    assert calls == [("three", False)]
    calls.clear()
    # Redo two and stop there: three was built on two's old outputs, so it is set aside and runs afresh next time.
    run_stages(make_stages(calls), tmp_path, from_stage="two", until="two", log=lambda s: None)
    assert calls == [("two", False)] and (tmp_path / "three.stale" / "done.json").exists()
    run_stages(make_stages(calls), tmp_path, log=lambda s: None)
    assert calls == [("two", False), ("three", False)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"until": "four"}, "--until 'four' is not a stage; stages: one, two, three"),
        ({"until": "one", "from_stage": "two"}, "--until 'one' comes before --from 'two'"),
    ],
)
def test_bad_until(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        run_stages(make_stages([]), tmp_path, **options)
    assert list(tmp_path.iterdir()) == []


def test_a_resumed_stage_counts_the_seconds_of_every_attempt(tmp_path):
    def make(slow_fail):
        def run(folder, earlier, resume):
            time.sleep(0.1)
            if slow_fail:
                raise KeyboardInterrupt
            return {}

        return [Stage("one", run, "a")]

    with pytest.raises(KeyboardInterrupt):
        run_stages(make(True), tmp_path, log=lambda s: None)
    lines = []
    run_stages(make(False), tmp_path, log=lines.append)
    marker = read_marker(tmp_path / "one")
    assert marker["attempts"] == 2 and marker["seconds"] >= 0.2
    assert re.fullmatch(r"\[one\] finished in \d+ s over 2 runs", lines[-1])


def test_stage_seconds_reads_the_markers_and_names_those_older_than_the_clock(tmp_path):
    import json

    run_stages(make_stages([]), tmp_path, log=lambda s: None)
    old = json.loads((tmp_path / "two" / "done.json").read_text())
    del old["attempts"]  # a marker written before StageClock
    (tmp_path / "two" / "done.json").write_text(json.dumps({**old, "seconds": 12.34}))
    seconds, unclocked = stage_seconds(tmp_path)
    assert list(seconds) == ["one", "three", "two"] and seconds["two"] == 12.3 and unclocked == ["two"]
    assert all(isinstance(s, float) and s >= 0 for s in seconds.values())
    named, _ = stage_seconds(tmp_path, ["one", "four"])
    assert named == {"one": seconds["one"], "four": None}  # a stage that never finished has no seconds


def test_an_interrupted_stage_starts_afresh_when_an_earlier_stage_ran(tmp_path):
    """Stage two was interrupted; then stage one's options change, so one runs again: two's partial work was built on
    one's old outputs and must not be resumed."""
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_stages(make_stages(calls, fail_at="two"), tmp_path, log=lambda s: None)
    calls.clear()
    run_stages(make_stages(calls, options=("A", "b", "c")), tmp_path, log=lambda s: None)
    assert calls == [("one", False), ("two", False), ("three", False)]
    assert not (tmp_path / "two" / "partial").exists()


@pytest.mark.parametrize("folder", ["two", "three.stale"])
def test_a_stage_folder_it_did_not_make_is_refused_before_any_work(tmp_path, folder):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "notes.md").write_text("mine")
    calls = []
    with pytest.raises(ConfigError, match="was not made by a recipe run .* move it away"):
        run_stages(make_stages(calls), tmp_path, from_stage="two", log=lambda s: None)
    assert calls == [] and (tmp_path / folder / "notes.md").read_text() == "mine"


def test_an_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("mine")
    with pytest.raises(ConfigError, match="is a file: give a folder"):
        run_stages(make_stages([]), tmp_path / "out", log=lambda s: None)


def test_markers_hold_absolute_paths(tmp_path, monkeypatch):
    """A run started in another working directory finds what the earlier stages recorded."""
    monkeypatch.chdir(tmp_path)
    stages = [Stage("one", lambda folder, earlier, resume: {"model": str(folder / "final")}, "a")]
    outputs = run_stages(stages, "out", log=lambda s: None)
    assert outputs["one"]["model"] == str(tmp_path / "out" / "one" / "final")
