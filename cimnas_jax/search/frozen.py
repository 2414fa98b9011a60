"""``Frozen``: any algorithm with some genes held at fixed values (a combinator over the protocol).

    algo = Frozen(make_algorithm("ga", space, 256), mask, values)

Every genome the wrapped algorithm asks for (and its initial population) gets ``values`` where
``mask`` is set, so a search explores only the free genes: e.g. hardware-only optimisation with the
baseline network fixed, or network + quantization on the baseline chip. Nothing else changes: the
wrapped state, tell and final designs are the inner algorithm's.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .base import Algorithm


@struct.dataclass
class FrozenParams:
    """The wrapped algorithm's params and the frozen genes: ``mask`` bool [G], ``values`` int32 [G].
    Params, not constants of the algorithm, so searches that differ only in which genes are frozen
    run one compiled program (``Search`` passes params into its jitted generations)."""
    inner: Any
    mask: jax.Array
    values: jax.Array


class Frozen(Algorithm):
    """``inner`` with the genes in ``mask`` (bool [G]) fixed to ``values`` (int32 [G])."""

    def __init__(self, inner, mask, values):
        self.inner = inner
        self.mask = np.asarray(mask, bool)
        self.values = np.asarray(values, np.int32)
        self.name = inner.name
        self.objective_counts = inner.objective_counts
        self.popsize, self.num_offspring = inner.popsize, inner.num_offspring
        self.n_objectives = getattr(inner, "n_objectives", 1)

    @staticmethod
    def _fix(genomes, params):
        return jnp.where(params.mask, params.values, genomes).astype(jnp.int32)

    def wrap_params(self, inner_params) -> FrozenParams:
        """These frozen genes around the wrapped algorithm's ``inner_params``."""
        return FrozenParams(inner=inner_params, mask=jnp.asarray(self.mask), values=jnp.asarray(self.values))

    def default_params(self):
        return self.wrap_params(self.inner.default_params())

    def init(self, key, params):
        state = self.inner.init(key, params.inner)
        if hasattr(state, "population"):        # the initial population, where the state keeps one
            state = self.inner.rehash(state.replace(population=self._fix(state.population, params)))
        return state

    def ask(self, key, state, params):
        x, state = self.inner.ask(key, state, params.inner)
        return self._fix(x, params), state

    def tell(self, key, genomes, fitness, violation, state, params):
        return self.inner.tell(key, genomes, fitness, violation, state, params.inner)

    def final_designs(self, state):
        return self.inner.final_designs(state)

    def rehash(self, state):
        return self.inner.rehash(state)


def freeze_mask(space, spec: str) -> np.ndarray:
    """bool [G] from a comma-separated list of gene groups (``software``, ``quantization``,
    ``hardware-device``, ``hardware-circuit``, ``hardware-architecture``, or ``hardware`` for all
    three) and/or gene names. Raises ValueError naming an unknown entry."""
    mask = np.zeros(space.n_genes, bool)
    for item in filter(None, (s.strip() for s in spec.split(","))):
        groups = [g for g in space.group_names if g == item or (item == "hardware" and g.startswith("hardware"))]
        if groups:
            mask |= np.isin(np.asarray(space.group_names)[space.group_ids], groups)
        elif item in space.index:
            mask[space.index[item]] = True
        else:
            raise ValueError(f"unknown gene group or gene {item!r}; allowed groups: "
                             f"{', '.join(space.group_names)}, hardware, or a gene name of {space.name}")
    return mask
