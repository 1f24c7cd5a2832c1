"""The benchmark harness (`qla-bench` and the scripts in benchmarks/): outside the library's import graph, it builds
and runs our models only through the SDK's public verbs (``qla_sdk.deploy.export_model``, ``qla_sdk.load``).

The suite: ``qla_bench.suite`` (``BenchSettings``, ``run_suite``), rows in ``rows``, subprocesses in ``runner``, core
binding in ``launcher``, backends in ``ours`` / ``peers``, outputs in ``summary`` / ``charts``. Timing and machine
facts come from the library (``qla_sdk.timing``, ``qla_sdk.machine``), which the recipe uses too.
"""

from qla_bench.report import markdown_table, publish_table, write_results
from qla_sdk.machine import machine_info, package_versions
from qla_sdk.timing import LatencyStats, measure_latency, measure_times

__all__ = [
    "LatencyStats",
    "machine_info",
    "markdown_table",
    "measure_latency",
    "measure_times",
    "package_versions",
    "publish_table",
    "write_results",
]
