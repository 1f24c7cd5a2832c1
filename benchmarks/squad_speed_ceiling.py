"""How fast a QuaLA SQuAD artifact can get on this CPU, whatever its F1: the speed-up over the MiniLM-L6 FP32 eager of
int8 artifacts at genes from none (int8 alone) through the recipe's searched one to nearly empty later layers, on
real questions, timed as ``squad_recipe.py`` times its systems.

    python benchmarks/squad_speed_ceiling.py --work /path/outside/the/repo [--genes G ...] [--questions 400]

``--genes`` entries are ratio genes (one per layer, or ``none`` for full length) of the whole MiniLM-L6, or
``LAYERS:GENE`` (e.g. ``0-2-4-5:none``, ``0-2-4-5:1,1,0.66,0.27``) for a student made of those of its layers.

Speed does not depend on the weights, so no training runs: the pretrained MiniLM-L6 with a random QA head (seed 0)
stands in for the fine-tuned model, and F1 is not reported (it means nothing here). Each int8 artifact is built as
``recipes/squad_minilm.yaml`` builds it (NNCF, 32-token graphs up to 384, doc stride 128, inference precision auto),
calibrated on 300 windows of the training split, without the accuracy check. Every evaluation question (up to
``--questions``) goes through ``qla_sdk.load(artifact).predict(question=..., context=...)``, one at a time, the
systems interleaved in rotated blocks of 25 (``squad_recipe.time_in_blocks``). Each gene's MACs are the mean over
the questions' first windows at their real lengths (up to 384 tokens), as a share of the full model's.

What it answers: the largest speed-up over FP32 eager that token pruning can give here, for genes that keep the
first layers whole (which SQuAD F1 needs: ``squad_token_ranking.md``), against ``squad_recipe.md``'s 5x bar. A
``LAYERS:GENE`` entry's int8 artifact is of a student made of those layers (as ``student.init_layers`` makes it; the
gene has one ratio per student layer), timed against the same baseline, the whole MiniLM-L6 FP32 eager: what a
shallower student (``squad_student.py``) would buy in speed, with or without token pruning.
Writes benchmarks/results/squad_speed_ceiling.json and .md. Run nothing else heavy meanwhile: it is timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from squad_recipe import BARS, RESULTS, SQUAD, input_lengths, split, time_in_blocks  # beside this file: on the path

from qla_bench.script import run_script

SEARCHED_GENE = "1,1,0.83,0.66,0.27,0.13"  # squad_recipe.md's searched gene (AMX Xeon, 15a2590)
GENES = ("none", SEARCHED_GENE, "1,1,1,1,0.1,0.1", "1,1,0.1,0.1,0.1,0.1", "0.5,0.3,0.1,0.1,0.1,0.1")
SEQ_LENS = tuple(range(32, 385, 32))


def parse_system(entry: str) -> tuple[list[int] | None, str]:
    """``GENE`` or ``LAYERS:GENE`` -> (the student's MiniLM-L6 layers or None for all six, the gene), checked."""
    from qla_sdk.modeling import LengthConfig

    layers_text, _, gene = entry.rpartition(":")
    try:
        layers = [int(x) for x in layers_text.split("-")] if layers_text else None
    except ValueError:
        raise SystemExit(f"--genes {entry!r}: LAYERS is dash-separated layer indices, e.g. 0-2-4-5:none") from None
    depth = len(layers) if layers else 6
    if layers and (sorted(set(layers)) != layers or not 0 <= layers[0] <= layers[-1] < 6):
        raise SystemExit(f"--genes {entry!r}: LAYERS must be increasing MiniLM-L6 layers in 0..5, e.g. 0-2-4-5")
    if gene != "none":
        LengthConfig.parse(gene).check(depth, 384)  # a bad gene is named before minutes of builds
    return layers, gene


def artifact_name(entry: str) -> str:
    """The folder of an entry's int8 artifact."""
    layers, gene = parse_system(entry)
    student = f"layers{'-'.join(map(str, layers))}_" if layers else ""
    return f"int8_{student}{gene.replace(',', '_')}"


def build(work: Path, train: Path, genes: list[str]) -> tuple[Path, dict[str, Path]]:
    """The FP32 eager artifact (the whole model, full length) and an int8 artifact per ``--genes`` entry, under
    ``work`` (kept: a rerun reuses them)."""
    from qla_sdk.data import load_tokenizer
    from qla_sdk.deploy import export_model
    from qla_sdk.deploy.evaluation import task_rows
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.pretrained import minilm_path
    from qla_sdk.quantize import QuantConfig
    from qla_sdk.train.student import student_from_layers

    tokenizer = load_tokenizer(minilm_path())
    model = from_pretrained(minilm_path(), task="question-answering", seed=0).eval()
    shape = {"max_length": 384, "doc_stride": 128}
    fp32 = work / "fp32"
    if not fp32.exists():
        export_model(model, fp32, tokenizer, config=QuantConfig(backend="fp32"), length_config=None, **shape)
    rows: list[dict] = []
    config = QuantConfig(backend="openvino", seq_lens=SEQ_LENS, inference_precision="auto", calibration_samples=300)
    artifacts = {}
    for entry in genes:
        layers, gene = parse_system(entry)
        folder = work / artifact_name(entry)
        if not folder.exists():
            print(f"building {folder.name} ...", file=sys.stderr, flush=True)
            compressed = student_from_layers(model, layers).eval() if layers else model
            rows = rows or task_rows("question-answering", str(train), "validation", tokenizer, 384, 128, 300)[0]
            lc = None if gene == "none" else gene
            export_model(compressed, folder, tokenizer, config=config, calibration=rows, length_config=lc, **shape)
        artifacts[entry] = folder
    return fp32, artifacts


def macs_share(entry: str, lengths: list[int]) -> float:
    """The MACs of an entry's model over the questions' first windows (``lengths``: their real token counts), as a
    share of the whole model's at full length."""
    import copy

    from qla_sdk.modeling import LengthConfig, count_macs, load_config
    from qla_sdk.pretrained import minilm_path

    layers, gene = parse_system(entry)
    config = load_config(minilm_path())
    compressed = copy.deepcopy(config)
    compressed.num_hidden_layers = len(layers) if layers else config.num_hidden_layers
    lc = None if gene == "none" else LengthConfig.parse(gene)
    full = sum(count_macs(config, n, None, "question-answering") for n in lengths)
    return sum(count_macs(compressed, n, lc, "question-answering") for n in lengths) / full


def time_systems(work: Path, squad: Path, genes: list[str], questions: int) -> dict:
    """One timing of every system, in this process: p50 / p90 ms by system ("fp32_eager" and each gene), and the
    mean input tokens of the questions."""
    import qla_sdk
    from qla_sdk.data import load_squad, load_tokenizer
    from qla_sdk.pretrained import minilm_path
    from qla_sdk.timing import LatencyStats

    train, evaluation = split(squad, work)  # made by the main process: read back here
    fp32_artifact, artifacts = build(work, train, genes)
    examples = load_squad(evaluation)[:questions]
    predictors = {"fp32_eager": qla_sdk.load(fp32_artifact, warmup=True)}
    predictors |= {gene: qla_sdk.load(folder, warmup=True) for gene, folder in artifacts.items()}
    systems = {
        name: (lambda q, c, p=p: p.predict(question=q, context=c, align_to_words=False)["answer"])
        for name, p in predictors.items()
    }
    times, _ = time_in_blocks(systems, examples)
    stats = {name: LatencyStats.from_times(t) for name, t in times.items()}
    lengths = input_lengths(load_tokenizer(minilm_path()), examples)
    return {
        "p50_ms": {name: s.p50_ms for name, s in stats.items()},
        "p90_ms": {name: s.p90_ms for name, s in stats.items()},
        "lengths": lengths,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="folder outside the repository for the split and artifacts")
    parser.add_argument("--squad", default=str(SQUAD), help="SQuAD v1.1 file to split by article (80/20, seed 0)")
    parser.add_argument(
        "--genes",
        nargs="+",
        default=list(GENES),
        help="ratio genes or none (full length); LAYERS:GENE for a student",
    )
    parser.add_argument("--questions", type=int, default=2275, help="evaluation questions timed (default: all)")
    parser.add_argument("--timings", type=int, default=3, help="timings, each in a fresh process (default 3)")
    parser.add_argument("--out", default=str(RESULTS / "squad_speed_ceiling.json"))
    parser.add_argument("--one-timing", help=argparse.SUPPRESS)  # a timing process: where it writes its figures
    args = parser.parse_args(argv)
    if args.questions < 25:
        parser.error(f"--questions {args.questions}: time at least one block of 25")
    if args.timings < 1:
        parser.error(f"--timings {args.timings}: must be >= 1")
    for entry in args.genes:
        parse_system(entry)  # a bad entry is named before minutes of builds

    from qla_bench.report import markdown_table, write_results
    from qla_sdk.io import write_json_atomic

    work = Path(args.work)
    if args.one_timing:
        write_json_atomic(Path(args.one_timing), time_systems(work, Path(args.squad), args.genes, args.questions))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    train, _ = split(Path(args.squad), work)
    build(work, train, args.genes)
    # One process's timing can be off for the whole process (on some VMs a process's threads all run slower):
    # each timing runs in a fresh process and the medians over processes are reported.
    runs = []
    for t in range(args.timings):
        out = work / f"timing{t}.json"
        command = [sys.executable, __file__, "--work", str(work), "--squad", args.squad, "--genes", *args.genes]
        command += ["--questions", str(args.questions), "--one-timing", str(out)]
        subprocess.run(command, check=True)
        runs.append(json.loads(out.read_text(encoding="utf-8")))
    lengths = runs[0]["lengths"]
    names = ["fp32_eager", *args.genes]
    p50 = {name: statistics.median(r["p50_ms"][name] for r in runs) for name in names}
    p90 = {name: statistics.median(r["p90_ms"][name] for r in runs) for name in names}
    fp32_p50 = p50["fp32_eager"]
    figures: dict = {
        "questions": len(lengths),
        "mean_input_tokens": round(statistics.mean(lengths), 1),
        "timings": args.timings,
        "fp32_eager": {"p50_ms": round(fp32_p50, 3), "p90_ms": round(p90["fp32_eager"], 3)},
        "p50_for_the_bar_ms": round(fp32_p50 / BARS["min_speedup_vs_fp32"], 3),
        "genes": [],
    }
    rows = [["FP32 eager (full length)", "1.000", f"{fp32_p50:.2f}", f"{p90['fp32_eager']:.2f}", "1.00x", ""]]
    for gene in args.genes:
        per_process = [r["p50_ms"]["fp32_eager"] / r["p50_ms"][gene] for r in runs]
        record = {
            "gene": gene,
            "macs_share": round(macs_share(gene, lengths), 3),
            "p50_ms": round(p50[gene], 3),
            "p90_ms": round(p90[gene], 3),
            "speedup_vs_fp32_p50": round(statistics.median(per_process), 2),
            "speedup_per_process": [round(x, 2) for x in per_process],
        }
        figures["genes"].append(record)
        layers, ratios = parse_system(gene)
        student = f"{len(layers)}-layer student ({'-'.join(map(str, layers))}), " if layers else ""
        label = f"int8, {student}" + ("full length" if ratios == "none" else ratios)
        rows.append(
            [
                label,
                f"{record['macs_share']:.3f}",
                f"{p50[gene]:.2f}",
                f"{p90[gene]:.2f}",
                f"{record['speedup_vs_fp32_p50']:.2f}x",
                ", ".join(f"{x:.2f}" for x in record["speedup_per_process"]),
            ]
        )
    markdown = (
        f"Speed only (pretrained MiniLM-L6, random QA head: F1 means nothing here). {len(lengths)} evaluation "
        f"questions of the SQuAD v1.1 dev file split by article, one at a time through `predict`, mean "
        f"{figures['mean_input_tokens']} tokens; systems interleaved in rotated blocks of 25; {args.timings} "
        f"timings, each in a fresh process: medians over them. The 5x bar of `squad_recipe.md` needs p50 <= "
        f"{figures['p50_for_the_bar_ms']} ms here.\n\n"
        + markdown_table(["system", "MACs (share)", "p50 ms", "p90 ms", "vs FP32 eager (p50)", "per process"], rows)
    )
    write_results(args.out, figures, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
