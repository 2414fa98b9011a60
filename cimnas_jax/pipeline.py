"""The end-to-end CIMNAS job: search → finalists → re-verification → report.

Pure pieces (fitness construction, finalist selection, metric arithmetic) are functions here;
``experiments/cimnas.py`` is the thin absl entry point that wires them to flags and files.

Scoring during the search: hardware from the embedded analytic CIM model (or its Flax
surrogate), accuracy from the shipped accuracy surrogate (trained on real measured subnet
accuracies). Re-verification: hardware recomputed by the analytic model (the embedded ground
truth; this job does not call CiMLoop), accuracy measured by evaluating each finalist's
quantized subnet on held-out test images, optionally after quantization-aware fine-tuning.
"""
from __future__ import annotations

import math
from typing import Callable

import jax.numpy as jnp
import numpy as np

HW_SOURCES = ("analytic", "surrogate")
ACCURACY_SOURCES = ("surrogate", "constant")

def baseline_genome(space) -> np.ndarray:
    """Genome of the reference design the report compares against (int32 [G]); the space owns it."""
    return space.reference_genome()


def make_fitness(space, hw_source: str = "analytic", accuracy_source: str = "surrogate",
                 surrogate=None, constant_accuracy: float = 1.0) -> Callable:
    """Pure ``genomes -> metrics`` for the search (keys as in cimnas_jax.search.objectives)."""
    if hw_source not in HW_SOURCES:
        raise ValueError(f"hw_source must be one of {HW_SOURCES}, got {hw_source!r}")
    if accuracy_source not in ACCURACY_SOURCES:
        raise ValueError(f"accuracy_source must be one of {ACCURACY_SOURCES}, got {accuracy_source!r}")
    if (hw_source == "surrogate" or accuracy_source == "surrogate") and surrogate is None:
        raise ValueError("a surrogate set is needed for hw_source/accuracy_source 'surrogate'")
    if accuracy_source == "surrogate" and not surrogate.has_accuracy:
        raise ValueError(f"surrogate set for {space.name} has no accuracy model; use accuracy_source='constant'")
    from cimnas_jax.search.fitness import constant_accuracy_hardware_only, hardware_fitness
    from cimnas_jax.surrogate import predict
    from cimnas_jax.workload import capacity

    if accuracy_source == "surrogate":
        sset = surrogate.sset

        def acc_fn(g):
            return jnp.clip(predict(sset, g)["accuracy"], 1e-3, 1.0)
    else:
        acc_fn = constant_accuracy_hardware_only(constant_accuracy)
    if hw_source == "analytic":
        return hardware_fitness(space, acc_fn)

    sset = surrogate.sset

    def fitness(g):
        p = predict(sset, g)
        needed, avail = capacity(space.workloads(g), space.hardware(g))
        valid = p.get("valid_prob", jnp.ones_like(p["energy_j"])) > 0.5
        return dict(energy_j=p["energy_j"], latency_s=p["latency_s"], area_mm2=p["area_mm2"],
                    accuracy=acc_fn(g), valid=valid, cells_needed=needed, cells_available=avail)
    return fitness


def select_finalists(space, population, violation, fitness, k: int) -> np.ndarray:
    """Up to k best feasible, distinct canonical designs of a GA population (int32 [k', G])."""
    pop = np.asarray(space.canonicalise(population))
    order = np.lexsort((np.asarray(fitness), np.asarray(violation)))
    seen, out = set(), []
    for i in order:
        if not (np.isfinite(violation[i]) and violation[i] == 0 and np.isfinite(fitness[i])):
            continue
        key = pop[i].tobytes()
        if key in seen:
            continue
        seen.add(key)
        out.append(pop[i])
        if len(out) == k:
            break
    return np.asarray(out, np.int32).reshape(-1, space.n_genes)


def hardware_truth(space, genomes) -> list[dict]:
    """Analytic-model metrics with units for each genome (the embedded ground truth)."""
    from cimnas_jax.hw import evaluate_designs, load_technology
    from cimnas_jax.workload import total_macs

    g = jnp.asarray(genomes, jnp.int32)
    r = evaluate_designs(space, g, load_technology(space.technology))
    macs = np.asarray(total_macs(space.workloads(g)), np.float64)
    e, l, a = (np.asarray(x, np.float64) for x in (r.energy_j, r.latency_s, r.area_mm2))
    valid = np.asarray(r.valid)
    out = []
    for i in range(len(g)):
        ops = 2.0 * macs[i]
        out.append(dict(
            valid=bool(valid[i]), energy_j=e[i], latency_s=l[i], area_mm2=a[i],
            edap_j_s_mm2=e[i] * l[i] * a[i], macs=macs[i],
            tops_per_w=ops / e[i] / 1e12, tops_per_mm2=ops / l[i] / a[i] / 1e12,
            cells_needed=float(r.cells_needed[i]), cells_available=float(r.cells_available[i]),
            energy_breakdown_j={k: float(v[i]) for k, v in r.energy_breakdown_j.items()},
            area_breakdown_mm2={k: float(v[i]) for k, v in r.area_breakdown_mm2.items()}))
    return out


def fmt(x, spec=".3e") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)
