"""Algorithms by name. Adding one is a file with its class plus one ``register_algorithm`` line in
``cimnas_jax/search/__init__.py`` (or in the user's own code, before the run starts).

    algo = make_algorithm("ga", space, popsize=256, n_objectives=1, crossover="uniform")

Every algorithm is built with the same keyword options (``OPTIONS``); each reads the ones it uses
and ignores the rest, so CLIs pass their flags through without knowing which algorithm runs.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

OPTIONS = ("num_offspring", "crossover", "mutation", "mutation_slots", "archive_size", "dedup")


@dataclasses.dataclass(frozen=True)
class AlgorithmEntry:
    name: str
    factory: Callable      # (space, popsize, n_objectives, **options) -> Algorithm
    objective_counts: tuple
    default_objective: str  # used when the user names none
    hardware_objective: str  # ... and when accuracy is a constant (a hardware-only search)
    doc: str = ""

    def describe_objectives(self) -> str:
        c = self.objective_counts
        if c == (1,):
            return "a single objective"
        lo, hi = min(c), max(c)
        return f"{lo}-{hi} objectives" if lo > 1 else f"1-{hi} objectives"


_ALGORITHMS: dict[str, AlgorithmEntry] = {}


def register_algorithm(name: str, cls, default_objective: str, hardware_objective: str | None = None,
                       doc: str = "") -> None:
    """Register ``cls`` (an ``Algorithm`` subclass whose constructor takes
    ``(space, popsize, n_objectives, **options)``) under ``name``, with the objective it minimises
    when the user names none (and, for hardware-only searches, ``hardware_objective``)."""
    first_line = ((cls.__doc__ or "").strip().splitlines() or [name])[0]
    _ALGORITHMS[name] = AlgorithmEntry(name, cls, tuple(cls.objective_counts), default_objective,
                                       hardware_objective or default_objective, doc or first_line)


def algorithm_names() -> tuple[str, ...]:
    return tuple(_ALGORITHMS)


def algorithm_entry(name: str) -> AlgorithmEntry:
    if name not in _ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; allowed: {', '.join(_ALGORITHMS)}")
    return _ALGORITHMS[name]


def make_algorithm(name: str, space, popsize: int, n_objectives: int = 1, **options):
    """Build the registered algorithm ``name`` for ``space``; raises ValueError (naming the
    algorithm and what it accepts) for an objective count it cannot handle."""
    entry = algorithm_entry(name)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown algorithm option(s) {unknown}; allowed: {list(OPTIONS)}")
    if n_objectives not in entry.objective_counts:
        raise ValueError(f"algorithm {name!r} needs {entry.describe_objectives()}, got {n_objectives}")
    return entry.factory(space, popsize, n_objectives, **options)
