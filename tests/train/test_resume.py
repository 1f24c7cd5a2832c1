"""A run killed with SIGKILL mid-way resumes to the same weights as a run that was never interrupted.

The killed run is a real separate process (this file run as a script), killed by the kernel in the middle of an
accumulation step after it wrote a checkpoint; dropout is on and batches are reshuffled every epoch, so the test
fails unless the resumed run restores weights, AdamW moments, schedule, data position and randomness exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from qla_sdk.data import ClassificationFeatures, batches
from qla_sdk.modeling import TaskModel, init_weights
from qla_sdk.train import TrainConfig, task_loss_fn, train
from qla_sdk.train.checkpointing import list_checkpoints

REPO = Path(__file__).resolve().parents[2]
# 12 batches of 8 per epoch, 2 batches per step: 6 steps per epoch, 12 in all; checkpoints at 4 and 8.
OPTIONS = dict(
    epochs=2, batch_size=8, grad_accum=2, lr=3e-3, checkpoint_every=4, keep_checkpoints=3, log_every=3, bf16=False
)
KILL_AT_CALL = 19  # the loss of the 19th batch: epoch 1, inside step 10, after the checkpoint of step 8


def tiny_model() -> TaskModel:
    from transformers import BertConfig

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
        hidden_dropout_prob=0.2,
        attention_probs_dropout_prob=0.1,
    )
    return init_weights(TaskModel(config, "text-classification"))


def features() -> ClassificationFeatures:
    g = torch.Generator().manual_seed(1)
    ids = [
        [2, *torch.randint(3, 60, (int(n),), generator=g).tolist()] for n in torch.randint(3, 12, (96,), generator=g)
    ]
    return ClassificationFeatures(ids, None, [int(row[1] > 30) for row in ids])


def run(output_dir: Path, resume: bool = False, kill_at_call: int | None = None):
    data, loss_fn, calls = features(), task_loss_fn("text-classification"), [0]

    def killing_loss_fn(model, batch):
        calls[0] += 1
        if calls[0] == kill_at_call:
            os.kill(os.getpid(), signal.SIGKILL)
        return loss_fn(model, batch)

    model = tiny_model()
    config = TrainConfig(output_dir, resume=resume, progress=False, **OPTIONS)
    epochs = lambda epoch: batches(data, config.batch_size, shuffle=True, seed=config.seed, epoch=epoch)  # noqa: E731
    return model, train(model, epochs, killing_loss_fn, config)


def single_thread(fn):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same kernels in this process and the killed one
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def test_sigkilled_run_resumes_to_the_uninterrupted_weights(tmp_path):
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    child = subprocess.run(
        [sys.executable, __file__, str(killed), str(KILL_AT_CALL)], env=env, cwd=REPO, capture_output=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert [p.name for p in list_checkpoints(killed)] == ["step-00000004", "step-00000008"]
    assert not (killed / "final").exists()

    model, resumed = single_thread(lambda: run(killed, resume=True))
    reference, uninterrupted = single_thread(lambda: run(tmp_path / "reference"))

    assert resumed.resumed_from.name == "step-00000008" and resumed.steps == uninterrupted.steps == 12
    for (name, got), want in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0, msg=name)
    saved = load_file(str(killed / "final" / "model.safetensors"))
    expected = load_file(str(tmp_path / "reference" / "final" / "model.safetensors"))
    assert saved.keys() == expected.keys() and all(torch.allclose(saved[k], expected[k], atol=1e-6) for k in saved)
    assert _without_speed(resumed.log_history) == _without_speed(uninterrupted.log_history)
    assert abs(resumed.metrics["train_loss"] - uninterrupted.metrics["train_loss"]) < 1e-6


def _without_speed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "samples_per_s"} for r in records]


def test_half_written_checkpoint_is_ignored(tmp_path):
    single_thread(lambda: run(tmp_path / "run", kill_at_call=None))
    root = tmp_path / "run" / "checkpoints"
    (root / ".step-00000099.abc.partial").mkdir()  # what a kill during atomic_dir leaves behind
    (root / "step-00000099-notes").mkdir()
    assert [p.name for p in list_checkpoints(tmp_path / "run")][-1] == "step-00000012"


def test_pruning_removes_what_a_killed_write_left(tmp_path):
    from qla_sdk.train.checkpointing import prune_checkpoints

    root = tmp_path / "checkpoints"
    for name in ("step-00000001", "step-00000002", ".step-00000003.abc.partial", "notes"):
        (root / name).mkdir(parents=True)
    prune_checkpoints(tmp_path, keep=1)
    assert sorted(p.name for p in root.iterdir()) == ["notes", "step-00000002"]


if __name__ == "__main__":  # the process that gets killed
    torch.set_num_threads(1)
    run(Path(sys.argv[1]), kill_at_call=int(sys.argv[2]))
    sys.exit("the run finished; it should have been killed")
