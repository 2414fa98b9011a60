"""Real CiMLoop runs against the reference records. Skipped unless CiMLoop is installed and
CIMLOOP_MODELS_DIR points at its workspace/models folder (each layer takes 5-20 s)."""
import json
from pathlib import Path

import pytest

from cimnas_jax.cimloop import cimloop_available

REF = Path(__file__).resolve().parents[2] / "shared" / "cimloop_reference"
OK, WHY = cimloop_available()
pytestmark = pytest.mark.skipif(not OK, reason=f"CiMLoop not available: {WHY[:200]}")


def _pick():
    if not REF.exists():
        pytest.skip(f"../shared absent: {REF}")
    recs = [json.loads(line) for line in open(REF / "layers.jsonl")]
    pick = [r for r in recs if r["id"] == "oat_base"]
    pick += [r for r in recs if r["status"] == "ok" and r["layer"]["kind"] == "depthwise"
             and r["layer"]["stride"] == 2][:1]
    pick += [r for r in recs if r["status"] == "ok" and r["layer"]["kind"] == "conv"][:1]
    pick += [r for r in recs if r["status"] == "error"][:1]
    return pick


def test_reproduces_reference_layer_records_within_1_percent(tmp_path):
    from cimnas_jax.cimloop import CimloopBackend
    recs = _pick()
    be = CimloopBackend(cache_path=str(tmp_path / "c.sqlite"), workers=2, timeout_s=900)
    out = be.evaluate_records(recs)
    for ref, got in zip(recs, out):
        if ref["status"] == "error":
            assert got["status"] == "error", got["id"]
            continue
        assert got["status"] == "ok", (got["id"], got["error"])
        for f in ("energy_J", "latency_s", "area_m2_total"):
            assert got["result"][f] == pytest.approx(ref["result"][f], rel=0.01), (ref["id"], f)
        assert got["result"]["cycles"] == ref["result"]["cycles"]
        for c, v in ref["result"]["energy_breakdown_J"].items():
            assert got["result"]["energy_breakdown_J"][c] == pytest.approx(v, rel=0.01, abs=1e-15)
    again = be.evaluate_records(recs)  # every layer now comes from the cache
    assert all(o["cache_hit"] for o in again) and be.last_stats["n_evaluated"] == 0
