"""Measurement helpers shared by `qla bench` and the scripts in benchmarks/.

The suite itself: ``qla_sdk.bench.suite`` (``BenchSettings``, ``run_suite``), rows in ``rows``, subprocesses in
``runner``, core binding in ``launcher``, backends in ``ours`` / ``peers``, outputs in ``summary`` / ``charts``.
"""

from qla_sdk.bench.machine import machine_info, package_versions
from qla_sdk.bench.report import markdown_table, write_results
from qla_sdk.bench.timing import LatencyStats, measure_latency, measure_times

__all__ = [
    "LatencyStats",
    "machine_info",
    "markdown_table",
    "measure_latency",
    "measure_times",
    "package_versions",
    "write_results",
]
