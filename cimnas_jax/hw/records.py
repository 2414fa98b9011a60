"""Reference-format layer records (CiMLoop reference JSONL schema) <-> model arrays."""
from __future__ import annotations

import math

import numpy as np
import jax.numpy as jnp

from cimnas_jax.workload import HardwareParams, make_layer_table
from cimnas_jax.hw.model import ENERGY_COMPONENTS, chip_area, layer_model
from cimnas_jax.hw.tech import Technology, load_technology
from cimnas_jax.vocab import RecordError, resolve_technology

KINDS = {"conv": 0, "depthwise": 1, "pointwise": 2, "fc": 3}
GLB_WORD_BYTES = 256  # CiMLoop glb word = 2048 bits


def tech_name_for(hw: dict) -> str:
    """Technology file a record's ``hw`` names (``hw.technology_nm`` + ``hw.cell``; neither: rram_32nm).
    A pair that no technology file has raises ``RecordError`` naming both fields."""
    return resolve_technology(hw).name


def error_record(rec, message: str) -> dict:
    """Copy of ``rec`` marked as failed: status "error", the message, no result."""
    r = dict(rec)
    r.update(status="error", error=message, result=None)
    return r


def _get(d, k, rid):
    if not isinstance(d, dict) or k not in d:
        raise RecordError(f"record {rid!r}: missing field {k!r}")
    v = d[k]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RecordError(f"record {rid!r}: field {k!r} must be a finite number, got {v!r}")
    return float(v)


def records_to_arrays(recs: list[dict], tech: Technology):
    """Build ([N,1] LayerTable, [N] HardwareParams) from reference-format records."""
    cols = {k: [] for k in ("C", "M", "R", "S", "P", "Q", "stride", "kind", "ib", "wb")}
    hwc = {k: [] for k in HardwareParams.__dataclass_fields__}
    for r in recs:
        rid = r.get("id", "?")
        lay = r.get("layer")
        if not isinstance(lay, dict):
            raise RecordError(f"record {rid!r}: missing field 'layer'")
        for k in ("C", "M", "R", "S", "P", "Q", "stride"):
            cols[k].append(_get(lay, k, rid))
        kind = lay.get("kind")
        if kind not in KINDS:
            raise RecordError(f"record {rid!r}: field 'layer.kind' must be one of {sorted(KINDS)}, got {kind!r}")
        cols["kind"].append(KINDS[kind])
        cols["ib"].append(_get(r, "input_bits", rid))
        cols["wb"].append(_get(r, "weight_bits", rid))
        hw = r.get("hw")
        if not isinstance(hw, dict):
            raise RecordError(f"record {rid!r}: missing field 'hw'")
        hwc["voltage_v"].append(_get(hw, "voltage", rid))
        hwc["bits_per_cell"].append(_get(hw, "bits_per_cell", rid))
        hwc["clock_period_s"].append(_get(hw, "base_latency_s", rid))
        hwc["rows"].append(_get(hw, "rows", rid))
        hwc["cols"].append(_get(hw, "cols", rid))
        hwc["router_group"].append(_get(hw, "router_group", rid))
        hwc["tiles"].append(_get(hw, "tiles", rid))
        hwc["macros_per_tile"].append(_get(hw, "macros_per_tile", rid))
        hwc["glb_bytes"].append(_get(hw, "glb_depth_words", rid) * GLB_WORD_BYTES)
        hwc["adc_bits"].append(float(hw.get("adc_bits", tech.default_adc_bits)))
        hwc["n_adc_per_bank"].append(float(hw.get("n_adc_per_bank", 16)))
    a = {k: np.asarray(v, np.float32)[:, None] for k, v in cols.items()}
    layers = make_layer_table(a["C"], a["M"], a["R"], a["S"], a["P"], a["Q"], a["stride"],
                              a["kind"].astype(np.int32), a["ib"], a["wb"], np.ones_like(a["C"], bool))
    hwp = HardwareParams(**{k: jnp.asarray(np.asarray(v, np.float32)) for k, v in hwc.items()})
    return layers, hwp


def predict_arrays(tech: Technology, layers, hw):
    """Per-record model outputs (numpy-friendly dict of jnp arrays, [N])."""
    lm = layer_model(tech, layers, hw)
    en = {k: v[:, 0] for k, v in lm["energy_j"].items()}
    slices = jnp.ceil(layers.weight_bits[:, 0] / hw.bits_per_cell)
    ar = chip_area(tech, hw, slices)
    return {"cycles": lm["cycles"][:, 0], "latency_s": lm["latency_s"][:, 0], "energy": en,
            "area": ar, "ok": lm["ok"][:, 0], "n_macros": hw.router_group * hw.tiles * hw.macros_per_tile}


def evaluate_records(recs: list[dict], tech_name: str | None = None) -> list[dict]:
    """Evaluate reference-format records; returns copies with status/error/result in the
    reference's field names and units (J, s, m^2)."""
    out = [None] * len(recs)
    by_tech: dict[str, list[int]] = {}
    for i, r in enumerate(recs):
        hw = r.get("hw") if isinstance(r, dict) else None
        if not isinstance(hw, dict):
            raise RecordError(f"record {i} ({r.get('id', '?') if isinstance(r, dict) else r!r}): missing field 'hw'")
        try:
            name = tech_name or tech_name_for(hw)
        except RecordError as e:  # the record names no known technology: it fails, alone
            out[i] = error_record(r, f"record {r.get('id', i)!r}: {e}")
            continue
        by_tech.setdefault(name, []).append(i)
    for tname, idx in by_tech.items():
        tech = load_technology(tname)
        layers, hw = records_to_arrays([recs[i] for i in idx], tech)
        pr = jax_to_np(predict_arrays(tech, layers, hw))
        for j, i in enumerate(idx):
            r = dict(recs[i])
            r.pop("error", None)
            ok = bool(pr["ok"][j])
            cyc = float(pr["cycles"][j])
            cs = float(hw.clock_period_s[j] / hw.voltage_v[j])
            eb = {k: float(pr["energy"][k][j]) for k in ENERGY_COMPONENTS}
            ab = {k: float(pr["area"][k][j]) for k in ENERGY_COMPONENTS}
            e = sum(eb.values())
            macs = float(layers.macs[j, 0])
            res = {"energy_J": e, "cycles": cyc, "cycle_seconds": cs, "latency_s": cyc * cs,
                   "area_m2_total": sum(ab.values()), "n_macros": float(pr["n_macros"][j]),
                   "computes": macs, "tops_per_w": 2 * macs / e / 1e12 if e > 0 else None,
                   "energy_breakdown_J": eb, "area_breakdown_m2": ab,
                   "backend": "analytic", "technology": tname}
            if ok:
                r["status"] = "ok"
                r["result"] = res
            else:
                r["status"] = "error"
                r["error"] = ("analytic layer_ok rule: input+output feature maps exceed the global buffer "
                              "(CiMLoop: timeloop found no valid mapping)")
                r["result"] = None
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
