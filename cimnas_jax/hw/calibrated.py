"""The analytic model with the CiMLoop-trained correction applied ("calibrated").

    corr = load_correction("rram_32nm")                        # shipped: assets/hw_correction/<tech>/
    m = design_metrics(space, genomes, corr)                   # pure, jittable (space static)
    fit = calibrated_fitness(space, accuracy_fn, corr)         # same keys as search.fitness.hardware_fitness
    get_backend("calibrated").evaluate_records(records)        # reference-format records in/out

Per layer l of a design: energy_l = analytic energy_l x exp(d_E,l), latency_l = analytic latency_l x
exp(d_T,l) with d = ``correction.predict_log_ratio`` (log CiMLoop / analytic); the design sums them;
its chip area is the analytic chip area x exp(d_A) of its widest layer (the one that sets the
analytic area). Validity is the analytic model's (every active layer maps, metrics finite and > 0).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cimnas_jax.hw import correction as C
from cimnas_jax.hw.correction_io import load_correction
from cimnas_jax.hw.evaluate import evaluate_layer_table
from cimnas_jax.hw.tech import Technology, load_technology


def layer_log_ratios(corr: C.Correction, tech: Technology, layers, hw) -> jax.Array:
    """log(CiMLoop / analytic) per layer slot ``[..., L, 3]`` (0 in inactive slots)."""
    safe = C.safe_layers(layers)
    d = C.predict_log_ratio(corr, C.layer_features(tech, safe, hw))
    act = layers.active.astype(bool) if layers.active.dtype != bool else layers.active
    return jnp.where(act[..., None], d, 0.0)


def _design_chunk(corr, tech, space, genomes):
    layers, hw = space.workloads(genomes), space.hardware(genomes)
    r = evaluate_layer_table(tech, layers, hw)
    d = layer_log_ratios(corr, tech, layers, hw)
    energy = jnp.sum(r.layer_energy_j * jnp.exp(d[..., 0]), -1)
    latency = jnp.sum(r.layer_latency_s * jnp.exp(d[..., 1]), -1)
    act = layers.active.astype(bool) if layers.active.dtype != bool else layers.active
    slices = jnp.where(act, jnp.ceil(layers.weight_bits / hw.bits_per_cell[..., None]), -1.0)
    widest = jnp.argmax(slices, -1)
    area = r.area_mm2 * jnp.exp(jnp.take_along_axis(d[..., 2], widest[..., None], -1)[..., 0])
    valid = (jnp.all(r.layer_ok, -1) & jnp.isfinite(energy) & (energy > 0) & jnp.isfinite(latency) & (latency > 0)
             & jnp.isfinite(area) & (area > 0))
    return {"energy_j": energy, "latency_s": latency, "area_mm2": area, "valid": valid,
            "cells_needed": r.cells_needed, "cells_available": r.cells_available}


def design_metrics(space, genomes, correction: C.Correction, tech: Technology | None = None,
                   chunk: int = 1024) -> dict:
    """Calibrated metrics of genomes ``int32[P, G]``: energy_j [J], latency_s [s], area_mm2 [mm^2],
    valid (bool: every active layer maps and every metric is finite and positive; capacity is NOT
    folded in, as in ``search.fitness.hardware_fitness``), cells_needed / cells_available [P].

    Pure and jittable with ``space`` static (load ``tech`` and the correction outside the trace).
    Batches above ``chunk`` designs run in chunks (``lax.map``): the correction MLP sees
    P x L rows per member."""
    tech = load_technology(correction.technology) if tech is None else tech
    g = jnp.atleast_2d(jnp.asarray(genomes, jnp.int32))
    P = g.shape[0]
    if P <= chunk:
        return _design_chunk(correction, tech, space, g)
    n = -(-P // chunk)
    gp = jnp.concatenate([g, jnp.repeat(g[:1], n * chunk - P, 0)], 0)
    out = jax.lax.map(lambda c: _design_chunk(correction, tech, space, c), gp.reshape(n, chunk, -1))
    return {k: v.reshape(n * chunk)[:P] for k, v in out.items()}


def calibrated_fitness(space, accuracy_fn, correction: C.Correction | str | None = None,
                       technology: str | None = None, chunk: int = 1024):
    """A search fitness like ``search.fitness.hardware_fitness(space, accuracy_fn, technology)``
    (energy_j, latency_s, area_mm2, accuracy, valid, cells_needed, cells_available) on the calibrated
    model. ``technology``: default the space's; ``correction``: a Correction, a folder, or None for the
    shipped one of that technology (a correction of another technology is an error)."""
    tname = technology or space.technology
    corr = correction if isinstance(correction, C.Correction) else load_correction(correction or tname)
    if corr.technology != tname:
        raise ValueError(f"the hardware correction is for {corr.technology}, the search evaluates {tname}")
    tech = load_technology(tname)   # outside the trace

    def fitness(genomes):
        m = design_metrics(space, genomes, corr, tech, chunk)
        return {**m, "accuracy": jnp.asarray(accuracy_fn(genomes), jnp.float32)}

    return fitness


class CalibratedBackend:
    """``get_backend("calibrated")``: the analytic backend's records (same validation, fields and
    units), with energy_J, latency_s and area_m2_total (and their breakdowns, scaled alike) multiplied
    by exp(log-ratio) of the record's technology's correction. ``result`` also carries
    ``analytic`` {energy_J, latency_s, area_m2_total} and ``log_ratio`` [3]; ``cycles`` stay the
    analytic model's."""

    name = "calibrated"

    def __init__(self, corrections: dict | None = None, technology: str | None = None):
        self._corr = dict(corrections or {})
        self.technology = technology

    def correction(self, technology: str) -> C.Correction:
        if technology not in self._corr:
            self._corr[technology] = load_correction(technology)
        return self._corr[technology]

    def evaluate_records(self, records: list[dict]) -> list[dict]:
        from cimnas_jax.hw.records import error_record, evaluate_records, record_values, values_to_arrays
        out = evaluate_records(records, self.technology)
        by_tech: dict[str, list[int]] = {}
        for i, r in enumerate(out):
            if r.get("status") == "ok":
                by_tech.setdefault(r["result"]["technology"], []).append(i)
        for tname, idx in by_tech.items():
            try:
                corr = self.correction(tname)
            except FileNotFoundError as e:
                for i in idx:
                    out[i] = error_record(out[i], f"calibrated backend: {e}")
                continue
            tech = load_technology(tname)
            layers, hw = values_to_arrays([record_values(out[i], tech) for i in idx])
            d = np.asarray(jax.jit(layer_log_ratios)(corr, tech, layers, hw)[:, 0], np.float64)
            for j, i in enumerate(idx):
                res = dict(out[i]["result"])
                fe, ft, fa = np.exp(d[j])
                res["analytic"] = {"energy_J": res["energy_J"], "latency_s": res["latency_s"],
                                   "area_m2_total": res["area_m2_total"]}
                res["energy_J"] *= float(fe)
                res["latency_s"] *= float(ft)
                res["area_m2_total"] *= float(fa)
                res["energy_breakdown_J"] = {k: v * float(fe) for k, v in res["energy_breakdown_J"].items()}
                res["area_breakdown_m2"] = {k: v * float(fa) for k, v in res["area_breakdown_m2"].items()}
                res["tops_per_w"] = 2 * res["computes"] / res["energy_J"] / 1e12
                res["log_ratio"] = [float(x) for x in d[j]]
                res["backend"] = "calibrated"
                res["correction_technology_sha256"] = corr.technology_sha256
                out[i] = {**out[i], "result": res}
        return out
