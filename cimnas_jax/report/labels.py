"""The labelling CLI's summary: summary.md (counts, ranges with units, the backend, cache statistics,
time) and labels.png (histograms of the labels), from the label folder's designs."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cimnas_jax.fileio import atomic_write
from cimnas_jax.report import plots
from cimnas_jax.report.tables import fmt, markdown_table

METRICS = (("energy_j", "energy [J]"), ("latency_s", "latency [s]"), ("area_mm2", "area [mm²]"),
           ("edap_j_s_mm2", "EDAP [J·s·mm²]"), ("tops_per_w_total", "TOPS/W"), ("tops_per_mm2_total", "TOPS/mm²"))


def write(out_dir, designs: list, manifest: dict, stats: dict) -> Path:
    """summary.md + labels.png in ``out_dir``; returns the summary's path."""
    out = Path(out_dir)
    valid = [d for d in designs if d.get("valid")]
    backend = manifest.get("backend", "?")
    source = {"cimloop": "real CiMLoop", "analytic": "the analytic CIM model",
              "analytic_layers": "the analytic CIM model per layer record (standing in for CiMLoop)"}.get(backend, backend)
    lines = [f"# Hardware labels: {manifest.get('space', '?')}", "",
             f"- source: **{source}** (backend `{backend}`), technology {manifest.get('technology', '?')}",
             f"- designs: {len(designs)} of {manifest.get('n_designs', '?')} planned, {len(valid)} valid "
             f"({len(designs) - len(valid)} invalid: a layer without a mapping, weights that do not fit, or a "
             "failed evaluation)",
             f"- sampler: {manifest.get('sampler', '?')}, seed {manifest.get('seed', '?')}", ""]
    rows = []
    for key, label in METRICS:
        v = np.asarray([d[key] for d in valid if d.get(key) is not None], np.float64)
        if len(v):
            rows.append([label, len(v), fmt(v.min()), fmt(float(np.median(v))), fmt(v.max())])
    if rows:
        lines += markdown_table(["metric (valid designs)", "n", "min", "median", "max"], rows) + [""]
    run = stats.get("run", {})
    if run:
        lines.append(f"- this run: {run.get('n_written', 0)} designs written, {run.get('n_skipped_resume', 0)} "
                     f"already present (resumed), {fmt(run.get('wall_seconds'), '.1f')} s")
    sk = stats.get("skipped_lines") or {}
    if sk.get("corrupt_lines") or sk.get("truncated_last_lines_cut"):
        lines.append(f"- **skipped on reading designs.jsonl**: {len(sk.get('corrupt_lines', []))} corrupt line(s) "
                     f"(line numbers {sk.get('corrupt_lines', [])[:10]}) and {sk.get('truncated_last_lines_cut', 0)} "
                     "truncated last line(s) cut off; their designs were labelled again")
    if "cache_hit_rate" in stats:
        lines.append(f"- distinct layer evaluations {stats.get('unique_evaluations')} for "
                     f"{stats.get('layer_calls_cimnas')} layer calls (CIMNAS makes one per layer per design): "
                     f"cache hit rate {100 * stats['cache_hit_rate']:.1f} %")
    lines += ["", "Files: designs.jsonl (one line per design, per-layer labels inside), designs.csv, layers.csv, "
              "manifest.json, stats.json, labels.png.", ""]
    atomic_write(out / "summary.md", "\n".join(lines))
    _plot(out / "labels.png", valid, source)
    return out / "summary.md"


def _plot(path, valid, source):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, (key, label) in zip(axes, METRICS[:3]):
        v = np.asarray([d[key] for d in valid if d.get(key)], np.float64)
        if len(v):
            ax.hist(np.log10(v), bins=min(40, max(5, int(math.sqrt(len(v))))), color="tab:blue")
        ax.set_xlabel(f"log10 {label}")
        ax.set_ylabel("designs")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{len(valid)} valid designs, labelled by {source}", fontsize=10)
    plots.save(fig, path)
