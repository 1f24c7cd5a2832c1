"""Genes: one non-increasing length per layer. Initial population, mutation and crossover.

A gene is a tuple of ints, the tokens each layer keeps out of ``seq_len``. Ratio genes (for unpadded inference)
are the same ints on a grid: a gene ``g`` with ``seq_len = 100`` means the ratios ``g[i] / 100``, so the
evolution never deals with floats and stays exact and deterministic.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

from qla_sdk.errors import ConfigError
from qla_sdk.modeling.length import LengthConfig

Gene = tuple[int, ...]


def constant_rate_gene(seq_len: int, num_layers: int, rate: float, min_length: int = 1) -> Gene:
    """Every layer drops ``rate`` of its input (rounded so that at least the share ``1 - rate`` stays).

    The same rule as LAT's ``sample_length_configuration(length_drop_ratio=rate)``.
    """
    length, gene = seq_len, []
    for _ in range(num_layers):
        length = max(min_length, math.ceil(length * (1.0 - rate) - 1e-9))
        gene.append(length)
    return tuple(gene)


def constant_rate_genes(seq_len: int, num_layers: int, bound: float, count: int, min_length: int = 1) -> list[Gene]:
    """``count`` genes with drop rates evenly spaced strictly between 0 (full length) and ``bound`` (smallest)."""
    rates = [bound * (k + 1) / (count + 1) for k in range(count)]
    genes: list[Gene] = []
    for rate in rates:
        gene = constant_rate_gene(seq_len, num_layers, rate, min_length)
        if gene not in genes:  # short sequences map neighbouring rates onto the same gene
            genes.append(gene)
    return genes


def late_drop_genes(seq_len: int, num_layers: int, rates: tuple[float, ...], min_length: int = 1) -> list[Gene]:
    """For each layer but the first and each rate: the layers before it keep every token, it and the later layers
    drop ``rate`` each.

    Redundancy grows with depth (PoWER-BERT), and a layer that drops nothing pays no significance or selection, so
    these genes reach low costs without touching the early layers. Constant-rate genes, and mutants of them (a
    layer can only move between its neighbours), rarely get there: keeping the first layers whole means a step of
    many layers at once.
    """
    genes: list[Gene] = []
    for start in range(1, num_layers):
        for rate in rates:
            gene = (seq_len,) * start + constant_rate_gene(seq_len, num_layers - start, rate, min_length)
            if gene not in genes:
                genes.append(gene)
    return genes


def mutate(gene: Gene, rng: random.Random, seq_len: int, prob: float, min_length: int = 1) -> Gene:
    """Each layer, with probability ``prob``, takes a length between the next layer's and the previous one's.

    The previous layer is already mutated and the next is not yet, so the gene stays non-increasing.
    """
    out: list[int] = []
    for i, value in enumerate(gene):
        if rng.random() < prob:
            upper = seq_len if i == 0 else out[i - 1]
            lower = gene[i + 1] if i + 1 < len(gene) else min_length
            value = rng.randint(min(lower, upper), upper)
        out.append(value)
    return tuple(out)


def crossover(first: Gene, second: Gene) -> Gene:
    """Element-wise mean rounded up (the mean of two non-increasing genes is non-increasing)."""
    return tuple((a + b + 1) // 2 for a, b in zip(first, second, strict=True))


def check_gene(gene: Gene, num_layers: int, seq_len: int) -> None:
    if len(gene) != num_layers or any(not 1 <= v <= seq_len for v in gene):
        raise ConfigError(f"gene {gene}: need {num_layers} lengths in [1, {seq_len}]")
    if any(b > a for a, b in itertools.pairwise(gene)):
        raise ConfigError(f"gene {gene} grows from one layer to the next; lengths must be non-increasing")


@dataclass(frozen=True)
class GeneSpace:
    """How a gene becomes the ``LengthConfig`` a model runs with.

    ``ratio=False``: token counts at the padded length ``seq_len``. ``ratio=True``: ratios with ``seq_len`` steps
    (``steps=100`` gives 1% resolution) of each input's real length.
    """

    num_layers: int
    seq_len: int
    ratio: bool = False
    keep_cls: bool = True

    def __post_init__(self) -> None:
        if self.num_layers < 1:
            raise ConfigError(f"num_layers={self.num_layers}: the model needs at least one layer")
        if self.seq_len < 2:
            raise ConfigError(f"seq_len={self.seq_len}: need at least 2 (tokens, or ratio steps) to drop anything")

    def length_config(self, gene: Gene) -> LengthConfig:
        if self.ratio:
            return LengthConfig(tuple(round(v / self.seq_len, 6) for v in gene), self.keep_cls)
        return LengthConfig(tuple(int(v) for v in gene), self.keep_cls, reference_length=self.seq_len)

    def full(self) -> Gene:
        return (self.seq_len,) * self.num_layers
