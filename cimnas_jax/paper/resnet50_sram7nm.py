"""resnet50_sram7nm: the ResNet50 search on 7 nm SRAM (CIMNAS Fig. 5) against the space's stated
ResNet50 baseline design, beside CIMNAS's "up to 819.5×" EDAP reduction.

Three searches per seed (``pipeline.run``): the joint search (network + quantization + hardware), one
with the baseline network fixed (quantization + hardware: what is gained without touching the network)
and a hardware-only one (the baseline ResNet50 at 8 bits fixed), GA, CIMNAS's constraints; with an
accuracy surrogate also the joint search with its predicted accuracy held at the baseline's
(``--accuracy_floor``), to see whether the measured accuracy then holds. Accuracy during
the search: the space's accuracy surrogate where one ships; none does for ResNet (docs/accuracy.md,
"ResNet supernet": the label noise is as large as the spread between designs), so the search runs
with accuracy_source=constant (the objective becomes EDAP alone). Accuracy of the results: every
seed's best design and the baseline are measured in the verify stage with the space's shipped
elastic ResNet supernet (``space.supernet``) on Fashion-MNIST test images, 95 % Wilson intervals.
"""
from __future__ import annotations

from cimnas_jax.paper import common as C
from cimnas_jax.report.tables import fmt, markdown_table

PUBLISHED_X = 819.5
SETTINGS = {
    "tiny": dict(population=16, generations=3, seeds=2, test_images=100, floor_margin=0.01),
    "small": dict(population=128, generations=40, seeds=5, test_images=1000, floor_margin=0.0),
    "full": dict(population=256, generations=60, seeds=5, test_images=0, floor_margin=0.0),
}
# with an accuracy surrogate: the joint search again, its predicted accuracy held at or above the
# baseline's (minus the scale's floor_margin: the tiny settings' few evaluations need some slack)
FLOOR_VARIANT = ("joint_floor", "", "joint search, predicted accuracy ≥ the baseline's")
VARIANTS = (("joint", "", "joint search: network + quantization + hardware"),
            ("quant_hw", "software", "quantization + hardware, baseline ResNet50 network fixed"),
            ("hw_only", "software,quantization", "hardware only, baseline ResNet50 (8-bit) fixed"))
METRICS = ("energy_j", "latency_s", "area_mm2", "edap_j_s_mm2", "tops_per_w", "tops_per_mm2")


def accuracy_available(space) -> tuple[bool, str]:
    """(True, '') when the space has an accuracy surrogate and a supernet, else (False, why)."""
    from cimnas_jax.surrogate import load_surrogates
    try:
        sur = load_surrogates(space.name)
        has = sur.has_accuracy
    except Exception as e:  # noqa: BLE001 - no shipped set: say why
        return False, f"no surrogate set for {space.name} ({type(e).__name__})"
    if not has:
        return False, f"the shipped surrogate set of {space.name} has no accuracy model"
    if space.supernet is None:
        return False, f"{space.name} has no supernet to measure accuracy with"
    return True, ""


def accuracy_measurable(space) -> tuple[bool, str]:
    """(True, '') when the space ships a supernet to measure accuracy with, else (False, why)."""
    from cimnas_jax.assets import asset_path
    from cimnas_jax.nets.io import MANIFEST_FILE, PARAMS_FILE
    if space.supernet is None:
        return False, f"{space.name} has no supernet to measure accuracy with"
    d = asset_path(space.supernet)
    if not ((d / PARAMS_FILE).is_file() and (d / MANIFEST_FILE).is_file()):
        return False, f"the supernet asset {space.supernet} lacks {PARAMS_FILE} / {MANIFEST_FILE}"
    return True, ""


def run(ctx):
    from cimnas_jax.pipeline import RunConfig
    from cimnas_jax.space import get_space
    space = get_space("resnet50_sram7nm")
    s = ctx.settings
    has_acc, why = accuracy_available(space)
    can_measure, why_not = accuracy_measurable(space)
    acc_src = "surrogate" if has_acc else "constant"
    base = RunConfig(space=space.name, population=s["population"], generations=s["generations"],
                     chunk=s["generations"], finalists=1, verify_hw="analytic", accuracy_source=acc_src,
                     measure_accuracy=False, finetune_steps=0, stages="search,refine,verify")
    out, base_row, floor = {}, None, None
    for name, freeze, label in VARIANTS + ((FLOOR_VARIANT,) if has_acc else ()):
        cfg = base
        if name == FLOOR_VARIANT[0]:
            floor = round(float(base_row["predicted_accuracy"]) - s.get("floor_margin", 0.0), 4)
            cfg = base.replace(accuracy_floor=floor)
            label = f"{label} (floor {floor:.4f})"
        best = []
        for seed in ctx.seeds:
            sub = C.run_pipeline(ctx, f"{name}_s{seed}", cfg.replace(seed=seed, freeze=freeze))
            base_row = base_row or sub.row("baseline")
            best.append(sub.best)
        mi = C.median_index([b["edap_j_s_mm2"] if b else None for b in best])
        e = dict(label=label, seeds=[dict({k: b[k] for k in METRICS}, seed=sd, genome=b["genome"],
                                          predicted_accuracy=b.get("predicted_accuracy"),
                                          edap_reduction_vs_baseline_x=b["edap_reduction_vs_baseline_x"]) if b
                                     else dict(seed=sd, feasible=False) for sd, b in zip(ctx.seeds, best)])
        e["spread"] = {k: C.spread([b[k] if b else None for b in best]) for k in METRICS + (
            "edap_reduction_vs_baseline_x",)}
        e["spread"]["tops_per_w_vs_baseline_x"] = C.spread([C.ratio(b["tops_per_w"], base_row["tops_per_w"]) if b
                                                            else None for b in best])
        e["spread"]["tops_per_mm2_vs_baseline_x"] = C.spread([C.ratio(b["tops_per_mm2"], base_row["tops_per_mm2"]) if b
                                                              else None for b in best])
        if mi is not None:
            e["median_seed"] = ctx.seeds[mi]
            e["median_design"] = dict(C.design_summary(space, best[mi]["genome"]), genome=best[mi]["genome"],
                                      stats=C.network_stats(space, best[mi]["genome"]), macs=best[mi].get("macs"))
        out[name] = e
    search_note = ("accuracy during the search: the space's surrogate" if has_acc else
                   f"no accuracy during the search ({why}): accuracy_source=constant, so the objective was EDAP "
                   "alone and the joint search may shrink the network without an accuracy penalty")
    acc_note = f"accuracy not measured: {why_not}" if not can_measure else "accuracy not measured (test_images unset)"
    if can_measure and s["test_images"] is not None:
        named = [("baseline", base_row["genome"], "reference")]
        for n, e in out.items():          # every seed's best design, so accuracy gets a seed spread too
            named += [(f"{n}_s{d['seed']}", d["genome"], "search") for d in e["seeds"] if d.get("genome")]
        v = C.verify_set(ctx, "accuracy", base.replace(measure_accuracy=True, test_images=s["test_images"]), named)
        acc_note = v.verification.accuracy_note
        rows = {r["design"]: r for r in v.verification.rows}
        base_row = dict(base_row, measured_accuracy=rows["baseline"].get("measured_accuracy"),
                        accuracy_ci95=rows["baseline"].get("accuracy_ci95"))
        for n, e in out.items():
            for d in e["seeds"]:
                r = rows.get(f"{n}_s{d['seed']}")
                if r is not None:
                    d.update(measured_accuracy=r.get("measured_accuracy"), accuracy_ci95=r.get("accuracy_ci95"),
                             **C.vs_fields(r))
            e["spread"]["measured_accuracy"] = C.spread([d.get("measured_accuracy") for d in e["seeds"]])
            e["spread"]["accuracy_difference_vs_baseline"] = C.spread(
                [d.get("accuracy_difference_vs_baseline") for d in e["seeds"]])
            e["accuracy_vs_baseline_counts"] = {k: sum(d.get("accuracy_vs_baseline") == k for d in e["seeds"])
                                                for k in ("higher", "indistinguishable", "lower")}
            if e.get("median_design"):
                md = next(d for d in e["seeds"] if d["seed"] == e["median_seed"])
                e["median_design"].update({k: md.get(k) for k in ("measured_accuracy", "accuracy_ci95",
                                                                   "accuracy_vs_baseline")})
    b = {k: base_row[k] for k in METRICS}
    b.update(design=C.design_summary(space, base_row["genome"]), stats=C.network_stats(space, base_row["genome"]),
             macs=base_row.get("macs"), measured_accuracy=base_row.get("measured_accuracy"),
             accuracy_ci95=base_row.get("accuracy_ci95"), predicted_accuracy=base_row.get("predicted_accuracy"))
    return dict(variants=out, accuracy_floor=floor, baseline=b, baseline_doc=space.reference_doc,
                accuracy_source=acc_src, search_accuracy_note=search_note, accuracy_note=acc_note, published_edap_reduction_x=PUBLISHED_X,
                hardware_ground_truth="analytic CIM model (calibrated to CiMLoop, 7 nm SRAM)")


def table(ctx, res, truth):
    b = res["baseline"]
    s = ctx.settings
    lines = ["## ResNet50 on 7 nm SRAM: searched designs against the ResNet50 baseline", "",
             f"Hardware: {truth}. Baseline: {res['baseline_doc']}. GA population {s['population']} × "
             f"{s['generations']} generations per variant and seed; accuracy source of the search: "
             f"**{res['accuracy_source']}** ({res['search_accuracy_note']}). Accuracy of the results: "
             + res["accuracy_note"] + ".", ""]
    rows = [["ResNet50 baseline design", fmt(b["energy_j"]), fmt(b["latency_s"]), fmt(b["area_mm2"], ".1f"),
             fmt(b["edap_j_s_mm2"]), fmt(b["tops_per_w"], ".3f"), fmt(b["tops_per_mm2"], ".4f"), "1", "1", "1",
             f"{b['macs']:.3e}" if b.get("macs") else "n/a", _acc_cell(b.get("measured_accuracy"), b.get("accuracy_ci95")),
             "—"]]
    for n, e in res["variants"].items():
        sp = e["spread"]
        md = e.get("median_design") or {}
        rows.append([e["label"], C.fmt_spread(sp["energy_j"]), C.fmt_spread(sp["latency_s"]),
                     C.fmt_spread(sp["area_mm2"], ".1f"), C.fmt_spread(sp["edap_j_s_mm2"]),
                     C.fmt_spread(sp["tops_per_w"], ".3f"), C.fmt_spread(sp["tops_per_mm2"], ".4f"),
                     C.fmt_spread(sp["edap_reduction_vs_baseline_x"], ".1f"),
                     C.fmt_spread(sp["tops_per_w_vs_baseline_x"], ".2f"), C.fmt_spread(sp["tops_per_mm2_vs_baseline_x"], ".2f"),
                     f"{md['macs']:.3e}" if md.get("macs") else "n/a",
                     C.fmt_spread(sp.get("measured_accuracy"), ".4f"), _points(sp.get("accuracy_difference_vs_baseline")),
                     _vs_cell(e.get("accuracy_vs_baseline_counts"))])
    rows.append(["CIMNAS (published, ResNet50 on 7 nm SRAM, its own baseline)", "", "", "", "", "", "",
                 f"up to {res['published_edap_reduction_x']}", "", "", "", "", "", ""])
    lines += markdown_table(["design", "energy [J]", "latency [s]", "area [mm²]", "EDAP [J·s·mm²]", "TOPS/W",
                             "TOPS/mm²", "EDAP reduction [×]", "TOPS/W gain [×]", "TOPS/mm² gain [×]",
                             "MACs (median seed)", "accuracy measured [95 % CI] / median [min, max]",
                             "accuracy − baseline [points]", "accuracy vs baseline (seeds higher / same / lower)"], rows)
    lines += ["", "Cells: median [min, max] over seeds. 'vs baseline': each seed's design against the baseline on "
              "the same test images, exact McNemar test, two-sided at 5 % ('same' = not distinguishable at this "
              "test-set size).", "", "## Median-seed designs", ""]
    des = [("baseline", b["design"], b["stats"])] + [(n, e["median_design"], e["median_design"]["stats"])
                                                     for n, e in res["variants"].items() if e.get("median_design")]
    hw = list(des[0][1]["hardware"])
    lines += markdown_table(["design"] + hw, [[n] + [f"{d['hardware'][k]:g}" for k in hw] for n, d, _ in des])
    lines.append("")
    keys = [k for k in des[0][2]]
    lines += markdown_table(["design"] + keys, [[n] + [(f"{st[k]:.3g}" if isinstance(st.get(k), float) else str(st.get(k, "")))
                                                       for k in keys] for n, _, st in des])
    return lines


def _acc_cell(acc, ci):
    return f"{acc:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if acc is not None and ci else "n/a"


def _points(sp):
    """A spread of accuracy differences (fractions) in percentage points."""
    if not sp or sp.get("median") is None:
        return "n/a"
    return f"{100 * sp['median']:+.2f} [{100 * sp['min']:+.2f}, {100 * sp['max']:+.2f}]"


def _vs_cell(counts):
    if not counts or not sum(counts.values()):
        return "n/a"
    return f"{counts['higher']} / {counts['indistinguishable']} / {counts['lower']}"


def figures(ctx, res, truth):
    import numpy as np
    from cimnas_jax.report.plots import _plt, save
    plt = _plt()
    b = res["baseline"]
    measured = b.get("measured_accuracy") is not None
    if measured:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12.5, 5.2))
    else:
        fig, ax = plt.subplots(figsize=(7.0, 4.8))
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:purple")     # red is the baseline's
    for n, mk, col in zip(res["variants"], ("o", "D", "s", "P"), colors):
        pts = [d for d in res["variants"][n]["seeds"] if d.get("edap_j_s_mm2")]
        lab = f"{res['variants'][n]['label']} ({len(pts)} seeds)"
        ax.scatter([d["energy_j"] for d in pts], [d["latency_s"] * d["area_mm2"] for d in pts], marker=mk, s=45,
                   color=col, label=lab)
        if measured:
            acc = [d for d in pts if d.get("measured_accuracy") is not None]
            y = np.array([100 * d["measured_accuracy"] for d in acc])
            ci = np.array([[100 * d["accuracy_ci95"][0], 100 * d["accuracy_ci95"][1]] for d in acc]).reshape(-1, 2)
            ax2.errorbar([d["edap_reduction_vs_baseline_x"] for d in acc], y, yerr=[y - ci[:, 0], ci[:, 1] - y],
                         fmt=mk, capsize=3, ms=6, color=col)
    ax.scatter([b["energy_j"]], [b["latency_s"] * b["area_mm2"]], marker="*", s=300, color="tab:red", edgecolor="k",
               label="ResNet50 baseline design", zorder=4)
    e0 = b["edap_j_s_mm2"]
    xs = np.logspace(np.log10(ax.get_xlim()[0]), np.log10(ax.get_xlim()[1]), 50)
    for f, ls in ((1, "-"), (10, "--"), (100, ":"), (res["published_edap_reduction_x"], "-.")):
        ax.plot(xs, e0 / f / xs, color="0.5", ls=ls, lw=0.9, label=f"EDAP = baseline / {f:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import NullFormatter
    ax.xaxis.set_minor_formatter(NullFormatter())       # labelled minor ticks overprint over > 1 decade
    ax.set_xlabel(f"energy per inference [J]  ({truth})")
    ax.set_ylabel("latency × area [s·mm²]")
    ax.set_title(f"resnet50_sram7nm: found designs per seed (accuracy during the search: {res['accuracy_source']})",
                 fontsize=9)
    ax.grid(alpha=0.3)
    if measured:
        y0, (lo, hi) = 100 * b["measured_accuracy"], b["accuracy_ci95"]
        ax2.errorbar([1.0], [y0], yerr=[[y0 - 100 * lo], [100 * hi - y0]], fmt="*", ms=16, color="tab:red", mec="k",
                     capsize=3, zorder=4)
        ax2.axhspan(100 * lo, 100 * hi, color="tab:red", alpha=0.12, lw=0)
        ax2.set_xscale("log")
        from cimnas_jax.paper.plotting import plain_log_ticks
        plain_log_ticks(ax2, "x", fontsize=9)
        ax2.set_xlabel("EDAP reduction vs the ResNet50 baseline design [×]")
        ax2.set_ylabel("measured accuracy [%] (Fashion-MNIST test, 95 % CI)")
        ax2.set_title("accuracy measured with the elastic ResNet supernet (band: the baseline's 95 % interval)\n"
                      "overlapping intervals are not 'no difference': the table gives the paired test",
                      fontsize=9)
        ax2.grid(alpha=0.3)
        h, lab = ax.get_legend_handles_labels()
        fig.legend(h, lab, loc="lower center", ncol=4, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        save(fig, ctx.path("designs.png"), tight=False)
    else:
        ax.legend(fontsize=7, loc="best")
        save(fig, ctx.path("designs.png"))
    return ["designs.png"]
