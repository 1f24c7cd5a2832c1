"""`qla-bench`: every row at every sequence length, each in fresh subprocesses; then bench.json, bench.md and
the charts. A row that fails is recorded with its error and the run goes on.

Rows are timed in interleaved rounds: at each sequence length every row is built first, then each round measures
every row once (a fresh process per row and round, ``runs / rounds`` timed calls), and a row's figures pool its
rounds. A slow minute of a shared machine then lands on every row, not on whichever row ran in it, so ratios of
rows are comparable; each record keeps its per-round medians (``round_p50_ms``) to show the spread."""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from qla_bench.allocator import THRESHOLD_BYTES
from qla_bench.kernels import matrix_isa
from qla_bench.launcher import (
    Instance,
    Topology,
    launch_prefix,
    numactl_path,
    plan_instances,
    warn_without_numactl,
)
from qla_bench.registry import get_builder
from qla_bench.rows import (
    DEFAULT_INT8_BACKENDS,
    DEFAULT_LENGTH_CONFIG,
    DEFAULT_LENGTH_CONFIG_SEQ_LEN,
    RowSpec,
    default_rows,
    select_rows,
)
from qla_bench.runner import Job, MeasureSettings, run_build, run_measure
from qla_bench.sources import check_checkpoint, layer_count, resolve_source
from qla_sdk.errors import ConfigError
from qla_sdk.io import file_in_the_way
from qla_sdk.modeling.length import LengthConfig

DEFAULT_OUT = Path("benchmarks/results/bench.json")
MIN_RUNS = 50
QUICK = dict(seq_lens=(64,), batch_sizes=(1, 4), runs=5, warmup=1, throughput_runs=2, calibration_samples=2, rounds=1)


@dataclass
class BenchSettings:
    seq_lens: tuple[int, ...] = (384, 128)
    batch_sizes: tuple[int, ...] = (1, 32)
    runs: int = 100
    warmup: int = 10
    throughput_runs: int = 10
    throughput_max_s: float = 60.0
    rounds: int = 3
    calibration_samples: int = 16
    int8_backends: tuple[str, ...] = DEFAULT_INT8_BACKENDS
    length_config: str | None = None  # None: the QuaLA checkpoint's own, else DEFAULT_LENGTH_CONFIG
    length_config_seq_len: int = DEFAULT_LENGTH_CONFIG_SEQ_LEN
    task: str = "question-answering"
    rows: tuple[str, ...] = ()
    models: dict[str, str | None] = field(default_factory=dict)  # bert-base / minilm / quala-minilm -> folder
    cores: str | None = None
    instances: int = 1
    accuracy_from: Path | None = None
    out: Path = DEFAULT_OUT
    work_dir: Path | None = None
    row_timeout_s: float = 3600.0
    kernels: bool = True
    quick: bool = False

    def __post_init__(self) -> None:
        self.seq_lens = tuple(self.seq_lens)
        self.batch_sizes = tuple(self.batch_sizes)
        if not self.seq_lens or any(n < 2 or n > 512 for n in self.seq_lens):
            raise ConfigError(f"sequence lengths {self.seq_lens}: give lengths in 2..512, e.g. 384,128")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes) or 1 not in self.batch_sizes:
            raise ConfigError(f"batch sizes {self.batch_sizes}: include 1 (latency) and others >= 1, e.g. 1,32")
        if self.runs < 1 or self.warmup < 0 or self.throughput_runs < 1:
            raise ConfigError(f"runs {self.runs}, warm-up {self.warmup}, throughput runs {self.throughput_runs}: >= 1")
        if self.rounds < 1 or self.rounds > self.runs:
            raise ConfigError(f"--rounds {self.rounds}: give 1 to --runs ({self.runs}) interleaved rounds")
        if self.runs < MIN_RUNS and not self.quick:
            raise ConfigError(f"--runs {self.runs}: percentiles need >= {MIN_RUNS} runs; use --quick for a smoke run")
        if self.calibration_samples < 1:
            raise ConfigError(f"--calibration-samples {self.calibration_samples}: must be >= 1")
        if self.task not in ("question-answering", "text-classification"):
            raise ConfigError(f"--task {self.task!r}: choose question-answering or text-classification")
        for model, folder in self.models.items():
            if folder:
                check_checkpoint(folder)  # a missing model is an error before anything runs
                if model not in ("bert-base", "minilm", "quala-minilm"):
                    raise ConfigError(f"model override {model!r}: use bert-base, minilm or quala-minilm")
        if self.accuracy_from is not None and not Path(self.accuracy_from).is_file():
            raise ConfigError(f"--accuracy-from {self.accuracy_from}: no such file")
        if self.row_timeout_s <= 0:
            raise ConfigError(f"--row-timeout {self.row_timeout_s}: must be > 0 seconds")
        if not self.throughput_max_s > 0 or math.isinf(self.throughput_max_s):
            raise ConfigError(f"--throughput-max-s {self.throughput_max_s}: give a time cap in seconds, > 0")
        if not 2 <= self.length_config_seq_len <= 512:
            raise ConfigError(
                f"--length-config-seq-len {self.length_config_seq_len}: give the length the token counts were "
                "searched at, in 2..512 (e.g. 384)"
            )
        LengthConfig.parse(self.length_config)  # a bad entry is named now, not after the first builds
        check_output_file(Path(self.out))

    def measure_settings(self, round_index: int = 0) -> MeasureSettings:
        """What one round's measuring child does: its share of the runs (the time cap shared likewise); the
        kernels are recorded in the first round only. With several rounds, the larger batches warm up once per
        round (the first call compiled them already) and need one run per round."""
        rounds = self.rounds
        return MeasureSettings(
            batch_sizes=self.batch_sizes,
            runs=math.ceil(self.runs / rounds),
            warmup=self.warmup,
            throughput_runs=math.ceil(self.throughput_runs / rounds),
            throughput_warmup=2 if rounds == 1 else 1,
            throughput_max_s=self.throughput_max_s / rounds,
            throughput_min_runs=3 if rounds == 1 else 1,
            calibration_samples=self.calibration_samples,
            kernels=self.kernels and round_index == 0,
        )


def quick_settings(**overrides) -> BenchSettings:
    """Tiny models, one short sequence length, a few runs: a smoke run in seconds per row."""
    return BenchSettings(**{**QUICK, "quick": True, **overrides})


def plan_rows(settings: BenchSettings) -> list[RowSpec]:
    """The rows of this run; every backend is checked to exist before anything starts."""
    length_config = settings.length_config
    length_config_seq_len = settings.length_config_seq_len
    if length_config is None:
        length_config = DEFAULT_LENGTH_CONFIG
        quala = settings.models.get("quala-minilm")
        if quala:  # a trained QuaLA checkpoint carries its searched config in qla.json
            from qla_sdk.modeling.checkpoint import read_qla_metadata

            saved = read_qla_metadata(quala).get("length_config")
            if saved:
                length_config = str(LengthConfig.parse(saved))
    rows = default_rows(settings.int8_backends, length_config, length_config_seq_len, settings.task)
    rows = select_rows(rows, list(settings.rows))
    layers: dict[str, int] = {}
    for row in rows:
        get_builder(row.backend)  # unknown backend: ConfigError now, not a failed row later
        config = LengthConfig.parse(row.length_config)
        if config is not None:  # a config for another depth fails here, not after the other rows' builds
            if row.model not in layers:
                layers[row.model] = layer_count(row.model, settings.models, settings.quick)
            try:
                config.check(layers[row.model])
            except ConfigError as err:
                raise ConfigError(f"row {row.name} ({row.model}): {err}; see --length-config") from None
    return rows


def check_output_file(out: Path) -> None:
    """Refuse an ``--out`` that cannot take the results file, before hours of rows rather than after them."""
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder: give the results file, e.g. {out / 'bench.json'}")
    parent = file_in_the_way(out.parent)
    if parent is not None:
        raise ConfigError(f"--out {out}: {parent} is a file, not a folder; choose another path")


def load_accuracy(path: Path | None) -> dict[str, tuple[str, float]]:
    """Row name -> (metric, value) from a results JSON: ``{"rows": [{"name", "f1"|"accuracy"|...}]}`` or
    ``{name: value}`` / ``{name: {"f1": value}}``."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--accuracy-from {path} is not JSON ({exc})") from None
    entries = data
    if isinstance(data, dict) and isinstance(data.get("rows", data.get("models")), list):
        entries = data.get("rows", data.get("models"))
    if isinstance(entries, list):
        entries = {e.get("name"): e for e in entries if isinstance(e, dict) and e.get("name")}
    if not isinstance(entries, dict):
        raise ConfigError(f"--accuracy-from {path}: expected a 'rows' list or a {{row name: metric}} object")
    metrics = ("f1", "exact_match", "accuracy", "matthews", "metric")
    out = {}
    for name, value in entries.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = ("metric", float(value))
        elif isinstance(value, dict):
            for metric in metrics:
                if isinstance(value.get(metric), (int, float)):
                    out[name] = (metric, float(value[metric]))
                    break
    return out


def _row_record(spec: RowSpec, seq_len: int, batch: int, weights: str, length_config) -> dict:
    return {
        "name": spec.name,
        "role": spec.role,
        "backend": spec.backend,
        "precision": spec.precision,
        "model": spec.model,
        "weights": weights,
        "length_config": str(length_config) if length_config is not None else None,
        "seq_len": seq_len,
        "batch_size": batch,
        "p50_ms": None,
        "p90_ms": None,
        "p99_ms": None,
        "mean_ms": None,
        "runs": None,
        "throughput_per_s": None,
        "size_mb": None,
        "peak_rss_mb": None,
        "build_s": None,
        "load_s": None,
        "first_call_s": None,
        "round_p50_ms": None,
        "instances": None,
        "accuracy_metric": None,
        "accuracy": None,
        "kernels": None,
        "isa": None,
        "error": None,
    }


def aggregate(outcomes: list[dict], batch: int) -> dict:
    """Instances pooled: percentiles over every instance's runs, throughput summed (they ran side by side)."""
    from qla_sdk.timing import LatencyStats

    per = [o["batches"][str(batch)] for o in outcomes]
    stats = LatencyStats.from_times([t for p in per for t in p["times_ms"]])
    return {
        **{k: getattr(stats, k) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "runs")},
        "throughput_per_s": sum(p["throughput_per_s"] for p in per),
        "per_instance_p50_ms": [p["p50_ms"] for p in per],
    }


def prepare_row(
    spec: RowSpec,
    seq_len: int,
    settings: BenchSettings,
    plan: list[Instance],
    numactl: str | None,
    workdir: Path,
    builds: dict,
) -> tuple[list[dict], Job | None, dict | None]:
    """The records of one row at one sequence length (one per batch size), its measuring job and its build: the
    source resolved and the artifact built (once per row, or per sequence length for length-dependent backends).
    A failure fills every record's ``error`` and gives no job."""
    length_config = spec.length_config_at(seq_len)
    records = [_row_record(spec, seq_len, b, "?", length_config) for b in settings.batch_sizes]

    def fail(message: str) -> tuple[list[dict], None, None]:
        for record in records:
            record["error"] = message
        return records, None, None

    try:
        source = resolve_source(spec.model, spec.task, workdir / "sources", settings.models, settings.quick)
        builder = get_builder(spec.backend)
        builder.check_installed(spec.backend)
    except Exception as exc:
        return fail(f"{type(exc).__name__}: {exc}")
    for record in records:
        record["weights"] = source.weights
    key = f"{spec.name}-{seq_len}" if builder.seq_dependent else spec.name
    job_dir = workdir / "jobs" / key
    job_dir.mkdir(parents=True, exist_ok=True)
    threads = sum(i.threads for i in plan)
    job = Job(
        spec=spec.to_dict(),
        source=str(source.folder),
        seq_len=seq_len,
        length_config=str(length_config) if length_config is not None else None,
        artifact=str(source.folder),
        workdir=str(job_dir),
        settings=settings.measure_settings().__dict__,
        threads=threads,
        instances=[{"cores": list(i.cores), "node": i.node} for i in plan],
        release_timeout_s=settings.row_timeout_s,
    )
    build = builds.get(key)
    if build is None and builder.build is not None:
        all_cores = Instance(0, tuple(c for i in plan for c in i.cores), plan[0].node)
        job_path = job.save(job_dir / "build-job.json")
        outcome = run_build(job, job_path, launch_prefix(all_cores, numactl), settings.row_timeout_s)
        build = builds[key] = outcome.result
    if build is not None:
        if build.get("error"):
            return fail(f"build failed: {build['error']}")
        job.artifact = build["artifact"]
    return records, job, build


def measure_round(
    job: Job, settings: BenchSettings, round_index: int, plan: list[Instance], numactl: str | None
) -> list[dict] | str:
    """One round of one row: every instance's result, or the first error."""
    job.settings = settings.measure_settings(round_index).__dict__
    job_path = job.save(Path(job.workdir) / f"measure-job-{job.seq_len}.json")
    outcomes = run_measure(job, job_path, plan, numactl, settings.row_timeout_s)
    errors = [o.result["error"] for o in outcomes if o.result.get("error")]
    return errors[0] if errors else [o.result for o in outcomes]


def finish_row(records: list[dict], rounds: list[list[dict]], build: dict | None) -> list[dict]:
    """Fill a row's records from all its rounds: runs pooled over rounds and instances, throughput the rounds'
    mean, peak RSS the highest of any process; load and first-call times and kernels from the first round."""
    from qla_sdk.timing import LatencyStats

    first = rounds[0]
    for record in records:
        batch = record["batch_size"]
        per_round = [aggregate(results, batch) for results in rounds]
        record.update(aggregate([result for results in rounds for result in results], batch))
        record["throughput_per_s"] = sum(r["throughput_per_s"] for r in per_round) / len(per_round)
        record["per_instance_p50_ms"] = [  # each instance's runs of every round
            LatencyStats.from_times(
                [t for results in rounds for t in results[i]["batches"][str(batch)]["times_ms"]]
            ).p50_ms
            for i in range(len(first))
        ]
        record["round_p50_ms"] = [r["p50_ms"] for r in per_round]
        record["size_mb"] = first[0]["size_mb"]
        record["peak_rss_mb"] = max(r["peak_rss_mb"] for results in rounds for r in results)
        record["load_s"] = first[0]["load_s"]
        record["first_call_s"] = first[0]["first_call_s"][str(batch)]
        record["build_s"] = build.get("build_s") if build else None
        record["instances"] = [{"cores": r["cores"], "threads": r["threads"]} for r in first]
    records[0]["kernels"] = first[0]["kernels"]
    for record in records:  # one set of kernels per row: the first batch size's stands for the others
        record["isa"] = matrix_isa(first[0]["kernels"])
    return records


def run_suite(settings: BenchSettings, command: list[str] | None = None, log=print) -> dict:
    """Run every row and write ``settings.out`` (JSON), the .md beside it and the PNG charts; return the record."""
    from qla_bench.charts import write_charts
    from qla_bench.report import write_results
    from qla_bench.summary import bench_markdown, summarise

    rows = plan_rows(settings)
    accuracy = load_accuracy(settings.accuracy_from)
    topology = Topology.detect()
    plan = plan_instances(settings.cores, settings.instances, topology)
    numactl = numactl_path()
    warning = warn_without_numactl(numactl)
    if warning:
        log(f"warning: {warning}")
    out = Path(settings.out)
    temporary = settings.work_dir is None
    workdir = Path(tempfile.mkdtemp(prefix="qla-bench-")) if temporary else Path(settings.work_dir)
    records: list[dict] = []
    builds: dict = {}
    started = time.perf_counter()
    try:
        for seq_len in settings.seq_lens:
            prepared = []
            for spec in rows:
                log(f"[{time.perf_counter() - started:7.1f}s] {spec.name} seq {seq_len}: build ...")
                prepared.append(prepare_row(spec, seq_len, settings, plan, numactl, workdir, builds))
            rounds: list[list[list[dict]]] = [[] for _ in rows]
            for round_index in range(settings.rounds):
                log(f"[{time.perf_counter() - started:7.1f}s] seq {seq_len}: round {round_index + 1}/{settings.rounds}")
                for (row_records, job, _), results in zip(prepared, rounds, strict=True):
                    if job is None or row_records[0]["error"]:
                        continue
                    outcome = measure_round(job, settings, round_index, plan, numactl)
                    if isinstance(outcome, str):
                        for record in row_records:
                            record["error"] = outcome
                    else:
                        results.append(outcome)
            for spec, (row_records, _, build), results in zip(rows, prepared, rounds, strict=True):
                new = row_records if row_records[0]["error"] else finish_row(row_records, results, build)
                for record in new:
                    if record["name"] in accuracy:
                        record["accuracy_metric"], record["accuracy"] = accuracy[record["name"]]
                records.extend(new)
                first = new[0]
                summary = "failed: " + first["error"].splitlines()[0] if first["error"] else _short(first)
                log(f"    {spec.name} seq {seq_len}: {summary}")
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    figures = {
        "rows": records,
        "summary": summarise(records),
        "settings": _settings_record(settings),
        "binding": {
            "numactl": numactl,
            "warning": warning,
            "instances": [{"cores": list(i.cores), "node": i.node} for i in plan],
            "physical_cores": list(topology.physical_cores),
        },
        "notes": [
            "Latency does not depend on weight values: rows whose weights are 'random' are speed rows only; "
            "accuracy columns come from --accuracy-from (trained models) and are null otherwise.",
            "p50/p90/p99 are per call at the given batch size; throughput_per_s is samples per second "
            "(summed over instances).",
            f"Rows were timed in {settings.rounds} interleaved round(s): each round measures every row once, in a "
            "fresh process, with its share of the runs; a row's percentiles pool its rounds (p50 by round: each "
            "round's median).",
            "peak_rss_mb is the measuring process's peak resident memory (model loaded and run; the build ran in "
            "another process); size_mb is the model's files on disk.",
            "Every measuring process runs with glibc's MALLOC_TRIM_THRESHOLD_ and MALLOC_MMAP_THRESHOLD_ at "
            f"{THRESHOLD_BYTES} unless set (as the README recommends for serving): otherwise a process that "
            "allocates the same large buffers every call can page-fault on them every call.",
        ],
    }
    record = write_results(out, figures, bench_markdown(figures), command or [Path(sys.executable).name, *sys.argv])
    charts = write_charts(record, out.parent, out.stem)
    log(f"wrote {out}, {out.with_suffix('.md')}, " + ", ".join(str(c) for c in charts))
    return record


def _short(record: dict) -> str:
    rounds = ", ".join(f"{v:.2f}" for v in record["round_p50_ms"])
    return (
        f"p50 {record['p50_ms']:.2f} ms (rounds {rounds}), size {record['size_mb']:.1f} MB, "
        f"peak RSS {record['peak_rss_mb']:.0f} MB"
    )


def _settings_record(settings: BenchSettings) -> dict:
    data = {k: v for k, v in settings.__dict__.items() if k not in ("out", "work_dir", "accuracy_from")}
    data["accuracy_from"] = str(settings.accuracy_from) if settings.accuracy_from else None
    return json.loads(json.dumps(data, default=str))
