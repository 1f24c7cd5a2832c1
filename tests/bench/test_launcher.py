"""numactl launcher: physical cores, instance plans, binding commands, clear errors."""

import pytest

from qla_bench.launcher import Instance, Topology, launch_prefix, parse_cpulist, plan_instances
from qla_sdk.errors import ConfigError

TWO_NODES = Topology(physical_cores=(0, 1, 2, 3, 8, 9, 10, 11), node_of={c: 0 if c < 8 else 1 for c in range(16)})


def test_parse_cpulist():
    assert parse_cpulist("0-3, 8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    with pytest.raises(ConfigError, match="'a-b'"):
        parse_cpulist("0,a-b")
    with pytest.raises(ConfigError, match="'5-2'"):
        parse_cpulist("5-2")


@pytest.mark.parametrize(
    ("cores", "instances", "expected"),
    [
        (None, 1, [((0, 1, 2, 3, 8, 9, 10, 11), 0)]),
        (None, 2, [((0, 1, 2, 3), 0), ((8, 9, 10, 11), 1)]),  # one instance per NUMA node
        (4, 2, [((0, 1), 0), ((2, 3), 0)]),
        ("9-11", 3, [((9,), 1), ((10,), 1), ((11,), 1)]),
    ],
)
def test_plan_instances(cores, instances, expected):
    plan = plan_instances(cores, instances, TWO_NODES)
    assert [(i.cores, i.node) for i in plan] == expected
    assert [i.index for i in plan] == list(range(instances))


@pytest.mark.parametrize(
    ("cores", "instances", "message"),
    [
        (2, 3, "--instances 3 is more than the 2 cores"),
        (None, 9, "--instances 9 is more than the 8 cores"),
        (9, 1, "offers 8 physical cores"),
        ("0,40", 1, "CPUs \\[40\\] are not usable"),
        (None, 0, "must be an integer >= 1"),
    ],
)
def test_plan_errors(cores, instances, message):
    with pytest.raises(ConfigError, match=message):
        plan_instances(cores, instances, TWO_NODES)


def test_launch_prefix_with_and_without_numactl():
    instance = Instance(0, (8, 9), 1)
    assert launch_prefix(instance, "/usr/bin/numactl") == ["/usr/bin/numactl", "--physcpubind=8,9", "--membind=1"]
    assert launch_prefix(instance, None) == []


def test_topology_keeps_one_cpu_per_physical_core(tmp_path, monkeypatch):
    # cpu0/cpu2 and cpu1/cpu3 are hyper-thread siblings (same package and core id); node1 holds cpu1 and cpu3.
    for cpu, core in ((0, 0), (1, 1), (2, 0), (3, 1)):
        topo = tmp_path / "cpu" / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{core}\n")
    for node, cpus in ((0, "0,2"), (1, "1,3")):
        (tmp_path / "node" / f"node{node}").mkdir(parents=True)
        (tmp_path / "node" / f"node{node}" / "cpulist").write_text(cpus + "\n")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    topology = Topology.detect(tmp_path / "cpu", tmp_path / "node")
    assert topology.physical_cores == (0, 1)
    assert topology.node_of == {0: 0, 1: 1, 2: 0, 3: 1}
