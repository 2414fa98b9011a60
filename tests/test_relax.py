"""cimnas_jax.relax: the relaxed path equals the exact one at one-hots, gradients reach every gene
kind, refinement reaches a known optimum, never replaces a better start and never picks a NaN."""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cimnas_jax import pipeline as pl
from cimnas_jax.relax import (RefineConfig, discretise, gene_activity_map, make_soft_fitness, one_hot,
                              peaked_logits, refine, relaxed_loss, straight_through)
from cimnas_jax.relax import logits as LG
from cimnas_jax.relax.analytic import fmap_bytes
from cimnas_jax.search.objectives import Constraints, Objective
from cimnas_jax.space import get_space
from cimnas_jax.space.core import Gene, Space

MAIN = Objective.single("edap_per_accuracy", Constraints(capacity=True, area_limit_mm2=800))


@pytest.fixture(scope="module")
def mbv2():
    from cimnas_jax.surrogate import load_surrogates
    sp = get_space("mbv2_rram")
    sur = load_surrogates(sp.name)
    return sp, sur


def _genomes(sp, n=64):
    return jnp.concatenate([sp.sample(jax.random.key(1), n), sp.sample_mixed(jax.random.key(2), n)])


# ---------------------------------------------------------------- straight-through steps
def test_straight_through_keeps_values_and_passes_gradients_through_steps():
    def f(x):
        y = jax.jit(lambda z: jnp.ceil(z / 3.0))(x)          # nested jit: inlined and rewritten
        return jnp.sum(y * jnp.floor(x) + jnp.round(x))
    x = jnp.array([1.5, 2.5, 7.2])
    g = straight_through(f)
    assert float(g(x)) == float(f(x))
    np.testing.assert_array_equal(np.asarray(jax.grad(f)(x)), 0.0)          # steps: zero derivative
    expect = jnp.floor(x) / 3.0 + jnp.ceil(x / 3.0) + 1.0                      # identity through each step
    np.testing.assert_allclose(np.asarray(jax.grad(g)(x)), np.asarray(expect), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(jax.grad(g))(x)), np.asarray(expect), rtol=1e-6)


# ---------------------------------------------------------------- relaxed == exact at one-hots
@pytest.mark.parametrize("space_name,hw,acc", [("mbv2_rram", "analytic", "surrogate"),
                                               ("mbv2_rram", "surrogate", "surrogate"),
                                               ("resnet50_sram7nm", "analytic", "constant")])
def test_soft_fitness_equals_exact_fitness_at_one_hot_genomes(space_name, hw, acc, mbv2):
    sp = get_space(space_name)
    sur = mbv2[1] if space_name == "mbv2_rram" else None
    g = _genomes(sp)
    exact = jax.jit(pl.make_fitness(sp, hw, acc, sur))(g)
    soft = jax.jit(make_soft_fitness(sp, hw, acc, sur))(one_hot(sp, g))
    for k in ("energy_j", "latency_s", "area_mm2", "accuracy", "cells_needed", "cells_available"):
        np.testing.assert_allclose(np.asarray(soft[k]), np.asarray(exact[k]), rtol=2e-6, err_msg=k)
    if hw == "analytic":   # the model's unmappable layers <=> the relaxed overflow penalty
        np.testing.assert_array_equal(np.asarray(soft["overflow"]) > 0, ~np.asarray(exact["valid"]))
        if space_name == "mbv2_rram":   # (resnet50's 2-32 MB buffers hold every feature map)
            assert 0 < np.mean(np.asarray(exact["valid"])) < 1


def test_fmap_overflow_matches_the_models_ok_flag():
    from cimnas_jax.hw import load_technology
    from cimnas_jax.hw.model import layer_model
    sp = get_space("mbv2_rram")
    g = _genomes(sp)
    L, hw = sp.workloads(g), sp.hardware(g)
    tech = load_technology(sp.technology)
    ok = np.asarray(layer_model(tech, L, hw)["ok"])
    mine = np.asarray(fmap_bytes(L) <= tech.coef["ok_theta"] * hw.glb_bytes[:, None])
    np.testing.assert_array_equal(mine, ok)


def test_gene_activity_map_reproduces_space_active():
    for name in ("mbv2_rram", "resnet50_sram7nm"):
        sp = get_space(name)
        g = _genomes(sp, 32)
        from cimnas_jax.relax.decode import gene_active_from_blocks
        soft = gene_active_from_blocks(sp, sp.block_active(g).astype(jnp.float32))
        np.testing.assert_array_equal(np.asarray(soft) > 0.5, np.asarray(sp.active(g)))
    assert gene_activity_map(get_space("mbv2_rram"))[get_space("mbv2_rram").index["depth_s6"]] == -2


# ---------------------------------------------------------------- discretise o relax
def test_discretise_of_peaked_logits_round_trips():
    for name in ("mbv2_rram", "resnet50_sram7nm"):
        sp = get_space(name)
        g = _genomes(sp, 32)
        for peak in (0.5, 3.0):
            np.testing.assert_array_equal(np.asarray(discretise(sp, peaked_logits(sp, g, peak))),
                                          np.asarray(sp.canonicalise(g)))
        # padding columns never win and never get probability, whatever their logit
        lg = peaked_logits(sp, g, 1.0) + 50.0 * jnp.asarray(~LG.choice_mask(sp))
        assert np.all(np.asarray(discretise(sp, lg)) < sp.n_choices)
        p = LG.probabilities(sp, lg)
        assert float(jnp.max(jnp.where(jnp.asarray(LG.choice_mask(sp)), 0.0, p))) == 0.0
        y = LG.gumbel_softmax(sp, jax.random.key(0), lg, 0.5, hard=True)
        np.testing.assert_array_equal(np.asarray(jnp.sum(y, -1)), 1.0)
        assert set(np.unique(np.asarray(y))) <= {0.0, 1.0}


# ---------------------------------------------------------------- gradients per gene kind
def _kind(name):
    return name.rsplit("_", 1)[0] if name[-1].isdigit() else name


def _choice_gradients(sp, soft, objective, g, peak, hard_point):
    """d loss / d probs, projected on each gene's simplex: [P, G, W] (0 on padding)."""
    probs = one_hot(sp, g) if hard_point else LG.probabilities(sp, peaked_logits(sp, g, peak))
    grad = jax.jit(jax.grad(lambda p: jnp.sum(relaxed_loss(objective, soft(p), 10.0))))(probs)
    mask = jnp.asarray(LG.choice_mask(sp))
    grad = jnp.where(mask, grad, 0.0)
    mean = jnp.sum(grad, -1, keepdims=True) / jnp.asarray(sp.n_choices)[:, None]
    return np.asarray(jnp.where(mask, grad - mean, 0.0)), np.asarray(grad)


def test_gradients_finite_and_nonzero_for_every_gene_kind_main_job(mbv2):
    """Relaxed point (every block present with some probability): every gene of every kind gets
    a non-zero gradient, except depth_s6 (one block only: no effect, documented)."""
    sp, sur = mbv2
    soft = make_soft_fitness(sp, "analytic", "surrogate", sur)
    g = sp.sample(jax.random.key(3), 4)
    d, raw = _choice_gradients(sp, soft, MAIN, g, 1.0, hard_point=False)
    assert np.all(np.isfinite(d))
    per_gene = np.abs(d).max(axis=(0, 2))
    kinds = {}
    for i, n in enumerate(sp.gene_names):
        kinds.setdefault(_kind(n), []).append(per_gene[i])
    expected = {"voltage_v", "bits_per_cell", "clock_period_ns", "xbar_rows", "xbar_cols", "router_group",
                "tiles", "macros_per_tile", "glb_mb", "depth", "kernel", "mid_ch", "pw_w_bits",
                "pw_a_bits", "dw_w_bits", "dw_a_bits"}
    assert set(kinds) == expected
    for i, n in enumerate(sp.gene_names):
        if n == "depth_s6":   # every choice keeps the single block: equal partials (to rounding)
            assert per_gene[i] <= 1e-6 * np.abs(raw[:, i]).max()
        else:
            assert per_gene[i] > 1e-9 * per_gene.max(), f"gene {n} gets no gradient"


def test_gradients_hardware_only_resnet50_every_gene_kind():
    sp = get_space("resnet50_sram7nm")
    soft = make_soft_fitness(sp, "analytic", "constant")
    obj = Objective.single("edap", Constraints(capacity=True, area_limit_mm2=800))
    g = sp.sample(jax.random.key(4), 4)
    d, raw = _choice_gradients(sp, soft, obj, g, 1.0, hard_point=False)
    assert np.all(np.isfinite(d))
    per_gene = np.abs(d).max(axis=(0, 2))
    for i, n in enumerate(sp.gene_names):
        assert per_gene[i] > 1e-9 * per_gene.max(), f"gene {n} gets no gradient"


def test_hard_point_gradients_zero_only_for_genes_without_effect(mbv2):
    """At a one-hot design (the straight-through forward): genes of absent blocks get exactly
    zero gradient, every other gene a non-zero one."""
    sp, sur = mbv2
    soft = make_soft_fitness(sp, "analytic", "surrogate", sur)
    g = sp.canonicalise(sp.sample(jax.random.key(5), 4))
    d, raw = _choice_gradients(sp, soft, MAIN, g, 0.0, hard_point=True)
    assert np.all(np.isfinite(d))
    per = np.abs(d).max(axis=2)
    act = np.asarray(sp.active(g))
    depth = np.array([sp.genes[i].structural for i in range(sp.n_genes)])
    assert np.all(per[~act & ~depth[None]] == 0.0)
    assert np.all(per[act] > 0.0)
    assert not np.all(act)


# ---------------------------------------------------------------- toy problems
def _toy_space(n_choices=(3, 4, 5, 2, 4, 3)):
    genes = [Gene(f"g{i}", "software", tuple(float(c) for c in range(n))) for i, n in enumerate(n_choices)]
    return Space("toy_relax", genes, technology="rram_32nm",
                 active_fn=lambda sp, g: jnp.ones(g.shape, bool),
                 workloads_fn=lambda sp, v, b: None, hardware_fn=lambda sp, v: None)


def _toy_metrics(e, acc=None, need=None, avail=None):
    one = jnp.ones_like(e)
    return dict(energy_j=e, latency_s=one, area_mm2=one, accuracy=one if acc is None else acc,
                valid=jnp.ones(e.shape, bool), cells_needed=0.0 * one if need is None else need,
                cells_available=one if avail is None else avail)


def _toy_costs(sp, seed=0):
    W = sp.value_table.shape[1]
    c = np.random.default_rng(seed).uniform(0.0, 1.0, (sp.n_genes, W)).astype(np.float32)
    return np.where(LG.choice_mask(sp), c, 0.0)


def _linear_toy(sp, cost):
    """energy = exp(sum_g cost[g, choice_g]): optimum = per-gene argmin (exact and relaxed)."""
    cost = jnp.asarray(cost)
    exact = lambda g: _toy_metrics(jnp.exp(jnp.sum(jnp.take_along_axis(cost[None], g[..., None], -1)[..., 0], -1)))
    soft = lambda p: _toy_metrics(jnp.exp(jnp.sum(p * cost, axis=(-1, -2))))
    return exact, soft


TOY_OBJ = Objective.single("energy", Constraints(capacity=False, area_limit_mm2=None))


def test_refinement_reaches_the_known_optimum_of_a_toy_objective():
    sp = _toy_space()
    cost = _toy_costs(sp)
    optimum = np.argmin(np.where(LG.choice_mask(sp), cost, np.inf), axis=1)
    exact, soft = _linear_toy(sp, cost)
    cfg = RefineConfig(steps=150, candidates=4, lr=0.2, tau_start=1.0, tau_end=0.1, eval_every=10)
    worst = np.argmax(np.where(LG.choice_mask(sp), cost, -np.inf), axis=1)
    for starts in (None, np.tile(worst, (2, 1))):
        res = refine(sp, exact, soft, TOY_OBJ, starts, cfg, jax.random.key(0))
        for k in range(cfg.candidates):
            np.testing.assert_array_equal(res.genomes[k], optimum)
        assert np.all(res.accepted)
        assert res.exact_evaluations == cfg.candidates * (15 + 1 + (starts is not None))
        assert res.skipped_updates == 0


def test_refinement_respects_a_constraint_on_a_toy():
    """energy = exp(-v0 + sum_g>0 cost[g, c]) with capacity need = v0 <= 1.5: the unconstrained
    optimum (v0 = 3) is infeasible; the enumerated constrained optimum (v0 = 1, others at their
    argmin) is reached and reported feasible."""
    import itertools
    sp = _toy_space((4, 3, 4, 3))
    cost = _toy_costs(sp, 4)
    cost[0] = 0.0
    c = jnp.asarray(cost)

    def metrics(v0, rest):
        return _toy_metrics(jnp.exp(-v0 + rest), need=v0, avail=jnp.full_like(v0, 1.5))
    exact = lambda g: metrics(sp.values(g)[:, 0],
                              jnp.sum(jnp.take_along_axis(c[None], g[..., None], -1)[..., 0], -1))
    soft = lambda p: metrics(jnp.sum(p[:, 0] * jnp.asarray(sp.value_table[0]), -1), jnp.sum(p * c, (-1, -2)))
    obj = Objective.single("energy", Constraints(capacity=True, area_limit_mm2=None))
    best, arg = np.inf, None
    for g in itertools.product(*[range(n) for n in sp.n_choices]):
        if g[0] <= 1.5:
            e = -g[0] + sum(cost[i, x] for i, x in enumerate(g))
            best, arg = (e, g) if e < best else (best, arg)
    cfg = RefineConfig(steps=100, candidates=4, lr=0.2, penalty=10.0, eval_every=2)
    res = refine(sp, exact, soft, obj, None, cfg, jax.random.key(1))
    i = res.order()[0]
    assert res.violation[i] == 0.0
    np.testing.assert_array_equal(res.genomes[i], arg)
    np.testing.assert_allclose(np.log(res.objective[i]), best, rtol=1e-5)
    # unconstrained, the same search goes to v0 = 3
    free = Objective.single("energy", Constraints(capacity=False, area_limit_mm2=None))
    res = refine(sp, exact, soft, free, None, cfg, jax.random.key(1))
    assert res.genomes[res.order()[0]][0] == 3


def test_refined_design_never_replaces_a_start_that_scores_better_exactly():
    """The relaxed objective points away from what the exact fitness rewards: every start stays."""
    sp = _toy_space()
    cost = _toy_costs(sp, 1)
    exact, _ = _linear_toy(sp, cost)
    _, soft = _linear_toy(sp, -cost)           # misleading surrogate
    optimum = np.argmin(np.where(LG.choice_mask(sp), cost, np.inf), axis=1)
    starts = np.stack([optimum, optimum])
    starts[1, 0] = (optimum[0] + 1) % sp.n_choices[0]          # second start: one gene off
    res = refine(sp, exact, soft, TOY_OBJ, starts, RefineConfig(steps=60, candidates=2), jax.random.key(2))
    assert not np.any(res.accepted)
    np.testing.assert_array_equal(res.genomes, starts)
    np.testing.assert_array_equal(res.objective, res.start_objective)
    assert np.all(res.refined_objective >= res.start_objective)   # it did move, to worse designs
    # and with an honest surrogate the second start is improved and the first kept
    _, honest = _linear_toy(sp, cost)
    res = refine(sp, exact, honest, TOY_OBJ, starts, RefineConfig(steps=60, candidates=2), jax.random.key(2))
    assert not res.accepted[0] and res.accepted[1]
    assert res.objective[1] < res.start_objective[1]
    np.testing.assert_array_equal(res.genomes[1], optimum)


def test_nan_from_a_surrogate_never_reaches_a_chosen_design():
    """Accuracy is NaN wherever gene 0 takes a choice >= 1 -- which is also where the energy
    term is lowest. Chosen designs keep gene 0 at 0, scores stay finite, logits stay finite."""
    sp = _toy_space()
    cost = _toy_costs(sp, 2)
    cost[0] = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0][: cost.shape[1]]
    cost = np.where(LG.choice_mask(sp), cost, 0.0)
    c = jnp.asarray(cost)

    def exact(g):
        m = _toy_metrics(jnp.exp(jnp.sum(jnp.take_along_axis(c[None], g[..., None], -1)[..., 0], -1)))
        m["accuracy"] = jnp.where(g[:, 0] >= 1, jnp.nan, 0.9)
        return m

    def soft(p):
        m = _toy_metrics(jnp.exp(jnp.sum(p * c, axis=(-1, -2))))
        m["accuracy"] = jnp.where(p[:, 0, 0] < 0.999, jnp.nan, 0.9) * jnp.ones_like(m["energy_j"])
        return m
    obj = Objective.single("energy/accuracy", Constraints(capacity=False, area_limit_mm2=None))
    for starts in (np.zeros((3, sp.n_genes), np.int32), None):
        res = refine(sp, exact, soft, obj, starts, RefineConfig(steps=40, candidates=3, eval_every=5),
                     jax.random.key(3))
        ok = np.isfinite(res.objective)
        assert np.all(res.genomes[ok, 0] == 0)
        if starts is not None:
            assert np.all(ok)
        assert res.skipped_updates > 0
        assert all(np.isfinite(x) for x in res.objective[ok])
        text = json.dumps(res.summary(sp), allow_nan=False)        # null, never NaN, in the record
        rec = json.loads(text)
        for row in rec["candidates_detail"]:
            assert row["status"] in ("refined", "kept_start", "failed")
            if row["status"] != "failed":
                assert row["genome"][0] == 0


def test_refine_config_errors_name_the_field():
    for kw, field in ((dict(steps=-1), "steps"), (dict(candidates=0), "candidates"), (dict(lr=0.0), "lr"),
                      (dict(tau_end=float("nan")), "tau_end"), (dict(tau_schedule="cosine"), "tau_schedule"),
                      (dict(penalty=-1.0), "penalty")):
        with pytest.raises(ValueError, match=f"RefineConfig.{field}="):
            RefineConfig(**kw)
    t = RefineConfig(steps=5, tau_start=1.0, tau_end=0.1).temperatures()
    np.testing.assert_allclose([t[0], t[-1]], [1.0, 0.1], rtol=1e-5)
    assert np.all(np.diff(t) < 0)
    with pytest.raises(ValueError, match="single objective"):
        refine(_toy_space(), None, None, Objective.multi("accuracy_edap"), None, RefineConfig(steps=1))
