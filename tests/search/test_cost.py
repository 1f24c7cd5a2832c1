import types

import pytest
import torch

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig, count_macs, from_pretrained
from qla_sdk.search.cost import LatencyCost, MacsCost, measure_ms, torch_runner, torch_threads
from qla_sdk.search.genes import GeneSpace


@pytest.fixture(scope="module")
def tiny_model(tiny_checkpoint):
    folder, _ = tiny_checkpoint("bert", "text-classification")
    return from_pretrained(folder).eval()


def test_token_gene_macs_are_count_macs_at_the_padded_length(tiny_model):
    space = GeneSpace(num_layers=2, seq_len=48)
    macs = MacsCost(tiny_model.config, "text-classification", space, 48)
    expected = count_macs(tiny_model.config, 48, "40,20", task="text-classification")
    assert macs((40, 20)) == expected
    assert macs((48, 48)) == count_macs(tiny_model.config, 48, None, task="text-classification")
    assert macs((40, 20)) < macs((48, 48))


def test_ratio_gene_macs_average_over_real_lengths(tiny_model):
    space = GeneSpace(num_layers=2, seq_len=100, ratio=True)
    macs = MacsCost(tiny_model.config, "question-answering", space, [10, 10, 30])
    one = [count_macs(tiny_model.config, n, "0.5,0.25") for n in (10, 30)]
    assert macs((50, 25)) == pytest.approx((2 * one[0] + one[1]) / 3)
    assert macs.mean_length == pytest.approx(50 / 3)


def test_macs_cost_validates(tiny_model):
    with pytest.raises(ConfigError, match="one padded length"):
        MacsCost(tiny_model.config, "text-classification", GeneSpace(2, 48), [10, 20])
    with pytest.raises(ConfigError, match="lengths >= 1"):
        MacsCost(tiny_model.config, "text-classification", GeneSpace(2, 48), 0)


def _fake_clock(monkeypatch) -> dict:
    """``cost.time.perf_counter`` reads ``clock["now"]``, which only the code under test advances: what is timed is
    then known exactly (the real clock would make any figure pass)."""
    import qla_sdk.search.cost as cost

    clock = {"now": 0.0}
    monkeypatch.setattr(cost, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    return clock


def _other_thread_count() -> int:
    # conftest pins one thread for the session: ask for another count, so that the restore check is real
    return 2 if torch.get_num_threads() != 2 else 1


def test_latency_times_the_compiled_model_per_gene_with_its_threads(tiny_model, monkeypatch):
    clock = _fake_clock(monkeypatch)
    before, threads = torch.get_num_threads(), _other_thread_count()
    compiled, calls = [], []

    def compile_model(module, inputs):
        compiled.append(module.length_config)
        assert inputs[0].shape == (2, 32)

        def run(*args):
            calls.append(torch.get_num_threads())
            clock["now"] += 0.001 * len(calls)  # call k of the compiled model takes k ms
            return module(*args)

        return run

    space = GeneSpace(num_layers=2, seq_len=32)
    latency = LatencyCost(torch_runner(tiny_model, 2, 32, compile_model), space, threads=threads, warmup=1, runs=3)
    assert latency((16, 8)) == pytest.approx(3.0)  # call 1 warms up; calls 2, 3, 4 are timed: median 3 ms
    assert calls == [threads] * 4 and torch.get_num_threads() == before
    assert latency((16, 8)) == pytest.approx(3.0) and len(calls) == 4  # cached: neither compiled nor run again
    assert latency.of(None) == pytest.approx(7.0) and len(calls) == 8  # calls 6, 7, 8 timed
    assert [str(lc) if lc else None for lc in compiled] == ["16,8@32", None]  # token genes carry their length
    assert torch.get_num_threads() == before


def test_measure_ms_takes_the_median_of_the_timed_runs_and_restores_threads(monkeypatch):
    clock = _fake_clock(monkeypatch)
    before, requested = torch.get_num_threads(), _other_thread_count()
    durations = iter([7.0, 9.0, 0.005, 0.001, 0.003, 0.100, 0.002])  # 2 warm-up runs, then 5 timed ones (seconds)
    calls = []

    def run():
        calls.append(torch.get_num_threads())
        clock["now"] += next(durations)

    assert measure_ms(run, warmup=2, runs=5, threads=requested) == pytest.approx(3.0)  # median of 5,1,3,100,2 ms
    assert calls == [requested] * 7 and torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="runs=0"):
        measure_ms(lambda: None, runs=0)
    with pytest.raises(ConfigError, match="threads=0"), torch_threads(0):
        pass


def test_latency_on_the_openvino_backend_runs_the_pruned_graph(tiny_checkpoint):
    from qla_sdk.search.cost import backend_compiler, torch_runner

    folder, _ = tiny_checkpoint("bert", "question-answering")
    model = from_pretrained(folder, "question-answering").eval()
    calls = []

    def compile_and_record(module, inputs):
        calls.append(module.length_config)
        return backend_compiler("openvino", threads=1)(module, inputs)

    runner = torch_runner(model, batch_size=1, seq_len=16, compile_model=compile_and_record)
    assert runner(LengthConfig.parse("12,6"))() is not None  # an OpenVINO infer request ran
    assert calls == [LengthConfig.parse("12,6")]


def test_unknown_latency_backend():
    from qla_sdk.search.cost import backend_compiler

    with pytest.raises(ConfigError, match="'tensorrt' is not supported; choose one of eager, inductor, openvino"):
        backend_compiler("tensorrt")


def test_openvino_latency_compiles_with_the_precision_asked_for(tiny_model, monkeypatch):
    """A gene is timed as an artifact with that ``inference_precision`` serves it: every copy compiled with it."""
    pytest.importorskip("openvino")
    import qla_sdk.backends.openvino as openvino_backend
    from qla_sdk.search.cost import backend_compiler

    asked = []
    compile_model = openvino_backend.compile_model

    def record(core, model, precision, threads):
        asked.append(precision)
        return compile_model(core, model, precision, threads)

    monkeypatch.setattr(openvino_backend, "compile_model", record)
    compiler = backend_compiler("openvino", threads=1, precision="bf16")
    runner = torch_runner(tiny_model, batch_size=1, seq_len=16, compile_model=compiler)
    assert runner(LengthConfig.parse("12,6"))() is not None
    assert asked and set(asked) == {"bf16"}


@pytest.mark.parametrize("int8", [False, True])
def test_openvino_latency_times_the_int8_graph_when_asked(tiny_model, monkeypatch, int8):
    """``int8``: each gene's graph is quantized (NNCF on the timing batch) before it is timed, as an int8 artifact
    runs it; otherwise the fp32 graph is timed. The pruning attention is fused either way."""
    pytest.importorskip("openvino")
    import qla_sdk.backends.openvino as openvino_backend
    from qla_sdk.search.cost import backend_compiler

    graphs = []
    runner_class = openvino_backend.OpenVINORunner

    def record(core, models, precision, threads):
        graphs.extend(models.values())
        return runner_class(core, models, precision, threads)

    monkeypatch.setattr(openvino_backend, "OpenVINORunner", record)
    compiler = backend_compiler("openvino", threads=1, int8=int8)
    runner = torch_runner(tiny_model, batch_size=1, seq_len=16, compile_model=compiler)
    assert runner(LengthConfig.parse("12,6"))() is not None
    kinds = [op.get_type_name() for graph in graphs for op in graph.get_ops()]
    assert ("FakeQuantize" in kinds) == int8


def test_int8_latency_is_an_openvino_option():
    from qla_sdk.search.cost import backend_compiler

    with pytest.raises(ConfigError, match="int8 latency is timed on the openvino backend only, not 'inductor'"):
        backend_compiler("inductor", int8=True)


def test_side_by_side_timing_interleaves_rounds_and_takes_medians(monkeypatch):
    """Genes a few percent apart are ranked from rotated rounds, each turn after an untimed call, not from one
    measurement each: the median of each round's calls, then the median over rounds, so a slow round drops out."""
    import types

    import qla_sdk.timing as timing

    now = [0.0]  # a fake clock (seconds) that each call advances: timing reads time.perf_counter
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    space = GeneSpace(num_layers=2, seq_len=32)
    genes = [(32, 32), (16, 16), (24, 24)]
    typical_ms = {(32, 32): 3.0, (16, 16): 1.0, (24, 24): 2.0}
    slow_round = {(32, 32): 0, (16, 16): 1, (24, 24): 2}
    order, calls = [], dict.fromkeys(genes, 0)

    def runner(length_config):
        gene = tuple(length_config.lengths)

        def run():
            turn, call = divmod(calls[gene], 4)  # each turn: 1 untimed call, then 3 timed
            calls[gene] += 1
            order.append(gene)
            slow = turn == slow_round[gene] and call > 0
            now[0] += (9.0 if slow else typical_ms[gene] + 0.1 * call) / 1000  # calls within a turn differ too

        return run

    timed = LatencyCost(runner, space, warmup=1, runs=3).side_by_side(genes, rounds=3)
    turns = order[::4]
    assert turns == [(32, 32), (16, 16), (24, 24), (16, 16), (24, 24), (32, 32), (24, 24), (32, 32), (16, 16)]
    assert all(order[i : i + 4] == [turns[i // 4]] * 4 for i in range(0, len(order), 4))
    # each round's median is the 2nd of its 3 timed calls (typical + 0.2 ms); the 9 ms round drops out
    assert timed == pytest.approx({(32, 32): 3.2, (16, 16): 1.2, (24, 24): 2.2})
    with pytest.raises(ConfigError, match="rounds=0"):
        LatencyCost(runner, space).side_by_side(genes, rounds=0)
