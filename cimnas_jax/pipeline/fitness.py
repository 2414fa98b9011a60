"""The search's fitness: pure ``genomes -> metrics`` from a hardware source and an accuracy source.

Hardware sources: ``analytic`` (the embedded analytic CIM model, calibrated to real CiMLoop),
``surrogate`` (its Flax ensemble). Accuracy sources: ``surrogate`` (the shipped accuracy ensemble,
trained on accuracies measured on real quantized subnets), ``constant`` (every design equally
accurate: a hardware-only search). Metric keys as in ``cimnas_jax.search.objectives``.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

HW_SOURCES = ("analytic", "surrogate")
ACCURACY_SOURCES = ("surrogate", "constant")
SOURCE_NAMES = {"analytic": "analytic CIM model", "surrogate": "Flax surrogate ensemble",
                "constant": "constant (hardware-only search)"}


def make_fitness(space, hw_source: str = "analytic", accuracy_source: str = "surrogate",
                 surrogate=None, constant_accuracy: float = 1.0, technology: str | None = None) -> Callable:
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
        return hardware_fitness(space, acc_fn, technology)

    sset = surrogate.sset

    def fitness(g):
        p = predict(sset, g)
        needed, avail = capacity(space.workloads(g), space.hardware(g))
        valid = p.get("valid_prob", jnp.ones_like(p["energy_j"])) > 0.5
        return dict(energy_j=p["energy_j"], latency_s=p["latency_s"], area_mm2=p["area_mm2"],
                    accuracy=acc_fn(g), valid=valid, cells_needed=needed, cells_available=avail)
    return fitness


def load_surrogate_for(cfg, space):
    """The surrogate set a configuration needs (None when neither source is 'surrogate')."""
    if "surrogate" not in (cfg.hw_source, cfg.accuracy_source):
        return None
    from cimnas_jax.surrogate import load_surrogates
    from cimnas_jax.surrogate.io import default_set_path
    path = cfg.surrogate_dir or default_set_path(space, cfg.technology or None)
    return load_surrogates(space.name, path)


def fitness_for(cfg, space, surrogate=None):
    """``make_fitness`` for a RunConfig (loads the surrogate set when needed)."""
    surrogate = surrogate if surrogate is not None else load_surrogate_for(cfg, space)
    return make_fitness(space, cfg.hw_source, cfg.accuracy_source, surrogate,
                        technology=cfg.technology or None)


def padded_batch_size(n: int, minimum: int = 8) -> int:
    """The batch size ``n`` designs are evaluated at: the next power of two >= max(n, minimum), so
    a few compiled shapes serve every finalist count instead of one compilation per count."""
    size = minimum
    while size < n:
        size *= 2
    return size


def evaluate_padded(fn: Callable, genomes):
    """``jax.jit(fn)`` on ``genomes`` int32 [n, G] padded (with copies of the last row) to
    ``padded_batch_size(n)`` rows; returns the host pytree sliced back to n rows."""
    import jax
    import numpy as np
    g = np.asarray(genomes, np.int32)
    n = len(g)
    if n == 0:
        raise ValueError("evaluate_padded: no genomes")
    pad = padded_batch_size(n) - n
    if pad:
        g = np.concatenate([g, np.repeat(g[-1:], pad, 0)])
    out = jax.device_get(jax.jit(fn)(jnp.asarray(g)))
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[:n] if np.ndim(a) and np.shape(a)[0] == n + pad else a, out)
