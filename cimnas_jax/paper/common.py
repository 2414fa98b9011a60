"""What every paper experiment shares: its context, cached pipeline runs, cached verification of a
named set of designs, seed-spread summaries and the files every experiment writes.

An experiment is a function ``run(ctx) -> (results dict, table lines)`` in its own module; it
runs the search and verification through the pipeline (``pipeline.run`` on a ``RunConfig``, or the
verify stage on a set of designs it names) and formats what those measured. Sub-runs are cached in
``<out_dir>/<experiment>/runs/<tag>`` and ``.../verify/<tag>``: a rerun with the same settings
reuses them (so a killed experiment continues, and a CiMLoop verification can be added later
without repeating the searches); a sub-run whose configuration changed is redone.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from cimnas_jax.fileio import atomic_write, atomic_write_json
from cimnas_jax.pipeline.results import (Candidate, Finalists, SearchResult, Verification, clean, load_stage,
                                         save_stage)

SCALES = ("tiny", "small", "full")

UNITS = dict(energy_j="J per inference", latency_s="s per inference", area_mm2="mm^2 chip area",
             edap_j_s_mm2="J*s*mm^2 (energy x latency x area)", edp_j_s="J*s", tops_per_w="TOPS/W (2 x MACs / energy)",
             tops_per_mm2="TOPS/mm^2 (2 x MACs / latency / area)",
             accuracy="fraction of Fashion-MNIST test images classified correctly",
             accuracy_ci95="95 % Wilson interval", reduction_x="baseline value / design value (x)",
             improvement_x="design value / baseline value (x)", seconds="wall-clock seconds")


@dataclasses.dataclass
class Context:
    """One experiment's run: ``out_dir`` is DIR/NAME; ``settings`` the scale's settings (with the
    seeds); ``verify_hw`` the hardware ground truth asked for ('' = the experiment's default)."""

    name: str
    scale: str
    out_dir: Path
    settings: dict
    seeds: tuple
    verify_hw: str = ""
    log: Callable[[str], None] = print
    started: float = dataclasses.field(default_factory=time.perf_counter)
    load_start: tuple = dataclasses.field(default_factory=lambda: tuple(os.getloadavg()))
    sub_runs: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)

    def path(self, name: str) -> Path:
        return self.out_dir / name


@dataclasses.dataclass
class SubRun:
    """A pipeline run's stage results (or a verification's), with where and how long."""

    tag: str
    folder: Path
    search: Optional[SearchResult]
    finalists: Finalists
    verification: Verification
    seconds: float
    cached: bool

    def row(self, name: str) -> Optional[dict]:
        for r in self.verification.rows:
            if r["design"] == name:
                return r
        return None

    @property
    def best(self) -> Optional[dict]:
        """The first found design's verified row (the search's best), or None when none was found."""
        return self.row("found_1")


def _same(saved: dict, cfg_dict: dict) -> bool:
    """Whether a saved sub-run's configuration is ``cfg_dict``; a RunConfig field the saved run
    predates counts as its default value (as in ``pipeline.check``), so adding a flag does not
    invalidate finished runs."""
    from cimnas_jax.pipeline import RunConfig
    default = RunConfig().to_dict()
    saved = dict({k: v for k, v in default.items() if k in cfg_dict and k not in saved}, **saved)
    return json.loads(json.dumps(clean(saved))) == json.loads(json.dumps(clean(cfg_dict)))


def _fresh(folder: Path, ctx: Context) -> None:
    """Remove a sub-run folder that holds another configuration's output (only under ctx.out_dir)."""
    folder = folder.resolve()
    if folder.exists():
        if ctx.out_dir.resolve() not in folder.parents:
            raise ValueError(f"refusing to clear {folder}: not under {ctx.out_dir}")
        shutil.rmtree(folder)


def run_pipeline(ctx: Context, tag: str, cfg) -> SubRun:
    """``pipeline.run(cfg)`` into ``<out_dir>/runs/<tag>`` (stages search, refine, verify), or its
    saved output when the folder already holds a finished run of exactly this configuration."""
    from cimnas_jax import pipeline
    folder = ctx.out_dir / "runs" / tag
    t0 = time.perf_counter()
    if (folder / "stage_verify.json").is_file():
        saved = load_stage(folder, "verify")
        if _same(saved.get("config", {}), cfg.to_dict()):
            s = load_stage(folder, "search")
            sub = SubRun(tag, folder, SearchResult.from_dict(s["result"]), Finalists.from_dict(saved["finalists"]),
                         Verification.from_dict(saved["verification"]), float(saved.get("seconds", 0.0)), True)
            ctx.sub_runs.append(dict(tag=tag, seconds=sub.seconds, cached=True))
            return sub
    _fresh(folder, ctx)
    out = pipeline.run(cfg, folder, log=lambda line: _sublog(ctx, tag, line))
    seconds = time.perf_counter() - t0
    _patch_seconds(folder, seconds)
    ctx.sub_runs.append(dict(tag=tag, seconds=seconds, cached=False))
    ctx.log(f"  {tag}: {seconds:.1f} s" + _best_line(out["verification"]))
    return SubRun(tag, folder, out["search"], out["finalists"], out["verification"], seconds, False)


def _best_line(ver: Verification) -> str:
    rows = [r for r in ver.rows if r["origin"] != "reference" and r.get("edap_reduction_vs_baseline_x")]
    if not rows:
        return "  (no feasible design)"
    r = rows[0]
    return f"  best {r['design']}: EDAP {r['edap_j_s_mm2']:.3e} J*s*mm^2, {r['edap_reduction_vs_baseline_x']:.1f}x"


def _patch_seconds(folder: Path, seconds: float) -> None:
    p = folder / "stage_verify.json"
    d = json.loads(p.read_text())
    d["seconds"] = seconds
    atomic_write_json(p, d, indent=1, allow_nan=False)


def _sublog(ctx: Context, tag: str, line: str) -> None:
    with open(ctx.out_dir / "log.txt", "a") as fh:
        fh.write(f"[{tag}] {line}\n")


def verify_set(ctx: Context, tag: str, cfg, designs: Sequence[tuple]) -> SubRun:
    """The pipeline's verify stage on named designs: ``designs`` = [(name, genome, origin), ...] with
    the reference design first (origin "reference"; reductions are against it, and it is
    fine-tuned when cfg.finetune_steps > 0, with the cfg.finetune_designs best others). Cached in
    ``<out_dir>/verify/<tag>`` by configuration and genomes."""
    from cimnas_jax.pipeline import fitness_for
    from cimnas_jax.pipeline import verify as verify_stage
    from cimnas_jax.pipeline.context import RunContext
    from cimnas_jax.space import get_space
    space = get_space(cfg.space)
    if not designs or designs[0][2] != "reference":
        raise ValueError("verify_set: the first design must be the reference design")
    folder = ctx.out_dir / "verify" / tag
    key = dict(cfg.to_dict(), designs=[[n, [int(x) for x in g], o] for n, g, o in designs])
    t0 = time.perf_counter()
    if (folder / "stage_verify.json").is_file():
        saved = load_stage(folder, "verify")
        if _same(saved.get("config", {}), key):
            sub = SubRun(tag, folder, None, Finalists.from_dict(saved["finalists"]),
                         Verification.from_dict(saved["verification"]), float(saved.get("seconds", 0.0)), True)
            ctx.sub_runs.append(dict(tag=f"verify/{tag}", seconds=sub.seconds, cached=True))
            return sub
    _fresh(folder, ctx)
    folder.mkdir(parents=True, exist_ok=True)
    cfg.check()
    verify_stage.check_inputs(cfg, space)
    g = np.asarray([d[1] for d in designs], np.int32)
    hashes = space.hash_hex(g)
    cands = [Candidate(name=n, genome=[int(x) for x in gg], hash=h, origin=o)
             for (n, _, o), gg, h in zip(designs, g, hashes)]
    fin = Finalists(candidates=cands, rule="named by the experiment")
    rctx = RunContext(folder, log=lambda line: _sublog(ctx, f"verify/{tag}", line))
    ver = verify_stage.verify(cfg, rctx, space, fin, fitness_for(cfg, space))
    seconds = time.perf_counter() - t0
    save_stage(folder, "verify", {"verification": ver.to_dict(), "finalists": fin.to_dict(), "seconds": seconds}, key)
    ctx.sub_runs.append(dict(tag=f"verify/{tag}", seconds=seconds, cached=False))
    ctx.log(f"  verify/{tag}: {len(designs)} designs by {ver.hw_truth} in {seconds:.1f} s ({ver.accuracy_note[:80]})")
    return SubRun(tag, folder, None, fin, ver, seconds, False)


# ---------------------------------------------------------------------- numbers
def spread(values) -> dict:
    """Median and range of the finite values (n = how many); None entries are skipped."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return dict(median=None, min=None, max=None, n=0)
    return dict(median=statistics.median(v), min=min(v), max=max(v), n=len(v))


def fmt_spread(s: dict, spec: str = ".3e") -> str:
    """'1.23e-04 [1.10e-04, 1.40e-04]' (median [min, max]); 'n/a' when empty."""
    if not s or s.get("median") is None:
        return "n/a"
    if s["n"] == 1:
        return format(s["median"], spec)
    return f"{format(s['median'], spec)} [{format(s['min'], spec)}, {format(s['max'], spec)}]"


def median_index(values) -> Optional[int]:
    """Index of the median value (the lower middle for an even count); None when all are None."""
    idx = [i for i, x in enumerate(values) if x is not None and math.isfinite(float(x))]
    if not idx:
        return None
    idx.sort(key=lambda i: float(values[i]))
    return idx[(len(idx) - 1) // 2]


def ratio(a, b):
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or not b:
        return None
    return float(a) / float(b)


def layer_mean_tops(space, genomes) -> tuple[np.ndarray, np.ndarray]:
    """CIMNAS's definition of TOPS/W and TOPS/mm^2: the mean over a design's active layers of the
    per-layer values 2·MACs_l / energy_l [J] / 1e12 and 2·MACs_l / latency_l [s] / chip area [mm^2] / 1e12
    (analytic CIM model), each ``float64 [P]`` for genomes ``int32 [P, G]``. The whole-network values
    in the tables (2·ΣMACs / Σenergy, 2·ΣMACs / Σlatency / area) weigh layers by their cost instead."""
    import jax.numpy as jnp
    from cimnas_jax.hw import evaluate_designs
    g = jnp.asarray(np.asarray(genomes, np.int32))
    r = evaluate_designs(space, g)
    macs = np.asarray(space.workloads(g).macs, np.float64)
    e, lat = np.asarray(r.layer_energy_j, np.float64), np.asarray(r.layer_latency_s, np.float64)
    area = np.asarray(r.area_mm2, np.float64)[:, None]
    act = macs > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        tw = np.where(act, 2 * macs / e / 1e12, 0.0)
        tm = np.where(act, 2 * macs / lat / area / 1e12, 0.0)
    n = act.sum(1)
    return tw.sum(1) / n, tm.sum(1) / n


def design_summary(space, genome) -> dict:
    """Hardware genes and a short network description of one genome (report.designs.decode)."""
    from cimnas_jax.report import designs as D
    d = D.decode(space, genome)
    return dict(hardware=d["hardware"], network={k: D.values_cell(v) for k, v in d["network"].items()})


# ---------------------------------------------------------------------- files
def machine() -> dict:
    return dict(cpus=os.cpu_count(), affinity=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None)


def write_outputs(ctx: Context, results: dict, table: list[str], hw_truth: str, figures: Sequence[str]) -> dict:
    """DIR/NAME/results.json (results + units + provenance + ground truth + timing) and table.md
    (a header naming the same, then ``table``). Returns the summary dict written."""
    from cimnas_jax.provenance import provenance
    wall = time.perf_counter() - ctx.started
    load_end = tuple(os.getloadavg())
    prov = provenance(experiment=ctx.name, scale=ctx.scale, seeds=list(ctx.seeds))
    meta = dict(experiment=ctx.name, scale=ctx.scale, seeds=list(ctx.seeds), settings=ctx.settings,
                hardware_ground_truth=hw_truth, wall_seconds=wall,
                machine=dict(machine(), load_average_1_5_15_start=list(ctx.load_start),
                             load_average_1_5_15_end=list(load_end)),
                sub_runs=ctx.sub_runs, figures=list(figures), units=UNITS, provenance=prov)
    atomic_write_json(ctx.path("results.json"), clean(dict(meta, results=results)), indent=1, allow_nan=False)
    head = [f"# {ctx.name} ({ctx.scale})", "",
            f"- hardware ground truth: **{hw_truth}**",
            f"- seeds: {', '.join(map(str, ctx.seeds))}; numbers are median [min, max] over seeds where a "
            "range is shown",
            f"- wall time {wall:.0f} s on {machine()['cpus']} CPUs, load average (1 min) {ctx.load_start[0]:.1f} at "
            f"start, {load_end[0]:.1f} at end" + reuse_note(ctx.sub_runs),
            f"- commit {prov['git_commit'] or 'unknown'}; command `{' '.join(prov['command'][1:]) or '?'}`",
            f"- figures: {', '.join(figures) if figures else 'none'}; everything in results.json", ""]
    atomic_write(ctx.path("table.md"), "\n".join(head + list(table)) + "\n")
    return meta


def reuse_note(sub_runs) -> str:
    """'' when every sub-run ran now, else '; N of M sub-runs reused from an earlier run of the same
    configuration (they took S s when they ran)' -- so a re-rendered table's wall time is not read as
    the experiment's run time."""
    done = [s for s in sub_runs if s.get("cached")]
    if not done:
        return ""
    return (f"; {len(done)} of {len(sub_runs)} sub-runs reused from an earlier run of the same configuration "
            f"(they took {sum(float(s.get('seconds') or 0) for s in done):.0f} s when they ran)")


def network_stats(space, genome) -> dict:
    """A network in a few numbers: active blocks and, over them, the mean of every per-block
    architecture array the space exposes (kernel, channels, bits, ...)."""
    g = np.asarray(genome, np.int32)[None]
    arch = {k: np.asarray(v)[0] for k, v in space.architecture(g).items()}
    act = np.asarray(arch.get("block_active", np.ones(0, bool)), bool)
    out = {"active_blocks": int(act.sum())}
    for k, v in arch.items():
        if k == "block_active":
            continue
        v = np.asarray(v, np.float64)
        if v.ndim == 1 and len(v) == len(act) and act.any():
            out[f"mean_{k}"] = float(v[act].mean())
        elif v.ndim == 1 and len(v) <= 8:
            out[k] = [float(x) for x in v]
    return out


def hardware_cell(hw: dict) -> str:
    """'0.7 V, 4 b/cell, 4 ns, 128×128, rg 8, 16×16 macros, 8 MB' style text of a hardware dict."""
    parts = []
    for k, v in hw.items():
        parts.append(f"{k}={v:g}")
    return ", ".join(parts)


# ---------------------------------------------------------------------- accuracy against the baseline
VS_KEYS = ("accuracy_vs_baseline", "accuracy_vs_baseline_p", "accuracy_difference_vs_baseline",
           "accuracy_difference_ci95", "accuracy_vs_baseline_test")


def vs_fields(row: dict) -> dict:
    """The verify stage's comparison of a row's measured accuracy with the baseline's (VS_KEYS)."""
    return {k: row.get(k) for k in VS_KEYS}


def vs_suffix(d: dict) -> str:
    """' (lower: −1.17 points, McNemar p = 3e-12)' for a design's comparison with the baseline, '' if none."""
    vs = d.get("accuracy_vs_baseline")
    if not vs:
        return ""
    if d.get("accuracy_vs_baseline_p") is None:
        return f" ({vs})"
    return (f" ({vs}: {100 * d['accuracy_difference_vs_baseline']:+.2f} points, "
            f"McNemar p = {d['accuracy_vs_baseline_p']:.2g})")
