"""Does gradient refinement (cimnas_jax.relax) help the GA? Equal-cost comparisons for docs/refine.md.

  nice -n 10 python benchmarks/refine_study.py --phase=calibrate --setting=main
  nice -n 10 python benchmarks/refine_study.py --phase=compare --setting=main --seeds=0,1,2,3,4
  nice -n 10 python benchmarks/refine_study.py --phase=long_ga --setting=main
  nice -n 10 python benchmarks/refine_study.py --phase=to_best --setting=main --seeds=0,1,2,3,4
  nice -n 10 python benchmarks/refine_study.py --phase=dev --setting=main      # tuning, seeds 100-102

Phases (each writes/extends OUT_DIR/<phase>_<setting>.json atomically; a rerun skips done seeds):

* calibrate: cost conversion measured in one process, GA and refinement interleaved (3 rounds,
  medians): seconds per exact evaluation inside the GA (steady lax.scan chunks, population
  ``pop``) and seconds per gradient step of K candidates (steady chunks); ``c`` = one candidate
  step in exact evaluations. Also refinement throughput (candidates x steps / s) for several K.
* compare: at budget B exact evaluations, (a) the GA alone (B / pop generations); (b) the GA
  for (1 - share) B, then ``refine`` of its K best designs with the rest (gradient steps
  converted with ``c``, plus the exact evaluations refine uses); (c) pure Gumbel from uniform
  logits with all of B. Best exact objective of each (feasible first).
* long_ga: one long GA run (population 1 000, 2 000 generations = 2e6 evaluations), seed 0.
* to_best: evaluations to come within 1 % of the long run's best, for the GA (one run up to
  ``--max_evals``), GA + refine (that run's population refined every 10 generations up to 100,
  then every 50, with the refine budget of ``compare``; cost = GA evaluations + refine budget)
  and pure Gumbel (budgets doubling from 2 000).
* diagnose: how well the relaxed gradient predicts the exact effect of every single-gene move at
  the GA's best design and at a random one (Kendall tau, top-10 precision); see diagnose_one.
* report: markdown tables of every file in OUT_DIR (the numbers of docs/refine.md).
* dev: the tuning grid (K, share) on dev seeds 100-102 only; the chosen values are frozen in
  ``PLAN`` below before any reported seed runs.

``c`` is measured once per setting by ``calibrate`` and read from its file, so every seed of
``compare`` / ``to_best`` runs the same number of gradient steps.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("phase", "compare", "calibrate | compare | long_ga | to_best | dev | diagnose")
flags.DEFINE_string("setting", "main", "main | small | floor_area | resnet50")
flags.DEFINE_string("seeds", "0,1,2,3,4", "comma-separated seeds (dev: 100,101,102)")
flags.DEFINE_string("out_dir", "runs/refine_study", "output folder")
flags.DEFINE_integer("max_evals", 300_000, "to_best: largest budget tried per method")
flags.DEFINE_float("share", -1.0, "compare: refinement's share of the budget (-1 = PLAN's); another value "
                   "is a sensitivity run, written to compare_<setting>_share<share>.json")

SETTINGS = {
    "main": dict(space="mbv2_rram", accuracy="surrogate", area=800.0, floor=None, budget=15_000, pop=150,
                 doc="CIMNAS main job: EDAP/accuracy, capacity, area <= 800 mm^2, 150 x 100 generations"),
    "small": dict(space="mbv2_rram", accuracy="surrogate", area=800.0, floor=None, budget=2_000, pop=100,
                  doc="main objective at a small budget: 100 x 20 generations"),
    "floor_area": dict(space="mbv2_rram", accuracy="surrogate", area=20.0, floor=0.895, budget=15_000, pop=150,
                       doc="predicted accuracy >= 0.895 and area <= 20 mm^2, 150 x 100 generations"),
    "resnet50": dict(space="resnet50_sram7nm", accuracy="constant", area=800.0, floor=None, budget=15_000,
                     pop=150, doc="resnet50_sram7nm hardware-only (constant accuracy): EDAP, 150 x 100"),
}
# Frozen refinement plan (chosen on dev seeds 100-102, see docs/refine.md); K candidates, share of
# the budget given to refinement, RefineConfig fields.
PLAN = dict(K=16, share=0.1, config=dict(lr=0.1, tau_start=1.0, tau_end=0.2, init_peak=3.0, penalty=10.0,
                                         eval_every=5, hard=True, samples=1))
PHASES = ("calibrate", "compare", "long_ga", "to_best", "dev", "diagnose", "report")
DEV_GRID = [dict(K=k, share=s) for k in (4, 16) for s in (0.1, 0.3, 0.5)]


class Ctx:
    """One setting: space, exact and soft fitness, objective, and GA searches by population."""

    def __init__(self, name):
        from cimnas_jax.pipeline import make_fitness
        from cimnas_jax.relax import make_soft_fitness
        from cimnas_jax.search.objectives import Constraints, Objective
        from cimnas_jax.space import get_space
        s = SETTINGS[name]
        self.name, self.s = name, s
        self.sp = get_space(s["space"])
        sur = None
        if s["accuracy"] == "surrogate":
            from cimnas_jax.surrogate import load_surrogates
            sur = load_surrogates(self.sp.name)
        self.exact = make_fitness(self.sp, "analytic", s["accuracy"], sur)
        self.soft = make_soft_fitness(self.sp, "analytic", s["accuracy"], sur)
        self.objective = Objective.single("edap_per_accuracy", Constraints(
            capacity=True, area_limit_mm2=s["area"], accuracy_floor=s["floor"]))
        self._search = {}

    def search(self, pop):
        from cimnas_jax.search import GA, Search
        if pop not in self._search:
            self._search[pop] = Search(GA(self.sp, pop), self.exact, self.objective)
        return self._search[pop]

    def ga(self, seed, gens, pop=None, stamps=None):
        """Run the GA; returns (population sorted best-first, fitness, violation, history)."""
        import jax
        import numpy as np
        log = (lambda line: stamps.append(time.perf_counter())) if stamps is not None else None
        st, hist = self.search(pop or self.s["pop"]).run(seed, gens, 10, log=log)
        a = jax.device_get(st.algo)
        return np.asarray(a.population), np.asarray(a.fitness), np.asarray(a.violation), hist

    def refine(self, starts, K, steps, seed, **over):
        import jax
        from cimnas_jax.relax import RefineConfig, refine
        cfg = RefineConfig(steps=steps, candidates=K, **{**PLAN["config"], **over})
        return refine(self.sp, self.exact, self.soft, self.objective, starts, cfg, jax.random.key(seed))


def best_of(F, v):
    """(objective, violation) of the best entry: finite, feasible first, then objective."""
    import numpy as np
    F, v = np.asarray(F, np.float64), np.asarray(v, np.float64)
    ok = np.isfinite(F) & np.isfinite(v)
    if not ok.any():
        return math.inf, math.inf
    i = np.lexsort((np.where(ok, F, np.inf), np.where(ok, v, np.inf)))[0]
    return float(F[i]), float(v[i])


def steps_for(budget_evals, K, c, eval_every, with_starts=True):
    """Gradient steps that fit in ``budget_evals`` exact-evaluation equivalents, counting the
    exact evaluations refine itself uses (starts, one check per eval_every steps, the samples)."""
    fixed = K * (1 + (1 if with_starts else 0))
    per_step = K * c + K / eval_every
    return max(0, int((budget_evals - fixed) // per_step))


# ---------------------------------------------------------------- phases
def calibrate(ctx, rounds=30):
    """Interleaved timing (the machine is shared: each round times one GA chunk of 10
    generations and one refinement chunk of 10 gradient steps back to back; medians of 30)."""
    import jax
    import jax.numpy as jnp
    from cimnas_jax.relax import logits as LG
    from cimnas_jax.relax.refine import _stepper
    K, pop = PLAN["K"], ctx.s["pop"]
    search = ctx.search(pop)
    ga_chunk = search._chunk_fn(10)
    state = search.init(998)
    state, _ = ga_chunk(state)                       # compile + leave generation 0 behind
    starts, *_ = ctx.ga(999, 10)

    def stepper(k):
        opt, chunk = _stepper(ctx.sp, ctx.soft, ctx.objective, k, 1, True, PLAN["config"]["penalty"])
        lg = LG.peaked_logits(ctx.sp, jnp.asarray(starts[:k] if k <= len(starts) else
                                                  ctx.sp.sample(jax.random.key(0), k)), 3.0)
        tr = (jnp.zeros((k, ctx.sp.n_genes), jnp.int32), jnp.full((k,), jnp.inf), jnp.full((k,), jnp.inf))
        carry = [(lg, opt.init(lg), tr)]
        keys = jax.random.split(jax.random.key(1), 10)
        taus = jnp.full((10,), 0.5, jnp.float32)

        def run():
            t0 = time.perf_counter()
            c, lk, ok = chunk(carry[0], keys, taus, 0.1)
            jax.block_until_ready((c, lk))
            carry[0] = c
            return (time.perf_counter() - t0) / 10
        run()                                        # compile
        return run

    rf = stepper(K)
    ga_s, rf_s = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        state, stats = ga_chunk(state)
        jax.block_until_ready(stats)
        ga_s.append((time.perf_counter() - t0) / (10 * pop))
        rf_s.append(rf())
    ratios = [r / K / g for g, r in zip(ga_s, rf_s)]
    out = dict(setting=ctx.name, K=K, pop=pop, rounds=rounds,
               seconds_per_exact_evaluation_in_ga=statistics.median(ga_s),
               seconds_per_gradient_step=statistics.median(rf_s),
               c_evaluations_per_candidate_step=statistics.median(ratios),
               c_quartiles=[statistics.quantiles(ratios, n=4)[0], statistics.quantiles(ratios, n=4)[2]],
               load_average_1min=os.getloadavg()[0], throughput={})
    for k in (1, 4, 16, 64):
        run = rf if k == K else stepper(k)
        ts = [run() for _ in range(10)]
        out["throughput"][str(k)] = dict(candidate_steps_per_s=k / statistics.median(ts),
                                         seconds_per_step=statistics.median(ts))
    print(json.dumps(out, indent=1))
    return out


def compare_one(ctx, seed, c, K, share):
    B, pop = ctx.s["budget"], ctx.s["pop"]
    ev = PLAN["config"]["eval_every"]
    t0 = time.perf_counter()
    _, F, v, hist = ctx.ga(seed, B // pop)
    ga_best = best_of(F, v)
    gens_ga = int(round((1 - share) * B / pop))
    R = B - gens_ga * pop
    steps = steps_for(R, K, c, ev)
    pop_ga, F1, v1, _ = ctx.ga(seed, gens_ga)
    r = ctx.refine(pop_ga[:K], K, steps, seed)
    start = best_of(F1, v1)
    gr_best = best_of(list(r.objective) + [start[0]], list(r.violation) + [start[1]])
    steps_pure = steps_for(B, K, c, ev, with_starts=False)
    p = ctx.refine(None, K, steps_pure, seed)
    pure_best = best_of(p.objective, p.violation)
    row = dict(seed=seed, K=K, share=share, budget=B, ga_best=ga_best[0], ga_violation=ga_best[1],
               ga_generations=B // pop, ga_refine_best=gr_best[0], ga_refine_violation=gr_best[1],
               ga_part_generations=gens_ga, ga_part_best=start[0], refine_budget_evals=R,
               refine_steps=steps, refine_exact_evaluations=r.exact_evaluations,
               refine_accepted=int(r.accepted.sum()), pure_best=pure_best[0], pure_violation=pure_best[1],
               pure_steps=steps_pure, pure_exact_evaluations=p.exact_evaluations,
               gain_ga_refine_over_ga=_ratio(ga_best, gr_best), gain_pure_over_ga=_ratio(ga_best, pure_best),
               gain_refine_over_its_start=_ratio(start, gr_best), wall_s=time.perf_counter() - t0)
    print(json.dumps({k: row[k] for k in ("seed", "K", "share", "ga_best", "ga_refine_best", "pure_best",
                                          "gain_ga_refine_over_ga", "gain_pure_over_ga", "refine_steps")}),
          flush=True)
    return row


def _ratio(a, b):
    """a / b for (objective, violation) pairs when both are feasible; >1 means b is better."""
    if a[1] == 0 and b[1] == 0 and math.isfinite(a[0]) and math.isfinite(b[0]):
        return a[0] / b[0]
    return None


def long_ga(ctx):
    import numpy as np
    t0 = time.perf_counter()
    pop_, F, v, hist = ctx.ga(0, 2000, pop=1000)
    b = best_of(F, v)
    i = int(np.lexsort((F, v))[0])
    out = dict(setting=ctx.name, population=1000, generations=2000, evaluations=2_000_000, seed=0,
               best_objective=b[0], best_violation=b[1], best_genome=[int(x) for x in pop_[i]],
               best_hash=ctx.sp.hash_hex(pop_[i:i + 1])[0], wall_s=time.perf_counter() - t0,
               history=[dict(evaluations=h["evaluations"], best=h["best"][0]) for h in hist[::20]])
    print(json.dumps({k: out[k] for k in ("best_objective", "best_violation", "wall_s")}))
    return out


def _checkpoints(gmax):
    """GA generations at which GA + refine is tried: every 10 up to 100, then every 50."""
    return [g for g in range(10, gmax + 1, 10) if g <= 100 or g % 50 == 0]


def to_best_one(ctx, seed, c, target):
    """Evaluations to reach ``target`` (feasible, objective <= target) for the GA, GA + refine
    and pure Gumbel. The GA runs once, 10 generations per chunk (the same compiled chunks as
    Search.run, so the same trajectory); at each checkpoint its population is refined."""
    import jax
    import numpy as np
    pop, B = ctx.s["pop"], ctx.s["budget"]
    K, ev = PLAN["K"], PLAN["config"]["eval_every"]
    gmax = FLAGS.max_evals // pop
    R = B - int(round((1 - PLAN["share"]) * B / pop)) * pop
    steps = steps_for(R, K, c, ev)
    search = ctx.search(pop)
    chunk = search._chunk_fn(10)
    state = search.init(seed)
    marks = set(_checkpoints(gmax))
    ga_hit = gr_hit = None
    gr_tries, gen = 0, 0
    while gen < gmax and (ga_hit is None or gr_hit is None):
        state, _ = chunk(state)
        gen += 10
        a = jax.device_get(state.algo)
        F, v = np.asarray(a.fitness), np.asarray(a.violation)
        b = best_of(F, v)
        if ga_hit is None and b[1] == 0 and b[0] <= target:
            ga_hit = gen * pop
        if gr_hit is None and gen in marks:
            if ga_hit is not None:             # the GA's best is among the starts: refine cannot lose it
                gr_hit = gen * pop + R
                break
            r = ctx.refine(np.asarray(a.population)[:K], K, steps, seed)
            gr_tries += 1
            rb = best_of(list(r.objective), list(r.violation))
            if rb[1] == 0 and rb[0] <= target:
                gr_hit = gen * pop + R
    pure_hit, budget, pure_best = None, 2000, []
    while budget <= FLAGS.max_evals and pure_hit is None:
        p = ctx.refine(None, K, steps_for(budget, K, c, ev, with_starts=False), seed)
        pb = best_of(p.objective, p.violation)
        pure_best.append(dict(budget=budget, best=pb[0], violation=pb[1]))
        if pb[1] == 0 and pb[0] <= target:
            pure_hit = budget
        budget *= 2
    row = dict(seed=seed, target=target, ga_evals=ga_hit, ga_refine_evals=gr_hit, ga_refine_tries=gr_tries,
               pure_evals=pure_hit, pure_trajectory=pure_best, max_evals=FLAGS.max_evals,
               refine_steps=steps, refine_budget_evals=R)
    print(json.dumps({k: row[k] for k in ("seed", "ga_evals", "ga_refine_evals", "pure_evals")}), flush=True)
    return row


def diagnose_one(ctx, seed):
    """How well does the relaxed gradient predict single-gene moves? At a design x (the GA's best
    after the setting's budget, and a uniform random design), for every single-gene change
    (g -> c) of an active gene: predicted change of the loss = dL/dp[g, c] - dL/dp[g, x_g] (the
    straight-through gradient at the one-hot of x; the loss is relax.loss.relaxed_loss) vs the
    actual change (the same loss at the neighbour's one-hot, which equals the exact log objective
    + penalty x violation). Reports Kendall tau, the share of neighbours that improve, and how
    many of the 10 best-predicted neighbours really improve."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from scipy.stats import kendalltau
    from cimnas_jax.relax import one_hot, relaxed_loss
    sp, pen = ctx.sp, PLAN["config"]["penalty"]
    lossf = jax.jit(lambda p: relaxed_loss(ctx.objective, ctx.soft(p), pen))
    gradf = jax.jit(jax.grad(lambda p: jnp.sum(relaxed_loss(ctx.objective, ctx.soft(p), pen))))
    pop, F, v, _ = ctx.ga(seed, ctx.s["budget"] // ctx.s["pop"])
    rand = np.asarray(sp.canonicalise(sp.sample(jax.random.key(seed), 1)))[0]
    out = {}
    for name, x in (("ga_best", pop[0]), ("random", rand)):
        x = np.asarray(sp.canonicalise(x[None]))[0]
        act = np.asarray(sp.active(x[None]))[0]
        nb, gi, ci = [], [], []
        for g in range(sp.n_genes):
            if not act[g]:
                continue
            for c in range(int(sp.n_choices[g])):
                if c != x[g]:
                    y = x.copy()
                    y[g] = c
                    nb.append(y)
                    gi.append(g)
                    ci.append(c)
        nb = np.asarray(nb, np.int32)
        l0 = float(lossf(one_hot(sp, x[None]))[0])
        actual = np.asarray(lossf(one_hot(sp, nb)), np.float64) - l0
        grad = np.asarray(gradf(one_hot(sp, x[None])))[0]
        pred = grad[gi, ci] - grad[gi, x[gi]]
        ok = np.isfinite(actual) & np.isfinite(pred)
        tau = kendalltau(pred[ok], actual[ok])[0] if ok.sum() > 2 else None
        top = np.argsort(np.where(ok, pred, np.inf))[:10]
        best = int(np.argmin(np.where(ok, actual, np.inf)))
        out[name] = dict(neighbours=int(len(nb)), finite=int(ok.sum()), kendall_tau=float(tau) if tau is not None else None,
                         improving_fraction=float(np.mean(actual[ok] < 0)),
                         top10_predicted_that_improve=int(np.sum(actual[top] < 0)),
                         best_actual_change=float(actual[best]), best_move_gene=sp.gene_names[gi[best]],
                         predicted_sign_agreement=float(np.mean(np.sign(pred[ok]) == np.sign(actual[ok]))),
                         loss=l0)
    print(json.dumps(dict(seed=seed, **{k: {kk: out[k][kk] for kk in ("kendall_tau", "improving_fraction",
                                                                           "top10_predicted_that_improve")}
                                          for k in out})), flush=True)
    return dict(seed=seed, **out)


def report():
    """Markdown tables of everything in OUT_DIR (what docs/refine.md quotes)."""
    import numpy as np
    d = FLAGS.out_dir
    L = lambda name: _load(os.path.join(d, name))
    med = lambda xs: statistics.median(xs) if xs else None
    f = lambda x, spec=".4g": "n/a" if x is None else format(x, spec)
    out = ["### cost conversion (calibrate)", "",
           "| setting | s / exact evaluation in the GA | s / gradient step (K = 16) | c = evaluations per candidate-step (quartiles) | candidate-steps/s at K = 1, 4, 16, 64 | load avg |",
           "|---|---|---|---|---|---|"]
    for name in SETTINGS:
        c = L(f"calibrate_{name}.json")
        if c:
            tp = ", ".join(f"{c['throughput'][k]['candidate_steps_per_s']:.0f}" for k in ("1", "4", "16", "64"))
            out.append(f"| {name} | {c['seconds_per_exact_evaluation_in_ga']:.3g} | {c['seconds_per_gradient_step']:.3g} | "
                       f"{c['c_evaluations_per_candidate_step']:.1f} ({c['c_quartiles'][0]:.1f}-{c['c_quartiles'][1]:.1f}) | {tp} | {c['load_average_1min']:.1f} |")
    for tag, title in (("", f"share {PLAN['share']} (the frozen plan)"), ("_share0.3", "share 0.3 (sensitivity)"),
                       ("_share0.5", "share 0.5 (sensitivity)")):
        out += ["", f"### equal cost, {title}: best exact objective, median of seeds", "",
                "| setting | budget | GA alone | GA + refine | gain (GA / GA+refine) | W/T/L | refine steps x K | refine vs its start | pure Gumbel | gain (GA / pure) | pure feasible |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name in SETTINGS:
            c = L(f"compare_{name}{tag}.json")
            if not c:
                continue
            rows = list(c["rows"].values())
            sm = _summary(rows)
            pf = sum(r["pure_violation"] == 0 for r in rows)
            out.append(f"| {name} | {rows[0]['budget']} | {f(sm['median_ga_best'])} | {f(sm['median_ga_refine_best'])} | "
                       f"{f(sm['median_gain_ga_refine_over_ga'], '.4f')} | {sm['wins_ga_refine']}/{sm['ties']}/{sm['losses']} | "
                       f"{rows[0]['refine_steps']} x {rows[0]['K']} | {f(sm['median_gain_refine_over_its_start'], '.4f')} | "
                       f"{f(sm['median_pure_best'])} | {f(sm['median_gain_pure_over_ga'], '.3f')} | {pf}/{len(rows)} |")
    out += ["", "### evaluations to within 1 % of the best known (median of seeds; '>' = not within max_evals)", "",
            "| setting | best known (long GA, 2e6 evaluations) | target | GA | GA + refine | pure Gumbel | per seed GA / GA+refine / pure |",
            "|---|---|---|---|---|---|---|"]
    for name in SETTINGS:
        t, lg = L(f"to_best_{name}.json"), L(f"long_ga_{name}.json")
        if not t:
            continue
        rows = list(t["rows"].values())
        mx = rows[0]["max_evals"]

        def m(key):
            xs = [r[key] if r[key] is not None else math.inf for r in rows]
            v = statistics.median(xs)
            return f"> {mx}" if not math.isfinite(v) else f"{v:.0f}"
        per = "; ".join(f"{r['ga_evals'] or '>'} / {r['ga_refine_evals'] or '>'} / {r['pure_evals'] or '>'}" for r in rows)
        out.append(f"| {name} | {lg['best_objective']:.5g} | {rows[0]['target']:.5g} | {m('ga_evals')} | "
                   f"{m('ga_refine_evals')} | {m('pure_evals')} | {per} |")
    out += ["", "### does the gradient predict single-gene moves? (diagnose; per seed)", "",
            "| setting | design | Kendall tau (predicted vs actual loss change) | neighbours that improve | top-10 predicted that improve |",
            "|---|---|---|---|---|"]
    for name in SETTINGS:
        dg = L(f"diagnose_{name}.json")
        for which in ("ga_best", "random"):
            if dg:
                rows = list(dg["rows"].values())
                out.append(f"| {name} | {which} | " + ", ".join(f"{r[which]['kendall_tau']:.2f}" for r in rows) + " | "
                           + ", ".join(f"{r[which]['improving_fraction']:.2f}" for r in rows) + " | "
                           + ", ".join(str(r[which]['top10_predicted_that_improve']) for r in rows) + " |")
    dv = [(n, L(f"dev_{n}.json")) for n in SETTINGS]
    out += ["", "### dev grid (seeds 100-102 only; the plan was chosen here): median gain GA / (GA + refine)", "",
            "| K, share | " + " | ".join(n for n, x in dv if x) + " |", "|---|" + "---|" * sum(1 for _, x in dv if x)]
    for g in DEV_GRID:
        key = f"K{g['K']}_share{g['share']}"
        out.append(f"| {g['K']}, {g['share']} | " + " | ".join(
            f(x["summary"][key]["median_gain_ga_refine_over_ga"], ".4f") for _, x in dv if x) + " |")
    print("\n".join(out))


# ---------------------------------------------------------------- driver
def _load(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def _save(path, obj):
    from cimnas_jax.fileio import atomic_write_json
    atomic_write_json(path, obj)


def _c(ctx):
    path = os.path.join(FLAGS.out_dir, f"calibrate_{ctx.name}.json")
    cal = _load(path)
    if not cal:
        raise app.UsageError(f"no calibration for --setting={ctx.name}: run --phase=calibrate first ({path})")
    return cal["c_evaluations_per_candidate_step"]


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    if FLAGS.phase not in PHASES:
        raise app.UsageError(f"--phase={FLAGS.phase!r}; allowed: {', '.join(PHASES)}")
    if FLAGS.setting not in SETTINGS:
        raise app.UsageError(f"--setting={FLAGS.setting!r}; allowed: {', '.join(SETTINGS)}")
    try:
        seeds = [int(s) for s in FLAGS.seeds.split(",") if s]
    except ValueError:
        raise app.UsageError(f"--seeds={FLAGS.seeds!r}: expected comma-separated integers")
    if FLAGS.phase in ("compare", "to_best", "diagnose") and any(s >= 100 for s in seeds):
        raise app.UsageError("--seeds >= 100 are the dev (tuning) seeds; report seeds < 100")
    if FLAGS.phase == "dev" and any(s < 100 for s in seeds):
        raise app.UsageError("--phase=dev tunes on seeds >= 100 only (e.g. --seeds=100,101,102)")
    os.makedirs(FLAGS.out_dir, exist_ok=True)
    if FLAGS.phase == "report":
        return report()
    ctx = Ctx(FLAGS.setting)
    share = PLAN["share"] if FLAGS.share < 0 else FLAGS.share
    tag = "" if share == PLAN["share"] or FLAGS.phase != "compare" else f"_share{share}"
    path = os.path.join(FLAGS.out_dir, f"{FLAGS.phase}_{ctx.name}{tag}.json")
    rec = _load(path)
    rec.setdefault("setting", dict(name=ctx.name, **ctx.s))
    rec.setdefault("plan", PLAN)
    rec["command"] = " ".join(sys.argv)
    if FLAGS.phase == "calibrate":
        rec.update(calibrate(ctx))
    elif FLAGS.phase == "long_ga":
        rec.update(long_ga(ctx))
    elif FLAGS.phase == "compare":
        c = _c(ctx)
        rows = rec.setdefault("rows", {})
        for s in seeds:
            if str(s) not in rows:
                rows[str(s)] = compare_one(ctx, s, c, PLAN["K"], share)
                _save(path, rec)
        rec["summary"] = _summary(list(rows.values()))
    elif FLAGS.phase == "diagnose":
        rows = rec.setdefault("rows", {})
        for s in seeds:
            if str(s) not in rows:
                rows[str(s)] = diagnose_one(ctx, s)
                _save(path, rec)
    elif FLAGS.phase == "dev":
        c = _c(ctx)
        rows = rec.setdefault("rows", {})
        for g in DEV_GRID:
            for s in seeds:
                key = f"K{g['K']}_share{g['share']}_seed{s}"
                if key not in rows:
                    rows[key] = compare_one(ctx, s, c, g["K"], g["share"])
                    _save(path, rec)
        rec["summary"] = {f"K{g['K']}_share{g['share']}": _summary(
            [r for r in rows.values() if r["K"] == g["K"] and r["share"] == g["share"]]) for g in DEV_GRID}
    else:
        c = _c(ctx)
        lg = _load(os.path.join(FLAGS.out_dir, f"long_ga_{ctx.name}.json"))
        if not lg:
            raise app.UsageError(f"no long GA run for --setting={ctx.name}: run --phase=long_ga first")
        target = 1.01 * lg["best_objective"]
        rows = rec.setdefault("rows", {})
        for s in seeds:
            if str(s) not in rows:
                rows[str(s)] = to_best_one(ctx, s, c, target)
                _save(path, rec)
    _save(path, rec)
    if "summary" in rec:
        print(json.dumps(rec["summary"], indent=1))
    print(f"wrote {path}")


def _summary(rows):
    med = lambda xs: statistics.median(xs) if xs else None
    g = [r["gain_ga_refine_over_ga"] for r in rows if r["gain_ga_refine_over_ga"] is not None]
    p = [r["gain_pure_over_ga"] for r in rows if r["gain_pure_over_ga"] is not None]
    return dict(n=len(rows), median_gain_ga_refine_over_ga=med(g), median_gain_pure_over_ga=med(p),
                wins_ga_refine=sum(x > 1 for x in g), ties=sum(x == 1 for x in g), losses=sum(x < 1 for x in g),
                median_ga_best=med([r["ga_best"] for r in rows]),
                median_ga_refine_best=med([r["ga_refine_best"] for r in rows]),
                median_pure_best=med([r["pure_best"] for r in rows]),
                median_gain_refine_over_its_start=med([r["gain_refine_over_its_start"] for r in rows
                                                       if r["gain_refine_over_its_start"] is not None]))


if __name__ == "__main__":
    app.run(main)
