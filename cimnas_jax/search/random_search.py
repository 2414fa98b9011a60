"""Random search: every generation draws fresh uniform genomes; the state keeps the best ones seen.

The simplest baseline a search must beat, and the proof that an algorithm is one file plus one
registry line: nothing in ``Search``, the CLIs or the main job knows it exists.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from . import operators as ops
from .base import Algorithm, Designs


@struct.dataclass
class RandomState:
    population: jax.Array   # int32 [mu, G]: the best designs seen, best first
    fitness: jax.Array      # float32 [mu] (first objective; +inf = none / invalid)
    violation: jax.Array    # float32 [mu]
    hashes: jax.Array       # uint32 [mu, 2] design keys
    generation: jax.Array   # int32


class RandomSearch(Algorithm):
    """Uniform random sampling that keeps the best ``popsize`` distinct designs (first objective)."""

    name = "random"
    objective_counts = (1,)

    def __init__(self, space, popsize: int, n_objectives: int = 1, num_offspring=None, **_unused):
        if popsize < 1:
            raise ValueError(f"popsize must be >= 1, got {popsize}")
        self.space = space
        self.popsize = int(popsize)
        self.num_offspring = int(num_offspring or popsize)
        self.n_objectives = int(n_objectives)
        self.design_key = ops.design_key_fn(space)

    def init(self, key, params) -> RandomState:
        g = jnp.asarray(self.space.sample(key, self.popsize), jnp.int32)
        inf = lambda: jnp.full((self.popsize,), jnp.inf, jnp.float32)   # distinct buffers (donated)
        return RandomState(population=g, fitness=inf(), violation=inf(), hashes=self.design_key(g),
                           generation=jnp.zeros((), jnp.int32))

    def ask(self, key, state, params):
        return jnp.asarray(self.space.sample(key, self.num_offspring), jnp.int32), state

    def tell(self, key, x, fitness, violation, state: RandomState, params):
        f, v = ops.sanitise(jnp.reshape(fitness, (x.shape[0], -1))[:, 0], violation)
        pool_x = jnp.concatenate([state.population, x])
        pool_f = jnp.concatenate([state.fitness, f])
        pool_v = jnp.concatenate([state.violation, v])
        pool_h = jnp.concatenate([state.hashes, self.design_key(x)])
        key = ops.survival_key(pool_f, pool_v, jnp.zeros(pool_f.shape, bool))
        key = jnp.where(ops.duplicate_mask_by_key(pool_h, key), -jnp.inf, key)
        _, keep = jax.lax.top_k(key, self.popsize)
        new = RandomState(population=pool_x[keep], fitness=pool_f[keep], violation=pool_v[keep],
                          hashes=pool_h[keep], generation=state.generation + 1)
        best = jnp.where(new.violation[0] == 0, new.fitness[0], jnp.inf)
        return new, {"best": best[None]}

    def final_designs(self, state: RandomState) -> Designs:
        return Designs(genomes=state.population, objectives=state.fitness[:, None],
                       violation=state.violation, mask=jnp.isfinite(state.violation))

    def rehash(self, state):
        return state.replace(hashes=self.design_key(state.population))
