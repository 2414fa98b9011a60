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

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from cimnas_jax.pipeline.fitness import evaluate_padded
from cimnas_jax.pipeline.results import Verification
from cimnas_jax.stats import wilson_interval

VERIFY_HW = ("auto", "analytic", "cimloop")
METRICS = ("energy_j", "latency_s", "area_mm2")


@functools.lru_cache(maxsize=16)
def _truth_fn(space, technology: str):
    """The analytic model and the MAC count as one function of the genomes, evaluated jitted at padded
    batch sizes (op by op it would compile each of a few hundred small ops separately)."""
    from cimnas_jax.hw import evaluate_designs, load_technology
    from cimnas_jax.workload import total_macs
    tech = load_technology(technology)
    return lambda g: (evaluate_designs(space, g, tech), total_macs(space.workloads(g)))


def hardware_truth(space, genomes, technology: str | None = None) -> list[dict]:
    """Analytic-model metrics with units for each genome (the embedded ground truth)."""
    g = np.asarray(genomes, np.int32)
    r, macs = evaluate_padded(_truth_fn(space, technology or space.technology), g)
    macs = np.asarray(macs, np.float64)
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


def resolve_truth(cfg):
    """(source name, why, CiMLoop availability reason or None) for --verify_hw, without starting anything."""
    if cfg.verify_hw == "analytic":
        return "analytic", "--verify_hw=analytic: the embedded analytic CIM model, calibrated to real CiMLoop runs"
    from cimnas_jax.cimloop import cimloop_available
    ok, reason = cimloop_available(cfg.cimloop_models_dir or None)
    if ok:
        return "cimloop", f"--verify_hw={cfg.verify_hw}: real CiMLoop (check_installation() passed)"
    if cfg.verify_hw == "cimloop":
        from cimnas_jax.pipeline.config import ConfigError
        raise ConfigError(f"--verify_hw=cimloop: CiMLoop is not usable here: {reason}")
    short = reason.split(". The cimloop backend")[0]
    return "analytic", (f"--verify_hw=auto: CiMLoop is not installed here ({short}), so the embedded analytic CIM "
                        "model stands in; install CiMLoop (docs/cimloop_backend.md) to verify with it")


def cimloop_backend(cfg):
    """The CimloopBackend a configuration asks for."""
    from cimnas_jax.cimloop import CimloopBackend
    return CimloopBackend(models_dir=cfg.cimloop_models_dir or None, cache_path=cfg.cimloop_cache or None,
                          workers=cfg.cimloop_workers or None, timeout_s=cfg.cimloop_timeout_s,
                          executor=cfg.cimloop_executor, dask_scheduler=cfg.dask_scheduler or None)


def record_truth(space, genomes, backend, store_dir=None, log=None) -> list[dict]:
    """Ground truth through a record backend (CiMLoop, or any ``evaluate_records`` backend standing
    in): every active layer of every design evaluated (deduplicated, cached), totals per design.
    With ``store_dir`` the designs' layer labels are also written there (label-folder format,
    designs.jsonl), e.g. for training the CiMLoop correction."""
    from cimnas_jax.label import LabelStore, label_batch_records
    from cimnas_jax.workload import total_macs
    g = np.asarray(genomes, np.int32)
    hashes = space.hash_hex(g)
    designs = label_batch_records(space, g, list(range(len(g))), hashes, backend, log=log)
    if store_dir is not None:
        store = LabelStore(str(store_dir))
        if store.read_manifest() is None:     # says whose records these are (correction_io reads "backend")
            store.write_manifest({"backend": getattr(backend, "name", "records"), "space": space.name,
                                  "what": "ground-truth layer records of the verified designs"})
        done = store.load_done()
        store.append([d for d in designs if d["index"] not in done])
    macs = np.asarray(total_macs(space.workloads(jnp.asarray(g))), np.float64)
    out = []
    for i, d in enumerate(designs):
        ok = bool(d["valid"]) and bool(d.get("weights_fit", True)) and all(
            d.get(k) is not None and d[k] > 0 for k in METRICS)
        row = dict(valid=ok, macs=macs[i], cells_needed=d.get("cells_needed"), cells_available=d.get("cells_available"),
                   energy_breakdown_j=d.get("energy_breakdown_j") or {}, area_breakdown_mm2=d.get("area_breakdown_mm2") or {},
                   truth_errors=d.get("errors") or [], truth_failed_layers=d.get("n_failed", 0),
                   truth_layer_energy_j=[lay.get("energy_j") for lay in d.get("layers", [])])
        for k in METRICS + ("edap_j_s_mm2",):
            row[k] = d.get(k) if ok else None
        row["tops_per_w"] = d.get("tops_per_w_total") if ok else None
        row["tops_per_mm2"] = d.get("tops_per_mm2_total") if ok else None
        if not d.get("weights_fit", True):
            row["truth_errors"] = row["truth_errors"] + ["weights do not fit on the chip"]
        out.append(row)
    return out


def disagreement(pred: dict, truth: dict, tolerance: float) -> list[str]:
    """Metrics on which the search model and the ground truth differ by more than ``tolerance``
    (relative); a design the truth finds invalid but the model scored disagrees on 'valid'."""
    if not truth.get("valid"):
        return ["valid"] if pred.get("valid", True) else []
    bad = []
    for k in METRICS:
        p, t = pred.get(k), truth.get(k)
        if p is None or t is None or not np.isfinite(p) or abs(p / t - 1.0) > tolerance:
            bad.append(k)
    return bad


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
    resolve_truth(cfg)                      # --verify_hw=cimloop without CiMLoop fails here
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


TRUTH_NAMES = {"analytic": "analytic CIM model", "cimloop": "CiMLoop"}


def verify(cfg, ctx, space, finalists, fitness, backend=None) -> Verification:
    """Re-score ``finalists`` (pipeline.results.Finalists) by the ground truth; measure accuracy.

    ``backend``: a record backend to use as the ground truth instead of the one --verify_hw names
    (tests stand the analytic record backend in for CiMLoop)."""
    t0 = time.perf_counter()
    cands = finalists.candidates
    genomes = np.asarray([c.genome for c in cands], np.int32)
    source, why = resolve_truth(cfg) if backend is None else (getattr(backend, "name", "records"),
                                                             f"record backend {getattr(backend, 'name', '?')} "
                                                             "standing in for CiMLoop")
    truth_name = TRUTH_NAMES.get(source, source)
    tech = cfg.technology or space.technology
    ctx.log(f"  hardware of {len(cands)} designs by {truth_name} (technology {tech}): {why}")
    pred = evaluate_padded(fitness, genomes)
    extra = {}
    if source == "analytic" and backend is None:
        truth = hardware_truth(space, genomes, cfg.technology or None)
    else:
        own = backend is None
        backend = backend or cimloop_backend(cfg)
        try:
            truth = record_truth(space, genomes, backend, ctx.out_dir / "verify_labels", log=ctx.log)
        finally:
            if own and hasattr(backend, "close"):
                backend.close()
        extra["truth_backend_stats"] = getattr(backend, "last_stats", {})
        extra["truth_labels"] = "verify_labels/designs.jsonl (per-layer ground-truth records of every design)"
    rows = []
    for i, (c, tr) in enumerate(zip(cands, truth)):
        row = dict(design=c.name, design_hash=c.hash, origin=c.origin, genome=list(c.genome), **tr)
        p = {k: float(pred[k][i]) for k in METRICS}
        p["valid"] = bool(pred["valid"][i])
        for k in METRICS:
            row[f"predicted_{k}"] = p[k]
            row[f"predicted_error_{k.split('_')[0]}"] = (p[k] / tr[k] - 1.0) if tr[k] else None
        row["predicted_edap_j_s_mm2"] = p["energy_j"] * p["latency_s"] * p["area_mm2"]
        row["predicted_accuracy"] = float(pred["accuracy"][i]) if cfg.accuracy_source != "constant" else None
        row["model_disagrees_on"] = disagreement(p, tr, cfg.verify_tolerance)
        rows.append(row)
    flagged = [r["design"] for r in rows if r["model_disagrees_on"]]
    if flagged:
        ctx.log(f"  WARNING: the search model differs from {truth_name} by more than "
                f"{100 * cfg.verify_tolerance:g} % on {', '.join(flagged)}")
    note = "not measured (--measure_accuracy=false)"
    if cfg.measure_accuracy:
        note = measure_accuracy(cfg, ctx, space, genomes, rows)
    base = rows[0]
    for r in rows:
        r["edap_reduction_vs_baseline_x"] = (base["edap_j_s_mm2"] / r["edap_j_s_mm2"]
                                             if r["valid"] and base["valid"] else None)
        r["predicted_edap_reduction_vs_baseline_x"] = base["predicted_edap_j_s_mm2"] / r["predicted_edap_j_s_mm2"]
        acc = best_accuracy(r)
        r["edap_per_accuracy"] = r["edap_j_s_mm2"] / acc if acc and r["valid"] else None
    return Verification(rows=rows, hw_truth=truth_name, hw_truth_why=why, accuracy_note=note,
                        seconds=time.perf_counter() - t0,
                        extra=dict(extra, tolerance=cfg.verify_tolerance, flagged=flagged))


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
    outcomes = {}                       # (row, "accuracy" | "finetuned") -> bool per test image
    for i, r in enumerate(rows):
        arch = {k: v[i] for k, v in arch_all.items()}
        res = ev.accuracy(arch, per_image=True)
        outcomes[i, "accuracy"] = res.pop("correct")
        r["measured_accuracy"] = res["accuracy"]
        r["accuracy_images"] = res["n_images"]
        r["accuracy_ci95"] = list(wilson_interval(res["accuracy"], res["n_images"]))
        if r.get("predicted_accuracy") is not None:
            r["accuracy_surrogate_error"] = r["predicted_accuracy"] - r["measured_accuracy"]
        el = time.perf_counter() - t0
        ctx.log(f"  accuracy {i + 1}/{len(rows)} {r['design']}: {res['accuracy']:.4f} "
                f"({res['n_images']} test images, {res['seconds']:.1f} s; {(i + 1) / el:.2g} designs/s, "
                f"ETA {(len(rows) - i - 1) * el / (i + 1):.0f} s)")
    note = (f"measured on {ev.n_eval} Fashion-MNIST test images with the supernet {d} "
            f"({time.perf_counter() - t0:.0f} s for {len(rows)} subnets); 95 % Wilson intervals")
    if cfg.finetune_steps:
        found = [i for i, r in enumerate(rows) if r["origin"] != "reference" and r["valid"]]
        found.sort(key=lambda i: rows[i]["edap_j_s_mm2"] / rows[i]["measured_accuracy"])
        chosen = [0] + found[:cfg.finetune_designs]
        for i in chosen:
            arch = {k: v[i] for k, v in arch_all.items()}
            ctx.log(f"  fine-tuning {rows[i]['design']} for {cfg.finetune_steps} QAT steps (batch 128)")
            t1 = time.perf_counter()
            ev.params = finetune_subnet(model, params, ds, arch, cfg.finetune_steps, log=ctx.log)
            res = ev.accuracy(arch, per_image=True)
            outcomes[i, "finetuned"] = res.pop("correct")
            rows[i]["finetuned_accuracy"] = res["accuracy"]
            rows[i]["finetuned_ci95"] = list(wilson_interval(res["accuracy"], res["n_images"]))
            rows[i]["finetune_steps"] = cfg.finetune_steps
            rows[i]["finetune_seconds"] = time.perf_counter() - t1
            ev.params = params
        note += (f"; {', '.join(rows[i]['design'] for i in chosen)} fine-tuned for {cfg.finetune_steps} QAT "
                 f"steps of 128 images (inherited = the supernet's weights)")
    compare_to_baseline(rows, outcomes)
    return note + ("; each design against the baseline: exact McNemar test on the same test images, two-sided, "
                   "5 % level")


def compare_to_baseline(rows, outcomes=None, alpha: float = 0.05) -> None:
    """``accuracy_vs_baseline`` of every row against rows[0] (the baseline), on the fine-tuned
    accuracies where both were fine-tuned, else the inherited ones: 'higher' / 'lower' /
    'indistinguishable' (cannot be told apart at this test-set size).

    With ``outcomes`` ({(row index, 'accuracy' | 'finetuned'): bool per test image}, both measured on
    the same images) the test is the paired one: an exact McNemar test, two-sided at ``alpha``; the
    row also gets the difference, its 95 % interval and the p-value. Without them (rows measured
    elsewhere) the conservative fallback: different only when the two 95 % intervals do not overlap."""
    from cimnas_jax.stats import intervals_overlap, paired_accuracy_difference
    outcomes = outcomes or {}
    base = rows[0]
    for j, r in enumerate(rows[1:], start=1):
        key = "finetuned" if r.get("finetuned_ci95") and base.get("finetuned_ci95") else "accuracy"
        a = r.get(f"{key}_ci95") if key == "finetuned" else r.get("accuracy_ci95")
        b = base.get(f"{key}_ci95") if key == "finetuned" else base.get("accuracy_ci95")
        if not a or not b:
            continue
        va = r["finetuned_accuracy"] if key == "finetuned" else r["measured_accuracy"]
        vb = base["finetuned_accuracy"] if key == "finetuned" else base["measured_accuracy"]
        r["accuracy_vs_baseline_basis"] = "fine-tuned" if key == "finetuned" else "inherited"
        if (j, key) in outcomes and (0, key) in outcomes:
            t = paired_accuracy_difference(outcomes[j, key], outcomes[0, key])
            r["accuracy_vs_baseline"] = ("indistinguishable" if t["p_value"] >= alpha
                                         else ("higher" if t["difference"] > 0 else "lower"))
            r["accuracy_vs_baseline_test"] = f"exact McNemar, two-sided, alpha {alpha:g}"
            r["accuracy_vs_baseline_p"] = t["p_value"]
            r["accuracy_difference_vs_baseline"] = t["difference"]
            r["accuracy_difference_ci95"] = t["difference_ci95"]
        else:
            r["accuracy_vs_baseline"] = ("indistinguishable" if intervals_overlap(a, b)
                                         else ("higher" if va > vb else "lower"))
            r["accuracy_vs_baseline_test"] = "95 % Wilson intervals overlap (no per-image outcomes)"
