"""The relaxed loss: the search's own ``Objective`` plus its constraints as penalties.

  loss_k = log objective_k + penalty x violation_k

* ``log objective``: products (``edap_per_accuracy`` = energy*latency*area/accuracy, ...) are
  summed in log space, sum_t s_t log term_t (no float32 under/overflow, and a relative change
  of any factor moves the loss by the same amount); ``priority`` / ``weighted_sum`` use the
  Objective's own ``values`` (fixed bounds, exponents, weights), then the log.
* ``violation``: ``objective.constraints.violation`` -- the same relative hinge terms the search
  uses (capacity cells_needed / cells_available - 1, area / limit - 1, (floor - accuracy) /
  floor) -- with the validity gate left out (a relaxed design has no validity bit), plus the
  model's ``overflow`` (feature maps larger than the GLB allows, the analytic model's
  per-layer ``ok``) where the soft fitness reports it.

Multi-objective sets are not supported (refinement follows one scalar).
"""
from __future__ import annotations

import jax.numpy as jnp

from cimnas_jax.search.objectives import Objective, _term


def check_objective(objective: Objective) -> None:
    if objective.kind == "multi":
        raise ValueError(f"refinement needs a single objective; {objective.name!r} has "
                         f"{objective.n_objectives} (use Objective.single)")


def log_objective(objective: Objective, m: dict) -> jnp.ndarray:
    """log of the objective value ``[P]`` (minimised)."""
    if objective.kind == "product":
        out = 0.0
        for t, s in objective.terms:
            out = out + s * jnp.log(_term(m, t))
        return jnp.asarray(out, jnp.float32)
    return jnp.log(jnp.maximum(objective.values(m)[:, 0], 1e-30))


def soft_violation(objective: Objective, m: dict) -> jnp.ndarray:
    """Relative constraint violation ``[P]`` (0 = feasible) of relaxed metrics."""
    ones = jnp.ones(jnp.shape(m["energy_j"]), bool)
    v = objective.constraints.violation({**m, "valid": ones})
    return v + m.get("overflow", 0.0)


def relaxed_loss(objective: Objective, m: dict, penalty: float) -> jnp.ndarray:
    """Per-design loss ``[P]``: log objective + penalty x violation."""
    return log_objective(objective, m) + penalty * soft_violation(objective, m)
