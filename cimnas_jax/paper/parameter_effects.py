"""parameter_effects: how each gene group moves energy, latency, area and accuracy (CIMNAS Fig. 2),
and how the metrics correlate.

* One-at-a-time sweeps around the CIMNAS baseline design: every hardware gene through all its
  choices; every network/quantization gene *kind* at once (all kernels 3/5/7, all stage depths
  2/3/4, all expansions at their smallest/middle/largest width, each of the four bit kinds at
  4/6/8, all bits together); and every single gene, summarised as the range it spans.
* A large uniform random sample of the space: Spearman correlations between the metrics, each
  gene group's share of each metric's variance (R² of a one-hot least-squares fit on that group's
  genes alone), and the genes most correlated with each metric.

Hardware: the search's model (the analytic CIM model); accuracy: the search's accuracy surrogate
for every design, and accuracy measured on Fashion-MNIST test images (the pipeline's verify stage)
for the network/quantization sweeps.
"""
from __future__ import annotations

import time

import numpy as np

from cimnas_jax.paper import common as C
from cimnas_jax.paper.plotting import plain_log_ticks
from cimnas_jax.report.tables import fmt, markdown_table

SETTINGS = {
    "tiny": dict(random_designs=2048, r2_designs=1024, test_images=None, seeds=1, batch=256),
    "small": dict(random_designs=100_000, r2_designs=20_000, test_images=500, seeds=1, batch=8192),
    "full": dict(random_designs=1_000_000, r2_designs=50_000, test_images=2000, seeds=1, batch=8192),
}
KINDS = (("depth", "stage depths", ("depth_s",)), ("kernel", "depthwise kernels", ("kernel_b",)),
         ("mid_ch", "expansion widths", ("mid_ch_b",)), ("pw_w_bits", "pointwise weight bits", ("pw_w_bits_b",)),
         ("pw_a_bits", "pointwise activation bits", ("pw_a_bits_b",)),
         ("dw_w_bits", "depthwise weight bits", ("dw_w_bits_b",)),
         ("dw_a_bits", "depthwise activation bits", ("dw_a_bits_b",)),
         ("all_bits", "all bits", ("pw_w_bits_b", "pw_a_bits_b", "dw_w_bits_b", "dw_a_bits_b")))
METRICS = ("energy_j", "latency_s", "area_mm2", "edap_j_s_mm2", "accuracy")
LABELS = dict(energy_j="energy", latency_s="latency", area_mm2="area", edap_j_s_mm2="EDAP",
              accuracy="accuracy (surrogate)")


def _evaluator(space, batch):
    """genomes [N, G] -> dict of float64 [N] metrics (analytic hardware + surrogate accuracy) and
    feasibility, evaluated in fixed-size padded batches (one compilation)."""
    import jax
    import jax.numpy as jnp
    from cimnas_jax.pipeline import RunConfig, fitness_for
    from cimnas_jax.pipeline.objective import build_objective
    cfg = RunConfig(space=space.name)
    fit = fitness_for(cfg, space)
    obj = build_objective(cfg)

    @jax.jit
    def f(g):
        m = fit(g)
        _, v = obj(m)
        return dict(m, violation=v)

    def evaluate(genomes):
        genomes = np.asarray(genomes, np.int32)
        out = {}
        for i in range(0, len(genomes), batch):
            chunk = genomes[i:i + batch]
            pad = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), 0)]) if len(chunk) < batch else chunk
            m = jax.device_get(f(jnp.asarray(pad)))
            for k, v in m.items():
                out.setdefault(k, []).append(np.asarray(v)[:len(chunk)])
        m = {k: np.concatenate(v) for k, v in out.items()}
        for k in ("energy_j", "latency_s", "area_mm2", "accuracy"):
            m[k] = m[k].astype(np.float64)
        m["edap_j_s_mm2"] = m["energy_j"] * m["latency_s"] * m["area_mm2"]
        m["valid"] = m["valid"].astype(bool) & np.isfinite(m["edap_j_s_mm2"]) & (m["edap_j_s_mm2"] > 0)
        m["feasible"] = m["valid"] & (m["violation"] == 0)
        return m
    return evaluate


def _kind_genes(space, prefixes):
    return [i for i, g in enumerate(space.genes) if any(g.name.startswith(p) for p in prefixes)]


def sweeps(space):
    """[(sweep name, label, [(x label, genome)])]: hardware genes one by one, network kinds at once."""
    ref = space.reference_genome()
    out = []
    for i, g in enumerate(space.genes):
        if g.group.startswith("hardware"):
            pts = []
            for c, v in enumerate(g.choices):
                x = ref.copy()
                x[i] = c
                pts.append((f"{v:g}", x))
            out.append((g.name, f"{g.name} [{g.unit}]" if g.unit else g.name, pts, int(ref[i])))
    for kind, label, prefixes in KINDS:
        idx = _kind_genes(space, prefixes)
        pts = []
        if kind == "mid_ch":
            for name, frac in (("smallest", 0.0), ("middle", 0.5), ("largest", 1.0)):
                x = ref.copy()
                for i in idx:
                    x[i] = int(round(frac * (len(space.genes[i].choices) - 1)))
                pts.append((name, x))
            at = 2
        else:
            choices = space.genes[idx[0]].choices
            for c, v in enumerate(choices):
                x = ref.copy()
                x[idx] = c
                pts.append((f"{v:g}", x))
            at = int(np.where([np.array_equal(p[1], ref) for p in pts])[0][0]) if any(
                np.array_equal(p[1], ref) for p in pts) else None
        out.append((kind, f"{label} (all at once)", pts, at))
    return out


def single_gene_ranges(space, evaluate):
    """Per gene: the range each metric spans when only that gene moves (others at the baseline)."""
    ref = space.reference_genome()
    genomes, owner = [], []
    for i, g in enumerate(space.genes):
        for c in range(len(g.choices)):
            x = ref.copy()
            x[i] = c
            genomes.append(x)
            owner.append(i)
    m = evaluate(np.stack(genomes))
    owner = np.asarray(owner)
    rows = []
    for i, g in enumerate(space.genes):
        sel = (owner == i) & m["valid"]
        r = dict(gene=g.name, group=g.group)
        for k in METRICS[:4]:
            v = m[k][sel]
            r[f"{k}_range_x"] = float(v.max() / v.min()) if len(v) else None
        a = m["accuracy"][sel]
        r["accuracy_range_points"] = float(100 * (a.max() - a.min())) if len(a) else None
        rows.append(r)
    return rows


def _ranks(x):
    """Average ranks (ties share the mean of their positions), as Spearman's rho needs."""
    _, inv, cnt = np.unique(np.asarray(x), return_inverse=True, return_counts=True)
    return (np.cumsum(cnt) - (cnt - 1) / 2.0)[inv.reshape(-1)]


def spearman_matrix(cols: dict) -> dict:
    names = list(cols)
    R = np.corrcoef(np.stack([_ranks(cols[n]) for n in names]))
    return dict(names=names, matrix=R.tolist())


def group_r2(space, genomes, y):
    """R² of least squares of y on the one-hot encoding of each group's genes (and of all genes)."""
    out = {}
    groups = list(space.group_names) + ["all genes"]
    for grp in groups:
        idx = [i for i, g in enumerate(space.genes) if grp == "all genes" or g.group == grp]
        cols = [np.ones(len(y))]
        for i in idx:
            n = len(space.genes[i].choices)
            for c in range(1, n):
                cols.append((genomes[:, i] == c).astype(np.float64))
        X = np.stack(cols, 1)
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        res = y - X @ beta
        out[grp] = float(1 - res.var() / y.var()) if y.var() > 0 else 0.0
    return out


def run(ctx):
    import jax
    from cimnas_jax.space import get_space
    space = get_space("mbv2_rram")
    s = ctx.settings
    evaluate = _evaluator(space, s["batch"])
    ref = space.reference_genome()
    base = {k: float(v[0]) for k, v in evaluate(ref[None]).items() if k in METRICS}

    # ---- one-at-a-time sweeps
    sw_out = []
    all_pts = []
    for name, label, pts, at in sweeps(space):
        m = evaluate(np.stack([p[1] for p in pts]))
        rows = []
        for j, (x, g) in enumerate(pts):
            rows.append(dict(x=x, genome=[int(t) for t in g], valid=bool(m["valid"][j]), feasible=bool(m["feasible"][j]),
                             **{k: float(m[k][j]) for k in METRICS},
                             **{f"{k}_vs_baseline_x": float(m[k][j] / base[k]) for k in METRICS[:4]}))
            all_pts.append((name, j, g))
        sw_out.append(dict(sweep=name, label=label, baseline_index=at,
                           group=space.genes[space.index[name]].group if name in space.index else
                           ("quantization" if "bits" in name else "software"), points=rows))
    singles = single_gene_ranges(space, evaluate)

    # ---- measured accuracy for the network / quantization sweeps (the pipeline's verify stage)
    acc_note = "not measured (--tiny)"
    if s["test_images"] is not None:
        from cimnas_jax.pipeline import RunConfig
        named, seen = [("baseline", [int(x) for x in ref], "reference")], {ref.tobytes()}
        for sw in sw_out:
            if sw["group"].startswith("hardware"):
                continue
            for j, p in enumerate(sw["points"]):
                g = np.asarray(p["genome"], np.int32)
                if g.tobytes() not in seen:
                    seen.add(g.tobytes())
                    named.append((f"{sw['sweep']}={p['x']}", p["genome"], "search"))
        cfg = RunConfig(space="mbv2_rram", verify_hw="analytic", measure_accuracy=True, test_images=s["test_images"],
                        finetune_steps=0)
        v = C.verify_set(ctx, "accuracy", cfg, named)
        by_genome = {np.asarray(r["genome"], np.int32).tobytes(): r for r in v.verification.rows}
        acc_note = v.verification.accuracy_note
        for sw in sw_out:
            if sw["group"].startswith("hardware"):
                continue
            for p in sw["points"]:
                r = by_genome.get(np.asarray(p["genome"], np.int32).tobytes())
                if r:
                    p["measured_accuracy"], p["accuracy_ci95"] = r.get("measured_accuracy"), r.get("accuracy_ci95")
        base["measured_accuracy"] = v.verification.rows[0].get("measured_accuracy")

    # ---- random sample
    n = s["random_designs"]
    t0 = time.perf_counter()
    genomes = np.asarray(jax.device_get(space.sample(jax.random.key(12345), n)), np.int32)
    m = evaluate(genomes)
    rate = n / (time.perf_counter() - t0)
    valid, feas = m["valid"], m["feasible"]
    cols = lambda sel: {"log10 energy": np.log10(m["energy_j"][sel]), "log10 latency": np.log10(m["latency_s"][sel]),
                        "log10 area": np.log10(m["area_mm2"][sel]), "log10 EDAP": np.log10(m["edap_j_s_mm2"][sel]),
                        "accuracy (surrogate)": m["accuracy"][sel]}
    corr_valid = spearman_matrix(cols(valid))
    corr_feas = spearman_matrix(cols(feas)) if feas.sum() > 10 else None
    sub = np.flatnonzero(valid)[: s["r2_designs"]]
    r2 = {LABELS[k]: group_r2(space, genomes[sub], (np.log10(m[k][sub]) if k != "accuracy" else m[k][sub]))
          for k in METRICS}
    # genes most rank-correlated with each metric
    top = {}
    rg = {i: _ranks(genomes[sub, i]) for i in range(space.n_genes)}
    for k in METRICS:
        y = _ranks(m[k][sub])
        rho = [(space.genes[i].name, float(np.corrcoef(rg[i], y)[0, 1])) for i in range(space.n_genes)
               if np.ptp(genomes[sub, i]) > 0]
        rho.sort(key=lambda t: -abs(t[1]))
        top[LABELS[k]] = rho[:8]
    rand = dict(designs=n, valid_fraction=float(valid.mean()), feasible_fraction=float(feas.mean()),
                designs_per_second=rate, spearman_valid=corr_valid, spearman_feasible=corr_feas, group_r2=r2,
                r2_designs=len(sub), top_genes=top,
                quantiles={LABELS[k]: np.quantile(m[k][valid], [0.01, 0.5, 0.99]).tolist() for k in METRICS})
    return dict(baseline=base, sweeps=sw_out, single_genes=singles, random=rand, accuracy_note=acc_note,
                hardware_ground_truth="analytic CIM model (calibrated to CiMLoop); accuracy: surrogate, and "
                                      "measured for the network sweeps")


# ---------------------------------------------------------------------- rendering
def table(ctx, res, truth):
    b, rd = res["baseline"], res["random"]
    lines = ["## One-at-a-time sweeps around the CIMNAS baseline design", "",
             f"Hardware: {truth}. Each cell: metric / baseline (×) at each choice; accuracy in points "
             "(surrogate; measured where measured). ✗ = the design breaks a constraint (weights do not fit or area "
             f"> 800 mm²). Baseline: energy {b['energy_j']:.3e} J, latency {b['latency_s']:.3e} s, area "
             f"{b['area_mm2']:.1f} mm², EDAP {b['edap_j_s_mm2']:.3e} J·s·mm², surrogate accuracy {b['accuracy']:.4f}"
             + (f", measured {b['measured_accuracy']:.4f}" if b.get("measured_accuracy") is not None else "") + ".",
             "", "Accuracy: " + res["accuracy_note"] + ".", ""]
    rows = []
    for sw in res["sweeps"]:
        for p in sw["points"]:
            acc = f"{100 * p['accuracy']:.2f}"
            if p.get("measured_accuracy") is not None:
                ci = p.get("accuracy_ci95") or (None, None)
                acc += f" / {100 * p['measured_accuracy']:.2f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
            rows.append([sw["sweep"], sw["group"], p["x"] + (" (baseline)" if sw["baseline_index"] is not None and
                                                             sw["points"].index(p) == sw["baseline_index"] else ""),
                         f"{p['energy_j_vs_baseline_x']:.3g}", f"{p['latency_s_vs_baseline_x']:.3g}",
                         f"{p['area_mm2_vs_baseline_x']:.3g}", f"{p['edap_j_s_mm2_vs_baseline_x']:.3g}", acc,
                         "" if p["feasible"] else "✗"])
    lines += markdown_table(["sweep", "group", "value", "energy [×]", "latency [×]", "area [×]", "EDAP [×]",
                             "accuracy [%] surrogate / measured [95 % CI]", "infeasible"], rows)
    lines += ["", "## Range spanned by single genes (others at the baseline), largest EDAP range first", "",
              "max / min over the gene's choices (valid designs); accuracy: max − min of the surrogate in points. "
              "Genes of blocks the baseline does not use have no effect (range 1).", ""]
    srt = sorted(res["single_genes"], key=lambda r: -(r["edap_j_s_mm2_range_x"] or 0))
    lines += markdown_table(["gene", "group", "energy [×]", "latency [×]", "area [×]", "EDAP [×]", "accuracy [points]"],
                            [[r["gene"], r["group"], fmt(r["energy_j_range_x"], ".3g"), fmt(r["latency_s_range_x"], ".3g"),
                              fmt(r["area_mm2_range_x"], ".3g"), fmt(r["edap_j_s_mm2_range_x"], ".3g"),
                              fmt(r["accuracy_range_points"], ".2f")] for r in srt[:25]])
    lines += ["", f"## Random sample: {rd['designs']} uniform designs", "",
              f"Evaluated at {rd['designs_per_second']:.3g} designs/s (analytic model + accuracy surrogate, this CPU, "
              f"load shown above); {100 * rd['valid_fraction']:.1f} % valid, {100 * rd['feasible_fraction']:.1f} % "
              "feasible (weights fit, area ≤ 800 mm²).", "",
              "Spearman rank correlation between the metrics (valid designs):", ""]
    cv = rd["spearman_valid"]
    lines += markdown_table([""] + cv["names"], [[n] + [f"{x:+.2f}" for x in row] for n, row in zip(cv["names"], cv["matrix"])])
    if rd.get("spearman_feasible"):
        cf = rd["spearman_feasible"]
        lines += ["", "Same, feasible designs only:", ""]
        lines += markdown_table([""] + cf["names"], [[n] + [f"{x:+.2f}" for x in row]
                                                    for n, row in zip(cf["names"], cf["matrix"])])
    lines += ["", f"Share of each metric's variance explained by each gene group alone (R² of a one-hot least-squares "
              f"fit on {rd['r2_designs']} valid designs; log10 for the hardware metrics):", ""]
    groups = list(next(iter(rd["group_r2"].values())))
    lines += markdown_table(["metric"] + groups, [[k] + [f"{v[g]:.3f}" for g in groups] for k, v in rd["group_r2"].items()])
    lines += ["", "Genes most rank-correlated with each metric (Spearman ρ over the random sample):", ""]
    lines += markdown_table(["metric", "genes (ρ)"], [[k, ", ".join(f"{n} ({r:+.2f})" for n, r in v)]
                                                     for k, v in rd["top_genes"].items()])
    return lines


def figures(ctx, res, truth):
    from cimnas_jax.report.plots import _plt, save
    plt = _plt()
    files = []
    colors = dict(energy_j="tab:blue", latency_s="tab:green", area_mm2="tab:purple", edap_j_s_mm2="k")
    for part, sel, fname, ncols in (("hardware genes", lambda sw: sw["group"].startswith("hardware"), "oat_hardware.png", 3),
                                    ("network and quantization (all genes of a kind at once)",
                                     lambda sw: not sw["group"].startswith("hardware"), "oat_network.png", 4)):
        sws = [sw for sw in res["sweeps"] if sel(sw)]
        nrows = -(-len(sws) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.7 * nrows + 0.6), squeeze=False)
        for ax, sw in zip(axes.flat, sws):
            xs = np.arange(len(sw["points"]))
            for k in ("energy_j", "latency_s", "area_mm2", "edap_j_s_mm2"):
                y = [p[f"{k}_vs_baseline_x"] for p in sw["points"]]
                ax.plot(xs, y, "-", color=colors[k], lw=1.2, label=LABELS[k])
                feas = [p["feasible"] for p in sw["points"]]
                ax.scatter(xs, y, s=18, color=colors[k], zorder=3,
                           facecolors=[colors[k] if f else "none" for f in feas])
            if sw["baseline_index"] is not None:
                ax.axvline(sw["baseline_index"], color="tab:red", ls="--", lw=1)
            ax.set_yscale("log")
            plain_log_ticks(ax)
            ax.set_xticks(xs, [p["x"] for p in sw["points"]], fontsize=7, rotation=0 if len(xs) < 7 else 45)
            ax.set_title(sw["label"], fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(sws):]:
            ax.axis("off")
        for ax in axes[:, 0]:
            ax.set_ylabel("metric / baseline [×]", fontsize=8)
        h, l = axes.flat[0].get_legend_handles_labels()
        from matplotlib.lines import Line2D
        h += [Line2D([], [], color="tab:red", ls="--"), Line2D([], [], marker="o", color="0.3", ls="", mfc="none")]
        l += ["baseline choice", "hollow: infeasible"]
        fig.legend(h, l, loc="lower center", ncol=6, fontsize=8, frameon=False)
        fig.suptitle(f"mbv2_rram, one at a time around the CIMNAS baseline: {part} ({truth.split(';')[0]}; "
                     "coinciding lines overprint)", fontsize=9)
        fig.tight_layout(rect=(0, 0.09 if nrows < 3 else 0.05, 1, 0.96))
        save(fig, ctx.path(fname), tight=False)
        files.append(fname)
    # accuracy of the network sweeps
    sws = [sw for sw in res["sweeps"] if not sw["group"].startswith("hardware")]
    fig, axes = plt.subplots(2, 4, figsize=(13, 5.6), squeeze=False)
    for ax, sw in zip(axes.flat, sws):
        xs = np.arange(len(sw["points"]))
        ax.plot(xs, [100 * p["accuracy"] for p in sw["points"]], "o-", color="tab:blue", label="surrogate")
        mp = [(x, p) for x, p in zip(xs, sw["points"]) if p.get("measured_accuracy") is not None]
        if mp:
            y = [100 * p["measured_accuracy"] for _, p in mp]
            lo = [100 * (p["measured_accuracy"] - p["accuracy_ci95"][0]) for _, p in mp]
            hi = [100 * (p["accuracy_ci95"][1] - p["measured_accuracy"]) for _, p in mp]
            ax.errorbar([x for x, _ in mp], y, yerr=[lo, hi], fmt="s", color="tab:orange", capsize=3,
                        label="measured (95 % CI)")
        if sw["baseline_index"] is not None:
            ax.axvline(sw["baseline_index"], color="tab:red", ls="--", lw=1, label="baseline choice")
        ax.set_xticks(xs, [p["x"] for p in sw["points"]], fontsize=7)
        ax.set_title(sw["label"], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy [%] (Fashion-MNIST)", fontsize=8)
    h, l = [], []
    for ax in axes.flat:
        for hh, ll in zip(*ax.get_legend_handles_labels()):
            if ll not in l:
                h.append(hh)
                l.append(ll)
    fig.legend(h, l, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("mbv2_rram: accuracy when one network/quantization kind moves (hardware never affects accuracy)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    save(fig, ctx.path("oat_accuracy.png"), tight=False)
    files.append("oat_accuracy.png")
    # correlations
    cv = res["random"]["spearman_valid"]
    M = np.asarray(cv["matrix"])
    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    im = ax.imshow(M, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(cv["names"])), cv["names"], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(cv["names"])), cv["names"], fontsize=8)
    for i in range(len(M)):
        for j in range(len(M)):
            ax.text(j, i, f"{M[i, j]:+.2f}", ha="center", va="center", fontsize=8,
                    color="w" if abs(M[i, j]) > 0.6 else "k")
    fig.colorbar(im, label="Spearman ρ")
    ax.set_title(f"mbv2_rram: metric correlations over {res['random']['designs']} random valid designs", fontsize=9)
    save(fig, ctx.path("correlations.png"))
    files.append("correlations.png")
    # group shares
    r2 = res["random"]["group_r2"]
    groups = [g for g in next(iter(r2.values())) if g != "all genes"]
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    w = 0.8 / len(groups)
    for j, g in enumerate(groups):
        ax.bar(np.arange(len(r2)) + (j - (len(groups) - 1) / 2) * w, [r2[k][g] for k in r2], w, label=g)
    ax.scatter(np.arange(len(r2)), [r2[k]["all genes"] for k in r2], marker="_", s=400, color="k",
               label="all genes (additive fit)", zorder=3)
    ax.set_xticks(range(len(r2)), list(r2), fontsize=8)
    ax.set_ylabel("variance explained, R² (one-hot least squares)")
    ax.set_ylim(0, 1.05)
    ax.set_title("mbv2_rram: which gene group moves each metric (random sample; log10 for hardware metrics)", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.grid(alpha=0.3, axis="y")
    save(fig, ctx.path("group_effects.png"))
    files.append("group_effects.png")
    return files
