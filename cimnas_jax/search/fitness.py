"""Fitness functions: pure JAX ``genomes int32[P, G] -> metrics dict`` (see objectives.py).

* ``hardware_fitness(space, accuracy_fn)``: the analytic CIM hardware model
  (``cimnas_jax.hw.evaluate_designs``) plus an accuracy source.
* accuracy sources (``genomes -> float32[P]``): ``constant_accuracy_hardware_only`` -- a
  constant, ONLY meaningful for hardware-only searches (it makes every design equally
  accurate; EDAP/accuracy then ranks like EDAP); Flax surrogates plug in the same way.
* ``linear_fitness`` and ``mlp_fitness``: synthetic, deterministic fitnesses for measuring the
  engine (a linear function of the genome; a 3 x 400 ReLU MLP whose first layer is a one-hot
  matmul over all gene choices, chunked over the population, so no [P, G, width]
  intermediate is ever built).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

AccuracyFn = Callable[[jax.Array], jax.Array]


def constant_accuracy_hardware_only(value: float = 1.0) -> AccuracyFn:
    """Accuracy = ``value`` for every design. For hardware-only searches; not a predictor."""
    if not 0 < value <= 1:
        raise ValueError(f"constant accuracy must be in (0, 1], got {value}")

    def acc(genomes):
        return jnp.full((genomes.shape[0],), value, jnp.float32)

    acc.__name__ = f"constant_accuracy_hardware_only({value})"
    return acc


def _complete(m, n):
    one = jnp.ones((n,), jnp.float32)
    out = {"energy_j": one, "latency_s": one, "area_mm2": one, "accuracy": one,
           "valid": jnp.ones((n,), bool), "cells_needed": jnp.zeros((n,), jnp.float32),
           "cells_available": one}
    out.update(m)
    return out


def hardware_fitness(space, accuracy_fn: AccuracyFn, technology: str | None = None):
    """Analytic hardware model (at ``technology``, default the space's) + accuracy source ->
    metrics (energy_j, latency_s, ...)."""
    from cimnas_jax.hw import evaluate_designs, load_technology  # hardware package

    # Load the technology tables eagerly: loading them first inside a jit trace would cache
    # tracers in load_technology's lru_cache (UnexpectedTracerError on the next trace).
    tech = load_technology(technology or space.technology)

    def fitness(genomes):
        r = evaluate_designs(space, genomes, tech)
        # "valid" = the model could evaluate every active layer and all metrics are finite.
        # Capacity is NOT folded in here (HWResult.valid does fold it in) so that the
        # capacity constraint gives a graded violation cells_needed / cells_available - 1
        # and can be switched off with Constraints(capacity=False).
        ok = (jnp.all(r.layer_ok, axis=-1) & jnp.isfinite(r.energy_j)
              & jnp.isfinite(r.latency_s) & jnp.isfinite(r.area_mm2))
        return {"energy_j": r.energy_j, "latency_s": r.latency_s, "area_mm2": r.area_mm2,
                "accuracy": jnp.asarray(accuracy_fn(genomes), jnp.float32),
                "valid": ok, "cells_needed": r.cells_needed,
                "cells_available": r.cells_available}

    return fitness


def linear_fitness(space, seed: int = 0):
    """Cheap synthetic fitness: energy_j = 1 + w . (genome / n_choices), w >= 0 fixed."""
    w = np.random.default_rng(seed).uniform(0.1, 1.0, space.n_genes).astype(np.float32)
    w = jnp.asarray(w / np.asarray(space.n_choices, np.float32))

    def fitness(genomes):
        e = 1.0 + genomes.astype(jnp.float32) @ w
        return _complete({"energy_j": e}, genomes.shape[0])

    return fitness


def mlp_fitness(space, width: int = 400, depth: int = 3, seed: int = 0, chunk: int = 16384,
                dtype: str = "float32"):
    """3 x 400 ReLU MLP over the one-hot genome (like APQ's accuracy predictor), random
    fixed weights; output -> energy_j = softplus(out) + 1e-3.

    First layer: one-hot [chunk, sum(n_choices)] @ W1 (a matmul; never [P, G, width]). The one-hot
    is a compare (column c is 1 where gene gene_of[c] has index c - offset), an elementwise
    fusion XLA can feed straight into the matmul, instead of a scatter (same values, bit for bit).
    Populations larger than ``chunk`` are processed in chunks with ``lax.map``. ``dtype``
    "bfloat16" runs the matmuls in bfloat16 with float32 accumulation (tensor cores on a GPU;
    the one-hot is exact in bfloat16); "float32" is the default.
    """
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be float32 or bfloat16, got {dtype!r}")
    dt = jnp.dtype(dtype)
    nc = np.asarray(space.n_choices, np.int64)
    offsets = jnp.asarray(np.concatenate([[0], np.cumsum(nc)[:-1]]), jnp.int32)
    gene_of = jnp.asarray(np.repeat(np.arange(len(nc)), nc), jnp.int32)     # [n_in] gene of each column
    cols = jnp.arange(int(nc.sum()), dtype=jnp.int32)
    n_in = int(nc.sum())
    rng = np.random.default_rng(seed)
    dims = [n_in] + [width] * depth + [1]
    Ws = [jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), jnp.float32).astype(dt)
          for a, b in zip(dims[:-1], dims[1:])]

    def net(g):
        idx = g + offsets[None, :]
        h = (jnp.take(idx, gene_of, axis=1) == cols[None, :]).astype(dt)
        for W in Ws[:-1]:
            h = jax.nn.relu(jnp.dot(h, W, preferred_element_type=jnp.float32)).astype(dt)
        return jnp.dot(h, Ws[-1], preferred_element_type=jnp.float32)[:, 0]

    def fitness(genomes):
        p = genomes.shape[0]
        if p <= chunk:
            out = net(genomes)
        else:
            pad = (-p) % chunk
            g = jnp.pad(genomes, ((0, pad), (0, 0))).reshape(-1, chunk, genomes.shape[1])
            out = jax.lax.map(net, g).reshape(-1)[:p]
        return _complete({"energy_j": jax.nn.softplus(out) + 1e-3}, p)

    return fitness
