"""Analytic hardware model: interface, physics sanity, JAX transforms, validity, technology files, CLI."""
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cimnas_jax.hw import (ENERGY_COMPONENTS, TechnologyError, evaluate_designs, evaluate_layer_table,
                           get_backend, load_technology)
from cimnas_jax.hw.tech import TECH_DIR, technology_from_dict
from cimnas_jax.workload import HardwareParams, make_layer_table

ROOT = Path(__file__).resolve().parents[1]


def _hw(n=1, **kw):
    base = dict(voltage_v=0.7, bits_per_cell=4.0, clock_period_s=4e-9, rows=128.0, cols=128.0, router_group=8.0,
                tiles=16.0, macros_per_tile=16.0, glb_bytes=8.0 * 2 ** 20, adc_bits=8.0, n_adc_per_bank=16.0)
    base.update(kw)
    return HardwareParams(**{k: jnp.full((n,), v, jnp.float32) for k, v in base.items()})


def _layers(n=1):
    # pointwise 40->240 @28x28, depthwise 3x3 240ch @28x28, fc 1280->1000; 8/8 bit
    C = np.array([[40, 240, 1280]], np.float32).repeat(n, 0)
    M = np.array([[240, 240, 1000]], np.float32).repeat(n, 0)
    R = np.array([[1, 3, 1]], np.float32).repeat(n, 0)
    P = np.array([[28, 28, 1]], np.float32).repeat(n, 0)
    kind = np.array([[2, 1, 3]], np.int32).repeat(n, 0)
    return make_layer_table(C, M, R, R, P, P, 1.0, kind, 8.0, 8.0, np.ones_like(C, bool))


@pytest.fixture(scope="module")
def tech():
    return load_technology("rram_32nm")


def test_parts_sum_to_totals(tech):
    r = evaluate_layer_table(tech, _layers(2), _hw(2))
    e_parts = sum(r.energy_breakdown_j[k] for k in ENERGY_COMPONENTS)
    a_parts = sum(r.area_breakdown_mm2[k] for k in ENERGY_COMPONENTS)
    np.testing.assert_allclose(e_parts, r.energy_j, rtol=1e-5)
    np.testing.assert_allclose(r.layer_energy_j.sum(-1), r.energy_j, rtol=1e-5)
    np.testing.assert_allclose(a_parts, r.area_mm2, rtol=1e-5)
    np.testing.assert_allclose(r.layer_latency_s.sum(-1), r.latency_s, rtol=1e-5)
    assert set(r.energy_breakdown_j) == set(ENERGY_COMPONENTS)
    assert bool(r.valid.all())


_jit_eval = jax.jit(evaluate_layer_table)


def _eval(tech, **kw):
    return _jit_eval(tech, _layers(), _hw(**kw))


@pytest.mark.parametrize("tname", ["rram_32nm", "sram_7nm"])
def test_monotonicity(tname):
    t = load_technology(tname)
    bpc = 4.0 if tname == "rram_32nm" else 1.0
    e = lambda **kw: _eval(t, bits_per_cell=bpc, **kw)
    lo, hi = e(adc_bits=6.0), e(adc_bits=8.0)
    assert float(hi.energy_breakdown_j["adc"][0]) > float(lo.energy_breakdown_j["adc"][0])
    assert float(hi.area_breakdown_mm2["adc"][0]) > float(lo.area_breakdown_mm2["adc"][0])
    assert float(e(voltage_v=0.8).energy_j[0]) > float(e(voltage_v=0.6).energy_j[0])
    assert float(e(glb_bytes=32.0 * 2 ** 20).area_mm2[0]) > float(e(glb_bytes=2.0 * 2 ** 20).area_mm2[0])
    assert float(e(clock_period_s=8e-9).latency_s[0]) > float(e(clock_period_s=2e-9).latency_s[0])
    assert float(e(voltage_v=0.8).latency_s[0]) < float(e(voltage_v=0.6).latency_s[0])
    # faster conversion -> bigger ADCs; more macros -> more area
    assert float(e(clock_period_s=1e-9).area_breakdown_mm2["adc"][0]) > float(e(clock_period_s=8e-9).area_breakdown_mm2["adc"][0])
    assert float(e(tiles=32.0).area_mm2[0]) > float(e(tiles=16.0).area_mm2[0])
    assert float(e(rows=256.0).area_breakdown_mm2["cim_unit"][0]) > float(e(rows=128.0).area_breakdown_mm2["cim_unit"][0])
    # more input bits -> longer pulse trains -> more array + driver energy; cycles unchanged
    L8 = make_layer_table(np.array([[40.0]]), np.array([[240.0]]), 1.0, 1.0, 28.0, 28.0, 1.0, 2, 8.0, 8.0, True)
    L4 = make_layer_table(np.array([[40.0]]), np.array([[240.0]]), 1.0, 1.0, 28.0, 28.0, 1.0, 2, 4.0, 8.0, True)
    r8, r4 = _jit_eval(t, L8, _hw(bits_per_cell=bpc)), _jit_eval(t, L4, _hw(bits_per_cell=bpc))
    assert float(r8.energy_j[0]) > float(r4.energy_j[0])
    np.testing.assert_allclose(r8.latency_s, r4.latency_s)


def test_adc_follows_node_and_adcs_per_bank(tech):
    # ADC plug-in: a smaller node makes the same ADC smaller and cheaper; a bank of more (slower)
    # ADCs for the same column rate converts at lower energy and takes more area
    small = tech.replace(node_nm=7.0)
    big, sm = _eval(tech), _jit_eval(small, _layers(), _hw())
    assert float(sm.area_breakdown_mm2["adc"][0]) < 0.2 * float(big.area_breakdown_mm2["adc"][0])
    assert float(sm.energy_breakdown_j["adc"][0]) < 0.2 * float(big.energy_breakdown_j["adc"][0])
    r16, r32 = _eval(tech, n_adc_per_bank=16.0), _eval(tech, n_adc_per_bank=32.0)
    assert float(r32.area_breakdown_mm2["adc"][0]) > float(r16.area_breakdown_mm2["adc"][0])
    assert float(r32.energy_breakdown_j["adc"][0]) <= float(r16.energy_breakdown_j["adc"][0])


def test_optional_coefficients_default_off(tmp_path):
    # a technology file written before the optional coefficients existed still loads, with the
    # row drivers' second term switched off
    d = _tech_dict()
    for k in ("ln_e_row2", "row2_v_exp", "row2_cols_exp"):
        d["coefficients"].pop(k)
    p = tmp_path / "old.json"
    p.write_text(json.dumps(d))
    t_old, t = load_technology(str(p)), load_technology("rram_32nm")
    assert float(t_old.coef["ln_e_row2"]) < -50
    e_old, e = _jit_eval(t_old, _layers(), _hw()), _eval(t)
    assert float(e_old.energy_breakdown_j["row_drivers"][0]) < float(e.energy_breakdown_j["row_drivers"][0])
    np.testing.assert_allclose(e_old.energy_breakdown_j["glb"], e.energy_breakdown_j["glb"], rtol=1e-6)


def test_rram_bits_per_cell_and_voltage_scaling(tech):
    # fewer bits per cell -> more columns per weight -> more array energy (CiMLoop: x3.1 at 1 b/cell)
    assert float(_eval(tech, bits_per_cell=1.0).energy_j[0]) > 1.5 * float(_eval(tech, bits_per_cell=4.0).energy_j[0])
    # latency = cycles x clock / V exactly
    r1, r2 = _eval(tech, voltage_v=0.5), _eval(tech, voltage_v=0.8)
    np.testing.assert_allclose(float(r1.latency_s[0]) * 0.5, float(r2.latency_s[0]) * 0.8, rtol=1e-5)


def test_jit_vmap_grad(tech):
    L, H = _layers(3), _hw(3)
    r_eager = evaluate_layer_table(tech, L, H)
    r_jit = jax.jit(evaluate_layer_table)(tech, L, H)
    np.testing.assert_allclose(r_jit.energy_j, r_eager.energy_j, rtol=1e-5)
    # vmap over designs (one design at a time)
    one = lambda l, h: evaluate_layer_table(tech, jax.tree_util.tree_map(lambda x: x[None], l),
                                            jax.tree_util.tree_map(lambda x: x[None], h)).energy_j[0]
    np.testing.assert_allclose(jax.jit(jax.vmap(one))(L, H), r_eager.energy_j, rtol=1e-5)

    def f(v, clk):
        h = H.replace(voltage_v=v, clock_period_s=clk)
        r = evaluate_layer_table(tech, L, h)
        return jnp.sum(jnp.log(r.energy_j) + jnp.log(r.latency_s) + jnp.log(r.area_mm2))

    gv, gc = jax.jit(jax.grad(f, argnums=(0, 1)))(H.voltage_v, H.clock_period_s)
    assert np.all(np.isfinite(gv)) and np.all(np.isfinite(gc))
    assert np.all(np.abs(gv) > 0)
    # grads w.r.t. the technology coefficients (used by calibration) are finite too
    g = jax.jit(jax.grad(lambda c: jnp.sum(evaluate_layer_table(tech.replace_coef(c), L, H).energy_j)))(tech.coef)
    assert all(np.isfinite(float(v)) for v in g.values())


def test_design_that_does_not_fit_is_invalid(tech):
    L = _layers(2)
    H = _hw(2, router_group=1.0, tiles=4.0, macros_per_tile=4.0, rows=32.0, cols=32.0)
    r = evaluate_layer_table(tech, L, H)
    assert float(r.cells_needed[0]) > float(r.cells_available[0])
    assert not bool(r.valid.any())
    # a layer whose feature maps overflow a tiny global buffer fails (CiMLoop: no valid mapping)
    big = make_layer_table(np.array([[16.0]]), np.array([[96.0]]), 1.0, 1.0, 112.0, 112.0, 1.0, 2, 8.0, 8.0, True)
    r2 = evaluate_layer_table(tech, big, _hw(glb_bytes=0.5 * 2 ** 20))
    assert not bool(r2.layer_ok[0, 0]) and not bool(r2.valid[0])
    r3 = evaluate_layer_table(tech, big, _hw(glb_bytes=8.0 * 2 ** 20))
    assert bool(r3.valid[0])


def test_evaluate_designs_from_space():
    from cimnas_jax.space import get_space
    sp = get_space("mbv2_rram")
    g = sp.sample(jax.random.PRNGKey(0), 64)
    r = jax.jit(lambda g: evaluate_designs(sp, g))(g)
    assert r.energy_j.shape == (64,) and r.layer_energy_j.shape[0] == 64
    v = np.asarray(r.valid)
    assert v.any()
    assert np.all(np.isfinite(np.asarray(r.energy_j)[v])) and np.all(np.asarray(r.energy_j)[v] > 0)
    assert np.all(np.asarray(r.area_mm2) > 0)
    need, avail = np.asarray(r.cells_needed), np.asarray(r.cells_available)
    assert not np.any(v & (need > avail))


def _tech_dict(name="rram_32nm"):
    return json.loads((TECH_DIR / f"{name}.json").read_text())


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d["coefficients"].pop("ln_e_cim"), "ln_e_cim"),
    (lambda d: d["cell"].__setitem__("type", "PCM"), "cell.type"),
    (lambda d: d.__setitem__("node_nm", -7), "node_nm"),
    (lambda d: d["coefficients"].__setitem__("adc_a0", "big"), "coefficients.adc_a0"),
    (lambda d: d["glb_area_table"].__setitem__("bytes", [1.0]), "glb_area_table"),
    (lambda d: d.pop("cell"), "cell"),
    (lambda d: d["coefficients"].__setitem__("typo_coef", 1.0), "typo_coef"),
    (lambda d: d["coefficients"].__setitem__("cim_slice_a", -0.3), "coefficients.cim_slice_a"),
    (lambda d: d["coefficients"].__setitem__("cim_slice_b", -1.0), "coefficients.cim_slice_b"),
    (lambda d: d["coefficients"].__setitem__("glb_psum", -0.5), "coefficients.glb_psum"),
    (lambda d: d["coefficients"].__setitem__("adc_fom_slope", -2.0), "coefficients.adc_fom_slope"),
    (lambda d: d["coefficients"].__setitem__("ok_theta", 0.0), "coefficients.ok_theta"),
    (lambda d: d.__setitem__("cell_name", 3), "cell_name"),
])
def test_bad_technology_file_names_field(mutate, field, tmp_path):
    d = _tech_dict()
    mutate(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(TechnologyError, match=field.split(".")[-1]):
        load_technology(str(p))


def test_unknown_technology_and_shipped_files():
    with pytest.raises(TechnologyError, match="available"):
        load_technology("gaas_3nm")
    for name in ("rram_32nm", "sram_7nm"):
        t = load_technology(name)
        d = _tech_dict(name)
        assert d["version"] and "calibration" in d
        assert technology_from_dict(d).name == name == t.name


def test_backend_records_and_cli(tmp_path):
    rec = {"id": "x", "layer": {"name": "pw", "kind": "pointwise", "C": 40, "M": 240, "R": 1, "S": 1, "P": 28, "Q": 28,
                                "stride": 1, "groups": 1, "macs": 7526400}, "input_bits": 8, "weight_bits": 8,
           "hw": {"voltage": 0.7, "bits_per_cell": 4, "base_latency_s": 4e-9, "rows": 128, "cols": 128,
                  "router_group": 8, "tiles": 16, "macros_per_tile": 16, "glb_depth_words": 32768},
           "status": "ok", "result": {"energy_J": -1.0}}
    sram = json.loads(json.dumps(rec))
    sram["id"] = "s"
    sram["hw"].update({"cell": "sram_sinangil_jssc_2021.cell.yaml", "technology_nm": 7, "adc_bits": 6, "bits_per_cell": 1})
    out = get_backend("analytic").evaluate_records([rec, sram])
    r = out[0]["result"]
    assert out[0]["status"] == "ok" and r["energy_J"] > 0
    np.testing.assert_allclose(r["latency_s"], r["cycles"] * r["cycle_seconds"], rtol=1e-6)
    np.testing.assert_allclose(sum(r["energy_breakdown_J"].values()), r["energy_J"], rtol=1e-6)
    np.testing.assert_allclose(sum(r["area_breakdown_m2"].values()), r["area_m2_total"], rtol=1e-6)
    assert out[1]["result"]["technology"] == "sram_7nm"
    assert out[1]["result"]["area_m2_total"] < r["area_m2_total"]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(rec) + "\n" + json.dumps(sram) + "\n")
    outp = tmp_path / "out.jsonl"
    env = {"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-m", "cimnas_jax.hw", "--backend=analytic", f"--jobs={jobs}", f"--out={outp}"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    lines = [json.loads(l) for l in outp.read_text().splitlines()]
    assert [l["id"] for l in lines] == ["x", "s"] and lines[0]["result"]["energy_J"] > 0
    assert "technology_nm" not in p.stderr and "rejected" not in p.stderr
    # a record whose hw.technology_nm and hw.cell name no known technology (32 nm with the SRAM cell)
    # fails, alone, with an error naming both fields; the CLI counts it on stderr
    sram["hw"]["technology_nm"] = 32
    jobs.write_text(json.dumps(rec) + "\n" + json.dumps(sram) + "\n")
    p = subprocess.run([sys.executable, "-m", "cimnas_jax.hw", "--backend=analytic", f"--jobs={jobs}", f"--out={outp}"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 0 and "1 record(s) rejected" in p.stderr, p.stderr
    lines = [json.loads(l) for l in outp.read_text().splitlines()]
    assert lines[0]["status"] == "ok" and lines[1]["status"] == "error" and lines[1]["result"] is None
    assert "hw.technology_nm=32" in lines[1]["error"] and "hw.cell=" in lines[1]["error"], lines[1]["error"]
    p = subprocess.run([sys.executable, "-m", "cimnas_jax.hw", "--backend=nope", f"--jobs={jobs}", f"--out={outp}"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode != 0 and "--backend must be one of" in p.stderr


def test_records_name_their_technology():
    from cimnas_jax.hw.records import tech_name_for
    from cimnas_jax.vocab import RecordError
    assert tech_name_for({}) == "rram_32nm"                                # the RRAM reference records
    assert tech_name_for({"technology_nm": 32}) == "rram_32nm"
    assert tech_name_for({"technology_nm": 7}) == "sram_7nm"
    assert tech_name_for({"cell": "sram_sinangil_jssc_2021.cell.yaml"}) == "sram_7nm"
    assert tech_name_for({"technology_nm": 7, "cell": "sram_sinangil_jssc_2021"}) == "sram_7nm"
    assert tech_name_for({"technology_nm": 32.0, "cell": "rram_neurosim_default.cell.yaml"}) == "rram_32nm"
    for hw in ({"technology_nm": 32, "cell": "sram_sinangil_jssc_2021"}, {"technology_nm": 7, "cell": "rram_neurosim_default"},
               {"technology_nm": 22}, {"cell": "pcm_cell"}):
        with pytest.raises(RecordError, match="hw.technology_nm=.*hw.cell="):
            tech_name_for(hw)
    with pytest.raises(RecordError, match="hw.technology_nm"):
        tech_name_for({"technology_nm": "seven"})
    with pytest.raises(RecordError, match="hw.cell"):
        tech_name_for({"cell": 7})
    # the technology files are the source: their node and cell
    assert load_technology("sram_7nm").cell_name == "sram_sinangil_jssc_2021"
    assert load_technology("rram_32nm").cell_name == "rram_neurosim_default"


def test_zero_padded_inactive_layers_keep_grads_finite(tech):
    C = np.array([[40.0, 0.0]], np.float32)
    L = make_layer_table(C, np.array([[240.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]),
                         np.array([[28.0, 0.0]]), np.array([[28.0, 0.0]]), 1.0, np.array([[2, 2]], np.int32),
                         8.0, 8.0, np.array([[True, False]]))
    H = _hw(1)
    f = lambda v: jnp.sum(jnp.log(evaluate_layer_table(tech, L, H.replace(voltage_v=v)).energy_j))
    g = jax.jit(jax.grad(f))(H.voltage_v)
    assert np.all(np.isfinite(g))
    r = _jit_eval(tech, L, H)
    assert bool(r.valid[0]) and float(r.layer_energy_j[0, 1]) == 0.0


def _good_record(**hw):
    return {"id": "good", "layer": {"name": "pw", "kind": "pointwise", "C": 40, "M": 240, "R": 1, "S": 1, "P": 28,
                                    "Q": 28, "stride": 1, "groups": 1, "macs": 7526400},
            "input_bits": 8, "weight_bits": 8,
            "hw": {"voltage": 0.7, "bits_per_cell": 4, "base_latency_s": 4e-9, "rows": 128, "cols": 128,
                   "router_group": 8, "tiles": 16, "macros_per_tile": 16, "glb_depth_words": 32768, **hw}}


_BAD = [("layer", k, v) for k in ("C", "M", "R", "S", "P", "Q", "stride") for v in (0, -3)] + [
    ("top", "input_bits", 0), ("top", "weight_bits", -8), ("top", "input_bits", None),
    ("hw", "voltage", 0), ("hw", "voltage", -0.7), ("hw", "bits_per_cell", 0), ("hw", "base_latency_s", 0.0),
    ("hw", "base_latency_s", -4e-9), ("hw", "rows", 0), ("hw", "cols", -128), ("hw", "router_group", 0),
    ("hw", "tiles", 0), ("hw", "macros_per_tile", -16), ("hw", "glb_depth_words", 0), ("hw", "adc_bits", 0),
    ("hw", "adc_bits", "x"), ("hw", "adc_bits", None), ("hw", "adc_bits", 2), ("hw", "n_adc_per_bank", 0),
    ("hw", "voltage", "NaN"), ("hw", "rows", 127.5), ("hw", "tiles", True), ("layer", "C", None),
    ("layer", "P", "28"), ("hw", "rows", "missing"), ("layer", "kind", "attention"),
]


@pytest.mark.parametrize("where,field,value", _BAD, ids=[f"{w}.{f}={v!r}" for w, f, v in _BAD])
def test_bad_record_field_is_an_error_record_naming_it(where, field, value):
    rec = _good_record()
    d = rec if where == "top" else rec[where]
    if value == "missing":
        del d[field]
    else:
        d[field] = value
    good, bad = get_backend("analytic").evaluate_records([_good_record(), rec])
    assert good["status"] == "ok" and good["result"]["energy_J"] > 0
    assert bad["status"] == "error" and bad["result"] is None
    name = field if where == "top" else f"{where}.{field}"
    assert name in bad["error"], bad["error"]
    if field != "kind":
        assert "must be" in bad["error"] and ("whole number" in bad["error"] or "number" in bad["error"]), bad["error"]
        assert (">" in bad["error"] or ".." in bad["error"]), bad["error"]   # the allowed range


def test_bits_per_cell_above_the_cell_maximum_is_rejected():
    sram = _good_record(cell="sram_sinangil_jssc_2021", technology_nm=7, bits_per_cell=4)
    (r,) = get_backend("analytic").evaluate_records([sram])
    assert r["status"] == "error" and "hw.bits_per_cell" in r["error"] and "1..1" in r["error"], r["error"]


def test_unphysical_coefficients_never_read_ok(monkeypatch):
    # a technology whose coefficients give a negative array energy (not loadable from a file, built in
    # code): the design is invalid and the record an error, never "ok" with a negative energy
    bad = load_technology("rram_32nm").replace_coef({**load_technology("rram_32nm").coef,
                                                     "cim_slice_a": -40.0, "cim_slice_b": -40.0})
    # (8-bit weights on 3-bit cells: a partial last slice, whose read cost is a + b x level)
    r = evaluate_layer_table(bad, _layers(1), _hw(1, bits_per_cell=3.0))
    assert float(r.energy_j[0]) < 0 and not bool(r.valid[0])
    from cimnas_jax.hw import records
    monkeypatch.setattr(records, "load_technology", lambda name: bad)
    (out,) = records.evaluate_records([_good_record(bits_per_cell=3)])
    assert out["status"] == "error" and "non-positive" in out["error"] and "energy_J" in out["error"], out["error"]
    slow = bad.replace_coef({**bad.coef, "cim_slice_a": 1.0, "cim_slice_b": 1.0, "ln_e_glb_in": float("inf")})
    monkeypatch.setattr(records, "load_technology", lambda name: slow)
    (out,) = records.evaluate_records([_good_record()])
    assert out["status"] == "error" and "non-finite" in out["error"], out["error"]


def test_cli_output_never_holds_nan_or_infinity(tmp_path):
    good = json.dumps(_good_record())
    lines = [good, good.replace('"voltage": 0.7', '"voltage": NaN'), good.replace('"rows": 128', '"rows": Infinity'),
             good.replace('"cols": 128', '"cols": -Infinity'), good.replace('"adc_bits"', '"x"').replace(
                 '"glb_depth_words": 32768', '"glb_depth_words": 32768, "adc_bits": null')]
    jobs, outp = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    jobs.write_text("\n".join(lines) + "\n")
    env = {"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-m", "cimnas_jax.hw", "--backend=analytic", f"--jobs={jobs}", f"--out={outp}"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert "4 record(s) rejected" in p.stderr, p.stderr
    text = outp.read_text()
    def no_constants(c):
        raise AssertionError(f"bare {c} in the output")
    out = [json.loads(l, parse_constant=no_constants) for l in text.splitlines()]
    assert [o["status"] for o in out] == ["ok", "error", "error", "error", "error"]
    for o, field in zip(out[1:], ("hw.voltage", "hw.rows", "hw.cols", "hw.adc_bits")):
        assert field in o["error"], o["error"]


def test_vocabulary_is_defined_once():
    # layer kinds, component names, record fields and the capacity rule come from one place
    from cimnas_jax import vocab, workload
    from cimnas_jax.cimloop import config as clc, totals
    from cimnas_jax.hw import model, records
    from cimnas_jax.label import pipeline
    from cimnas_jax.surrogate import features
    assert model.ENERGY_COMPONENTS is vocab.COMPONENTS and model.AREA_COMPONENTS is vocab.COMPONENTS
    assert totals.COMPONENTS is vocab.COMPONENTS and ENERGY_COMPONENTS is vocab.COMPONENTS
    assert clc.KINDS is vocab.KIND_NAMES and workload.KIND_NAMES is vocab.KIND_NAMES
    assert (workload.KIND_CONV, workload.KIND_DEPTHWISE, workload.KIND_POINTWISE, workload.KIND_FC) == (0, 1, 2, 3)
    assert vocab.KIND_NAMES[vocab.KIND_DEPTHWISE] == "depthwise"
    assert features.HW_FIELDS is vocab.HW_PARAM_FIELDS and pipeline.HW_PARAM_FIELDS is vocab.HW_PARAM_FIELDS
    assert vocab.HW_PARAM_FIELDS == tuple(HardwareParams.__dataclass_fields__)
    assert pipeline.LAYER_TABLE_FIELDS is vocab.LAYER_TABLE_FIELDS and clc.GLB_WORD_BYTES is vocab.GLB_WORD_BYTES
    # record <-> HardwareParams: the unit conversions (glb words x 256 bytes, base_latency_s = clock)
    hwf = {"voltage_v": 0.65, "bits_per_cell": 2.0, "clock_period_s": 6e-9, "rows": 256.0, "cols": 64.0,
           "router_group": 2.0, "tiles": 8.0, "macros_per_tile": 32.0, "glb_bytes": 2.0 * 2 ** 20, "adc_bits": 8.0,
           "n_adc_per_bank": 16.0}
    lay = {"kind": 1, "C": 96, "M": 96, "R": 3, "S": 3, "P": 14, "Q": 14, "stride": 2, "groups": 96,
           "input_bits": 6, "weight_bits": 4, "macs": 96 * 9 * 196}
    rec = clc.record_from_arrays(lay, hwf)
    assert rec["hw"]["glb_depth_words"] == 2 * 2 ** 20 // 256 and rec["hw"]["base_latency_s"] == 6e-9
    assert rec["layer"]["kind"] == "depthwise"
    lv, hv = records.record_values(rec, load_technology("rram_32nm"))
    assert hv == pytest.approx(hwf) and lv["kind"] == 1 and lv["stride"] == 2
    # the capacity rule: features and the evaluator use workload.capacity
    from cimnas_jax.space import get_space
    sp = get_space("mbv2_rram")
    g = sp.sample(jax.random.PRNGKey(3), 8)
    need, avail = workload.capacity(sp.workloads(g), sp.hardware(g))
    r = evaluate_designs(sp, g)
    np.testing.assert_array_equal(r.cells_needed, need)
    num = np.asarray(features.numeric(sp, g))
    i = features.NUMERIC_NAMES.index("log2_cells_needed")
    np.testing.assert_allclose(num[:, i], np.log2(np.asarray(need)), rtol=1e-6)


def test_model_parts_by_hand(tech):
    # the baseline pointwise layer (40 -> 240 at 28x28, 8-bit weights on 4-bit cells, 128x128 crossbars,
    # 16 macros x 16 tiles x 8 routers): 2 columns per weight, 1 x 4 crossbars per copy, 512 copies
    # fit, all 28 output rows at once -> 28 cycles (the reference: 28); P split 4 macro x 7 tile x 1 router
    from cimnas_jax.hw import model
    L, H = _layers(1), _hw(1)
    shape = model.layer_shape(L)
    m = jax.jit(model.map_layer)(shape, H)
    a = jax.jit(model.action_counts)(shape, m)
    pw = lambda x: float(np.asarray(x)[0, 0])
    assert (pw(m.slices), pw(m.row_tiles), pw(m.col_tiles), pw(m.macros_per_copy)) == (2, 1, 4, 4)
    assert (pw(m.passes), pw(m.copies), pw(m.p_parallel), pw(m.p_steps), pw(m.cycles)) == (1, 512, 28, 1, 28)
    assert (pw(a.p_macro), pw(a.p_tile), pw(a.p_router), pw(a.row_reread), pw(a.col_reuse)) == (4, 7, 1, 1.0, 1.0)
    assert pw(a.macs) == 40 * 240 * 28 * 28 and pw(a.pulses) == 255
    # depthwise (slot 1): one channel per macro, 240 macros per copy
    assert float(np.asarray(m.macros_per_copy)[0, 1]) == 240
    lm = model.layer_model(tech, L, H)
    en = model.component_energies(tech, shape, m, a, H)
    for k in ENERGY_COMPONENTS:
        np.testing.assert_array_equal(lm["energy_j"][k], en[k])
    np.testing.assert_array_equal(lm["cycles"], m.cycles)
    np.testing.assert_array_equal(lm["ok"], model.layer_fits(tech, a, H))


def test_shipped_example_jobs_evaluate_ok_at_their_own_technology():
    """The example jobs file the README points to (package data) evaluates without an error record,
    each record at the technology it names (32 nm RRAM and 7 nm SRAM layers)."""
    from importlib import resources
    import cimnas_jax.assets as assets
    p = resources.files(assets) / "examples" / "hw_jobs.jsonl"
    recs = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    assert len(recs) == 10 and {r["hw"]["technology_nm"] for r in recs} == {32, 7}
    out = get_backend("analytic").evaluate_records(recs)
    assert [r["status"] for r in out] == ["ok"] * 10, [r.get("error") for r in out]
    for r in out:
        res = r["result"]   # the reference records' field names (energy_J, area_m2_total)
        assert res["energy_J"] > 0 and res["latency_s"] > 0 and res["area_m2_total"] > 0
