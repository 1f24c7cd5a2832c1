"""`qla search --model DIR --data DEV --output DIR [--max-macs 55% | --max-latency-ms 8] [--ratio] [--resume]`

Evolutionary search of the per-layer length configuration of a length-adaptively trained model: fitness is the
task metric on a dev set (or a fixed random subset of it), cost is MACs or latency measured on this machine.
Writes front.json/front.csv (every front gene with MACs, latency, metric), scored.csv (every scored gene),
best.json (the best gene within the budget), search.png, and search_state.json, which ``--resume`` continues.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import re
import sys
import time
import warnings
from pathlib import Path

from qla_sdk.errors import ConfigError

METRICS = {"text-classification": ("accuracy", "f1"), "question-answering": ("f1", "exact_match")}
STATE_FILE = "search_state.json"
LATENCY_FILE = "latency_cache.json"
_SUFFIXES = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="evolutionary search of per-layer token lengths under a MACs or latency budget",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="length-adaptively trained checkpoint folder")
    p.add_argument("--data", required=True, help="dev set: SQuAD json, GLUE folder/TSV/CSV/JSON, or a datasets name")
    p.add_argument("--output", required=True, help="folder for front.json, best.json, the plot and the search state")
    p.add_argument("--task", choices=["question-answering", "text-classification"], default=None)
    p.add_argument("--split", default="validation", help="split of a GLUE folder or datasets name")
    p.add_argument("--dataset-subset", default=None, help="configuration of a datasets name, e.g. sst2")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or vocab.txt (default: the model folder)")
    p.add_argument("--metric", default=None, help="accuracy|f1 (classification, default accuracy); f1|exact_match (QA)")
    p.add_argument("--subset", type=int, default=None, help="score on this many dev examples, a fixed random subset")
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    p.add_argument("--device", default="cpu", help="where the dev set is scored (e.g. cuda); latency is timed on CPU")
    p.add_argument("--seq-len", type=int, default=None, help="padded input length (default 128; 384 for QA)")
    p.add_argument("--doc-stride", type=int, default=128, help="QA window overlap")
    p.add_argument(
        "--ratio",
        action="store_true",
        help="search ratios of each input's real length (unpadded inference) instead of token counts at --seq-len",
    )
    p.add_argument("--ratio-steps", type=int, default=100, help="ratio resolution: 100 searches whole percents")
    budget = p.add_argument_group("budget (absolute, with k/M/G suffixes, or a percentage of the full model)")
    budget.add_argument("--max-macs", default=None, help="e.g. 1.2G or 55%%")
    budget.add_argument("--min-macs", default=None, help="lower end of a MACs band")
    budget.add_argument("--max-latency-ms", default=None, help="e.g. 8 or 60%%; searches on measured latency")
    budget.add_argument("--min-latency-ms", default=None, help="lower end of a latency band")
    latency = p.add_argument_group("latency (measured with torch on this machine)")
    latency.add_argument("--cost", choices=["macs", "latency"], default=None, help="axis of the front (default: MACs)")
    latency.add_argument("--measure-latency", action="store_true", help="with MACs as cost, also time the front")
    latency.add_argument("--latency-batch-size", type=int, default=1)
    latency.add_argument("--latency-seq-len", type=int, default=None, help="default: --seq-len, or mean real length")
    latency.add_argument("--threads", type=int, default=None, help="intra-op threads while timing")
    latency.add_argument("--latency-runs", type=int, default=20, help="timed runs; the median counts")
    latency.add_argument("--latency-warmup", type=int, default=5)
    evo = p.add_argument_group("evolution")
    evo.add_argument("--iterations", type=int, default=30)
    evo.add_argument("--mutations", type=int, default=30)
    evo.add_argument("--crossovers", type=int, default=30)
    evo.add_argument("--mutation-prob", type=float, default=0.5)
    evo.add_argument(
        "--length-drop-bound",
        type=float,
        default=None,
        help="the smallest gene drops this share per layer (default: the model's LAT length_drop_prob, else 0.2)",
    )
    evo.add_argument(
        "--constant-rate",
        "--population-size",
        dest="constant_rate",
        type=int,
        default=20,
        help="constant-rate genes in the initial population, besides the full and the smallest gene",
    )
    evo.add_argument("--min-length", type=int, default=1, help="fewest tokens (or ratio steps) a layer keeps")
    evo.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the search saved in --output")
    p.add_argument("--write-to", default=None, help="also save a copy of the model running the best gene here")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def parse_amount(text: str | None, full: float, unit: str) -> float | None:
    """``"1.2G"`` -> 1.2e9, ``"55%"`` -> 0.55 * full, ``"8"`` -> 8.0."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgGtT%]?)\s*", str(text))
    if not match:
        raise ConfigError(f"budget {text!r} ({unit}) is not a number: write e.g. 1.2G, 900M, 8.5 or 55%")
    value, suffix = float(match.group(1)), match.group(2).lower()
    if suffix == "%":
        return value / 100.0 * full
    return value * _SUFFIXES.get(suffix, 1.0)


def run(args: argparse.Namespace) -> int:
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.modeling.checkpoint import read_qla_metadata
    from qla_sdk.search import Budget, GeneSpace, SearchConfig, evolve

    output = Path(args.output)
    state_path = output / STATE_FILE
    if state_path.exists() and not args.resume:
        raise ConfigError(
            f"{output} holds a search already ({STATE_FILE}): pass --resume to continue it, or choose another --output"
        )
    cost_kind = _cost_kind(args)
    write_to = _check_write_to(args.write_to, args.model)

    model = from_pretrained(args.model, task=args.task).eval()
    task = model.task
    metric = args.metric or METRICS[task][0]
    if metric not in METRICS[task]:
        raise ConfigError(f"--metric {metric!r} is not a {task} metric; choose one of {', '.join(METRICS[task])}")
    meta = read_qla_metadata(args.model) if Path(args.model).is_dir() else {}
    lat = meta.get("length_adaptive")
    if not lat:
        warnings.warn(
            f"{args.model} was not length-adaptively trained (its qla.json has no 'length_adaptive' record): its "
            "sub-models will be poor and the search will mostly find the full length. Train it with "
            "`qla lat_train` first",
            stacklevel=1,
        )
    bound = args.length_drop_bound
    if bound is None:
        bound = float((lat or {}).get("length_drop_prob") or 0.2)
    seq_len = args.seq_len or (384 if task == "question-answering" else 128)
    data = _load_eval_data(args, model, task, seq_len)
    space = GeneSpace(model.num_layers, args.ratio_steps if args.ratio else seq_len, ratio=args.ratio)
    config = SearchConfig(
        iterations=args.iterations,
        mutations=args.mutations,
        crossovers=args.crossovers,
        mutation_prob=args.mutation_prob,
        length_drop_bound=bound,
        num_constant_rate=args.constant_rate,
        min_length=args.min_length,
        seed=args.seed,
    )
    fitness = _fitness(_on_device(model, args.device), task, data, metric, space, args.batch_size, seq_len)
    macs, latency, latency_settings = _costs(model, task, space, data, seq_len, args)
    cost = latency if cost_kind == "latency" else macs
    full_cost = cost(space.full())
    if cost_kind == "latency":
        budget = Budget(
            parse_amount(args.max_latency_ms, full_cost, "ms"),
            parse_amount(args.min_latency_ms, full_cost, "ms"),
            unit="ms",
        )
    else:
        budget = Budget(
            parse_amount(args.max_macs, full_cost, "MACs"), parse_amount(args.min_macs, full_cost, "MACs"), "MACs"
        )

    started = time.perf_counter()
    print(
        f"qla search: {task}, {len(data['features'])} dev rows, {metric}, cost {cost_kind}, "
        f"{'ratio' if args.ratio else 'token'} genes over {model.num_layers} layers; full model {full_cost:,.4g} "
        f"{budget.unit}",
        file=sys.stderr,
    )
    result = evolve(
        fitness,
        cost,
        model.num_layers,
        space.seq_len,
        config,
        state_path=state_path,
        budget=budget,
        resume=args.resume,
        progress=not args.no_progress,
        context=_context(args, task, metric, seq_len, cost_kind, latency_settings),
    )
    timed = args.measure_latency or cost_kind == "latency"
    report = _report(result, space, macs, latency if timed else None, cost_kind)
    report.update(
        model=str(args.model),
        task=task,
        metric=metric,
        data=str(args.data),
        dev_rows=len(data["features"]),
        dev_examples=len(data["examples"]) if data["examples"] is not None else len(data["features"]),
        dev_mean_length=round(sum(data["features"].lengths) / len(data["features"]), 2),
        genes="ratio" if args.ratio else "tokens",
        seq_len=seq_len,
        macs_seq_len=macs.mean_length,
        latency=latency_settings if timed else None,
        search={**config.__dict__, "scored": len(result.candidates), "rejected": result.rejected},
        wall_time_s=round(time.perf_counter() - started, 1),
    )
    if timed:
        _save_latency_cache(output, latency, latency_settings)
    _write_outputs(output, report, space, metric)
    _print_summary(report, metric, output)
    if write_to is not None:
        _write_model(write_to, args, model, report, space)
    return 0


# --------------------------------------------------------------------------------------------------- options


def _cost_kind(args: argparse.Namespace) -> str:
    latency_budget = args.max_latency_ms is not None or args.min_latency_ms is not None
    macs_budget = args.max_macs is not None or args.min_macs is not None
    if latency_budget and macs_budget:
        raise ConfigError("give a MACs budget or a latency budget, not both: the front has one cost axis")
    if args.cost == "macs" and latency_budget:
        raise ConfigError("--cost macs with a latency budget: drop --cost, or give --max-macs instead")
    if args.cost == "latency" and macs_budget:
        raise ConfigError("--cost latency with a MACs budget: drop --cost, or give --max-latency-ms instead")
    for name in ("batch_size", "latency_batch_size", "latency_runs", "ratio_steps"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    if args.subset is not None and args.subset < 1:
        raise ConfigError(f"--subset {args.subset}: give a number of dev examples >= 1")
    return args.cost or ("latency" if latency_budget else "macs")


def _check_write_to(write_to: str | None, model: str) -> Path | None:
    if write_to is None:
        return None
    target = Path(write_to)
    if target.resolve() == Path(model).resolve():
        raise ConfigError(
            f"--write-to {write_to} is the input model: the search never modifies a model in place; "
            "give a new folder for the copy"
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"--write-to {write_to} exists and is not empty: choose a new folder or delete it")
    return target


# ------------------------------------------------------------------------------------------- data and fitness


def _load_eval_data(args: argparse.Namespace, model, task: str, seq_len: int) -> dict:
    from qla_sdk.data import classification_features, load_classification, load_squad, load_tokenizer, qa_features

    tokenizer = load_tokenizer(args.tokenizer or args.model)
    if task == "question-answering":
        examples = load_squad(args.data, split=args.split)
        examples = [examples[i] for i in _subset(len(examples), args.subset, args.subset_seed)]
        features = qa_features(examples, tokenizer, max_length=seq_len, doc_stride=args.doc_stride)
        return {"features": features, "examples": examples}
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    data = load_classification(args.data, split=args.split, label_names=labels, subset=args.dataset_subset)
    features = classification_features(data, tokenizer, max_length=seq_len)
    features = features.subset(_subset(len(features), args.subset, args.subset_seed))
    return {"features": features, "examples": None}


def _on_device(model, device: str):
    """The model the dev set is scored with; the CPU original stays for latency and --write-to."""
    import copy

    import torch

    try:
        target = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r} is not a torch device; use cpu or cuda (cuda:0, ...)") from None
    if target.type == "cpu":
        return model
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: this torch sees no CUDA device; drop --device to score on CPU")
    return copy.deepcopy(model).to(target)


def _subset(total: int, size: int | None, seed: int) -> list[int]:
    """A fixed random subset (sorted), the same for every gene and every run with the same seed."""
    if size is None or size >= total:
        return list(range(total))
    return sorted(random.Random(seed).sample(range(total), size))


def _fitness(model, task: str, data: dict, metric: str, space, batch_size: int, seq_len: int):
    from qla_sdk.train.tasks import evaluate

    # Token-count genes count tokens of an input padded to seq_len, as the reference search pads its inputs.
    pad_to = None if space.ratio else seq_len

    def fitness(gene) -> float:
        scores = evaluate(
            model, data["features"], task, data["examples"], batch_size, space.length_config(gene), pad_to=pad_to
        )
        return float(scores[metric])

    return fitness


def _costs(model, task: str, space, data: dict, seq_len: int, args: argparse.Namespace):
    from qla_sdk.search import LatencyCost, MacsCost, torch_runner

    lengths = data["features"].lengths
    macs = MacsCost(model.config, task, space, lengths if space.ratio else seq_len)
    latency_len = args.latency_seq_len or (round(macs.mean_length) if space.ratio else seq_len)
    if not space.ratio and latency_len != seq_len:
        raise ConfigError(
            f"--latency-seq-len {latency_len} differs from --seq-len {seq_len}: token-count genes run at the "
            "padded length; drop --latency-seq-len or use --ratio"
        )
    runner = torch_runner(model, args.latency_batch_size, latency_len)
    latency = LatencyCost(runner, space, args.threads, args.latency_warmup, args.latency_runs)
    settings = {
        "backend": "torch-eager",
        "batch_size": args.latency_batch_size,
        "seq_len": latency_len,
        "threads": args.threads,
        "runs": args.latency_runs,
        "warmup": args.latency_warmup,
    }
    if args.resume:
        _load_latency_cache(Path(args.output), latency, settings)
    return macs, latency, settings


def _load_latency_cache(output: Path, latency, settings: dict) -> None:
    """Reuse the latencies a resumed search measured already, when measured with the same settings."""
    file = output / LATENCY_FILE
    if not file.is_file():
        return
    try:
        saved = json.loads(file.read_text())
    except json.JSONDecodeError:
        return  # a cache only: measure again
    if saved.get("settings") == settings:
        latency.cache.update({tuple(item["gene"]): item["latency_ms"] for item in saved["genes"]})


def _save_latency_cache(output: Path, latency, settings: dict) -> None:
    from qla_sdk.io import write_json_atomic

    genes = [{"gene": list(g), "latency_ms": ms} for g, ms in latency.cache.items() if g is not None]
    write_json_atomic(output / LATENCY_FILE, {"settings": settings, "genes": genes})


def _context(args: argparse.Namespace, task: str, metric: str, seq_len: int, cost_kind: str, latency: dict) -> dict:
    """What else decides the scores: a resumed search must agree on all of it."""
    from qla_sdk.io import sha256_file

    weights = Path(args.model) / "model.safetensors"
    return {
        "model": str(Path(args.model).resolve()) if Path(args.model).exists() else args.model,
        "weights_sha256": sha256_file(weights) if weights.is_file() else None,
        "task": task,
        "data": str(Path(args.data).resolve()) if Path(args.data).exists() else args.data,
        "split": args.split,
        "subset": [args.subset, args.subset_seed],
        "metric": metric,
        "seq_len": seq_len,
        "doc_stride": args.doc_stride if task == "question-answering" else None,
        "cost": cost_kind,
        "latency": latency if cost_kind == "latency" else None,
    }


# --------------------------------------------------------------------------------------------------- outputs


def _report(result, space, macs, latency, cost_kind: str) -> dict:
    full_macs = macs(space.full())

    def row(candidate, time_it: bool = True) -> dict:
        gene = candidate.gene
        value = macs(gene)
        ms = None
        if cost_kind == "latency":
            ms = candidate.cost
        elif latency is not None and time_it:
            ms = latency(gene)
        return {
            "gene": list(gene),
            "length_config": list(space.length_config(gene).lengths),
            "macs": value,
            "macs_ratio": round(value / full_macs, 4),
            "latency_ms": ms,
            "metric": candidate.metric,
        }

    front = [row(c) for c in result.front]
    constant = [row(c) for c in result.constant_rate]
    full = row(result.full)
    best = row(result.best) if result.best is not None else None
    if best is not None:
        best["metric_loss"] = full["metric"] - best["metric"]
        if best["latency_ms"] and full["latency_ms"]:
            best["speedup"] = round(full["latency_ms"] / best["latency_ms"], 3)
    return {
        "cost": cost_kind,
        "budget": _budget_dict(result.budget, cost_kind),
        "full": full,
        "smallest": row(result.smallest),
        "best": best,
        "front": front,
        "constant_rate": constant,
        "scored": [row(c, time_it=False) for c in sorted(result.candidates.values(), key=lambda c: (c.cost, c.gene))],
        "history": result.history,
    }


def _budget_dict(budget, cost_kind: str) -> dict:
    unit = "macs" if cost_kind == "macs" else "latency_ms"
    return {f"max_{unit}": budget.max_cost, f"min_{unit}": budget.min_cost}


def _csv(rows: list[dict], columns: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()})
    return buffer.getvalue().encode()


def _write_outputs(output: Path, report: dict, space, metric: str) -> None:
    from qla_sdk.io import write_bytes_atomic, write_json_atomic
    from qla_sdk.search.plot import plot_search

    columns = ["gene", "length_config", "macs", "macs_ratio", "latency_ms", "metric"]
    front_doc = {k: v for k, v in report.items() if k != "scored"}  # scored.csv holds every gene
    write_json_atomic(output / "front.json", front_doc)
    write_bytes_atomic(output / "front.csv", _csv(report["front"], columns))
    write_bytes_atomic(output / "scored.csv", _csv(report["scored"], columns))
    best = report["best"]
    write_json_atomic(
        output / "best.json",
        {
            "best": best,
            "length_config": space.length_config(tuple(best["gene"])).to_dict() if best else None,
            "full": report["full"],
            "budget": report["budget"],
            "metric": metric,
            "genes": report["genes"],
            "seq_len": report["seq_len"],
        },
    )
    plot_search(
        output / "search.png",
        report["scored"],
        report["front"],
        report["constant_rate"],
        report["full"],
        best,
        metric_name=metric,
        budget=report["budget"],
        title=f"qla search: {Path(report['model']).name} ({'ratio' if report['genes'] == 'ratio' else 'token'} genes)",
        front_axis="macs" if report["cost"] == "macs" else "latency_ms",
    )


def _print_summary(report: dict, metric: str, output: Path) -> None:
    print(f"{'':<10} {'GMACs':>8} {'of full':>8} {'ms':>8} {metric:>10}  length config")
    rows = [("full", report["full"])]
    if report["best"] is not None:
        rows.append(("best", report["best"]))
    for name, r in rows:
        ms = f"{r['latency_ms']:.2f}" if r["latency_ms"] is not None else "-"
        print(
            f"{name:<10} {r['macs'] / 1e9:8.3f} {r['macs_ratio']:8.1%} {ms:>8} {r['metric']:10.4f}  "
            f"{','.join(map(str, r['length_config']))}"
        )
    if report["best"] is None:
        print("no scored gene lies within the budget band: widen it (front.json lists the front)")
    print(f"front of {len(report['front'])} genes: {output / 'front.json'}, {output / 'front.csv'}; plot: search.png")


def _write_model(target: Path, args: argparse.Namespace, model, report: dict, space) -> None:
    from qla_sdk.modeling import save_pretrained
    from qla_sdk.modeling.checkpoint import read_qla_metadata

    best = report["best"]
    if best is None:
        raise ConfigError("--write-to: no gene lies within the budget, so there is nothing to write")
    model.length_config = space.length_config(tuple(best["gene"]))
    meta = read_qla_metadata(args.model) if Path(args.model).is_dir() else {}
    extra = {k: v for k, v in meta.items() if k not in ("task", "labels", "length_config")}
    extra["search"] = {
        "source": str(args.model),
        "metric": report["metric"],
        "value": best["metric"],
        "full_value": report["full"]["metric"],
        "macs": best["macs"],
        "macs_ratio": best["macs_ratio"],
        "latency_ms": best["latency_ms"],
        "genes": report["genes"],
        "seq_len": report["seq_len"],
        "budget": report["budget"],
    }
    tokenizer = None
    try:
        from qla_sdk.data import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer or args.model)
    except (ConfigError, OSError):
        warnings.warn(f"no tokenizer found for {args.model}; {target} holds the model only", stacklevel=1)
    save_pretrained(model, target, tokenizer=tokenizer, extra=extra)
    print(f"wrote {target} (a copy running length config {model.length_config})")
