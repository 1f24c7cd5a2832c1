"""Can the SQuAD model drop more tokens after its first layers if length-adaptive training only ever drops there?

    python benchmarks/squad_length_drop.py --work /path/outside/the/repo [--full-length-layers 2]
        [--length-drop-prob 0.6] [--epochs 2] [--bf16]

The SQuAD recipe's length-adaptive MiniLM-L6 keeps layers 1-2 whole (a drop there costs F1 fast) and so misses the 5x
bar against FP32 eager (squad_recipe.md): 5x needs layers 3-6 to keep about a tenth of their tokens
(squad_speed_ceiling.md), far below what its LengthDrop (p 0.2 at every layer: layer 3 keeps at least 51%) ever
trained. This trains the same model with ``lat.length_adaptive.full_length_layers`` (every sub-model keeps the first
layers whole, LengthDrop starts after them) and a larger ``length_drop_prob``, so that the sampled sub-models are
the ones the search can choose, down to the shortest later layers; then scores fixed length configs on every
evaluation question (FP32, the SDK's encoder), against the fine-tuned teacher the 1-point bar counts from.

Steps, each resumable (re-run the same command; finished work is skipped):
1. split: as ``squad_recipe.py`` (the official dev file by article, 80/20, seed 0), in ``--work``.
2. teacher: the recipe's teacher stage in ``<work>/run`` (shared with ``squad_recipe.py`` and ``squad_student.py``
   when their options match; ``--bf16`` trains with bf16 autocast, which makes it another stage).
3. lat: the recipe's lat stage with the options given, in ``<work>/lat_<options>`` (its ``teacher`` folder links
   to step 2's), stopped after that stage.
4. scores: F1/EM of each ``--configs`` length config, kept in ``<work>/lat_<options>/scores.json``.

Each run adds (or replaces) its row set under its options in the results file, so runs with other options (in
later sessions) land beside it. Writes benchmarks/results/squad_length_drop.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from squad_recipe import (  # beside this file: on python's path
    BARS,
    RECIPE,
    RESULTS,
    SQUAD,
    input_lengths,
    share_teacher,
    split,
    teacher_folder,
)

from qla_bench.script import run_script

if TYPE_CHECKING:
    from qla_sdk.recipe.config import RecipeConfig

MAX_F1_DROP = BARS["max_f1_drop"]  # the bar for the final artifact against the fine-tuned teacher
# The AMX run's searched gene (squad_recipe.md), then genes that keep layers 1-2 whole and drop more after them
# (squad_speed_ceiling.md times them), then the same with a drop in layer 2.
CONFIGS = (
    "1,1,0.83,0.66,0.27,0.13",
    "1,1,0.7,0.5,0.25,0.12",
    "1,1,0.5,0.25,0.13,0.06",
    "1,1,0.4,0.16,0.1,0.1",
    "1,1,0.1,0.1,0.1,0.1",
    "1,0.6,0.4,0.25,0.15,0.1",
)


def tag(full_length_layers: int, length_drop_prob: float, epochs: int, bf16: bool) -> str:
    """The name of a run's option set: its lat folder and its key in the results."""
    return f"whole{full_length_layers}_p{length_drop_prob:g}_e{epochs}" + ("_bf16" if bf16 else "")


def overrides(full_length_layers: int, length_drop_prob: float, epochs: int, bf16: bool) -> list[str]:
    """The run's options as ``--set`` overrides of the SQuAD recipe."""
    sets = [
        f"lat.length_adaptive.full_length_layers={full_length_layers}",
        f"lat.length_adaptive.length_drop_prob={length_drop_prob}",
        f"lat.train.epochs={epochs}",
    ]
    return sets + (["teacher.finetune.bf16=true", "lat.train.bf16=true"] if bf16 else [])


def parse_configs(text: str, num_layers: int = 6) -> list[str]:
    """The ``;``-separated length configs, each checked (ratios in (0, 1], one per layer, non-increasing) before any
    training: a bad one would otherwise fail hours later."""
    from qla_sdk.errors import ConfigError
    from qla_sdk.modeling import LengthConfig

    configs = [c.strip() for c in text.split(";") if c.strip()]
    for config in configs:
        parsed = LengthConfig.parse(config)  # refuses out-of-range ratios, mixed kinds and growing lengths
        if parsed is None or not parsed.is_ratio or len(parsed.lengths) != num_layers:
            raise ConfigError(f"--configs: {config!r} must be {num_layers} ratios in (0, 1], e.g. {CONFIGS[0]}")
    return configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="folder for the split and stage outputs (outside the repo)")
    parser.add_argument("--squad", default=str(SQUAD), help="SQuAD v1.1 file to split by article")
    parser.add_argument("--full-length-layers", type=int, default=2, help="first layers every sub-model keeps whole")
    parser.add_argument("--length-drop-prob", type=float, default=0.6, help="LengthDrop's p after those layers")
    parser.add_argument("--epochs", type=int, default=2, help="length-adaptive training epochs (default 2)")
    parser.add_argument("--bf16", action="store_true", help="train the teacher and lat stages with bf16 autocast")
    parser.add_argument("--configs", default=";".join(CONFIGS), help="length configs to score, ';' between them")
    parser.add_argument("--out", default=str(RESULTS / "squad_length_drop.json"))
    args = parser.parse_args(argv)

    from qla_sdk.recipe.config import load_recipe
    from qla_sdk.recipe.run import run_recipe

    configs = parse_configs(args.configs)
    options = (args.full_length_layers, args.length_drop_prob, args.epochs, args.bf16)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    train, evaluation = split(Path(args.squad), work)
    recipe = load_recipe(RECIPE, [f"data.train={train}", f"data.eval={evaluation}", *overrides(*options)])
    teacher_dir = teacher_folder(work, args.bf16)
    teacher = run_recipe(recipe, teacher_dir, until="teacher")["teacher"]
    lat_dir = work / f"lat_{tag(*options)}"
    share_teacher(lat_dir, teacher_dir)
    lat = run_recipe(recipe, lat_dir, until="lat")["lat"]
    scores = score_configs(lat["model"], evaluation, recipe, configs, lat_dir / "scores.json")
    write_report(args.out, tag(*options), teacher, lat, scores, recipe, lat_dir, evaluation)
    return 0


def score_configs(model_dir: str, evaluation: Path, recipe: RecipeConfig, configs: list[str], path: Path) -> dict:
    """F1/EM of the model at full length and at each config on every evaluation question; kept in ``path`` so a
    re-run scores only what is missing."""
    from qla_sdk.data import load_squad, load_tokenizer, qa_features
    from qla_sdk.io import write_json_atomic
    from qla_sdk.modeling import LengthConfig, from_pretrained
    from qla_sdk.train import evaluate

    scores = json.loads(path.read_text()) if path.exists() else {}
    missing = [c for c in ["full", *configs] if c not in scores]
    if not missing:
        return scores
    model = from_pretrained(model_dir, task="question-answering").eval()
    examples = load_squad(evaluation)
    d = recipe.data
    features = qa_features(examples, load_tokenizer(model_dir), d.max_length, d.doc_stride)
    for config in missing:
        length_config = None if config == "full" else LengthConfig.parse(config)
        scores[config] = evaluate(model, features, "question-answering", examples, 32, length_config)
        write_json_atomic(path, scores)  # a killed run keeps the configs scored so far
        print(f"{config}: F1 {scores[config]['f1']:.2f}", file=sys.stderr)
    return scores


def write_report(
    out: str,
    name: str,
    teacher: dict,
    lat: dict,
    scores: dict,
    recipe: RecipeConfig,
    lat_dir: Path,
    evaluation: Path,
) -> None:
    """Add this option set's run (replacing one of the same name) to the results, beside earlier runs, each with the
    machine, date and command that made it."""

    from qla_bench.report import markdown_table, runs_with, write_results
    from qla_sdk.data import load_squad, load_tokenizer
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.modeling.macs import count_macs

    model_config = from_pretrained(lat["model"], task="question-answering").config
    tokens = input_lengths(load_tokenizer(lat["model"]), load_squad(evaluation))
    mean = round(sum(tokens) / len(tokens))
    full_macs = count_macs(model_config, mean)
    teacher_f1 = round(teacher["dev"]["f1"], 2)
    rows = []
    for config, score in scores.items():  # "full", then the configs in the order they were scored
        share = 1.0 if config == "full" else count_macs(model_config, mean, config) / full_macs
        f1 = round(score["f1"], 2)
        rows.append(
            {
                "lengths": config,
                "macs_ratio": round(share, 4),
                "f1": f1,
                "exact_match": round(score["exact_match"], 2),
                "f1_drop_from_teacher": round(teacher_f1 - f1, 2),
                "within_bar": teacher_f1 - f1 <= MAX_F1_DROP,
            }
        )
    lat_marker = json.loads((lat_dir / "lat" / "done.json").read_text())
    teacher_marker = json.loads((lat_dir / "teacher" / "done.json").read_text())
    section = recipe.lat
    run = {
        "length_adaptive": section.length_adaptive.to_dict(),
        "lat_epochs": section.train.epochs,
        "bf16": section.train.bf16,
        "teacher_f1": teacher_f1,
        "teacher_em": round(teacher["dev"]["exact_match"], 2),
        "smallest_length_config": str(section.length_adaptive.smallest_length_config(model_config.num_hidden_layers)),
        "smallest_f1": round(lat["smallest_dev"]["f1"], 2) if lat.get("smallest_dev") else None,  # the lat stage's
        "rows": rows,
        "lat_steps": lat["steps"],
        "teacher_seconds": round(teacher_marker.get("seconds", 0.0), 1),
        "lat_seconds": round(lat_marker.get("seconds", 0.0), 1),
        "lat_attempts": lat_marker.get("attempts", 1),
        "mean_input_tokens": mean,
    }
    runs = runs_with(out, name, run)
    figures = {
        "split": "official SQuAD v1.1 dev file split by article (80/20, seed 0): no train file exists offline",
        "model": "all-MiniLM-L6-v2 fine-tuned by the recipe's teacher stage, then its lat stage with the run's options",
        "max_f1_drop": MAX_F1_DROP,
        "runs": runs,
    }
    parts = [
        f"Length-adaptive training that keeps the first layers whole, on SQuAD ({figures['split']}). F1/EM on every "
        "evaluation question, FP32; MACs at the mean input length; a length is the share of a window's real tokens "
        "a layer keeps (layers 1-based). The bar: within 1.0 F1 of the fine-tuned teacher. Each run names the machine "
        "it trained on (the header names the latest)."
    ]
    for key, r in runs.items():
        la = r["length_adaptive"]
        whole = la.get("full_length_layers", 0)
        where = "at every layer"
        if whole:
            where = f"after the first {whole} layers" if whole > 1 else "after the first layer"
        parts.append(
            f"**{key}** ({r['machine']['cpu_model']}, {r['date']}: `{r['command']}`): LengthDrop p "
            f"{la['length_drop_prob']} {where}, LayerDrop "
            f"{la['layer_drop_prob']}, {r['lat_epochs']} epoch{'s' if r['lat_epochs'] != 1 else ''}"
            f"{', bf16' if r['bf16'] else ''} ({r['lat_steps']} "
            f"steps, {r['lat_seconds']:.0f} s{over_runs(r.get('lat_attempts', 1))}); "
            f"smallest sub-model {r['smallest_length_config']} (F1 "
            f"{r.get('smallest_f1')}, trained at every step); teacher F1 {r['teacher_f1']}."
        )
        columns = ("lengths", "macs_ratio", "f1", "exact_match", "f1_drop_from_teacher", "within_bar")
        shown = {"macs_ratio": lambda v: f"{v:.0%}", "within_bar": lambda v: "yes" if v else "no"}
        table = [[shown.get(c, lambda v: v)(x[c]) for c in columns] for x in r["rows"]]
        parts.append(markdown_table(["lengths", "MACs", "F1", "EM", "F1 below teacher", "within 1.0 F1"], table))
    write_results(out, figures, "\n\n".join(parts), command=[sys.executable, *sys.argv])


def over_runs(attempts: int) -> str:
    """The words to add to a stage's seconds where it was interrupted and resumed: they add up every run's."""
    return f" over {attempts} runs" if attempts > 1 else ""


if __name__ == "__main__":
    sys.exit(run_script(main))
