"""The training loop on tiny models: it learns, accumulates, schedules, checkpoints, bf16; tasks and `qla finetune`."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from transformers import BertConfig

from qla_sdk.data import ClassificationFeatures, batches, load_tokenizer, qa_features
from qla_sdk.data.squad import QAExample
from qla_sdk.errors import CheckpointError, ConfigError, QlaError, TrainingDivergedError
from qla_sdk.modeling import TaskModel, from_pretrained, init_weights
from qla_sdk.train import (
    LossTerms,
    TrainConfig,
    cpu_supports_bf16,
    evaluate,
    predict,
    task_loss,
    task_loss_fn,
    train,
)
from qla_sdk.train.checkpointing import list_checkpoints
from qla_sdk.train.length_drop import LatConfig

TINY = dict(
    vocab_size=120,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
)
CLS = "text-classification"
QA = "question-answering"


def tiny_model(task: str = CLS, dropout: float = 0.0, seed: int = 0) -> TaskModel:
    torch.manual_seed(seed)
    config = BertConfig(
        **TINY, num_labels=2, pad_token_id=0, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout
    )
    return init_weights(TaskModel(config, task))


def token_task(n: int = 128, seed: int = 0) -> ClassificationFeatures:
    """Label 1 iff the second token is 3 (else 4); lengths vary so batches need padding."""
    g = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for i in range(n):
        row = torch.randint(5, TINY["vocab_size"], (int(torch.randint(3, 15, (1,), generator=g)),), generator=g)
        label = i % 2
        ids.append([2, 3 if label else 4, *row.tolist()])
        labels.append(label)
    return ClassificationFeatures(ids, None, labels)


def epochs_of(features, batch_size: int, shuffle: bool = True):
    return lambda epoch: batches(features, batch_size, shuffle=shuffle, seed=0, epoch=epoch)


def run(tmp_path, model=None, features=None, batch_size: int = 16, **options):
    options = {"lr": 5e-3, "bf16": False, "progress": False, "checkpoint_every": 0, **options}
    model = model or tiny_model()
    features = features or token_task()
    config = TrainConfig(tmp_path / "run", **options)
    result = train(model, epochs_of(features, batch_size), task_loss_fn(CLS), config)
    return model, result


def test_learns_and_writes_a_loadable_model(tmp_path):
    features = token_task()
    model, result = run(tmp_path, features=features, epochs=5, log_every=4, lr=1e-2)
    losses = [r["loss"] for r in result.log_history]
    assert result.steps == 5 * 8
    assert losses[-1] < 0.5 * losses[0]
    assert evaluate(model, features, CLS)["accuracy"] >= 0.95
    reloaded = from_pretrained(result.final_dir)
    ids = torch.tensor([features.input_ids[0]])
    assert torch.equal(reloaded.eval()(ids, torch.ones_like(ids)), model.eval()(ids, torch.ones_like(ids)))
    assert result.samples_per_s > 0 and result.metrics["train_loss"] > 0


def test_eval_fn_metrics_are_returned(tmp_path):
    features = token_task(32)
    config = TrainConfig(tmp_path / "run", max_steps=2, progress=False, bf16=False, checkpoint_every=0)
    result = train(
        tiny_model(), epochs_of(features, 8), task_loss_fn(CLS), config, eval_fn=lambda m: evaluate(m, features, CLS)
    )
    assert set(result.metrics) == {"train_loss", "accuracy", "f1"}


def test_bf16_autocast_trains_fp32_weights(tmp_path):
    model, result = run(tmp_path, max_steps=4, bf16=True)
    assert result.bf16 and result.steps == 4
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.log_history)


def test_gradient_accumulation_equals_one_bigger_batch(tmp_path):
    features = token_task(64)
    config = dict(lr=1e-3, bf16=False, progress=False, checkpoint_every=0, epochs=2)
    small = tiny_model()
    train(
        small,
        epochs_of(features, 8, shuffle=False),
        task_loss_fn(CLS),
        TrainConfig(tmp_path / "a", grad_accum=2, **config),
    )
    big = tiny_model()
    train(big, epochs_of(features, 16, shuffle=False), task_loss_fn(CLS), TrainConfig(tmp_path / "b", **config))
    for (name, a), b in zip(small.state_dict().items(), big.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def halves_loss_fn(poison: bool = False):
    """The task loss as ``LossTerms``: one term per half of the batch, weighted by its share of the rows."""
    task = task_loss_fn(CLS)

    def loss_fn(model, batch):
        rows = len(batch["input_ids"])
        cut = rows // 2

        def half(part: slice) -> torch.Tensor:
            share = len(range(rows)[part]) / rows
            value = task(model, {k: v[part] for k, v in batch.items()}) * share
            return value * float("nan") if poison and part.start else value

        return LossTerms([lambda: half(slice(0, cut)), lambda: half(slice(cut, rows))], {"halves": 2.0})

    return loss_fn


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_loss_terms_back_propagated_in_turn_train_like_their_sum(tmp_path, grad_accum):
    features = token_task(64)
    config = dict(lr=1e-3, bf16=False, progress=False, checkpoint_every=0, epochs=2, grad_accum=grad_accum)
    in_turn, summed = tiny_model(), tiny_model()
    result = train(in_turn, epochs_of(features, 16), halves_loss_fn(), TrainConfig(tmp_path / "a", **config))
    reference = train(summed, epochs_of(features, 16), task_loss_fn(CLS), TrainConfig(tmp_path / "b", **config))
    for (name, a), b in zip(in_turn.state_dict().items(), summed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    assert result.metrics["train_loss"] == pytest.approx(reference.metrics["train_loss"], rel=1e-5)
    assert all(record["halves"] == 2.0 for record in result.log_history)


def test_a_non_finite_loss_term_stops_training(tmp_path):
    model, config = tiny_model(), TrainConfig(tmp_path / "r", bf16=False, progress=False)
    with pytest.raises(TrainingDivergedError, match="loss is nan at step 0"):  # a QlaError: the CLI names it
        train(model, epochs_of(token_task(32), 16), halves_loss_fn(poison=True), config)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(ConfigError, match="LossTerms has no terms"):
        LossTerms([])


def test_partial_accumulation_at_epoch_end_still_steps(tmp_path):
    # 5 batches per epoch, accumulating 2: steps after batches 2, 4 and 5.
    _, result = run(tmp_path, features=token_task(40), batch_size=8, grad_accum=2, epochs=2, log_every=1)
    assert result.steps == 6
    assert [r["epoch"] for r in result.log_history] == [0, 0, 0, 1, 1, 1]


def test_warmup_then_linear_decay_to_zero(tmp_path):
    _, result = run(tmp_path, max_steps=10, warmup_ratio=0.2, log_every=1, lr=1e-3)
    lrs = [r["lr"] for r in result.log_history]
    assert lrs[0] < lrs[1] == pytest.approx(1e-3)  # two warm-up steps, then the peak
    assert all(a > b for a, b in itertools.pairwise(lrs[1:]))
    assert lrs[-1] == 0.0


def test_checkpoints_rotate_and_hold_no_pickle(tmp_path):
    _, result = run(tmp_path, max_steps=7, checkpoint_every=2, keep_checkpoints=2)
    kept = list_checkpoints(tmp_path / "run")
    assert [p.name for p in kept] == ["step-00000006", "step-00000007"]  # the last step is checkpointed too
    assert sorted(f.name for f in kept[-1].iterdir()) == ["model.safetensors", "optimizer.pt", "state.json"]
    optimizer = torch.load(kept[-1] / "optimizer.pt", weights_only=True)
    assert optimizer["param_groups"][0]["lr"] == pytest.approx(result.log_history[-1]["lr"])
    state = json.loads((kept[-1] / "state.json").read_text())
    assert {"step", "epoch", "batch_in_epoch", "scheduler", "config"} <= set(state) and state["step"] == 7


def test_existing_run_needs_resume_and_the_same_options(tmp_path):
    _, first = run(tmp_path, max_steps=4, checkpoint_every=2)
    with pytest.raises(ConfigError, match="resume=True"):
        run(tmp_path, max_steps=4, checkpoint_every=2)
    with pytest.raises(CheckpointError, match=r"lr: 0\.005 -> 0\.001"):
        run(tmp_path, max_steps=4, checkpoint_every=2, resume=True, lr=1e-3)
    _, again = run(tmp_path, max_steps=4, checkpoint_every=2, resume=True)  # finished: nothing left to train
    assert again.steps == 4 and again.resumed_from.name == "step-00000004"
    assert again.log_history == first.log_history


def test_a_resumed_run_with_other_clipping_is_refused(tmp_path):
    run(tmp_path, max_steps=4, checkpoint_every=2)
    with pytest.raises(CheckpointError, match=r"max_grad_norm: 1\.0 -> 0\.0"):
        run(tmp_path, max_steps=4, checkpoint_every=2, resume=True, max_grad_norm=0.0)


def test_a_checkpoint_written_before_an_option_was_recorded_still_resumes(tmp_path):
    """Checkpoints of earlier versions lack max_grad_norm (and LAT's temperature): they resume on the options given
    now, not refused as changed."""
    run(tmp_path, max_steps=4, checkpoint_every=2)
    for state_file in (tmp_path / "run" / "checkpoints").glob("*/state.json"):
        state = json.loads(state_file.read_text())
        del state["config"]["max_grad_norm"]
        state_file.write_text(json.dumps(state))
    _, again = run(tmp_path, max_steps=4, checkpoint_every=2, resume=True)
    assert again.resumed_from.name == "step-00000004"


def test_a_checkpoint_of_another_kind_of_training_is_not_resumed(tmp_path):
    """Only options recorded since a checkpoint was written may be missing from it: a fine-tuning checkpoint (no
    length_adaptive record) resumed as length-adaptive training is refused."""
    from qla_sdk.train.loop import _check_fingerprint

    finetuned = {"lr": 1e-4, "context": {"data": "d", "teacher": None, "max_length": 32}}
    lat = {
        "lr": 1e-4,
        "max_grad_norm": 1.0,
        "context": {**finetuned["context"], "length_adaptive": LatConfig().to_dict()},
    }
    with pytest.raises(CheckpointError, match=r"length_adaptive\.length_drop_prob: None -> 0\.2"):
        _check_fingerprint(tmp_path, finetuned, lat)
    earlier_lat = {**finetuned, "context": {**finetuned["context"], "length_adaptive": {"length_drop_prob": 0.2,
                   "layer_drop_prob": 0.2, "num_sandwich": 2}}}  # fmt: skip
    _check_fingerprint(tmp_path, earlier_lat, lat)  # only temperature, teacher_weight and max_grad_norm are new
    # full_length_layers came later still: a checkpoint without it resumes under 0 (what it trained), not under 2
    whole = {**lat, "context": {**lat["context"], "length_adaptive": LatConfig(full_length_layers=2).to_dict()}}
    with pytest.raises(CheckpointError, match=r"length_adaptive\.full_length_layers: None -> 2"):
        _check_fingerprint(tmp_path, earlier_lat, whole)


def test_a_resumed_distillation_from_another_teacher_is_refused(tmp_path):
    from qla_sdk.train.distill import train_on_features

    def go(teacher, resume=False):
        config = TrainConfig(
            tmp_path / "run", lr=5e-3, bf16=False, progress=False, max_steps=4, checkpoint_every=2, resume=resume
        )
        return train_on_features(tiny_model(), task_loss_fn(CLS), token_task(), config, teacher=teacher)

    go(tiny_model(seed=1))
    go(tiny_model(seed=1), resume=True)  # the same teacher's weights: resumes
    with pytest.raises(CheckpointError, match=r"context\.teacher: '[0-9a-f]{16}' -> '[0-9a-f]{16}'"):
        go(tiny_model(seed=2), resume=True)


@pytest.mark.parametrize("existing", ["file", "final of the user"])
def test_an_output_it_cannot_write_is_refused_before_training(tmp_path, existing):
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        return task_loss_fn(CLS)(model, batch)

    if existing == "file":
        (tmp_path / "run").write_text("mine")
    else:
        (tmp_path / "run" / "final").mkdir(parents=True)
        (tmp_path / "run" / "final" / "notes.md").write_text("mine")
    config = TrainConfig(tmp_path / "run", lr=5e-3, bf16=False, progress=False, max_steps=2, checkpoint_every=0)
    with pytest.raises(QlaError, match="is a file|is not a checkpoint"):
        train(tiny_model(), epochs_of(token_task(), 16), loss_fn, config)
    assert calls == []


def test_rows_longer_than_the_model_takes_are_refused_before_training(tmp_path):
    from qla_sdk.train.distill import train_on_features

    features = token_task()
    features.input_ids[5] = features.input_ids[5] * 40  # past the tiny model's positions
    config = TrainConfig(tmp_path / "run", bf16=False, progress=False, max_steps=2, checkpoint_every=0)
    with pytest.raises(ConfigError, match=r"rows of up to \d+ tokens, and the model takes at most \d+"):
        train_on_features(tiny_model(), task_loss_fn(CLS), features, config)
    assert not (tmp_path / "run").exists()


def test_a_max_length_past_the_models_positions_is_recorded_as_what_the_model_takes(tmp_path):
    """Short rows fit any length, but qla export refuses a recorded max_length past the position embeddings."""
    from qla_sdk.modeling.checkpoint import read_qla_metadata
    from qla_sdk.train.distill import train_on_features

    model = tiny_model()
    config = TrainConfig(tmp_path / "run", bf16=False, progress=False, max_steps=2, checkpoint_every=0)
    with pytest.warns(UserWarning, match=r"max_length 1000 is past the \d+ tokens the model takes"):
        train_on_features(model, task_loss_fn(CLS), token_task(), config, None, None, {"max_length": 1000})
    limit = model.config.max_position_embeddings
    assert read_qla_metadata(tmp_path / "run" / "final")["max_length"] == limit


@pytest.mark.parametrize(
    "change, message",
    [
        ({"features": token_task(seed=1)}, r"context\.data: '[0-9a-f]{16}' -> '[0-9a-f]{16}'"),
        ({"extra": {"length_adaptive": {"length_drop_prob": 0.6}}}, r"length_drop_prob: 0\.2 -> 0\.6"),
        ({"extra": {"max_length": 16}}, r"context\.max_length: 32 -> 16"),
        ({"extra": {"length_adaptive": {**LatConfig().to_dict(), "temperature": 4.0}}}, r"temperature: 1\.0 -> 4\.0"),
        (
            {"extra": {"length_adaptive": {**LatConfig().to_dict(), "teacher_weight": 1.0}}},
            r"teacher_weight: 0\.5 -> 1",
        ),
    ],
)
def test_a_resumed_run_on_other_data_or_loss_options_is_refused(tmp_path, change, message):
    """train_on_features records the data's digest and the loss's options (the run's metadata) with each
    checkpoint: resuming with others would train a mix of two runs without a word."""
    from qla_sdk.train.distill import train_on_features

    def go(features=None, extra=None, resume=False):
        config = TrainConfig(
            tmp_path / "run", lr=5e-3, bf16=False, progress=False, max_steps=4, checkpoint_every=2, resume=resume
        )
        extra = extra or {"length_adaptive": LatConfig().to_dict(), "max_length": 32}
        return train_on_features(tiny_model(), task_loss_fn(CLS), features or token_task(), config, None, None, extra)

    go()
    go(resume=True)  # the same data and options: resumes (here: nothing left to train)
    change = {
        "features": change.get("features"),
        "extra": {"length_adaptive": LatConfig().to_dict(), "max_length": 32, **change.get("extra", {})},
    }
    with pytest.raises(CheckpointError, match=message):
        go(**change, resume=True)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"epochs": 0}, "epochs=0"),
        ({"batch_size": -1}, "batch_size=-1"),
        ({"grad_accum": 1.5}, "grad_accum=1.5"),
        ({"lr": 0.0}, "lr=0.0"),
        ({"lr": float("nan")}, "lr=nan"),
        ({"warmup_ratio": 1.0}, "warmup_ratio=1.0"),
        ({"weight_decay": -0.1}, "weight_decay=-0.1"),
        ({"max_steps": 0}, "max_steps=0"),
        ({"checkpoint_every": -5}, "checkpoint_every=-5"),
        ({"bf16": "yes"}, "bf16='yes'"),
        ({"max_grad_norm": -1.0}, "max_grad_norm=-1.0"),
    ],
)
def test_config_rejects_bad_values(tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        TrainConfig(tmp_path, **bad)


@pytest.mark.parametrize(
    "flags, expected",
    [("fpu sse avx512f avx512_bf16", True), ("fpu amx_tile amx_bf16", True), ("fpu sse avx2 avx512f", False)],
)
def test_bf16_is_detected_from_cpu_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Xeon\nflags\t\t: {flags}\n")
    assert cpu_supports_bf16(cpuinfo) is expected
    assert cpu_supports_bf16(tmp_path / "missing") is False


# ---------------------------------------------------------------------------------------------------- tasks

WORDS = "the a of in is was who what when where river city king built born year large old new first".split()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *(c for c in "bcdefghijklmnopqrstuvwxyz")])
    )
    return load_tokenizer(vocab)


def qa_examples() -> list[QAExample]:
    contexts = ["the old city was built in the first year", "a river is large and the king was born in a city"]
    questions = ["what was built", "who was born", "where is the river", "when was the city built"]
    out = []
    for i, question in enumerate(questions):
        context = contexts[i % 2]
        word = context.split()[2 + i]
        out.append(QAExample(f"q{i}", "t", question, context, [{"text": word, "answer_start": context.index(word)}]))
    return out


def test_task_losses():
    logits = torch.tensor([[4.0, -4.0], [-4.0, 4.0]])
    assert task_loss(logits, {"labels": torch.tensor([0, 1])}, CLS) < 0.01
    assert task_loss(logits, {"labels": torch.tensor([1, 0])}, CLS) > 7
    start, end = torch.full((1, 5), -9.0), torch.full((1, 5), -9.0)
    start[0, 1], end[0, 3] = 9.0, 9.0
    good = {"start_positions": torch.tensor([1]), "end_positions": torch.tensor([3])}
    assert task_loss((start, end), good, QA) < 1e-3
    with pytest.raises(ConfigError, match="training=True"):
        task_loss((start, end), {"labels": torch.tensor([0])}, QA)


@pytest.mark.parametrize("length_config", [None, "0.8,0.5"])
def test_length_sorted_evaluation_matches_row_by_row(tokenizer, length_config):
    examples = qa_examples()
    features = qa_features(examples, tokenizer, max_length=16, doc_stride=4)
    model = tiny_model(QA).eval()
    batched = predict(model, features, batch_size=3, length_config=length_config)
    for i, (start, end) in enumerate(batched):
        ids = torch.tensor([features.input_ids[i]])
        types = torch.tensor([features.token_type_ids[i]])
        with torch.no_grad():
            s, e = model(ids, torch.ones_like(ids), types, length_config=length_config)
        torch.testing.assert_close(torch.from_numpy(start), s[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(torch.from_numpy(end), e[0], atol=1e-5, rtol=1e-4)
    scores = evaluate(model, features, QA, examples=examples, length_config=length_config)
    assert set(scores) == {"exact_match", "f1"} and 0 <= scores["f1"] <= 100


def test_integer_length_config_pads_to_the_longest_row():
    features = token_task(20)
    model = tiny_model().eval()
    longest = max(features.lengths)
    scores = evaluate(model, features, CLS, batch_size=4, length_config=f"{longest},{longest // 2}")
    assert 0 <= scores["accuracy"] <= 1
    with pytest.raises(ConfigError, match="examples"):
        evaluate(model, features, QA)


# ---------------------------------------------------------------------------------------------------- qla finetune


@pytest.fixture
def model_dir(tiny_checkpoint, tmp_path, tokenizer):
    def make(task: str):
        import shutil

        folder, _ = tiny_checkpoint("bert", task)
        target = tmp_path / f"model-{task}"
        if not target.exists():
            shutil.copytree(folder, target)
            tokenizer.save_pretrained(str(target))
        return target

    return make


def finetune_argv(model_dir, data, out, steps: int) -> list[str]:
    argv = ["finetune", "--model", str(model_dir(CLS)), "--task", CLS, "--train", str(data), "--eval", str(data)]
    return [*argv, "--output", str(out), "--max-steps", str(steps), "--batch-size", "4", "--no-progress", "--no-bf16"]


def test_finetune_classification_cli(model_dir, tmp_path, capsys):
    from qla_sdk.cli import main

    rows = [f"{w} {w} a\t{'pos' if i % 2 else 'neg'}" for i, w in enumerate(WORDS)]
    data = tmp_path / "sst.tsv"
    data.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    argv = finetune_argv(model_dir, data, out, steps=3)
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and 0 <= metrics["eval"]["accuracy"] <= 1 and metrics["bf16"] is False
    meta = json.loads((out / "final" / "qla.json").read_text())
    assert meta["labels"] == ["neg", "pos"] and meta["task"] == CLS
    assert load_tokenizer(out / "final").get_vocab() == load_tokenizer(model_dir(CLS)).get_vocab()
    assert "accuracy" in capsys.readouterr().out
    assert main(argv) == 2  # the folder holds a run: --resume continues it, nothing is overwritten
    assert main([*argv, "--resume"]) == 0


def test_finetune_with_a_random_head_is_the_same_run_for_the_same_seed(model_dir, tmp_path):
    """--seed decides the random head as it decides shuffling and dropout: the head of a model without one (here a
    question-answering checkpoint trained for classification) used to come from torch's unseeded generator, so one
    seed gave another model on every run."""
    import shutil

    from qla_sdk.cli import main

    base = tmp_path / "base"  # a checkpoint without a classification head
    shutil.copytree(model_dir(QA), base)
    rows = [f"{w} {w} a\t{'pos' if i % 2 else 'neg'}" for i, w in enumerate(WORDS)]
    data = tmp_path / "sst.tsv"
    data.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")

    def trained(seed: int, name: str) -> dict:
        argv = finetune_argv(model_dir, data, tmp_path / name, steps=2)
        argv[argv.index("--model") + 1] = str(base)
        assert main([*argv, "--seed", str(seed)]) == 0
        return from_pretrained(tmp_path / name / "final", CLS).state_dict()

    first, again, other = trained(1, "a"), trained(1, "b"), trained(2, "c")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["head.out.weight"], other["head.out.weight"])


@pytest.mark.parametrize("given", [False, True])
def test_finetune_records_the_columns_it_read(model_dir, tmp_path, capsys, given):
    """qla eval reads a dev set's columns as the artifact records them: training writes them to qla.json (they
    used to be detected again at eval, and could be others); detection among several text columns is named."""
    from qla_sdk.cli import main

    rows = [f"{w} a\t{w} {w}\t{'pos' if i % 2 else 'neg'}" for i, w in enumerate(WORDS)]
    data = tmp_path / "reviews.tsv"
    data.write_text("title\tcontent\tverdict\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    argv = finetune_argv(model_dir, data, out, steps=1)
    argv += ["--label-column", "verdict", *(["--text-columns", "title"] if given else [])]
    assert main(argv) == 0
    meta = json.loads((out / "final" / "qla.json").read_text())
    assert meta["text_columns"] == (["title"] if given else ["content"]) and meta["label_column"] == "verdict"
    note = "qla finetune: training on text from 'content' (detected by name); 'title' hold(s) text too"
    assert (note in capsys.readouterr().err) is not given


def test_finetune_question_answering_cli(model_dir, tmp_path):
    from qla_sdk.cli import main

    articles = {}
    for ex in qa_examples():
        articles.setdefault(ex.context, []).append({"id": ex.id, "question": ex.question, "answers": ex.answers})
    squad = {
        "version": "1.1",
        "data": [{"title": "t", "paragraphs": [{"context": c, "qas": q} for c, q in articles.items()]}],
    }
    data = tmp_path / "squad.json"
    data.write_text(json.dumps(squad))
    out = tmp_path / "out"
    argv = ["finetune", "--model", str(model_dir(QA)), "--task", QA, "--train", str(data), "--eval", str(data)]
    argv += ["--output", str(out), "--max-steps", "2", "--batch-size", "2", "--max-length", "24"]
    argv += ["--doc-stride", "8", "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["eval"]) == {"exact_match", "f1"} and metrics["max_length"] == 24
    assert from_pretrained(out / "final").task == QA
    assert "text_columns" not in json.loads((out / "final" / "qla.json").read_text())  # classification only


@pytest.mark.parametrize("verb", ["finetune", "distill", "lat_train"])
def test_the_verbs_evaluate_with_the_configs_eval_batch_size(tmp_path, monkeypatch, verb):
    """``eval_batch_size`` has one home, TrainConfig: a verb called without the keyword evaluates with it."""
    import importlib

    from qla_sdk.train.distill import DistillConfig
    from qla_sdk.train.length_drop import LatConfig
    from qla_sdk.train.student import student_from_layers

    module = importlib.import_module("qla_sdk.train." + {"lat_train": "length_drop"}.get(verb, verb))
    seen = []
    monkeypatch.setattr(module, "evaluate", lambda *a, batch_size, **k: seen.append(batch_size) or {"accuracy": 1.0})
    features = token_task(8)
    options = {"max_steps": 1, "batch_size": 4, "bf16": False, "progress": False, "checkpoint_every": 0}
    config = TrainConfig(tmp_path / "run", eval_batch_size=7, **options)
    model = tiny_model()
    if verb == "finetune":
        module.finetune(model, features, features, CLS, config)
    elif verb == "distill":
        module.distill(model, student_from_layers(model, [0]), features, features, CLS, DistillConfig(), config)
    else:
        module.lat_train(model, features, features, CLS, LatConfig(), config)
    assert seen and set(seen) == {7}


@pytest.mark.parametrize(
    "argv",
    [
        ["finetune", "--model", "m", "--task", CLS],
        ["distill", "--teacher", "m", "--init-layers", "0,2"],
        ["lat-train", "--model", "m"],
    ],
)
def test_a_metrics_file_no_run_wrote_is_refused_before_training(tmp_path, capsys, argv):
    from qla_sdk.cli import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("the user's")
    assert main([*argv, "--train", "t.tsv", "--eval", "e.tsv", "--output", str(out)]) == 2
    assert "no earlier run wrote it" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == "the user's"


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["finetune", "--model", "{final}", "--task", CLS], "--model"),
        (["distill", "--teacher", "{final}", "--init-layers", "0"], "--teacher"),
        (["distill", "--teacher", "{other}", "--student", "{final}"], "--student"),
        (["lat-train", "--model", "{final}"], "--model"),
        (["lat-train", "--model", "{other}", "--teacher", "{final}"], "--teacher"),
        (["lat-train", "--model", "{other}", "--tokenizer", "{final}/vocab"], "--tokenizer"),
        (["distill", "--teacher", "{other}", "--student", "{assistant}", "--assistant"], "--student"),
    ],
)
def test_an_input_in_the_final_folder_the_run_replaces_is_refused(tmp_path, capsys, argv, flag):
    """``--output DIR`` replaces ``DIR/final`` with the trained model: an input there (a fine-tuned model trained on
    into its own run folder) would be lost, with its metrics.json."""
    from qla_sdk.cli import main

    out, other = tmp_path / "run", tmp_path / "other"
    final = out / "final"
    (final / "vocab").mkdir(parents=True)
    (out / "assistant" / "final").mkdir(parents=True)  # a teacher assistant's model, which --assistant replaces
    for name in ("config.json", "model.safetensors"):
        (final / name).write_text("the earlier model")
    (out / "metrics.json").write_text("{}")
    other.mkdir()
    argv = [a.format(final=final, other=other, assistant=out / "assistant" / "final") for a in argv]
    assert main([*argv, "--train", "t.tsv", "--eval", "e.tsv", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{flag} " in err and "the input would be lost" in err
    assert (final / "model.safetensors").read_text() == "the earlier model"
