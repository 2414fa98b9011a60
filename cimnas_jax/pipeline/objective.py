"""What a run minimises: the ``Objective`` (with its ``Constraints``) built from a configuration.

Shared by the main job and ``cimnas-jax search``: the objective's name, coefficients and bounds,
the algorithm's default when none is named, and the check that the algorithm can minimise that
many objectives. Errors are ``ConfigError`` naming the flag and the allowed values.
"""
from __future__ import annotations

from cimnas_jax.pipeline.config import ConfigError


def _kv(text: str, flag: str) -> dict:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ConfigError(f"--{flag}: expected term=value pairs, got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def parse_weights(coefficients: str, bounds: str) -> tuple[dict | None, dict | None]:
    """``--coefficients=term=w,...`` and ``--bounds=term=lo:hi,...`` of the priority / weighted-sum
    objectives as ({term: w} or None, {term: (lo, hi)} or None); ConfigError naming the flag, and
    ValueError for a number that does not parse (the caller names the objective)."""
    coefs = {k: float(x) for k, x in _kv(coefficients, "coefficients").items()}
    out = {}
    for k, x in _kv(bounds, "bounds").items():
        if ":" not in x:
            raise ConfigError(f"--bounds: expected term=lo:hi, got {k}={x}")
        out[k] = tuple(float(t) for t in x.split(":"))
    return coefs or None, out or None


def objective_name(cfg) -> str:
    """The objective named by the configuration, or the algorithm's default."""
    from cimnas_jax.search import algorithm_entry
    entry = algorithm_entry(cfg.algorithm)
    if cfg.objective:
        return cfg.objective
    return entry.hardware_objective if cfg.accuracy_source == "constant" else entry.default_objective


def build_objective(cfg):
    """``Objective`` for ``cfg`` (fields: algorithm, objective, coefficients, bounds, capacity,
    area_limit_mm2, accuracy_floor, accuracy_source)."""
    from cimnas_jax.search import algorithm_entry
    from cimnas_jax.search.objectives import (MULTI_PRESETS, MULTI_TERMS, SINGLE_CHOICES, Constraints,
                                              Objective)
    try:
        entry = algorithm_entry(cfg.algorithm)
    except ValueError as e:
        raise ConfigError(f"--algorithm={cfg.algorithm!r}: {e}") from None
    cons = Constraints(capacity=bool(cfg.capacity), area_limit_mm2=cfg.area_limit_mm2 or None,
                       accuracy_floor=cfg.accuracy_floor or None)
    name = objective_name(cfg)
    looks_multi = "," in name or name in MULTI_PRESETS
    multi = (1 not in entry.objective_counts) or (looks_multi and len(entry.objective_counts) > 1)
    weighted = name in ("priority", "weighted_sum")
    if (cfg.coefficients or cfg.bounds) and not weighted:
        raise ConfigError(f"--coefficients/--bounds are used only by --objective=priority or weighted_sum, "
                          f"not by --objective={name!r}")
    try:
        if multi:
            obj = Objective.multi(name, cons)
        else:
            coefs, bounds = parse_weights(cfg.coefficients, cfg.bounds)
            obj = Objective.single(name, cons, coefs, bounds)
    except ConfigError:
        raise
    except ValueError as e:
        allowed = (f"2-4 comma-separated terms of {MULTI_TERMS} or a preset {tuple(MULTI_PRESETS)}" if multi
                   else f"{SINGLE_CHOICES}")
        raise ConfigError(f"--objective={name!r} with --algorithm={cfg.algorithm}: {e}; "
                          f"{cfg.algorithm} needs {entry.describe_objectives()}: {allowed}") from None
    if obj.n_objectives not in entry.objective_counts:
        raise ConfigError(f"--objective={name!r} has {obj.n_objectives} objective(s); --algorithm="
                          f"{cfg.algorithm} needs {entry.describe_objectives()}")
    return obj

