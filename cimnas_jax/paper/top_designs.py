"""top_designs: the best designs under several objectives (CIMNAS Fig. 3), with their parameters
and trade-offs.

One GA ``pipeline.run`` per objective and seed (CIMNAS's constraints: weights fit, area ≤ 800 mm²);
each run's best verified design (analytic model), median and range over seeds; the median-seed
design's hardware and network; its accuracy measured on Fashion-MNIST test images (the verify
stage); and the top designs of the CIMNAS objective (EDAP / accuracy), distinct chips first.
"""
from __future__ import annotations

from cimnas_jax.paper import common as C
from cimnas_jax.report.tables import fmt, markdown_table

OBJECTIVES = (("edap_per_accuracy", "EDAP / accuracy (CIMNAS default)"), ("edap", "EDAP"), ("edp", "EDP"),
              ("energy*latency/accuracy", "EDP / accuracy"), ("energy", "energy"), ("latency", "latency"),
              ("area", "area"))
SETTINGS = {
    "tiny": dict(population=16, generations=3, seeds=2, top_k=3, test_images=None,
                 objectives=("edap_per_accuracy", "energy")),
    "small": dict(population=128, generations=40, seeds=5, top_k=5, test_images=1000),
    "full": dict(population=256, generations=60, seeds=5, top_k=8, test_images=0),
}
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
MARKERS = ("o", "s", "^", "D", "v", "P", "h", "X")
METRICS = ("energy_j", "latency_s", "area_mm2", "edap_j_s_mm2", "tops_per_w", "tops_per_mm2", "predicted_accuracy")


def run(ctx):
    from cimnas_jax.pipeline import RunConfig
    from cimnas_jax.space import get_space
    space = get_space("mbv2_rram")
    s = ctx.settings
    base = RunConfig(space="mbv2_rram", population=s["population"], generations=s["generations"],
                     chunk=s["generations"], finalists=1, verify_hw="analytic", measure_accuracy=False,
                     finetune_steps=0, stages="search,refine,verify")
    out, base_row = {}, None
    for obj, label in OBJECTIVES:
        if obj not in s.get("objectives", [o for o, _ in OBJECTIVES]):
            continue
        rows = []
        for seed in ctx.seeds:
            k = s["top_k"] if obj == "edap_per_accuracy" else 1
            sub = C.run_pipeline(ctx, f"{obj.replace('*', 'x').replace('/', '_per_')}_s{seed}",
                                 base.replace(seed=seed, objective=obj, finalists=k))
            base_row = base_row or sub.row("baseline")
            rows.append(sub)
        best = [r.best for r in rows]
        mi = C.median_index([b["edap_j_s_mm2"] if b else None for b in best])
        entry = dict(label=label, seeds=[dict({m: b[m] for m in METRICS}, seed=sd, genome=b["genome"],
                                              edap_reduction_vs_baseline_x=b["edap_reduction_vs_baseline_x"])
                                         if b else dict(seed=sd, feasible=False) for sd, b in zip(ctx.seeds, best)])
        entry["spread"] = {m: C.spread([b[m] if b else None for b in best]) for m in
                           METRICS + ("edap_reduction_vs_baseline_x",)}
        if mi is not None:
            b = best[mi]
            entry["median_seed"] = ctx.seeds[mi]
            entry["median_design"] = dict(C.design_summary(space, b["genome"]), stats=C.network_stats(space, b["genome"]),
                                          genome=b["genome"], macs=b.get("macs"))
            if obj == "edap_per_accuracy":
                entry["top"] = [dict({m: r[m] for m in METRICS}, design=r["design"],
                                     hardware=C.design_summary(space, r["genome"])["hardware"],
                                     stats=C.network_stats(space, r["genome"]))
                                for r in rows[mi].verification.rows if r["origin"] != "reference" and r["valid"]]
        out[obj] = entry
    acc_note = "not measured (--tiny)"
    if s["test_images"] is not None:
        ref = [int(x) for x in space.reference_genome()]
        named = [("baseline", ref, "reference")] + [(o, e["median_design"]["genome"], "search")
                                                    for o, e in out.items() if e.get("median_design")]
        v = C.verify_set(ctx, "accuracy", base.replace(measure_accuracy=True, test_images=s["test_images"]), named)
        acc_note = v.verification.accuracy_note
        for r in v.verification.rows:
            if r["design"] in out:
                out[r["design"]]["median_design"].update(measured_accuracy=r.get("measured_accuracy"),
                                                         accuracy_ci95=r.get("accuracy_ci95"), **C.vs_fields(r))
            elif r["design"] == "baseline":
                base_row = dict(base_row, measured_accuracy=r.get("measured_accuracy"), accuracy_ci95=r.get("accuracy_ci95"))
    b = {m: base_row.get(m) for m in METRICS}
    b.update(measured_accuracy=base_row.get("measured_accuracy"), accuracy_ci95=base_row.get("accuracy_ci95"),
             design=C.design_summary(space, base_row["genome"]), stats=C.network_stats(space, base_row["genome"]))
    return dict(objectives=out, baseline=b, accuracy_note=acc_note,
                hardware_ground_truth="analytic CIM model (calibrated to CiMLoop)")


def _stats_cell(st):
    keys = [("active_blocks", "blocks", "d"), ("mean_kernel", "k̄", ".2f"), ("mean_mid_channels", "mid̄", ".0f"),
            ("mean_pw_w_bits", "pw w̄", ".1f"), ("mean_pw_a_bits", "pw ā", ".1f"), ("mean_dw_w_bits", "dw w̄", ".1f"),
            ("mean_dw_a_bits", "dw ā", ".1f")]
    return ", ".join(f"{lab} {format(st[k], f)}" for k, lab, f in keys if k in st)


def table(ctx, res, truth):
    s = ctx.settings
    b = res["baseline"]
    lines = ["## Best design under each objective (mbv2_rram)", "",
             f"Hardware: {truth}; GA population {s['population']} × {s['generations']} generations per objective and "
             "seed; accuracy of the search: the Fashion-MNIST surrogate. Cells: median [min, max] over seeds. Measured "
             "accuracy: the median-seed design, " + res["accuracy_note"] + ".", ""]
    hdr = ["objective", "energy [J]", "latency [s]", "area [mm²]", "EDAP [J·s·mm²]", "EDAP reduction [×]",
           "TOPS/W", "TOPS/mm²", "accuracy surrogate", "accuracy measured [95 % CI] (vs baseline, same images)"]
    rows = [["CIMNAS baseline design", fmt(b["energy_j"]), fmt(b["latency_s"]), fmt(b["area_mm2"], ".1f"),
             fmt(b["edap_j_s_mm2"]), "1", fmt(b["tops_per_w"], ".3f"), fmt(b["tops_per_mm2"], ".4f"),
             fmt(b["predicted_accuracy"], ".4f"), _acc(b)]]
    for o, e in res["objectives"].items():
        sp = e["spread"]
        rows.append([e["label"], C.fmt_spread(sp["energy_j"]), C.fmt_spread(sp["latency_s"]),
                     C.fmt_spread(sp["area_mm2"], ".1f"), C.fmt_spread(sp["edap_j_s_mm2"]),
                     C.fmt_spread(sp["edap_reduction_vs_baseline_x"], ".1f"), C.fmt_spread(sp["tops_per_w"], ".3f"),
                     C.fmt_spread(sp["tops_per_mm2"], ".4f"), C.fmt_spread(sp["predicted_accuracy"], ".4f"),
                     _acc(e.get("median_design") or {})])
    lines += markdown_table(hdr, rows)
    lines += ["", "## Their parameters (median-seed design of each objective)", ""]
    des = [("CIMNAS baseline design", b["design"], b["stats"])] + [
        (e["label"], e["median_design"], e["median_design"]["stats"]) for e in res["objectives"].values()
        if e.get("median_design")]
    hw = list(des[0][1]["hardware"])
    lines += markdown_table(["objective"] + hw + ["network (means over active blocks)"],
                            [[n] + [f"{d['hardware'][k]:g}" for k in hw] + [_stats_cell(st)] for n, d, st in des])
    top = res["objectives"]["edap_per_accuracy"].get("top") or []
    if top:
        import json
        chips = len({json.dumps(t["hardware"], sort_keys=True) for t in top})
        lines += ["", f"## Top {len(top)} designs under EDAP / accuracy (median seed): {chips} distinct chip"
                  f"{'s' if chips != 1 else ''}", "",
                  "The final population's best design per chip first; where it holds fewer chips than asked for "
                  "(a converged GA), the next designs whose energy, latency, area or accuracy differ by > 0.1 % "
                  "from every one above.", ""]
        lines += markdown_table(["design", "EDAP [J·s·mm²]", "energy [J]", "latency [s]", "area [mm²]",
                                 "accuracy surrogate"] + hw + ["network"],
                                [[t["design"], fmt(t["edap_j_s_mm2"]), fmt(t["energy_j"]), fmt(t["latency_s"]),
                                  fmt(t["area_mm2"], ".1f"), fmt(t["predicted_accuracy"], ".4f")]
                                 + [f"{t['hardware'][k]:g}" for k in hw] + [_stats_cell(t["stats"])] for t in top])
    return lines


def _acc(d):
    a = d.get("measured_accuracy")
    if a is None:
        return "n/a"
    ci = d.get("accuracy_ci95")
    return (f"{a:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{a:.4f}") + C.vs_suffix(d)


def figures(ctx, res, truth):
    from cimnas_jax.report.plots import _plt, save
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12.5, 5.6))
    b = res["baseline"]
    areas = [d["area_mm2"] for e in res["objectives"].values() for d in e["seeds"] if d.get("area_mm2")]
    amax = max(areas + [b["area_mm2"]])
    for i, (o, e) in enumerate(res["objectives"].items()):
        pts = [d for d in e["seeds"] if d.get("energy_j")]
        c, mk = COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)]
        ax1.scatter([d["energy_j"] for d in pts], [d["latency_s"] for d in pts], marker=mk,
                    s=[20 + 200 * d["area_mm2"] / amax for d in pts], color=c, alpha=0.7, label=e["label"])
        ax2.scatter([d["edap_j_s_mm2"] for d in pts], [100 * d["predicted_accuracy"] for d in pts], marker=mk, s=36,
                    color=c, alpha=0.75)
    ax1.scatter([b["energy_j"]], [b["latency_s"]], marker="*", s=300, color="tab:red", edgecolor="k", zorder=4,
                label="CIMNAS baseline design")
    ax2.scatter([b["edap_j_s_mm2"]], [100 * b["predicted_accuracy"]], marker="*", s=300, color="tab:red",
                edgecolor="k", zorder=4)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel(f"energy per inference [J]  ({truth})")
    ax1.set_ylabel("latency per inference [s]")
    ax1.set_title("best design per objective and seed; marker area ∝ chip area", fontsize=9)
    ax2.set_xscale("log")
    ax2.set_xlabel("EDAP [J·s·mm²]")
    ax2.set_ylabel("accuracy [%] (surrogate, Fashion-MNIST)")
    ax2.set_title("EDAP against accuracy of the same designs", fontsize=9)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    h, lab = ax1.get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=4, fontsize=8, frameon=False, markerscale=0.8)
    fig.suptitle("mbv2_rram: the best design of each objective (one marker per seed; identical designs overprint)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 0.96))
    save(fig, ctx.path("tradeoffs.png"), tight=False)
    return ["tradeoffs.png"]
