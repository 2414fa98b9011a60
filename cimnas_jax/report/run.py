"""The main job's report: report.md, results.json, finalists.csv, convergence.png, finalists.png."""
from __future__ import annotations

from pathlib import Path

from cimnas_jax.fileio import atomic_write, atomic_write_json
from cimnas_jax.pipeline.results import clean
from cimnas_jax.report import designs as D
from cimnas_jax.report import plots
from cimnas_jax.report import refine as R
from cimnas_jax.report.tables import csv_text, fmt, markdown_table

UNITS = dict(energy_j="J", latency_s="s", area_mm2="mm^2", edap_j_s_mm2="J*s*mm^2", tops_per_w="TOPS/W",
             tops_per_mm2="TOPS/mm^2", accuracy="fraction of test images classified correctly",
             accuracy_ci95="95 % Wilson interval of the measured accuracy",
             edap_reduction_vs_baseline_x="baseline EDAP / design EDAP", cells_needed="crossbar cells",
             cells_available="crossbar cells", macs="multiply-accumulates per inference",
             candidates_per_second="fitness evaluations per second of the search")

CSV_COLUMNS = ["design", "design_hash", "origin", "valid", "energy_j", "latency_s", "area_mm2", "edap_j_s_mm2",
               "edap_reduction_vs_baseline_x", "tops_per_w", "tops_per_mm2", "predicted_accuracy",
               "measured_accuracy", "accuracy_ci95_lo", "accuracy_ci95_hi", "finetuned_accuracy",
               "predicted_energy_j", "predicted_latency_s", "predicted_area_mm2", "predicted_error_energy",
               "predicted_error_latency", "predicted_error_area"]


def _acc_cell(r, key, ci_key):
    a = r.get(key)
    if a is None:
        return "n/a"
    ci = r.get(ci_key)
    return f"{a:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{a:.4f}"


def _pct(x):
    return "n/a" if x is None else f"{100 * x:+.2f} %"


def write(out_dir, space, cfg, search, finalists, ver, provenance: dict, wall_seconds: float | None = None,
          refinement: dict | None = None) -> Path:
    """Render the run; returns the path of report.md. ``refinement``: the refine stage's summary
    (None: not run for these finalists)."""
    out = Path(out_dir)
    rows = [dict(r) for r in ver.rows]
    prov_by_name = {c.name: c.provenance for c in finalists.candidates}
    for r in rows:
        dec = D.decode(space, r["genome"])
        r["hardware"], r["network"], r["genes"] = dec["hardware"], dec["network"], dec["genes"]
        r["provenance"] = prov_by_name.get(r["design"], {})
    hw_src = ver.hw_truth
    from cimnas_jax.pipeline.fitness import search_model_info
    try:
        search_model = search_model_info(cfg, space)
    except (FileNotFoundError, ValueError) as e:     # a correction moved away since the search ran
        search_model = {"hw_source": cfg.hw_source, "name": f"{cfg.hw_source} ({e})", "correction": None}
    search_src = f"{search_model['name']} hardware, {cfg.accuracy_source} accuracy"
    results = dict(config=cfg.to_dict(), provenance=provenance, units=UNITS, search_model=search_model,
                   hardware_ground_truth=dict(source=hw_src, why=ver.hw_truth_why),
                   accuracy=ver.accuracy_note, search=search.to_dict() if search else None,
                   history=search.history if search else [],
                   finalists=dict(rule=finalists.rule, note=finalists.note), refinement=refinement, designs=rows,
                   verification_seconds=ver.seconds, wall_seconds=wall_seconds)
    atomic_write_json(out / "results.json", clean(results), allow_nan=False)

    hw_names = list(rows[0]["hardware"]) if rows else []
    gene_cols = [g.name for g in space.genes]
    csv_rows = []
    for r in rows:
        ci = r.get("accuracy_ci95") or (None, None)
        csv_rows.append({**r, "accuracy_ci95_lo": ci[0], "accuracy_ci95_hi": ci[1],
                         **{f"gene:{k}": v for k, v in r["genes"].items()}})
    atomic_write(out / "finalists.csv", csv_text(CSV_COLUMNS + [f"gene:{n}" for n in gene_cols], csv_rows))

    if search and search.history:
        plots.convergence(out / "convergence.png", search.history,
                          f"best feasible {search.objective}  (search model: {search_src})",
                          f"{space.name}: best design so far ({search.algorithm})")
    from cimnas_jax.pipeline.verify import best_accuracy
    acc_kind = ("fine-tuned/measured" if any(r.get("measured_accuracy") is not None for r in rows)
                else "predicted by the surrogate")
    pts = [dict(x=r["edap_j_s_mm2"], y=best_accuracy(r), label=r["design"], baseline=r["origin"] == "reference",
                ci=r.get("finetuned_ci95") if r.get("finetuned_accuracy") is not None else r.get("accuracy_ci95"))
           for r in rows]
    if all(p["y"] is None for p in pts):
        pts = [dict(p, y=1.0) for p in pts]
        acc_kind = "not measured"
    plots.labelled_scatter(out / "finalists.png", pts, f"EDAP [J·s·mm²]  ({hw_src})",
                           f"accuracy [fraction]  ({acc_kind})",
                           f"{space.name}: verified designs vs the reference design")

    lines = [f"# cimnas-jax run: {space.name}", ""]
    if search:
        lines.append(f"- search: {search.algorithm}, population {cfg.population}, {cfg.generations} generations, "
                     f"{search.evaluations} evaluations in {search.seconds:.1f} s including compilation, "
                     f"{search.candidates_per_second:.3g} candidates/s"
                     + (f" ({search.steady_candidates_per_second:.3g} candidates/s once compiled)"
                        if search.steady_candidates_per_second else "")
                     + f"; objective {search.objective}; scored by: {search_src}")
    lines += [f"- hardware ground truth: **{hw_src}** ({ver.hw_truth_why}); technology "
              f"{cfg.technology or space.technology}",
              f"- accuracy: {ver.accuracy_note}",
              f"- reference design: {space.reference_doc}",
              f"- finalists: rule {finalists.rule}" + (f"; {finalists.note}" if finalists.note else "")]
    if wall_seconds is not None:
        lines.append(f"- total wall time {wall_seconds:.0f} s")
    found = [r for r in rows if r["origin"] != "reference" and r.get("edap_reduction_vs_baseline_x")]
    if found:
        # the design the objective prefers under the ground truth (EDAP / inherited accuracy where measured)
        best = min(found, key=lambda r: r["edap_j_s_mm2"] / (r.get("measured_accuracy") or 1.0))
        base = rows[0]
        both_ft = best.get("finetuned_accuracy") is not None and base.get("finetuned_accuracy") is not None
        key, basis = ("finetuned_accuracy", "fine-tuned") if both_ft else ("measured_accuracy", "inherited")
        acc_txt = ""
        if best.get(key) is not None and base.get(key) is not None:
            acc_txt = (f"; {basis} accuracy {best[key]:.4f} vs {base[key]:.4f} for the reference "
                       f"({_vs_text(best)})")
        lines += ["", f"**Headline ({hw_src}):** {best['design']} (best verified EDAP / accuracy) has "
                  f"**{best['edap_reduction_vs_baseline_x']:.1f}× lower EDAP** than the reference design (the search "
                  f"model, {search_model['name']}, says {best['predicted_edap_reduction_vs_baseline_x']:.1f}×){acc_txt}."]
    flagged = [r["design"] for r in rows if r.get("model_disagrees_on")]
    if flagged:
        lines += ["", f"**Warning:** the search model and {hw_src} differ by more than "
                  f"{100 * ver.extra.get('tolerance', 0):g} % on {', '.join(flagged)} (see the error table)."]
    lines.append("")
    lines += [f"Hardware figures: {hw_src} (ground truth). Accuracy: predicted by the search's model; measured "
              "(inherited supernet weights) and fine-tuned on the test images, with 95 % intervals; 'vs baseline': "
              "the design against the reference on the same test images (exact McNemar test, two-sided, 5 %; "
              "p-value in brackets).", ""]
    lines += markdown_table(
        ["design", "origin", "valid", "energy [J]", "latency [s]", "area [mm²]", "EDAP [J·s·mm²]",
         "EDAP reduction [×]", "TOPS/W", "TOPS/mm²", "accuracy predicted", "accuracy inherited [95 % CI]",
         "accuracy fine-tuned [95 % CI]", "vs baseline"],
        [[r["design"], r["origin"], fmt(r["valid"]), fmt(r["energy_j"]), fmt(r["latency_s"]),
          fmt(r["area_mm2"], ".1f"), fmt(r["edap_j_s_mm2"]), fmt(r.get("edap_reduction_vs_baseline_x"), ".1f"),
          fmt(r["tops_per_w"], ".3f"), fmt(r["tops_per_mm2"], ".4f"), fmt(r.get("predicted_accuracy"), ".4f"),
          _acc_cell(r, "measured_accuracy", "accuracy_ci95"), _acc_cell(r, "finetuned_accuracy", "finetuned_ci95"),
          _vs_cell(r)]
         for r in rows])
    lines += ["", f"Search model ({search_src}) against the ground truth ({hw_src}), per design: values, relative "
              f"error (model / truth − 1; flagged ⚠ beyond {100 * ver.extra.get('tolerance', 0):g} %) and the EDAP "
              "reduction under each; accuracy: predicted − measured.", ""]
    lines += markdown_table(
        ["design", "energy model / truth [J]", "latency model / truth [s]", "area model / truth [mm²]",
         "EDAP reduction model / truth [×]", "accuracy error", "flag"],
        [[r["design"],
          f"{fmt(r.get('predicted_energy_j'))} / {fmt(r['energy_j'])} ({_pct(r.get('predicted_error_energy'))})",
          f"{fmt(r.get('predicted_latency_s'))} / {fmt(r['latency_s'])} ({_pct(r.get('predicted_error_latency'))})",
          f"{fmt(r.get('predicted_area_mm2'), '.1f')} / {fmt(r['area_mm2'], '.1f')} ({_pct(r.get('predicted_error_area'))})",
          f"{fmt(r.get('predicted_edap_reduction_vs_baseline_x'), '.1f')} / {fmt(r.get('edap_reduction_vs_baseline_x'), '.1f')}",
          fmt(r.get("accuracy_surrogate_error"), "+.4f"),
          ("⚠ " + ", ".join(r["model_disagrees_on"])) if r.get("model_disagrees_on") else "ok"]
         for r in rows])
    lines += [""] + R.section(refinement, search_src)
    lines += ["Hardware of each design:", ""]
    lines += markdown_table(["design"] + hw_names,
                            [[r["design"]] + [f"{r['hardware'][n]:g}" for n in hw_names] for r in rows])
    lines += ["", "Network and quantization of each design (values of the active genes of each kind, in block "
              "order; every gene is also in finalists.csv):", ""]
    kinds = list(dict.fromkeys(k for r in rows for k in r["network"]))
    lines += markdown_table(["design"] + kinds,
                            [[r["design"]] + [D.values_cell(r["network"].get(k, [])) for k in kinds] for r in rows])
    lines += ["", "Files: results.json (everything, with units and provenance), finalists.csv (one row per design, "
              "every gene decoded), convergence.png, finalists.png, config.json (repeat with --config).", ""]
    atomic_write(out / "report.md", "\n".join(lines))
    return out / "report.md"


def _vs_text(r) -> str:
    """'indistinguishable (exact McNemar p = 0.41, difference −0.25 points [−0.9, +0.4])' or the fallback."""
    vs = r.get("accuracy_vs_baseline", "not compared")
    if r.get("accuracy_vs_baseline_p") is None:
        return f"{vs}: {r['accuracy_vs_baseline_test']}" if r.get("accuracy_vs_baseline_test") else vs
    lo, hi = r["accuracy_difference_ci95"]
    return (f"{vs}: exact McNemar p = {r['accuracy_vs_baseline_p']:.2g}, difference "
            f"{100 * r['accuracy_difference_vs_baseline']:+.2f} points [{100 * lo:+.2f}, {100 * hi:+.2f}]")


def _vs_cell(r) -> str:
    if "accuracy_vs_baseline" not in r:
        return "—" if r["origin"] == "reference" else "n/a"
    p = r.get("accuracy_vs_baseline_p")
    return r["accuracy_vs_baseline"] + (f" (p = {p:.2g})" if p is not None else "")
