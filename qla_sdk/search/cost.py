"""What a gene costs: matmul MACs (``count_macs``) or latency measured on the target backend.

Latency is measured, never estimated: a runner builds a zero-argument callable that runs one batch with a given
length config (eager torch by default; ``compile_model`` plugs in a backend such as Inductor or OpenVINO), and the
cost is the median of ``runs`` timed calls after ``warmup`` untimed ones, with ``threads`` intra-op threads.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import torch

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig, count_macs
from qla_sdk.search.genes import Gene, GeneSpace
from qla_sdk.timing import interleaved_latency

# Turns a fixed-length module and its example inputs into something that runs them (a compiled model).
Compile = Callable[[torch.nn.Module, tuple[torch.Tensor, ...]], Callable[..., object]]
Runner = Callable[[LengthConfig | None], Callable[[], object]]


class MacsCost:
    """MACs of one sequence, averaged over ``seq_lens`` (one padded length, or a dev set's real lengths).

    With ratio genes each input keeps a share of its own length, so the mean over the real lengths is what an
    unpadded deployment pays per sequence.
    """

    def __init__(self, model_config, task: str, space: GeneSpace, seq_lens: int | Iterable[int]) -> None:
        lengths = Counter([seq_lens] if isinstance(seq_lens, int) else list(seq_lens))
        if not lengths or min(lengths) < 1:
            raise ConfigError(f"MACs need sequence lengths >= 1; got {sorted(lengths)[:5]}")
        if not space.ratio and len(lengths) > 1:
            raise ConfigError("token-count genes run at one padded length; pass a single seq_len (or use ratio genes)")
        self.model_config, self.task, self.space, self.lengths = model_config, task, space, lengths
        self.total = sum(lengths.values())

    @property
    def mean_length(self) -> float:
        return sum(n * c for n, c in self.lengths.items()) / self.total

    def of(self, length_config: LengthConfig | None) -> float:
        macs = sum(count_macs(self.model_config, n, length_config, self.task) * c for n, c in self.lengths.items())
        return macs / self.total

    def __call__(self, gene: Gene) -> float:
        return self.of(self.space.length_config(gene))


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    if threads < 1:
        raise ConfigError(f"threads={threads}: must be >= 1")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def example_inputs(model_config, batch_size: int, seq_len: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A batch of ``batch_size`` unpadded sequences of ``seq_len`` ordinary (non-special) token ids."""
    if batch_size < 1 or seq_len < 1:
        raise ConfigError(f"latency batch size {batch_size} and sequence length {seq_len} must both be >= 1")
    generator = torch.Generator().manual_seed(seed)
    low = min(model_config.vocab_size - 1, max(5, (model_config.pad_token_id or 0) + 1))
    ids = torch.randint(low, model_config.vocab_size, (batch_size, seq_len), generator=generator)
    return ids, torch.ones_like(ids), torch.zeros_like(ids)


def torch_runner(model, batch_size: int, seq_len: int, compile_model: Compile | None = None) -> Runner:
    """Runs ``model.with_length_config(lc)`` on one batch, through ``compile_model`` (a backend), or eagerly as the
    fp32 backend serves it (the eager runtime)."""
    from qla_sdk.runtime import EagerRuntime

    inputs = example_inputs(model.config, batch_size, seq_len)
    model.eval()
    runtime = EagerRuntime(model) if compile_model is None else None

    def build(length_config: LengthConfig | None) -> Callable[[], object]:
        if runtime is not None:
            run = functools.partial(runtime, length_config=length_config)
        else:
            run = compile_model(model.with_length_config(length_config).eval(), inputs)

        def once() -> object:
            with torch.inference_mode():
                return run(*inputs)

        return once

    return build


def measure_ms(run: Callable[[], object], warmup: int = 3, runs: int = 10, threads: int | None = None) -> float:
    """Median wall time of ``runs`` calls after ``warmup`` calls, in milliseconds."""
    if runs < 1 or warmup < 0:
        raise ConfigError(f"latency runs={runs} (>= 1) and warmup={warmup} (>= 0) are out of range")
    with torch_threads(threads):
        for _ in range(warmup):
            run()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


class LatencyCost:
    """Measured milliseconds per batch for a gene; each gene is measured once and cached."""

    def __init__(
        self, runner: Runner, space: GeneSpace, threads: int | None = None, warmup: int = 3, runs: int = 10
    ) -> None:
        if runs < 1 or warmup < 0:
            raise ConfigError(f"latency runs={runs} (>= 1) and warmup={warmup} (>= 0) are out of range")
        self.runner, self.space, self.threads, self.warmup, self.runs = runner, space, threads, warmup, runs
        self.cache: dict[Gene | None, float] = {}

    def of(self, gene: Gene | None) -> float:
        """Milliseconds for ``gene`` (None: the model without length reduction)."""
        if gene not in self.cache:
            length_config = None if gene is None else self.space.length_config(gene)
            self.cache[gene] = measure_ms(self.runner(length_config), self.warmup, self.runs, self.threads)
        return self.cache[gene]

    def __call__(self, gene: Gene) -> float:
        return self.of(gene)

    def side_by_side(self, genes: list[Gene], rounds: int = 5) -> dict[Gene, float]:
        """Milliseconds per gene, timed in ``rounds`` interleaved rounds (``timing.interleaved_latency``: the order
        rotated per round, each turn ``runs`` calls after ``warmup`` untimed ones) and the median of the round
        medians taken: to rank a few genes a few percent apart, where one measurement each, minutes apart, drifts
        with the machine's state by more than that."""
        if rounds < 1:
            raise ConfigError(f"rounds={rounds}: must be >= 1")
        runs = {g: self.runner(self.space.length_config(g)) for g in genes}
        with torch_threads(self.threads):
            _, medians = interleaved_latency(
                runs, self.runs * rounds, warmup=0, rounds=rounds, round_warmup=self.warmup
            )
        return {g: statistics.median(m) for g, m in medians.items()}


LATENCY_BACKENDS = ("eager", "inductor", "openvino")


def backend_compiler(
    backend: str, threads: int | None = None, precision: str = "f32", int8: bool = False
) -> Compile | None:
    """``compile_model`` for ``torch_runner``: time each gene as the target backend runs it, the pruned model's
    fp32/bf16 graph, or with ``int8`` (OpenVINO only) its int8 graph: NNCF calibrated on the timing batch itself,
    which gives the kernels an int8 artifact runs (their speed does not depend on the calibration's ranges). Ranking
    genes for an int8 artifact needs the int8 graphs: on AMX a bf16 full-length graph outruns every fp32 pruned one,
    while int8 makes the linears cheap and the attention the pruning saves count."""
    if backend not in LATENCY_BACKENDS:
        raise ConfigError(f"latency backend {backend!r} is not supported; choose one of {', '.join(LATENCY_BACKENDS)}")
    if int8 and backend != "openvino":
        raise ConfigError(f"int8 latency is timed on the openvino backend only, not {backend!r}")
    if backend == "eager":
        return None
    if backend == "inductor":
        from qla_sdk.backends.inductor import compile_inductor

        return lambda module, inputs: compile_inductor(module)

    def compile_openvino(module, inputs):
        import openvino as ov

        from qla_sdk.backends.openvino import OpenVINORunner, convert, head_linear_count, quantize

        seq_len = inputs[0].shape[1]  # served as the backend serves it: static shapes, fused attention
        graph = convert(module, seq_len)
        if int8:
            graph = quantize(graph, [inputs], head_linears=head_linear_count(module.model))
        runner = OpenVINORunner(ov.Core(), {seq_len: graph}, precision, threads)
        arrays = [t.numpy() for t in inputs]
        return lambda *_: runner.run(*arrays)

    return compile_openvino
