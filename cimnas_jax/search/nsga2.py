"""NSGA-II for 2-4 objectives over categorical genomes (evosax-style, pure JAX).

Survival: merge parents and offspring, drop duplicates (canonical hash), rank feasible
entries by non-dominated sorting, break ties by crowding distance; infeasible entries come
after all feasible ones ordered by total violation (Deb's constrained domination, with the
feasible-first rule). The population is kept in that order, so the binary tournament is
"smaller index wins" (crowded comparison). A fixed-capacity archive keeps every
non-dominated feasible design seen so far.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
from flax import struct

from . import operators as ops
from . import pareto
from .base import Designs
from .ga import CategoricalEA, GAParams


@struct.dataclass
class NSGA2State:
    population: jax.Array   # int32[mu, G], sorted by (rank, -crowding) / violation
    objectives: jax.Array   # float32[mu, M] (minimised), +inf = not evaluated / invalid
    violation: jax.Array    # float32[mu]
    hashes: jax.Array       # uint32[mu, 2]
    rank: jax.Array         # int32[mu] front index (large = infeasible / unranked)
    crowding: jax.Array     # float32[mu]
    archive: pareto.Archive
    generation: jax.Array   # int32


class NSGA2(CategoricalEA):
    """NSGA-II over ``space`` with ``n_objectives`` in 2..4."""

    name = "nsga2"
    objective_counts = (2, 3, 4)
    # non-dominated sort (F, active, stop_at) -> rank and first-front test (F, active) -> bool; the
    # dense O(N^2)-memory versions (pareto.*_dense) can be swapped in as a benchmark peer
    nondominated_rank = staticmethod(pareto.nondominated_rank)
    first_front = staticmethod(pareto.first_front)

    def __init__(self, space: Any, popsize: int, n_objectives: int, **options):
        super().__init__(space, popsize, n_objectives, **options)

    def init(self, key, params: GAParams) -> NSGA2State:
        mu, m = self.popsize, self.n_objectives
        pop = jnp.asarray(self.space.sample(key, mu), jnp.int32)
        return NSGA2State(population=pop,
                          objectives=jnp.full((mu, m), jnp.inf, jnp.float32),
                          violation=jnp.full((mu,), jnp.inf, jnp.float32),
                          hashes=self.design_key(pop),
                          rank=jnp.full((mu,), pareto.UNRANKED, jnp.int32),
                          crowding=jnp.zeros((mu,), jnp.float32),
                          archive=pareto.empty_archive(self.archive_size, self.n_genes, m),
                          generation=jnp.zeros((), jnp.int32))

    def rehash(self, state: NSGA2State) -> NSGA2State:
        """Population and (filled) archive design keys recomputed (used on resume)."""
        a = state.archive
        ah = jnp.where(a.filled[:, None], self.design_key(a.genomes), jnp.uint32(0))
        return state.replace(hashes=self.design_key(state.population),
                             archive=a.replace(hashes=ah))

    def tell(self, key, x, objectives, violation, state: NSGA2State, params: GAParams):
        """Non-dominated survival plus the archive update; returns (state, metrics)."""
        F, v = ops.sanitise(jnp.reshape(objectives, (x.shape[0], self.n_objectives)), violation)
        xh = self.design_key(x)
        archive = pareto.update_archive(state.archive, x, F, v, xh, front_fn=self.first_front)
        pool_x = jnp.concatenate([x, state.population])   # offspring first: ties keep the offspring
        pool_F = jnp.concatenate([F, state.objectives])
        pool_v = jnp.concatenate([v, state.violation])
        pool_h = jnp.concatenate([xh, state.hashes])
        n = pool_v.shape[0]
        if self.dedup:   # keep the best copy: feasible first, then first objective
            pre = ops.survival_key(pool_F[:, 0], pool_v, jnp.zeros((n,), bool))
            dup = ops.duplicate_mask_by_key(pool_h, pre)
        else:
            dup = jnp.zeros((n,), bool)
        feasible = (pool_v == 0) & ~dup
        rank = self.nondominated_rank(pool_F, feasible, stop_at=self.popsize)
        crowd = pareto.crowding_distance(pool_F, rank)
        idx = jnp.arange(n, dtype=jnp.int32)
        _, _, _, _, order = jax.lax.sort(
            (dup.astype(jnp.int32), rank, pool_v, -crowd, idx), num_keys=4, is_stable=True)
        keep = order[: self.popsize]
        new = NSGA2State(population=pool_x[keep], objectives=pool_F[keep],
                         violation=pool_v[keep], hashes=pool_h[keep], rank=rank[keep],
                         crowding=crowd[keep], archive=archive,
                         generation=state.generation + 1)
        best = jnp.min(jnp.where(archive.filled[:, None], archive.objectives, jnp.inf), axis=0)
        return new, {"best": best, "archive_size": jnp.sum(archive.filled)}

    def final_designs(self, state: NSGA2State) -> Designs:
        """The Pareto archive (every non-dominated feasible design seen)."""
        a = state.archive
        return Designs(genomes=a.genomes, objectives=a.objectives,
                       violation=jnp.where(a.filled, 0.0, jnp.inf).astype(jnp.float32), mask=a.filled)
