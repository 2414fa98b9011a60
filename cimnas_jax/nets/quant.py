"""Fake quantization with a straight-through estimator (STE).

Bits are traced arrays (float or int scalars), so one compiled function serves every
bit-width: nothing here branches on the value of ``bits``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ste(x: jax.Array, q: jax.Array) -> jax.Array:
    """Forward value q, gradient of identity wrt x."""
    return x + jax.lax.stop_gradient(q - x)


def quantize_weight(w: jax.Array, bits, reduce_axes: tuple[int, ...]) -> jax.Array:
    """Symmetric per-output-channel weight quantization to ``bits`` (2^(b-1)-1 levels each side).

    The scale is max|w| over ``reduce_axes`` (the fan-in axes), so masked-out (zero) fan-in
    entries never widen the range.
    """
    levels = jnp.exp2(jnp.asarray(bits, jnp.float32) - 1.0) - 1.0
    s = jnp.max(jnp.abs(w), axis=reduce_axes, keepdims=True) / levels
    s = jnp.maximum(jax.lax.stop_gradient(s), 1e-8)
    return ste(w, jnp.round(w / s) * s)


def quantize_unsigned(x: jax.Array, bits, x_max: float = 6.0) -> jax.Array:
    """Unsigned activation quantization on the fixed range [0, x_max] (ReLU6 outputs)."""
    levels = jnp.exp2(jnp.asarray(bits, jnp.float32)) - 1.0
    s = x_max / levels
    xc = jnp.clip(x, 0.0, x_max)
    return ste(xc, jnp.round(xc / s) * s)


def quantize_signed(x: jax.Array, bits, alpha: jax.Array) -> jax.Array:
    """Signed activation quantization on [-alpha, alpha], alpha learnable (PACT-style clip)."""
    alpha = jnp.abs(alpha) + 1e-3
    levels = jnp.exp2(jnp.asarray(bits, jnp.float32) - 1.0) - 1.0
    xc = jnp.clip(x, -alpha, alpha)
    s = alpha / levels
    return ste(xc, jnp.round(xc / s) * s)


def quantize_unsigned_clip(x: jax.Array, bits, alpha: jax.Array) -> jax.Array:
    """Unsigned activation quantization on [0, alpha], alpha learnable (PACT): for ReLU
    outputs without a fixed range (the ResNet supernet). Gradient to alpha where x > alpha."""
    alpha = jnp.abs(alpha) + 1e-3
    levels = jnp.exp2(jnp.asarray(bits, jnp.float32)) - 1.0
    xc = jnp.clip(x, 0.0, alpha)
    s = alpha / levels
    return ste(xc, jnp.round(xc / s) * s)
