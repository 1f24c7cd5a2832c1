"""Core and memory binding of benchmark processes: one instance per group of physical cores.

With numactl each instance runs under ``numactl --physcpubind=<cores> --membind=<node>``, so its threads stay on
its own physical cores (no hyper-thread siblings) and its memory on their NUMA node. Without numactl the child
pins itself with ``os.sched_setaffinity`` (cores only, no memory binding) and the run carries a warning.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from qla_sdk.errors import ConfigError

SYS_CPU = Path("/sys/devices/system/cpu")
SYS_NODE = Path("/sys/devices/system/node")


def parse_cpulist(text: str) -> list[int]:
    """``"0-3,8,10-11"`` -> ``[0, 1, 2, 3, 8, 10, 11]``."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                if high < low:
                    raise ValueError
                cpus.extend(range(low, high + 1))
            else:
                cpus.append(int(part))
        except ValueError:
            raise ConfigError(f"CPU list {text!r}: {part!r} is not a CPU number or range like 0-3") from None
    return sorted(set(cpus))


def format_cpulist(cpus: list[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


@dataclass(frozen=True)
class Topology:
    """Usable logical CPUs, one logical CPU per physical core, and the NUMA node of each CPU."""

    physical_cores: tuple[int, ...]
    node_of: dict[int, int]

    @classmethod
    def detect(cls, sys_cpu: Path = SYS_CPU, sys_node: Path = SYS_NODE) -> Topology:
        try:
            usable = sorted(os.sched_getaffinity(0))
        except AttributeError:
            usable = list(range(os.cpu_count() or 1))
        seen: set[tuple[str, str]] = set()
        physical: list[int] = []
        for cpu in usable:
            topo = sys_cpu / f"cpu{cpu}" / "topology"
            try:
                key = ((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip())
            except OSError:
                key = ("?", str(cpu))  # no sysfs (containers without /sys): count every logical CPU as a core
            if key not in seen:
                seen.add(key)
                physical.append(cpu)
        node_of = {cpu: 0 for cpu in usable}
        for node_dir in sorted(sys_node.glob("node[0-9]*")):
            try:
                for cpu in parse_cpulist((node_dir / "cpulist").read_text()):
                    if cpu in node_of:
                        node_of[cpu] = int(node_dir.name[4:])
            except OSError:
                continue
        return cls(tuple(physical), node_of)


@dataclass(frozen=True)
class Instance:
    """The cores of one benchmark process and the NUMA node its memory is bound to."""

    index: int
    cores: tuple[int, ...]
    node: int

    @property
    def threads(self) -> int:
        return len(self.cores)


def plan_instances(cores: str | int | None, instances: int, topology: Topology | None = None) -> list[Instance]:
    """Split the chosen physical cores into ``instances`` equal groups, each inside one NUMA node when possible.

    ``cores``: a count (the first N physical cores), a CPU list such as ``"0-3,8"``, or None for all physical cores.
    """
    topology = topology or Topology.detect()
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
        raise ConfigError(f"--instances {instances!r}: must be an integer >= 1")
    available = list(topology.physical_cores)
    if cores is None or cores == "":
        chosen = available
    elif isinstance(cores, int) or str(cores).strip().isdigit():
        count = int(cores)
        if not 1 <= count <= len(available):
            raise ConfigError(
                f"--cores {count}: this machine offers {len(available)} physical cores "
                f"({format_cpulist(available)}); choose 1..{len(available)}"
            )
        chosen = available[:count]
    else:
        chosen = parse_cpulist(str(cores))
        usable = set(topology.node_of)
        outside = [c for c in chosen if c not in usable]
        if outside:
            raise ConfigError(
                f"--cores {cores}: CPUs {outside} are not usable by this process; "
                f"usable: {format_cpulist(sorted(usable))}"
            )
    if instances > len(chosen):
        raise ConfigError(
            f"--instances {instances} is more than the {len(chosen)} cores chosen ({format_cpulist(chosen)}): "
            "each instance needs at least one core; lower --instances or give more --cores"
        )
    # Group by NUMA node first so that an instance does not straddle two nodes when the split allows it.
    chosen = sorted(chosen, key=lambda c: (topology.node_of.get(c, 0), c))
    per = len(chosen) // instances
    plan = []
    for i in range(instances):
        group = tuple(chosen[i * per : (i + 1) * per])
        nodes = [topology.node_of.get(c, 0) for c in group]
        plan.append(Instance(i, group, max(set(nodes), key=nodes.count)))
    return plan


def numactl_path() -> str | None:
    return shutil.which("numactl")


def launch_prefix(instance: Instance, numactl: str | None) -> list[str]:
    """The command prefix that binds ``instance``; empty without numactl (the child pins itself instead)."""
    if numactl is None:
        return []
    return [numactl, f"--physcpubind={format_cpulist(list(instance.cores))}", f"--membind={instance.node}"]


def warn_without_numactl(numactl: str | None) -> str | None:
    """The warning of a run without numactl (printed and recorded in the results), or None."""
    if numactl is not None:
        return None
    message = (
        "numactl is not installed: instances are pinned to their cores with sched_setaffinity but memory is not "
        "bound to a NUMA node (install it, e.g. `apt-get install -y numactl`, for reproducible figures)"
    )
    return message


def pin_current_process(cores: list[int]) -> None:
    """Fallback binding without numactl: restrict this process (and the threads it starts) to ``cores``."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))
