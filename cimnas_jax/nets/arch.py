"""Architecture dicts: the supernet's per-subnet input.

Same keys and meaning as ``sp.architecture(genomes)`` of the ``mbv2_rram`` space (physical
values at full width): depths int32[6], kernel int32[21] (3/5/7), mid_channels int32[21]
(full-scale channel count), pw_w_bits / pw_a_bits / dw_w_bits / dw_a_bits int32[21] (4/6/8),
block_active bool[21].  A leading batch axis [P, ...] is allowed everywhere.
"""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
import numpy as np

from cimnas_jax.nets.config import (
    ARCH_KEYS, BIT_CHOICES, BLOCK_POS, BLOCK_STAGE, DEPTH_CHOICES, KERNEL_CHOICES, MID_CHOICES,
    N_BLOCKS, STAGE_MAX_BLOCKS)

_BITS = ("pw_w_bits", "pw_a_bits", "dw_w_bits", "dw_a_bits")


def block_active_from_depths(depths: np.ndarray) -> np.ndarray:
    """bool[..., 21]: block j of stage s is active iff j < depth[s] (stage 6 always has 1)."""
    d = np.minimum(np.asarray(depths), np.asarray(STAGE_MAX_BLOCKS))
    return BLOCK_POS < d[..., BLOCK_STAGE]


def _make(depths, kernel, mid, bits) -> dict:
    depths = np.minimum(np.asarray(depths, np.int32), np.asarray(STAGE_MAX_BLOCKS, np.int32))
    out = dict(depths=depths, kernel=np.asarray(kernel, np.int32),
               mid_channels=np.asarray(mid, np.int32))
    for k, b in zip(_BITS, bits):
        out[k] = np.asarray(b, np.int32)
    out["block_active"] = block_active_from_depths(depths)
    return out


def largest_arch(bits: int = 8) -> dict:
    """All blocks, kernel 7, 6x middle channels, all bits = ``bits``."""
    return _make([4] * 6, [7] * N_BLOCKS, [max(c) for c in MID_CHOICES], [[bits] * N_BLOCKS] * 4)


def smallest_arch(bits: int = 4) -> dict:
    """Depth 2, kernel 3, 4x middle channels, all bits = ``bits``."""
    return _make([2] * 6, [3] * N_BLOCKS, [min(c) for c in MID_CHOICES], [[bits] * N_BLOCKS] * 4)


def uniform_arch(depth: int, kernel: int, expand_frac: float, bits: int) -> dict:
    """Same depth/kernel/bits everywhere; middle channels at fraction expand_frac in [0,1]
    of each block's choice list (0 = 4x, 1 = 6x)."""
    mid = [c[int(round(expand_frac * (len(c) - 1)))] for c in MID_CHOICES]
    return _make([depth] * 6, [kernel] * N_BLOCKS, mid, [[bits] * N_BLOCKS] * 4)


def random_arch(rng: np.random.Generator, n: int | None = None, bits: int | None = None) -> dict:
    """Uniform over the mbv2_rram software+quantization genes (host-side numpy).

    ``bits`` fixes every bit-width; None draws each uniformly from 4/6/8."""
    shape = () if n is None else (n,)
    depths = rng.choice(DEPTH_CHOICES, size=shape + (6,))
    kernel = rng.choice(KERNEL_CHOICES, size=shape + (N_BLOCKS,))
    mid = np.stack([np.asarray(c)[rng.integers(0, len(c), size=shape)] for c in MID_CHOICES], -1)
    if bits is None:
        bb = [rng.choice(BIT_CHOICES, size=shape + (N_BLOCKS,)) for _ in range(4)]
    else:
        bb = [np.full(shape + (N_BLOCKS,), bits)] * 4
    return _make(depths, kernel, mid, bb)


def stack_archs(archs: list[Mapping]) -> dict:
    """List of single-subnet dicts -> one dict with a leading [K] axis."""
    return {k: np.stack([np.asarray(a[k]) for a in archs]) for k in ARCH_KEYS}


def index_arch(arch: Mapping, i: int) -> dict:
    """Subnet i of a batched arch dict."""
    return {k: np.asarray(arch[k])[i] for k in ARCH_KEYS}


def check_arch(arch: Mapping) -> dict:
    """Validate an arch dict (host side); returns numpy arrays.  Raises ValueError naming the key."""
    missing = [k for k in ARCH_KEYS if k not in arch]
    if missing:
        raise ValueError(f"architecture dict lacks {missing}; needs keys {ARCH_KEYS} "
                         "(as returned by sp.architecture)")
    a = {k: np.asarray(arch[k]) for k in ARCH_KEYS}
    lead = a["depths"].shape[:-1]
    want = dict(depths=6, kernel=N_BLOCKS, mid_channels=N_BLOCKS, block_active=N_BLOCKS,
                **{k: N_BLOCKS for k in _BITS})
    for k, n in want.items():
        if a[k].shape != lead + (n,):
            raise ValueError(f"architecture['{k}'] has shape {a[k].shape}; expected {lead + (n,)}")
    if not np.isin(a["kernel"], KERNEL_CHOICES).all():
        raise ValueError(f"architecture['kernel'] must be in {KERNEL_CHOICES}")
    for k in _BITS:
        if not np.isin(a[k], BIT_CHOICES).all():
            raise ValueError(f"architecture['{k}'] must be in {BIT_CHOICES}")
    for b, choices in enumerate(MID_CHOICES):
        if not np.isin(a["mid_channels"][..., b], choices).all():
            raise ValueError(f"architecture['mid_channels'][{b}] must be one of {choices}")
    first = BLOCK_POS == 0
    if not a["block_active"][..., first].all():
        raise ValueError("architecture['block_active']: the first block of every stage must be active")
    return a


def to_device(arch: Mapping) -> dict:
    """Arch dict as jnp arrays with the dtypes the supernet expects (no validation)."""
    return {k: jnp.asarray(arch[k], bool if k == "block_active" else jnp.int32) for k in ARCH_KEYS}
