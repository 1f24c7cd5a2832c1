"""Does distilling on augmented copies of a small training set (TinyBERT-style, ``distill.augment``) give a student
closer to its teacher than distilling on the set alone, for the same number of steps?

    python benchmarks/distill_augment.py --work /path/outside/the/repo [--layers 0,2,4] [--runs 0:4,0:12,2:4]
        [--seeds 42]

On the demo recipe's data (``qla_sdk/recipes/demo.yaml``: 4,000 SST-2 training sentences, the 872-sentence dev set),
the recipe's teacher stage fine-tunes the pretrained MiniLM-L6 once per seed (``<work>/teacher_s<seed>``); each run
then distils a student made of ``--layers`` of that teacher with the recipe's distill stage, stopped after it
(``qla run --until distill``), in ``<work>/<run name>`` whose ``teacher`` folder links to the seed's. A run is
``copies:epochs``: augmented copies of each batch per epoch, and epochs; ``0:12`` beside ``2:4`` is the control with
the same number of steps on the plain data. Each run, scored on the whole dev set (FP32), adds (or replaces) its row
in the results. Resumable: re-run the same command; finished stages are skipped.
Writes benchmarks/results/distill_augment.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from squad_recipe import share_teacher  # beside this file: python puts its folder on the path

from qla_bench.script import run_script

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "qla_sdk" / "recipes" / "demo.yaml"
RESULTS = REPO / "benchmarks" / "results"


def parse_runs(text: str) -> list[tuple[int, int]]:
    """``"0:4,2:4"`` -> [(copies, epochs), ...]."""
    runs = []
    for item in text.split(","):
        copies, _, epochs = item.partition(":")
        if not (copies.isdigit() and epochs.isdigit() and int(epochs) > 0):
            raise SystemExit(f"--runs {text!r}: give copies:epochs pairs, e.g. 0:4,2:4")
        runs.append((int(copies), int(epochs)))
    return runs


def run_name(layers: list[int], copies: int, epochs: int, seed: int) -> str:
    return f"layers{'-'.join(map(str, layers))}_copies{copies}_e{epochs}_s{seed}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="folder for the stage outputs (outside the repo)")
    parser.add_argument("--layers", default="0,2,4", help="0-based teacher layers the student starts from")
    parser.add_argument("--runs", default="0:4,0:12,2:4", help="copies:epochs of each run (default %(default)s)")
    parser.add_argument("--seeds", default="42", help="seeds of the teacher and the distillation (default %(default)s)")
    parser.add_argument("--out", default=str(RESULTS / "distill_augment.json"))
    args = parser.parse_args(argv)

    from qla_sdk.recipe.config import load_recipe
    from qla_sdk.recipe.run import run_recipe

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    layers = [int(x) for x in args.layers.split(",")]
    for seed in [int(s) for s in args.seeds.split(",")]:
        seeds = [f"teacher.finetune.seed={seed}", f"distill.train.seed={seed}"]
        teacher_dir = work / f"teacher_s{seed}"
        teacher = run_recipe(load_recipe(RECIPE, seeds), teacher_dir, until="teacher")["teacher"]
        for copies, epochs in parse_runs(args.runs):
            name = run_name(layers, copies, epochs, seed)
            overrides = [
                *seeds,
                f"student.init_layers={layers}",
                f"distill.train.epochs={epochs}",
                f"distill.augment.copies={copies}",
            ]
            recipe = load_recipe(RECIPE, overrides)
            share_teacher(work / name, teacher_dir)
            student = run_recipe(recipe, work / name, until="distill")["distill"]
            write_report(args.out, name, teacher, student, recipe, work / name, seed)
    return 0


def write_report(out: str, name: str, teacher: dict, student: dict, recipe, folder: Path, seed: int) -> None:
    from qla_bench.report import markdown_table, runs_with, write_results

    teacher_acc, student_acc = 100 * teacher["dev"]["accuracy"], 100 * student["dev"]["accuracy"]
    marker = json.loads((folder / "distill" / "done.json").read_text())
    augment = recipe.distill.augment
    run = {
        "seed": seed,
        "student_layers": recipe.student.init_layers,
        "copies": augment.copies,
        "replace_prob": augment.replace_prob,
        "neighbors": augment.neighbors,
        "epochs": recipe.distill.train.epochs,
        "distill_steps": student["steps"],
        "teacher_accuracy": round(teacher_acc, 2),
        "student_accuracy": round(student_acc, 2),
        "points_lost": round(teacher_acc - student_acc, 2),
        "distill_seconds": round(marker.get("seconds", 0.0), 1),
    }
    runs = runs_with(out, name, run)
    figures = {
        "data": "the demo recipe's: 4,000 SST-2 training sentences, the 872-sentence dev set (accuracy, FP32)",
        "teacher": "all-MiniLM-L6-v2 fine-tuned by the demo recipe's teacher stage (6 x 384)",
        "distill": "the demo recipe's distill stage: MiniLM v2 relations (12 heads), prediction-layer distillation "
        "and labels (labels on the original batches only), lr 1e-4, batch 32, FP32",
        "runs": runs,
    }
    rows = [
        [
            key,
            r["seed"],
            len(r["student_layers"]),
            r["copies"],
            r["epochs"],
            r["distill_steps"],
            r["teacher_accuracy"],
            r["student_accuracy"],
            r["points_lost"],
            f"{r['distill_seconds']:.0f}",
        ]
        for key, r in sorted(runs.items())
    ]
    commands = [f"- **{key}**: {r['machine']['cpu_model']}, {r['date']}: `{r['command']}`" for key, r in runs.items()]
    headers = ["run", "seed", "layers", "copies", "epochs", "steps", "teacher %", "student %", "points lost"]
    markdown = "\n\n".join(
        [
            f"Distillation on augmented data ({figures['data']}): a student of the fine-tuned teacher's embeddings, "
            "some of its layers and its head, distilled by the demo recipe's distill stage with `copies` augmented "
            "copies of each batch per epoch (words replaced by their neighbours in the teacher's embedding space, "
            "`qla_sdk.train.augment`). A run with copies 0 and as many steps is the control.",
            markdown_table([*headers, "distill s"], rows),
            "\n".join(commands),
        ]
    )
    write_results(out, figures, markdown, command=[sys.executable, *sys.argv])


if __name__ == "__main__":
    sys.exit(run_script(main))
