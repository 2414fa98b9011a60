"""Evaluator interface: LayerTable + HardwareParams (or a space + genomes) -> HWResult."""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from cimnas_jax.hw.model import AREA_COMPONENTS, ENERGY_COMPONENTS, chip_area, layer_model
from cimnas_jax.hw.tech import Technology, load_technology
from cimnas_jax.workload import capacity


@flax.struct.dataclass
class HWResult:
    """Per-design metrics. energy_j [J], latency_s [s], area_mm2 [mm^2], valid: bool [P]
    (False if an active layer has no valid mapping, weights do not fit, or a metric is not finite
    and positive);
    per-layer energy/latency/ok [P, L]; breakdowns {component: [P]}; cells needed/available [P]."""

    energy_j: jax.Array
    latency_s: jax.Array
    area_mm2: jax.Array
    valid: jax.Array
    layer_energy_j: jax.Array
    layer_latency_s: jax.Array
    layer_ok: jax.Array
    energy_breakdown_j: dict
    area_breakdown_mm2: dict
    cells_needed: jax.Array
    cells_available: jax.Array


def evaluate_layer_table(tech: Technology, layers, hw) -> HWResult:
    """Analytic backend on a LayerTable ``[P, L]`` and HardwareParams ``[P]`` (pure JAX)."""
    act = layers.active
    # inactive slots may hold zeros: give them harmless unit shapes so logs/grads stay finite
    one = lambda x: jnp.where(act, x, jnp.ones_like(x))
    safe = layers.replace(C=one(layers.C), M=one(layers.M), R=one(layers.R), S=one(layers.S), P=one(layers.P),
                          Q=one(layers.Q), stride=one(layers.stride), input_bits=one(layers.input_bits),
                          weight_bits=one(layers.weight_bits))
    lm = layer_model(tech, safe, hw)
    z = lambda x: jnp.where(act, x, 0.0)
    e_comp = {k: jnp.sum(z(v), axis=-1) for k, v in lm["energy_j"].items()}
    layer_e = sum(z(lm["energy_j"][k]) for k in ENERGY_COMPONENTS)
    layer_t = z(lm["latency_s"])
    slices = jnp.where(act, jnp.ceil(layers.weight_bits / hw.bits_per_cell[..., None]), 1.0)
    area = chip_area(tech, hw, jnp.max(slices, axis=-1))
    area_mm2 = {k: v * 1e6 for k, v in area.items()}
    energy = jnp.sum(layer_e, axis=-1)
    latency = jnp.sum(layer_t, axis=-1)
    area_total = sum(area_mm2[k] for k in AREA_COMPONENTS)
    need, avail = capacity(layers, hw)
    layer_ok = lm["ok"] | ~act
    # a metric that is not finite and positive (e.g. a technology with unphysical coefficients) is a
    # failure, never a score
    valid = (jnp.all(layer_ok, axis=-1) & (need <= avail) & jnp.isfinite(energy) & (energy > 0)
             & jnp.isfinite(latency) & (latency > 0) & jnp.isfinite(area_total) & (area_total > 0))
    return HWResult(energy_j=energy, latency_s=latency, area_mm2=area_total, valid=valid,
                    layer_energy_j=layer_e, layer_latency_s=layer_t, layer_ok=layer_ok,
                    energy_breakdown_j=e_comp, area_breakdown_mm2=area_mm2,
                    cells_needed=need, cells_available=avail)


def evaluate_designs(space, genomes, tech: Technology | None = None) -> HWResult:
    """Analytic evaluation of genomes ``int32[P, G]`` of ``space`` (jittable with space static)."""
    tech = load_technology(space.technology) if tech is None else tech
    return evaluate_layer_table(tech, space.workloads(genomes), space.hardware(genomes))
