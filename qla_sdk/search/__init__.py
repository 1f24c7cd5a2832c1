"""Evolutionary search of per-layer token lengths under a MACs or measured-latency budget."""

from qla_sdk.search.config import SearchConfig
from qla_sdk.search.cost import LatencyCost, MacsCost, measure_ms, torch_runner
from qla_sdk.search.evolution import Budget, Candidate, EvolutionConfig, SearchResult, evolve, initial_genes
from qla_sdk.search.genes import Gene, GeneSpace, constant_rate_gene, crossover, late_drop_genes, mutate
from qla_sdk.search.pareto import best_within, dominates, pareto_front

__all__ = [
    "Budget",
    "Candidate",
    "EvolutionConfig",
    "Gene",
    "GeneSpace",
    "LatencyCost",
    "MacsCost",
    "SearchConfig",
    "SearchResult",
    "best_within",
    "constant_rate_gene",
    "crossover",
    "dominates",
    "evolve",
    "initial_genes",
    "late_drop_genes",
    "measure_ms",
    "mutate",
    "pareto_front",
    "torch_runner",
]
