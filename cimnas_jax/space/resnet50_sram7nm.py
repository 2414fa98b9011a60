"""``resnet50_sram7nm``: an OFA-ResNet50-style elastic network with per-layer 4/6/8-bit
quantization on a 7 nm SRAM compute-in-memory accelerator (1 bit per cell).

CIMNAS extends its search to ResNet50 on 7 nm SRAM but does not publish that space; this is
ours, in the same style. Network (torchvision bottleneck layout, 224×224): 7×7 stem s2 → 3×3
max-pool → 4 stages of output widths 256, 512, 1024, 2048 × width multiplier, strides 1, 2, 2, 2,
depth 2–4, 2–4, 4–6, 2–4 blocks (OFA: base 2, 2, 4, 2 plus 0–2); each bottleneck = 1×1 reduce →
3×3 (carries the stride) → 1×1 expand, first block of a stage adds a 1×1 downsample; FC → 1000.
Middle width = make_divisible(base width × expand ratio × width multiplier, 8) with expand ratio ∈ {0.2, 0.25, 0.35}
per block; width multiplier ∈ {0.65, 0.8, 1.0} for the stem and each stage. Stem and FC are
8-bit; every other conv has its own weight and activation bits (the downsample shares the
expand conv's). Hardware ranges follow the 7 nm SRAM CiMLoop reference runs.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from cimnas_jax.space.core import Blocks, Gene, Space, register_space
from cimnas_jax.workload import KIND_CONV, KIND_FC, KIND_POINTWISE, HardwareParams, make_layer_table

STAGE_BASE_WIDTHS = (256, 512, 1024, 2048)
STAGE_STRIDES = (1, 2, 2, 2)
DEPTH_CHOICES = ((2, 3, 4), (2, 3, 4), (4, 5, 6), (2, 3, 4))
STAGE_MAX_BLOCKS = tuple(max(c) for c in DEPTH_CHOICES)      # 4, 4, 6, 4 -> 18 block slots
STAGE_RES = (56, 28, 14, 7)                                   # output size of each stage
WIDTH_CHOICES = (0.65, 0.8, 1.0)
EXPAND_CHOICES = (0.2, 0.25, 0.35)
BIT_CHOICES = (4, 6, 8)
STEM_BASE = 64
N_CLASSES = 1000

BLOCK_STAGE = np.concatenate([np.full(n, s) for s, n in enumerate(STAGE_MAX_BLOCKS)]).astype(np.int32)
BLOCK_POS = np.concatenate([np.arange(n) for n in STAGE_MAX_BLOCKS]).astype(np.int32)
N_BLOCKS = len(BLOCK_STAGE)
CONVS = ("reduce", "conv3", "expand")


def make_divisible(v, divisor: int = 8):
    """OFA/torchvision channel rounding: nearest multiple of ``divisor``, never below 90 % of v."""
    new = jnp.maximum(divisor, jnp.floor((v + divisor / 2) / divisor) * divisor)
    return jnp.where(new < 0.9 * v, new + divisor, new)


HW_GENES = (
    Gene("voltage_v", "hardware-circuit", tuple(round(0.60 + 0.05 * i, 2) for i in range(7)), "V",
         doc="supply voltage"),
    Gene("clock_period_ns", "hardware-circuit", (0.5, 1, 2, 4), "ns", doc="CiMLoop BASE_LATENCY"),
    Gene("xbar_rows", "hardware-circuit", (64, 128, 256, 512), "cells", doc="crossbar rows"),
    Gene("xbar_cols", "hardware-circuit", (32, 64, 128, 256, 512), "cells", doc="crossbar columns"),
    Gene("adc_bits", "hardware-circuit", (4, 5, 6, 7, 8), "bit", doc="ADC resolution"),
    Gene("router_group", "hardware-architecture", (1, 2, 4, 8, 16), "", doc="macros per shared router"),
    Gene("tiles", "hardware-architecture", (4, 8, 16, 32, 64), "", doc="tiles per chip"),
    Gene("macros_per_tile", "hardware-architecture", (4, 8, 16, 32, 64, 128), "", doc="macros per tile"),
    Gene("glb_mb", "hardware-architecture", (2, 4, 8, 16, 32), "MB", doc="global buffer (MiB)"),
)
_N_HW = len(HW_GENES)


def _genes():
    genes = list(HW_GENES)
    for s in range(4):
        genes.append(Gene(f"depth_s{s + 1}", "software", DEPTH_CHOICES[s], "blocks", structural=True,
                          doc=f"bottleneck blocks in stage {s + 1}"))
    genes.append(Gene("width_stem", "software", WIDTH_CHOICES, "×", doc="stem width multiplier"))
    for s in range(4):
        genes.append(Gene(f"width_s{s + 1}", "software", WIDTH_CHOICES, "×", doc=f"stage {s + 1} width multiplier"))
    for b in range(N_BLOCKS):
        genes.append(Gene(f"expand_b{b + 1:02d}", "software", EXPAND_CHOICES, "×", doc="bottleneck ratio"))
    for b in range(N_BLOCKS):
        for conv in CONVS:
            for what in ("w", "a"):
                genes.append(Gene(f"{conv}_{what}_bits_b{b + 1:02d}", "quantization", BIT_CHOICES, "bit",
                                  doc=f"{conv} conv {'weights' if what == 'w' else 'activations'}"))
    return genes


_DEPTH0 = _N_HW
_WIDTH0 = _DEPTH0 + 4
_EXP0 = _WIDTH0 + 5
_BITS0 = _EXP0 + N_BLOCKS


BLOCK_DEPTH_GENE = tuple(_DEPTH0 + int(st) for st in BLOCK_STAGE)


def _active(sp: Space, g):
    blk = sp.block_active(g)
    P = g.shape[0]
    head = jnp.ones((P, _N_HW + 4 + 5), bool)
    return jnp.concatenate([head, blk, jnp.repeat(blk, 6, axis=1)], axis=1)


def _channels(v):
    """Stem, stage output and block middle widths from the values (float, arithmetic only)."""
    stem = make_divisible(STEM_BASE * v[:, _WIDTH0])
    out_w = make_divisible(jnp.asarray(STAGE_BASE_WIDTHS, jnp.float32) * v[:, _WIDTH0 + 1:_WIDTH0 + 5])  # [P,4]
    base_b = jnp.asarray(np.array(STAGE_BASE_WIDTHS, np.float32)[BLOCK_STAGE])[None]
    wm_b = v[:, _WIDTH0 + 1:_WIDTH0 + 5][:, BLOCK_STAGE]
    mid = make_divisible(base_b * v[:, _EXP0:_BITS0] * wm_b)
    return stem, out_w, mid


def _architecture(sp: Space, g):
    v = sp.values(g)
    bits = v[:, _BITS0:].reshape(-1, N_BLOCKS, 3, 2).astype(jnp.int32)
    stem, out_w, mid = _channels(v)
    return dict(
        depths=v[:, _DEPTH0:_DEPTH0 + 4].astype(jnp.int32), stem_channels=stem.astype(jnp.int32),
        stage_channels=out_w.astype(jnp.int32), mid_channels=mid.astype(jnp.int32),
        w_bits=bits[..., 0], a_bits=bits[..., 1], block_active=sp.block_active(g),
    )


def _workloads(sp: Space, v, block_active):
    """Layer table from per-gene values ``v [P, G]`` and block activity ``[P, 18]`` (bool or
    probability). Channel rounding (``make_divisible``) is a step: on the relaxed path it passes
    the rounded width forward and has zero derivative, like every floor."""
    P = v.shape[0]
    stem, out_w, mid = _channels(v)
    bits = v[:, _BITS0:].reshape(P, N_BLOCKS, 3, 2)
    wb, ab = bits[..., 0], bits[..., 1]
    first = jnp.asarray(BLOCK_POS == 0)[None]
    out_b = out_w[:, BLOCK_STAGE]
    prev_stage_out = jnp.concatenate([stem[:, None], out_w[:, :3]], axis=1)[:, BLOCK_STAGE]
    in_b = jnp.where(first, prev_stage_out, out_b)
    res_out = jnp.asarray(np.array(STAGE_RES)[BLOCK_STAGE], jnp.float32)[None]
    stride = jnp.where(first, jnp.asarray(np.array(STAGE_STRIDES)[BLOCK_STAGE], jnp.float32)[None], 1.0)
    res_in = res_out * stride
    act = jnp.asarray(block_active)
    # per block slot: reduce, conv3, expand, downsample (only first block of a stage)
    def blk(*xs, dtype=jnp.float32):
        xs = [jnp.broadcast_to(jnp.asarray(x, dtype), (P, N_BLOCKS)) for x in xs]
        return jnp.stack(xs, -1).reshape(P, 4 * N_BLOCKS)
    C = blk(in_b, mid, mid, in_b)
    M = blk(mid, mid, out_b, out_b)
    R = blk(1.0, 3.0, 1.0, 1.0)
    PQ = blk(res_in, res_out, res_out, res_out)
    st = blk(1.0, stride, 1.0, stride)
    kind = blk(float(KIND_POINTWISE), float(KIND_CONV), float(KIND_POINTWISE), float(KIND_POINTWISE))
    ib = blk(ab[..., 0], ab[..., 1], ab[..., 2], ab[..., 2])
    wbb = blk(wb[..., 0], wb[..., 1], wb[..., 2], wb[..., 2])
    active = blk(act, act, act, act * first.astype(act.dtype), dtype=act.dtype)
    one = jnp.ones((P, 1))
    always = jnp.ones((P, 1), act.dtype)
    cat = lambda head, body, tail: jnp.concatenate([head * one, body, tail * one], axis=1)
    final = out_w[:, 3:4]
    return make_layer_table(
        C=cat(3.0, C, final), M=jnp.concatenate([stem[:, None], M, N_CLASSES * one], 1),
        R=cat(7.0, R, 1.0), S=cat(7.0, R, 1.0), P=cat(112.0, PQ, 1.0), Q=cat(112.0, PQ, 1.0),
        stride=cat(2.0, st, 1.0), kind=cat(float(KIND_CONV), kind, float(KIND_FC)).astype(jnp.int32),
        input_bits=cat(8.0, ib, 8.0), weight_bits=cat(8.0, wbb, 8.0),
        active=jnp.concatenate([always, active, always], 1))


def _hardware(sp: Space, v):
    col = lambda name: v[:, sp.index[name]]
    P = v.shape[0]
    return HardwareParams(
        voltage_v=col("voltage_v"), bits_per_cell=jnp.ones((P,)), clock_period_s=col("clock_period_ns") * 1e-9,
        rows=col("xbar_rows"), cols=col("xbar_cols"), router_group=col("router_group"), tiles=col("tiles"),
        macros_per_tile=col("macros_per_tile"), glb_bytes=col("glb_mb") * 2.0 ** 20, adc_bits=col("adc_bits"),
        n_adc_per_bank=jnp.full((P,), 16.0))


REFERENCE_HW = dict(voltage_v=0.8, clock_period_ns=1, xbar_rows=512, xbar_cols=256, adc_bits=8,
                    router_group=8, tiles=16, macros_per_tile=32, glb_mb=16)
REFERENCE_DOC = ("ResNet50 (depths 3,4,6,3, width 1.0, bottleneck 0.25, 8-bit) on a 512×256, 8-bit-ADC "
                 "SRAM chip of 8×16×32 macros, 16 MB")


def _reference(sp: Space) -> dict:
    """Plain ResNet50 at 8 bit on a mid-range chip of this space (ours: CIMNAS publishes none)."""
    vals = dict(REFERENCE_HW, depth_s1=3, depth_s2=4, depth_s3=6, depth_s4=3, width_stem=1.0)
    vals.update({f"width_s{s + 1}": 1.0 for s in range(4)})
    for b in range(N_BLOCKS):
        vals[f"expand_b{b + 1:02d}"] = 0.25
        for conv in CONVS:
            for what in ("w", "a"):
                vals[f"{conv}_{what}_bits_b{b + 1:02d}"] = 8
    return vals


def _layer_names():
    names = ["stem"]
    for s, p in zip(BLOCK_STAGE, BLOCK_POS):
        names += [f"s{s}b{p}_{c}" for c in ("reduce", "conv3", "expand", "down")]
    return names + ["fc"]


LAYER_NAMES = tuple(_layer_names())


def build() -> Space:
    return Space(
        "resnet50_sram7nm", _genes(), technology="sram_7nm", active_fn=_active, workloads_fn=_workloads,
        hardware_fn=_hardware, architecture_fn=_architecture, layer_names=LAYER_NAMES,
        blocks=Blocks(BLOCK_DEPTH_GENE, tuple(int(x) for x in BLOCK_POS)),
        reference=_reference, reference_doc=REFERENCE_DOC, supernet="supernet_resnet_fmnist",
        description="OFA-ResNet50-style elastic depth/expand/width + per-layer 4/6/8-bit quantization + "
                    "SRAM CIM accelerator at 7 nm (1 bit per cell, ADC 4-8 bit, 16 ADCs per bank)",
        notes=dict(input_size=224, n_classes=N_CLASSES, stage_base_widths=STAGE_BASE_WIDTHS,
                   stage_strides=STAGE_STRIDES, depth_choices=DEPTH_CHOICES))


register_space("resnet50_sram7nm", build)
