"""priority: CIMNAS's priority-based objective (CIMNAS Fig. 4) under several coefficient settings,
and how the chosen design shifts.

    objective = prod_k ( (x_k - lo_k) / (hi_k - lo_k) + 1e-3 ) ** c_k      (terms energy, latency, area, error)

with fixed bounds lo_k = 0 and hi_k = the CIMNAS baseline design's value of the term (so every
normalised term reads "fraction of the baseline's", nothing a search finds clips at the floor, and
the coefficients weigh the terms' relative changes). One GA ``pipeline.run`` per setting and seed
(``--objective=priority --coefficients=... --bounds=...``); each run's best verified design (analytic
model), median and range over seeds; measured accuracy of each setting's median-seed design.
"""
from __future__ import annotations

from cimnas_jax.paper import common as C
from cimnas_jax.paper.plotting import plain_log_ticks
from cimnas_jax.report.tables import fmt, markdown_table

SETTINGS_COEFFICIENTS = (
    ("balanced", dict(energy=1, latency=1, area=1, error=1)),
    ("energy ×4", dict(energy=4, latency=1, area=1, error=1)),
    ("latency ×4", dict(energy=1, latency=4, area=1, error=1)),
    ("area ×4", dict(energy=1, latency=1, area=4, error=1)),
    ("accuracy ×8", dict(energy=1, latency=1, area=1, error=8)),
    ("hardware only", dict(energy=1, latency=1, area=1)),
)
SETTINGS = {
    "tiny": dict(population=16, generations=3, seeds=2, test_images=None, settings=("balanced", "accuracy ×8")),
    "small": dict(population=128, generations=40, seeds=5, test_images=1000),
    "full": dict(population=256, generations=60, seeds=5, test_images=0),
}
METRICS = ("energy_j", "latency_s", "area_mm2", "edap_j_s_mm2", "predicted_accuracy")
TERM_KEY = dict(energy="energy_j", latency="latency_s", area="area_mm2")


def _tag(name):
    return name.replace(" ", "_").replace("×", "x")


def run(ctx):
    from cimnas_jax.pipeline import RunConfig, hardware_truth
    from cimnas_jax.pipeline import fitness_for
    from cimnas_jax.space import get_space
    import jax
    import jax.numpy as jnp
    space = get_space("mbv2_rram")
    s = ctx.settings
    base = RunConfig(space="mbv2_rram", population=s["population"], generations=s["generations"],
                     chunk=s["generations"], finalists=1, verify_hw="analytic", measure_accuracy=False,
                     finetune_steps=0, stages="search,refine,verify")
    ref = space.reference_genome()
    m = jax.device_get(jax.jit(fitness_for(base, space))(jnp.asarray(ref[None])))
    hi = dict(energy=float(m["energy_j"][0]), latency=float(m["latency_s"][0]), area=float(m["area_mm2"][0]),
              error=1.0 - float(m["accuracy"][0]))
    out = {}
    for name, coefs in SETTINGS_COEFFICIENTS:
        if name not in s.get("settings", [n for n, _ in SETTINGS_COEFFICIENTS]):
            continue
        cstr = ",".join(f"{k}={v:g}" for k, v in coefs.items())
        bstr = ",".join(f"{k}=0:{hi[k]:.9g}" for k in coefs)
        best = []
        for seed in ctx.seeds:
            sub = C.run_pipeline(ctx, f"{_tag(name)}_s{seed}", base.replace(seed=seed, objective="priority",
                                                                         coefficients=cstr, bounds=bstr))
            best.append(sub.best)
        mi = C.median_index([b["edap_j_s_mm2"] if b else None for b in best])
        e = dict(coefficients=coefs, coefficients_flag=cstr, bounds_flag=bstr,
                 seeds=[dict({k: b[k] for k in METRICS}, seed=sd, genome=b["genome"],
                             edap_reduction_vs_baseline_x=b["edap_reduction_vs_baseline_x"]) if b
                        else dict(seed=sd, feasible=False) for sd, b in zip(ctx.seeds, best)])
        e["spread"] = {k: C.spread([b[k] if b else None for b in best]) for k in METRICS + ("edap_reduction_vs_baseline_x",)}
        for k in ("energy_j", "latency_s", "area_mm2", "edap_j_s_mm2"):
            e["spread"][f"{k}_vs_baseline_x"] = C.spread([b[k] / _base(hi, k) if b else None for b in best])
        if mi is not None:
            e["median_seed"] = ctx.seeds[mi]
            e["median_design"] = dict(C.design_summary(space, best[mi]["genome"]), genome=best[mi]["genome"],
                                      stats=C.network_stats(space, best[mi]["genome"]))
        out[name] = e
    acc_note = "not measured (--tiny)"
    base_acc = None
    if s["test_images"] is not None:
        named = [("baseline", [int(x) for x in ref], "reference")] + [
            (n, e["median_design"]["genome"], "search") for n, e in out.items() if e.get("median_design")]
        v = C.verify_set(ctx, "accuracy", base.replace(measure_accuracy=True, test_images=s["test_images"]), named)
        acc_note = v.verification.accuracy_note
        for r in v.verification.rows:
            if r["design"] in out:
                out[r["design"]]["median_design"].update(measured_accuracy=r.get("measured_accuracy"),
                                                         accuracy_ci95=r.get("accuracy_ci95"), **C.vs_fields(r))
            else:
                base_acc = dict(measured_accuracy=r.get("measured_accuracy"), accuracy_ci95=r.get("accuracy_ci95"))
    return dict(settings=out, bounds_hi=hi, baseline_accuracy=base_acc, accuracy_note=acc_note,
                baseline_predicted_accuracy=float(m["accuracy"][0]),
                hardware_ground_truth="analytic CIM model (calibrated to CiMLoop)")


def _base(hi, k):
    if k == "edap_j_s_mm2":
        return hi["energy"] * hi["latency"] * hi["area"]
    return hi[{v: t for t, v in TERM_KEY.items()}[k]]


def table(ctx, res, truth):
    hi = res["bounds_hi"]
    lines = ["## Priority-based objective: the chosen design under each coefficient setting (mbv2_rram)", "",
             f"Hardware: {truth}. Objective ∏ₖ ((xₖ − 0) / hiₖ + 10⁻³)^cₖ with hiₖ = the CIMNAS baseline design's "
             f"value (energy {hi['energy']:.4e} J, latency {hi['latency']:.4e} s, area {hi['area']:.2f} mm², error "
             f"{hi['error']:.4f} = 1 − surrogate accuracy). GA population {ctx.settings['population']} × "
             f"{ctx.settings['generations']} generations per setting and seed. Metrics: the found design / the "
             "baseline's (×), median [min, max] over seeds.", ""]
    rows = []
    for n, e in res["settings"].items():
        sp = e["spread"]
        md = e.get("median_design") or {}
        acc = md.get("measured_accuracy")
        ci = md.get("accuracy_ci95")
        rows.append([n, e["coefficients_flag"], C.fmt_spread(sp["energy_j_vs_baseline_x"], ".3f"),
                     C.fmt_spread(sp["latency_s_vs_baseline_x"], ".3f"), C.fmt_spread(sp["area_mm2_vs_baseline_x"], ".3f"),
                     C.fmt_spread(sp["edap_j_s_mm2_vs_baseline_x"], ".4f"), C.fmt_spread(sp["predicted_accuracy"], ".4f"),
                     (f"{acc:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" + C.vs_suffix(md)) if acc is not None and ci else "n/a"])
    ba = res.get("baseline_accuracy") or {}
    lines += markdown_table(["setting", "--coefficients", "energy [× baseline]", "latency [× baseline]",
                             "area [× baseline]", "EDAP [× baseline]", "accuracy surrogate",
                             "accuracy measured, median seed [95 % CI] (vs baseline, same images)"], rows)
    lines += ["", f"Baseline accuracy: surrogate {res['baseline_predicted_accuracy']:.4f}"
              + (f", measured {ba['measured_accuracy']:.4f}" if ba.get("measured_accuracy") is not None else "")
              + ". Measured accuracy: " + res["accuracy_note"] + ".", "", "## The chosen chips and networks (median seed)", ""]
    des = [(n, e["median_design"]) for n, e in res["settings"].items() if e.get("median_design")]
    if des:
        hw = list(des[0][1]["hardware"])
        from cimnas_jax.paper.top_designs import _stats_cell
        lines += markdown_table(["setting"] + hw + ["network (means over active blocks)"],
                                [[n] + [f"{d['hardware'][k]:g}" for k in hw] + [_stats_cell(d["stats"])] for n, d in des])
    return lines


def figures(ctx, res, truth):
    import numpy as np
    from cimnas_jax.report.plots import _plt, save
    plt = _plt()
    names = list(res["settings"])
    keys = [("energy_j_vs_baseline_x", "energy"), ("latency_s_vs_baseline_x", "latency"), ("area_mm2_vs_baseline_x", "area"),
            ("edap_j_s_mm2_vs_baseline_x", "EDAP")]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5.6), gridspec_kw=dict(width_ratios=[3, 1.3]))
    w = 0.8 / len(keys)
    for j, (k, lab) in enumerate(keys):
        med = [res["settings"][n]["spread"][k]["median"] or np.nan for n in names]
        lo = [res["settings"][n]["spread"][k]["min"] or np.nan for n in names]
        hi = [res["settings"][n]["spread"][k]["max"] or np.nan for n in names]
        x = np.arange(len(names)) + (j - (len(keys) - 1) / 2) * w
        ax.bar(x, med, w, label=lab)
        ax.errorbar(x, med, yerr=[np.subtract(med, lo), np.subtract(hi, med)], fmt="none", ecolor="k", capsize=2, lw=0.8)
    ax.axhline(1.0, color="tab:red", ls="--", lw=1.2, label="CIMNAS baseline design (1×)")
    ax.set_yscale("log")
    plain_log_ticks(ax, fontsize=8)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("found design / baseline [×]  (median, whiskers: seed range)")
    ax.set_title(f"mbv2_rram: priority objective, the chosen design per coefficient setting\n(hardware: {truth})",
                 fontsize=9)
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    ax.grid(alpha=0.3, axis="y")
    acc = [res["settings"][n]["spread"]["predicted_accuracy"] for n in names]
    ax2.errorbar(np.arange(len(names)), [100 * a["median"] if a["median"] else np.nan for a in acc],
                 yerr=[[100 * (a["median"] - a["min"]) if a["median"] else 0 for a in acc],
                       [100 * (a["max"] - a["median"]) if a["median"] else 0 for a in acc]], fmt="o", capsize=3,
                 label="found (surrogate)")
    meas = [(i, res["settings"][n].get("median_design") or {}) for i, n in enumerate(names)]
    meas = [(i, d) for i, d in meas if d.get("measured_accuracy") is not None and d.get("accuracy_ci95")]
    if meas:
        y = np.array([100 * d["measured_accuracy"] for _, d in meas])
        ax2.errorbar([i + 0.15 for i, _ in meas], y, yerr=[y - [100 * d["accuracy_ci95"][0] for _, d in meas],
                                                          [100 * d["accuracy_ci95"][1] for _, d in meas] - y],
                     fmt="s", color="tab:green", capsize=3, label="found, median seed (measured, 95 % CI)")
    ax2.axhline(100 * res["baseline_predicted_accuracy"], color="tab:red", ls="--", lw=1.2, label="baseline (surrogate)")
    ba = res.get("baseline_accuracy") or {}
    if ba.get("measured_accuracy") is not None:
        ax2.axhline(100 * ba["measured_accuracy"], color="tab:red", ls=":", lw=1.2, label="baseline (measured)")
    ax2.set_xticks(range(len(names)), names, fontsize=7, rotation=30, ha="right")
    ax2.set_ylabel("accuracy [%] (Fashion-MNIST test)")
    ax2.set_title("accuracy of the chosen designs (whiskers: seed range\nfor the surrogate, 95 % CI measured)", fontsize=9)
    ax2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    ax2.grid(alpha=0.3)
    save(fig, ctx.path("priority.png"))
    return ["priority.png"]
