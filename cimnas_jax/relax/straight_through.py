"""Straight-through steps: evaluate a function with ``ceil``/``floor``/``round`` passing gradients.

The analytic hardware model and the spaces' decoders have integer steps -- weight slices
``ceil(weight bits / bits per cell)``, crossbar tiling ``ceil(C R S / rows)``, placement
``floor(size / used)``, channel rounding ``floor((v + 4) / 8) * 8`` -- whose derivative is zero
almost everywhere, so a gradient through them says nothing about e.g. ``bits_per_cell``.

``straight_through(fn)`` returns a function with the same forward values as ``fn`` in which
every ``ceil``, ``floor`` and ``round`` has the identity as its derivative
(``x + stop_gradient(step(x) - x)``, Bengio et al. 2013): the forward pass is exact, the
backward pass treats each step as the line it rounds. It works by tracing ``fn`` to a jaxpr and
re-evaluating it with those primitives replaced, so the model code (``cimnas_jax/hw``) is used
as is. Nested ``jit`` calls are inlined so their steps are replaced too; a step inside another
higher-order primitive (a ``while``/``scan``/``cond`` body, a ``custom_jvp`` rule) keeps its
zero derivative -- the hardware model and the decoders have none there. The rewrite happens at
trace time: under ``jax.jit`` it costs nothing per call.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core as jcore

STEP_PRIMITIVES = ("ceil", "floor", "round")
_INLINE = ("pjit", "jit", "closed_call", "core_call")


def _st(step, x):
    return x + lax.stop_gradient(step(x) - x)


def _has_step(jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in STEP_PRIMITIVES:
            return True
        for p in eqn.params.values():
            inner = getattr(p, "jaxpr", p)
            if isinstance(inner, jcore.Jaxpr) and _has_step(inner):
                return True
    return False


def _eval(jaxpr, consts, args):
    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, x in zip(jaxpr.constvars, consts):
        env[v] = x
    for v, x in zip(jaxpr.invars, args):
        env[v] = x
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in STEP_PRIMITIVES:
            step = lambda x, _e=eqn: _e.primitive.bind(x, **_e.params)
            out = [_st(step, invals[0])]
        elif name in _INLINE and isinstance(eqn.params.get("jaxpr"), jcore.ClosedJaxpr) \
                and _has_step(eqn.params["jaxpr"].jaxpr):
            inner = eqn.params["jaxpr"]
            out = _eval(inner.jaxpr, inner.consts, invals)
        else:
            ans = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            out = ans if eqn.primitive.multiple_results else [ans]
        for v, x in zip(eqn.outvars, out):
            env[v] = x
    return [read(v) for v in jaxpr.outvars]


def straight_through(fn):
    """``fn`` with straight-through (identity-derivative) ``ceil``/``floor``/``round``.

    Same signature and forward values as ``fn`` (positional pytree arguments, pytree output);
    differentiable through the steps as described in the module docstring."""

    def wrapped(*args):
        closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        flat = jax.tree_util.tree_leaves(args)
        out = _eval(closed.jaxpr, closed.consts, flat)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), out)

    wrapped.__name__ = f"straight_through({getattr(fn, '__name__', 'fn')})"
    wrapped.__doc__ = fn.__doc__
    return wrapped


def st_ceil(x):
    """``ceil`` with the identity as derivative."""
    return _st(jnp.ceil, x)


def st_floor(x):
    """``floor`` with the identity as derivative."""
    return _st(jnp.floor, x)
