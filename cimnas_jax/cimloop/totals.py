"""Per-design totals from per-layer results (reference result schema, SI units)."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from cimnas_jax.vocab import COMPONENTS  # noqa: F401 (re-exported)


def design_totals(layer_records: Sequence[Mapping]) -> dict:
    """Sum energy and latency over layers, chip area, and both kinds of TOPS figures.

    ``layer_records``: evaluated records (``status``, ``result`` with energy_J, latency_s,
    area_m2_total, optional energy_breakdown_J / area_breakdown_m2) of one design's
    active layers. A design with any failed layer is invalid: ``valid`` False, every
    figure of merit None, so it can never rank (CIMNAS scored failures as best).

    - ``tops_per_w_total`` = 2·ΣMACs / ΣE / 1e12; ``tops_per_mm2_total`` =
      2·ΣMACs / ΣT / 1e12 / area_mm2 (the whole network as one job).
    - ``tops_per_w_mean_of_layers`` / ``tops_per_mm2_mean_of_layers``: the mean of the
      per-layer ratios, as CIMNAS reports them (weights small and large layers equally).
    - chip area: the largest ``area_m2_total`` over layers (it depends on hardware and
      bits only; with CiMLoop's fixed SUPPORTED_*_BITS it is the same for every layer).
    """
    n = len(layer_records)
    failed = [r for r in layer_records if r.get("status") != "ok"]
    out = {"n_layers": n, "n_ok": n - len(failed), "n_failed": len(failed),
           "valid": n > 0 and not failed,
           "errors": sorted({str(r.get("error", ""))[:200] for r in failed})[:5]}
    keys = ("energy_j", "latency_s", "cycles", "macs", "area_mm2", "edap_j_s_mm2",
            "tops_per_w_total", "tops_per_mm2_total", "tops_per_w_mean_of_layers",
            "tops_per_mm2_mean_of_layers", "energy_breakdown_j", "area_breakdown_mm2")
    if not out["valid"]:
        out.update({k: None for k in keys})
        return out
    res = [r["result"] for r in layer_records]
    macs = [float(r["layer"].get("macs") or x.get("computes") or 0.0)
            for r, x in zip(layer_records, res)]
    e = [float(x["energy_J"]) for x in res]
    t = [float(x["latency_s"]) for x in res]
    area_m2 = max(float(x["area_m2_total"]) for x in res)
    area_mm2 = area_m2 * 1e6
    energy, latency = sum(e), sum(t)
    out.update(
        energy_j=energy, latency_s=latency,
        cycles=sum(int(x.get("cycles", 0) or 0) for x in res),
        macs=sum(macs), area_mm2=area_mm2, edap_j_s_mm2=energy * latency * area_mm2,
        tops_per_w_total=2 * sum(macs) / energy / 1e12,
        tops_per_mm2_total=2 * sum(macs) / latency / 1e12 / area_mm2,
        tops_per_w_mean_of_layers=sum(2 * m / ei / 1e12 for m, ei in zip(macs, e)) / n,
        tops_per_mm2_mean_of_layers=sum(2 * m / ti / 1e12 / area_mm2
                                        for m, ti in zip(macs, t)) / n,
    )
    eb = {}
    for x in res:
        for c, v in (x.get("energy_breakdown_J") or {}).items():
            eb[c] = eb.get(c, 0.0) + float(v)
    out["energy_breakdown_j"] = eb
    biggest = max(res, key=lambda x: float(x["area_m2_total"]))
    out["area_breakdown_mm2"] = {c: float(v) * 1e6
                                 for c, v in (biggest.get("area_breakdown_m2") or {}).items()}
    bad = [k for k in ("energy_j", "latency_s", "area_mm2") if not math.isfinite(out[k])]
    if bad:
        out["valid"] = False
        out["errors"] = [f"non-finite {bad}"]
        out.update({k: None for k in keys})
    return out
