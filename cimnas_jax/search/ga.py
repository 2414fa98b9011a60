"""Single-objective genetic algorithm for categorical genomes (evosax-style, pure JAX).

Equivalent in structure to CIMNAS's pymoo GA -- binary tournament with feasibility first,
crossover, mutation, elitist (mu + lambda) survival, duplicate elimination on canonical
genomes -- but with operators made for categorical genes (see ``operators.py``) instead of
real-valued SBX / polynomial mutation on indices followed by rounding.

Population invariant: after every ``tell`` the population is sorted best-first by
(duplicate, violation, fitness); index 0 is the best design so far (elitism).
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from . import operators as ops
from .base import Algorithm, Designs


@struct.dataclass
class GAParams:
    crossover_prob: float = 0.9     # probability a mating uses crossover (else copy of parent A)
    mutation_rate: float = 0.01     # per-gene probability to move to a different index


@struct.dataclass
class GAState:
    population: jax.Array   # int32[mu, G], sorted best-first
    fitness: jax.Array      # float32[mu], +inf = not evaluated / invalid
    violation: jax.Array    # float32[mu], 0 = feasible, +inf = invalid or not evaluated
    hashes: jax.Array       # uint32[mu, 2] internal design keys (ops.design_key_fn)
    generation: jax.Array   # int32, number of completed tell() calls

    @property
    def best_genome(self):
        return self.population[0]

    @property
    def best_fitness(self):
        return self.fitness[0]

    @property
    def best_violation(self):
        return self.violation[0]


class CategoricalEA(Algorithm):
    """What GA and NSGA-II share: validated settings, default parameters and ``ask``
    (the initial population at generation 0, else offspring by crossover + mutation).

    Constructor: ``(space, popsize, n_objectives, **options)`` with the registry's options
    (``num_offspring``, ``crossover``, ``mutation``, ``mutation_slots``, ``archive_size``, ``dedup``);
    an option an algorithm does not use is ignored."""

    def __init__(self, space: Any, popsize: int, n_objectives: int = 1, num_offspring: Optional[int] = None,
                 crossover: str = "uniform",
                 mutation: str = "sparse", mutation_slots: int = 8, archive_size: int = 256,
                 dedup: bool = True):
        if crossover not in ops.CROSSOVERS:
            raise ValueError(f"crossover must be one of {ops.CROSSOVERS}, got {crossover!r}")
        if mutation not in ops.MUTATIONS:
            raise ValueError(f"mutation must be one of {ops.MUTATIONS}, got {mutation!r}")
        if popsize < 2:
            raise ValueError(f"popsize must be >= 2, got {popsize}")
        if not self.accepts(n_objectives):
            raise ValueError(f"{self.name} handles {self.objective_counts} objectives, got {n_objectives}")
        self.n_objectives = int(n_objectives)
        self.archive_size = int(archive_size)
        self.space = space
        self.popsize = int(popsize)
        self.num_offspring = int(num_offspring or popsize)
        self.crossover = crossover
        self.mutation = mutation
        self.mutation_slots = int(mutation_slots)
        self.dedup = dedup
        self.n_genes = int(space.n_genes)
        self.n_choices = np.asarray(space.n_choices, np.int32)
        self.group_ids = np.asarray(space.group_ids, np.int32)
        self.design_key = ops.design_key_fn(space)   # duplicate elimination, internal

    def default_params(self) -> GAParams:
        return GAParams(crossover_prob=0.9, mutation_rate=1.0 / self.n_genes)

    def _offspring(self, key, population, params):
        nw = ops.n_words(self.n_genes, self.mutation, self.mutation_slots)
        bits = ops.counter_bits(ops.seed_words(key), (self.num_offspring, nw))
        return ops.make_offspring(bits, population, self.n_choices, self.group_ids,
                                  self.crossover, params.crossover_prob, params.mutation_rate,
                                  self.mutation, self.mutation_slots)

    def ask(self, key, state, params: GAParams):
        """Candidates to evaluate: the initial population at generation 0, else offspring."""
        if self.num_offspring == self.popsize:
            first = lambda: state.population
        else:
            first = lambda: jnp.asarray(self.space.sample(key, self.num_offspring), jnp.int32)
        x = jax.lax.cond(state.generation == 0, first,
                         lambda: self._offspring(key, state.population, params))
        return x, state

    def rehash(self, state):
        """The state with its population's design keys recomputed (used on resume, so a
        checkpoint written with another key function stays consistent)."""
        return state.replace(hashes=self.design_key(state.population))


class GA(CategoricalEA):
    """mu + lambda GA over ``space`` (needs n_genes, n_choices, group_ids, sample, hash)."""

    name = "ga"
    objective_counts = (1,)

    def init(self, key, params: GAParams) -> GAState:
        pop = jnp.asarray(self.space.sample(key, self.popsize), jnp.int32)
        return GAState(population=pop,
                       fitness=jnp.full((self.popsize,), jnp.inf, jnp.float32),
                       violation=jnp.full((self.popsize,), jnp.inf, jnp.float32),
                       hashes=self.design_key(pop),
                       generation=jnp.zeros((), jnp.int32))

    def tell(self, key, x, fitness, violation, state: GAState, params: GAParams):
        """Elitist (mu + lambda) survival; duplicates (same canonical design) rank last.
        ``fitness`` float32 [P, 1] (or [P]); returns (state, metrics).

        Pool = parents then offspring. One float32 key orders it (not duplicate, feasible
        first, violation, fitness); of several copies of one canonical design the best is
        kept (ties: the parent, as pymoo drops offspring that duplicate the population);
        ``lax.top_k`` (stable: lower index first among equal keys) takes the best mu in
        order, so the population stays sorted best-first.
        """
        fitness = jnp.reshape(fitness, (-1,))
        f, v = ops.sanitise(fitness, violation)
        xh = self.design_key(x)
        pool_x = jnp.concatenate([state.population, x])
        pool_f = jnp.concatenate([state.fitness, f])
        pool_v = jnp.concatenate([state.violation, v])
        pool_h = jnp.concatenate([state.hashes, xh])
        n = pool_f.shape[0]
        key = ops.survival_key(pool_f, pool_v, jnp.zeros((n,), bool))
        if self.dedup:
            key = jnp.where(ops.duplicate_mask_by_key(pool_h, key), -jnp.inf, key)
        _, keep = jax.lax.top_k(key, self.popsize)
        new = GAState(population=pool_x[keep], fitness=pool_f[keep], violation=pool_v[keep],
                      hashes=pool_h[keep], generation=state.generation + 1)
        best = jnp.where(new.violation[0] == 0, new.fitness[0], jnp.inf)
        return new, {"best": best[None], "best_violation": new.violation[0]}

    def final_designs(self, state: GAState) -> Designs:
        """The population, best first (it is kept sorted); unevaluated rows masked out."""
        return Designs(genomes=state.population, objectives=state.fitness[:, None],
                       violation=state.violation, mask=jnp.isfinite(state.violation))
