"""Supernet building blocks: fake quantization, masks, depthwise/1x1 convs, arch dicts, scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cimnas_jax.nets.arch import (
    check_arch, largest_arch, random_arch, smallest_arch, stack_archs, uniform_arch)
from cimnas_jax.nets.config import MID_CHOICES, SupernetConfig, scaled
from cimnas_jax.nets.quant import quantize_signed, quantize_unsigned, quantize_weight
from cimnas_jax.nets.supernet import channel_mask, conv_kxk, kernel_mask, pointwise
from cimnas_jax.nets.supernet import depthwise as _depthwise

# jitted: one compiled program instead of ~100 eagerly dispatched ops (much faster on CPU)
depthwise = jax.jit(_depthwise, static_argnums=2)
conv_kxk = jax.jit(conv_kxk, static_argnums=2)


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_weight_quant_levels_and_ste(bits):
    w = jax.random.normal(jax.random.PRNGKey(0), (64, 5))
    q = quantize_weight(w, bits, (0,))
    for c in range(5):
        levels = np.unique(np.round(np.asarray(q[:, c]) / (np.abs(np.asarray(w[:, c])).max() / (2 ** (bits - 1) - 1))))
        assert levels.min() >= -(2 ** (bits - 1) - 1) and levels.max() <= 2 ** (bits - 1) - 1
        assert len(levels) <= 2 ** bits - 1
    err = float(jnp.max(jnp.abs(q - w) / jnp.max(jnp.abs(w), 0)))
    assert err <= 0.5 / (2 ** (bits - 1) - 1) + 1e-6
    g = jax.grad(lambda w: jnp.sum(quantize_weight(w, bits, (0,)) * 3.0))(w)
    np.testing.assert_allclose(g, 3.0)  # straight-through


def test_activation_quant():
    x = jnp.linspace(-1.0, 7.0, 1001)
    for bits in (4, 6, 8):
        q = np.asarray(quantize_unsigned(x, bits))
        assert len(np.unique(q)) == 2 ** bits and q.min() == 0.0 and q.max() == 6.0
        s = np.asarray(quantize_signed(x, bits, jnp.asarray(2.0)))
        assert len(np.unique(s)) <= 2 ** bits - 1 and abs(s.max() - 2.0) < 1e-2
    e4 = float(jnp.mean(jnp.abs(quantize_unsigned(x, 4) - jnp.clip(x, 0, 6))))
    e8 = float(jnp.mean(jnp.abs(quantize_unsigned(x, 8) - jnp.clip(x, 0, 6))))
    assert e8 < e4 / 8
    ga = jax.grad(lambda a: jnp.sum(quantize_signed(x, 8, a)))(jnp.asarray(2.0))
    assert float(ga) > 0  # clipped values pull the learnable range up


def test_masks():
    m3, m5, m7 = (np.asarray(kernel_mask(k)) for k in (3, 5, 7))
    assert m3.sum() == 9 and m5.sum() == 25 and m7.sum() == 49
    assert m3[2:5, 2:5].all() and (m3 <= m5).all() and (m5 <= m7).all()  # centre crops, nested
    np.testing.assert_array_equal(np.asarray(channel_mask(jnp.asarray(3), 5)), [1, 1, 1, 0, 0])


@pytest.mark.parametrize("k,stride,hw", [(3, 1, (9, 8)), (7, 2, (9, 8)), (7, 1, (2, 2)), (7, 2, (3, 3)),
                                         (7, 1, (1, 1)), (5, 2, (20, 17)), (7, 1, (17, 16))])
def test_depthwise_and_dense_match_lax_conv(stride, k, hw):
    """Both depthwise paths (Toeplitz matmul on maps <= 16x16, shifted taps above) and the
    padding-tap skipping on tiny maps agree with lax's grouped conv, values and gradients."""
    kx, kw = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(kx, (2, *hw, 6))
    w = jax.random.normal(kw, (k, k, 6))

    def ref_dw(x, w):
        return jax.lax.conv_general_dilated(x, w[:, :, None, :], (stride, stride), [(k // 2, k // 2)] * 2,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6)
    ref = ref_dw(x, w)
    np.testing.assert_allclose(depthwise(x, w, stride), ref, rtol=1e-4, atol=1e-4)
    g = jax.grad(lambda x, w: jnp.sum(jnp.sin(_depthwise(x, w, stride))), (0, 1))(x, w)
    g_ref = jax.grad(lambda x, w: jnp.sum(jnp.sin(ref_dw(x, w))), (0, 1))(x, w)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    wd = jax.random.normal(kw, (k, k, 6, 4))
    ref2 = jax.lax.conv_general_dilated(x, wd, (stride, stride), [(k // 2, k // 2)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(conv_kxk(x, wd, stride), ref2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pointwise(x, wd[0, 0]), jnp.einsum("bhwc,cm->bhwm", x, wd[0, 0]), rtol=1e-5)


def test_centre_crop_kernel_equals_small_kernel():
    x = jax.random.normal(jax.random.PRNGKey(2), (1, 8, 8, 3))
    w7 = jax.random.normal(jax.random.PRNGKey(3), (7, 7, 3))
    masked = depthwise(x, w7 * kernel_mask(3)[:, :, None], 1)
    np.testing.assert_allclose(masked, depthwise(x, w7[2:5, 2:5], 1), rtol=1e-5, atol=1e-5)


def test_arch_helpers_and_validation():
    big, small = largest_arch(), smallest_arch()
    assert big["block_active"].all() and small["block_active"].sum() == 2 * 5 + 1
    assert big["mid_channels"][0] == 96 and small["mid_channels"][0] == 64
    assert (big["pw_w_bits"] == 8).all() and (small["dw_a_bits"] == 4).all()
    r = random_arch(np.random.default_rng(0), 7)
    check_arch(r)
    check_arch(stack_archs([big, small, uniform_arch(3, 5, 0.5, 6)]))
    bad = dict(big, kernel=np.full(21, 4))
    with pytest.raises(ValueError, match="kernel"):
        check_arch(bad)
    with pytest.raises(ValueError, match="mid_channels"):
        check_arch(dict(big, mid_channels=big["mid_channels"] + 1))
    with pytest.raises(ValueError, match="lacks"):
        check_arch({"depths": big["depths"]})


def test_width_scaling_rule():
    cfg = SupernetConfig(width_mult=0.35, resolution=32, in_channels=1, num_classes=10)
    assert cfg.ch(320) == 112 and cfg.ch(24) == 9 and scaled(96, 0.35) == 34
    assert cfg.block_max_mid[0] == scaled(96, 0.35) and cfg.block_max_mid[-1] == scaled(1152, 0.35)
    assert cfg.first_stride == 1 and SupernetConfig().first_stride == 2
    assert SupernetConfig(resolution=32, stem_stride=2).first_stride == 2
    full = SupernetConfig()
    assert full.block_max_mid == tuple(max(c) for c in MID_CHOICES)
    with pytest.raises(ValueError, match="width_mult"):
        SupernetConfig(width_mult=0.0)


def test_arch_contract_matches_space():
    space = pytest.importorskip("cimnas_jax.space", reason="cimnas_jax.space not importable")
    sp = space.get_space("mbv2_rram")
    g = sp.sample(jax.random.PRNGKey(0), 50)
    a = {k: np.asarray(v) for k, v in sp.architecture(g).items()}
    check_arch(a)  # every sampled genome is a valid supernet input
    top = np.asarray(sp.n_choices, np.int32)[None] - 1
    at = {k: np.asarray(v)[0] for k, v in sp.architecture(top).items()}
    for k, v in largest_arch(8).items():
        np.testing.assert_array_equal(at[k], v, err_msg=k)
    lo = {k: np.asarray(v)[0] for k, v in sp.architecture(np.zeros_like(top)).items()}
    for k, v in smallest_arch(4).items():
        np.testing.assert_array_equal(lo[k], v, err_msg=k)
