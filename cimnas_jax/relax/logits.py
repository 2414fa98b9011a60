"""Per-gene logits over each gene's own choices, Gumbel-softmax samples and discretisation.

Logits are ``float32 [K, G, W]`` for K candidates, G genes and W = the widest gene's choice
count (``Space.value_table``'s width). Column ``c`` of gene ``g`` exists only for
``c < space.n_choices[g]``: padding columns are masked to -inf before every softmax, so their
probability is exactly zero and they never receive a gradient or win an argmax.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

NEG = -1e30   # masked logit: exp underflows to exactly 0 in float32


def choice_mask(space) -> np.ndarray:
    """bool ``[G, W]``: True where column c is a real choice of gene g."""
    W = space.value_table.shape[1]
    return np.arange(W)[None, :] < np.asarray(space.n_choices)[:, None]


def masked(space, logits: jax.Array) -> jax.Array:
    """Logits ``[..., G, W]`` with padding columns at -1e30."""
    return jnp.where(jnp.asarray(choice_mask(space)), logits, NEG)


def uniform_logits(space, k: int) -> jax.Array:
    """Zero logits ``[k, G, W]``: every gene uniform over its own choices (pure DNAS start)."""
    return jnp.zeros((k, space.n_genes, space.value_table.shape[1]), jnp.float32)


def peaked_logits(space, genomes: jax.Array, peak: float) -> jax.Array:
    """Logits ``[K, G, W]`` peaked on ``genomes int32 [K, G]``: ``peak`` at each gene's chosen
    index, 0 elsewhere, so softmax puts ``e^peak / (e^peak + n - 1)`` on the start's choice."""
    W = space.value_table.shape[1]
    g = jnp.asarray(genomes, jnp.int32)
    return peak * jax.nn.one_hot(g, W, dtype=jnp.float32)


def probabilities(space, logits: jax.Array, tau: float | jax.Array = 1.0) -> jax.Array:
    """Deterministic softmax ``[K, G, W]`` of ``logits / tau`` over each gene's own choices."""
    return jax.nn.softmax(masked(space, logits) / tau, axis=-1)


def gumbel_noise(key, shape) -> jax.Array:
    """Standard Gumbel noise ``-log(-log u)`` of ``shape``. The uniforms come from the search's
    counter-based hash stream (``search.operators.counter_bits``, seeded by two words of ``key``):
    about 15x cheaper than threefry on a CPU, which matters at one draw per gradient step;
    u = (top 24 bits + 1/2) / 2^24 lies strictly inside (0, 1)."""
    from cimnas_jax.search.operators import counter_bits, seed_words
    n = int(np.prod(shape))
    bits = counter_bits(seed_words(key), (1, n)).reshape(shape)
    u = ((bits >> 8).astype(jnp.float32) + 0.5) * (1.0 / 2 ** 24)
    return -jnp.log(-jnp.log(u))


def gumbel_softmax(space, key, logits: jax.Array, tau, hard: bool = True) -> jax.Array:
    """One Gumbel-softmax sample per candidate, ``[K, G, W]`` (Jang et al. 2017; Maddison et al.
    2017). ``hard=False``: the relaxed sample ``softmax((logits + Gumbel) / tau)``.
    ``hard=True`` (straight-through): the forward value is the one-hot of its argmax -- a real
    genome, so the model sees an actual design -- and the gradient is the relaxed sample's."""
    gumbel = gumbel_noise(key, logits.shape)
    y = jax.nn.softmax((masked(space, logits) + gumbel) / tau, axis=-1)
    if not hard:
        return y
    h = jax.nn.one_hot(jnp.argmax(y, axis=-1), y.shape[-1], dtype=y.dtype)
    return h + (y - jax.lax.stop_gradient(y))   # exactly h in the forward pass


def one_hot(space, genomes: jax.Array) -> jax.Array:
    """One-hot probabilities ``[P, G, W]`` of integer genomes (the relaxed path at a genome)."""
    return jax.nn.one_hot(jnp.asarray(genomes, jnp.int32), space.value_table.shape[1], dtype=jnp.float32)


def discretise(space, logits: jax.Array) -> jax.Array:
    """Canonical genomes ``int32 [K, G]``: each gene's most likely choice, then
    ``space.canonicalise`` (genes without effect set to index 0)."""
    g = jnp.argmax(masked(space, logits), axis=-1).astype(jnp.int32)
    return space.canonicalise(g)
