"""Real CiMLoop runs against the reference records. Skipped unless CiMLoop is installed and
CIMLOOP_MODELS_DIR points at its workspace/models folder (each layer takes 5-20 s)."""
import json
from pathlib import Path

import pytest

from cimnas_jax.cimloop import cimloop_available
from cimnas_jax.cimloop.backend import CimloopUnavailable, locate

REF = Path(__file__).resolve().parents[2] / "shared" / "cimloop_reference"
OK, WHY = cimloop_available()
needs_cimloop = pytest.mark.skipif(not OK, reason=f"CiMLoop not available: {WHY[:200]}")


def _front_end_available():
    try:
        locate()
        import pytimeloop.timeloopfe.v4  # noqa: F401
        return True, ""
    except (CimloopUnavailable, ImportError) as e:
        return False, str(e)[:200]


FE_OK, FE_WHY = _front_end_available()


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


@pytest.mark.skipif(not FE_OK, reason=f"CiMLoop front end not available: {FE_WHY}")
def test_front_end_spec_carries_every_knob(tmp_path):
    """Build the spec through CiMLoop's models and timeloopfe (no timeloop/accelergy
    binaries needed) and check the processed input timeloop would receive."""
    import re
    import yaml
    from pytimeloop.timeloopfe.common.backend_calls import _pre_call
    from cimnas_jax.cimloop.backend import build_spec
    from cimnas_jax.cimloop.config import CimloopConfig
    for r in _pick()[:3]:
        job = tmp_path / r["id"]
        job.mkdir()
        spec = build_spec(r, CimloopConfig(models_dir=locate()[0]), str(job))
        paths, _ = _pre_call(spec, str(job), None, for_model=False)
        text = open(paths[0]).read()
        y = yaml.safe_load(text)
        lay, hw = r["layer"], r["hw"]
        inst = y["problem"]["instance"]
        s = lay["stride"]
        assert inst["Hstride"] == s and inst["Wstride"] == s
        assert (inst["P"], inst["Q"], inst["R"], inst["S"]) == (lay["P"], lay["Q"], lay["R"], lay["S"])
        if lay["kind"] == "depthwise":
            assert (inst["G"], inst["C"], inst["M"]) == (lay["C"], 1, 1)
        else:
            assert (inst["C"], inst["M"]) == (lay["C"], lay["M"])
        n_macros = hw["router_group"] * hw["tiles"] * hw["macros_per_tile"]
        assert re.search(rf"name: adc\[1\.\.{n_macros}\]", text)
        assert re.search(rf"name: cim_unit\[1\.\.{n_macros * hw['rows'] * hw['cols']}\]", text)
        glb = text[text.find("name: glb["):][:400]
        assert f"depth: {hw['glb_depth_words']}" in glb
        adc = text[text.find("name: adc["):][:1500]
        assert f"rows: {hw['rows']}" in adc and f"cols: {hw['cols']}" in adc
        assert f"temporal_dac_bits: {r['input_bits']}" in adc and "n_adcs: 16" in adc
        cyc = float(re.search(r"cycle_seconds: ([0-9.e+-]+)", adc).group(1))
        assert cyc == pytest.approx(hw["base_latency_s"] / hw["voltage"], rel=1e-9)
        assert "rram_neurosim_default.cell.yaml" in adc


@needs_cimloop
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


SRAM = REF.parent / "cimloop_reference_sram7nm"


def _pick_sram():
    if not SRAM.exists():
        pytest.skip(f"../shared absent: {SRAM}")
    recs = [json.loads(line) for line in open(SRAM / "layers.jsonl")]
    by_bits = {}
    for r in recs:   # one record per ADC resolution, different layer kinds first
        by_bits.setdefault(r["hw"]["adc_bits"], r)
    return [by_bits[b] for b in sorted(by_bits)][:2]


@pytest.mark.skipif(not FE_OK, reason=f"CiMLoop front end not available: {FE_WHY}")
def test_front_end_spec_of_an_sram_record_is_7nm_with_the_sram_cell(tmp_path):
    """The 7 nm SRAM records reach timeloop at 7 nm, with the SRAM cell and their own ADC resolution
    (before, every record ran at 32 nm with the RRAM cell)."""
    from pytimeloop.timeloopfe.common.backend_calls import _pre_call
    from cimnas_jax.cimloop.backend import build_spec
    from cimnas_jax.cimloop.config import CimloopConfig
    for r in _pick_sram():
        job = tmp_path / r["id"]
        job.mkdir()
        spec = build_spec(r, CimloopConfig(models_dir=locate()[0]), str(job))
        assert spec.variables["TECHNOLOGY"] == 7 and spec.variables["ADC_RESOLUTION"] == r["hw"]["adc_bits"]
        paths, _ = _pre_call(spec, str(job), None, for_model=False)
        text = open(paths[0]).read()
        adc = text[text.find("name: adc["):][:1500]
        assert "sram_sinangil_jssc_2021.cell.yaml" in adc and "rram_neurosim_default" not in adc


@needs_cimloop
def test_reproduces_sram_reference_records_within_1_percent(tmp_path):
    from cimnas_jax.cimloop import CimloopBackend
    recs = _pick_sram()
    out = CimloopBackend(cache_path=str(tmp_path / "c.sqlite"), workers=2, timeout_s=900).evaluate_records(recs)
    for ref, got in zip(recs, out):
        assert got["status"] == "ok", (got["id"], got["error"])
        for f in ("energy_J", "latency_s", "area_m2_total"):
            assert got["result"][f] == pytest.approx(ref["result"][f], rel=0.01), (ref["id"], f)
        assert got["result"]["cycles"] == ref["result"]["cycles"]
