"""Genome batch -> surrogate inputs: active-masked one-hot columns plus numeric features.

The one-hot part is ``[P, C]`` with C = sum of choice counts (about 600 for mbv2_rram), built
by a column gather (never ``[P, G, C]``) so the first layer is one ``[P, C] @ [C, H]`` matmul.
Genes without effect (``space.active`` False) contribute an all-zero block, so two genomes of
the same canonical design get the same input. Numeric features are log2 hardware sizes and
cheap workload aggregates (total MACs, weights, crossbar activations, capacity ratio).
"""
from __future__ import annotations

import functools
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from cimnas_jax.vocab import HW_PARAM_FIELDS as HW_FIELDS  # HardwareParams field order (names of NUMERIC_NAMES)
from cimnas_jax.vocab import KIND_CONV, KIND_DEPTHWISE, KIND_FC, KIND_NAMES, KIND_POINTWISE
from cimnas_jax.workload import capacity


def space_fingerprint(space) -> dict:
    """What a trained set must match: space name, gene count and a CRC32 of names + choices."""
    text = ";".join(f"{g.name}={','.join(repr(float(c)) for c in g.choices)}" for g in space.genes)
    return {"space": space.name, "n_genes": int(space.n_genes),
            "choices_hash": f"{zlib.crc32(text.encode()) & 0xFFFFFFFF:08x}"}


@functools.lru_cache(maxsize=None)
def _columns(space):
    gene = np.repeat(np.arange(space.n_genes), space.n_choices).astype(np.int32)
    choice = np.concatenate([np.arange(n) for n in space.n_choices]).astype(np.int32)
    return gene, choice


def n_onehot(space) -> int:
    return int(np.sum(space.n_choices))


def onehot(space, genomes: jax.Array, dtype=jnp.float32) -> jax.Array:
    """Active-masked one-hot ``[P, C]`` of a genome batch ``int32[P, G]``."""
    g = jnp.atleast_2d(jnp.asarray(genomes, jnp.int32))
    act = space.active(g)
    gene, choice = _columns(space)
    hit = (g[:, gene] == jnp.asarray(choice)) & act[:, gene]
    return hit.astype(dtype)


@functools.lru_cache(maxsize=None)
def _arch_columns(space):
    gene, _ = _columns(space)
    hw = np.array([gr.group.startswith("hardware") for gr in space.genes])
    return np.flatnonzero(~hw[gene]).astype(np.int32)


def arch_onehot(space, genomes: jax.Array, dtype=jnp.float32) -> jax.Array:
    """``onehot`` restricted to the network and bit genes (no hardware genes): ``[P, C_arch]``."""
    return onehot(space, genomes, dtype)[:, _arch_columns(space)]


def _log2(x):
    return jnp.log2(jnp.maximum(x, 1e-30))


NUMERIC_NAMES = tuple(f"log2_{f}" for f in HW_FIELDS if f != "voltage_v") + (
    "voltage_v", "log2_macs", "log2_weights", "log2_macs_x_in_bits", "log2_macs_x_in_bits_x_slices",
    "log2_macs_conv", "log2_macs_depthwise", "log2_macs_pointwise", "log2_macs_fc",
    "log2_cells_needed", "log2_cells_available", "log2_capacity_ratio", "log2_macro_uses",
    "log2_xbar_activations", "log2_outputs", "n_active_layers", "max_slices")


def numeric(space, genomes: jax.Array) -> jax.Array:
    """Numeric features ``float32[P, F]`` (names in ``NUMERIC_NAMES``)."""
    g = jnp.atleast_2d(jnp.asarray(genomes, jnp.int32))
    L = space.workloads(g)
    hw = space.hardware(g)
    act = L.active
    z = lambda x: jnp.where(act, x, 0.0)
    s = lambda x: jnp.sum(z(x), axis=-1)
    bpc = hw.bits_per_cell[:, None]
    slices = jnp.ceil(L.weight_bits / bpc)
    rows_needed = L.C / L.groups * L.R * L.S
    cols_needed = L.M * slices
    macro_uses = jnp.ceil(rows_needed / hw.rows[:, None]) * jnp.ceil(cols_needed / hw.cols[:, None])
    macro_uses = jnp.where(L.kind == KIND_DEPTHWISE, L.C * jnp.ceil(L.R * L.S / hw.rows[:, None]), macro_uses)
    outputs = L.P * L.Q
    cells_needed, cells_avail = capacity(L, hw)
    cols = [_log2(getattr(hw, f)) for f in HW_FIELDS if f != "voltage_v"] + [hw.voltage_v]
    cols += [_log2(s(L.macs)), _log2(s(L.n_weights)), _log2(s(L.macs * L.input_bits)),
             _log2(s(L.macs * L.input_bits * slices))]
    cols += [_log2(1.0 + s(jnp.where(L.kind == k, L.macs, 0.0))) for k in range(len(KIND_NAMES))]
    cols += [_log2(cells_needed), _log2(cells_avail), _log2(cells_needed) - _log2(cells_avail),
             _log2(s(macro_uses)), _log2(s(macro_uses * outputs * L.input_bits)), _log2(s(outputs)),
             jnp.sum(act, axis=-1).astype(jnp.float32), jnp.max(jnp.where(act, slices, 0.0), axis=-1)]
    out = jnp.stack(cols, axis=-1).astype(jnp.float32)
    return jnp.where(jnp.isfinite(out), out, 0.0)


ARCH_NUMERIC_NAMES = (
    "log2_macs", "log2_weights", "n_active_layers", "mean_input_bits_by_macs", "mean_weight_bits_by_macs",
    "mean_weight_bits_by_weights", "frac_macs_4bit_inputs", "frac_macs_4bit_weights",
    "frac_weights_4bit", "log2_macs_conv", "log2_macs_depthwise", "log2_macs_pointwise",
    "mean_kernel_by_macs", "log2_min_channels")


def arch_numeric(space, genomes: jax.Array) -> jax.Array:
    """Architecture-only features ``float32[P, S + F]``: the physical value of every network and
    bit gene (0 where the gene has no effect; S genes), then ``ARCH_NUMERIC_NAMES`` aggregates —
    size, depth and MAC/weight-weighted precision. Ordinal values rather than one-hot columns:
    accuracy labels are few (hundreds), and kernel size, channels and bits act monotonically."""
    g = jnp.atleast_2d(jnp.asarray(genomes, jnp.int32))
    sw = np.array([i for i, gr in enumerate(space.genes) if not gr.group.startswith("hardware")])
    values = jnp.where(space.active(g), space.values(g), 0.0)[:, sw]
    L = space.workloads(g)
    act = L.active
    z = lambda x: jnp.where(act, x, 0.0)
    s = lambda x: jnp.sum(z(x), axis=-1)
    macs, w = s(L.macs), s(L.n_weights)
    per_kind = [_log2(1.0 + s(jnp.where(L.kind == k, L.macs, 0.0))) for k in (KIND_CONV, KIND_DEPTHWISE, KIND_POINTWISE)]
    min_ch = jnp.min(jnp.where(act & (L.kind != KIND_FC), jnp.minimum(L.C, L.M), 1e9), axis=-1)
    cols = [_log2(macs), _log2(w), s(jnp.ones_like(L.macs)),
            s(L.macs * L.input_bits) / macs, s(L.macs * L.weight_bits) / macs,
            s(L.n_weights * L.weight_bits) / w,
            s(jnp.where(L.input_bits <= 4, L.macs, 0.0)) / macs,
            s(jnp.where(L.weight_bits <= 4, L.macs, 0.0)) / macs,
            s(jnp.where(L.weight_bits <= 4, L.n_weights, 0.0)) / w,
            *per_kind, s(L.macs * L.R) / macs, _log2(min_ch)]
    return jnp.concatenate([values, jnp.stack(cols, axis=-1)], axis=-1).astype(jnp.float32)
