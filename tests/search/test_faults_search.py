"""A search killed at a seeded random point resumes to exactly the uninterrupted result.

A SIGKILL runs no handler: what survives is the state file as of its last atomic save. The first test replays that
for random save points (every save recorded, one restored, the search resumed); the second kills a real separate
process in the middle of scoring. Kill points come from ``random.Random(SEED)``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import qla_sdk.search.evolution as evolution
from qla_sdk.search.evolution import EvolutionConfig, evolve

REPO = Path(__file__).resolve().parents[2]
SEED = 7
LAYERS, SEQ = 4, 64
CONFIG = EvolutionConfig(iterations=5, mutations=6, crossovers=6, num_constant_rate=4, seed=11)


def fitness(gene):
    return round(sum(min(v, 40) * (LAYERS - i) for i, v in enumerate(gene)) / 1000, 6)


def cost(gene):
    return float(sum(gene) + gene[0])


@pytest.fixture(scope="module")
def uninterrupted():
    return evolve(fitness, cost, LAYERS, SEQ, CONFIG, progress=False).to_dict()


def test_resume_from_random_save_points(tmp_path, monkeypatch, uninterrupted):
    saves: list[bytes] = []
    state = tmp_path / "state.json"

    def recording(path, data):
        evolution_write(path, data)
        saves.append(Path(path).read_bytes())

    evolution_write = evolution.write_json_atomic
    monkeypatch.setattr(evolution, "SAVE_INTERVAL_S", 0.0)  # a save after every score: every point is a save point
    monkeypatch.setattr(evolution, "write_json_atomic", recording)
    assert evolve(fitness, cost, LAYERS, SEQ, CONFIG, state_path=state, progress=False).to_dict() == uninterrupted
    monkeypatch.undo()
    assert len(saves) > 20
    for point in sorted(random.Random(SEED).sample(range(len(saves)), 4)):
        state.write_bytes(saves[point])  # what a kill right after this save leaves on disk
        resumed = evolve(fitness, cost, LAYERS, SEQ, CONFIG, state_path=state, progress=False)
        assert resumed.to_dict() == uninterrupted, f"resumed from save {point} of {len(saves)}"


def test_sigkilled_search_resumes(tmp_path, uninterrupted):
    state = tmp_path / "state.json"
    scored = len(evolve(fitness, cost, LAYERS, SEQ, CONFIG, progress=False).candidates)
    kill_at = random.Random(SEED).randint(2, scored - 1)
    child = subprocess.run(
        [sys.executable, __file__, str(state), str(kill_at)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert json.loads(state.read_text())["genes"]  # saved before the kill
    assert evolve(fitness, cost, LAYERS, SEQ, CONFIG, state_path=state, progress=False).to_dict() == uninterrupted


if __name__ == "__main__":  # the process that gets killed
    calls = [0]

    def killing_fitness(gene):
        calls[0] += 1
        if calls[0] == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
        return fitness(gene)

    evolution.SAVE_INTERVAL_S = 0.0  # save often, as a long search does between slow scores
    evolve(killing_fitness, cost, LAYERS, SEQ, CONFIG, state_path=Path(sys.argv[1]), progress=False)
    sys.exit("the search finished; it should have been killed")
