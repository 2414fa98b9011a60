"""On-device evolutionary search over categorical design spaces, pure JAX.

Algorithms follow one protocol (``base.Algorithm``: init / ask / tell / final_designs) and are
found by name in the registry below; ``Search`` runs any of them generation by generation.
"""
from .base import Algorithm, Designs
from .ga import GA, GAParams, GAState
from .nsga2 import NSGA2, NSGA2State
from .random_search import RandomSearch
from .frozen import Frozen, freeze_mask
from .registry import algorithm_entry, algorithm_names, make_algorithm, register_algorithm
from .objectives import Constraints, Objective
from .runner import Search, SearchState
from .hypervolume import hv2d, hv_mc, hv_exact, hypervolume
from .pareto import nondominated_rank, crowding_distance, update_archive
from .fitness import (constant_accuracy_hardware_only, hardware_fitness, linear_fitness,
                      mlp_fitness)

# The registry: one line per algorithm.
register_algorithm("ga", GA, "edap_per_accuracy")
register_algorithm("nsga2", NSGA2, "accuracy_edap", hardware_objective="energy,latency,area")
register_algorithm("random", RandomSearch, "edap_per_accuracy")

__all__ = ["Algorithm", "Designs", "Frozen", "freeze_mask", "GA", "GAParams", "GAState", "NSGA2", "NSGA2State", "RandomSearch",
           "algorithm_entry", "algorithm_names", "make_algorithm", "register_algorithm",
           "Constraints", "Objective", "Search", "SearchState", "hv2d", "hv_mc", "hv_exact", "hypervolume",
           "nondominated_rank", "crowding_distance", "update_archive",
           "constant_accuracy_hardware_only", "hardware_fitness", "linear_fitness",
           "mlp_fitness"]
