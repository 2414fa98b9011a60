"""ResNet architecture dicts: the ResNet supernet's per-subnet input.

Same keys and meaning as ``sp.architecture(genomes)`` of the ``resnet50_sram7nm`` space
(full-size channel counts): depths int32[4], stem_channels int32[] (40/48/64),
stage_channels int32[4] (stage output widths), mid_channels int32[18] (bottleneck widths),
w_bits / a_bits int32[18, 3] (4/6/8; columns reduce, conv3, expand -- the downsample of a
stage's first block uses the expand column), block_active bool[18].  A leading batch axis
[P, ...] is allowed everywhere.
"""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
import numpy as np

from cimnas_jax.nets.resnet_config import (
    ARCH_KEYS, BIT_CHOICES, BLOCK_POS, BLOCK_STAGE, DEPTH_CHOICES, EXPAND_CHOICES, N_BLOCKS,
    STAGE_BASE_WIDTHS, STAGE_CHOICES, STAGE_MAX_BLOCKS, STAGE_MID_CHOICES, STEM_BASE, STEM_CHOICES,
    WIDTH_CHOICES, make_divisible)


def block_active_from_depths(depths: np.ndarray) -> np.ndarray:
    """bool[..., 18]: block j of stage s is active iff j < depth[s]."""
    d = np.minimum(np.asarray(depths), np.asarray(STAGE_MAX_BLOCKS))
    return BLOCK_POS < d[..., BLOCK_STAGE]


def make_arch(depths, stem_width, stage_widths, expand, w_bits, a_bits) -> dict:
    """Arch dict from the space's physical gene values: depths [..., 4], stem multiplier [...],
    stage multipliers [..., 4], expand ratios [..., 18], bits [..., 18, 3] (numpy, host side)."""
    depths = np.asarray(depths, np.int32)
    sw = np.asarray(stage_widths, np.float64)
    mdiv = np.vectorize(make_divisible, otypes=[np.int32])
    base = np.asarray(STAGE_BASE_WIDTHS, np.float64)
    mid = mdiv(base[BLOCK_STAGE] * np.asarray(expand, np.float64) * sw[..., BLOCK_STAGE])
    return dict(depths=depths, stem_channels=mdiv(STEM_BASE * np.asarray(stem_width, np.float64)),
                stage_channels=mdiv(base * sw), mid_channels=mid.astype(np.int32),
                w_bits=np.asarray(w_bits, np.int32), a_bits=np.asarray(a_bits, np.int32),
                block_active=block_active_from_depths(depths))


def _uniform(depths, width: float, expand: float, bits: int) -> dict:
    return make_arch(depths, width, [width] * 4, [expand] * N_BLOCKS,
                     np.full((N_BLOCKS, 3), bits), np.full((N_BLOCKS, 3), bits))


def largest_arch(bits: int = 8) -> dict:
    """Deepest (4, 4, 6, 4), widest (1.0), ratio 0.35, all bits = ``bits``."""
    return _uniform([max(c) for c in DEPTH_CHOICES], max(WIDTH_CHOICES), max(EXPAND_CHOICES), bits)


def smallest_arch(bits: int = 4) -> dict:
    """Shallowest (2, 2, 4, 2), narrowest (0.65), ratio 0.2, all bits = ``bits``."""
    return _uniform([min(c) for c in DEPTH_CHOICES], min(WIDTH_CHOICES), min(EXPAND_CHOICES), bits)


def resnet50_arch(bits: int = 8) -> dict:
    """Plain ResNet50 (depths 3, 4, 6, 3, width 1.0, ratio 0.25) at ``bits``."""
    return _uniform([3, 4, 6, 3], 1.0, 0.25, bits)


def random_arch(rng: np.random.Generator, n: int | None = None, bits: int | None = None) -> dict:
    """Uniform over the resnet50_sram7nm software+quantization genes (host-side numpy).

    ``bits`` fixes every bit-width; None draws each uniformly from 4/6/8."""
    shape = () if n is None else (n,)
    depths = np.stack([rng.choice(c, size=shape) for c in DEPTH_CHOICES], -1)
    stem = rng.choice(WIDTH_CHOICES, size=shape)
    stage = rng.choice(WIDTH_CHOICES, size=shape + (4,))
    expand = rng.choice(EXPAND_CHOICES, size=shape + (N_BLOCKS,))
    if bits is None:
        wb = rng.choice(BIT_CHOICES, size=shape + (N_BLOCKS, 3))
        ab = rng.choice(BIT_CHOICES, size=shape + (N_BLOCKS, 3))
    else:
        wb = ab = np.full(shape + (N_BLOCKS, 3), bits)
    return make_arch(depths, stem, stage, expand, wb, ab)


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
        raise ValueError(f"architecture dict lacks {missing}; the ResNet supernet needs keys {ARCH_KEYS} "
                         "(as returned by sp.architecture of resnet50_sram7nm)")
    a = {k: np.asarray(arch[k]) for k in ARCH_KEYS}
    lead = a["depths"].shape[:-1]
    want = dict(depths=(4,), stem_channels=(), stage_channels=(4,), mid_channels=(N_BLOCKS,),
                w_bits=(N_BLOCKS, 3), a_bits=(N_BLOCKS, 3), block_active=(N_BLOCKS,))
    for k, n in want.items():
        if a[k].shape != lead + n:
            raise ValueError(f"architecture['{k}'] has shape {a[k].shape}; expected {lead + n}")
    for s, choices in enumerate(DEPTH_CHOICES):
        if not np.isin(a["depths"][..., s], choices).all():
            raise ValueError(f"architecture['depths'][{s}] must be in {choices}")
    if not np.isin(a["stem_channels"], STEM_CHOICES).all():
        raise ValueError(f"architecture['stem_channels'] must be in {STEM_CHOICES}")
    for s, choices in enumerate(STAGE_CHOICES):
        if not np.isin(a["stage_channels"][..., s], choices).all():
            raise ValueError(f"architecture['stage_channels'][{s}] must be in {choices}")
    for b in range(N_BLOCKS):
        choices = STAGE_MID_CHOICES[BLOCK_STAGE[b]]
        if not np.isin(a["mid_channels"][..., b], choices).all():
            raise ValueError(f"architecture['mid_channels'][{b}] must be one of {choices}")
    for k in ("w_bits", "a_bits"):
        if not np.isin(a[k], BIT_CHOICES).all():
            raise ValueError(f"architecture['{k}'] must be in {BIT_CHOICES}")
    if not (a["block_active"] == block_active_from_depths(a["depths"])).all():
        raise ValueError("architecture['block_active'] must be block j of stage s active iff j < depths[s]")
    return a


def to_device(arch: Mapping) -> dict:
    """Arch dict as jnp arrays with the dtypes the supernet expects (no validation)."""
    return {k: jnp.asarray(arch[k], bool if k == "block_active" else jnp.int32) for k in ARCH_KEYS}
