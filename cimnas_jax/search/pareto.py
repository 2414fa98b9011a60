"""Non-dominated sorting, crowding distance and a fixed-capacity Pareto archive (pure JAX).

All objectives are minimised. Nothing here builds an N x N array, so populations of 10^5-10^6
fit (the dense reference sort ``nondominated_rank_dense`` is kept as the tests' and benchmarks'
peer):

* 2 objectives (``_rank_2d``): one lexicographic sort, then fronts peeled by an exclusive
  cumulative minimum of the second objective (a row is dominated iff some earlier remaining row
  that is not its exact duplicate has f2 <= its f2): O(N) per front, parallel. When more than
  ``PEEL_FRONTS`` fronts are needed (long domination chains), the sorted rows are instead scanned
  once with a binary search into the per-front minima of f2 (the 2-D patience scheme):
  O(N log N) whatever the number of fronts.
* 3-4 objectives (``_rank_blocked``): a lexicographic sort puts every dominator of a row before
  it, so one pass over row blocks computes front = 1 + max front of its dominators (the longest
  domination chain ending there), testing domination in B x B tiles: O(M N^2 / 2) comparisons
  once (the dense sort does O(M N^2) per front peeled), memory O(N + B^2).
* ``crowding_distance``: per-front sorts and segment reductions, O(M N log N).
* ``update_archive``: the first front of archive + candidates by the same methods.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from . import operators as ops

# rank of infeasible / duplicate / not-yet-peeled entries (numpy: importing must not start a JAX backend)
UNRANKED = np.int32(2 ** 30)
PEEL_FRONTS = 64               # 2-D: fronts peeled by cumulative minima before the O(N log N) scan
BLOCK = 512                    # 3-4 objectives: tile size of the blocked domination test


def domination_matrix(F):
    """dom[i, j] = F_i Pareto-dominates F_j (all <=, one <). F float32[N, M]."""
    le = jnp.all(F[:, None, :] <= F[None, :, :], axis=-1)
    lt = jnp.any(F[:, None, :] < F[None, :, :], axis=-1)
    return le & lt


def nondominated_rank_dense(F, active, stop_at=None):
    """The dense reference sort (an N x N domination matrix, one mat-vec per front peeled:
    O(N^2) memory, O(F N^2) time): front index (0 = non-dominated) of each active row;
    inactive rows get UNRANKED. Kept as the peer of ``nondominated_rank`` in tests and benchmarks.

    Peels fronts until every active row is ranked or, when ``stop_at`` is given, until at
    least ``stop_at`` rows are ranked (rows not reached keep UNRANKED-1 so they still sort
    after ranked ones but before infeasible ones).
    """
    dom = domination_matrix(F) & active[:, None] & active[None, :]
    domf = dom.astype(jnp.float32)
    target = jnp.sum(active) if stop_at is None else jnp.minimum(jnp.sum(active), stop_at)

    def cond(c):
        rank, remaining, r, nr = c
        return (nr < target) & jnp.any(remaining)

    def body(c):
        rank, remaining, r, nr = c
        dominated = (remaining.astype(jnp.float32) @ domf) > 0
        front = remaining & ~dominated
        rank = jnp.where(front, r, rank)
        return rank, remaining & ~front, r + 1, nr + jnp.sum(front)

    rank0 = jnp.where(active, UNRANKED - 1, UNRANKED).astype(jnp.int32)
    rank, _, _, _ = jax.lax.while_loop(cond, body, (rank0, active, jnp.int32(0), jnp.int32(0)))
    return rank


def _lex_order(F, active):
    """Row order: active rows lexicographically by (f_1, ..., f_M), then inactive rows; int32 [N]."""
    n, m = F.shape
    idx = jnp.arange(n, dtype=jnp.int32)
    Fa = jnp.where(active[:, None], F, jnp.inf)
    keys = (jnp.where(active, 0, 1).astype(jnp.int32),) + tuple(Fa[:, j] for j in range(m))
    return jax.lax.sort(keys + (idx,), num_keys=m + 1, is_stable=True)[-1]


def _truncate(rank, active, stop_at):
    """Rows whose front lies beyond the one that brings the ranked count to ``stop_at`` get
    UNRANKED-1 (as the peeling sort leaves them), so both sorts agree with ``stop_at``."""
    if stop_at is None:
        return rank
    n = rank.shape[0]
    r = jnp.where(active, rank, n)
    counts = jnp.zeros((n + 1,), jnp.int32).at[r].add(1)[:n]
    need = jnp.minimum(jnp.sum(active), stop_at)
    last = jnp.argmax(jnp.cumsum(counts) >= need)          # first front reaching the target
    return jnp.where(active & (rank > last), UNRANKED - 1, rank)


def _rank_2d(F, active, stop_at, peel_fronts: int = PEEL_FRONTS):
    n = F.shape[0]
    order = _lex_order(F, active)
    f1, f2, act = F[order, 0], F[order, 1], active[order]
    pos = jnp.arange(n, dtype=jnp.int32)
    same = jnp.concatenate([jnp.zeros((1,), bool), (f1[1:] == f1[:-1]) & (f2[1:] == f2[:-1]) & act[1:]])
    gstart = jax.lax.cummax(jnp.where(same, 0, pos), axis=0)          # first copy of each exact duplicate
    target = jnp.sum(act) if stop_at is None else jnp.minimum(jnp.sum(act), stop_at)

    def peel_cond(c):
        _, remaining, r, nr = c
        return (nr < target) & jnp.any(remaining) & (r < peel_fronts)

    def peel_body(c):
        rank, remaining, r, nr = c
        cm = jax.lax.cummin(jnp.where(remaining, f2, jnp.inf), axis=0)
        before = jnp.concatenate([jnp.full((1,), jnp.inf, f2.dtype), cm[:-1]])[gstart]
        count = jnp.cumsum(remaining.astype(jnp.int32)) - remaining.astype(jnp.int32)   # remaining rows before
        front = remaining & ~((count[gstart] > 0) & (before <= f2))    # (inf <= inf: a real row, not "none")
        return jnp.where(front, r, rank), remaining & ~front, r + 1, nr + jnp.sum(front)

    rank0 = jnp.where(act, UNRANKED - 1, UNRANKED).astype(jnp.int32)
    rank_s, _, _, nr = jax.lax.while_loop(peel_cond, peel_body, (rank0, act, jnp.int32(0), jnp.int32(0)))

    def scan_all():
        def step(c, x):   # tails[k] = min f2 of front k so far (non-decreasing in k); nf fronts used
            tails, prev, nf = c
            v, a, dup = x
            r = jnp.minimum(jnp.searchsorted(tails, v, side="right").astype(jnp.int32), nf)
            r = jnp.where(dup, prev, r)
            tails = jnp.where(a, tails.at[r].min(v), tails)
            nf = jnp.where(a, jnp.maximum(nf, r + 1), nf)
            return (tails, r, nf), jnp.where(a, r, UNRANKED)
        _, ranks = jax.lax.scan(step, (jnp.full((n,), jnp.inf, f2.dtype), jnp.int32(0), jnp.int32(0)),
                                (f2, act, same))
        return _truncate(ranks, act, stop_at)

    done = (nr >= target) | ~jnp.any(act)
    rank_s = jax.lax.cond(done, lambda: rank_s, scan_all)
    return jnp.zeros((n,), jnp.int32).at[order].set(rank_s)


def _rank_blocked(F, active, stop_at, block: int = BLOCK):
    n, m = F.shape
    order = _lex_order(F, active)
    b = max(1, min(block, n))
    nb = -(-n // b)
    pad = nb * b - n
    Fs = jnp.pad(F[order], ((0, pad), (0, 0)), constant_values=jnp.inf).reshape(nb, b, m)
    act = jnp.pad(active[order], (0, pad)).reshape(nb, b)

    def dom(Fj, Fi):   # [b, b]: row j of Fj dominates row i of Fi  (indexed [i, j])
        le = jnp.all(Fj[None, :, :] <= Fi[:, None, :], axis=-1)
        lt = jnp.any(Fj[None, :, :] < Fi[:, None, :], axis=-1)
        return le & lt

    def block_i(bi, ranks):
        Fi, ai = Fs[bi], act[bi]

        def from_block(bj, best):
            d = dom(Fs[bj], Fi) & act[bj][None, :]
            return jnp.maximum(best, jnp.max(jnp.where(d, ranks[bj][None, :], -1), axis=1))
        best = jax.lax.fori_loop(0, bi, from_block, jnp.full((b,), -1, jnp.int32))
        d = dom(Fi, Fi) & ai[None, :]        # within the block: relax the chain to its fixed point

        def relax(c):
            r, _ = c
            new = jnp.maximum(best, jnp.max(jnp.where(d, r[None, :], -1), axis=1)) + 1
            return new, jnp.any(new != r)
        r, _ = jax.lax.while_loop(lambda c: c[1], relax, (best + 1, jnp.bool_(True)))
        return ranks.at[bi].set(jnp.where(ai, r, UNRANKED))

    ranks = jax.lax.fori_loop(0, nb, block_i, jnp.full((nb, b), UNRANKED, jnp.int32))
    rank_s = _truncate(ranks.reshape(-1)[:n], active[order], stop_at)
    return jnp.zeros((n,), jnp.int32).at[order].set(rank_s)


def nondominated_rank(F, active, stop_at=None):
    """Front index (0 = non-dominated) of each active row; inactive rows get UNRANKED.

    F float32 [N, M] (minimised; +inf allowed, NaN not), active bool [N]. With ``stop_at``,
    rows in fronts beyond the one that brings the ranked count to ``stop_at`` get UNRANKED-1
    (they still sort after ranked rows but before inactive ones). Exact duplicates share a
    front. Same result as ``nondominated_rank_dense`` without its N x N matrix: M = 2 by
    ``_rank_2d`` (O(N log N)), M = 3-4 by ``_rank_blocked`` (O(M N^2 / 2) time, O(N + B^2)
    memory).
    """
    if F.shape[1] == 1:
        F = jnp.concatenate([F, F], axis=1)
    if F.shape[1] == 2:
        return _rank_2d(F, active, stop_at)
    return _rank_blocked(F, active, stop_at)


def first_front_dense(F, active):
    """``first_front`` by the dense N x N domination matrix (the benchmark peer)."""
    return active & ~jnp.any(domination_matrix(F) & active[:, None], axis=0)


def first_front(F, active):
    """bool [N]: active rows that no active row dominates (exact duplicates are all kept)."""
    if F.shape[1] <= 2:
        return nondominated_rank(F, active, stop_at=1) == 0
    return nondominated_rank(F, active) == 0


def crowding_distance(F, rank):
    """NSGA-II crowding distance within each front (boundaries +inf), normalised per front.

    Rows with rank >= UNRANKED-1 get 0. F float32[N, M]; rank int32[N].
    """
    n, m = F.shape
    idx = jnp.arange(n, dtype=jnp.int32)
    ranked = rank < UNRANKED - 1
    Fz = jnp.where(ranked[:, None], F, 0.0)
    seg = jnp.where(ranked, rank, n)  # one segment per front + a trash segment
    dist = jnp.zeros((n,), jnp.float32)
    for j in range(m):
        rs, fs, order = jax.lax.sort((seg, Fz[:, j], idx), num_keys=2)
        fmin = jax.ops.segment_min(fs, rs, num_segments=n + 1)[rs]
        fmax = jax.ops.segment_max(fs, rs, num_segments=n + 1)[rs]
        span = jnp.where(fmax > fmin, fmax - fmin, 1.0)
        first = jnp.concatenate([jnp.array([True]), rs[1:] != rs[:-1]])
        last = jnp.concatenate([rs[1:] != rs[:-1], jnp.array([True])])
        prev = jnp.concatenate([fs[:1], fs[:-1]])
        nxt = jnp.concatenate([fs[1:], fs[-1:]])
        d = jnp.where(first | last, jnp.inf, (nxt - prev) / span)
        dist = dist.at[order].add(d)
    return jnp.where(ranked, dist, 0.0)


@struct.dataclass
class Archive:
    genomes: jax.Array     # int32[A, G]
    objectives: jax.Array  # float32[A, M] (+inf where empty)
    hashes: jax.Array      # uint32[A, 2]
    filled: jax.Array      # bool[A]


def empty_archive(capacity: int, n_genes: int, n_obj: int) -> Archive:
    return Archive(genomes=jnp.zeros((capacity, n_genes), jnp.int32),
                   objectives=jnp.full((capacity, n_obj), jnp.inf, jnp.float32),
                   hashes=jnp.zeros((capacity, 2), jnp.uint32),
                   filled=jnp.zeros((capacity,), bool))


def update_archive(archive: Archive, x, F, violation, hashes, front_fn=None) -> Archive:
    """Merge feasible candidates into the archive, keep the non-dominated unique ones.

    When more than the capacity are non-dominated, the most crowded are dropped (boundary
    points, with infinite crowding distance, are always kept).
    """
    cap = archive.filled.shape[0]
    px = jnp.concatenate([archive.genomes, x])
    pF = jnp.concatenate([archive.objectives, F])
    ph = jnp.concatenate([archive.hashes, hashes])
    ok = jnp.concatenate([archive.filled, (violation == 0) & jnp.all(jnp.isfinite(F), -1)])
    dup = ops.duplicate_mask(ph)  # archive entries first: an archived design is kept
    active = ok & ~dup
    front = (front_fn or first_front)(pF, active)
    rank = jnp.where(front, 0, UNRANKED).astype(jnp.int32)
    crowd = crowding_distance(pF, rank)
    n = pF.shape[0]
    _, _, order = jax.lax.sort((jnp.where(front, 0, 1), -crowd, jnp.arange(n, dtype=jnp.int32)),
                               num_keys=2, is_stable=True)
    keep = order[:cap]
    filled = front[keep]
    return Archive(genomes=px[keep], objectives=jnp.where(filled[:, None], pF[keep], jnp.inf),
                   hashes=ph[keep], filled=filled)
