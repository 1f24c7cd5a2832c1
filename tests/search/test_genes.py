import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qla_sdk.errors import ConfigError
from qla_sdk.modeling import LengthConfig
from qla_sdk.search.genes import (
    GeneSpace,
    check_gene,
    constant_rate_gene,
    constant_rate_genes,
    crossover,
    late_drop_genes,
    mutate,
)


def non_increasing(gene):
    return all(b <= a for a, b in itertools.pairwise(gene))


@st.composite
def genes(draw, max_layers=8, max_len=200):
    seq_len = draw(st.integers(2, max_len))
    layers = draw(st.integers(1, max_layers))
    values = sorted(draw(st.lists(st.integers(1, seq_len), min_size=layers, max_size=layers)), reverse=True)
    return seq_len, tuple(values)


def test_smallest_gene_is_lats_constant_drop():
    # LAT's sample_length_configuration(384, 6, length_drop_ratio=0.2): ceil(length * 0.8) at every layer.
    assert constant_rate_gene(384, 6, 0.2) == (308, 247, 198, 159, 128, 103)


def test_constant_rate_genes_lie_between_full_and_smallest():
    genes_ = constant_rate_genes(128, 6, 0.2, count=10)
    full, smallest = (128,) * 6, constant_rate_gene(128, 6, 0.2)
    assert len(genes_) == len(set(genes_)) >= 8
    for gene in genes_:
        assert non_increasing(gene)
        assert all(s <= g <= f for s, g, f in zip(smallest, gene, full, strict=True))
    assert sorted(genes_, key=sum, reverse=True) == genes_  # rates grow, so lengths shrink


@pytest.mark.parametrize("layers", [2, 4, 6])
def test_late_drop_genes_keep_the_first_layers_whole_then_drop_at_a_constant_rate(layers):
    rates = (0.3, 0.7)
    genes_ = late_drop_genes(100, layers, rates)
    expected = [
        (100,) * start + constant_rate_gene(100, layers - start, rate) for start in range(1, layers) for rate in rates
    ]
    assert genes_ == expected and len(set(genes_)) == len(genes_) == 2 * (layers - 1)
    for gene in genes_:
        check_gene(gene, layers, 100)
        start = gene.index(next(v for v in gene if v < 100))
        assert start >= 1 and gene[start] in (70, 30)  # the first dropping layer drops exactly its rate


def test_late_drop_genes_without_rates_or_with_repeats():
    assert late_drop_genes(100, 6, ()) == []
    assert late_drop_genes(100, 3, (0.5, 0.5)) == [(100, 50, 25), (100, 100, 50)]


def test_constant_rate_gene_respects_min_length():
    assert constant_rate_gene(8, 12, 0.5, min_length=2)[-1] == 2


@settings(max_examples=200, deadline=None)
@given(genes(), st.integers(0, 10_000), st.floats(0.05, 1.0))
def test_mutation_keeps_genes_non_increasing_and_in_range(case, seed, prob):
    seq_len, gene = case
    child = mutate(gene, random.Random(seed), seq_len, prob, min_length=1)
    assert len(child) == len(gene)
    assert non_increasing(child)
    assert all(1 <= v <= seq_len for v in child)
    check_gene(child, len(gene), seq_len)


def test_mutation_with_probability_one_changes_within_neighbours():
    gene = (100, 80, 60, 40)
    for seed in range(50):
        child = mutate(gene, random.Random(seed), 128, 1.0)
        # layer i is drawn from [gene[i + 1], child[i - 1]]
        assert child[0] >= gene[1] and child[1] >= gene[2] and child[2] >= gene[3]


@settings(max_examples=200, deadline=None)
@given(genes(), genes())
def test_crossover_is_mean_rounded_up_and_non_increasing(a, b):
    (_, first), (_, second) = a, b
    n = min(len(first), len(second))
    first, second = first[:n], second[:n]
    child = crossover(first, second)
    assert non_increasing(child)
    assert all(
        min(x, y) <= c <= max(x, y) and 2 * c - (x + y) in (0, 1) for x, y, c in zip(first, second, child, strict=True)
    )


def test_crossover_rounds_up():
    assert crossover((10, 7), (9, 6)) == (10, 7)


@pytest.mark.parametrize(
    "gene, message",
    [((5, 6), "non-increasing"), ((5,), "need 2 lengths"), ((0, 0), "need 2 lengths"), ((9, 1), "need 2 lengths")],
)
def test_check_gene_rejects_bad_genes(gene, message):
    with pytest.raises(ConfigError, match=message):
        check_gene(gene, 2, 8)


@pytest.mark.parametrize(
    "ratio, gene, expected",
    [
        (False, (128, 90, 3), LengthConfig((128, 90, 3), reference_length=128)),  # counts carry their length
        (True, (100, 75, 3), LengthConfig((1.0, 0.75, 0.03))),
    ],
)
def test_gene_space_maps_genes_to_length_configs(ratio, gene, expected):
    space = GeneSpace(num_layers=3, seq_len=128 if not ratio else 100, ratio=ratio)
    assert space.length_config(gene) == expected
    assert space.full() == (space.seq_len,) * 3


def test_gene_space_validates():
    with pytest.raises(ConfigError, match="seq_len=1"):
        GeneSpace(2, 1)
