"""One evolutionary search run, end to end: load the model and dev set, wire fitness (dev metric of a sub-model) and
cost (MACs or measured latency), evolve, write front.json/front.csv/scored.csv/best.json/search.png and the state.

``qla search`` maps its flags onto a ``SearchJob``; the recipe's search stage builds one from its section. Both
call ``run_search``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from qla_sdk.data.columns import DEFAULT_LABEL_COLUMN, DevColumns, check_text_columns
from qla_sdk.data.task_data import naming_the_task
from qla_sdk.errors import ConfigError
from qla_sdk.search.config import SearchConfig, check_drop_scale, parse_amount

METRICS = {"text-classification": ("accuracy", "f1"), "question-answering": ("f1", "exact_match")}
STATE_FILE = "search_state.json"
LATENCY_FILE = "latency_cache.json"


@dataclass
class SearchJob:
    """One search: which model and data (the wiring, flags of ``qla search``) and how (``SearchConfig``)."""

    model: str | Path = field(metadata={"help": "length-adaptively trained checkpoint folder"})
    data: str | Path = field(metadata={"help": "dev set: SQuAD json, GLUE folder/TSV/CSV/JSON, or a datasets name"})
    output: str | Path = field(metadata={"help": "folder for front.json, best.json, the plot and the search state"})
    task: Literal["question-answering", "text-classification"] | None = field(
        default=None, metadata={"help": "the model's task (default: read from its qla.json)"}
    )
    split: str = field(default="validation", metadata={"help": "split of a GLUE folder or datasets name"})
    dataset_subset: str | None = field(default=None, metadata={"help": "configuration of a datasets name, e.g. sst2"})
    # A classifier's dev set is read in the columns training read: scored on another column, genes get other
    # metrics (and the search keeps other lengths) without any error. None: the ones the model's qla.json records,
    # else detected by name (a label column: "label"). ``qla search`` makes their flags as qla eval does
    # (``commands.eval.add_column_arguments``), so they read alike in every command.
    text_columns: list[str] | None = None
    label_column: str | None = None
    tokenizer: str | Path | None = field(
        default=None, metadata={"help": "tokenizer folder or vocab.txt (default: the model folder)"}
    )
    device: str = field(
        default="cpu", metadata={"help": "where the dev set is scored (e.g. cuda); latency is timed on CPU"}
    )
    seq_len: int | None = field(
        default=None,
        metadata={"help": "padded input length (default: the model's recorded max_length, else 128; 384 for QA)"},
    )
    doc_stride: int | None = field(
        default=None, metadata={"help": "QA window overlap (default 128, at most half of --seq-len), as qla export"}
    )
    resume: bool = field(default=False, metadata={"help": "continue the search saved in --output"})
    write_to: str | Path | None = field(
        default=None, metadata={"help": "also save a copy of the model running the best gene here"}
    )
    reference_model: str | Path | None = field(
        default=None,
        metadata={
            "help": "with --max-metric-drop: count the drop from this model's metric on the same dev subset (e.g. "
            "the fine-tuned model being compressed) instead of the full-length model's"
        },
    )
    no_progress: bool = field(default=False, metadata={"help": "no progress bar"})
    config: SearchConfig = field(default_factory=SearchConfig)

    def __post_init__(self) -> None:
        for name in ("model", "data", "output", "tokenizer", "write_to", "reference_model"):
            value = getattr(self, name)
            if isinstance(value, Path):
                setattr(self, name, str(value))
        check_text_columns(self.text_columns)
        if self.seq_len is not None and self.seq_len < 8:
            raise ConfigError(f"seq_len={self.seq_len}: must be >= 8 tokens, or omitted for the task's default")
        if self.doc_stride is not None and (isinstance(self.doc_stride, bool) or self.doc_stride < 1):
            raise ConfigError(f"doc_stride={self.doc_stride}: must be >= 1 token (default 128)")
        if self.reference_model is not None and self.config.max_metric_drop is None:
            raise ConfigError(
                f"reference_model={self.reference_model}: a reference only sets where max_metric_drop counts from; "
                "give --max-metric-drop too, or drop --reference-model"
            )


def run_search(args: SearchJob, *, own_files: tuple[str, ...] = ()) -> dict:
    """Run the search; return the report written to front.json (plus every scored gene). ``own_files``: names in
    ``args.output`` that the caller wrote and that the search may sit beside (the recipe's stage clock); anything
    else there, but an earlier search, is refused."""
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.modeling.checkpoint import read_qla_metadata, training_columns
    from qla_sdk.search import Budget, GeneSpace, evolve

    output = Path(args.output)
    _check_folder(output, "--output")
    state_path = output / STATE_FILE
    if state_path.exists() and not args.resume:
        raise ConfigError(
            f"{output} holds a search already ({STATE_FILE}): pass --resume to continue it, or choose another --output"
        )
    _check_output_holds_only_a_search(output, own_files)
    cost_kind = _cost_kind(args)
    write_to = _check_write_to(args.write_to, args.model, output)

    meta = read_qla_metadata(args.model) if Path(args.model).is_dir() else {}
    # genes of a model trained for another task would be scored on a random head
    model = from_pretrained(args.model, task=args.task, trained_head=bool(meta.get("task"))).eval()
    task = model.task
    columns = DevColumns.of(args.text_columns, args.label_column, training_columns(args.model))
    columns.refuse_for_qa(task, args.model)
    if task != "question-answering":
        columns.warn_unlike_training("search", args.model, "the genes' scores mean something")
        # From here on the columns read (here, in --confirm's rescoring): given, else recorded, else detected.
        args = dataclasses.replace(args, text_columns=columns.text_columns, label_column=columns.label_column)
    metric = args.config.metric or METRICS[task][0]
    if metric not in METRICS[task]:
        raise ConfigError(f"--metric {metric!r} is not a {task} metric; choose one of {', '.join(METRICS[task])}")
    check_drop_scale(args.config.max_metric_drop, task, metric)
    lat = meta.get("length_adaptive")
    if not lat:
        warnings.warn(
            f"{args.model} was not length-adaptively trained (its qla.json has no 'length_adaptive' record): its "
            "sub-models will be poor and the search will mostly find the full length. Train it with "
            "`qla lat-train` first",
            stacklevel=1,
        )
    bound = args.config.evolution.length_drop_bound
    if bound is None:
        bound = float((lat or {}).get("length_drop_prob") or 0.2)
    # The length the model was trained at (qla.json), as qla export takes it: genes are searched for that length.
    recorded_length = meta.get("max_length") if isinstance(meta.get("max_length"), int) else None
    seq_len = args.seq_len or _resumed_seq_len(args, output) or recorded_length
    seq_len = seq_len or (384 if task == "question-answering" else 128)
    if task != "question-answering" and args.doc_stride is not None:
        raise ConfigError(
            f"doc_stride={args.doc_stride}: {args.model} is a {task} model, and the stride only splits "
            "question-answering contexts into windows: drop --doc-stride"
        )
    if task == "question-answering":
        # the windows the artifact will serve (qla export applies the same rule), so genes are scored on them
        from qla_sdk.data import load_tokenizer, qa_doc_stride

        stride = qa_doc_stride(seq_len, load_tokenizer(args.tokenizer or args.model), args.doc_stride)
        args = dataclasses.replace(args, doc_stride=stride)
    with columns.naming_the_record(args.data, args.model), naming_the_task(task, args.data):
        data = _load_eval_data(args, model, task, seq_len)
    space = GeneSpace(
        model.num_layers, args.config.ratio_steps if args.config.ratio else seq_len, ratio=args.config.ratio
    )
    # The first layers LAT kept whole in every sub-model: initial genes dropping there were never trained.
    full_layers = args.config.evolution.full_length_layers
    if full_layers is None:
        full_layers = int((lat or {}).get("full_length_layers") or 0)
    config = dataclasses.replace(args.config.evolution, length_drop_bound=bound, full_length_layers=full_layers)
    fitness = _fitness(_on_device(model, args.device), task, data, metric, space, args.config.batch_size, seq_len)
    macs, latency, latency_settings = _costs(model, task, space, data, seq_len, args)
    dev_mean_length = sum(data["features"].lengths) / len(data["features"])
    if not space.ratio and dev_mean_length < seq_len / 2:
        warnings.warn(
            f"token-count genes count tokens of inputs padded to {seq_len}, and the dev rows average "
            f"{dev_mean_length:.0f} real tokens: the cost saved is mostly padding, which a served input does not "
            "carry; --ratio (a recipe's search.ratio) searches shares of each input's real length",
            stacklevel=1,
        )
    cost = latency if cost_kind == "latency" else macs
    full_cost = cost(space.full())
    reference = _reference_metric(args, task, data, metric, seq_len, space.ratio)
    if cost_kind == "latency":
        budget = Budget(
            parse_amount(args.config.max_latency_ms, full_cost, "ms"),
            parse_amount(args.config.min_latency_ms, full_cost, "ms", lower_bound=True),
            unit="ms",
            max_metric_drop=args.config.max_metric_drop,
            reference_metric=reference,
        )
    else:
        budget = Budget(
            parse_amount(args.config.max_macs, full_cost, "MACs"),
            parse_amount(args.config.min_macs, full_cost, "MACs", lower_bound=True),
            "MACs",
            max_metric_drop=args.config.max_metric_drop,
            reference_metric=reference,
        )

    started = time.perf_counter()
    print(
        f"qla search: {task}, {len(data['features'])} dev rows, {metric}, cost {cost_kind}, "
        f"{'ratio' if args.config.ratio else 'token'} genes over {model.num_layers} layers; "
        f"full model {full_cost:,.4g} {budget.unit}",
        file=sys.stderr,
    )
    resumed = args.resume and state_path.exists()
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
        context={**_context(args, task, metric, seq_len, cost_kind, latency_settings), "data_digest": _digest(data)},
    )
    timed = args.config.measure_latency or cost_kind == "latency"
    confirmed = {}
    if args.config.confirm and args.config.subset is not None:
        result, confirmed = _confirm(args, model, task, metric, seq_len, space, result, latency if timed else None)
    report = _report(result, space, macs, latency if timed else None, cost_kind)
    if confirmed:
        report["confirmed"] = confirmed
    if reference is not None:
        report["reference"] = {"model": str(args.reference_model), "metric": reference}
        if report["best"] is not None:
            report["best"]["reference_metric_loss"] = reference - report["best"]["metric"]
    report.update(
        model=str(args.model),
        task=task,
        metric=metric,
        data=str(args.data),
        dev_rows=len(data["features"]),
        dev_examples=len(data["examples"]) if data["examples"] is not None else len(data["features"]),
        dev_mean_length=round(dev_mean_length, 2),
        genes="ratio" if args.config.ratio else "tokens",
        seq_len=seq_len,
        macs_seq_len=macs.mean_length,
        latency=latency_settings if timed else None,
        # iterations: as asked; completed_iterations: as run (a resumed search may have run more than it asks)
        search={
            **config.__dict__,
            "completed_iterations": result.iterations,
            "scored": len(result.candidates),
            "rejected": result.rejected,
        },
        resumed=resumed,
        wall_time_s=round(time.perf_counter() - started, 1),  # this run's
        search_time_s=round(result.search_time_s, 1),  # the evolution's, the runs a resume continued included
    )
    if timed:
        _save_latency_cache(output, latency, latency_settings)
    _write_outputs(output, report, space, metric)
    _print_summary(report, metric, output)
    if write_to is not None:
        _write_model(write_to, args, model, report, space)
    return report


# --------------------------------------------------------------------------------------------------- options


def _cost_kind(args: SearchJob) -> str:
    return args.config.cost_kind


def _resumed_seq_len(args: SearchJob, output: Path) -> int | None:
    """A resumed search's own length: searches started before --seq-len defaulted to the recorded max_length ran at
    the task's default, and must go on at it."""
    if not args.resume or not (output / STATE_FILE).is_file():
        return None
    try:
        saved = json.loads((output / STATE_FILE).read_text())["search"]["context"]["seq_len"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # the search's own load names a damaged state
    return saved if isinstance(saved, int) else None


def _check_output_holds_only_a_search(output: Path, own_files: tuple[str, ...]) -> None:
    """The search writes front.json, best.json, ... into ``output``: a folder holding anything but an earlier
    search (its state) is refused, so that a user's files there are never overwritten."""
    if not output.is_dir() or (output / STATE_FILE).exists():
        return
    others = sorted(
        p.name for p in output.iterdir() if p.name not in (LATENCY_FILE, *own_files) and not _write_leftover(p.name)
    )
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise ConfigError(
            f"--output {output} holds files that no search wrote ({shown}): the search would overwrite its own "
            "names there. Give a new or empty folder"
        )


def _write_leftover(name: str) -> bool:
    """A temp file or folder of an atomic write that a kill left (``.front.json.x1y2.tmp``): not a user's file."""
    return name.startswith(".") and name.endswith((".tmp", ".partial"))


def _check_write_to(write_to: str | None, model: str, output: Path) -> Path | None:
    if write_to is None:
        return None
    target = Path(write_to)
    if target.resolve() == Path(model).resolve():
        raise ConfigError(
            f"--write-to {write_to} is the input model: the search never modifies a model in place; "
            "give a new folder for the copy"
        )
    if target.resolve() == output.resolve():
        raise ConfigError(
            f"--write-to {write_to} is the --output folder, which holds the search's own files: give the copy its "
            f"own folder, e.g. {output / 'model'}"
        )
    _check_folder(target, "--write-to")
    if target.is_dir() and any(target.iterdir()):
        raise ConfigError(f"--write-to {write_to} exists and is not empty: choose a new folder or delete it")
    return target


def _check_folder(folder: Path, flag: str) -> None:
    """A folder the search writes into: refused now if it, or a folder above it, is a file (after the search it
    would be too late)."""
    from qla_sdk.io import file_in_the_way

    path = file_in_the_way(folder)
    if path is not None:
        what = "is a file" if path == folder else f"lies under {path}, which is a file"
        raise ConfigError(f"{flag} {folder} {what}: give a folder")


# ------------------------------------------------------------------------------------------- data and fitness


def _load_eval_data(args: SearchJob, model, task: str, seq_len: int, subset: bool = True) -> dict:
    """The dev rows genes are scored on: the configured subset, or with ``subset=False`` all of them."""
    from qla_sdk.data import classification_features, load_classification, load_squad, load_tokenizer, qa_features

    size = args.config.subset if subset else None
    tokenizer = load_tokenizer(args.tokenizer or args.model)
    if task == "question-answering":
        examples = load_squad(args.data, split=args.split)
        examples = [examples[i] for i in dev_subset(len(examples), size, args.config.subset_seed)]
        features = qa_features(examples, tokenizer, max_length=seq_len, doc_stride=args.doc_stride)
        return {"features": features, "examples": examples}
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    data = load_classification(
        args.data,
        args.split,
        args.text_columns,
        args.label_column or DEFAULT_LABEL_COLUMN,
        label_names=labels,
        subset=args.dataset_subset,
    )
    features = classification_features(data, tokenizer, max_length=seq_len)
    features = features.subset(dev_subset(len(features), size, args.config.subset_seed))
    return {"features": features, "examples": None}


def _confirm(
    args: SearchJob, model, task: str, metric: str, seq_len: int, space, result, latency=None
) -> tuple[object, dict]:
    """Re-score the chosen gene on every dev example; while it falls below the drop's floor there (the reference's,
    or the full length's, metric on every example, less ``max_metric_drop``), take the next gene of the front that
    keeps the drop on the subset. Next means costlier; with ``latency`` (``--measure-latency`` on MACs, or a latency
    cost) it means slower, the candidates timed again side by side, since MACs miss what a runtime pays for a layer
    that prunes at all (its attention runs unfused): a gene keeping 95% of a layer's tokens can cost fewer MACs and
    more milliseconds.
    Returns the search result with the kept gene as best, and the record of what was scored."""
    if result.best is None:
        return result, {}
    data = _load_eval_data(args, model, task, seq_len, subset=False)
    scores = _scorer(_on_device(model, args.device), task, data, space, args.config.batch_size, seq_len)
    reference = _reference_metric(args, task, data, metric, seq_len, space.ratio)
    if reference is None:
        reference = float(scores(result.full.gene)[metric])
    floor = reference - args.config.max_metric_drop
    # the front from the subset's choice up: every one keeps the drop on the subset (the front's metric rises with
    # its cost), and the full length is the last resort
    ladder = [c for c in result.front if c.cost >= result.best.cost and result.budget.contains(c.cost)]
    ladder = [result.best] + [c for c in ladder if c.gene != result.best.gene]
    if result.full.gene not in {c.gene for c in ladder}:
        ladder.append(result.full)
    timed = latency.side_by_side([c.gene for c in ladder]) if latency is not None else {}
    if timed:
        ladder.sort(key=lambda c: (timed[c.gene], c.cost))
    tried = []
    for candidate in ladder:
        every_metric = scores(candidate.gene)
        value = float(every_metric[metric])
        row = {"gene": list(candidate.gene), "subset_metric": candidate.metric, "metric": value}
        tried.append({**row, "latency_ms": timed[candidate.gene]} if timed else row)
        if value >= floor:
            record = {
                "dev_rows": len(data["features"]),
                "reference_metric": reference,
                "floor": floor,
                "order": "latency_ms, timed side by side" if timed else "cost",
                "ladder": len(ladder),
            }
            # every metric of the kept gene on every dev example, so a caller need not score it again
            kept = {**tried[-1], "scores": {k: float(v) for k, v in every_metric.items()}}
            return dataclasses.replace(result, best=candidate), {**record, "tried": tried, "kept": kept}
    raise ConfigError(
        f"no gene keeps {metric} within {args.config.max_metric_drop:g} of {reference:.4f} on every dev example, "
        f"not even the full length ({tried[-1]['metric']:.4f}): train the searched model longer or allow a larger "
        "max_metric_drop"
    )


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


def dev_subset(total: int, size: int | None, seed: int) -> list[int]:
    """The indices of the dev rows genes are scored on: a fixed random subset (sorted), the same for every gene and
    every run with the same seed; all ``total`` without a ``size``."""
    if size is None or size >= total:
        return list(range(total))
    return sorted(random.Random(seed).sample(range(total), size))


def _scorer(model, task: str, data: dict, space, batch_size: int, seq_len: int):
    """``scores(gene) -> {metric: value}``: every metric of the model running ``gene`` on ``data``."""
    from qla_sdk.train.tasks import evaluate

    # Token-count genes count tokens of an input padded to seq_len, as the reference search pads its inputs.
    pad_to = None if space.ratio else seq_len

    def scores(gene) -> dict:
        return evaluate(
            model, data["features"], task, data["examples"], batch_size, space.length_config(gene), pad_to=pad_to
        )

    return scores


def _fitness(model, task: str, data: dict, metric: str, space, batch_size: int, seq_len: int):
    scores = _scorer(model, task, data, space, batch_size, seq_len)
    return lambda gene: float(scores(gene)[metric])


def _reference_metric(args: SearchJob, task: str, data: dict, metric: str, seq_len: int, ratio: bool) -> float | None:
    """The reference model's metric on the search's dev rows at full length, or None without a reference."""
    from qla_sdk.modeling import from_pretrained
    from qla_sdk.train.tasks import evaluate

    if args.reference_model is None:
        return None
    if not Path(args.reference_model).is_dir():
        raise ConfigError(
            f"reference model {args.reference_model} is not a checkpoint folder: give the folder of the model the "
            "metric drop counts from (config.json + model.safetensors)"
        )
    reference = from_pretrained(args.reference_model, task=task).eval()
    pad_to = None if ratio else seq_len  # as the searched genes are scored
    scores = evaluate(
        _on_device(reference, args.device),
        data["features"],
        task,
        data["examples"],
        args.config.batch_size,
        pad_to=pad_to,
    )
    return float(scores[metric])


def _costs(model, task: str, space, data: dict, seq_len: int, args: SearchJob):
    from qla_sdk.search import LatencyCost, MacsCost, torch_runner
    from qla_sdk.search.cost import backend_compiler

    lengths = data["features"].lengths
    macs = MacsCost(model.config, task, space, lengths if space.ratio else seq_len)
    latency_len = args.config.latency_seq_len or (round(macs.mean_length) if space.ratio else seq_len)
    if not space.ratio and latency_len != seq_len:
        raise ConfigError(
            f"--latency-seq-len {latency_len} differs from --seq-len {seq_len}: token-count genes run at the "
            "padded length; drop --latency-seq-len or use --ratio"
        )
    compiler = backend_compiler(
        args.config.latency_backend, args.config.threads, args.config.latency_precision, args.config.latency_int8
    )
    runner = torch_runner(model, args.config.latency_batch_size, latency_len, compile_model=compiler)
    latency = LatencyCost(runner, space, args.config.threads, args.config.latency_warmup, args.config.latency_runs)
    settings = {
        "backend": "torch-eager" if args.config.latency_backend == "eager" else args.config.latency_backend,
        "precision": args.config.latency_precision,
        "int8": args.config.latency_int8,
        "batch_size": args.config.latency_batch_size,
        "seq_len": latency_len,
        "threads": args.config.threads,
        "runs": args.config.latency_runs,
        "warmup": args.config.latency_warmup,
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


def _context(args: SearchJob, task: str, metric: str, seq_len: int, cost_kind: str, latency: dict) -> dict:
    """What else decides the scores: a resumed search must agree on all of it."""
    from qla_sdk.io import sha256_file

    weights = Path(args.model) / "model.safetensors"
    return {
        "model": str(Path(args.model).resolve()) if Path(args.model).exists() else args.model,
        "weights_sha256": sha256_file(weights) if weights.is_file() else None,
        "task": task,
        "data": str(Path(args.data).resolve()) if Path(args.data).exists() else args.data,
        "split": args.split,
        "subset": [args.config.subset, args.config.subset_seed],
        "metric": metric,
        "seq_len": seq_len,
        "doc_stride": args.doc_stride if task == "question-answering" else None,
        "cost": cost_kind,
        "latency": latency if cost_kind == "latency" else None,
    }


def _digest(data: dict) -> str:
    """The scored rows' tokens and labels (for QA also the questions and their answers): a resumed search on
    edited data, or with another tokenizer, would mix scores of two dev sets."""
    import hashlib

    from qla_sdk.data.rows import rows_digest

    digest = hashlib.sha256(rows_digest(data["features"]).encode())
    for example in data["examples"] or ():
        digest.update(json.dumps([example.id, example.question, example.context, example.answers]).encode())
    return digest.hexdigest()[:16]


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
    late = [row(c) for c in result.late_drop]
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
        "late_drop": late,
        "scored": [row(c, time_it=False) for c in sorted(result.candidates.values(), key=lambda c: (c.cost, c.gene))],
        "history": result.history,
    }


def _budget_dict(budget, cost_kind: str) -> dict:
    unit = "macs" if cost_kind == "macs" else "latency_ms"
    return {
        f"max_{unit}": budget.max_cost,
        f"min_{unit}": budget.min_cost,
        "max_metric_drop": budget.max_metric_drop,
        "reference_metric": budget.reference_metric,
    }


def _csv(rows: list[dict], columns: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()})
    return buffer.getvalue().encode()


def _confirmed_summary(report: dict) -> dict | None:
    """The best gene's metric on every dev row, where ``--confirm`` scored it (else None)."""
    confirmed = report.get("confirmed")
    if not confirmed:
        return None
    kept = confirmed["kept"]
    return {
        "dev_rows": confirmed["dev_rows"],
        "metric": kept["metric"],
        "scores": kept.get("scores"),
        "floor": confirmed["floor"],
    }


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
            # the metrics above are on the rows the genes were scored on; --confirm scores the best on every row
            "dev_rows": report["dev_rows"],
            "confirmed": _confirmed_summary(report),
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
        late_drop=report["late_drop"],
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
    if "reference" in report:
        print(f"reference  {report['reference']['metric']:.4f} ({report['reference']['model']})")
    if "confirmed" in report:
        c = report["confirmed"]
        print(
            f"confirmed on all {c['dev_rows']} dev rows: {metric} {c['kept']['metric']:.4f} >= {c['floor']:.4f} "
            f"({len(c['tried'])} gene(s) scored)"
        )
    if report["best"] is None:
        print("no scored gene lies within the budget band (and metric drop): widen it (front.json lists the front)")
    print(f"front of {len(report['front'])} genes: {output / 'front.json'}, {output / 'front.csv'}; plot: search.png")


def _write_model(target: Path, args: SearchJob, model, report: dict, space) -> None:
    from qla_sdk.modeling import save_pretrained
    from qla_sdk.modeling.checkpoint import read_qla_metadata

    best = report["best"]
    if best is None and "reference" in report:
        drop, reference = report["budget"]["max_metric_drop"], report["reference"]["metric"]
        raise ConfigError(
            f"--write-to: no gene scores within {drop:g} of the reference model's {report['metric']} "
            f"({reference:.4f}, {report['reference']['model']}); the full-length model scores "
            f"{report['full']['metric']:.4f}. Train the searched model longer (length-adaptive training, or "
            "distillation for a student) or allow a larger max_metric_drop"
        )
    if best is None:
        raise ConfigError("--write-to: no gene lies within the budget, so there is nothing to write")
    model.length_config = space.length_config(tuple(best["gene"]))
    meta = read_qla_metadata(args.model) if Path(args.model).is_dir() else {}
    extra = {k: v for k, v in meta.items() if k not in ("task", "labels", "length_config")}
    confirmed = _confirmed_summary(report)
    extra["search"] = {
        "source": str(args.model),
        "metric": report["metric"],
        # on every dev row where --confirm scored it, else on the rows the search scored (dev_rows)
        "value": confirmed["metric"] if confirmed else best["metric"],
        "dev_rows": confirmed["dev_rows"] if confirmed else report["dev_rows"],
        "subset_value": best["metric"],
        "subset_dev_rows": report["dev_rows"],
        "full_value": report["full"]["metric"],
        "reference": report.get("reference"),
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
