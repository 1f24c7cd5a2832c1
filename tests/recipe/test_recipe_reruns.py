"""Re-running a recipe on an output folder: what counts as a change, what a finished stage must still hold, moved
and copied output folders, markers written by earlier versions, and the messages that say why a stage runs again."""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from qla_sdk.config import to_dict
from qla_sdk.errors import CheckpointError, ConfigError
from qla_sdk.recipe.config import load_recipe
from qla_sdk.recipe.runner import Stage, read_marker, run_stages
from qla_sdk.train.config import TrainConfig

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sst2_tiny.tsv"


def test_an_override_changes_only_the_section_it_names_not_those_sharing_its_anchor(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "task: text-classification\n"
        f"data: {{train: {FIXTURE}, eval: {FIXTURE}}}\n"
        "teacher: {model: pretrained:minilm, finetune: &train {lr: 1.0e-4}}\n"
        "student: {init_layers: [0, 2]}\n"
        "distill: {train: *train}\n"
        "lat: {train: *train}\n"
    )
    recipe = load_recipe(path, ["lat.train.seed=7", "distill.train.lr=2e-4"])
    assert recipe.lat.train.seed == 7 and recipe.lat.train.lr == 1e-4
    assert recipe.teacher.finetune.seed == recipe.distill.train.seed == 42  # the teacher is not retrained
    assert recipe.distill.train.lr == 2e-4 and recipe.teacher.finetune.lr == 1e-4


NAMES = ("one", "two", "three")


def make_stages(calls, trains=None, fail_at=None, resume_error=None):
    """Three stages, each writing a model folder that the next one reads, with a training section as options.
    ``resume_error``: what a stage raises when resumed (as the training loop does for a checkpoint of other options)."""

    def stage(name):
        def run(folder, earlier, resume):
            calls.append((name, resume))
            if resume and resume_error is not None:
                raise resume_error
            if name == fail_at:
                (folder / "partial").write_text("half")
                raise KeyboardInterrupt
            for model in (e["model"] for e in earlier.values()):
                assert Path(model).is_dir(), model  # a stage reads the models of the earlier ones
            (folder / "model").mkdir()
            return {"model": str(folder / "model"), "read": [e["model"] for e in earlier.values()]}

        return run

    trains = trains or {}
    return [Stage(n, stage(n), {"train": trains.get(n, TrainConfig())}, artifacts=("model",)) for n in NAMES]


def run(calls, out, lines=None, **options):
    return run_stages(make_stages(calls, **options), out, log=(lines if lines is not None else []).append)


def old_options_hash(options) -> str:
    """The options hash as the markers of earlier versions hold it (every field of the options)."""
    return hashlib.sha256(json.dumps(to_dict(options), sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_old_markers(out: Path, trains=None) -> None:
    """Rewrite the markers in ``out`` as earlier versions wrote them: the hash of every option, absolute paths, no
    recorded options or output folder."""
    trains = trains or {}
    for name in NAMES:
        marker = read_marker(out / name)
        old = {"options_hash": old_options_hash({"train": trains.get(name, TrainConfig())})}
        old.update({k: marker[k] for k in ("outputs", "seconds", "attempts")})
        (out / name / "done.json").write_text(json.dumps(old, indent=2))


DISPLAY = TrainConfig(progress=False, log_every=5, eval_batch_size=8, keep_checkpoints=1, checkpoint_every=7)


def test_display_options_are_no_change(tmp_path):
    calls = []
    run(calls, tmp_path)
    calls.clear()
    lines = []
    run(calls, tmp_path, lines, trains={"two": DISPLAY})
    assert calls == [] and sum("done earlier, skipped" in line for line in lines) == 3


def test_a_changed_option_is_named(tmp_path):
    calls = []
    run(calls, tmp_path)
    calls.clear()
    lines = []
    run(calls, tmp_path, lines, trains={"two": TrainConfig(lr=1e-4, progress=False)})
    assert calls == [("two", False), ("three", False)]
    assert "[two] options changed since it ran (train.lr: 5e-05 -> 0.0001): running it and the later stages again" in (
        lines
    )


def test_markers_of_earlier_versions_are_honoured(tmp_path):
    calls = []
    run(calls, tmp_path)
    write_old_markers(tmp_path)
    calls.clear()
    lines = []
    run(calls, tmp_path, lines)
    assert calls == [] and sum("done earlier, skipped" in line for line in lines) == 3
    # their hash covers every option: a change, display ones too, re-runs the stage, with no key to name
    run(calls, tmp_path, lines, trains={"three": DISPLAY})
    assert calls == [("three", False)] and "[three] options changed since it ran: running it" in "\n".join(lines)


@pytest.mark.parametrize("from_stage", [None, "three"])
def test_a_deleted_output_runs_its_stage_again_unless_before_from(tmp_path, from_stage):
    """Before --from, a model deleted to save disk is named, not rebuilt: --from keeps the stages before it."""
    calls = []
    run(calls, tmp_path)
    shutil.rmtree(tmp_path / "two" / "model")
    calls.clear()
    lines = []
    if from_stage is None:
        run(calls, tmp_path, lines)
        assert calls == [("two", False), ("three", False)]
        assert f"[two] done earlier, but {tmp_path / 'two' / 'model'} no longer exists: running it" in lines[1]
        return
    with pytest.raises(AssertionError, match="two/model"):  # three reads two's model, as the note says
        run_stages(make_stages(calls), tmp_path, log=lines.append, from_stage=from_stage)
    assert calls == [("three", False)]  # one and two were not rebuilt
    assert f"[two] note: {tmp_path / 'two' / 'model'} no longer exists; a later stage that reads it will fail" in lines


def test_a_users_own_path_named_like_a_stage_is_read_where_it_is(tmp_path):
    """An earlier version's marker of a teacher used as given (/proj/one beside /proj/out): its path is no sign that
    the output folder was moved from /proj, and must not be read as /proj/out/one."""
    given = tmp_path / "one"
    (given / "model").mkdir(parents=True)
    out = tmp_path / "out"
    calls = []

    def stages():
        plan = make_stages(calls)
        return [dataclasses.replace(plan[0], run=lambda folder, earlier, resume: {"model": str(given / "model")})]

    run_stages(stages(), out, log=[].append)
    marker = read_marker(out / "one")
    old = {"options_hash": old_options_hash({"train": TrainConfig()})}
    old.update({k: marker[k] for k in ("outputs", "seconds", "attempts")})
    (out / "one" / "done.json").write_text(json.dumps(old))
    (out / "one" / "model").mkdir()  # what the wrong mapping would point at
    outputs = run_stages(stages(), out, log=[].append)
    assert outputs["one"]["model"] == str(given / "model")


@pytest.mark.parametrize("edit", ["file", "folder"])
def test_an_input_edited_in_place_runs_its_stage_again(tmp_path, edit):
    """Data (or a teacher checkpoint) edited under the same path used to be skipped: the markers held the path."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("sentence\tlabel\na fine film\t1\n")
    given = data / "train.tsv" if edit == "file" else data
    calls = []

    def stages():
        plan = make_stages(calls)
        return [dataclasses.replace(plan[0], inputs=(str(given), str(tmp_path / "hub-id"))), *plan[1:]]

    out = tmp_path / "out"
    run_stages(stages(), out, log=[].append)
    calls.clear()
    lines = []
    run_stages(stages(), out, log=lines.append)
    assert calls == []  # the same contents: skipped
    (data / "train.tsv").write_text("sentence\tlabel\na fine film\t0\n")  # a label flipped in place
    run_stages(stages(), out, log=lines.append)
    assert calls == [("one", False), ("two", False), ("three", False)]
    assert f"[one] its input {given} changed since it ran: running it and the later stages again" in lines


@pytest.mark.parametrize(
    ("name", "contents", "runs_again"),
    [
        ("train.tsv", "a fine film\t1", False),
        ("train.tsv", "a fine film\t0", True),
        ("other.tsv", "a fine film\t1", False),  # renamed: the same contents, said in the log
        ("other.tsv", "a fine film\t0", True),
    ],
)
def test_an_input_at_another_path_with_the_same_contents_is_no_change(tmp_path, name, contents, runs_again):
    """A recipe run from another checkout (or a moved project, or a renamed data file) names its data at another
    path: the same file there used to rerun every stage, since the options hold the path."""
    first, second = tmp_path / "checkout1", tmp_path / "checkout2"
    first.mkdir()
    second.mkdir()
    (first / "train.tsv").write_text("sentence\tlabel\na fine film\t1\n")
    (second / name).write_text(f"sentence\tlabel\n{contents}\n")
    calls = []

    def stages(data):
        plan = make_stages(calls)
        return [dataclasses.replace(plan[0], options={"train": str(data)}, inputs=(str(data),)), *plan[1:]]

    out = tmp_path / "out"
    run_stages(stages(first / "train.tsv"), out, log=[].append)
    calls.clear()
    lines = []
    run_stages(stages(second / name), out, log=lines.append)
    if runs_again:
        assert calls == [("one", False), ("two", False), ("three", False)]
        assert any(line.startswith("[one] options changed since it ran (train: ") for line in lines)
        return
    assert calls == [] and any(line.startswith("[one] done earlier, skipped") for line in lines)
    renamed = f"[one] note: its input {first / 'train.tsv'} is {second / name} now (the same contents)"
    assert (renamed in lines) == (name != "train.tsv")


@pytest.mark.parametrize(
    ("now", "runs_again"),
    [
        ({"train": "a.tsv", "dev": "b.tsv"}, False),  # both renamed, each its own contents: each found
        ({"train": "b.tsv", "dev": "a.tsv"}, True),  # swapped: train is now what dev was
    ],
)
def test_renamed_inputs_are_matched_by_contents_only_where_that_is_unambiguous(tmp_path, now, runs_again):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text("sentence\tlabel\na fine film\t1\n")
    (data / "dev.tsv").write_text("sentence\tlabel\na dull film\t0\n")
    calls = []

    def stages(files):
        plan = make_stages(calls)
        paths = {key: str(data / name) for key, name in files.items()}
        return [dataclasses.replace(plan[0], options=paths, inputs=tuple(paths.values())), *plan[1:]]

    out = tmp_path / "out"
    run_stages(stages({"train": "train.tsv", "dev": "dev.tsv"}), out, log=[].append)
    (data / "train.tsv").rename(data / "a.tsv")
    (data / "dev.tsv").rename(data / "b.tsv")
    calls.clear()
    run_stages(stages(now), out, log=[].append)
    assert calls == ([("one", False), ("two", False), ("three", False)] if runs_again else [])


def test_identical_inputs_renamed_are_not_guessed_at(tmp_path):
    """Two inputs with the same contents, both renamed: which old path is which new one cannot be told, so the
    stage runs again."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (data / name).write_text("sentence\tlabel\na fine film\t1\n")
    calls = []

    def stages(train, dev):
        plan = make_stages(calls)
        paths = {"train": str(data / train), "dev": str(data / dev)}
        return [dataclasses.replace(plan[0], options=paths, inputs=tuple(paths.values())), *plan[1:]]

    out = tmp_path / "out"
    run_stages(stages("train.tsv", "dev.tsv"), out, log=[].append)
    (data / "train.tsv").rename(data / "x.tsv")
    (data / "dev.tsv").rename(data / "y.tsv")
    calls.clear()
    run_stages(stages("x.tsv", "y.tsv"), out, log=[].append)
    assert calls == [("one", False), ("two", False), ("three", False)]


@pytest.mark.parametrize("old_markers", [False, True])
@pytest.mark.parametrize("how", ["move", "copy"])
def test_a_moved_or_copied_output_folder_reads_its_own_files(tmp_path, how, old_markers):
    calls = []
    first, second = tmp_path / "first", tmp_path / "second"
    run(calls, first)
    if old_markers:
        write_old_markers(first)
    (shutil.move if how == "move" else shutil.copytree)(first, second)
    calls.clear()
    outputs = run(calls, second, trains={"three": TrainConfig(seed=1)})
    assert calls == [("three", False)]  # the stages before it read from the second folder, skipped
    assert outputs["three"]["read"] == [str(second / "one" / "model"), str(second / "two" / "model")]
    assert outputs["two"]["model"] == str(second / "two" / "model")
    if how == "copy":  # and the original is left as it was
        assert read_marker(first / "three")["outputs"]["read"][0] == str(first / "one" / "model")


def test_an_old_marker_whose_files_are_nowhere_runs_again(tmp_path):
    """A folder moved and then emptied of a stage's model: the old place is told by the other stages' files."""
    calls = []
    first, second = tmp_path / "first", tmp_path / "second"
    run(calls, first)
    write_old_markers(first)
    shutil.move(first, second)
    shutil.rmtree(second / "two" / "model")
    calls.clear()
    lines = []
    outputs = run(calls, second, lines)
    assert calls == [("two", False), ("three", False)]
    assert f"[two] done earlier, but {second / 'two' / 'model'} no longer exists" in lines[1]
    assert outputs["three"]["read"] == [str(second / "one" / "model"), str(second / "two" / "model")]


def test_a_resumed_stage_refused_for_changed_options_says_how_to_restart_it(tmp_path):
    calls = []
    run(calls, tmp_path)
    with pytest.raises(KeyboardInterrupt):  # two runs again with lr 1e-4 and is interrupted
        run(calls, tmp_path, trains={"two": TrainConfig(lr=1e-4)}, fail_at="two")
    error = CheckpointError("cannot resume from two/checkpoints: the run changed (lr: 0.0001 -> 0.0002)")
    with pytest.raises(CheckpointError) as caught:
        run(calls, tmp_path, trains={"two": TrainConfig(lr=2e-4)}, resume_error=error)
    assert str(caught.value) == (
        "cannot resume from two/checkpoints: the run changed (lr: 0.0001 -> 0.0002)\n[two] was resuming an "
        "interrupted run; its options changed since it was interrupted (train.lr: 0.0001 -> 0.0002): to start this "
        "stage afresh and keep the stages before it, run again with --from two"
    )
    assert (tmp_path / "two" / "partial").exists()  # nothing deleted
    with pytest.raises(CheckpointError, match=r"\(train.lr: 0.0001 -> 0.0002\)"):  # the refused try changed nothing
        run(calls, tmp_path, trains={"two": TrainConfig(lr=2e-4)}, resume_error=error)
    calls.clear()
    run_stages(make_stages(calls, trains={"two": TrainConfig(lr=2e-4)}), tmp_path, "two", log=lambda line: None)
    assert calls == [("two", False), ("three", False)]


def test_the_set_aside_folder_goes_when_its_stage_finishes_again(tmp_path):
    calls = []
    run(calls, tmp_path)
    run_stages(make_stages(calls), tmp_path, from_stage="two", until="two", log=lambda line: None)
    assert (tmp_path / "three.stale" / "done.json").exists()
    lines = []
    run(calls, tmp_path, lines)
    assert not (tmp_path / "three.stale").exists() and (tmp_path / "three" / "done.json").exists()
    assert f"[three] removed {tmp_path / 'three.stale'} (its outputs from before the stage ran again)" in lines


def test_an_output_that_is_a_file_is_named_before_anything_makes_it(tmp_path):
    from qla_sdk.recipe.config import DataSection, RecipeConfig, TeacherSection
    from qla_sdk.recipe.run import run_recipe

    recipe = RecipeConfig(
        task="text-classification",
        data=DataSection(train=str(FIXTURE), eval=str(FIXTURE)),
        teacher=TeacherSection(model="unused"),
        student=None,
    )
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(ConfigError, match="output .*afile is a file: give a folder for the recipe's stages"):
        run_recipe(recipe, tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "mine"


def test_the_eta_weighs_the_stages_by_the_rows_of_the_data_once_loaded(monkeypatch):
    import qla_sdk.recipe.run as run_module
    from qla_sdk.recipe.config import DataSection, DistillSection, RecipeConfig, TeacherSection

    recipe = RecipeConfig(
        task="question-answering",
        data=DataSection(train=str(FIXTURE), eval=str(FIXTURE)),
        teacher=TeacherSection(model="unused", finetune=TrainConfig(max_steps=1000, batch_size=32)),
        student=None,
        distill=DistillSection(train=TrainConfig(epochs=2)),
    )
    guessed, squad = run_module.stage_weights(recipe), run_module.stage_weights(recipe, rows=(88_000, 10_500))
    assert guessed["teacher"] == 8.0 and squad["teacher"] == pytest.approx(1000 * 32 / 88_000)  # not 22x too long
    assert guessed["distill"] == squad["distill"] == pytest.approx(0.9 * 2)  # epochs whatever the rows

    weights = {"one": 1.0, "two": 1.0}
    now = iter([0.0, 0.0, 10.0])
    monkeypatch.setattr(run_module.time, "perf_counter", lambda: next(now))
    lines = []
    progress = run_module.OverallProgress(lambda: dict(weights), lines.append)

    def loads_the_data(folder, earlier, resume):
        weights["two"] = 9.0  # the row counts are known now
        return {}

    progress.wrap("one", loads_the_data)(Path("one"), {}, False)
    assert lines == [
        "stage 1/2 one: running (elapsed 0m00s, ETA after this stage)",
        "stage 1/2 one: finished (elapsed 0m10s, ETA 1m30s)",
    ]
