"""Soft fitnesses: relaxed choice probabilities ``[P, G, W]`` -> the search's metrics dict.

They mirror ``cimnas_jax.pipeline.make_fitness`` / ``cimnas_jax.search.fitness`` and return the
same keys (energy_j, latency_s, area_mm2, accuracy, valid, cells_needed, cells_available) plus
``overflow`` (relative feature-map overflow of the global buffer, see ``analytic``). At a
one-hot input they equal the exact, genome-level fitness at that genome; every ``ceil``/
``floor``/``round`` inside (model, decoders, features) is straight-through (``straight_through``).

* ``soft_hardware_fitness(space, soft_accuracy)``: analytic CIM model + an accuracy source;
* accuracy sources ``SoftDesign -> float32[P]``: ``soft_accuracy_surrogate(space, sset)`` (the
  shipped Flax ensemble on relaxed one-hot features, clipped to [1e-3, 1] as make_fitness does)
  and ``soft_constant_accuracy(value)`` (hardware-only searches);
* ``soft_surrogate_fitness(space, sset, soft_accuracy)``: the hardware surrogate ensemble
  (physics variant: its analytic base from the relaxed model);
* ``make_soft_fitness(space, hw_source, accuracy_source, surrogate)``: the same switch as
  make_fitness.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from cimnas_jax.relax.analytic import soft_evaluate
from cimnas_jax.relax.decode import SoftDesign, soft_decode
from cimnas_jax.relax.features import soft_ensemble
from cimnas_jax.relax.straight_through import straight_through

HW_SOURCES = ("analytic", "surrogate")
ACCURACY_SOURCES = ("surrogate", "constant")
SoftAccuracyFn = Callable[[SoftDesign], jnp.ndarray]
SoftFitness = Callable[[jnp.ndarray], dict]


def soft_constant_accuracy(value: float = 1.0) -> SoftAccuracyFn:
    """Accuracy = ``value`` for every relaxed design (hardware-only searches; no gradient)."""
    if not 0 < value <= 1:
        raise ValueError(f"constant accuracy must be in (0, 1], got {value}")

    def acc(d: SoftDesign):
        return jnp.full((d.values.shape[0],), value, jnp.float32)

    acc.__name__ = f"soft_constant_accuracy({value})"
    return acc


def soft_accuracy_surrogate(space, sset) -> SoftAccuracyFn:
    """The accuracy ensemble of ``sset`` on relaxed designs, clipped to [1e-3, 1]."""
    if sset.acc is None:
        raise ValueError(f"surrogate set for {space.name} has no accuracy model")
    ens = sset.acc

    def acc(d: SoftDesign):
        mean, _, _ = soft_ensemble(space, d, ens)
        return jnp.clip(mean[:, 0], 1e-3, 1.0)

    acc.__name__ = "soft_accuracy_surrogate"
    return acc


def _tech(space, technology: str | None = None):
    from cimnas_jax.hw import load_technology
    # loaded eagerly (outside any trace), as search.fitness.hardware_fitness does
    return load_technology(technology or space.technology)


def soft_hardware_fitness(space, soft_accuracy: SoftAccuracyFn, technology: str | None = None) -> SoftFitness:
    """Analytic hardware model + ``soft_accuracy`` on relaxed designs -> metrics ``[P]``
    (``technology``: a technology file name, None = the space's default, as make_fitness)."""
    tech = _tech(space, technology)

    def fitness(probs):
        d = soft_decode(space, probs)
        r = soft_evaluate(tech, d.layers, d.hw)
        ok = r["ok_all"] & jnp.isfinite(r["energy_j"]) & jnp.isfinite(r["latency_s"]) \
            & jnp.isfinite(r["area_mm2"])
        return dict(energy_j=r["energy_j"], latency_s=r["latency_s"], area_mm2=r["area_mm2"],
                    accuracy=jnp.asarray(soft_accuracy(d), jnp.float32), valid=ok,
                    cells_needed=r["cells_needed"], cells_available=r["cells_available"],
                    overflow=r["overflow"])

    st = straight_through(fitness)
    st.__name__ = f"soft_hardware_fitness({space.name}, {getattr(soft_accuracy, '__name__', 'acc')})"
    return st


def soft_surrogate_fitness(space, sset, soft_accuracy: SoftAccuracyFn) -> SoftFitness:
    """Hardware surrogate ensemble (and ``soft_accuracy``) on relaxed designs -> metrics."""
    from cimnas_jax.workload import capacity
    if sset.hw is None:
        raise ValueError(f"surrogate set for {space.name} has no hardware model")
    ens = sset.hw
    tech = None
    if ens.base_technology is not None:
        from cimnas_jax.hw import load_technology
        tech = load_technology(ens.base_technology)

    def fitness(probs):
        d = soft_decode(space, probs)
        base, overflow, ok = None, jnp.zeros((d.values.shape[0],), jnp.float32), True
        if tech is not None:
            r = soft_evaluate(tech, d.layers, d.hw)
            logs = jnp.stack([jnp.log(r["energy_j"]), jnp.log(r["latency_s"]), jnp.log(r["area_mm2"])], -1)
            finite = jnp.all(jnp.isfinite(logs), -1)
            base = jnp.where(jnp.isfinite(logs), logs, 0.0)
            overflow, ok = r["overflow"], r["ok_all"] & finite
        mean, _, _ = soft_ensemble(space, d, ens, base)
        out = {t: jnp.exp(mean[:, i]) for i, t in enumerate(ens.targets)}
        needed, avail = capacity(d.layers, d.hw)
        return dict(energy_j=out["energy_j"], latency_s=out["latency_s"], area_mm2=out["area_mm2"],
                    accuracy=jnp.asarray(soft_accuracy(d), jnp.float32),
                    valid=jnp.ones_like(out["energy_j"], bool) & ok,
                    cells_needed=needed, cells_available=avail, overflow=overflow)

    st = straight_through(fitness)
    st.__name__ = f"soft_surrogate_fitness({space.name})"
    return st


def make_soft_fitness(space, hw_source: str = "analytic", accuracy_source: str = "surrogate",
                      surrogate=None, constant_accuracy: float = 1.0, technology: str | None = None) -> SoftFitness:
    """The relaxed counterpart of ``pipeline.make_fitness`` with the same arguments
    (``surrogate``: a loaded ``Surrogate`` or a ``SurrogateSet``; ``technology``: the analytic
    model's technology, None = the space's default)."""
    if hw_source not in HW_SOURCES:
        raise ValueError(f"hw_source must be one of {HW_SOURCES}, got {hw_source!r}")
    if accuracy_source not in ACCURACY_SOURCES:
        raise ValueError(f"accuracy_source must be one of {ACCURACY_SOURCES}, got {accuracy_source!r}")
    sset = getattr(surrogate, "sset", surrogate)
    if (hw_source == "surrogate" or accuracy_source == "surrogate") and sset is None:
        raise ValueError("a surrogate set is needed for hw_source/accuracy_source 'surrogate'")
    acc = (soft_accuracy_surrogate(space, sset) if accuracy_source == "surrogate"
           else soft_constant_accuracy(constant_accuracy))
    if hw_source == "analytic":
        return soft_hardware_fitness(space, acc, technology)
    return soft_surrogate_fitness(space, sset, acc)
