"""Training killed (SIGKILL, a real separate process) at a seeded random point, in the middle of a step or in the
middle of writing a checkpoint or the final model, resumes to exactly the weights and log of an uninterrupted run.

The run is test_resume.py's (2 epochs, 12 steps, checkpoints every 4 steps, dropout on, reshuffled epochs). The kill
points are drawn from ``random.Random(SEED)``: change SEED to explore others.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_resume import _without_speed, run, single_thread

from qla_sdk.train.checkpointing import list_checkpoints

REPO = Path(__file__).resolve().parents[2]
SEED = 1  # kills at loss call 5 (before the first checkpoint) and in the 5th file write (3rd checkpoint)
LOSS_CALLS, FILE_WRITES = 24, 7  # batches in the run; weights + optimizer of 3 checkpoints, then the final weights
_rng = random.Random(SEED)
KILLS = [f"loss:{_rng.randint(1, LOSS_CALLS)}", f"write:{_rng.randint(1, FILE_WRITES)}"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    model, result = single_thread(lambda: run(folder))
    return folder, model, result


@pytest.mark.parametrize("kill", KILLS)
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, reference, kill):
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(Path(__file__).parent)]), "OMP_NUM_THREADS": "1"}
    child = subprocess.run(
        [sys.executable, __file__, str(killed), kill], env=env, cwd=REPO, capture_output=True, timeout=180
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert not (killed / "final" / "model.safetensors").exists() or kill.startswith("write")

    model, resumed = single_thread(lambda: run(killed, resume=True))
    folder, reference_model, uninterrupted = reference
    assert resumed.steps == uninterrupted.steps == 12
    for (name, got), want in zip(model.state_dict().items(), reference_model.state_dict().values(), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0, msg=name)
    saved, expected = (
        load_file(str(killed / "final" / "model.safetensors")),
        load_file(str(folder / "final" / "model.safetensors")),
    )
    assert saved.keys() == expected.keys() and all(torch.allclose(saved[k], expected[k], atol=1e-6) for k in saved)
    assert _without_speed(resumed.log_history) == _without_speed(uninterrupted.log_history)
    assert [p.name for p in list_checkpoints(killed)] == [p.name for p in list_checkpoints(folder)]
    leftovers = [p.name for p in killed.rglob("*") if p.name.startswith(".") and p.name.endswith(".partial")]
    assert len(leftovers) <= 1  # at most the folder the kill interrupted; it is never read


def _kill_at(mode: str) -> int | None:
    """Install the kill for ``write:N`` (half of the N-th file written, then SIGKILL); return N of ``loss:N``."""
    kind, n = mode.split(":")
    if kind == "loss":
        return int(n)
    import qla_sdk.modeling.checkpoint as final_writer
    import qla_sdk.train.checkpointing as checkpoint_writer

    writes = [0]

    def killing(write):
        def wrapped(obj, path, *args, **kwargs):
            writes[0] += 1
            if writes[0] == int(n):
                write(obj, path, *args, **kwargs)
                Path(path).write_bytes(Path(path).read_bytes()[: Path(path).stat().st_size // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            return write(obj, path, *args, **kwargs)

        return wrapped

    checkpoint_writer.save_file = killing(checkpoint_writer.save_file)
    checkpoint_writer.torch.save = killing(checkpoint_writer.torch.save)
    final_writer.save_file = killing(final_writer.save_file)
    return None


if __name__ == "__main__":  # the process that gets killed
    torch.set_num_threads(1)
    run(Path(sys.argv[1]), kill_at_call=_kill_at(sys.argv[2]))
    sys.exit("the run finished; it should have been killed")
