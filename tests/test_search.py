"""Search engine: operators, survival, NSGA-II sorting/hypervolume vs pymoo, exact resume."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cimnas_jax.space import get_space
from cimnas_jax.search import (GA, NSGA2, Constraints, Objective, Search, crowding_distance,
                               hv2d, hv_exact, hv_mc, linear_fitness, nondominated_rank)
from cimnas_jax.search import operators as ops
from cimnas_jax.search.pareto import UNRANKED

SP = get_space("mbv2_rram")
NO_CONS = Constraints(capacity=False, area_limit_mm2=None)


def _tree_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y))
                                      for x, y in zip(la, lb))


# ----------------------------------------------------------------------------- operators
def test_mutation_stays_in_range_and_changes_genes():
    nc = SP.n_choices
    g = SP.sample(jax.random.key(0), 4000)
    words = jax.random.bits(jax.random.key(1, impl="rbg"), g.shape, jnp.uint32)
    always = ops.mutate_from_bits(g, words, nc, ops.bernoulli_threshold15(1.0))
    assert bool(jnp.all(SP.in_range(always)))
    changed = np.asarray(always != g)
    # with rate 1 every gene with >1 choice moves to a different index, 1-choice genes stay
    assert changed[:, nc > 1].all() and not changed[:, nc == 1].any()
    # every allowed value is reachable for the widest gene (49 choices)
    j = int(np.argmax(nc))
    assert len(np.unique(np.asarray(always[:, j]))) == nc[j]
    # the rate is respected (mean changes per gene ~ rate)
    some = ops.mutate_from_bits(g, words, nc, ops.bernoulli_threshold15(0.05))
    frac = float(jnp.mean((some != g)[:, nc > 1]))
    assert 0.04 < frac < 0.06, frac
    assert bool(jnp.all(SP.in_range(some)))


def test_sparse_mutation_in_range_with_requested_rate():
    nc = SP.n_choices
    g = SP.sample(jax.random.key(6), 4000)
    words = jax.random.bits(jax.random.key(7), (4000, 16), jnp.uint32)
    rate = 1.5 / SP.n_genes
    m = ops.mutate_sparse(g, words, nc, rate, 8)
    assert bool(jnp.all(SP.in_range(m)))
    changed = np.asarray(m != g)
    assert not changed[:, nc == 1].any()
    # mean changed genes per child ~ rate * G (= 1.5), minus rare double hits on one gene
    assert 1.35 < changed.sum(1).mean() < 1.6, changed.sum(1).mean()
    # sites are spread over the genome (every gene with >1 choice mutated somewhere)
    assert changed[:, nc > 1].any(axis=0).all()
    full = ops.mutate_sparse(g, words, nc, 1.0, 8)      # p = 1: 8 sites per child
    assert bool(jnp.all(SP.in_range(full)))


@pytest.mark.parametrize("crossover", ["uniform", "group"])
def test_offspring_in_range_and_genes_from_parents(crossover):
    pop = SP.sample(jax.random.key(2), 64)
    bits = jax.random.bits(jax.random.key(3), (500, ops.n_words(SP.n_genes)), jnp.uint32)
    child = ops.make_offspring(bits, pop, SP.n_choices, SP.group_ids, crossover, 1.0, 0.0)
    assert bool(jnp.all(SP.in_range(child)))
    # without mutation every gene equals that gene of some population member
    popn, ch = np.asarray(pop), np.asarray(child)
    for c in ch[:50]:
        assert all(c[j] in popn[:, j] for j in range(SP.n_genes))
    if crossover == "group":
        # a group is inherited whole from one parent: some parent matches the child on it
        gid = SP.group_ids
        for c in ch[:20]:
            for grp in np.unique(gid):
                m = gid == grp
                assert (popn[:, m] == c[m]).all(axis=1).any()


def test_tournament_prefers_better_ranked():
    u = jax.random.bits(jax.random.key(4), (2, 100000), jnp.uint32)
    w = np.asarray(ops.tournament_from_bits(u[0], u[1], 10))
    counts = np.bincount(w, minlength=10) / len(w)
    # P(winner = i) = (2 (10 - i) - 1) / 100 for min of two uniform draws
    expect = (2 * (10 - np.arange(10)) - 1) / 100
    np.testing.assert_allclose(counts, expect, atol=0.01)


def test_duplicate_mask_keeps_first_copy():
    g = SP.sample(jax.random.key(5), 50)
    pool = jnp.concatenate([g, g[:10], g[5:15]])
    dup = np.asarray(ops.duplicate_mask(SP.hash(pool)))
    assert not dup[:50].any()
    assert dup[50:].all()


def _mutate_sparse_reference(genes, words, n_choices, rate, slots):
    """Plain numpy, one child and one slot at a time (the documented semantics)."""
    g = np.array(genes, np.int64)
    w = np.asarray(words, np.uint64)
    p, ng = g.shape
    prob = min(rate * ng / slots, 1.0)
    thr = int(np.clip(np.round(np.float32(prob) * np.float32(65536.0)), 0, 65536))
    for i in range(p):
        for k in range(slots):
            a, b = int(w[i, 2 * k]), int(w[i, 2 * k + 1])
            pos = ((a & 0xFFFF) * ng) >> 16
            n = int(n_choices[pos])
            if (a >> 16) >= thr or n == 1:
                continue
            old = g[i, pos]
            if not b & 1:   # ordinal step (bit 0 clear), reflected at the ends
                up = True if old == 0 else False if old == n - 1 else bool(b & 2)
                g[i, pos] = old + 1 if up else old - 1
            else:           # uniform among the other n - 1 indices
                g[i, pos] = (old + 1 + (((b >> 16) * (n - 1)) >> 16)) % n
    return g


def test_sparse_mutation_matches_sequential_reference():
    g = SP.sample(jax.random.key(8), 300)
    words = jax.random.bits(jax.random.key(9), (300, 16), jnp.uint32)
    for rate in (1.0 / SP.n_genes, 1.0):       # 1.0: all 8 slots fire, same-gene repeats occur
        got = np.asarray(jax.jit(lambda a, b: ops.mutate_sparse(a, b, SP.n_choices, rate, 8))(g, words))
        np.testing.assert_array_equal(got, _mutate_sparse_reference(g, words, SP.n_choices, rate, 8))


def test_counter_bits_deterministic_and_balanced():
    a = np.asarray(ops.counter_bits(jnp.array([1, 2], jnp.uint32), (1000, 27)))
    assert a.shape == (1000, 27) and a.dtype == np.uint32
    np.testing.assert_array_equal(a, np.asarray(ops.counter_bits(jnp.array([1, 2], jnp.uint32), (1000, 27))))
    b = np.asarray(ops.counter_bits(jnp.array([1, 3], jnp.uint32), (1000, 27)))
    assert (a != b).mean() > 0.99                          # another seed: another stream
    assert len(np.unique(a)) > 0.999 * a.size              # no short cycles / repeats
    bitmeans = ((a[..., None] >> np.arange(32, dtype=np.uint32)) & 1).mean(axis=(0, 1))
    assert np.all(np.abs(bitmeans - 0.5) < 0.02), bitmeans   # 27 000 words: sd 0.003
    # neighbouring words are uncorrelated (the fields of one child come from adjacent words)
    x, y = a[:, :-1].ravel().astype(np.float64), a[:, 1:].ravel().astype(np.float64)
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.03


def test_design_key_is_canonical_and_collision_free():
    key = jax.jit(GA(SP, 4).design_key)
    g = np.asarray(SP.sample(jax.random.key(10), 20000))
    canon = np.asarray(SP.canonicalise(g))
    k = np.asarray(key(jnp.asarray(g)))
    # designs that differ only in genes without effect share the key
    inactive = ~np.asarray(SP.active(g))
    assert inactive.any()
    g2 = np.where(inactive, (g + 1) % SP.n_choices, g)
    np.testing.assert_array_equal(np.asarray(key(jnp.asarray(g2))), k)
    # distinct canonical designs get distinct 64-bit keys (also for one-gene neighbours)
    _, first = np.unique(canon, axis=0, return_index=True)
    assert len({tuple(r) for r in k[first]}) == len(first)
    nb = canon[:2000].copy()
    j = np.arange(2000) % SP.n_genes
    nb[np.arange(2000), j] = (nb[np.arange(2000), j] + 1) % SP.n_choices[j]
    nb = np.asarray(SP.canonicalise(nb))
    changed = (nb != canon[:2000]).any(axis=1)
    kn = np.asarray(key(jnp.asarray(nb)))
    assert changed.sum() > 1000 and (kn[changed] != k[:2000][changed]).any(axis=1).all()


def test_duplicate_mask_by_key_keeps_best_copy():
    rng = np.random.default_rng(11)
    n = 2000
    design = rng.integers(0, 700, n)                      # many copies of 700 designs
    h = np.stack([design * 2654435761 % 2**32, design * 40503 % 2**32], 1).astype(np.uint32)
    fit = rng.integers(0, 50, n).astype(np.float32)       # many ties
    dup = np.asarray(ops.duplicate_mask_by_key(jnp.asarray(h), jnp.asarray(fit)))
    expect = np.zeros(n, bool)
    for d in np.unique(design):
        idx = np.flatnonzero(design == d)
        best = idx[np.lexsort((idx, -fit[idx]))[0]]        # highest key, then lowest index
        expect[idx[idx != best]] = True
    # exact except for copies hidden by a different design in both slots (rare by design)
    assert (dup <= expect).all()                           # never a false duplicate
    assert (dup == expect).mean() > 0.99
    # no duplicates at all: nothing marked
    uniq = np.stack([np.arange(n) * 2654435761 % 2**32, np.arange(n) * 97 % 2**32], 1)
    assert not np.asarray(ops.duplicate_mask_by_key(jnp.asarray(uniq.astype(np.uint32)),
                                                    jnp.asarray(fit))).any()


def test_ga_ask_tell_vmaps_over_seeds():
    """init/ask/tell are pure: vmapped over seeds they give the per-seed results."""
    ga = GA(SP, 32)
    p = ga.default_params()
    obj = Objective.single("energy", NO_CONS)
    w = jnp.arange(SP.n_genes, dtype=jnp.int32) % 7 + 1

    def fit(g):   # integer-valued: exact whatever the summation order of a batched kernel
        m = linear_fitness(SP)(g)
        m["energy_j"] = 1.0 + jnp.sum(g * w, axis=1).astype(jnp.float32)
        return m

    def run(seed):
        key = jax.random.key(seed)
        st = ga.init(key, p)

        def body(st, k):
            x, st = ga.ask(k, st, p)
            F, v = obj(fit(x))
            st, _ = ga.tell(k, x, F, v, st, p)
            return st, None

        st, _ = jax.lax.scan(body, st, jax.random.split(key, 6))
        return st.population, st.fitness

    pops, fits = jax.jit(jax.vmap(run))(jnp.arange(3))
    for i in range(3):
        pop, f = jax.jit(run)(i)
        np.testing.assert_array_equal(np.asarray(pops[i]), np.asarray(pop))
        np.testing.assert_array_equal(np.asarray(fits[i]), np.asarray(f))
    assert not np.array_equal(np.asarray(pops[0]), np.asarray(pops[1]))


# ----------------------------------------------------------------------------- survival
def _bad_fitness(genomes):
    """Linear fitness where designs with gene0 == 0 claim a spectacular objective but are
    invalid, gene0 == 1 give NaN energy, gene0 == 2 break capacity and area."""
    m = linear_fitness(SP)(genomes)
    g0 = genomes[:, 0]
    e = jnp.where(g0 == 0, 1e-30, m["energy_j"])
    e = jnp.where(g0 == 1, jnp.nan, e)
    m["energy_j"] = e
    m["valid"] = g0 != 0
    m["cells_needed"] = jnp.where(g0 == 2, 10.0, 0.5)
    m["area_mm2"] = jnp.where(g0 == 2, 1e-9, 100.0)   # tiny area = great EDAP ...
    m["cells_available"] = jnp.ones_like(e)
    return m


@pytest.mark.parametrize("algo_name", ["ga", "nsga2"])
def test_infeasible_and_nan_never_win(algo_name):
    cons = Constraints(capacity=True, area_limit_mm2=800.0)
    if algo_name == "ga":
        algo, obj = GA(SP, 64), Objective.single("edap", cons)
    else:
        algo, obj = NSGA2(SP, 64, 2, archive_size=32), Objective.multi("energy,area", cons)
    s = Search(algo, _bad_fitness, obj)
    st, hist = s.run(0, 8, chunk=4, log=None)
    a = st.algo
    g0 = np.asarray(a.population[:, 0])
    viol = np.asarray(a.violation)
    feasible = viol == 0
    assert feasible.sum() > 10
    # feasible ones come first and none of them is a bad design
    first_bad = np.argmax(~feasible) if (~feasible).any() else len(feasible)
    assert feasible[:first_bad].all() and not feasible[first_bad:].any()
    assert not np.isin(g0[feasible], [0, 1, 2]).any()
    assert np.all(np.isfinite(np.asarray(a.fitness if algo_name == "ga" else a.objectives)[feasible]))
    if algo_name == "ga":
        assert g0[0] not in (0, 1, 2) and np.isfinite(hist[-1]["best"][0])
    else:
        arch = a.archive
        ag0 = np.asarray(arch.genomes[:, 0])[np.asarray(arch.filled)]
        assert len(ag0) > 0 and not np.isin(ag0, [0, 1, 2]).any()


def test_objective_sanitises_and_violation():
    m = {"energy_j": jnp.array([1.0, jnp.nan, 1.0, 1.0, 1.0]),
         "latency_s": jnp.array([1.0, 1.0, jnp.inf, 1.0, 1.0]),
         "area_mm2": jnp.array([100.0, 1.0, 1.0, 1600.0, 100.0]),
         "accuracy": jnp.array([0.5, 0.5, 0.5, 0.5, 0.25]),
         "valid": jnp.array([True, True, True, True, True]),
         "cells_needed": jnp.array([1.0, 1.0, 1.0, 1.0, 3.0]),
         "cells_available": jnp.array([2.0, 2.0, 2.0, 2.0, 2.0])}
    obj = Objective.single("edap_per_accuracy", Constraints(True, 800.0, 0.5))
    F, v = obj(m)
    F, v = np.asarray(F[:, 0]), np.asarray(v)
    np.testing.assert_allclose(F[0], 100.0 / 0.5, rtol=1e-5)
    assert np.isinf(F[1]) and np.isinf(v[1]) and np.isinf(F[2]) and np.isinf(v[2])
    np.testing.assert_allclose(v[3], 1.0, rtol=1e-6)                 # area 2x the limit
    np.testing.assert_allclose(v[4], 0.5 + 0.5, rtol=1e-6)           # capacity + accuracy
    ws = Objective.single("weighted_sum", coefficients={"energy": 2.0, "area": 1.0},
                          bounds={"energy": (0.0, 2.0), "area": (0.0, 200.0)})
    np.testing.assert_allclose(np.asarray(ws.values(m))[0, 0], 2 * 0.5 + 0.5, rtol=1e-6)
    pr = Objective.single("priority", coefficients={"energy": 1.0, "area": 2.0},
                          bounds={"energy": (0.0, 2.0), "area": (0.0, 200.0)})
    np.testing.assert_allclose(np.asarray(pr.values(m))[0, 0], (0.5 + 1e-3) * (0.5 + 1e-3) ** 2,
                               rtol=1e-5)
    with pytest.raises(ValueError, match="allowed"):
        Objective.single("energy*speed")
    with pytest.raises(ValueError, match="2-4 distinct"):
        Objective.multi("energy,energy")


# ----------------------------------------------------------------------------- pymoo agreement
def test_nondominated_sort_matches_pymoo():
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
    rng = np.random.default_rng(0)
    for m in (2, 3, 4):
        F = np.round(rng.random((300, m)) * 20) / 20   # many ties and duplicates
        fronts = NonDominatedSorting().do(F)
        expect = np.empty(len(F), int)
        for i, fr in enumerate(fronts):
            expect[fr] = i
        got = np.asarray(nondominated_rank(jnp.asarray(F, jnp.float32), jnp.ones(len(F), bool)))
        np.testing.assert_array_equal(got, expect)
    # inactive rows are not ranked and do not dominate anybody
    active = np.arange(300) % 3 != 0
    got = np.asarray(nondominated_rank(jnp.asarray(F, jnp.float32), jnp.asarray(active)))
    fronts = NonDominatedSorting().do(F[active])
    sub = np.empty(active.sum(), int)
    for i, fr in enumerate(fronts):
        sub[fr] = i
    np.testing.assert_array_equal(got[active], sub)
    assert (got[~active] == int(UNRANKED)).all()


def test_crowding_distance_matches_pymoo():
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
    rng = np.random.default_rng(1)
    F = rng.random((40, 3))
    rank = np.asarray(nondominated_rank(jnp.asarray(F, jnp.float32), jnp.ones(40, bool)))
    cd = np.asarray(crowding_distance(jnp.asarray(F, jnp.float32), jnp.asarray(rank)))
    for r in np.unique(rank):
        idx = np.where(rank == r)[0]
        expect = calc_crowding_distance(F[idx]) * F.shape[1]   # pymoo averages over objectives
        fin = np.isfinite(expect)
        np.testing.assert_array_equal(np.isinf(cd[idx]), ~fin)
        np.testing.assert_allclose(cd[idx][fin], expect[fin], rtol=1e-4, atol=1e-6)


def test_hypervolume_matches_pymoo():
    from pymoo.indicators.hv import HV
    rng = np.random.default_rng(2)
    for m, n in ((2, 200), (3, 60), (4, 30)):
        F = rng.random((n, m)) * 0.9
        ref = np.ones(m)
        expect = HV(ref_point=ref)(F)
        np.testing.assert_allclose(hv_exact(F, ref), expect, rtol=1e-9)
        if m == 2:
            np.testing.assert_allclose(float(hv2d(jnp.asarray(F, jnp.float32), ref)), expect,
                                       rtol=1e-5)
        else:  # Monte-Carlo, 2**16 samples with a fixed key: deterministic, within ~1 %
            a = float(hv_mc(jnp.asarray(F, jnp.float32), ref))
            assert a == float(hv_mc(jnp.asarray(F, jnp.float32), ref))
            np.testing.assert_allclose(a, expect, rtol=0.02)


# ----------------------------------------------------------------------------- runner
@pytest.mark.parametrize("algo_name", ["ga", "nsga2"])
def test_resume_equals_uninterrupted_bitwise(tmp_path, algo_name):
    def make():
        if algo_name == "ga":
            return Search(GA(SP, 40), linear_fitness(SP), Objective.single("energy", NO_CONS))

        def fit(g):
            m = linear_fitness(SP)(g)
            m["area_mm2"] = 40.0 - m["energy_j"] + 0.1 * g[:, 3]
            return m
        return Search(NSGA2(SP, 40, 2, archive_size=16), fit,
                      Objective.multi("energy,area", NO_CONS))

    s = make()
    full, hist_full = s.run(3, 7, chunk=2, checkpoint_dir=str(tmp_path / "a"), log=None)
    # "killed" after two chunks (4 generations, checkpoint written), then resumed from disk
    s.run(3, 7, chunk=2, checkpoint_dir=str(tmp_path / "b"), log=None, max_chunks=2)
    resumed, hist_res = s.run(3, 7, chunk=2, checkpoint_dir=str(tmp_path / "b"),
                              resume=True, log=None)
    assert int(resumed.algo.generation) == 7
    if algo_name == "ga":   # elitist: best-so-far never gets worse; it improved; no duplicates
        best = [h["best"][0] for h in hist_full]
        assert all(b2 <= b1 for b1, b2 in zip(best, best[1:])) and best[-1] < best[0]
        h = np.asarray(SP.hash(full.algo.population))
        assert len({tuple(x) for x in h}) == len(h)
    assert _tree_equal(full, resumed)
    assert hist_full == hist_res
    # a checkpoint of a different configuration is refused, naming the field
    with pytest.raises(ValueError, match="seed"):
        make().run(4, 9, chunk=2, checkpoint_dir=str(tmp_path / "b"), resume=True, log=None)
    # an existing checkpoint without --resume is refused
    with pytest.raises(ValueError, match="resume"):
        make().run(3, 9, chunk=2, checkpoint_dir=str(tmp_path / "b"), log=None)


def test_sharded_population_equals_single_device():
    """Population axis sharded over 2 forced host devices gives the same result, bitwise."""
    import subprocess
    import sys
    code = """
import jax, numpy as np
from cimnas_jax.space import get_space
from cimnas_jax.search import GA, Search, Objective, Constraints, linear_fitness
sp = get_space("mbv2_rram")
out = {}
for shard in (True, False):
    s = Search(GA(sp, 64), linear_fitness(sp), Objective.single("energy", Constraints(False, None)),
               shard=shard)
    st, _ = s.run(0, 4, chunk=2, log=None)
    out[shard] = (s.mesh is not None, str(st.algo.population.sharding.spec
                                          if hasattr(st.algo.population.sharding, "spec") else ""),
                  jax.tree_util.tree_leaves(st))
assert jax.local_device_count() == 2
assert out[True][0] and "pop" in out[True][1] and not out[False][0]
assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(out[True][2], out[False][2]))
print("SHARDED_OK")
"""
    import os
    from pathlib import Path
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=300)
    assert "SHARDED_OK" in r.stdout, r.stderr[-3000:]


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    """A damaged latest checkpoint (a file truncated) is skipped with a warning; the run resumes from
    the previous one and still ends equal to an uninterrupted run."""
    def make():
        return Search(GA(SP, 24), linear_fitness(SP), Objective.single("energy", NO_CONS))
    full, _ = make().run(2, 6, chunk=2, checkpoint_dir=str(tmp_path / "a"), log=None)
    make().run(2, 6, chunk=2, checkpoint_dir=str(tmp_path / "b"), log=None, max_chunks=2)   # steps 2, 4
    files = [p for p in (tmp_path / "b" / "4").rglob("*") if p.is_file() and p.stat().st_size > 0]
    for p in files:
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    lines = []
    resumed, _ = make().run(2, 6, chunk=2, checkpoint_dir=str(tmp_path / "b"), resume=True, log=lines.append)
    assert any("damaged" in l for l in lines) and any("at generation 2" in l for l in lines), lines
    assert _tree_equal(full, resumed)
