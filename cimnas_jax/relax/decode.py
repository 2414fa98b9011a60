"""Soft decode: per-gene choice probabilities -> expected values, activities, layers, hardware.

Given probabilities ``probs [P, G, W]`` (a Gumbel-softmax sample or a softmax of logits):

* ``values [P, G]``: each gene's expected physical value, ``sum_c probs[g, c] value_table[g, c]``
  (linear in probs; at a one-hot it is the genome's value exactly);
* ``block_active [P, B]``: probability that each elastic block is present
  (``Space.block_active_from_probs``, linear in the depth genes' probabilities);
* ``gene_active [P, G]``: probability that each gene has an effect. A gene either always has an
  effect, never has one, or has one exactly when one block is present (true of every registered
  space; ``gene_activity_map`` checks it against ``Space.active`` and refuses a space where it
  does not hold), so its activity is 1, 0 or that block's probability;
* ``layers``: ``Space.workloads_from_values(values, block_active)`` -- a LayerTable whose
  ``active`` is each layer's presence probability and whose macs / n_weights are scaled by it;
* ``hw``: ``Space.hardware_from_values(values)``.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

ALWAYS, NEVER = -1, -2


@flax.struct.dataclass
class SoftDesign:
    """A batch of relaxed designs. probs [P, G, W]; values, gene_active [P, G]; block_active
    [P, B]; layers: LayerTable [P, L] (float ``active``); hw: HardwareParams [P]."""

    probs: jax.Array
    values: jax.Array
    block_active: jax.Array
    gene_active: jax.Array
    layers: Any
    hw: Any


@functools.lru_cache(maxsize=None)
def gene_activity_map(space, n_probe: int = 4096, seed: int = 0) -> np.ndarray:
    """int ``[G]``: ``ALWAYS`` (-1), ``NEVER`` (-2) or the block whose presence makes gene g
    active. Found by probing ``space.active`` on uniform random genomes (every depth combination
    of the registered spaces appears among them many times); raises
    NotImplementedError naming a gene whose activity is not one of these."""
    with jax.ensure_compile_time_eval():    # host constants, even when first called in a trace
        g = jax.jit(space.sample, static_argnums=1)(jax.random.key(seed), n_probe)
        act = np.asarray(space.active(g))
        blk = np.asarray(space.block_active(g))
    out = np.empty(space.n_genes, np.int64)
    for i in range(space.n_genes):
        a = act[:, i]
        if a.all():
            out[i] = ALWAYS
        elif not a.any():
            out[i] = NEVER
        else:
            hits = np.flatnonzero((blk == a[:, None]).all(0))
            if not len(hits):
                raise NotImplementedError(
                    f"space '{space.name}': gene '{space.gene_names[i]}' is active neither always, "
                    "never, nor exactly when one block is present; the relaxed decode cannot "
                    "form its activity")
            out[i] = hits[0]
    return out


def gene_active_from_blocks(space, block_active: jax.Array) -> jax.Array:
    """Gene activity probabilities ``[P, G]`` from block presence probabilities ``[P, B]``."""
    m = gene_activity_map(space)
    P = block_active.shape[0]
    ba = jnp.asarray(block_active, jnp.float32)
    if ba.shape[1] == 0:
        ba = jnp.zeros((P, 1), jnp.float32)
    cols = ba[:, np.maximum(m, 0)]
    return jnp.where(jnp.asarray(m == ALWAYS), 1.0, jnp.where(jnp.asarray(m == NEVER), 0.0, cols))


def soft_values(space, probs: jax.Array) -> jax.Array:
    """Expected physical value of every gene, float32 ``[P, G]``."""
    return jnp.sum(probs * jnp.asarray(space.value_table), axis=-1)


def soft_decode(space, probs: jax.Array) -> SoftDesign:
    """Relaxed designs from choice probabilities ``[P, G, W]`` (see the module docstring)."""
    probs = jnp.asarray(probs, jnp.float32)
    values = soft_values(space, probs)
    if space.blocks.n_blocks:
        block = space.block_active_from_probs(probs)
    else:
        block = jnp.zeros((probs.shape[0], 0), jnp.float32)
    return SoftDesign(probs=probs, values=values, block_active=block,
                      gene_active=gene_active_from_blocks(space, block),
                      layers=space.workloads_from_values(values, block),
                      hw=space.hardware_from_values(values))
