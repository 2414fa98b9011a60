"""Surrogate inputs from relaxed designs, equal to ``cimnas_jax.surrogate.features`` at one-hots.

The genome path builds an active-masked one-hot ``[P, C]`` by a gather; here column (g, c) is
``gene_active[g] x probs[g, c]`` -- the probability that gene g is active and takes choice c --
so a gradient reaches every choice of every gene through the surrogate's first layer.
Numeric features are the same aggregates over the relaxed layer table: sums weight each layer by
its presence probability (macs and n_weights already carry it), ``ceil`` steps (weight slices,
crossbar uses) are left to ``straight_through``, and the two remaining discrete pieces are
relaxed explicitly:

* ``bits <= 4`` indicators (fractions of MACs / weights at 4 bits): ``clip((b1 - x) / (b1 - 4),
  0, 1)`` with ``b1`` the smallest bit choice above 4 in the space (6 here) -- exact at every
  choice value, linear in between;
* minima / maxima over present layers (smallest channel count, widest slice count) take the
  layers with presence >= 1/2; their gradient reaches the extreme layer's shape only.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from cimnas_jax.surrogate import features as F
from cimnas_jax.surrogate.model import ensemble_stats


@functools.lru_cache(maxsize=None)
def _four_bit_step(space) -> float:
    vals = [c for g in space.genes if "bits" in g.name for c in g.choices if c > 4]
    return float(min(vals)) if vals else 6.0


def _le4(space, x):
    b1 = _four_bit_step(space)
    return jnp.clip((b1 - x) / (b1 - 4.0), 0.0, 1.0)


def soft_onehot(space, d) -> jnp.ndarray:
    """Relaxed ``features.onehot``: ``[P, C]`` with column (g, c) = gene_active[g] probs[g, c]."""
    gene, choice = F._columns(space)
    return d.gene_active[:, gene] * d.probs[:, gene, choice]


def soft_arch_onehot(space, d) -> jnp.ndarray:
    """Relaxed ``features.arch_onehot`` (network and bit genes only)."""
    return soft_onehot(space, d)[:, F._arch_columns(space)]


def soft_arch_numeric(space, d) -> jnp.ndarray:
    """Relaxed ``features.arch_numeric``: ``[P, S + 14]``."""
    sw = np.array([i for i, gr in enumerate(space.genes) if not gr.group.startswith("hardware")])
    values = (d.gene_active * d.values)[:, sw]
    L = d.layers
    a = jnp.asarray(L.active, jnp.float32)
    S = lambda x: jnp.sum(x, axis=-1)          # x already carries presence (macs, n_weights)
    macs, w = S(L.macs), S(L.n_weights)
    per_kind = [F._log2(1.0 + S(jnp.where(L.kind == k, L.macs, 0.0))) for k in range(3)]
    present = (a >= 0.5) & (L.kind != 3)
    min_ch = jnp.min(jnp.where(present, jnp.minimum(L.C, L.M), 1e9), axis=-1)
    le4 = lambda x: _le4(space, x)
    cols = [F._log2(macs), F._log2(w), S(a),
            S(L.macs * L.input_bits) / macs, S(L.macs * L.weight_bits) / macs,
            S(L.n_weights * L.weight_bits) / w,
            S(le4(L.input_bits) * L.macs) / macs,
            S(le4(L.weight_bits) * L.macs) / macs,
            S(le4(L.weight_bits) * L.n_weights) / w,
            *per_kind, S(L.macs * L.R) / macs, F._log2(min_ch)]
    return jnp.concatenate([values, jnp.stack(cols, axis=-1)], axis=-1).astype(jnp.float32)


def soft_numeric(space, d) -> jnp.ndarray:
    """Relaxed ``features.numeric``: ``[P, F]`` (names in ``features.NUMERIC_NAMES``)."""
    L, hw = d.layers, d.hw
    a = jnp.asarray(L.active, jnp.float32)
    S = lambda x: jnp.sum(x, axis=-1)
    bpc = hw.bits_per_cell[:, None]
    slices = jnp.ceil(L.weight_bits / bpc)
    rows_needed = L.C / L.groups * L.R * L.S
    cols_needed = L.M * slices
    macro_uses = jnp.ceil(rows_needed / hw.rows[:, None]) * jnp.ceil(cols_needed / hw.cols[:, None])
    macro_uses = jnp.where(L.kind == 1, L.C * jnp.ceil(L.R * L.S / hw.rows[:, None]), macro_uses)
    outputs = L.P * L.Q
    cells_needed = S(L.n_weights * slices)
    cells_avail = hw.rows * hw.cols * hw.router_group * hw.tiles * hw.macros_per_tile
    cols = [F._log2(getattr(hw, f)) for f in F.HW_FIELDS if f != "voltage_v"] + [hw.voltage_v]
    cols += [F._log2(S(L.macs)), F._log2(S(L.n_weights)), F._log2(S(L.macs * L.input_bits)),
             F._log2(S(L.macs * L.input_bits * slices))]
    cols += [F._log2(1.0 + S(jnp.where(L.kind == k, L.macs, 0.0))) for k in range(4)]
    cols += [F._log2(cells_needed), F._log2(cells_avail), F._log2(cells_needed) - F._log2(cells_avail),
             F._log2(S(a * macro_uses)), F._log2(S(a * macro_uses * outputs * L.input_bits)),
             F._log2(S(a * outputs)), S(a), jnp.max(jnp.where(a >= 0.5, slices, 0.0), axis=-1)]
    out = jnp.stack(cols, axis=-1).astype(jnp.float32)
    return jnp.where(jnp.isfinite(out), out, 0.0)


def soft_inputs(space, d, ens, base=None) -> jnp.ndarray:
    """Relaxed ``surrogate.model.inputs``: the ensemble's input ``[P, C + F (+3)]``."""
    arch = ens.features in ("arch", "arch_onehot")
    num = soft_arch_numeric(space, d) if arch else soft_numeric(space, d)
    if ens.base_technology is not None:
        num = jnp.concatenate([num, base], -1)
    num = (num - ens.x_mean) / ens.x_std
    if ens.features == "arch":
        return num
    oh = soft_arch_onehot(space, d) if arch else soft_onehot(space, d)
    return jnp.concatenate([oh, num], -1)


def soft_ensemble(space, d, ens, base=None):
    """Ensemble mean and std ``[P, T]`` (label units; log units for hardware) on relaxed designs."""
    return ensemble_stats(ens, soft_inputs(space, d, ens, base), base)
