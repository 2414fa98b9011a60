"""The CIMNAS paper's experiments, reproduced and extended, one command each.

    cimnas-jax paper --experiment=mbv2_table --small --out_dir=runs/paper
    python experiments/paper.py --experiment=all --out_dir=runs/paper        # full settings

Each experiment is a module here with ``SETTINGS`` per scale (tiny: the tests; small: < 20 min on a
2-core CPU; full: the documented runs), ``run(ctx) -> results``, ``table(ctx, results, truth)`` and
``figures(ctx, results, truth)``; every search and verification goes through the pipeline
(``cimnas_jax.pipeline``), see ``common``. Each writes DIR/NAME/{results.json, table.md, *.png}.
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path

from cimnas_jax.paper.common import SCALES, Context, write_outputs

EXPERIMENTS = {
    "mbv2_table": "the headline table: searched design vs the CIMNAS baseline, hardware-only, network+quantization "
                  "and quantization-only optimisation (energy, latency, area, EDAP, TOPS/W, TOPS/mm², accuracy)",
    "parameter_effects": "how each gene group moves energy, latency, area and accuracy; metric correlations "
                         "(one-at-a-time sweeps + a large random sample)",
    "top_designs": "the best designs under several objectives (EDAP/accuracy, EDAP, EDP, energy, latency, area)",
    "priority": "CIMNAS's priority-based objective under several coefficient settings",
    "resnet50_sram7nm": "ResNet50 on 7 nm SRAM against the space's ResNet50 baseline (CIMNAS: up to 819.5×)",
    "pareto": "NSGA-II accuracy–EDAP and energy–latency–area fronts vs the GA optimum; hypervolume vs pymoo",
}


def module(name: str):
    return importlib.import_module(f"cimnas_jax.paper.{name}")


def settings_for(name: str, scale: str, seeds: int = 0) -> tuple[dict, tuple]:
    """(settings, seeds) of experiment ``name`` at ``scale``; ``seeds`` > 0 overrides the count."""
    s = dict(module(name).SETTINGS[scale])
    n = seeds or s["seeds"]
    s["seeds"] = n
    return s, tuple(range(n))


def run_experiment(name: str, scale: str, out_dir, seeds: int = 0, verify_hw: str = "", log=print) -> dict:
    """Run one experiment into ``out_dir/name``; returns the summary written to results.json."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; allowed: {', '.join(EXPERIMENTS)}")
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; allowed: {', '.join(SCALES)}")
    mod = module(name)
    settings, seed_list = settings_for(name, scale, seeds)
    out = Path(out_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(name=name, scale=scale, out_dir=out, settings=settings, seeds=seed_list, verify_hw=verify_hw,
                  log=log)
    log(f"[{name}] {scale} settings {settings}; seeds {list(seed_list)}; output {out}")
    res = mod.run(ctx)
    truth = res.get("hardware_ground_truth", "analytic CIM model")
    figs = mod.figures(ctx, res, truth)
    meta = write_outputs(ctx, res, mod.table(ctx, res, truth), truth, figs)
    log(f"[{name}] done in {time.perf_counter() - ctx.started:.0f} s: {out / 'table.md'}")
    return meta


__all__ = ["EXPERIMENTS", "SCALES", "run_experiment", "settings_for", "module"]
