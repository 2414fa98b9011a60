"""Categorical variation and selection operators shared by the GA and NSGA-II.

All randomness for one generation is ONE uint32 array of shape
``[n_offspring, n_words(G, mutation, slots)]`` (``counter_bits``: a counter-based hash
stream seeded by the generation's JAX key); every decision takes its own bit field of those
words (see ``make_offspring``). With the default sparse mutation that is
6 + ceil(G/32) + 2 * slots words per child (27 for G = 141) instead of one per gene.

Duplicate elimination compares an internal 64-bit key of the canonical genome
(``design_key_fn``; NOT ``Space.hash``, which stays the project's stable design id) and
finds the best copy of each design with two scatter-max hash tables
(``duplicate_mask_by_key``), without any sort.
"""
from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np

N_EXTRA = 6  # extra uint32 words per offspring: 4 tournament draws, crossover coin, group mask

CROSSOVERS = ("uniform", "group", "none")
MUTATIONS = ("sparse", "dense")


def _fmix32(x):
    """murmur3 finaliser: a bijection of uint32 with full avalanche."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def seed_words(key):
    """Two uint32 seed words from a JAX PRNG key (any implementation)."""
    return jax.random.bits(key, (2,), jnp.uint32)


def counter_bits(seed, shape):
    """uint32 random words of a 2-D ``shape`` from ``seed`` uint32[2]: a counter-based
    generator, word c = fmix32(fmix32(c * 0x9E3779B9 + seed[0]) ^ seed[1]).

    A Weyl sequence through two murmur3 finalisers (a SplitMix-style construction): every
    word is a pure function of (seed, position), so it fuses into its consumers, does not
    depend on how the array is sharded, and costs ~12 integer ops per word -- about 15x
    less CPU than ``jax.random.bits`` (threefry2x32) for the 27 000 words of a generation
    of 1 000 (16 vs 270 us in isolation on this 2-core CPU; 0.14 ms -> ~0.01 ms per
    generation inside the GA loop). ``seed`` comes from the run's JAX key chain
    (``seed_words``), one fresh seed per generation; streams of different seeds are
    unrelated. Positions are counted in uint32: up to 2**32 words per draw. Statistical quality is ample for variation operators (bit fields of
    these words pick parents, crossover masks and mutation sites); it is not a
    cryptographic or general-purpose PRNG.
    """
    _, cols = shape
    seed = jnp.asarray(seed, jnp.uint32)
    c = (jax.lax.broadcasted_iota(jnp.uint32, shape, 0) * jnp.uint32(cols)
         + jax.lax.broadcasted_iota(jnp.uint32, shape, 1))
    return _fmix32(_fmix32(c * jnp.uint32(0x9E3779B9) + seed[0]) ^ seed[1])


KEY_COLUMNS = 8  # exact integer dot products behind the internal design key


def design_key_fn(space, columns: int = KEY_COLUMNS, seed: int = 0x5EED):
    """Internal duplicate-elimination key of the canonical genome, ``genomes -> uint32[P, 2]``.

    ``columns`` float32 dot products of the canonical genome with fixed random integer
    weights in [0, w_max] (w_max = the largest value keeping every sum below 2**24, so the
    products are exact integers on every backend; ``Precision.HIGHEST`` keeps GPUs off
    TF32), then mixed into 64 bits with murmur3 finalisers. Two different canonical
    genomes agree on one column with probability <= 1 / (w_max + 1) (their difference has
    a non-zero entry, and only one weight value cancels it), on all columns with
    probability <= (w_max + 1)**-columns (2**-90 for mbv2_rram, w_max = 2478), so false
    duplicates are negligible; the 64-bit mix adds ~2**-64 per pair. One matrix product
    instead of ``Space.hash``'s four murmur passes over every gene: 0.10 vs 0.28 ms per
    generation of 1 000 inside the GA loop on one CPU here. Spaces too large for a useful
    exact weight range (w_max < 255) fall back to ``Space.hash``. This key is internal to a search (population state and
    checkpoints); ``Space.hash`` / ``hash_hex`` remain the design ids in every output.
    """
    g, top = int(space.n_genes), int(np.max(space.n_choices)) - 1
    w_max = (2 ** 24 - 1) // max(g * max(top, 1), 1)
    if w_max < 255:
        return lambda genomes: jnp.asarray(space.hash(genomes), jnp.uint32)
    rng = np.random.default_rng([seed, zlib.crc32(space.name.encode())])
    w = jnp.asarray(rng.integers(0, w_max + 1, size=(g, columns)).astype(np.float32))

    def key(genomes):
        c = space.canonicalise(genomes).astype(jnp.float32)
        d = jax.lax.dot(c, w, precision=jax.lax.Precision.HIGHEST).astype(jnp.uint32)
        a = d[:, 0] * jnp.uint32(0x9E3779B9)
        b = d[:, 1] * jnp.uint32(0x85EBCA6B)
        for k in range(2, columns - 1, 2):
            a = _fmix32(a ^ d[:, k])
            b = _fmix32(b ^ d[:, k + 1])
        return jnp.stack([_fmix32(a ^ (b >> 7)), _fmix32(b + a)], axis=-1)

    return key


def n_words(n_genes: int, mutation: str = "sparse", slots: int = 8) -> int:
    """uint32 words drawn per child."""
    if mutation == "dense":
        return N_EXTRA + n_genes
    if mutation == "sparse":
        return N_EXTRA + (n_genes + 31) // 32 + 2 * slots
    raise ValueError(f"mutation must be one of {MUTATIONS}, got {mutation!r}")


def bernoulli_threshold15(p):
    """Probability -> threshold on a 15-bit field (resolution 1/32768)."""
    return jnp.clip(jnp.round(jnp.asarray(p, jnp.float32) * 32768.0), 0, 32768).astype(jnp.uint32)


def tournament_from_bits(u0, u1, mu: int):
    """Binary tournament on a population stored best-first: winner = smaller index.

    ``u0, u1`` uint32 words; index = u % mu (modulo bias <= mu / 2**32, negligible).
    Because populations are kept sorted by the survival order (feasibility first, then
    rank / fitness, then crowding), "smaller index wins" is exactly the feasibility-first
    (crowded-comparison) tournament without any comparison of fitness values.
    """
    a = (u0 % jnp.uint32(mu)).astype(jnp.int32)
    b = (u1 % jnp.uint32(mu)).astype(jnp.int32)
    return jnp.minimum(a, b)


def mutate_from_bits(genes, words, n_choices, rate_threshold):
    """Categorical mutation: with probability rate a gene moves to a DIFFERENT index.

    genes int32[P,G]; words uint32[P,G]; bits 1..15 decide (rate_threshold / 32768),
    bits 16..31 pick an offset 1..n-1 uniformly, new = (old + offset) mod n, so the result
    is always inside [0, n_choices) and genes with one choice never change.
    """
    n = jnp.asarray(n_choices, jnp.uint32)[None, :]
    r15 = (words >> 1) & jnp.uint32(0x7FFF)
    do = r15 < rate_threshold
    v16 = words >> 16
    delta = jnp.uint32(1) + ((v16 * (n - jnp.uint32(1))) >> 16)   # in [1, n-1] (1 if n == 1)
    s = genes.astype(jnp.uint32) + delta                            # < 2n: one conditional
    new = jnp.where(s >= n, s - n, s).astype(jnp.int32)             # subtract, no modulo
    return jnp.where(do, new, genes)


def mutate_sparse(genes, words, n_choices, rate, slots: int, ordinal: bool = True):
    """Sparse categorical mutation: ``slots`` candidate sites per child.

    Each slot picks a gene uniformly (low 16 bits of word a), fires with probability
    p = min(1, rate * G / slots) (high 16 bits of word a) and moves that gene to a
    different index: with ``ordinal`` half of the moves (bit 0 of word b) are a step to a
    neighbouring index (+-1, bit 1; reflected at the ends) -- the choices of every gene in
    these spaces are ordered (voltages, sizes, bit widths), so small steps refine -- and the
    other half (or all, without ``ordinal``) a uniform draw among the other n-1 indices
    (high 16 bits of word b, as in ``mutate_from_bits``). The number of
    mutated genes is Binomial(slots, p) with mean rate * G (for rate <= slots / G), so the
    per-gene rate matches the dense operator while drawing 2 * slots words instead of G.
    words uint32[P, 2 * slots].

    Slots apply in order (a later slot on the same gene moves the already-moved value).
    Each slot is one gather and one scatter of P entries, not a pass over all P x G genes
    (0.09 vs 0.28 ms per 1 000 children inside the GA loop on one CPU here).
    """
    p, g = genes.shape
    nc = jnp.asarray(n_choices, jnp.int32)
    prob = jnp.minimum(jnp.asarray(rate, jnp.float32) * g / slots, 1.0)
    thr = jnp.clip(jnp.round(prob * 65536.0), 0, 65536).astype(jnp.uint32)
    step_thr = jnp.uint32(1 if ordinal else 0)
    rows = jnp.arange(p, dtype=jnp.int32)
    for k in range(slots):
        a, b = words[:, 2 * k], words[:, 2 * k + 1]
        pos = (((a & jnp.uint32(0xFFFF)) * jnp.uint32(g)) >> 16).astype(jnp.int32)
        fire = (a >> 16) < thr
        n = nc[pos]
        uni = (1 + (((b >> 16) * (n - 1).astype(jnp.uint32)) >> 16)).astype(jnp.int32)
        # ordinal step: +-1 index (direction: bit 1 of b), reflected at the ends; as an
        # offset modulo n: +1 -> 1, -1 -> n-1; at old = 0 / n-1 the step goes inward
        step = (b & jnp.uint32(1)) < step_thr
        up = (b & jnp.uint32(2)) > 0
        old = genes[rows, pos]
        up = jnp.where(old == 0, True, jnp.where(old == n - 1, False, up))
        delta = jnp.where(step, jnp.where(up, 1, n - 1), uni)
        delta = jnp.where(fire & (n > 1), delta, 0)      # not fired: write the old value
        s = old + delta
        s = jnp.where(s >= n, s - n, s)
        genes = genes.at[rows, pos].set(s, indices_are_sorted=True, unique_indices=True)
    return genes


def make_offspring(bits, population, n_choices, group_ids, crossover: str,
                   crossover_prob, mutation_rate, mutation: str = "sparse", slots: int = 8):
    """Tournament -> crossover -> mutation, all from one uint32 draw
    ``bits[λ, n_words(G, mutation, slots)]``.

    crossover: "uniform" (each gene from either parent: one bit per gene), "group" (each
    gene group of ``group_ids`` from either parent, bits of one word), or "none". One child
    per mating (parent A's genes where the mask is 0). mutation: "sparse" (default, see
    ``mutate_sparse``) or "dense" (one Bernoulli(rate) per gene, ``mutate_from_bits``).
    """
    mu, g = population.shape
    ex = bits[:, :N_EXTRA]
    rest = bits[:, N_EXTRA:]
    if mutation == "dense":
        gw = rest[:, :g]
        cx_bits = gw & jnp.uint32(1)
    else:
        nw = (g + 31) // 32
        # bit j of word j // 32, by broadcast + reshape (a column gather is ~10x slower)
        sh = jnp.arange(32, dtype=jnp.uint32)[None, None, :]
        cx_bits = ((rest[:, :nw, None] >> sh) & jnp.uint32(1)).reshape(-1, nw * 32)[:, :g]
        mw = rest[:, nw:nw + 2 * slots]
    pa = tournament_from_bits(ex[:, 0], ex[:, 1], mu)
    pb = tournament_from_bits(ex[:, 2], ex[:, 3], mu)
    A = jnp.take(population, pa, axis=0, mode="clip")
    B = jnp.take(population, pb, axis=0, mode="clip")
    cx_thr = jnp.clip(jnp.round(jnp.asarray(crossover_prob, jnp.float32) * 65536.0), 0, 65536
                      ).astype(jnp.uint32)
    do_cx = (ex[:, 4] >> 16) < cx_thr
    if crossover == "uniform":
        take_b = cx_bits.astype(bool)
    elif crossover == "group":
        gid = jnp.asarray(np.asarray(group_ids) % 32, jnp.uint32)[None, :]
        take_b = ((ex[:, 5:6] >> gid) & jnp.uint32(1)).astype(bool)
    elif crossover == "none":
        take_b = jnp.zeros_like(A, dtype=bool)
    else:
        raise ValueError(f"crossover must be one of {CROSSOVERS}, got {crossover!r}")
    child = jnp.where(do_cx[:, None] & take_b, B, A)
    if mutation == "dense":
        return mutate_from_bits(child, gw, n_choices, bernoulli_threshold15(mutation_rate))
    return mutate_sparse(child, mw, n_choices, mutation_rate, slots)


def sanitise(objectives, violation):
    """NaN/inf/invalid -> infeasible with maximal violation (+inf) and objectives +inf."""
    bad = ~jnp.isfinite(violation)
    if objectives.ndim == 1:
        bad = bad | ~jnp.isfinite(objectives)
        obj = jnp.where(bad, jnp.inf, objectives)
    else:
        bad = bad | ~jnp.all(jnp.isfinite(objectives), axis=-1)
        obj = jnp.where(bad[:, None], jnp.inf, objectives)
    viol = jnp.where(bad, jnp.inf, jnp.maximum(violation, 0.0))
    return obj.astype(jnp.float32), viol.astype(jnp.float32)


def duplicate_mask(hashes):
    """bool[N]: True where the design key equals that of an EARLIER entry (the first copy is
    kept): ``duplicate_mask_by_key`` with every entry equally good."""
    return duplicate_mask_by_key(hashes, jnp.zeros((hashes.shape[0],), jnp.float32))


def table_bits_for(n: int) -> int:
    """Hash-table size (log2 slots) for ``n`` entries: 2**16 up to n = 16 384, then >= 4 n slots
    (so the miss rate (n / 2**bits)**2 of ``duplicate_mask_by_key`` stays <= 1/16 at any n)."""
    return max(16, int(4 * n - 1).bit_length())


def duplicate_mask_by_key(hashes, key, table_bits: int | None = None):
    """bool[N]: True where an entry's design key (``hashes`` uint32[N, 2]) equals that of a
    BETTER entry (larger ``key``; equal keys: lower index is better). No sort.

    For each of the two key words, a table of 2**table_bits slots (slot = top bits of the
    word) gets the best entry of its slot by a scatter-max of ``key`` and a scatter-min of
    the index among the ties; an entry is a duplicate if its slot's best entry is another
    entry with the same 64-bit key. Exact copies therefore always point at the best copy
    (keeping it), unless a *different* better design shares the slot in BOTH tables
    (probability ~ (N / 2**table_bits)**2, 0.1 % of duplicate pairs for N = 2 000): that
    copy survives one more generation, like any non-duplicate. A false duplicate needs a
    64-bit key collision. ``table_bits`` default: ``table_bits_for(N)`` (2**16 slots up to
    N = 16 384, >= 4 N slots above: at a pool of 10**6 it finds 99.6 % of the duplicates, a fixed
    2**16-slot table 19.6 %, measured on random keys). ``key`` must not be NaN (``survival_key`` never is).
    """
    n = hashes.shape[0]
    table_bits = table_bits_for(n) if table_bits is None else table_bits
    size = 1 << table_bits
    idx = jnp.arange(n, dtype=jnp.int32)
    dup = jnp.zeros((n,), bool)
    for w in range(2):
        slot = (hashes[:, w] >> (32 - table_bits)).astype(jnp.int32)
        best = jnp.full((size,), -jnp.inf, key.dtype).at[slot].max(key)
        tie = key == best[slot]
        first = jnp.full((size,), n, jnp.int32).at[slot].min(jnp.where(tie, idx, n))
        k = first[slot]
        hk = hashes[k]
        dup = dup | ((k != idx) & (hk[:, 0] == hashes[:, 0]) & (hk[:, 1] == hashes[:, 1]))
    return dup


def survival_key(fitness, violation, dup):
    """One float32 key, larger = better, ordering (not dup, feasible-first, violation, fitness).

    Feasible: -fitness. Infeasible: below every feasible key, decreasing in violation.
    Duplicates and invalid (violation +inf): -inf. Lets survival use ``lax.top_k``.
    """
    feas = (violation == 0) & ~dup
    fmax = jnp.max(jnp.where(feas, fitness, -jnp.inf))
    fmax = jnp.where(jnp.isfinite(fmax), fmax, 0.0)
    v = jnp.minimum(violation, 1e6)
    infeas_key = -(fmax + (1.0 + jnp.abs(fmax)) * (1.0 + v))
    key = jnp.where(feas, -fitness, infeas_key)
    return jnp.where(dup | ~jnp.isfinite(violation), -jnp.inf, key)
