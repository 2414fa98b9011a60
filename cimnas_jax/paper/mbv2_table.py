"""mbv2_table: CIMNAS's headline table for MobileNetV2 on 32 nm RRAM, reproduced over seeds.

The searched design (joint search of network, quantization and hardware; CIMNAS's GA objective
EDAP / accuracy) against several baselines:

    baseline     the CIMNAS baseline design (the space's reference design)
    hw_only      hardware-only optimisation with the baseline network fixed (--freeze=software,quantization)
    net_quant    network + quantization optimisation on the baseline chip (--freeze=hardware)
    quant_only   quantization only: baseline network and chip (--freeze=software,hardware)

Every search is a ``pipeline.run`` (one per variant and seed); the designs are then verified
together by the pipeline's verify stage: hardware by the analytic model for all, by real CiMLoop
for the headline set (the baseline and each variant's median-seed design) where it is installed
and asked for; accuracy measured on Fashion-MNIST test images (inherited supernet weights) for all,
and after QAT fine-tuning for the headline set.
"""
from __future__ import annotations

from cimnas_jax.paper import common as C
from cimnas_jax.report.tables import fmt, markdown_table

VARIANTS = (
    ("joint", "", "joint search: network + quantization + hardware (CIMNAS)"),
    ("hw_only", "software,quantization", "hardware only, baseline network (8-bit) fixed"),
    ("net_quant", "hardware", "network + quantization on the baseline chip"),
    ("quant_only", "software,hardware", "quantization only (baseline network and chip)"),
)
PUBLISHED = dict(edap_reduction_x=(90.1, 104.5), tops_per_w_x=(4.68, 4.82), tops_per_mm2_x=(11.3, 12.78),
                 imagenet_top1=0.7381)

SETTINGS = {
    "tiny": dict(population=16, generations=3, seeds=2, test_images=None, finetune_steps=0, finetune_variants=()),
    "small": dict(population=128, generations=40, seeds=5, test_images=1000, finetune_steps=10,
                  finetune_variants=("joint",)),
    "full": dict(population=256, generations=60, seeds=5, test_images=0, finetune_steps=60,
                 finetune_variants=tuple(v[0] for v in VARIANTS)),
}
DEFAULT_VERIFY_HW = {"tiny": "analytic", "small": "analytic", "full": "auto"}
METRICS = ("energy_j", "latency_s", "area_mm2", "edap_j_s_mm2", "tops_per_w", "tops_per_mm2")


def base_config(ctx):
    from cimnas_jax.pipeline import RunConfig
    s = ctx.settings
    return RunConfig(space="mbv2_rram", population=s["population"], generations=s["generations"],
                     chunk=s["generations"], finalists=1, verify_hw="analytic", measure_accuracy=False,
                     finetune_steps=0, stages="search,refine,verify")


def run(ctx):
    from cimnas_jax.pipeline.verify import resolve_truth
    from cimnas_jax.space import get_space
    space = get_space("mbv2_rram")
    s = ctx.settings
    base = base_config(ctx)
    truth, why = resolve_truth(base.replace(verify_hw=ctx.verify_hw or DEFAULT_VERIFY_HW[ctx.scale]))
    ref = [int(x) for x in space.reference_genome()]

    # ---- searches: one pipeline run per variant and seed (hardware by the analytic model)
    runs = {}
    for name, freeze, _ in VARIANTS:
        for seed in ctx.seeds:
            runs[name, seed] = C.run_pipeline(ctx, f"{name}_s{seed}", base.replace(seed=seed, freeze=freeze))
    base_row = runs[VARIANTS[0][0], ctx.seeds[0]].row("baseline")
    per = {name: [runs[name, seed].best for seed in ctx.seeds] for name, _, _ in VARIANTS}
    med = {name: C.median_index([r["edap_j_s_mm2"] if r else None for r in rows]) for name, rows in per.items()}

    # ---- accuracy of every design (inherited weights), fine-tuned accuracy of the headline set
    acc_rows, ft_rows, acc_note, ft_note = {}, {}, "not measured (--tiny)", "not fine-tuned (--tiny)"
    named = [("baseline", ref, "reference")] + [(f"{n}_s{seed}", per[n][i]["genome"], "search")
                                                 for n, _, _ in VARIANTS for i, seed in enumerate(ctx.seeds)
                                                 if per[n][i]]
    if s["test_images"] is not None:
        cfg_acc = base.replace(measure_accuracy=True, test_images=s["test_images"], finetune_steps=0)
        v = C.verify_set(ctx, "accuracy", cfg_acc, named)
        acc_rows, acc_note = {r["design"]: r for r in v.verification.rows}, v.verification.accuracy_note
        if s["finetune_steps"] and s["finetune_variants"]:
            head = [("baseline", ref, "reference")] + [
                (f"{n}_s{ctx.seeds[med[n]]}", per[n][med[n]]["genome"], "search")
                for n in s["finetune_variants"] if med[n] is not None]
            cfg_ft = cfg_acc.replace(finetune_steps=s["finetune_steps"], finetune_designs=len(head) - 1)
            v = C.verify_set(ctx, "finetune", cfg_ft, head)
            ft_rows, ft_note = {r["design"]: r for r in v.verification.rows}, v.verification.accuracy_note

    # ---- CiMLoop ground truth for the headline set, where installed and asked for: one verification
    # per variant (the baseline with that variant's median-seed design; the baseline's layers come from
    # CiMLoop's result cache after the first), the headline (joint) first, each cached when done
    cl_rows, cl_note = {}, None
    if truth == "cimloop":
        for n, _, _ in VARIANTS:
            if med[n] is None:
                continue
            tag = f"{n}_s{ctx.seeds[med[n]]}"
            v = C.verify_set(ctx, f"cimloop_{n}", base.replace(verify_hw="cimloop"),
                             [("baseline", ref, "reference"), (tag, per[n][med[n]]["genome"], "search")])
            cl_rows.update({r["design"]: r for r in v.verification.rows if r["design"] not in cl_rows})
            cl_note = v.verification.hw_truth_why
    return assemble(ctx, space, base_row, per, med, acc_rows, ft_rows, cl_rows, acc_note, ft_note, truth, why,
                    cl_note)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:+.2f}"


def _vs_note(md) -> str:
    """' (indistinguishable vs baseline, −0.21 points, p = 0.43)' for a fine-tuned median design."""
    if not md.get("finetuned_vs_baseline"):
        return ""
    extra = ""
    if md.get("finetuned_vs_baseline_p") is not None:
        extra = f", {100 * md['finetuned_difference_vs_baseline']:+.2f} points, p = {md['finetuned_vs_baseline_p']:.2g}"
    return f" ({md['finetuned_vs_baseline']} vs baseline{extra})"


def _acc(rows, name, key="measured_accuracy"):
    r = rows.get(name)
    return r.get(key) if r else None


def assemble(ctx, space, base_row, per, med, acc_rows, ft_rows, cl_rows, acc_note, ft_note, truth, why, cl_note):
    seeds = ctx.seeds
    out = dict(variants={}, baseline={}, reductions={}, published=PUBLISHED, accuracy_note=acc_note,
               finetune_note=ft_note, hardware_truth_requested=truth, hardware_truth_why=why)
    b = {k: base_row[k] for k in METRICS}
    b.update(measured_accuracy=_acc(acc_rows, "baseline"), accuracy_ci95=(acc_rows.get("baseline") or {}).get("accuracy_ci95"),
             finetuned_accuracy=_acc(ft_rows, "baseline", "finetuned_accuracy"),
             finetuned_ci95=(ft_rows.get("baseline") or {}).get("finetuned_ci95"),
             predicted_accuracy=base_row.get("predicted_accuracy"), design=C.design_summary(space, base_row["genome"]))
    out["baseline"] = b
    for name, _, label in VARIANTS:
        rows = per[name]
        seeds_out = []
        for seed, r in zip(seeds, rows):
            if r is None:
                seeds_out.append(dict(seed=seed, feasible=False))
                continue
            tag = f"{name}_s{seed}"
            d = {k: r[k] for k in METRICS}
            d.update(seed=seed, feasible=True, genome=r["genome"], predicted_accuracy=r.get("predicted_accuracy"),
                     measured_accuracy=_acc(acc_rows, tag), accuracy_ci95=(acc_rows.get(tag) or {}).get("accuracy_ci95"),
                     edap_reduction_vs_baseline_x=r.get("edap_reduction_vs_baseline_x"),
                     tops_per_w_vs_baseline_x=C.ratio(r["tops_per_w"], b["tops_per_w"]),
                     tops_per_mm2_vs_baseline_x=C.ratio(r["tops_per_mm2"], b["tops_per_mm2"]))
            seeds_out.append(d)
        ok = [d for d in seeds_out if d["feasible"]]
        v = dict(label=label, seeds=seeds_out, spread={k: C.spread([d[k] for d in ok]) for k in
                 METRICS + ("edap_reduction_vs_baseline_x", "tops_per_w_vs_baseline_x", "tops_per_mm2_vs_baseline_x",
                            "measured_accuracy", "predicted_accuracy")})
        if med[name] is not None:
            m = seeds_out[med[name]]
            tag = f"{name}_s{m['seed']}"
            v["median_seed"] = m["seed"]
            v["median_design"] = dict(C.design_summary(space, m["genome"]), genome=m["genome"],
                                      finetuned_accuracy=_acc(ft_rows, tag, "finetuned_accuracy"),
                                      finetuned_ci95=(ft_rows.get(tag) or {}).get("finetuned_ci95"),
                                      finetuned_vs_baseline=(ft_rows.get(tag) or {}).get("accuracy_vs_baseline"),
                                      finetuned_vs_baseline_p=(ft_rows.get(tag) or {}).get("accuracy_vs_baseline_p"),
                                      finetuned_difference_vs_baseline=(ft_rows.get(tag) or {}).get(
                                          "accuracy_difference_vs_baseline"),
                                      cimloop=_cl(cl_rows.get(tag)))
        out["variants"][name] = v
    # the joint design against each baseline, paired by seed
    joint = out["variants"]["joint"]["seeds"]
    for name, _, label in (("baseline", "", "CIMNAS baseline design"),) + VARIANTS[1:]:
        rs = {"edap_reduction_x": [], "tops_per_w_x": [], "tops_per_mm2_x": []}
        for i, j in enumerate(joint):
            other = b if name == "baseline" else out["variants"][name]["seeds"][i]
            if not j["feasible"] or not other.get("edap_j_s_mm2"):
                continue
            rs["edap_reduction_x"].append(C.ratio(other["edap_j_s_mm2"], j["edap_j_s_mm2"]))
            rs["tops_per_w_x"].append(C.ratio(j["tops_per_w"], other["tops_per_w"]))
            rs["tops_per_mm2_x"].append(C.ratio(j["tops_per_mm2"], other["tops_per_mm2"]))
        out["reductions"][name] = dict(label=label, **{k: C.spread(v) for k, v in rs.items()})
    # the same gains under CIMNAS's TOPS definition (means of per-layer values), joint against the baseline
    ok = [j for j in joint if j["feasible"]]
    if ok:
        tw, tm = C.layer_mean_tops(space, [base_row["genome"]] + [j["genome"] for j in ok])
        b["tops_per_w_layer_mean"], b["tops_per_mm2_layer_mean"] = float(tw[0]), float(tm[0])
        for j, w, m in zip(ok, tw[1:], tm[1:]):
            j["tops_per_w_layer_mean"], j["tops_per_mm2_layer_mean"] = float(w), float(m)
        out["reductions_layer_mean_tops"] = dict(
            label="CIMNAS baseline design, TOPS as CIMNAS defines them (mean of per-layer values)",
            tops_per_w_x=C.spread([w / tw[0] for w in tw[1:]]), tops_per_mm2_x=C.spread([m / tm[0] for m in tm[1:]]))
    out["hardware_ground_truth"] = "analytic CIM model (calibrated to CiMLoop)"
    if cl_rows:
        out["cimloop"] = dict(note=cl_note, baseline=_cl(cl_rows.get("baseline")))
        out["hardware_ground_truth"] += "; real CiMLoop for the headline set (its own table)"
    return out


def _cl(r):
    if not r:
        return None
    return {k: r.get(k) for k in METRICS + ("valid", "edap_reduction_vs_baseline_x", "predicted_edap_j_s_mm2",
                                            "predicted_edap_reduction_vs_baseline_x", "model_disagrees_on",
                                            "predicted_error_energy", "predicted_error_latency", "predicted_error_area")}


# ---------------------------------------------------------------------- rendering
def table(ctx, res, hw_truth) -> list[str]:
    b = res["baseline"]
    lines = ["## MobileNetV2 on 32 nm RRAM: searched designs against the baselines", "",
             f"Hardware: **{hw_truth}** (every number in this table). Search: GA, population "
             f"{ctx.settings['population']} × {ctx.settings['generations']} generations "
             f"({ctx.settings['population'] * ctx.settings['generations']} evaluations; CIMNAS: 150 × 100) per "
             "variant and seed, objective EDAP / accuracy (accuracy from the shipped Fashion-MNIST surrogate), "
             "constraints weights fit on the chip, area ≤ 800 mm². Accuracy: " + res["accuracy_note"] + ".", ""]
    hdr = ["design", "energy [J]", "latency [s]", "area [mm²]", "EDAP [J·s·mm²]", "TOPS/W", "TOPS/mm²",
           "EDAP reduction vs baseline [×]", "accuracy inherited", "accuracy fine-tuned [95 % CI] (median seed)"]
    rows = [["CIMNAS baseline design", fmt(b["energy_j"]), fmt(b["latency_s"]), fmt(b["area_mm2"], ".1f"),
             fmt(b["edap_j_s_mm2"]), fmt(b["tops_per_w"], ".3f"), fmt(b["tops_per_mm2"], ".4f"), "1",
             _acc_cell(b.get("measured_accuracy"), b.get("accuracy_ci95")),
             _acc_cell(b.get("finetuned_accuracy"), b.get("finetuned_ci95"))]]
    for name, v in res["variants"].items():
        sp = v["spread"]
        md = v.get("median_design") or {}
        rows.append([f"{name}: {v['label']}", C.fmt_spread(sp["energy_j"]), C.fmt_spread(sp["latency_s"]),
                     C.fmt_spread(sp["area_mm2"], ".1f"), C.fmt_spread(sp["edap_j_s_mm2"]),
                     C.fmt_spread(sp["tops_per_w"], ".3f"), C.fmt_spread(sp["tops_per_mm2"], ".4f"),
                     C.fmt_spread(sp["edap_reduction_vs_baseline_x"], ".1f"), C.fmt_spread(sp["measured_accuracy"], ".4f"),
                     _acc_cell(md.get("finetuned_accuracy"), md.get("finetuned_ci95"))
                     + _vs_note(md)])
    lines += markdown_table(hdr, rows)
    lines += ["", "Cells: median [min, max] over seeds; 'accuracy inherited' = supernet weights, no fine-tuning; "
              "fine-tuned = " + res["finetune_note"] + "; 'vs baseline': the fine-tuned design against the "
              "fine-tuned baseline on the same test images (exact McNemar test, two-sided, 5 %).", "",
              "## The joint design's gains against each baseline (paired by seed), beside CIMNAS's", ""]
    p = res["published"]
    rows = []
    for name, r in res["reductions"].items():
        rows.append([r["label"], C.fmt_spread(r["edap_reduction_x"], ".1f"), C.fmt_spread(r["tops_per_w_x"], ".2f"),
                     C.fmt_spread(r["tops_per_mm2_x"], ".2f")])
    lm = res.get("reductions_layer_mean_tops")
    if lm:
        rows.append([lm["label"], "(as above)", C.fmt_spread(lm["tops_per_w_x"], ".2f"),
                     C.fmt_spread(lm["tops_per_mm2_x"], ".2f")])
    rows.append(["CIMNAS (published, 'various baselines', ImageNet 73.81 %)",
                 f"{p['edap_reduction_x'][0]}–{p['edap_reduction_x'][1]}", f"{p['tops_per_w_x'][0]}–{p['tops_per_w_x'][1]}",
                 f"{p['tops_per_mm2_x'][0]}–{p['tops_per_mm2_x'][1]}"])
    lines += markdown_table(["against", "EDAP reduction [×]", "TOPS/W gain [×]", "TOPS/mm² gain [×]"], rows)
    lines += ["", "TOPS/W here = 2·MACs / total energy and TOPS/mm² = 2·MACs / latency / area of the whole network; "
              "CIMNAS reports means of per-layer values, the row above recomputes the gains that way (analytic "
              "model's per-layer energy and latency, chip area).", ""]
    if res.get("cimloop"):
        lines += ["## Headline designs under real CiMLoop (median-seed design of each variant)", "",
                  res["cimloop"]["note"], ""]
        rows = []
        for name, v in [("baseline", {"median_design": {"cimloop": res["cimloop"]["baseline"]}})] + list(res["variants"].items()):
            cl = (v.get("median_design") or {}).get("cimloop")
            if not cl:
                continue
            rows.append([name, fmt(cl["energy_j"]), fmt(cl["latency_s"]), fmt(cl["area_mm2"], ".1f"),
                         fmt(cl["edap_j_s_mm2"]), fmt(cl.get("predicted_edap_j_s_mm2")),
                         fmt(cl.get("edap_reduction_vs_baseline_x"), ".1f"),
                         fmt(cl.get("predicted_edap_reduction_vs_baseline_x"), ".1f"),
                         " / ".join(_pct(cl.get(f"predicted_error_{k}")) for k in ("energy", "latency", "area")),
                         ", ".join(cl.get("model_disagrees_on") or []) or "ok"])
        lines += markdown_table(["design", "energy [J]", "latency [s]", "area [mm²]", "EDAP CiMLoop [J·s·mm²]",
                                 "EDAP analytic [J·s·mm²]", "EDAP reduction CiMLoop [×]",
                                 "EDAP reduction analytic [×]", "analytic / CiMLoop − 1: energy / latency / area [%]",
                                 "analytic off by > 5 % on"], rows)
        lines.append("")
    lines += ["## Median-seed designs", ""]
    des = [("baseline", b["design"])] + [(n, v["median_design"]) for n, v in res["variants"].items()
                                         if v.get("median_design")]
    hw = list(des[0][1]["hardware"])
    lines += markdown_table(["design"] + hw, [[n] + [f"{d['hardware'][k]:g}" for k in hw] for n, d in des])
    lines.append("")
    kinds = list(dict.fromkeys(k for _, d in des for k in d["network"]))
    lines += markdown_table(["design"] + kinds, [[n] + [d["network"].get(k, "") for k in kinds] for n, d in des])
    return lines


def _acc_cell(a, ci):
    if a is None:
        return "n/a"
    return f"{a:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{a:.4f}"


def figures(ctx, res, hw_truth) -> list[str]:
    from cimnas_jax.report.plots import _plt, save
    plt = _plt()
    names = list(res["variants"])
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    lo_p, hi_p = res["published"]["edap_reduction_x"]
    ax.axhspan(lo_p, hi_p, color="tab:orange", alpha=0.25, label=f"CIMNAS published {lo_p}–{hi_p}×")
    for i, n in enumerate(names):
        sp = res["variants"][n]["spread"]["edap_reduction_vs_baseline_x"]
        if sp["median"] is None:
            continue
        ax.bar(i, sp["median"], color="tab:blue", width=0.6)
        ax.errorbar(i, sp["median"], yerr=[[sp["median"] - sp["min"]], [sp["max"] - sp["median"]]], fmt="none",
                    ecolor="k", capsize=5)
        ax.annotate(f"{sp['median']:.1f}×", (i, sp["max"]), xytext=(0, 4), textcoords="offset points",
                    ha="center", fontsize=8)
    ax.axhline(1.0, color="tab:red", lw=1.5, ls="--", label="CIMNAS baseline design (1×)")
    if res.get("cimloop"):            # the median-seed designs re-scored by real CiMLoop (reduction vs its baseline)
        shown = False
        for i, n in enumerate(names):
            cl = (res["variants"][n].get("median_design") or {}).get("cimloop")
            if not cl:
                continue
            x = cl.get("edap_reduction_vs_baseline_x")
            if cl.get("valid") and x:
                ax.scatter([i + 0.18], [x], marker="D", s=42, color="k", zorder=4,
                           label=None if shown else "median-seed design under real CiMLoop")
                ax.annotate(f"{x:.1f}×", (i + 0.18, x), xytext=(6, -3), textcoords="offset points", fontsize=8)
                shown = True
            else:
                top = res["variants"][n]["spread"]["edap_reduction_vs_baseline_x"]["max"] or 1.0
                ax.annotate("median design\nfails in CiMLoop", (i, top), xytext=(0, 16), textcoords="offset points",
                            ha="center", fontsize=8, color="tab:red",
                            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="tab:red", lw=0.8))
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names])
    ax.set_ylabel("EDAP reduction vs the baseline design [×]")
    ax.set_title(f"mbv2_rram: EDAP reduction of each variant's best design\n(hardware: {hw_truth.split(';')[0]}; "
                 f"bar = median, whiskers = range over {len(ctx.seeds)} seeds)", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3, axis="y")
    save(fig, ctx.path("edap_reduction.png"))

    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    b = res["baseline"]
    measured = b.get("measured_accuracy") is not None
    key = "measured_accuracy" if measured else "predicted_accuracy"
    markers = dict(joint="o", hw_only="s", net_quant="^", quant_only="D")
    for n in names:
        pts = [d for d in res["variants"][n]["seeds"] if d.get("feasible") and d.get(key) is not None]
        if not pts:
            continue
        x = [d["edap_j_s_mm2"] for d in pts]
        y = [d[key] for d in pts]
        ax.scatter(x, y, marker=markers.get(n, "o"), s=40, label=f"{n.replace('_', ' ')} ({len(pts)} seeds)")
        if measured:
            for d in pts:
                if d.get("accuracy_ci95"):
                    lo, hi = d["accuracy_ci95"]
                    ax.errorbar(d["edap_j_s_mm2"], d[key], yerr=[[d[key] - lo], [hi - d[key]]], fmt="none",
                                ecolor="0.7", capsize=2, zorder=0)
    if b.get(key) is not None:
        ax.scatter([b["edap_j_s_mm2"]], [b[key]], marker="*", s=260, color="tab:red", zorder=3,
                   label="CIMNAS baseline design")
    ax.set_xscale("log")
    ax.set_xlabel(f"EDAP [J·s·mm²]  ({hw_truth})")
    ax.set_ylabel("accuracy [fraction], " + ("measured, inherited weights (bars: 95 % CI)" if measured
                                            else "predicted by the accuracy surrogate"))
    ax.set_title("mbv2_rram: every variant's best design per seed", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    save(fig, ctx.path("designs.png"))
    return ["edap_reduction.png", "designs.png"]
