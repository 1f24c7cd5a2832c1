"""One row, in fresh processes: ``build`` (export/quantize into an artifact) runs in one child, ``measure`` in
one child per instance, started under numactl and released together so instances run side by side.

The parent writes a job file; a child reads it, does its part, and writes a result file (an ``error`` field when
it failed). A child that crashes or runs past the row timeout is a failed row, never a failed run.

    python -m qla_bench.runner build JOB.json
    python -m qla_bench.runner measure JOB.json INSTANCE
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qla_bench.allocator import GLIBC_ENV
from qla_bench.launcher import Instance, launch_prefix, pin_current_process
from qla_bench.rows import RowSpec
from qla_sdk.io import write_json_atomic

GO_FILE = "go"
WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".bin", ".xml", ".pt2", ".pt")


@dataclass
class MeasureSettings:
    batch_sizes: tuple[int, ...] = (1, 32)
    runs: int = 100  # timed runs at batch 1
    warmup: int = 10
    throughput_runs: int = 10  # timed runs at the larger batch sizes
    throughput_warmup: int = 2
    throughput_max_s: float = 60.0  # stop the larger batches early (after >= throughput_min_runs) past this
    throughput_min_runs: int = 3
    calibration_samples: int = 16
    kernels: bool = True


@dataclass
class Job:
    """Everything a child needs, as JSON."""

    spec: dict
    source: str
    seq_len: int
    length_config: str | None
    artifact: str  # folder the build child fills (or the source folder when the backend has no build step)
    workdir: str
    settings: dict
    threads: int = 1
    instances: list[dict] = field(default_factory=list)  # cores of each measuring instance
    release_timeout_s: float = 3600.0

    def save(self, path: Path) -> Path:
        return write_json_atomic(path, asdict(self))

    @classmethod
    def read(cls, path: Path) -> Job:
        return cls(**json.loads(Path(path).read_text()))


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB: VmHWM of its current address space. ``ru_maxrss`` is not that:
    Linux carries it across exec, so a row's child started by a 1.3 GB ``qla-bench`` process reported at least
    1.3 GB, whatever it ran."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; an upper bound


def size_on_disk(path: Path, weights_only: bool) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if weights_only:
        files = [p for p in files if p.name.endswith(WEIGHT_SUFFIXES)]
    return sum(p.stat().st_size for p in files)


def _context(job: Job):
    from qla_sdk.modeling.length import LengthConfig

    return RowSpec.from_dict(job.spec), LengthConfig.parse(job.length_config)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def child_build(job: Job) -> dict:
    from qla_bench.builders import BuildContext
    from qla_bench.registry import get_builder
    from qla_bench.sources import random_inputs
    from qla_sdk.modeling import load_config

    spec, length_config = _context(job)
    _set_threads(job.threads)
    builder = get_builder(spec.backend)
    builder.check_installed(spec.backend)
    settings = MeasureSettings(**job.settings)
    vocab = load_config(job.source).vocab_size
    calibration = [random_inputs(vocab, 1, job.seq_len, seed=100 + i) for i in range(settings.calibration_samples)]
    workdir = Path(job.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    ctx = BuildContext(spec, Path(job.source), job.seq_len, length_config, workdir, calibration, job.threads)
    artifact = builder.build(ctx)
    return {"artifact": str(artifact), "build_s": time.perf_counter() - start, "build_peak_rss_mb": peak_rss_mb()}


def _wait_for_release(job: Job, instance: int) -> None:
    """Say ready, then wait until the parent releases every instance at once."""
    workdir = Path(job.workdir)
    (workdir / f"ready.{instance}").touch()
    deadline = time.monotonic() + job.release_timeout_s
    while not (workdir / GO_FILE).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"instance {instance} was not released within {job.release_timeout_s:.0f} s")
        time.sleep(0.005)


def child_measure(job: Job, instance: int) -> dict:
    from qla_bench.builders import LoadContext
    from qla_bench.registry import get_builder
    from qla_bench.sources import random_inputs
    from qla_sdk.modeling import load_config
    from qla_sdk.timing import LatencyStats, measure_times

    spec, length_config = _context(job)
    cores = job.instances[instance]["cores"] if job.instances else []
    if os.environ.get("QLA_BENCH_PIN") == "1":
        pin_current_process(cores)  # no numactl: bind the cores ourselves
    threads = len(cores) or job.threads
    _set_threads(threads)
    settings = MeasureSettings(**job.settings)
    builder = get_builder(spec.backend)
    builder.check_installed(spec.backend)
    start = time.perf_counter()
    ctx = LoadContext(spec, Path(job.source), Path(job.artifact), job.seq_len, length_config, threads)
    runtime = builder.load(ctx)
    load_s = time.perf_counter() - start
    vocab = load_config(job.source).vocab_size
    batches = {b: random_inputs(vocab, b, job.seq_len, seed=b) for b in settings.batch_sizes}
    calls = {b: runtime.bind(inputs) for b, inputs in batches.items()}
    first_call_s = {}
    for batch, call in calls.items():  # compile each shape now, so that instances start timing together
        start = time.perf_counter()
        call()
        first_call_s[str(batch)] = time.perf_counter() - start
    _wait_for_release(job, instance)
    results = {}
    for batch, call in calls.items():
        if batch == 1:
            times = measure_times(call, settings.runs, settings.warmup)
        else:
            times = measure_times(
                call,
                settings.throughput_runs,
                settings.throughput_warmup,
                settings.throughput_max_s,
                min_runs=settings.throughput_min_runs,
            )
        stats = LatencyStats.from_times(times)
        results[str(batch)] = {**stats.to_dict(), "times_ms": times, "throughput_per_s": batch * 1000 / stats.mean_ms}
    kernels = None
    if settings.kernels and instance == 0:
        try:
            kernels = runtime.kernels(batches[min(batches)])
        except Exception as exc:  # a kernel record is a bonus: never fail the row over it
            kernels = {"error": f"{type(exc).__name__}: {exc}"}
    artifact = Path(job.artifact)
    size = runtime.size_bytes
    if size is None:
        size = size_on_disk(artifact, weights_only=artifact == Path(job.source))
    return {
        "batches": results,
        "load_s": load_s,
        "first_call_s": first_call_s,
        "size_mb": size / 2**20,
        "peak_rss_mb": peak_rss_mb(),
        "kernels": kernels,
        "cores": cores,
        "threads": threads,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] not in ("build", "measure"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, job_path = argv[0], Path(argv[1])
    instance = int(argv[2]) if mode == "measure" and len(argv) > 2 else 0
    job = Job.read(job_path)
    result_path = job_path.with_name(f"{job_path.stem}.{mode}.{instance}.result.json")
    try:
        result = child_build(job) if mode == "build" else child_measure(job, instance)
        result["error"] = None
        code = 0
    except BaseException as exc:  # the parent reports it as this row's error and goes on
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}".strip()}
        code = 1
    write_json_atomic(result_path, result)
    return code


# --- parent side ------------------------------------------------------------------------------------------------


@dataclass
class ChildOutcome:
    result: dict
    log: str


def _child_env(threads: int, pin: bool) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["QLA_BENCH_PIN"] = "1" if pin else "0"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name, value in GLIBC_ENV.items():  # every row alike; a value the user set wins
        env.setdefault(name, value)
    return env


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _error_of(result_path: Path, log_path: Path, returncode: int | None, what: str) -> dict:
    if result_path.is_file():
        result = json.loads(result_path.read_text())
        if result.get("error") is None and returncode == 0:
            return result
        return {**result, "error": result.get("error") or f"{what} exited with status {returncode}"}
    reason = "timed out" if returncode is None else f"exited with status {returncode} without a result"
    tail = _tail(log_path, 8)
    return {"error": f"{what} {reason}" + (f"; last output:\n{tail}" if tail else "")}


def run_build(job: Job, job_path: Path, prefix: list[str], timeout_s: float) -> ChildOutcome:
    log_path = job_path.with_suffix(".build.log")
    result_path = job_path.with_name(f"{job_path.stem}.build.0.result.json")
    command = [*prefix, sys.executable, "-m", "qla_bench.runner", "build", str(job_path)]
    with open(log_path, "wb") as log:
        try:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            code = None
    return ChildOutcome(_error_of(result_path, log_path, code, "build"), _tail(log_path))


def run_measure(
    job: Job, job_path: Path, plan: list[Instance], numactl: str | None, timeout_s: float
) -> list[ChildOutcome]:
    """Start one measuring child per instance, release them together once all are loaded, collect results."""
    workdir = Path(job.workdir)
    (workdir / GO_FILE).unlink(missing_ok=True)
    procs = []
    for inst in plan:
        log_path = job_path.with_suffix(f".measure.{inst.index}.log")
        log = open(log_path, "wb")  # closed below, after the child exits
        command = [*launch_prefix(inst, numactl), sys.executable, "-m", "qla_bench.runner", "measure"]
        command += [str(job_path), str(inst.index)]
        env = _child_env(inst.threads, pin=numactl is None)
        procs.append((inst, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log, log_path))
    deadline = time.monotonic() + timeout_s
    outcomes = []
    try:
        # Release when every instance is ready or gone (a dead one is reported below; the others still run).
        while time.monotonic() < deadline:
            ready = [(workdir / f"ready.{inst.index}").exists() or p.poll() is not None for inst, p, _, _ in procs]
            if all(ready):
                break
            time.sleep(0.01)
        (workdir / GO_FILE).touch()
        for inst, proc, log, log_path in procs:
            try:
                code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                code = None
            log.close()
            result_path = job_path.with_name(f"{job_path.stem}.measure.{inst.index}.result.json")
            error = _error_of(result_path, log_path, code, f"instance {inst.index}")
            outcomes.append(ChildOutcome(error, _tail(log_path)))
    finally:  # timed out or interrupted: no instance outlives its row
        for _, proc, log, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return outcomes


if __name__ == "__main__":
    sys.exit(main())
