"""Labelling pipeline: designs -> per-layer records -> backend -> per-design labels.

Two paths write the same schema:
- analytic fast path: jitted batches through ``cimnas_jax.hw.evaluate_designs``;
- record path (``cimloop`` or any backend with ``evaluate_records``): the active layers
  of a chunk of designs go to the backend at once, so the job runner deduplicates and
  caches (layer, bits, hardware) across designs.
"""
from __future__ import annotations

import functools
import inspect
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from cimnas_jax.cimloop.config import CimloopConfig, cache_key, record_from_arrays
from cimnas_jax.cimloop.totals import design_totals
from cimnas_jax.vocab import HW_PARAM_FIELDS, KIND_NAMES, LAYER_TABLE_FIELDS
from .store import LabelStore


def _host(tree_obj, fields) -> dict:
    return {f: np.asarray(getattr(tree_obj, f)) for f in fields}


@functools.lru_cache(maxsize=8)
def _jitted_tables(sp):
    import jax
    return jax.jit(lambda g: (sp.workloads(g), sp.hardware(g)))


def _pad_rows(genomes, multiple: int = 16):
    """Pad the batch to a multiple of ``multiple`` rows so jitted shapes repeat."""
    n = genomes.shape[0]
    pad = (-n) % multiple
    return np.concatenate([genomes, np.repeat(genomes[-1:], pad, axis=0)]) if pad else genomes


def design_layer_records(sp, genomes, technology: str | None = None) -> list[list[dict]]:
    """Reference-format records of each design's active layers, in network order.

    Every record carries the technology (``hw.technology_nm``, ``hw.cell``; default the space's
    ``technology``) and its ``hw.adc_bits``, so any backend evaluates it at that node and cell."""
    technology = technology or sp.technology
    genomes = np.asarray(genomes, dtype=np.int32)
    lt, hwp = _jitted_tables(sp)(_pad_rows(genomes))
    lay = _host(lt, LAYER_TABLE_FIELDS)
    active = np.asarray(lt.active)
    hw = {k: np.broadcast_to(v, (active.shape[0],)) for k, v in _host(hwp, HW_PARAM_FIELDS).items()}
    out = []
    for p in range(genomes.shape[0]):
        hw_p = {k: float(v[p]) for k, v in hw.items()}
        recs = []
        for i in np.flatnonzero(active[p]):
            fields = {k: lay[k][p, i] for k in LAYER_TABLE_FIELDS}
            r = record_from_arrays(fields, hw_p, name=f"L{i:02d}_{KIND_NAMES[int(fields['kind'])]}",
                                   technology=technology)
            r["index"] = int(i)
            recs.append(r)
        out.append(recs)
    return out


def layer_label(rec: Mapping) -> dict:
    """Flat per-layer label (SI units) from an evaluated record."""
    lay = rec["layer"]
    res = rec.get("result") or {}
    ok = rec.get("status") == "ok"
    out = {"index": rec.get("index"), "name": lay.get("name"), "kind": lay["kind"]}
    for f in ("C", "M", "R", "S", "P", "Q", "stride", "groups", "macs"):
        out[f] = lay[f]
    out.update(input_bits=rec["input_bits"], weight_bits=rec["weight_bits"],
               status=rec.get("status"), error=rec.get("error"),
               energy_j=float(res["energy_J"]) if ok else None,
               latency_s=float(res["latency_s"]) if ok else None,
               cycles=res.get("cycles") if ok else None,
               cache_key=rec.get("cache_key"))
    if ok and res.get("energy_breakdown_J"):
        out["energy_breakdown_j"] = res["energy_breakdown_J"]
    return out


def assemble_design(index: int, dhash: str, genome, evaluated: Sequence[Mapping],
                    backend: str, extra: Mapping | None = None) -> dict:
    """One design label line: totals (``design_totals``), hardware, per-layer labels."""
    tot = design_totals(evaluated)
    d = {"index": int(index), "hash": dhash, "backend": backend,
         "genome": [int(x) for x in genome],
         "hw": dict(evaluated[0]["hw"]) if evaluated else None}
    d.update(tot)
    d.update(extra or {})
    if not d["valid"]:  # an invalid design never carries figures of merit
        for k in ("energy_j", "latency_s", "area_mm2", "edap_j_s_mm2", "tops_per_w_total",
                  "tops_per_mm2_total", "tops_per_w_mean_of_layers",
                  "tops_per_mm2_mean_of_layers"):
            d[k] = None
    d["layers"] = [layer_label(r) for r in evaluated]
    return d


def _capacity(sp, genomes) -> tuple[np.ndarray, np.ndarray]:
    from cimnas_jax.workload import capacity
    need, avail = capacity(sp.workloads(genomes), sp.hardware(genomes))
    return np.asarray(need, dtype=np.float64), np.asarray(avail, dtype=np.float64)


def _fit_fields(need, avail, p) -> dict:
    return {"cells_needed": float(need[p]), "cells_available": float(avail[p]),
            "weights_fit": bool(need[p] <= avail[p])}


# --------------------------------------------------------------------------- analytic path
@functools.lru_cache(maxsize=8)
def _jitted_analytic(sp):
    import jax
    from cimnas_jax.hw import evaluate_designs, load_technology
    tech = load_technology(sp.technology)  # load outside the trace (its arrays are cached)
    return jax.jit(lambda g: evaluate_designs(sp, g, tech))


def label_batch_analytic(sp, genomes, indices, hashes, key_config: CimloopConfig) -> list[dict]:
    """Analytic backend, one jitted call for the whole batch (padded to its size)."""
    genomes = np.asarray(genomes, dtype=np.int32)
    res = _jitted_analytic(sp)(genomes)
    e_l = np.asarray(res.layer_energy_j, dtype=np.float64)
    t_l = np.asarray(res.layer_latency_s, dtype=np.float64)
    ok_l = np.asarray(res.layer_ok)
    area = np.asarray(res.area_mm2, dtype=np.float64)
    valid = np.asarray(res.valid)
    need = np.asarray(res.cells_needed, dtype=np.float64)
    avail = np.asarray(res.cells_available, dtype=np.float64)
    eb = {k: np.asarray(v, dtype=np.float64) for k, v in res.energy_breakdown_j.items()}
    ab = {k: np.asarray(v, dtype=np.float64) for k, v in res.area_breakdown_mm2.items()}
    records = design_layer_records(sp, genomes)
    out = []
    for p, recs in enumerate(records):
        ev = []
        for r in recs:
            i = r["index"]
            r = dict(r, cache_key=cache_key(r, key_config))
            if ok_l[p, i] and np.isfinite(e_l[p, i]) and np.isfinite(t_l[p, i]):
                r.update(status="ok", error=None, result={
                    "energy_J": e_l[p, i], "latency_s": t_l[p, i],
                    "area_m2_total": area[p] * 1e-6})
            else:
                r.update(status="error", error="analytic model: layer infeasible", result=None)
            ev.append(r)
        d = assemble_design(indices[p], hashes[p], genomes[p], ev, "analytic",
                            _fit_fields(need, avail, p))
        d["analytic_valid"] = bool(valid[p])
        if d["valid"]:
            d["valid"] = bool(valid[p])  # analytic validity also requires the weights to fit
            d["energy_breakdown_j"] = {k: float(v[p]) for k, v in eb.items()}
            d["area_breakdown_mm2"] = {k: float(v[p]) for k, v in ab.items()}
            d["energy_j"], d["area_mm2"] = float(np.asarray(res.energy_j)[p]), float(area[p])
            d["latency_s"] = float(np.asarray(res.latency_s)[p])
            d["edap_j_s_mm2"] = d["energy_j"] * d["latency_s"] * d["area_mm2"]
        if not d["valid"]:
            for k in ("energy_j", "latency_s", "area_mm2", "edap_j_s_mm2", "tops_per_w_total",
                      "tops_per_mm2_total", "tops_per_w_mean_of_layers",
                      "tops_per_mm2_mean_of_layers"):
                d[k] = None
        out.append(d)
    return out


# --------------------------------------------------------------------------- record path
def _layer_progress(log: Callable[[str], None]):
    """Progress callback for the job runner: layer evaluations done, rate, ETA."""
    t0 = time.perf_counter()

    def cb(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            el = time.perf_counter() - t0
            rate = done / el if el > 0 else float("inf")
            log(f"  layer evaluations {done}/{total}, {rate:.3f}/s, "
                f"ETA {(total - done) / rate if rate > 0 else float('nan'):.0f} s")
    return cb


def label_batch_records(sp, genomes, indices, hashes, backend,
                        log: Callable[[str], None] | None = None) -> list[dict]:
    """Any backend with ``evaluate_records`` (cimloop): one call for the whole chunk."""
    genomes = np.asarray(genomes, dtype=np.int32)
    records = design_layer_records(sp, genomes)
    flat = [r for recs in records for r in recs]
    if log is not None and "progress" in inspect.signature(backend.evaluate_records).parameters:
        evaluated = backend.evaluate_records(flat, progress=_layer_progress(log))
        if getattr(backend, "last_stats", None):
            log(f"  chunk: {backend.last_stats}")
    else:
        evaluated = backend.evaluate_records(flat)
    key_config = getattr(backend, "config", None) or CimloopConfig()
    for r in evaluated:  # backends without a cache (analytic) get the canonical layer key
        if not r.get("cache_key"):
            r["cache_key"] = cache_key(r, key_config)
    need, avail = _capacity(sp, genomes)
    out, pos = [], 0
    for p, recs in enumerate(records):
        ev = evaluated[pos:pos + len(recs)]
        pos += len(recs)
        out.append(assemble_design(indices[p], hashes[p], genomes[p], ev, backend.name,
                                   _fit_fields(need, avail, p)))
    return out


# --------------------------------------------------------------------------- statistics
def key_statistics(records_per_design: Sequence[Sequence[Mapping]],
                   config: CimloopConfig | None = None,
                   seconds_per_eval: float = 15.0) -> dict:
    """Cache statistics the cimloop backend would see for these designs.

    - ``layer_calls_cimnas``: one CiMLoop call per active layer per design (CIMNAS);
    - ``unique_evaluations``: distinct (layer shape, bits, hardware) keys;
    - ``cache_hit_rate`` = 1 - unique / calls (a cold cache, this run alone);
    - ``designs_per_hour_*`` per core at ``seconds_per_eval`` per CiMLoop call.
    """
    config = config or CimloopConfig()
    keys = [[cache_key(r, config) for r in recs] for recs in records_per_design]
    n_designs = len(keys)
    calls = sum(len(k) for k in keys)
    unique = len({k for ks in keys for k in ks})
    within = sum(len(set(ks)) for ks in keys)
    return {
        "n_designs": n_designs,
        "layer_calls_cimnas": calls,
        "layer_calls_per_design_cimnas": calls / max(n_designs, 1),
        "unique_within_design_sum": within,
        "unique_evaluations": unique,
        "unique_evaluations_per_design": unique / max(n_designs, 1),
        "cache_hit_rate": 1.0 - unique / max(calls, 1),
        "seconds_per_eval_assumed": seconds_per_eval,
        "designs_per_hour_per_core_cimnas": 3600.0 / (seconds_per_eval * calls / max(n_designs, 1)),
        "designs_per_hour_per_core_cached": 3600.0 / (seconds_per_eval * unique / max(n_designs, 1)),
        "speedup_vs_cimnas": calls / max(unique, 1),
    }


# --------------------------------------------------------------------------- driver
def run_labelling(sp, genomes, store: LabelStore, backend: str = "analytic",
                  backend_obj=None, chunk_size: int = 64,
                  key_config: CimloopConfig | None = None,
                  log: Callable[[str], None] = print, sleep_per_chunk_s: float = 0.0) -> dict:
    """Label every genome not yet in ``store``; returns run statistics.

    Designs are keyed by index + canonical hash; a stored design whose hash differs from
    the planned one means the folder belongs to another run -> ValueError.
    """
    genomes = np.asarray(genomes, dtype=np.int32)
    n = genomes.shape[0]
    hashes = list(sp.hash_hex(genomes))
    done = store.load_done()
    for i, h in done.items():
        if i >= n or hashes[i] != h:
            raise ValueError(f"{store.designs_path}: design {i} has hash {h}, this run plans "
                             f"{hashes[i] if i < n else 'nothing'}; use a fresh --out_dir")
    todo = [i for i in range(n) if i not in done]
    key_config = key_config or CimloopConfig()
    t0 = time.perf_counter()
    written = 0
    if todo:
        log(f"labelling {len(todo)} of {n} designs ({len(done)} already in {store.out_dir})")
    for c in range(0, len(todo), chunk_size):
        idx = todo[c:c + chunk_size]
        g = genomes[idx]
        hs = [hashes[i] for i in idx]
        if backend == "analytic":
            pad = chunk_size - len(idx)  # fixed batch shape: compile once
            gp = np.concatenate([g, np.repeat(g[-1:], pad, axis=0)]) if pad else g
            designs = label_batch_analytic(sp, gp, idx + [idx[-1]] * pad, hs + [hs[-1]] * pad,
                                           key_config)[:len(idx)]
        else:
            designs = label_batch_records(sp, g, idx, hs, backend_obj, log=log)
        store.append(designs)
        written += len(idx)
        el = time.perf_counter() - t0
        rate = written / el if el > 0 else float("inf")
        eta = (len(todo) - written) / rate if rate > 0 else float("nan")
        log(f"{len(done) + written}/{n} designs, {rate:.2f} designs/s, ETA {eta:.1f} s")
        if sleep_per_chunk_s:
            time.sleep(sleep_per_chunk_s)
    return {"n_designs": n, "n_skipped_resume": len(done), "n_written": written,
            "n_lines_skipped_corrupt": store.n_skipped, "wall_seconds": time.perf_counter() - t0}
