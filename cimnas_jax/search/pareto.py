"""Non-dominated sorting, crowding distance and a fixed-capacity Pareto archive (pure JAX).

All objectives are minimised. Sorting is O(N^2 M) memory/time per front peeled (a dense
domination matrix), which is cheap for the N = mu + lambda <= a few thousand used here.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from . import operators as ops

UNRANKED = jnp.int32(2 ** 30)  # rank of infeasible / duplicate / not-yet-peeled entries


def domination_matrix(F):
    """dom[i, j] = F_i Pareto-dominates F_j (all <=, one <). F float32[N, M]."""
    le = jnp.all(F[:, None, :] <= F[None, :, :], axis=-1)
    lt = jnp.any(F[:, None, :] < F[None, :, :], axis=-1)
    return le & lt


def nondominated_rank(F, active, stop_at=None):
    """Front index (0 = non-dominated) of each active row; inactive rows get UNRANKED.

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


def update_archive(archive: Archive, x, F, violation, hashes) -> Archive:
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
    dominated = jnp.any(domination_matrix(pF) & active[:, None], axis=0)
    front = active & ~dominated
    rank = jnp.where(front, 0, UNRANKED).astype(jnp.int32)
    crowd = crowding_distance(pF, rank)
    n = pF.shape[0]
    _, _, order = jax.lax.sort((jnp.where(front, 0, 1), -crowd, jnp.arange(n, dtype=jnp.int32)),
                               num_keys=2, is_stable=True)
    keep = order[:cap]
    filled = front[keep]
    return Archive(genomes=px[keep], objectives=jnp.where(filled[:, None], pF[keep], jnp.inf),
                   hashes=ph[keep], filled=filled)
