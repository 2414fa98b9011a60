"""Objectives and constraints: metrics dict -> (objectives float32[P, M], violation float32[P]).

A *fitness* is any pure JAX function ``genomes int32[P, G] -> metrics`` with keys
``energy_j, latency_s, area_mm2, accuracy, valid, cells_needed, cells_available`` (all [P]).
Everything here is minimised; accuracy enters as ``error = 1 - accuracy`` in multi-objective
sets and as a divisor in the CIMNAS-style products.

Single objectives (``Objective.single``):
  * products of metrics written with ``*`` and ``/``: ``energy*latency*area/accuracy``
    (= "edap_per_accuracy", CIMNAS's default), ``energy*latency*area`` ("edap"),
    ``energy*latency`` ("edp"), ``energy``, ``latency``, ``area``, ...
  * ``priority``: CIMNAS's priority-based weighted product  prod_k norm_k ** c_k  with
    norm_k = (x_k - lo_k) / (hi_k - lo_k) min-max normalised with FIXED user bounds
    (fixed so the fitness of a design does not change during the run), plus a small floor
    eps so a term at its lower bound does not zero the product;
  * ``weighted_sum``: sum_k w_k * norm_k with the same normalisation.
Multi-objective sets (``Objective.multi``): any 2-4 of ``error, energy, latency, area,
edap, edp``; presets "accuracy_edap" = (error, edap) and "accuracy_energy_latency_area".

Constraints (total violation, 0 = feasible, each term relative so they add up sensibly):
  capacity      max(0, cells_needed / cells_available - 1)
  area          max(0, area_mm2 / area_limit_mm2 - 1)     (CIMNAS: 800 mm^2 = 8 cm^2)
  accuracy      max(0, (accuracy_floor - accuracy) / accuracy_floor)
A design with valid=False or any non-finite metric gets violation +inf and objectives +inf:
it never ranks as good.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Optional, Sequence

import jax.numpy as jnp

METRIC_KEYS = ("energy_j", "latency_s", "area_mm2", "accuracy", "valid",
               "cells_needed", "cells_available")
BASE_TERMS = {"energy": "energy_j", "latency": "latency_s", "area": "area_mm2",
              "accuracy": "accuracy", "error": None}
ALIASES = {
    "edap_per_accuracy": "energy*latency*area/accuracy",
    "edap": "energy*latency*area",
    "edp": "energy*latency",
    "eda": "energy*latency*area",
}
MULTI_TERMS = ("error", "energy", "latency", "area", "edap", "edp")
MULTI_PRESETS = {
    "accuracy_edap": ("error", "edap"),
    "accuracy_energy_latency_area": ("error", "energy", "latency", "area"),
}
SINGLE_CHOICES = tuple(ALIASES) + ("energy", "latency", "area", "priority", "weighted_sum",
                                   "<product such as energy*latency/accuracy>")


def _term(metrics, name):
    if name == "error":
        return 1.0 - metrics["accuracy"]
    if name == "edap":
        return metrics["energy_j"] * metrics["latency_s"] * metrics["area_mm2"]
    if name == "edp":
        return metrics["energy_j"] * metrics["latency_s"]
    return metrics[BASE_TERMS[name]]


def parse_product(expr: str):
    """'energy*latency/accuracy' -> ((term, +1|-1), ...); raises naming allowed terms."""
    expr = ALIASES.get(expr, expr).replace(" ", "")
    out, sign, tok = [], 1, ""
    for ch in expr + "*":
        if ch in "*/":
            if tok not in BASE_TERMS or tok == "error":
                raise ValueError(f"objective term {tok!r} in {expr!r}: allowed terms are "
                                 f"energy, latency, area, accuracy joined by '*' or '/'")
            out.append((tok, sign))
            sign, tok = (1 if ch == "*" else -1), ""
        else:
            tok += ch
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Constraints:
    capacity: bool = True
    area_limit_mm2: Optional[float] = 800.0
    accuracy_floor: Optional[float] = None

    def __post_init__(self):
        if self.area_limit_mm2 is not None and not self.area_limit_mm2 > 0:
            raise ValueError(f"area_limit_mm2 must be > 0 or None, got {self.area_limit_mm2}")
        if self.accuracy_floor is not None and not 0 < self.accuracy_floor <= 1:
            raise ValueError(f"accuracy_floor must be in (0, 1] or None, got {self.accuracy_floor}")

    def violation(self, m):
        """Total relative violation float32[P] (0 = feasible, +inf = invalid)."""
        e = m["energy_j"]
        v = jnp.zeros(jnp.shape(e), jnp.float32)
        if self.capacity:
            v = v + jnp.maximum(0.0, m["cells_needed"] / m["cells_available"] - 1.0)
        if self.area_limit_mm2 is not None:
            v = v + jnp.maximum(0.0, m["area_mm2"] / self.area_limit_mm2 - 1.0)
        if self.accuracy_floor is not None:
            v = v + jnp.maximum(0.0, (self.accuracy_floor - m["accuracy"]) / self.accuracy_floor)
        finite = jnp.isfinite(v)
        for k in ("energy_j", "latency_s", "area_mm2", "accuracy"):
            finite = finite & jnp.isfinite(m[k])
        ok = jnp.asarray(m["valid"], bool) & finite
        return jnp.where(ok, v, jnp.inf).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Objective:
    """Static description of what is minimised (hashable: usable under jit)."""
    kind: str                                  # "product" | "priority" | "weighted_sum" | "multi"
    terms: tuple = ()                          # product: ((name, +-1), ...); multi: names
    coefficients: tuple = ()                   # priority exponents / weighted-sum weights
    bounds: tuple = ()                         # ((lo, hi), ...) per term, fixed
    name: str = ""
    constraints: Constraints = Constraints()

    @property
    def n_objectives(self) -> int:
        return len(self.terms) if self.kind == "multi" else 1

    @property
    def names(self) -> tuple:
        return tuple(self.terms) if self.kind == "multi" else (self.name,)

    def values(self, m):
        """Objective values float32[P, M] (minimised), before sanitising."""
        if self.kind == "product":
            logv = 0.0
            for t, s in self.terms:   # in log space: no float32 under/overflow of products
                logv = logv + s * jnp.log(_term(m, t))
            out = jnp.exp(logv)[:, None]
        elif self.kind in ("priority", "weighted_sum"):
            acc = 0.0 if self.kind == "weighted_sum" else 1.0
            for (t, (lo, hi)), c in zip(zip(self.terms, self.bounds), self.coefficients):
                norm = jnp.clip((_term(m, t) - lo) / (hi - lo), 0.0, None)
                if self.kind == "weighted_sum":
                    acc = acc + c * norm
                else:
                    acc = acc * (norm + 1e-3) ** c
            out = jnp.asarray(acc, jnp.float32)[:, None]
        else:
            out = jnp.stack([_term(m, t) for t in self.terms], axis=-1)
        return out.astype(jnp.float32)

    def __call__(self, m):
        """metrics -> (objectives float32[P, M], violation float32[P]); bad -> +inf both."""
        F = self.values(m)
        v = self.constraints.violation(m)
        bad = ~jnp.isfinite(v) | ~jnp.all(jnp.isfinite(F), axis=-1)
        return jnp.where(bad[:, None], jnp.inf, F), jnp.where(bad, jnp.inf, v)

    # ------------------------------------------------------------------ constructors
    @staticmethod
    def single(name: str = "edap_per_accuracy", constraints: Constraints = Constraints(),
               coefficients: Optional[Mapping[str, float]] = None,
               bounds: Optional[Mapping[str, Sequence[float]]] = None) -> "Objective":
        if name in ("priority", "weighted_sum"):
            if not coefficients:
                raise ValueError(f"objective {name!r} needs coefficients, e.g. "
                                 "{'energy': 1, 'latency': 1, 'area': 1, 'error': 2}")
            terms, coefs, bnds = [], [], []
            for t, c in coefficients.items():
                if t not in MULTI_TERMS:
                    raise ValueError(f"{name} term {t!r}: allowed {MULTI_TERMS}")
                if not bounds or t not in bounds:
                    raise ValueError(f"{name} term {t!r} needs fixed (lo, hi) bounds for "
                                     "min-max normalisation")
                lo, hi = map(float, bounds[t])
                if not hi > lo:
                    raise ValueError(f"{name} bounds for {t!r} need hi > lo, got {(lo, hi)}")
                terms.append(t); coefs.append(float(c)); bnds.append((lo, hi))
            return Objective(kind=name, terms=tuple(terms), coefficients=tuple(coefs),
                             bounds=tuple(bnds), name=name, constraints=constraints)
        try:
            terms = parse_product(name)
        except ValueError as e:
            raise ValueError(f"objective {name!r} unknown: allowed {SINGLE_CHOICES} ({e})")
        return Objective(kind="product", terms=terms, name=name, constraints=constraints)

    @staticmethod
    def multi(names="accuracy_edap", constraints: Constraints = Constraints()) -> "Objective":
        terms = MULTI_PRESETS.get(names) if isinstance(names, str) else None
        if terms is None:
            terms = tuple(names.split(",")) if isinstance(names, str) else tuple(names)
        bad = [t for t in terms if t not in MULTI_TERMS]
        if bad or not 2 <= len(terms) <= 4 or len(set(terms)) != len(terms):
            raise ValueError(f"multi-objective set {names!r}: need 2-4 distinct terms from "
                             f"{MULTI_TERMS} or a preset {tuple(MULTI_PRESETS)}")
        return Objective(kind="multi", terms=terms,
                         name=names if isinstance(names, str) else ",".join(terms),
                         constraints=constraints)
