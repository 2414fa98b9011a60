"""pareto: NSGA-II fronts (accuracy–EDAP and energy–latency–area) against CIMNAS's scalar optimum,
and hypervolume against pymoo's NSGA-II at equal evaluations, median of the seeds.

Per seed: our NSGA-II as a ``pipeline.run`` (``--algorithm=nsga2``; its Pareto archive handed on as
the finalists and verified by the analytic model), pymoo's NSGA-II (integer sampling, SBX + PM with
rounding as CIMNAS configures its GA, duplicates eliminated) on the same jitted fitness and
constraints for the same number of generations × population, and the GA on CIMNAS's scalar
objective EDAP / accuracy (a ``pipeline.run``), whose best design is plotted on the fronts.
Hypervolume: exact (``search.hv_exact``) in a common normalised space: error = 1 − surrogate
accuracy as is, energy/latency/area/EDAP as log10; each objective scaled to [0, 1] between the
best and worst values any of the fronts reach (all seeds, both algorithms), reference point 1.1.
pymoo's front is the non-dominated set of everything it evaluated (at least as good as its final
population's front), so the comparison does not favour ours.
"""
from __future__ import annotations

import time

import numpy as np

from cimnas_jax.paper import common as C
from cimnas_jax.paper.plotting import plain_log_ticks
from cimnas_jax.report.tables import fmt, markdown_table

SETS = (("accuracy_edap", ("error", "edap"), "accuracy–EDAP"),
        ("energy,latency,area", ("energy", "latency", "area"), "energy–latency–area"))
SETTINGS = {
    "tiny": dict(population=16, generations=3, seeds=2, archive=16, test_images=None, measure_points=0),
    "small": dict(population=128, generations=40, seeds=5, archive=128, test_images=500, measure_points=4),
    # pymoo's front is every non-dominated feasible point it evaluated (uncapped); ours is the NSGA-II's
    # archive, which drops the most crowded points beyond its capacity: at full settings the capacity is
    # above any front seen (~400 points for energy-latency-area at 256 x 100), so neither front is cut
    "full": dict(population=256, generations=100, seeds=5, archive=1024, test_images=2000, measure_points=8),
}


def _terms(rows, names):
    """Objective matrix [n, M] of verified rows (error from the surrogate's predicted accuracy)."""
    out = []
    for r in rows:
        v = dict(error=1.0 - r["predicted_accuracy"], energy=r["energy_j"], latency=r["latency_s"],
                 area=r["area_mm2"], edap=r["edap_j_s_mm2"], edp=r["energy_j"] * r["latency_s"])
        out.append([v[n] for n in names])
    return np.asarray(out, np.float64).reshape(-1, len(names))


def nondominated(F):
    """Boolean mask of the rows of F [n, M] no other row dominates (minimisation); of rows with equal
    objectives only the first is kept."""
    F = np.asarray(F, np.float64)
    keep = np.ones(len(F), bool)
    for i in range(len(F)):
        dom = np.all(F <= F[i], 1) & np.any(F < F[i], 1)
        same = np.all(F[:i] == F[i], 1)
        if dom.any() or same.any():
            keep[i] = False
    return keep


def _transform(F, names):
    F = np.asarray(F, np.float64).copy()
    for j, n in enumerate(names):
        if n != "error":
            F[:, j] = np.log10(F[:, j])
    return F


def pymoo_nsga2(space, fitness, objective, pop, n_gen, seed):
    """pymoo NSGA-II on the jitted fitness + objective. Returns (F of its non-dominated feasible
    evaluated designs [n, M], genomes, evaluations, seconds)."""
    import jax
    import jax.numpy as jnp
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    ev = jax.jit(lambda g: objective(fitness(g)))
    seen_F, seen_X = [], []
    m = objective.n_objectives

    class P(Problem):
        def __init__(self):
            super().__init__(n_var=space.n_genes, n_obj=m, n_ieq_constr=1, xl=0,
                             xu=np.asarray(space.n_choices) - 1, vtype=int)

        def _evaluate(self, X, out, *args, **kwargs):
            n = len(X)
            Xi = np.round(X).astype(np.int32)
            Xp = np.zeros((max(pop, n), space.n_genes), np.int32)
            Xp[:n] = Xi
            F, v = jax.device_get(ev(jnp.asarray(Xp)))
            F, v = np.asarray(F[:n], np.float64), np.asarray(v[:n], np.float64)
            bad = ~np.all(np.isfinite(F), 1) | ~np.isfinite(v)
            ok = ~bad & (v <= 0)
            seen_F.append(F[ok])
            seen_X.append(Xi[ok])
            out["F"] = np.where(bad[:, None], 1e30, F)
            out["G"] = np.where(bad, 1e30, v)[:, None]

    algo = NSGA2(pop_size=pop, sampling=IntegerRandomSampling(),
                 crossover=SBX(prob=0.95, eta=3, vtype=float, repair=RoundingRepair()),
                 mutation=PM(prob=0.95, eta=3, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True)
    prob = P()
    prob.evaluate(np.zeros((pop, space.n_genes)))       # compile outside the timing
    seen_F.clear()
    seen_X.clear()
    t0 = time.perf_counter()
    res = minimize(prob, algo, ("n_gen", n_gen), seed=seed + 1, verbose=False)
    seconds = time.perf_counter() - t0
    F = np.concatenate(seen_F) if seen_F else np.zeros((0, m))
    X = np.concatenate(seen_X) if seen_X else np.zeros((0, space.n_genes), np.int32)
    keep = nondominated(F) if len(F) else np.zeros(0, bool)
    return F[keep], X[keep], int(res.algorithm.evaluator.n_eval), seconds


def run(ctx):
    from cimnas_jax.pipeline import RunConfig, fitness_for
    from cimnas_jax.pipeline.objective import build_objective
    from cimnas_jax.search import hv_exact
    from cimnas_jax.space import get_space
    space = get_space("mbv2_rram")
    s = ctx.settings
    base = RunConfig(space="mbv2_rram", population=s["population"], generations=s["generations"],
                     chunk=s["generations"], finalists=1, verify_hw="analytic", measure_accuracy=False,
                     finetune_steps=0, stages="search,refine,verify", archive_size=s["archive"])
    try:
        import pymoo  # noqa: F401
        have_pymoo = True
    except ImportError:
        have_pymoo = False
    ga = {seed: C.run_pipeline(ctx, f"ga_s{seed}", base.replace(seed=seed)) for seed in ctx.seeds}
    base_row = ga[ctx.seeds[0]].row("baseline")
    out = dict(sets={}, pymoo=have_pymoo, ga=[dict(seed=sd, **{k: g.best[k] for k in (
        "energy_j", "latency_s", "area_mm2", "edap_j_s_mm2", "predicted_accuracy")}) for sd, g in ga.items() if g.best],
        baseline={k: base_row[k] for k in ("energy_j", "latency_s", "area_mm2", "edap_j_s_mm2", "predicted_accuracy")})
    for obj, names, label in SETS:
        cfg = base.replace(algorithm="nsga2", objective=obj, finalists=s["archive"], finalist_rule="distinct_designs")
        fitness, objective = fitness_for(cfg, space), build_objective(cfg)
        per = []
        for seed in ctx.seeds:
            sub = C.run_pipeline(ctx, f"nsga2_{obj.replace(',', '_')}_s{seed}", cfg.replace(seed=seed))
            rows = [r for r in sub.verification.rows if r["origin"] != "reference" and r["valid"]]
            F = _terms(rows, names)
            keep = nondominated(F) if len(F) else np.zeros(0, bool)
            entry = dict(seed=seed, ours_F=F[keep].tolist(), ours_genomes=[rows[i]["genome"] for i in np.flatnonzero(keep)],
                         ours_evaluations=sub.search.evaluations, ours_seconds=sub.search.seconds)
            if have_pymoo:
                pF, pX, pev, psec = pymoo_nsga2(space, fitness, objective, s["population"], s["generations"], seed)
                entry.update(pymoo_F=pF.tolist(), pymoo_evaluations=pev, pymoo_seconds=psec)
                ctx.log(f"  pymoo NSGA-II {obj} seed {seed}: {len(pF)} front designs, {pev} evaluations, {psec:.1f} s")
            per.append(entry)
        # common normalisation and hypervolume
        allF = [np.asarray(e["ours_F"]).reshape(-1, len(names)) for e in per]
        if have_pymoo:
            allF += [np.asarray(e["pymoo_F"]).reshape(-1, len(names)) for e in per]
        gaF = _terms([g.best for g in ga.values() if g.best], names)
        T = np.concatenate([_transform(f, names) for f in allF if len(f)])
        ideal, nadir = T.min(0), T.max(0)
        span = np.where(nadir > ideal, nadir - ideal, 1.0)
        norm = lambda F: (_transform(np.asarray(F).reshape(-1, len(names)), names) - ideal) / span
        ref = np.full(len(names), 1.1)
        for e in per:
            e["ours_hv"] = hv_exact(norm(e["ours_F"]), ref) if e["ours_F"] else 0.0
            if have_pymoo:
                e["pymoo_hv"] = hv_exact(norm(e["pymoo_F"]), ref) if e["pymoo_F"] else 0.0
        hv_o = C.spread([e["ours_hv"] for e in per])
        summ = dict(label=label, terms=list(names), seeds=per, ours_hv=hv_o, ideal=ideal.tolist(), nadir=nadir.tolist(),
                    front_size=C.spread([len(e["ours_F"]) for e in per]),
                    ours_seconds=C.spread([e["ours_seconds"] for e in per]))
        if have_pymoo:
            hv_p = C.spread([e["pymoo_hv"] for e in per])
            summ.update(pymoo_hv=hv_p, hv_ratio_median=C.ratio(hv_o["median"], hv_p["median"]),
                        wins=sum(e["ours_hv"] > e["pymoo_hv"] for e in per),
                        ties=sum(e["ours_hv"] == e["pymoo_hv"] for e in per),
                        losses=sum(e["ours_hv"] < e["pymoo_hv"] for e in per),
                        pymoo_front_size=C.spread([len(e["pymoo_F"]) for e in per]),
                        pymoo_seconds=C.spread([e["pymoo_seconds"] for e in per]),
                        pymoo_evaluations=C.spread([e["pymoo_evaluations"] for e in per]))
        # the GA's scalar optimum against our front of the same seed
        ga_vs = []
        for e, (sd, g) in zip(per, ga.items()):
            if not g.best or not e["ours_F"]:
                continue
            gf = _terms([g.best], names)[0]
            Fo = np.asarray(e["ours_F"])
            dominated = bool(np.any(np.all(Fo <= gf, 1) & np.any(Fo < gf, 1)))
            d = dict(seed=sd, ga_point=gf.tolist(), dominated_by_front=dominated)
            if names == ("error", "edap"):
                best_front = float(np.min(Fo[:, 1] / (1 - Fo[:, 0])))
                d.update(ga_edap_per_accuracy=float(gf[1] / (1 - gf[0])), front_best_edap_per_accuracy=best_front)
            ga_vs.append(d)
        summ["ga_vs_front"] = ga_vs
        summ["ga_points"] = gaF.tolist()
        out["sets"][obj] = summ
    # measured accuracy for a few points of the median-hypervolume seed's accuracy–EDAP front
    out["accuracy_note"] = "not measured (--tiny)"
    acc = out["sets"]["accuracy_edap"]
    mi = C.median_index([e["ours_hv"] for e in acc["seeds"]])
    acc["median_seed"] = acc["seeds"][mi]["seed"]
    if s["test_images"] is not None and s["measure_points"]:
        e = acc["seeds"][mi]
        order = np.argsort(np.asarray(e["ours_F"])[:, 1])
        pick = np.unique(np.round(np.linspace(0, len(order) - 1, min(s["measure_points"], len(order)))).astype(int))
        named = [("baseline", [int(x) for x in space.reference_genome()], "reference")] + [
            (f"front_{j + 1}", e["ours_genomes"][order[p]], "search") for j, p in enumerate(pick)]
        if ga[e["seed"]].best:
            named.append(("ga_optimum", ga[e["seed"]].best["genome"], "search"))
        v = C.verify_set(ctx, "accuracy", base.replace(measure_accuracy=True, test_images=s["test_images"]), named)
        out["accuracy_note"] = v.verification.accuracy_note
        out["measured"] = [dict(design=r["design"], edap_j_s_mm2=r["edap_j_s_mm2"], predicted_accuracy=r["predicted_accuracy"],
                                measured_accuracy=r.get("measured_accuracy"), accuracy_ci95=r.get("accuracy_ci95"))
                           for r in v.verification.rows]
    out["hardware_ground_truth"] = "analytic CIM model (calibrated to CiMLoop); accuracy: surrogate (the search's)"
    return out


def table(ctx, res, truth):
    s = ctx.settings
    lines = ["## NSGA-II fronts against pymoo's NSGA-II and CIMNAS's scalar optimum (mbv2_rram)", "",
             f"Hardware: {truth}. Each algorithm: population {s['population']} × {s['generations']} generations per "
             "seed; constraints: weights fit, area ≤ 800 mm². Hypervolume: exact, normalised (error linear, hardware "
             "terms log10, scaled between the best and worst values of all fronts; reference 1.1 per objective; "
             "higher is better). Cells: median [min, max] over seeds. Fronts: ours = the NSGA-II's Pareto archive "
             f"(capacity {s['archive']} points; beyond it the most crowded are dropped), pymoo's = every "
             "non-dominated feasible point it evaluated.", ""]
    rows = []
    for obj, sm in res["sets"].items():
        rows.append([sm["label"], C.fmt_spread(sm["ours_hv"], ".4f"), C.fmt_spread(sm.get("pymoo_hv"), ".4f"),
                     fmt(sm.get("hv_ratio_median"), ".3f"),
                     f"{sm['wins']}/{sm['ties']}/{sm['losses']}" if "wins" in sm else "n/a",
                     C.fmt_spread(sm["front_size"], ".0f"), C.fmt_spread(sm.get("pymoo_front_size"), ".0f"),
                     C.fmt_spread(sm["ours_seconds"], ".1f"), C.fmt_spread(sm.get("pymoo_seconds"), ".1f"),
                     C.fmt_spread(sm.get("pymoo_evaluations"), ".0f")])
    lines += markdown_table(["front", "hypervolume ours", "hypervolume pymoo", "ratio of medians",
                             "ours wins/ties/losses", "front size ours", "front size pymoo", "ours [s]",
                             "pymoo [s]", "pymoo evaluations"], rows)
    if not res["pymoo"]:
        lines += ["", "pymoo is not installed here: the hypervolume comparison was not run (pip install pymoo)."]
    lines += ["", f"Our evaluations per run: {s['population'] * s['generations']} (generations × population); ours [s] "
              "includes compilation (mostly a cache hit after the first run); pymoo [s] excludes it.", "",
              "## CIMNAS's scalar optimum (GA on EDAP / accuracy) against our NSGA-II front of the same seed", ""]
    rows = []
    for obj, sm in res["sets"].items():
        for d in sm["ga_vs_front"]:
            rows.append([sm["label"], d["seed"], "yes" if d["dominated_by_front"] else "no",
                         fmt(d.get("ga_edap_per_accuracy")), fmt(d.get("front_best_edap_per_accuracy"))])
    lines += markdown_table(["front", "seed", "GA optimum dominated by the front", "GA: EDAP/accuracy",
                             "front's best EDAP/accuracy"], rows)
    if res.get("measured"):
        lines += ["", f"## Measured accuracy of points on the accuracy–EDAP front (seed {res['sets']['accuracy_edap']['median_seed']})",
                  "", res["accuracy_note"] + ".", ""]
        lines += markdown_table(["design", "EDAP [J·s·mm²]", "accuracy surrogate", "accuracy measured [95 % CI]"],
                                [[m["design"], fmt(m["edap_j_s_mm2"]), fmt(m["predicted_accuracy"], ".4f"),
                                  f"{m['measured_accuracy']:.4f} [{m['accuracy_ci95'][0]:.4f}, {m['accuracy_ci95'][1]:.4f}]"
                                  if m.get("measured_accuracy") is not None else "n/a"] for m in res["measured"]])
    return lines


def figures(ctx, res, truth):
    from cimnas_jax.report.plots import _plt, save
    plt = _plt()
    files = []
    acc = res["sets"]["accuracy_edap"]
    e = next(x for x in acc["seeds"] if x["seed"] == acc["median_seed"])
    fig, ax = plt.subplots(figsize=(7.4, 5.8))
    Fo = np.asarray(e["ours_F"]).reshape(-1, 2)
    o = np.argsort(Fo[:, 1])
    ax.step(Fo[o, 1], 100 * (1 - Fo[o, 0]), where="post", color="tab:blue", lw=1, alpha=0.6)
    ax.scatter(Fo[:, 1], 100 * (1 - Fo[:, 0]), s=14, color="tab:blue", label=f"ours NSGA-II front (seed {e['seed']})")
    if e.get("pymoo_F"):
        Fp = np.asarray(e["pymoo_F"]).reshape(-1, 2)
        ax.scatter(Fp[:, 1], 100 * (1 - Fp[:, 0]), s=14, marker="^", color="tab:green", alpha=0.7,
                   label=f"pymoo NSGA-II front (seed {e['seed']})")
    G = np.asarray(acc["ga_points"]).reshape(-1, 2)
    ax.scatter(G[:, 1], 100 * (1 - G[:, 0]), marker="X", s=70, color="tab:purple", edgecolor="k",
               label=f"GA optimum, EDAP/accuracy ({len(G)} seeds)", zorder=4)
    b = res["baseline"]
    ax.scatter([b["edap_j_s_mm2"]], [100 * b["predicted_accuracy"]], marker="*", s=300, color="tab:red",
               edgecolor="k", label="CIMNAS baseline design", zorder=4)
    for m in res.get("measured") or []:
        if m.get("measured_accuracy") is None:
            continue
        lo, hi = m["accuracy_ci95"]
        ax.errorbar(m["edap_j_s_mm2"], 100 * m["measured_accuracy"],
                    yerr=[[100 * (m["measured_accuracy"] - lo)], [100 * (hi - m["measured_accuracy"])]], fmt="s",
                    color="tab:orange", ms=4, capsize=2, label="measured (95 % CI)" if m is res["measured"][0] else None)
    ax.set_xscale("log")
    ax.set_xlabel(f"EDAP [J·s·mm²]  ({truth.split(';')[0]})")
    ax.set_ylabel("accuracy [%] (surrogate, Fashion-MNIST)")
    ax.set_title("mbv2_rram: accuracy–EDAP fronts at equal evaluations", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)
    save(fig, ctx.path("front_accuracy_edap.png"))
    files.append("front_accuracy_edap.png")

    ela = res["sets"]["energy,latency,area"]
    e = next(x for x in ela["seeds"] if x["seed"] == acc["median_seed"])
    fig, ax = plt.subplots(figsize=(7.4, 5.8))
    Fo = np.asarray(e["ours_F"]).reshape(-1, 3)
    allA = [Fo[:, 2]] + ([np.asarray(e["pymoo_F"]).reshape(-1, 3)[:, 2]] if e.get("pymoo_F") else [])
    vmin, vmax = np.log10(min(a.min() for a in allA if len(a))), np.log10(max(a.max() for a in allA if len(a)))
    sc = ax.scatter(Fo[:, 0], Fo[:, 1], c=np.log10(Fo[:, 2]), s=18, cmap="viridis", vmin=vmin, vmax=vmax,
                    label=f"ours NSGA-II front (seed {e['seed']})")
    if e.get("pymoo_F"):
        Fp = np.asarray(e["pymoo_F"]).reshape(-1, 3)
        ax.scatter(Fp[:, 0], Fp[:, 1], c=np.log10(Fp[:, 2]), s=30, marker="^", cmap="viridis", vmin=vmin, vmax=vmax,
                   edgecolor="0.3", linewidths=0.5, label=f"pymoo NSGA-II front (seed {e['seed']})")
    G = np.asarray(ela["ga_points"]).reshape(-1, 3)
    ax.scatter(G[:, 0], G[:, 1], marker="X", s=70, color="tab:purple", edgecolor="k",
               label=f"GA optimum, EDAP/accuracy ({len(G)} seeds)", zorder=4)
    ax.scatter([b["energy_j"]], [b["latency_s"]], marker="*", s=300, color="tab:red", edgecolor="k",
               label="CIMNAS baseline design", zorder=4)
    fig.colorbar(sc, label="log10 area [mm²]")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"energy per inference [J]  ({truth.split(';')[0]})")
    ax.set_ylabel("latency per inference [s]")
    from matplotlib.ticker import NullFormatter
    ax.xaxis.set_minor_formatter(NullFormatter())       # labelled minor ticks overprint over > 1 decade
    ax.set_title("mbv2_rram: energy–latency–area fronts (colour: area)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    save(fig, ctx.path("front_energy_latency_area.png"))
    files.append("front_energy_latency_area.png")

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.8))
    for ax, (obj, sm) in zip(axes, res["sets"].items()):
        seeds = [x["seed"] for x in sm["seeds"]]
        ax.plot(seeds, [x["ours_hv"] for x in sm["seeds"]], "o-", label="ours NSGA-II")
        if res["pymoo"]:
            ax.plot(seeds, [x["pymoo_hv"] for x in sm["seeds"]], "^-", label="pymoo NSGA-II")
        ax.set_xlabel("seed")
        ax.set_ylabel("hypervolume (normalised; higher is better)")
        ax.set_title(f"{sm['label']} front", fontsize=9)
        ax.set_xticks(seeds)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"mbv2_rram: hypervolume per seed at equal evaluations ({s_eval(ctx)})", fontsize=9)
    save(fig, ctx.path("hypervolume.png"))
    files.append("hypervolume.png")
    return files


def s_eval(ctx):
    s = ctx.settings
    return f"{s['population']} × {s['generations']} = {s['population'] * s['generations']} evaluations"
