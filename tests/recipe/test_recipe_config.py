"""Recipe files: every packaged recipe loads; unknown keys and bad values are named before any work starts."""

from pathlib import Path

import pytest

from qla_sdk.cli import main
from qla_sdk.errors import ConfigError
from qla_sdk.recipe.config import RecipeConfig, load_recipe
from qla_sdk.train.config import TrainConfig

RECIPES = Path(__file__).resolve().parents[2] / "qla_sdk" / "recipes"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "sst2_tiny.tsv"

MINIMAL = f"""
task: text-classification
data: {{train: {FIXTURE}, eval: {FIXTURE}}}
teacher: {{model: pretrained:minilm}}
student: {{init_layers: [0, 2, 4]}}
"""


@pytest.mark.parametrize("name", ["demo", "sst2", "squad", "squad_minilm"])
def test_packaged_recipes_load(name):
    squad = Path(__file__).resolve().parents[1] / "fixtures" / "squad_tiny.json"
    data = [f"data.train={squad}", f"data.eval={squad}"] if name == "squad_minilm" else []
    recipe = load_recipe(RECIPES / f"{name}.yaml", data)
    assert isinstance(recipe, RecipeConfig)
    assert recipe.lat.length_adaptive.length_drop_prob == recipe.search.evolution.length_drop_bound == 0.2


def test_a_classifiers_drop_meant_in_points_is_named_before_any_stage_runs():
    from qla_sdk.errors import ConfigError

    with pytest.raises(ConfigError, match="max_metric_drop 1 on accuracy, a fraction, is 100 points"):
        load_recipe(RECIPES / "demo.yaml", ["search.max_metric_drop=1"])
    with pytest.warns(UserWarning, match="max_metric_drop 0.5 on accuracy, a fraction, is 50 points"):
        load_recipe(RECIPES / "demo.yaml", ["search.max_metric_drop=0.5"])
    assert load_recipe(RECIPES / "demo.yaml", ["search.max_metric_drop=0.005"]).search.max_metric_drop == 0.005


def test_demo_uses_embedded_data_and_model():
    recipe = load_recipe(RECIPES / "demo.yaml")
    assert Path(recipe.data.train).is_file() and Path(recipe.data.train).parent.name == "sst2"
    assert (Path(recipe.teacher.model) / "config.json").is_file()
    assert recipe.student.init_layers == [0, 2, 4, 5]
    # pruning of real tokens: SST-2 sentences are far shorter than max_length, token counts would prune padding
    assert recipe.search.ratio and max(recipe.quantize.seq_lens) == recipe.max_length
    assert len(recipe.quantize.seq_lens) > 1  # a short sentence runs a short graph


def test_the_squad_minilm_recipe_compresses_the_fine_tuned_minilm_itself():
    squad = Path(__file__).resolve().parents[1] / "fixtures" / "squad_tiny.json"
    recipe = load_recipe(RECIPES / "squad_minilm.yaml", [f"data.train={squad}", f"data.eval={squad}"])
    assert recipe.student is None and recipe.max_length == 384 and recipe.data.doc_stride == 128
    assert recipe.search.metric == "f1" and recipe.search.ratio and recipe.quantize.backend == "openvino"
    # student: null is a section an override can fill in (benchmarks/squad_student.py does)
    student = load_recipe(
        RECIPES / "squad_minilm.yaml",
        [f"data.train={squad}", f"data.eval={squad}", "student.init_layers=[0, 2, 4, 5]", "distill.train.epochs=2"],
    )
    assert student.student.init_layers == [0, 2, 4, 5] and student.distill.train.epochs == 2


def test_paper_recipe_settings():
    recipe = load_recipe(RECIPES / "squad.yaml")
    lat = recipe.lat.length_adaptive
    assert (lat.num_sandwich, lat.length_drop_prob, lat.layer_drop_prob) == (2, 0.2, 0.2)
    assert recipe.search.evolution.iterations == 30 and recipe.quantize.backend == "inductor"
    assert "MiniLMv2-L6-H384" in recipe.student.checkpoint


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "distill: {minilm: {versoin: v2}}",
            r"recipe.yaml.distill.minilm: unknown key 'versoin'; did you mean 'version'",
        ),
        ("lat: {train: {lr: -1}}", r"recipe.yaml.lat.train: lr=-1.0: must be a finite number > 0"),
        ("lat: {length_adaptive: {length_drop_prob: 1.5}}", r"recipe.yaml.lat.length_adaptive: length_drop_prob=1.5"),
        ("search: {evolution: {iterations: many}}", r"recipe.yaml.search.evolution.iterations: expected an integer"),
        ("search: {max_macs: lots}", r"recipe.yaml.search: budget 'lots' \(MACs\) is not a number"),
        ("quantize: {backend: tensorrt}", r"recipe.yaml.quantize: backend 'tensorrt' is unknown"),
        ("benchmarks: {runs: 3}", r"recipe.yaml: unknown key 'benchmarks'; did you mean 'benchmark'"),
        ("benchmark: {runs: 3, rounds: 5}", r"rounds=5, runs=3: need 1 <= rounds <= runs .* raise runs"),
        ("benchmark: {rounds: 0}", r"rounds=0, runs=50: need 1 <= rounds <= runs"),
        ("benchmark: {round_warmup: -1}", r"round_warmup=-1: need runs >= 1 and warmup, round_warmup >= 0"),
        ("search: {metric: exact_match}", r"search.metric='exact_match' is not a text-classification metric"),
    ],
)
def test_bad_recipe_names_the_key(tmp_path, extra, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(MINIMAL + extra + "\n")
    with pytest.raises(ConfigError, match=message):
        load_recipe(path)


def test_student_needs_exactly_one_start(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        MINIMAL.replace("{init_layers: [0, 2, 4]}", "{init_layers: [0], shape: 'layers=1,hidden=32,heads=2'}")
    )
    with pytest.raises(ConfigError, match="recipe.yaml.student: give exactly one of init_layers, shape, checkpoint"):
        load_recipe(path)


def test_missing_data_file_is_named(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(MINIMAL.replace(f"train: {FIXTURE}", "train: nowhere/train.tsv"))
    with pytest.raises(ConfigError, match="data.train: 'nowhere/train.tsv' does not exist"):
        load_recipe(path)


@pytest.mark.parametrize("key", ["data.train", "data.eval", "teacher.tokenizer"])
@pytest.mark.parametrize("value", ['""', "'  '"])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, key, value):
    path = tmp_path / "recipe.yaml"
    path.write_text(MINIMAL)
    with pytest.raises(ConfigError, match=f"{key}: empty path"):
        load_recipe(path, [f"{key}={value}"])


def test_overrides(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(MINIMAL)
    recipe = load_recipe(path, ["lat.train.epochs=1", "search.max_macs=55%"])
    assert recipe.lat.train.epochs == 1 and recipe.search.max_macs == "55%"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["lat.train.epoch=1"], r"--set 'lat.train.epoch=1': lat.train: unknown key 'epoch'; did you mean 'epochs'"),
        (["data.bogus=1"], r"--set 'data.bogus=1': data: unknown key 'bogus'\. Known keys: train,"),
        (["lat.train.epochs=1", "lat.train.epochs=abc"], r"--set 'lat.train.epochs=abc': .* expected an integer"),
        (['student={shape: "layers=2", bogus: 1}'], r"--set .*student=.*: student: unknown key 'bogus'"),
        (["student.bogus=1"], r"--set 'student.bogus=1': student: unknown key 'bogus'"),
        (["tsk=x"], r"--set 'tsk=x': unknown key 'tsk'; did you mean 'task'"),
        (["quantize.seq_lens=[a, 64]"], r"--set 'quantize.seq_lens=\[a, 64\]': quantize.seq_lens\[0\]: expected an"),
        (["data.max_length=4"], r"--set 'data.max_length=4': data: max_length=4: must be >= 8"),
        (["quantize.backend=foo"], r"--set 'quantize.backend=foo': quantize: backend 'foo' is unknown"),
    ],
)
def test_a_bad_key_or_value_from_set_is_blamed_on_it_not_on_the_file(tmp_path, overrides, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(MINIMAL)
    with pytest.raises(ConfigError, match=message):
        load_recipe(path, overrides)


@pytest.mark.parametrize(
    "section, overrides, message",
    [
        ("lat: {train: {epoch: 1}}", ["lat.train.lr=0.1"], r"^recipe.yaml.lat.train: unknown key 'epoch'"),
        ("quantize: {backend: foo}", ["quantize.seq_lens=[128]"], r"^recipe.yaml.quantize: backend 'foo' is unknown"),
    ],
)
def test_a_bad_key_in_the_file_is_blamed_on_the_file_beside_a_set(tmp_path, section, overrides, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(MINIMAL + section + "\n")
    with pytest.raises(ConfigError, match=message):
        load_recipe(path, overrides)


def test_bad_recipe_fails_before_any_work(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(MINIMAL + "lat: {train: {batch_size: 0}}\n")
    out = tmp_path / "out"
    assert main(["run", "--config", str(path), "--output", str(out)]) == 2
    assert "recipe.yaml.lat.train: batch_size=0: must be an integer >= 1" in capsys.readouterr().err
    assert not out.exists()


def _write(folder: Path, text: str) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(text)
    return path


def test_train_sections_are_train_configs_whose_folder_the_recipe_sets(tmp_path):
    recipe = load_recipe(_write(tmp_path, MINIMAL + "lat: {train: {epochs: 1, lr: 1.0e-4, eval_batch_size: 8}}\n"))
    assert isinstance(recipe.lat.train, TrainConfig) and recipe.lat.train.eval_batch_size == 8
    config = recipe.lat.train.for_run("somewhere", resume=True)
    assert config.resume and config.lr == 1e-4 and str(config.output_dir) == "somewhere"
    with pytest.raises(ConfigError, match="lat.train: output_dir and resume are set by the recipe"):
        load_recipe(_write(tmp_path, MINIMAL + "lat: {train: {output_dir: /tmp/x}}\n"))


def test_every_train_option_but_the_per_stage_ones_is_a_key_of_every_train_section(tmp_path):
    """The recipe's train sections are TrainConfig itself: each field (written once, also a training flag) is a key
    of ``teacher.finetune``, ``distill.train`` and ``lat.train``; only the folder and resumption belong to the run."""
    import dataclasses

    import yaml

    path = _write(tmp_path, MINIMAL)
    per_stage = {"output_dir", "resume"}
    values = {"epochs": 2, "max_steps": 5, "bf16": False, "progress": False, "eval_batch_size": 8, "seed": 3}
    for f in dataclasses.fields(TrainConfig):
        if f.name in per_stage:
            continue
        value = values.get(f.name, f.default)
        for section in ("teacher.finetune", "distill.train", "lat.train"):
            recipe = load_recipe(path, [f"{section}.{f.name}={yaml.safe_dump(value).strip()}"])
            owner, key = section.split(".")
            assert getattr(getattr(getattr(recipe, owner), key), f.name) == value, (section, f.name)


@pytest.mark.parametrize(("run_progress", "section_progress"), [(True, True), (True, False), (False, True)])
def test_a_stage_shows_a_bar_unless_the_run_or_its_train_section_turns_it_off(tmp_path, run_progress, section_progress):
    from qla_sdk.recipe.stages import RecipeStages

    recipe = load_recipe(_write(tmp_path, MINIMAL + f"lat: {{train: {{progress: {str(section_progress).lower()}}}}}\n"))
    stages = RecipeStages(recipe, tmp_path / "out", progress=run_progress)
    config = stages._train_config(recipe.lat.train, tmp_path / "out" / "lat", resume=True)
    assert config.progress is (run_progress and section_progress)
    assert config.resume and config.output_dir == tmp_path / "out" / "lat"


def test_data_values_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="--set 'data.doc_stride=0': data: doc_stride=0: must be >= 1"):
        load_recipe(_write(tmp_path, MINIMAL), ["data.doc_stride=0"])
    # QA windows as the search and the artifact cut them: at most half the length, refused before any training
    qa = ["task=question-answering", "data.max_length=200"]
    with pytest.raises(ConfigError, match=r"data.doc_stride=128 is more than half of data.max_length \(200\)"):
        load_recipe(_write(tmp_path, MINIMAL), qa)
    assert load_recipe(_write(tmp_path, MINIMAL), [*qa, "data.doc_stride=100"]).data.doc_stride == 100


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["student.init_layers=[0, 6]"], r"init_layers=\[0, 6\]: the teacher .* has layers 0\.\.5"),
        (["data.max_length=600"], r"data.max_length=600: the teacher .* takes at most 512 tokens"),
        (
            ["student.init_layers=[0, 2, 4]", "lat.length_adaptive.full_length_layers=3"],
            r"lat.length_adaptive.full_length_layers=3: the model the lat stage trains has 3 layers.*at most 2",
        ),
        (
            ["student=null", "search.evolution.full_length_layers=6"],
            r"search.evolution.full_length_layers=6: the model the lat stage trains has 6 layers.*at most 5",
        ),
        (
            ["student={shape: 'layers=2,hidden=64,heads=2'}", "lat.length_adaptive.full_length_layers=2"],
            r"full_length_layers=2: the model the lat stage trains has 2 layers",
        ),
    ],
)
def test_what_the_teacher_decides_is_checked_before_it_trains(tmp_path, overrides, message):
    """The shipped MiniLM teacher: 6 layers, 512 positions."""
    with pytest.raises(ConfigError, match=message):
        load_recipe(_write(tmp_path, MINIMAL), overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        # the shipped MiniLM teacher is 384 wide with 12 heads; a student of its own layers shares both
        (["distill.minilm.relation_heads=7"], r"7 relation heads do not divide the teacher's hidden size 384"),
        (
            ["student={shape: 'layers=2,hidden=256,heads=4'}", "distill.minilm.relation_heads=12"],
            r"12 relation heads do not divide the student's hidden size 256: .* common divisor of 384 and 256",
        ),
        (
            ["student={shape: 'layers=2,hidden=320,heads=5'}"],
            r"5 relation heads \(by default the student's heads\) do not divide the teacher's hidden size 384",
        ),
        (
            ["student={shape: 'layers=2,hidden=256,heads=4'}", "distill.minilm.version=v1"],
            r"MiniLM v1 compares attention maps head by head: the teacher has 12 heads, the student 4",
        ),
        (["distill.minilm.teacher_layer=9"], r"teacher_layer=9 .* but the teacher has 6 layers"),
        (["student.assistant=true"], r"student.assistant: .* which for student.init_layers is the teacher itself"),
        (
            ["student={shape: 'layers=4,hidden=192,heads=4', assistant: true}"],
            r"student.assistant: a teacher assistant helps only .* teacher 6 x 384, student layers=4",
        ),
        (["student=null", "distill.augment.copies=2"], r"distill.augment.copies=2 but student: null"),
        (["distill.augment.copies=-1"], r"--set 'distill.augment.copies=-1': .*copies=-1: give a whole number"),
        (
            ["distill.augment.copies=1", "distill.minilm.prediction_weight=0"],
            r"prediction_weight is 0: give it a weight \(--prediction-weight, distill.minilm.prediction_weight\)",
        ),
        (
            ["quantize.seq_lens=[64, 128, 256]"],
            r"quantize.seq_lens \[64, 128, 256\] go past data.max_length \(128\).*or set quantize.seq_lens to null",
        ),
        (
            ["quantize.backend=openvino", "quantize.seq_lens=[32, 64]"],
            r"quantize.seq_lens \[32, 64\] stop short of data.max_length \(128\): .* add 128.*classification's default",
        ),
    ],
)
def test_what_a_later_stage_needs_is_checked_before_the_first_trains(tmp_path, overrides, message):
    """The distill stage's relation heads and the quantize stage's graph lengths: each refused at its stage only,
    after the teacher's fine-tuning, until the recipe checked them."""
    with pytest.raises(ConfigError, match=message):
        load_recipe(_write(tmp_path, MINIMAL), overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        ["distill.minilm.relation_heads=48"],  # MiniLMv2's own count divides 384
        ["student={shape: 'layers=3,hidden=192,heads=4', assistant: true}", "distill.minilm.relation_heads=12"],
        ["distill.minilm.version=v1", "distill.minilm.relation_heads=7"],  # v1 has no relation heads
        ["student={shape: 'layers=2,hidden=256,heads=4'}", "distill.minilm.relation_heads=64"],
        ["quantize.backend=fp32", "quantize.seq_lens=[64]"],  # fp32 builds no graphs: only lengths past max_length fail
        ["quantize.backend=openvino", "quantize.seq_lens=[64, 128]"],
        ["distill.augment={copies: 2, replace_prob: 0.3}"],  # the shipped MiniLM's tokenizer is WordPiece
    ],
)
def test_later_stage_settings_that_fit_load(tmp_path, overrides):
    assert isinstance(load_recipe(_write(tmp_path, MINIMAL), overrides), RecipeConfig)


def test_augmentation_with_a_tokenizer_that_is_not_word_piece_is_refused_at_load(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bpe = tmp_path / "bpe"
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE(vocab={"a": 0}, merges=[]))).save_pretrained(bpe)
    recipe = _write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match="replaces whole WordPiece words, and this tokenizer is BPE"):
        load_recipe(recipe, ["distill.augment.copies=1", f"teacher.tokenizer={bpe}"])
    assert load_recipe(recipe, [f"teacher.tokenizer={bpe}"]).distill.augment.copies == 0  # off: any tokenizer
