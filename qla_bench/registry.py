"""Every backend the suite can time, by name: ours (``qla_bench.ours``) and the peers' (``qla_bench.peers``)."""

from __future__ import annotations

from qla_bench import ours, peers
from qla_bench.builders import Builder
from qla_sdk.errors import ConfigError

BUILDERS: dict[str, Builder] = {**ours.BUILDERS, **peers.BUILDERS}


def get_builder(backend: str) -> Builder:
    if backend not in BUILDERS:
        raise ConfigError(f"unknown backend {backend!r}; known backends: {', '.join(sorted(BUILDERS))}")
    return BUILDERS[backend]
