"""The search CLI's outputs: results.json, results.csv and a plot (best-so-far or the front)."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from cimnas_jax.fileio import atomic_write
from cimnas_jax.pipeline.results import clean
from cimnas_jax.report import plots
from cimnas_jax.report.tables import csv_text

UNITS = {"energy_j": "J", "latency_s": "s", "area_mm2": "mm^2", "edap_j_s_mm2": "J*s*mm^2",
         "accuracy": "fraction", "cells_needed": "cells", "cells_available": "cells",
         "violation": "relative constraint violation (0 = feasible)"}
UNIT_LABELS = {"energy": "energy [J]", "latency": "latency [s]", "area": "area [mm²]",
               "edap": "EDAP [J·s·mm²]", "edp": "EDP [J·s]", "error": "1 − accuracy [fraction]"}


def design_rows(sp, genomes, fitness_fn, objective) -> list[dict]:
    """One dict per genome: objective values, violation, metrics with units, decoded genes."""
    if not len(genomes):
        return []
    g = jnp.asarray(genomes)
    m = jax.device_get(jax.jit(fitness_fn)(g))
    F, viol = jax.device_get(objective(m))
    decoded = jax.device_get(sp.decode(g))
    hashes = sp.hash_hex(np.asarray(genomes))
    rows = []
    for i in range(len(genomes)):
        row = {"rank": i, "hash": hashes[i]}
        for j, t in enumerate(objective.names):
            row[f"objective_{t}"] = float(F[i, j])
        row["violation"] = float(viol[i])
        row["feasible"] = bool(viol[i] == 0)
        for k in ("energy_j", "latency_s", "area_mm2", "accuracy", "cells_needed", "cells_available"):
            row[k] = float(m[k][i])
        row["edap_j_s_mm2"] = row["energy_j"] * row["latency_s"] * row["area_mm2"]
        row["valid"] = bool(m["valid"][i])
        for name in sp.gene_names:
            row[name] = float(decoded[name][i])
        row["genome"] = [int(x) for x in genomes[i]]
        rows.append(row)
    return rows


def write(out_dir, sp, search, state, history, objective, fitness_fn, config: dict, wall_s: float,
          top: int = 20) -> dict:
    """Write the search's outputs; returns {"files": [...], "summary": one line}."""
    from cimnas_jax.provenance import provenance
    from cimnas_jax.search import hv_exact
    d = search.final_designs(state)
    mask, viol = np.asarray(d.mask), np.asarray(d.violation)
    order = [i for i in np.lexsort((np.arange(len(mask)), viol)) if mask[i]]   # feasible first, stable
    if objective.n_objectives == 1:
        order = order[:top]
    genomes = np.asarray(d.genomes)[order]
    rows = design_rows(sp, genomes, fitness_fn, objective)
    out = {"config": config, "provenance": provenance(), "units": UNITS, "wall_s": wall_s, "history": history,
           "designs": rows}
    if search.multi and rows:
        ref = np.asarray(jax.device_get(state.hv_ref), np.float64)
        feas = np.asarray([r["feasible"] for r in rows])
        if np.all(np.isfinite(ref)) and feas.any():
            F = np.asarray([[r[f"objective_{t}"] for t in objective.names] for r in rows])[feas]
            out["hypervolume_exact_normalised"] = hv_exact(F / ref, np.ones_like(ref))
            out["hypervolume_reference"] = ref.tolist()
    os.makedirs(out_dir, exist_ok=True)
    atomic_write(os.path.join(out_dir, "results.json"), json.dumps(clean(out), indent=1, allow_nan=False))
    cols = (list(rows[0]) if rows else ["rank", "hash"] + [f"objective_{t}" for t in objective.names]
            + ["violation", "feasible"] + list(UNITS) + list(sp.gene_names) + ["genome"])
    cols = [c for c in cols if c != "genome"] + ["genome"]
    atomic_write(os.path.join(out_dir, "results.csv"),
                 csv_text(cols, [{**r, "genome": " ".join(map(str, r["genome"]))} for r in rows]))
    png = _plot(out_dir, history, rows, objective, search.algo.name)
    feasible = [r for r in rows if r["feasible"]]
    if not feasible:
        summary = "no feasible design found: every candidate broke a constraint or failed to evaluate"
    elif objective.n_objectives == 1:
        b = feasible[0]
        summary = (f"best: {objective.name} = {b['objective_' + objective.names[0]]:.4e}  energy {b['energy_j']:.4e} J"
                   f"  latency {b['latency_s']:.4e} s  area {b['area_mm2']:.2f} mm^2  EDAP {b['edap_j_s_mm2']:.4e}"
                   " J*s*mm^2")
    else:
        summary = (f"front: {len(feasible)} non-dominated feasible designs; hypervolume (exact, normalised) "
                   f"{out.get('hypervolume_exact_normalised', float('nan')):.4f}")
    return {"files": ["results.json", "results.csv", os.path.basename(png)], "summary": summary}


def _plot(outdir, history, rows, objective, algorithm: str):
    if objective.n_objectives == 1:
        return str(plots.convergence(os.path.join(outdir, "best_so_far.png"), history,
                                     f"best feasible {objective.name}"
                                     + (" [J·s·mm²]" if objective.name == "edap" else ""),
                                     f"{algorithm}: best design so far"))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    t = objective.names
    feas = [r for r in rows if r["feasible"]]
    if feas:
        x = [r[f"objective_{t[0]}"] for r in feas]
        y = [r[f"objective_{t[1]}"] for r in feas]
        c = [r[f"objective_{t[2]}"] for r in feas] if len(t) > 2 else None
        sc = ax.scatter(x, y, c=c, s=14)
        if c is not None:
            fig.colorbar(sc, label=UNIT_LABELS.get(t[2], t[2]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(UNIT_LABELS.get(t[0], t[0]))
    ax.set_ylabel(UNIT_LABELS.get(t[1], t[1]))
    ax.set_title(f"{algorithm}: front of {len(feas)} feasible designs")
    ax.grid(alpha=0.3)
    return str(plots.save(fig, os.path.join(outdir, "pareto_front.png")))
