"""Quantization-aware elastic MobileNetV2 supernet (Flax linen).

One set of weights at the largest size; a subnet is selected by an architecture dict of
arrays (see ``cimnas_jax.nets.arch``), used only through masks and traced scalars, so one
compiled function serves every subnet and every bit-width:

* depth: block j>0 of a stage is computed and then dropped with ``where(active, out, x)``
  (those blocks are residual, so dropping = identity); blocks 1..3 of a stage run as one
  ``nn.scan`` body (stacked params) to keep the compiled graph small;
* kernel k in 3/5/7: one 7x7 depthwise weight, centre k x k crop by a mask;
* middle channels m (full-scale count): first ceil(m * width_mult) channels kept by a mask;
* bits: fake quantization with a straight-through estimator (``cimnas_jax.nets.quant``):
  pw_w/pw_a bits for the expand and project 1x1 convs, dw_w/dw_a for the depthwise conv;
  first conv, first block, final 1x1 conv and classifier fixed at 8 bits.

Batch norm keeps NO running averages: in ``train=True`` mode it normalises with the batch
statistics (and writes them to the ``bn_stats`` collection when that is mutable, which is how
per-subnet statistics are re-estimated on a calibration batch); in ``train=False`` mode it
reads ``bn_stats`` given by the caller.

CPU tricks: depthwise conv = Toeplitz matmuls on small maps, shifted multiply-adds on
large ones; 1x1 conv = einsum.
Layout NHWC, input float32 in [-1, 1].
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cimnas_jax.nets.config import BLOCKS, MAX_KERNEL, STAGE_MAX_BLOCKS, SupernetConfig
from cimnas_jax.nets.quant import quantize_signed, quantize_unsigned, quantize_weight

BN_EPS = 1e-5
TOEPLITZ_MAX_HW = 256  # depthwise on maps up to 16x16 runs as Toeplitz matmuls (see depthwise)


def relu6(x):
    return jnp.clip(x, 0.0, 6.0)


def pointwise(x, w):
    """1x1 conv as einsum: x [B,H,W,C], w [C,M]."""
    return jnp.einsum("bhwc,cm->bhwm", x, w)


def _live_taps(k: int, stride: int, H: int, W: int):
    """Kernel rows/cols of a k x k 'same' (pad k//2) conv that touch an H x W map (the others
    read only padding), and the output size (Ho, Wo)."""
    p = k // 2
    Ho, Wo = (H - 1) // stride + 1, (W - 1) // stride + 1
    rows = tuple(i for i in range(k) if i - p <= H - 1 and (Ho - 1) * stride + i - p >= 0)
    cols = tuple(j for j in range(k) if j - p <= W - 1 and (Wo - 1) * stride + j - p >= 0)
    return rows, cols, Ho, Wo


@functools.lru_cache(maxsize=None)
def _shift_matrices(k: int, stride: int, H: int, W: int):
    """Static 0/1 matrices S[a, b, out, in] of the live taps (``_live_taps``) of a k x k 'same'
    conv on an H x W map: float32[len(rows), len(cols), Ho*Wo, H*W]."""
    p = k // 2
    rows, cols, Ho, Wo = _live_taps(k, stride, H, W)
    S = np.zeros((len(rows), len(cols), Ho * Wo, H * W), np.float32)
    for a, i in enumerate(rows):
        for b, j in enumerate(cols):
            for oy in range(Ho):
                iy = oy * stride + i - p
                if not 0 <= iy < H:
                    continue
                for ox in range(Wo):
                    ix = ox * stride + j - p
                    if 0 <= ix < W:
                        S[a, b, oy * Wo + ox, iy * W + ix] = 1.0
    return S


def depthwise(x, w, stride: int):
    """Depthwise k x k conv ('same' padding k//2): x [B,H,W,C], w [k,k,C].

    Small maps (H*W <= TOEPLITZ_MAX_HW, every map of the CPU-scale supernet): one batched
    matmul per channel with the conv's Toeplitz matrix T[c] = sum_ij w[i,j,c] S_ij, which skips
    the zero padding that dominates a 7x7 kernel on a 4x4..1x1 map (2.2x faster training step
    than shifted taps, measured).  Larger maps: k x k shifted multiply-adds, taps that read
    only padding skipped.  Both are exact; `feature_group_count` convs are slow on XLA:CPU."""
    k = w.shape[0]
    B, H, W, C = x.shape
    rows, cols, Ho, Wo = _live_taps(k, stride, H, W)
    if H * W <= TOEPLITZ_MAX_HW:
        S = _shift_matrices(k, stride, H, W)
        wk = w[np.asarray(rows)][:, np.asarray(cols)]
        T = jnp.einsum("ijc,ijoq->coq", wk, jnp.asarray(S))
        return jnp.einsum("bqc,coq->boc", x.reshape(B, H * W, C), T).reshape(B, Ho, Wo, C)
    p = k // 2
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    out = None
    for i in rows:
        for j in cols:
            sl = xp[:, i:i + stride * (Ho - 1) + 1:stride, j:j + stride * (Wo - 1) + 1:stride, :]
            out = sl * w[i, j] if out is None else out + sl * w[i, j]
    return out


def conv_kxk(x, w, stride: int):
    """Dense k x k conv ('same' padding) as k*k shifted einsums: w [k,k,C,M]."""
    k = w.shape[0]
    p = k // 2
    H, W = x.shape[1:3]
    Ho, Wo = (H - 1) // stride + 1, (W - 1) // stride + 1
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    out = None
    for i in range(k):
        for j in range(k):
            sl = xp[:, i:i + stride * (Ho - 1) + 1:stride, j:j + stride * (Wo - 1) + 1:stride, :]
            term = pointwise(sl, w[i, j])
            out = term if out is None else out + term
    return out


def kernel_mask(k, kmax: int = MAX_KERNEL):
    """bool[kmax,kmax]: centre k x k of a kmax x kmax kernel (k traced)."""
    r = (jnp.asarray(k, jnp.int32) - 1) // 2
    d = jnp.abs(jnp.arange(kmax) - kmax // 2)
    m = d <= r
    return m[:, None] & m[None, :]


def channel_mask(n_active, n_max: int):
    """float32[n_max]: first n_active channels = 1."""
    return (jnp.arange(n_max) < n_active).astype(jnp.float32)


class BatchNorm(nn.Module):
    """BN without running averages (see module docstring)."""

    features: int
    scale_init: Callable = nn.initializers.ones  # zeros: a residual branch that starts as the identity

    @nn.compact
    def __call__(self, x, train: bool):
        scale = self.param("scale", self.scale_init, (self.features,))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if train:
            mean = jnp.mean(x, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
            if self.is_mutable_collection("bn_stats"):
                self.variable("bn_stats", "mean", jnp.zeros, (self.features,)).value = mean
                self.variable("bn_stats", "var", jnp.ones, (self.features,)).value = var
        else:
            mean = self.variable("bn_stats", "mean", jnp.zeros, (self.features,)).value
            var = self.variable("bn_stats", "var", jnp.ones, (self.features,)).value
        return (x - mean) * jax.lax.rsqrt(var + BN_EPS) * scale + bias


class Block(nn.Module):
    """Elastic inverted-residual block (expand 1x1 -> dw kxk -> project 1x1)."""

    c_in: int
    c_mid_max: int
    c_out: int
    stride: int
    width_mult: float

    @nn.compact
    def __call__(self, x, arch_b: Mapping, train: bool):
        he = nn.initializers.he_normal()
        w_exp = self.param("expand", he, (self.c_in, self.c_mid_max))
        w_dw = self.param("dw", nn.initializers.normal(stddev=(2.0 / 9.0) ** 0.5),
                          (MAX_KERNEL, MAX_KERNEL, self.c_mid_max))
        w_proj = self.param("project", he, (self.c_mid_max, self.c_out))
        alpha = self.param("act_clip", nn.initializers.constant(6.0), ())

        # middle channels: genome value m (full scale) -> ceil(m * width_mult), 1e-6 guard
        n_mid = jnp.ceil(arch_b["mid_channels"].astype(jnp.float32) * self.width_mult - 1e-6)
        cmask = channel_mask(n_mid, self.c_mid_max)
        kmask = kernel_mask(arch_b["kernel"]).astype(jnp.float32)

        h = quantize_signed(x, arch_b["pw_a_bits"], alpha)
        h = pointwise(h, quantize_weight(w_exp, arch_b["pw_w_bits"], (0,)))
        h = relu6(BatchNorm(self.c_mid_max, name="bn_expand")(h, train)) * cmask

        h = quantize_unsigned(h, arch_b["dw_a_bits"])
        wd = quantize_weight(w_dw * kmask[:, :, None], arch_b["dw_w_bits"], (0, 1))
        h = depthwise(h, wd, self.stride)
        h = relu6(BatchNorm(self.c_mid_max, name="bn_dw")(h, train)) * cmask

        h = quantize_unsigned(h, arch_b["pw_a_bits"])
        h = pointwise(h, quantize_weight(w_proj * cmask[:, None], arch_b["pw_w_bits"], (0,)))
        h = BatchNorm(self.c_out, name="bn_project")(h, train)
        if self.stride == 1 and self.c_in == self.c_out:
            h = x + h
        return h


class RestBlock(nn.Module):
    """Block j > 0 of a stage (stride 1, residual): identity when arch_b['active'] is False.
    Scanned over the stage with nn.scan (carry = feature map)."""

    c: int
    c_mid_max: int
    width_mult: float
    train: bool

    @nn.compact
    def __call__(self, h, arch_b):
        out = Block(self.c, self.c_mid_max, self.c, 1, self.width_mult, name="block")(h, arch_b, self.train)
        return jnp.where(arch_b["active"], out, h), None


class Supernet(nn.Module):
    """Elastic, quantization-aware MobileNetV2 (mbv2_rram choices).  __call__(x, arch, train)."""

    cfg: SupernetConfig

    @nn.compact
    def __call__(self, x, arch: Mapping, train: bool = False):
        cfg = self.cfg
        if x.ndim != 4 or x.shape[-1] != cfg.in_channels:
            raise ValueError(f"input must be [B,H,W,{cfg.in_channels}] (NHWC); got {x.shape}")
        he = nn.initializers.he_normal()
        c0, c1 = cfg.ch(32), cfg.ch(16)
        eight = 8.0

        # first conv 3x3 (8-bit weights; the input image is 8-bit by nature)
        w0 = self.param("first_conv", he, (3, 3, cfg.in_channels, c0))
        h = conv_kxk(x, quantize_weight(w0, eight, (0, 1, 2)), cfg.first_stride)
        h = relu6(BatchNorm(c0, name="bn_first_conv")(h, train))

        # first block: dw 3x3 + project, 8-bit
        w1 = self.param("first_block_dw", nn.initializers.normal(stddev=(2.0 / 9.0) ** 0.5), (3, 3, c0))
        h = depthwise(quantize_unsigned(h, eight), quantize_weight(w1, eight, (0, 1)), 1)
        h = relu6(BatchNorm(c0, name="bn_first_block_dw")(h, train))
        w2 = self.param("first_block_project", he, (c0, c1))
        h = pointwise(quantize_unsigned(h, eight), quantize_weight(w2, eight, (0,)))
        h = BatchNorm(c1, name="bn_first_block_project")(h, train)

        keys = ("kernel", "mid_channels", "pw_w_bits", "pw_a_bits", "dw_w_bits", "dw_a_bits")
        b0 = 0
        for st, nb in enumerate(STAGE_MAX_BLOCKS):
            blk = BLOCKS[b0]
            h = Block(cfg.block_in[b0], cfg.block_max_mid[b0], cfg.block_out[b0], blk["stride"],
                      cfg.width_mult, name=f"s{st + 1}b0")(h, {k: arch[k][b0] for k in keys}, train)
            if nb > 1:  # blocks 1.. of a stage share shapes: one scanned body, params stacked on axis 0
                xs = {k: arch[k][b0 + 1:b0 + nb] for k in keys}
                xs["active"] = arch["block_active"][b0 + 1:b0 + nb]
                rest = nn.scan(RestBlock, variable_axes={"params": 0, "bn_stats": 0},
                               split_rngs={"params": True}, length=nb - 1)
                h, _ = rest(cfg.block_out[b0], cfg.block_max_mid[b0 + 1], cfg.width_mult, train,
                            name=f"s{st + 1}_rest")(h, xs)
            b0 += nb

        # final 1x1 conv and classifier, 8-bit
        cf = cfg.ch(1280)
        alpha = self.param("final_act_clip", nn.initializers.constant(6.0), ())
        w3 = self.param("final_conv", he, (cfg.block_out[-1], cf))
        h = pointwise(quantize_signed(h, eight, alpha), quantize_weight(w3, eight, (0,)))
        h = relu6(BatchNorm(cf, name="bn_final_conv")(h, train))
        h = jnp.mean(h, axis=(1, 2))
        w4 = self.param("classifier", nn.initializers.lecun_normal(), (cf, cfg.num_classes))
        b4 = self.param("classifier_bias", nn.initializers.zeros, (cfg.num_classes,))
        return quantize_unsigned(h, eight) @ quantize_weight(w4, eight, (0,)) + b4


def init_params(cfg: SupernetConfig, seed: int = 0):
    """Initial parameters (the ``params`` collection only)."""
    from cimnas_jax.nets.arch import largest_arch, to_device

    model = Supernet(cfg)
    x = jnp.zeros((2, cfg.resolution, cfg.resolution, cfg.in_channels), jnp.float32)
    init = jax.jit(lambda k, x, a: model.init(k, x, a, train=True)["params"])  # eager init is slow
    return init(jax.random.PRNGKey(seed), x, to_device(largest_arch()))


def param_shapes(cfg: SupernetConfig):
    """Parameter tree of ShapeDtypeStructs (no computation; for loading checkpoints)."""
    from cimnas_jax.nets.arch import largest_arch, to_device

    model = Supernet(cfg)
    x = jax.ShapeDtypeStruct((2, cfg.resolution, cfg.resolution, cfg.in_channels), jnp.float32)
    return jax.eval_shape(lambda k, x, a: model.init(k, x, a, train=True)["params"],
                          jax.random.PRNGKey(0), x, to_device(largest_arch()))
