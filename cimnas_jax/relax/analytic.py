"""The analytic CIM model on relaxed layer tables: each layer weighted by its presence probability.

``cimnas_jax.hw.evaluate_layer_table`` reads ``LayerTable.active`` as a bool (absent layers are
masked out). On the relaxed path ``active`` is a probability, and this module evaluates every
layer slot with the model's own ``layer_model`` / ``chip_area`` and weights it:

  energy_j    = sum_l a_l E_l          latency_s = sum_l a_l T_l        (expected totals)
  cells_needed = workload.capacity (n_weights is already scaled by a_l)
  area_mm2    = chip_area at the widest weight-slice count of the layers with a_l >= 1/2
  overflow    = sum_l a_l max(0, feature-map bytes_l / (ok_theta x GLB bytes) - 1)

At a one-hot design (every a_l is 0 or 1) these equal the genome path's values;
``overflow > 0`` exactly where the model flags a layer as unmappable (its ``ok``), which makes
the exact search score the design invalid, so the relaxed loss penalises it instead. Steps
inside the model (ceil/floor) are left as they are here; ``straight_through`` around the
caller gives them a derivative.
"""
from __future__ import annotations

import jax.numpy as jnp

from cimnas_jax.hw.model import AREA_COMPONENTS, ENERGY_COMPONENTS, OUTPUT_BITS, chip_area, layer_model
from cimnas_jax.workload import capacity


def fmap_bytes(layers):
    """Input + output feature-map bytes per layer ``[P, L]`` (the quantity behind the model's
    ``ok = fmap_bytes <= ok_theta x glb_bytes``)."""
    dw = layers.kind == 1
    H = (layers.P - 1.0) * layers.stride + layers.R
    Wd = (layers.Q - 1.0) * layers.stride + layers.S
    in_bits = layers.C * H * Wd * layers.input_bits
    outs = jnp.where(dw, layers.C, layers.M) * layers.P * layers.Q
    return (in_bits + outs * OUTPUT_BITS) / 8.0


def soft_evaluate(tech, layers, hw) -> dict:
    """Metrics ``[P]`` of relaxed designs: energy_j [J], latency_s [s], area_mm2 [mm^2],
    cells_needed / cells_available [cells], overflow (relative, 0 = every present layer maps),
    ok_all (bool: no present layer is unmappable), layer_energy_j / layer_latency_s ``[P, L]``
    (already weighted by presence)."""
    act = jnp.asarray(layers.active, jnp.float32)
    # degenerate slots (a zero dimension) get unit shapes so logs stay finite; they carry a = 0
    dims = (layers.C, layers.M, layers.R, layers.S, layers.P, layers.Q)
    degenerate = jnp.zeros(act.shape, bool)
    for d in dims:
        degenerate = degenerate | (d <= 0)
    one = lambda x: jnp.where(degenerate, jnp.ones_like(x), x)
    safe = layers.replace(C=one(layers.C), M=one(layers.M), R=one(layers.R), S=one(layers.S),
                          P=one(layers.P), Q=one(layers.Q), stride=one(layers.stride),
                          input_bits=one(layers.input_bits), weight_bits=one(layers.weight_bits))
    lm = layer_model(tech, safe, hw)
    e_layer = sum(lm["energy_j"][k] for k in ENERGY_COMPONENTS)
    layer_e = act * e_layer
    layer_t = act * lm["latency_s"]
    present = act >= 0.5
    slices = jnp.where(present, jnp.ceil(layers.weight_bits / hw.bits_per_cell[..., None]), 1.0)
    area = chip_area(tech, hw, jnp.max(slices, axis=-1))
    area_mm2 = sum(area[k] for k in AREA_COMPONENTS) * 1e6
    need, avail = capacity(layers, hw)
    ratio = fmap_bytes(safe) / (tech.coef["ok_theta"] * hw.glb_bytes[..., None])
    overflow = jnp.sum(act * jnp.maximum(ratio - 1.0, 0.0), axis=-1)
    ok_all = jnp.all(lm["ok"] | (act == 0), axis=-1)
    return dict(energy_j=jnp.sum(layer_e, axis=-1), latency_s=jnp.sum(layer_t, axis=-1),
                area_mm2=area_mm2, cells_needed=need, cells_available=avail, overflow=overflow,
                ok_all=ok_all, layer_energy_j=layer_e, layer_latency_s=layer_t)
