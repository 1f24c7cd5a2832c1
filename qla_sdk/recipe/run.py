"""``run_recipe``: the eight stages in order, resumable, with an overall progress line per stage.

Under ``torchrun``/``accelerate launch`` the training stages run on every process (DDP through the training loop);
search, quantization, export, benchmark and report run on the main process while the others wait.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from qla_sdk.recipe.config import DistillSection, RecipeConfig
from qla_sdk.recipe.runner import Stage, check_output_dir, run_stages
from qla_sdk.recipe.stages import ARTIFACTS, STAGES, TRAINING_STAGES, RecipeStages


def stage_options(recipe: RecipeConfig) -> dict[str, object]:
    """What each stage's marker records: a change re-runs that stage and every later one (save the training
    sections' display options, ``runner.DISPLAY_ONLY``)."""
    return {
        "teacher": {"task": recipe.task, "data": recipe.data, "teacher": recipe.teacher},
        "distill": {"student": recipe.student, "distill": recipe.distill},
        "lat": recipe.lat,
        "search": recipe.search,
        "quantize": recipe.quantize,
        "export": None,
        "benchmark": recipe.benchmark,
        "report": recipe.name,
    }


def stage_inputs(recipe: RecipeConfig) -> dict[str, tuple[str, ...]]:
    """The user's files each stage reads first (data, the teacher and its tokenizer, a student checkpoint): edited
    in place, they run that stage again (and so the later ones, which read them after it)."""
    student = recipe.student.checkpoint if recipe.student is not None else None
    return {
        "teacher": tuple(
            p for p in (recipe.data.train, recipe.data.eval, recipe.teacher.model, recipe.teacher.tokenizer) if p
        ),
        "distill": (student,) if student else (),
    }


def stage_weights(recipe: RecipeConfig, rows: tuple[int, int] | None = None) -> dict[str, float]:
    """Rough relative cost of each stage in teacher training epochs, for the ETA. ``rows``: the training and dev
    rows (features) when the data is loaded; until then an SST-2-sized guess, which only matters where a stage
    counts ``max_steps`` instead of epochs, or for the search against training. Measured on this SDK: a student
    step with the teacher's forward costs ~0.9 of a teacher step, a LAT step ~4 student steps; the search scores
    each gene once on (a subset of) the dev set."""
    train_rows, dev_rows = rows or (4000, 872)

    def epochs(section) -> float:
        if section is None:
            return 0.05
        if section.max_steps:
            return section.max_steps * section.batch_size * section.grad_accum / max(train_rows, 1)
        return float(section.epochs)

    s = recipe.search
    genes = (
        s.evolution.num_constant_rate + 2 + s.evolution.iterations * (s.evolution.mutations + s.evolution.crossovers)
    )
    scored = min(s.subset, dev_rows) if s.subset else dev_rows
    return {
        "teacher": epochs(recipe.teacher.finetune),
        "distill": 0.9 * epochs(recipe.distill.train) * _augmented(recipe.distill),
        "lat": (2.0 + (0.3 if recipe.lat.use_teacher else 0.0)) * epochs(recipe.lat.train),
        "search": genes * scored / max(train_rows, 1) * 0.1,
        "quantize": 0.4 if recipe.quantize.is_int8 else 0.05,
        "export": 0.02,
        "benchmark": 0.15,
        "report": 0.01,
    }


def _augmented(section: DistillSection) -> int:
    """How many more steps an epoch of augmented distillation takes: 1 + copies (a run of max_steps takes none)."""
    return 1 if section.train.max_steps else 1 + section.augment.copies


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s"


class OverallProgress:
    """``stage 3/8 lat: ... (elapsed 4m02s, ETA 8m10s)``; the ETA scales this session's time per unit of weight to
    the stages left, so it appears once a stage has run. ``weights`` is asked at each line: they change once a
    stage has loaded the data (its row counts)."""

    def __init__(self, weights: Callable[[], dict[str, float]], write: Callable[[str], None]) -> None:
        self.weights, self.write = weights, write
        self.start = time.perf_counter()
        self.done: list[str] = []  # the stages that ran in this session

    def line(self, name: str, what: str) -> str:
        elapsed = time.perf_counter() - self.start
        weights = self.weights()
        names = list(weights)
        index = names.index(name) + 1
        left = sum(weights[n] for n in names[index - 1 :])
        if what.startswith("finished"):
            left -= weights[name]
        done = sum(weights[n] for n in self.done)
        eta = f"ETA {_clock(elapsed / done * left)}" if done > 0 else "ETA after this stage"
        return f"stage {index}/{len(names)} {name}: {what} (elapsed {_clock(elapsed)}, {eta})"

    def wrap(self, name: str, run):
        def wrapped(folder: Path, earlier: dict, resume: bool) -> dict:
            self.write(self.line(name, "resuming" if resume else "running"))
            result = run(folder, earlier, resume)
            self.done.append(name)
            self.write(self.line(name, "finished"))
            return result

        return wrapped


def run_recipe(
    recipe: RecipeConfig,
    out_dir: str | Path,
    from_stage: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    until: str | None = None,
) -> dict[str, dict]:
    """Run (or resume) the recipe into ``out_dir``, to the end or to the stage ``until`` (included); returns the
    outputs of the stages it reached (``["report"]`` names the report files)."""
    check_output_dir(out_dir)  # before the mkdir below, which would say only "File exists"
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    is_main = state.is_main_process
    write = log or (lambda line: print(line, file=sys.stderr, flush=True))
    stages = RecipeStages(recipe, out_dir, progress=progress and is_main, log=write if is_main else None)
    overall = OverallProgress(lambda: stage_weights(recipe, stages.rows), write if is_main else (lambda line: None))
    options, inputs = stage_options(recipe), stage_inputs(recipe)
    plan = [
        Stage(
            name,
            overall.wrap(name, getattr(stages, name)),
            options[name],
            all_processes=name in TRAINING_STAGES,
            artifacts=ARTIFACTS.get(name, ()),
            inputs=inputs.get(name, ()),
        )
        for name in STAGES
    ]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return run_stages(
        plan, out_dir, from_stage, log=write, is_main=is_main, barrier=state.wait_for_everyone, until=until
    )
