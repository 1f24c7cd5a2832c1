"""Measurement helpers shared by `qla bench` and the scripts in benchmarks/."""

from qla_sdk.bench.machine import machine_info, package_versions
from qla_sdk.bench.report import write_results
from qla_sdk.bench.timing import LatencyStats, measure_latency

__all__ = ["LatencyStats", "machine_info", "measure_latency", "package_versions", "write_results"]
