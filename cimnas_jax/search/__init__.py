"""On-device evolutionary search (GA, NSGA-II) over categorical design spaces, pure JAX."""
from .ga import GA, GAParams, GAState
from .nsga2 import NSGA2, NSGA2State
from .objectives import Constraints, Objective
from .runner import Search, SearchState
from .hypervolume import hv2d, hv_mc, hv_exact, hypervolume
from .pareto import nondominated_rank, crowding_distance, update_archive
from .fitness import (constant_accuracy_hardware_only, hardware_fitness, linear_fitness,
                      mlp_fitness)

__all__ = ["GA", "GAParams", "GAState", "NSGA2", "NSGA2State", "Constraints", "Objective",
           "Search", "SearchState", "hv2d", "hv_mc", "hv_exact", "hypervolume",
           "nondominated_rank", "crowding_distance", "update_archive",
           "constant_accuracy_hardware_only", "hardware_fitness", "linear_fitness",
           "mlp_fitness"]
