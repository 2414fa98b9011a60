"""Reference-format layer records (CiMLoop reference JSONL schema) <-> model arrays.

Every record is checked field by field before the model sees it (``record_values``): a missing,
null, non-numeric, non-finite or out-of-range field (zero rows, negative voltage, 2-bit ADC, ...)
or a technology_nm / cell pair no technology has makes that record ``status: error`` with a
message naming the field and its allowed range. A result whose energy, latency or area is not
finite and positive is an error too, never "ok".
"""
from __future__ import annotations

import math

import numpy as np
import jax.numpy as jnp

from cimnas_jax.workload import HardwareParams, make_layer_table
from cimnas_jax.hw.model import chip_area, layer_model
from cimnas_jax.hw.tech import Technology, load_technology
from cimnas_jax.vocab import (BIT_FIELDS, ENERGY_COMPONENTS, HW_PARAM_FIELDS, HW_RECORD_DEFAULTS, HW_RECORD_FIELDS,
                              KIND_CODES, LAYER_DIM_FIELDS, RecordError, resolve_technology)


def tech_name_for(hw: dict) -> str:
    """Technology file a record's ``hw`` names (``hw.technology_nm`` + ``hw.cell``; neither: rram_32nm).
    A pair that no technology file has raises ``RecordError`` naming both fields."""
    return resolve_technology(hw).name


def error_record(rec, message: str) -> dict:
    """Copy of ``rec`` marked as failed: status "error", the message, no result."""
    r = dict(rec)
    r.update(status="error", error=message, result=None)
    return r


def _section(rec: dict, key: str) -> dict:
    d = rec.get(key)
    if not isinstance(d, dict):
        raise RecordError(f"missing field {key!r} (an object)")
    return d


def record_values(rec: dict, tech: Technology) -> tuple[dict, dict]:
    """Checked model inputs of one record: ({C, M, R, S, P, Q, stride, kind, input_bits, weight_bits},
    {HardwareParams field: value}) as floats in model units (glb_bytes = glb_depth_words x 256).
    Raises ``RecordError`` naming the first bad field and its allowed range."""
    lay, hw = _section(rec, "layer"), _section(rec, "hw")
    out = {}
    for f in LAYER_DIM_FIELDS:
        out[f.param] = f.check(lay.get(f.key), f"layer.{f.key}")
    kind = lay.get("kind")
    if kind not in KIND_CODES:
        raise RecordError(f"field 'layer.kind' must be one of {sorted(KIND_CODES)}, got {kind!r}")
    out["kind"] = KIND_CODES[kind]
    for f in BIT_FIELDS:
        out[f.param] = f.check(rec.get(f.key), f.key)
    defaults = {**HW_RECORD_DEFAULTS, "adc_bits": tech.default_adc_bits}
    hwv = {}
    for f in HW_RECORD_FIELDS:
        if f.key in hw:
            v = hw[f.key]
        elif f.key in defaults:
            v = defaults[f.key]
        else:
            raise RecordError(f"missing field 'hw.{f.key}': must be {f.allowed()}")
        hwv[f.param] = f.check(v, f"hw.{f.key}") * f.scale
    if hwv["bits_per_cell"] > tech.max_bits_per_cell:
        raise RecordError(f"field 'hw.bits_per_cell' must be a whole number in 1..{tech.max_bits_per_cell} for "
                          f"{tech.name} (cell {tech.cell_name or tech.cell_type}), got {hw.get('bits_per_cell')!r}")
    return out, hwv


def values_to_arrays(vals: list[tuple[dict, dict]]):
    """([N,1] LayerTable, [N] HardwareParams) from ``record_values`` outputs."""
    col = lambda k: np.asarray([v[0][k] for v in vals], np.float32)[:, None]
    layers = make_layer_table(col("C"), col("M"), col("R"), col("S"), col("P"), col("Q"), col("stride"),
                              col("kind").astype(np.int32), col("input_bits"), col("weight_bits"),
                              np.ones((len(vals), 1), bool))
    hwp = HardwareParams(**{k: jnp.asarray(np.asarray([v[1][k] for v in vals], np.float32))
                            for k in HW_PARAM_FIELDS})
    return layers, hwp


def records_to_arrays(recs: list[dict], tech: Technology):
    """Build ([N,1] LayerTable, [N] HardwareParams) from reference-format records (every record
    must be valid: ``RecordError`` naming the record and field otherwise)."""
    vals = []
    for i, r in enumerate(recs):
        try:
            vals.append(record_values(r, tech))
        except RecordError as e:
            raise RecordError(f"record {r.get('id', i)!r}: {e}") from None
    return values_to_arrays(vals)


def predict_arrays(tech: Technology, layers, hw):
    """Per-record model outputs (numpy-friendly dict of jnp arrays, [N])."""
    lm = layer_model(tech, layers, hw)
    en = {k: v[:, 0] for k, v in lm["energy_j"].items()}
    slices = jnp.ceil(layers.weight_bits[:, 0] / hw.bits_per_cell)
    ar = chip_area(tech, hw, slices)
    return {"cycles": lm["cycles"][:, 0], "latency_s": lm["latency_s"][:, 0], "energy": en,
            "area": ar, "ok": lm["ok"][:, 0], "n_macros": hw.router_group * hw.tiles * hw.macros_per_tile}


def _finite_positive(**vals) -> list[str]:
    return [f"{k}={v!r}" for k, v in vals.items() if not (isinstance(v, float) and math.isfinite(v) and v > 0)]


def evaluate_records(recs: list[dict], tech_name: str | None = None) -> list[dict]:
    """Evaluate reference-format records; returns copies with status/error/result in the
    reference's field names and units (J, s, m^2). A bad record fails alone (``status: error``,
    the message names the field and its allowed range); results are finite or the record fails."""
    out = [None] * len(recs)
    by_tech: dict[str, list] = {}
    for i, r in enumerate(recs):
        if not isinstance(r, dict):
            raise RecordError(f"record {i}: not a JSON object ({r!r})")
        rid = r.get("id", i)
        try:
            hw = _section(r, "hw")
            name = tech_name or tech_name_for(hw)
            vals = record_values(r, load_technology(name))
        except RecordError as e:
            out[i] = error_record(r, f"record {rid!r}: {e}")
            continue
        by_tech.setdefault(name, []).append((i, vals))
    for tname, items in by_tech.items():
        tech = load_technology(tname)
        layers, hw = values_to_arrays([v for _, v in items])
        pr = jax_to_np(predict_arrays(tech, layers, hw))
        for j, (i, _) in enumerate(items):
            r = dict(recs[i])
            r.pop("error", None)
            cyc = float(pr["cycles"][j])
            cs = float(hw.clock_period_s[j] / hw.voltage_v[j])
            eb = {k: float(pr["energy"][k][j]) for k in ENERGY_COMPONENTS}
            ab = {k: float(pr["area"][k][j]) for k in ENERGY_COMPONENTS}
            e, area = sum(eb.values()), sum(ab.values())
            macs = float(layers.macs[j, 0])
            bad = _finite_positive(energy_J=e, latency_s=cyc * cs, area_m2_total=area)
            bad += [f"energy_breakdown_J.{k}={v!r}" for k, v in eb.items() if not (math.isfinite(v) and v >= 0)]
            bad += [f"area_breakdown_m2.{k}={v!r}" for k, v in ab.items() if not (math.isfinite(v) and v >= 0)]
            if bad:
                out[i] = error_record(r, f"record {r.get('id', i)!r}: analytic model ({tname}) gave a non-finite or "
                                         f"non-positive result: {', '.join(bad[:4])}; check the technology file")
                continue
            if not bool(pr["ok"][j]):
                out[i] = error_record(r, "analytic layer_ok rule: input+output feature maps exceed the global "
                                         "buffer (CiMLoop: timeloop found no valid mapping)")
                continue
            r["status"] = "ok"
            r["result"] = {"energy_J": e, "cycles": cyc, "cycle_seconds": cs, "latency_s": cyc * cs,
                           "area_m2_total": area, "n_macros": float(pr["n_macros"][j]),
                           "computes": macs, "tops_per_w": 2 * macs / e / 1e12,
                           "energy_breakdown_J": eb, "area_breakdown_m2": ab,
                           "backend": "analytic", "technology": tname}
            out[i] = r
    return out


def jax_to_np(tree):
    import jax
    return jax.tree_util.tree_map(lambda x: np.asarray(x), tree)


class AnalyticBackend:
    """The embedded analytic backend behind ``get_backend('analytic')``."""

    name = "analytic"

    def __init__(self, technology: str | None = None):
        self.technology = technology

    def evaluate_records(self, records: list[dict]) -> list[dict]:
        return evaluate_records(records, self.technology)
