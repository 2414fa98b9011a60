"""Per-layer workloads and hardware parameters decoded from genomes, as fixed-shape arrays.

``LayerTable`` fields are ``[P, L]`` (L = the space's maximum layer count; inactive slots have
``active = False``); ``HardwareParams`` fields are ``[P]``. Conventions follow the CiMLoop
reference data: P, Q are output sizes; a depthwise layer has C = M = groups = channels.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from cimnas_jax.vocab import KIND_CONV, KIND_DEPTHWISE, KIND_FC, KIND_NAMES, KIND_POINTWISE  # noqa: F401 (re-exported)


@flax.struct.dataclass
class LayerTable:
    """Layer shapes and bit-widths, every field ``[P, L]``.

    C/M: input/output channels; R/S: kernel height/width; P/Q: output height/width;
    stride; groups (C for depthwise, else 1); input_bits/weight_bits: activation and weight
    precision (bits); kind: KIND_* code; active: layer present in this design (bool; on the
    relaxed value path a float probability in [0, 1]); macs: multiply-accumulates per inference
    and n_weights: weights stored (count), both zero for absent layers (scaled by the
    probability on the relaxed path).
    """

    C: jax.Array
    M: jax.Array
    R: jax.Array
    S: jax.Array
    P: jax.Array
    Q: jax.Array
    stride: jax.Array
    groups: jax.Array
    input_bits: jax.Array
    weight_bits: jax.Array
    kind: jax.Array
    active: jax.Array
    macs: jax.Array
    n_weights: jax.Array


@flax.struct.dataclass
class HardwareParams:
    """Hardware knobs per design, every field float32 ``[P]``.

    voltage_v [V]; bits_per_cell; clock_period_s [s] (CiMLoop BASE_LATENCY); rows/cols
    (crossbar size, cells); router_group, tiles, macros_per_tile (counts); glb_bytes
    (global buffer, bytes); adc_bits; n_adc_per_bank.
    """

    voltage_v: jax.Array
    bits_per_cell: jax.Array
    clock_period_s: jax.Array
    rows: jax.Array
    cols: jax.Array
    router_group: jax.Array
    tiles: jax.Array
    macros_per_tile: jax.Array
    glb_bytes: jax.Array
    adc_bits: jax.Array
    n_adc_per_bank: jax.Array

    @property
    def n_macros(self) -> jax.Array:
        return self.router_group * self.tiles * self.macros_per_tile


def make_layer_table(C, M, R, S, P, Q, stride, kind, input_bits, weight_bits, active) -> LayerTable:
    """Build a LayerTable from broadcastable ``[P, L]`` pieces; derives groups, MACs and weights."""
    f = lambda x: jnp.asarray(x, jnp.float32)
    C, M, R, S, P, Q = map(f, (C, M, R, S, P, Q))
    kind = jnp.asarray(kind, jnp.int32)
    active = jnp.asarray(active)
    soft = jnp.issubdtype(active.dtype, jnp.floating)
    active = active.astype(jnp.float32) if soft else active.astype(bool)
    shape = jnp.broadcast_shapes(C.shape, M.shape, R.shape, P.shape, kind.shape, active.shape,
                                 np.shape(input_bits), np.shape(weight_bits))
    b = lambda x, dt=jnp.float32: jnp.broadcast_to(jnp.asarray(x, dt), shape)
    dw = kind == KIND_DEPTHWISE
    groups = jnp.where(dw, C, 1.0)
    n_weights = jnp.where(dw, C * R * S, C * M * R * S)
    macs = n_weights * P * Q
    act = b(active, active.dtype)
    present = (lambda x: act * x) if soft else (lambda x: jnp.where(act, x, 0.0))
    return LayerTable(
        C=b(C), M=b(M), R=b(R), S=b(S), P=b(P), Q=b(Q), stride=b(stride), groups=b(groups),
        input_bits=b(input_bits), weight_bits=b(weight_bits), kind=b(kind, jnp.int32), active=act,
        macs=present(b(macs)), n_weights=present(b(n_weights)),
    )


def total_macs(layers: LayerTable) -> jax.Array:
    """MACs per inference of each design, ``[P]``."""
    return jnp.sum(layers.macs, axis=-1)


def total_weights(layers: LayerTable) -> jax.Array:
    """Weights stored by each design, ``[P]``."""
    return jnp.sum(layers.n_weights, axis=-1)


def cells_per_weight(weight_bits: jax.Array, bits_per_cell: jax.Array) -> jax.Array:
    """Memory cells one weight occupies: ceil(weight bits / bits per cell)."""
    return jnp.ceil(weight_bits / bits_per_cell)


def capacity(layers: LayerTable, hw: HardwareParams) -> tuple[jax.Array, jax.Array]:
    """Crossbar cells needed vs available, each float32 ``[P]``.

    Needed: every active layer's weights (depthwise: channels x R x S, not CIMNAS's R x S)
    times ceil(weight bits / bits per cell). Available: rows x cols x router group x tiles x
    macros per tile.
    """
    per_layer = layers.n_weights * cells_per_weight(layers.weight_bits, hw.bits_per_cell[..., None])
    needed = jnp.sum(jnp.where(layers.active, per_layer, 0.0), axis=-1)
    available = hw.rows * hw.cols * hw.n_macros
    return needed, available


def fits(layers: LayerTable, hw: HardwareParams) -> jax.Array:
    """bool ``[P]``: all weights fit on the chip at once."""
    needed, available = capacity(layers, hw)
    return needed <= available
