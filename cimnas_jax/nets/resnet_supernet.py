"""Quantization-aware elastic ResNet50-style supernet (Flax linen).

One set of weights at the largest size; a subnet is selected by an architecture dict of arrays
(``cimnas_jax.nets.resnet_arch``, the same dict ``sp.architecture`` of ``resnet50_sram7nm``
returns), used only through masks and traced scalars, so one compiled function serves every
subnet and every bit-width:

* depth: block j>0 of a stage is computed and then dropped with ``where(active, out, x)``
  (those blocks are residual with equal in/out width, so dropping = identity); blocks 1.. of a
  stage run as one ``nn.scan`` body (stacked params) to keep the compiled graph small;
* widths (stem, each stage's output = its residual stream, each block's middle): the genome's
  full-size count c keeps the first ``ceil(c * width_mult)`` channels of a buffer sized for the
  largest choice (a 0/1 mask after every BN + ReLU; the next conv's fan-in rows are masked
  before its weights are quantized, so an inactive channel never widens a quantization range);
* bits: fake quantization with a straight-through estimator (``cimnas_jax.nets.quant``).
  Each bottleneck conv (reduce 1x1 -> 3x3, which carries the stride -> expand 1x1) quantizes
  its weights (symmetric, per output channel) and its input activations (unsigned on [0, alpha]
  with a learnable alpha per conv, PACT) at its own bits; the downsample 1x1 of a stage's first
  block uses the expand conv's bits, as the space's layer table counts it.  Stem conv and
  classifier are fixed at 8 bits (the stem reads the 8-bit image).

Batch norm is ``cimnas_jax.nets.supernet.BatchNorm`` (no running averages; statistics
re-estimated per subnet).  The last BN of every bottleneck starts at scale 0, so every residual
branch starts as the identity (zero-init residual).  Dense convs are ``lax.conv``; 1x1 convs
are einsums.
Layout NHWC, input float32 in [-1, 1].
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from cimnas_jax.nets.quant import quantize_unsigned_clip, quantize_weight
from cimnas_jax.nets.resnet_config import FC_BITS, STAGE_MAX_BLOCKS, STAGE_STRIDES, STEM_BITS, ResNetConfig
from cimnas_jax.nets.supernet import BatchNorm, channel_mask, pointwise

ACT_CLIP_INIT = 4.0


def conv(x, w, stride: int):
    """Dense k x k conv, 'same' padding k//2 (torchvision's): x [B,H,W,C], w [k,k,C,M].
    ``lax.conv`` (XLA:CPU's convolution is 4-13x faster than shifted einsums here, measured);
    the training step runs its subnets as an unrolled loop, not ``vmap``, so the weights are
    never batched (a batched-weight conv becomes a slow grouped conv)."""
    p = w.shape[0] // 2
    return jax.lax.conv_general_dilated(x, w, (stride, stride), [(p, p), (p, p)],
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def active_channels(full_size_count, width_mult: float):
    """Genome channel count (full size) -> active channels at this scale: ceil(c * w), 1e-6 guard."""
    return jnp.ceil(jnp.asarray(full_size_count, jnp.float32) * width_mult - 1e-6)


def _quant_act(module: nn.Module, name: str, x, bits):
    alpha = module.param(name, nn.initializers.constant(ACT_CLIP_INIT), ())
    return quantize_unsigned_clip(x, bits, alpha)


class Bottleneck(nn.Module):
    """Elastic quantized bottleneck: reduce 1x1 -> 3x3 (stride) -> expand 1x1 (+ downsample)."""

    c_in: int
    c_mid: int
    c_out: int
    stride: int
    width_mult: float
    downsample: bool

    @nn.compact
    def __call__(self, x, in_mask, out_mask, a: Mapping, train: bool):
        he = nn.initializers.he_normal()
        wb, ab = a["w_bits"], a["a_bits"]
        mmask = channel_mask(active_channels(a["mid_channels"], self.width_mult), self.c_mid)
        w_r = self.param("reduce", he, (self.c_in, self.c_mid))
        w_c = self.param("conv3", he, (3, 3, self.c_mid, self.c_mid))
        w_e = self.param("expand", he, (self.c_mid, self.c_out))

        h = _quant_act(self, "reduce_act_clip", x, ab[0])
        h = pointwise(h, quantize_weight(w_r * in_mask[:, None], wb[0], (0,)))
        h = nn.relu(BatchNorm(self.c_mid, name="bn_reduce")(h, train)) * mmask

        h = _quant_act(self, "conv3_act_clip", h, ab[1])
        h = conv(h, quantize_weight(w_c * mmask[None, None, :, None], wb[1], (0, 1, 2)), self.stride)
        h = nn.relu(BatchNorm(self.c_mid, name="bn_conv3")(h, train)) * mmask

        h = _quant_act(self, "expand_act_clip", h, ab[2])
        h = pointwise(h, quantize_weight(w_e * mmask[:, None], wb[2], (0,)))
        h = BatchNorm(self.c_out, nn.initializers.zeros, name="bn_expand")(h, train)

        if self.downsample:
            w_d = self.param("downsample", he, (self.c_in, self.c_out))
            s = _quant_act(self, "downsample_act_clip", x, ab[2])
            if self.stride > 1:
                s = s[:, ::self.stride, ::self.stride]
            s = pointwise(s, quantize_weight(w_d * in_mask[:, None], wb[2], (0,)))
            s = BatchNorm(self.c_out, name="bn_downsample")(s, train)
        else:
            s = x
        return nn.relu(h + s) * out_mask


class RestBottleneck(nn.Module):
    """Block j > 0 of a stage (stride 1, residual): identity when a['active'] is False.
    Scanned over the stage with nn.scan (carry = (feature map, stage channel mask))."""

    c: int
    c_mid: int
    width_mult: float
    train: bool

    @nn.compact
    def __call__(self, carry, a):
        h, mask = carry
        out = Bottleneck(self.c, self.c_mid, self.c, 1, self.width_mult, False, name="block")(
            h, mask, mask, a, self.train)
        return (jnp.where(a["active"], out, h), mask), None


def max_pool_3x3_s2(x):
    """torchvision's stem max-pool (3x3, stride 2, padding 1)."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                 ((0, 0), (1, 1), (1, 1), (0, 0)))


class ResNetSupernet(nn.Module):
    """Elastic, quantization-aware ResNet50-style net (resnet50_sram7nm choices).
    __call__(x, arch, train)."""

    cfg: ResNetConfig

    @nn.compact
    def __call__(self, x, arch: Mapping, train: bool = False):
        cfg = self.cfg
        if x.ndim != 4 or x.shape[-1] != cfg.in_channels:
            raise ValueError(f"input must be [B,H,W,{cfg.in_channels}] (NHWC); got {x.shape}")
        he = nn.initializers.he_normal()
        w = cfg.width_mult
        k = cfg.stem_kernel

        stem_mask = channel_mask(active_channels(arch["stem_channels"], w), cfg.stem_max)
        w0 = self.param("stem_conv", he, (k, k, cfg.in_channels, cfg.stem_max))
        h = conv(x, quantize_weight(w0, STEM_BITS, (0, 1, 2)), cfg.first_stride)
        h = nn.relu(BatchNorm(cfg.stem_max, name="bn_stem")(h, train)) * stem_mask
        if cfg.large_stem:
            h = max_pool_3x3_s2(h)

        in_mask, c_in, b0 = stem_mask, cfg.stem_max, 0
        for st, nb in enumerate(STAGE_MAX_BLOCKS):
            c_out, c_mid = cfg.stage_max[st], cfg.mid_max[st]
            mask = channel_mask(active_channels(arch["stage_channels"][st], w), c_out)
            blk = {key: arch[key][b0] for key in ("mid_channels", "w_bits", "a_bits")}
            h = Bottleneck(c_in, c_mid, c_out, STAGE_STRIDES[st], w, True, name=f"s{st + 1}b0")(
                h, in_mask, mask, blk, train)
            xs = {key: arch[key][b0 + 1:b0 + nb] for key in ("mid_channels", "w_bits", "a_bits")}
            xs["active"] = arch["block_active"][b0 + 1:b0 + nb]
            rest = nn.scan(RestBottleneck, variable_axes={"params": 0, "bn_stats": 0},
                           split_rngs={"params": True}, length=nb - 1)
            (h, _), _ = rest(c_out, c_mid, w, train, name=f"s{st + 1}_rest")((h, mask), xs)
            in_mask, c_in, b0 = mask, c_out, b0 + nb

        h = jnp.mean(h, axis=(1, 2))
        alpha = self.param("fc_act_clip", nn.initializers.constant(ACT_CLIP_INIT), ())
        wf = self.param("fc", nn.initializers.lecun_normal(), (c_in, cfg.num_classes))
        bf = self.param("fc_bias", nn.initializers.zeros, (cfg.num_classes,))
        return quantize_unsigned_clip(h, FC_BITS, alpha) @ quantize_weight(wf * in_mask[:, None], FC_BITS, (0,)) + bf


def init_params(cfg: ResNetConfig, seed: int = 0):
    """Initial parameters (the ``params`` collection only)."""
    from cimnas_jax.nets.resnet_arch import largest_arch, to_device

    model = ResNetSupernet(cfg)
    x = jnp.zeros((2, cfg.resolution, cfg.resolution, cfg.in_channels), jnp.float32)
    init = jax.jit(lambda k, x, a: model.init(k, x, a, train=True)["params"])
    return init(jax.random.PRNGKey(seed), x, to_device(largest_arch()))


def param_shapes(cfg: ResNetConfig):
    """Parameter tree of ShapeDtypeStructs (no computation; for loading checkpoints)."""
    from cimnas_jax.nets.resnet_arch import largest_arch, to_device

    model = ResNetSupernet(cfg)
    x = jax.ShapeDtypeStruct((2, cfg.resolution, cfg.resolution, cfg.in_channels), jnp.float32)
    return jax.eval_shape(lambda k, x, a: model.init(k, x, a, train=True)["params"],
                          jax.random.PRNGKey(0), x, to_device(largest_arch()))
