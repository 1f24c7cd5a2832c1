"""Where a QA artifact's ``predict(question=..., context=...)`` spends a question: windows and tokenization
(``qa_features``), the graph runs (the runner), span extraction (``best_spans``), and the rest (checks, padding).

    python benchmarks/predict_phases.py --artifact DIR --squad squad_eval.json [--questions 400]

Each phase is timed by wrapping the function the Predictor calls (``qla_sdk.data.qa_features``,
``qla_sdk.data.best_spans``, the runner's ``run``) for the duration of this script; the questions run one at a time,
in file order, after 5 untimed ones. Also records the graph lengths (32-token buckets) the windows ran at. Writes
benchmarks/results/predict_phases.json and .md. Run nothing else heavy meanwhile.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

from qla_bench.script import run_script

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", required=True, help="a question-answering artifact (qla export)")
    parser.add_argument("--squad", required=True, help="SQuAD-format file whose questions are asked")
    parser.add_argument("--questions", type=int, default=400, help="how many questions (default %(default)s)")
    parser.add_argument("--out", default=str(RESULTS / "predict_phases.json"))
    args = parser.parse_args(argv)

    import qla_sdk
    import qla_sdk.data as data
    from qla_bench.report import markdown_table, write_results

    predictor = qla_sdk.load(args.artifact, warmup=True)
    if predictor.task != "question-answering":
        parser.error(f"{args.artifact} is a {predictor.task} artifact; give a question-answering one")
    examples = data.load_squad(args.squad)[: args.questions]
    seconds: dict[str, float] = collections.defaultdict(float)
    lengths: collections.Counter = collections.Counter()

    def timed(name: str, fn, record_length: bool = False):
        def wrapper(*a, **k):
            start = time.perf_counter()
            result = fn(*a, **k)
            seconds[name] += time.perf_counter() - start
            if record_length:
                lengths[len(a[0][0])] += 1
            return result

        return wrapper

    data.qa_features = timed("windows and tokenization", data.qa_features)
    data.best_spans = timed("span extraction", data.best_spans)
    predictor.runner.run = timed("graph runs", predictor.runner.run, record_length=True)
    for e in examples[:5]:
        predictor.predict(question=e.question, context=e.context)
    seconds.clear()
    lengths.clear()
    totals = []
    for e in examples:
        start = time.perf_counter()
        predictor.predict(question=e.question, context=e.context)
        totals.append(time.perf_counter() - start)
    total = sum(totals)
    n = len(examples)
    phases = {name: round(s / n * 1000.0, 3) for name, s in seconds.items()}
    phases["rest"] = round((total - sum(seconds.values())) / n * 1000.0, 3)
    figures = {
        "artifact": str(args.artifact),
        "questions": n,
        "mean_ms": round(total / n * 1000.0, 3),
        "p50_ms": round(statistics.median(totals) * 1000.0, 3),
        "phases_mean_ms": phases,
        "graph_lengths": {str(k): v for k, v in sorted(lengths.items())},
        "length_config": str(predictor.manifest.length_config),
        "fused_attention": getattr(predictor.runner, "fused_attention", None),
    }
    rows = [[name, ms, round(100.0 * ms / figures["mean_ms"], 1)] for name, ms in phases.items()]
    markdown = "\n\n".join(
        [
            f"`predict(question=..., context=...)` of {args.artifact} on {n} questions of {args.squad}, one at a "
            f"time: mean {figures['mean_ms']} ms, p50 {figures['p50_ms']} ms.",
            markdown_table(["phase", "mean ms", "% of the call"], rows),
            "Windows run at graph length (tokens: windows): "
            + ", ".join(f"{k}: {v}" for k, v in figures["graph_lengths"].items()),
        ]
    )
    write_results(args.out, figures, markdown, command=[Path(sys.executable).name, *sys.argv])
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
