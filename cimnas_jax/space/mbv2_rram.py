"""``mbv2_rram``: the CIMNAS joint space — MobileNetV2 (ProxylessNAS/OFA), per-block 4/6/8-bit
quantization and an RRAM compute-in-memory accelerator at 32 nm. 141 genes, ≈ 9.9e85 raw genomes.

Network at 224×224: first conv 3→32 s2 and first block (dw 3×3 on 32 ch, project 32→16),
both 8-bit; 6 stages of widths 24, 40, 80, 96, 192, 320, strides 2, 2, 2, 1, 2, 1, at most
4, 4, 4, 4, 4, 1 blocks (expand 1×1 → depthwise k×k → project 1×1); final 1×1 320→1280 at 7×7
and classifier 1280→1000, 8-bit.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from cimnas_jax.space.core import Blocks, Gene, Space, register_space
from cimnas_jax.workload import (
    KIND_CONV, KIND_DEPTHWISE, KIND_FC, KIND_POINTWISE, HardwareParams, make_layer_table)

STAGE_WIDTHS = (24, 40, 80, 96, 192, 320)
STAGE_STRIDES = (2, 2, 2, 1, 2, 1)
STAGE_MAX_BLOCKS = (4, 4, 4, 4, 4, 1)
DEPTH_CHOICES = (2, 3, 4)
KERNEL_CHOICES = (3, 5, 7)
BIT_CHOICES = (4, 6, 8)
INPUT_SIZE = 224
FIRST_CONV_OUT = 32
FIRST_BLOCK_OUT = 16
FINAL_CH = 1280
N_CLASSES = 1000


def _blocks():
    """Static description of the 21 searchable block slots."""
    out = []
    in_w, res = FIRST_BLOCK_OUT, INPUT_SIZE // 2
    for s, (w, st, nb) in enumerate(zip(STAGE_WIDTHS, STAGE_STRIDES, STAGE_MAX_BLOCKS)):
        for j in range(nb):
            stride = st if j == 0 else 1
            out.append(dict(stage=s, pos=j, in_w=in_w, out_w=w, stride=stride,
                            res_in=res, res_out=res // stride))
            res //= stride
            in_w = w
    return out


BLOCKS = _blocks()
N_BLOCKS = len(BLOCKS)  # 21
BLOCK_STAGE = np.array([b["stage"] for b in BLOCKS], np.int32)
BLOCK_POS = np.array([b["pos"] for b in BLOCKS], np.int32)
BLOCK_IN = np.array([b["in_w"] for b in BLOCKS], np.float32)
BLOCK_OUT = np.array([b["out_w"] for b in BLOCKS], np.float32)
BLOCK_STRIDE = np.array([b["stride"] for b in BLOCKS], np.float32)
BLOCK_RES_IN = np.array([b["res_in"] for b in BLOCKS], np.float32)
BLOCK_RES_OUT = np.array([b["res_out"] for b in BLOCKS], np.float32)


def mid_choices(in_w: int) -> tuple[int, ...]:
    """Middle (expanded) channels: 4× to 6× the input width in steps of 8."""
    return tuple(range(4 * in_w, 6 * in_w + 1, 8))


HW_GENES = (
    Gene("voltage_v", "hardware-circuit", tuple(round(0.50 + 0.05 * i, 2) for i in range(8)), "V",
         doc="supply voltage; energy ∝ V², cycle time ∝ 1/V"),
    Gene("bits_per_cell", "hardware-device", tuple(range(1, 9)), "bit",
         doc="RRAM bits stored per cell"),
    Gene("clock_period_ns", "hardware-circuit", (1, 2, 4, 6, 8, 10), "ns",
         doc="CiMLoop BASE_LATENCY (cycle at 1 V)"),
    Gene("xbar_rows", "hardware-circuit", (32, 64, 128, 256, 512), "cells", doc="crossbar rows"),
    Gene("xbar_cols", "hardware-circuit", (32, 64, 128, 256, 512), "cells", doc="crossbar columns"),
    Gene("router_group", "hardware-architecture", (1, 2, 4, 8, 16, 32), "", doc="macros per shared router"),
    Gene("tiles", "hardware-architecture", (4, 8, 16, 32, 64), "", doc="tiles per chip"),
    Gene("macros_per_tile", "hardware-architecture", (4, 8, 16, 32, 64, 128, 256), "", doc="macros per tile"),
    Gene("glb_mb", "hardware-architecture", (0.5, 1, 2, 4, 8, 16, 32), "MB", doc="global buffer (MiB)"),
)


def _genes():
    genes = list(HW_GENES)
    for s in range(6):
        genes.append(Gene(f"depth_s{s + 1}", "software", DEPTH_CHOICES, "blocks", structural=True,
                          doc=f"blocks in stage {s + 1} (max {STAGE_MAX_BLOCKS[s]})"))
    for b in range(N_BLOCKS):
        genes.append(Gene(f"kernel_b{b + 1:02d}", "software", KERNEL_CHOICES, "px", doc="depthwise kernel"))
    for b, blk in enumerate(BLOCKS):
        genes.append(Gene(f"mid_ch_b{b + 1:02d}", "software", mid_choices(blk["in_w"]), "channels",
                          doc=f"expanded channels (input width {blk['in_w']})"))
    for b in range(N_BLOCKS):
        for what in ("pw_w", "pw_a", "dw_w", "dw_a"):
            genes.append(Gene(f"{what}_bits_b{b + 1:02d}", "quantization", BIT_CHOICES, "bit",
                              doc={"pw_w": "pointwise weights", "pw_a": "pointwise activations",
                                   "dw_w": "depthwise weights", "dw_a": "depthwise activations"}[what]))
    return genes


_N_HW = len(HW_GENES)
_DEPTH0 = _N_HW
_KERNEL0 = _DEPTH0 + 6
_MID0 = _KERNEL0 + N_BLOCKS
_BITS0 = _MID0 + N_BLOCKS


BLOCK_DEPTH_GENE = tuple(_DEPTH0 + int(st) for st in BLOCK_STAGE)   # gene index of each block's stage depth


def _active(sp: Space, g):
    blk = sp.block_active(g)                                             # [P, 21]
    P = g.shape[0]
    hw = jnp.ones((P, _N_HW), bool)
    depth = jnp.broadcast_to(jnp.asarray(np.array(STAGE_MAX_BLOCKS) > 1), (P, 6))
    bits = jnp.repeat(blk, 4, axis=1)
    return jnp.concatenate([hw, depth, blk, blk, bits], axis=1)


def _architecture(sp: Space, g):
    v = sp.values(g)
    bits = v[:, _BITS0:].reshape(-1, N_BLOCKS, 4).astype(jnp.int32)
    return dict(
        depths=jnp.minimum(v[:, _DEPTH0:_DEPTH0 + 6], jnp.asarray(STAGE_MAX_BLOCKS, jnp.float32)).astype(jnp.int32),
        kernel=v[:, _KERNEL0:_MID0].astype(jnp.int32),
        mid_channels=v[:, _MID0:_BITS0].astype(jnp.int32),
        pw_w_bits=bits[..., 0], pw_a_bits=bits[..., 1], dw_w_bits=bits[..., 2], dw_a_bits=bits[..., 3],
        block_active=sp.block_active(g),
    )


def _workloads(sp: Space, v, block_active):
    """Layer table from per-gene values ``v [P, G]`` and block activity ``[P, 21]`` (bool or
    probability; every expression here is arithmetic, so relaxed values pass through)."""
    P = v.shape[0]
    ones = jnp.ones((P, 1), jnp.float32)
    mid = v[:, _MID0:_BITS0]
    k = v[:, _KERNEL0:_MID0]
    bits = v[:, _BITS0:].reshape(P, N_BLOCKS, 4)
    pw_w, pw_a, dw_w, dw_a = bits[..., 0], bits[..., 1], bits[..., 2], bits[..., 3]
    bi, bo = jnp.asarray(BLOCK_IN)[None], jnp.asarray(BLOCK_OUT)[None]
    ri, ro = jnp.asarray(BLOCK_RES_IN)[None], jnp.asarray(BLOCK_RES_OUT)[None]
    st = jnp.asarray(BLOCK_STRIDE)[None]
    # per block: expand (pw), depthwise, project (pw) -> interleave to [P, 63]
    def inter(e, d, p, dtype=jnp.float32):
        e, d, p = (jnp.broadcast_to(jnp.asarray(x, dtype), (P, N_BLOCKS)) for x in (e, d, p))
        return jnp.stack([e, d, p], axis=-1).reshape(P, 3 * N_BLOCKS)
    r0 = INPUT_SIZE // 2
    fixed_head = dict(C=[3, 32, 32], M=[32, 32, FIRST_BLOCK_OUT], R=[3, 3, 1], PQ=[r0, r0, r0], stride=[2, 1, 1],
                      kind=[KIND_CONV, KIND_DEPTHWISE, KIND_POINTWISE])
    fixed_tail = dict(C=[STAGE_WIDTHS[-1], FINAL_CH], M=[FINAL_CH, N_CLASSES], R=[1, 1], PQ=[7, 1], stride=[1, 1],
                      kind=[KIND_POINTWISE, KIND_FC])
    H = lambda key: jnp.asarray(fixed_head[key], jnp.float32)[None] * ones
    T = lambda key: jnp.asarray(fixed_tail[key], jnp.float32)[None] * ones
    cat = lambda h, m, t: jnp.concatenate([h, m, t], axis=1)
    C = cat(H("C"), inter(bi, mid, mid), T("C"))
    M = cat(H("M"), inter(mid, mid, bo), T("M"))
    R = cat(H("R"), inter(1.0, k, 1.0), T("R"))
    PQ = cat(H("PQ"), inter(ri, ro, ro), T("PQ"))
    stride = cat(H("stride"), inter(1.0, st, 1.0), T("stride"))
    kind = cat(H("kind"), inter(float(KIND_POINTWISE), float(KIND_DEPTHWISE), float(KIND_POINTWISE)), T("kind"))
    eight = 8.0 * jnp.ones((P, 3))
    ibits = cat(eight, inter(pw_a, dw_a, pw_a), eight[:, :2])
    wbits = cat(eight, inter(pw_w, dw_w, pw_w), eight[:, :2])
    act = jnp.asarray(block_active)
    always = jnp.ones((P, 1), act.dtype)
    active = jnp.concatenate([jnp.repeat(always, 3, axis=1), jnp.repeat(act, 3, axis=1),
                              jnp.repeat(always, 2, axis=1)], axis=1)
    return make_layer_table(C=C, M=M, R=R, S=R, P=PQ, Q=PQ, stride=stride, kind=kind.astype(jnp.int32),
                            input_bits=ibits, weight_bits=wbits, active=active)


def _hardware(sp: Space, v):
    col = lambda name: v[:, sp.index[name]]
    P = v.shape[0]
    return HardwareParams(
        voltage_v=col("voltage_v"), bits_per_cell=col("bits_per_cell"),
        clock_period_s=col("clock_period_ns") * 1e-9, rows=col("xbar_rows"), cols=col("xbar_cols"),
        router_group=col("router_group"), tiles=col("tiles"), macros_per_tile=col("macros_per_tile"),
        glb_bytes=col("glb_mb") * 2.0 ** 20, adc_bits=jnp.full((P,), 8.0), n_adc_per_bank=jnp.full((P,), 16.0),
    )


REFERENCE_HW = dict(voltage_v=0.7, bits_per_cell=4, clock_period_ns=4, xbar_rows=128, xbar_cols=128,
                    router_group=8, tiles=16, macros_per_tile=16, glb_mb=8)
REFERENCE_DEPTHS = (2, 3, 4, 3, 3)
REFERENCE_DOC = ("CIMNAS baseline: MobileNetV2 depths 2,3,4,3,3,1, kernel 3, expand 6, 8-bit; 0.7 V, "
                 "4 bits/cell, 4 ns, 128×128, router group 8, 16 tiles × 16 macros, 8 MB")


def _reference(sp: Space) -> dict:
    """The single design CIMNAS's notebook evaluates (docs: cimnas_reference.md, "baseline design")."""
    vals = dict(REFERENCE_HW)
    vals.update({f"depth_s{s + 1}": d for s, d in enumerate(REFERENCE_DEPTHS)})
    for b in range(N_BLOCKS):
        vals[f"kernel_b{b + 1:02d}"] = 3
        vals[f"mid_ch_b{b + 1:02d}"] = max(mid_choices(BLOCKS[b]["in_w"]))   # expand 6
        for what in ("pw_w", "pw_a", "dw_w", "dw_a"):
            vals[f"{what}_bits_b{b + 1:02d}"] = 8
    return vals


def _layer_names():
    names = ["first_conv", "b0_dw", "b0_project"]
    for b in BLOCKS:
        p = f"s{b['stage'] + 1}b{b['pos']}"
        names += [f"{p}_expand", f"{p}_dw", f"{p}_project"]
    return names + ["final_expand", "classifier"]


LAYER_NAMES = tuple(_layer_names())


def build() -> Space:
    return Space(
        "mbv2_rram", _genes(), technology="rram_32nm", active_fn=_active, workloads_fn=_workloads,
        hardware_fn=_hardware, architecture_fn=_architecture, layer_names=LAYER_NAMES,
        blocks=Blocks(BLOCK_DEPTH_GENE, tuple(int(x) for x in BLOCK_POS)),
        reference=_reference, reference_doc=REFERENCE_DOC, supernet="supernet_fmnist",
        description="CIMNAS space: MobileNetV2 (ProxylessNAS/OFA) + per-block 4/6/8-bit quantization + "
                    "RRAM CIM accelerator at 32 nm (8-bit ADC, 16 ADCs per bank)",
        notes=dict(input_size=INPUT_SIZE, n_classes=N_CLASSES, stage_widths=STAGE_WIDTHS,
                   stage_strides=STAGE_STRIDES, stage_max_blocks=STAGE_MAX_BLOCKS),
    )


register_space("mbv2_rram", build)
