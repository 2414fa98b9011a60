"""The search-algorithm protocol (evosax style) that ``Search`` and every CLI rely on.

An algorithm is a small object holding static settings (space, population size, operators) and
four pure, jittable functions over a ``flax.struct`` state:

    state              = algo.init(key, params)
    genomes, state     = algo.ask(key, state, params)                 # int32 [num_offspring, G]
    state, metrics     = algo.tell(key, genomes, fitness, violation, state, params)
    designs            = algo.final_designs(state)                     # Designs, best first

``fitness`` is float32 ``[num_offspring, n_objectives]`` (minimised; +inf = invalid),
``violation`` float32 ``[num_offspring]`` (0 = feasible, +inf = invalid). ``metrics`` is a dict of
scalars and small arrays for the progress log and the history; it always has ``best`` (float32
``[n_objectives]``: the best feasible objective values so far, +inf while none is feasible).
``final_designs`` returns fixed-shape arrays with a ``mask`` so it stays jittable.

Algorithms are looked up by name in ``cimnas_jax.search.registry``; nothing outside an
algorithm's own file branches on its type.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Designs:
    """What an algorithm offers as its result, best first (fixed shapes, ``mask`` marks real rows).

    genomes int32 [N, G]; objectives float32 [N, M]; violation float32 [N]; mask bool [N].
    """

    genomes: jax.Array
    objectives: jax.Array
    violation: jax.Array
    mask: jax.Array


@struct.dataclass
class NoParams:
    """Parameters of an algorithm that has none to tune."""


class Algorithm:
    """Base class: the attributes ``Search`` reads, and defaults for the optional hooks.

    Subclasses set ``name`` and the objective counts they accept (``objective_counts``), define
    ``init``, ``ask``, ``tell``, ``final_designs`` and keep ``popsize`` (designs in the state) and
    ``num_offspring`` (designs asked per generation).
    """

    name: str = "algorithm"
    objective_counts: tuple = (1,)          # numbers of objectives this algorithm can minimise
    popsize: int
    num_offspring: int

    def default_params(self) -> Any:
        return NoParams()

    def init(self, key, params):
        raise NotImplementedError

    def ask(self, key, state, params):
        raise NotImplementedError

    def tell(self, key, genomes, fitness, violation, state, params):
        raise NotImplementedError

    def final_designs(self, state) -> Designs:
        raise NotImplementedError

    def rehash(self, state):
        """The state with any internal design keys recomputed (called on resume, so a checkpoint
        written by another version of the key function stays consistent). Default: unchanged."""
        return state

    @classmethod
    def accepts(cls, n_objectives: int) -> bool:
        return n_objectives in cls.objective_counts


def best_of(designs: Designs) -> jax.Array:
    """float32 [M]: the best feasible value of each objective among ``designs`` (+inf if none)."""
    ok = designs.mask & (designs.violation == 0)
    return jnp.min(jnp.where(ok[:, None], designs.objectives, jnp.inf), axis=0)
