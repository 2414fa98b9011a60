"""Stage 3, verify: every finalist and the reference design re-scored by the hardware ground truth,
and their accuracy measured on held-out test images with the space's quantization-aware supernet
(optionally after QAT fine-tuning).

Rows (one per candidate) carry: ``design``, ``design_hash``, ``origin``, ``genome``; the ground
truth's ``valid``, ``energy_j``, ``latency_s``, ``area_mm2``, ``edap_j_s_mm2``, ``macs``,
``tops_per_w``, ``tops_per_mm2``, ``cells_needed``, ``cells_available`` and breakdowns; the search
model's ``predicted_energy_j``, ``predicted_latency_s``, ``predicted_area_mm2``, ``predicted_accuracy`` and
the relative errors ``predicted_error_energy`` etc.; ``measured_accuracy`` with ``accuracy_ci95``
(Wilson interval over ``accuracy_images`` test images), ``finetuned_accuracy`` (+ CI) where
fine-tuned; ``edap_reduction_vs_baseline_x``.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from cimnas_jax.pipeline.results import Verification
from cimnas_jax.stats import wilson_interval

VERIFY_HW = ("analytic",)


def hardware_truth(space, genomes, technology: str | None = None) -> list[dict]:
    """Analytic-model metrics with units for each genome (the embedded ground truth)."""
    from cimnas_jax.hw import evaluate_designs, load_technology
    from cimnas_jax.workload import total_macs

    g = jnp.asarray(genomes, jnp.int32)
    r = evaluate_designs(space, g, load_technology(technology or space.technology))
    macs = np.asarray(total_macs(space.workloads(g)), np.float64)
    e, l, a = (np.asarray(x, np.float64) for x in (r.energy_j, r.latency_s, r.area_mm2))
    valid = np.asarray(r.valid) & (e > 0) & (l > 0) & (a > 0)
    out = []
    for i in range(len(g)):
        ops = 2.0 * macs[i]
        ok = bool(valid[i])
        out.append(dict(
            valid=ok, energy_j=e[i] if ok else None, latency_s=l[i] if ok else None,
            area_mm2=a[i] if ok else None, edap_j_s_mm2=e[i] * l[i] * a[i] if ok else None, macs=macs[i],
            tops_per_w=ops / e[i] / 1e12 if ok else None, tops_per_mm2=ops / l[i] / a[i] / 1e12 if ok else None,
            cells_needed=float(r.cells_needed[i]), cells_available=float(r.cells_available[i]),
            energy_breakdown_j={k: float(v[i]) for k, v in r.energy_breakdown_j.items()},
            area_breakdown_mm2={k: float(v[i]) for k, v in r.area_breakdown_mm2.items()}))
    return out


def supernet_dir_for(cfg, space):
    """The supernet folder that measures this space's accuracy (None: the space has none)."""
    if cfg.supernet_dir:
        return cfg.supernet_dir
    if space.supernet is None:
        return None
    from cimnas_jax.assets import asset_path
    return str(asset_path(space.supernet))


def check_inputs(cfg, space) -> None:
    """Fail before the search when verification could not run (missing supernet, data)."""
    from cimnas_jax.pipeline.config import ConfigError
    if cfg.verify_hw not in VERIFY_HW:
        raise ConfigError(f"--verify_hw={cfg.verify_hw!r}: allowed {', '.join(VERIFY_HW)}")
    if not cfg.measure_accuracy:
        return
    d = supernet_dir_for(cfg, space)
    if d is None:
        return
    from pathlib import Path
    from cimnas_jax.nets.io import MANIFEST_FILE, PARAMS_FILE
    if not ((Path(d) / PARAMS_FILE).is_file() and (Path(d) / MANIFEST_FILE).is_file()):
        raise ConfigError(f"--supernet_dir={d}: no {PARAMS_FILE} + {MANIFEST_FILE} there (a folder written by "
                          "experiments/train_supernet.py --export_dir); or pass --measure_accuracy=false")
    from cimnas_jax.data.datasets import DEFAULT_FMNIST_DIR, FMNIST_FILES
    data = Path(cfg.data_dir or DEFAULT_FMNIST_DIR)
    missing = [f for f in FMNIST_FILES.values() if not (data / f).is_file()]
    if missing:
        raise ConfigError(f"--data_dir={data}: Fashion-MNIST files {missing} missing; install the Debian package "
                          "dataset-fashion-mnist, pass --data_dir=FOLDER, or --measure_accuracy=false")


def verify(cfg, ctx, space, finalists, fitness) -> Verification:
    """Re-score ``finalists`` (pipeline.results.Finalists) by the ground truth; measure accuracy."""
    t0 = time.perf_counter()
    cands = finalists.candidates
    genomes = np.asarray([c.genome for c in cands], np.int32)
    ctx.log(f"[verify] hardware of {len(cands)} designs by the analytic CIM model "
            f"(technology {cfg.technology or space.technology})")
    pred = jax.device_get(jax.jit(fitness)(jnp.asarray(genomes)))
    truth = hardware_truth(space, genomes, cfg.technology or None)
    rows = []
    for i, (c, tr) in enumerate(zip(cands, truth)):
        row = dict(design=c.name, design_hash=c.hash, origin=c.origin, genome=list(c.genome), **tr)
        for k in ("energy_j", "latency_s", "area_mm2"):
            row[f"predicted_{k}"] = float(pred[k][i])
            row[f"predicted_error_{k.split('_')[0]}"] = (float(pred[k][i]) / tr[k] - 1.0) if tr[k] else None
        row["predicted_accuracy"] = float(pred["accuracy"][i]) if cfg.accuracy_source != "constant" else None
        rows.append(row)
    note = "not measured (--measure_accuracy=false)"
    if cfg.measure_accuracy:
        note = measure_accuracy(cfg, ctx, space, genomes, rows)
    base = rows[0]
    for r in rows:
        r["edap_reduction_vs_baseline_x"] = (base["edap_j_s_mm2"] / r["edap_j_s_mm2"]
                                             if r["valid"] and base["valid"] else None)
        acc = best_accuracy(r)
        r["edap_per_accuracy"] = r["edap_j_s_mm2"] / acc if acc and r["valid"] else None
    why = "--verify_hw=analytic: the embedded analytic CIM model, calibrated to real CiMLoop runs"
    return Verification(rows=rows, hw_truth="analytic CIM model", hw_truth_why=why, accuracy_note=note,
                        seconds=time.perf_counter() - t0)


def best_accuracy(row):
    """Fine-tuned, else measured accuracy where there is one, else the search's prediction."""
    for k in ("finetuned_accuracy", "measured_accuracy", "predicted_accuracy"):
        if row.get(k) is not None:
            return row[k]
    return None


def measure_accuracy(cfg, ctx, space, genomes, rows) -> str:
    """Fill measured_accuracy (+ 95 % CI) and, with --finetune_steps, fine-tuned accuracy."""
    d = supernet_dir_for(cfg, space)
    if d is None:
        return f"not measured: no supernet exists for space {space.name}"
    from cimnas_jax.data import DatasetMissingError, load_dataset
    from cimnas_jax.nets.evaluate import evaluator_for
    from cimnas_jax.nets.io import load_supernet, val_split_size
    from cimnas_jax.nets.train import finetune_subnet

    arch_all = {k: np.asarray(v) for k, v in space.architecture(genomes).items()}
    model, params, ncfg, manifest = load_supernet(d)
    try:
        ds = load_dataset("fashion_mnist", cfg.data_dir or None, val_split_size(manifest), ncfg.resolution)
    except DatasetMissingError as e:
        return f"not measured ({e})"
    ev = evaluator_for(model, params, ds, "test", cfg.test_images)
    t0 = time.perf_counter()
    for i, r in enumerate(rows):
        arch = {k: v[i] for k, v in arch_all.items()}
        res = ev.accuracy(arch)
        r["measured_accuracy"] = res["accuracy"]
        r["accuracy_images"] = res["n_images"]
        r["accuracy_ci95"] = list(wilson_interval(res["accuracy"], res["n_images"]))
        if r.get("predicted_accuracy") is not None:
            r["accuracy_surrogate_error"] = r["predicted_accuracy"] - r["measured_accuracy"]
        ctx.log(f"  accuracy {i + 1}/{len(rows)} {r['design']}: {res['accuracy']:.4f} "
                f"({res['n_images']} test images, {res['seconds']:.1f} s)")
    note = (f"measured on {ev.n_eval} Fashion-MNIST test images with the supernet {d} "
            f"({time.perf_counter() - t0:.0f} s for {len(rows)} subnets); 95 % Wilson intervals")
    if cfg.finetune_steps:
        found = [i for i, r in enumerate(rows) if r["origin"] != "reference" and r["valid"]]
        best = min(found, key=lambda i: rows[i]["edap_j_s_mm2"] / rows[i]["measured_accuracy"]) if found else None
        for i in [0] + ([best] if best is not None else []):
            arch = {k: v[i] for k, v in arch_all.items()}
            ctx.log(f"  fine-tuning {rows[i]['design']} for {cfg.finetune_steps} QAT steps")
            ev.params = finetune_subnet(model, params, ds, arch, cfg.finetune_steps, log=ctx.log)
            res = ev.accuracy(arch)
            rows[i]["finetuned_accuracy"] = res["accuracy"]
            rows[i]["finetuned_ci95"] = list(wilson_interval(res["accuracy"], res["n_images"]))
            ev.params = params
        note += f"; baseline and best design fine-tuned for {cfg.finetune_steps} QAT steps"
    return note
