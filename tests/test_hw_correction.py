"""CiMLoop-trained hardware correction: recovers a known residual, shipped corrections load and do
not lose to the analytic model on held-out CiMLoop records, the calibrated backend / design path."""
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cimnas_jax.hw import calibrated, correction as C, correction_io as IO
from cimnas_jax.hw import evaluate_designs, get_backend, load_technology
from cimnas_jax.label import design_layer_records
from cimnas_jax.space import get_space

ROOT = Path(__file__).resolve().parents[1]
SMALL = C.FitConfig(hidden=(32, 32), members=3, steps=400, seed=0)


def _synthetic_residual(rec):
    """A known log(CiMLoop / analytic): depthwise +0.25, -0.05 per weight bit above 4, +0.1 x log2(cols / 128)
    on energy; stride-2 layers +0.08 on latency; area +0.05 x log2(tiles / 16)."""
    lay, hw = rec["layer"], rec["hw"]
    fe = 0.25 * (lay["kind"] == "depthwise") - 0.05 * (rec["weight_bits"] - 4) + 0.1 * np.log2(hw["cols"] / 128)
    return np.array([fe, 0.08 * (lay["stride"] == 2), 0.05 * np.log2(hw["tiles"] / 16)])


@pytest.fixture(scope="module")
def synthetic():
    sp = get_space("mbv2_rram")
    g = np.asarray(sp.sample(jax.random.PRNGKey(5), 30))
    recs, groups = [], []
    for p, rs in enumerate(design_layer_records(sp, g)):
        recs += rs
        groups += [f"d{p}"] * len(rs)
    out = get_backend("analytic").evaluate_records(recs)
    truth, f = [], []
    for r, gname in zip(out, groups):
        r["group"] = gname
        if r["status"] == "ok":
            d = _synthetic_residual(r)
            res = r["result"]
            r["result"] = {"energy_J": res["energy_J"] * np.exp(d[0]), "latency_s": res["latency_s"] * np.exp(d[1]),
                           "area_m2_total": res["area_m2_total"] * np.exp(d[2])}
    data = C.dataset_from_records(out, load_technology("rram_32nm"), lambda r: r["group"], "synthetic")
    return data


def test_correction_recovers_a_known_residual(synthetic):
    data = synthetic
    test = np.asarray([int(g[1:]) % 5 == 0 for g in data.group])      # 6 of 30 designs held out
    tech = load_technology("rram_32nm")
    corr, rep = C.fit_correction_cv(tech, data.take(~test), SMALL, folds=2, log=lambda *a: None)
    held = data.take(test)
    pred = np.asarray(C.predict_log_ratio(corr, jnp.asarray(held.x)))
    for i, t in enumerate(C.TARGETS):
        err = np.abs(pred[:, i] - held.y[:, i])
        spread = np.mean(np.abs(held.y[:, i] - held.y[:, i].mean()))   # error of the best constant
        # area: one value per chip and only 24 chips to learn from: better than the best constant
        assert np.mean(err) < (0.25 if t != "area" else 0.9) * spread + 5e-3, (t, np.mean(err), spread)
        assert float(corr.shrink[i]) >= 0.7, (t, rep["cv"]["targets"][t])
    before = C.layer_metrics(held.analytic, held.truth)
    after = C.layer_metrics(C.corrected(corr, held), held.truth)
    assert after["energy"]["mape_pct"] < 0.3 * before["energy"]["mape_pct"], (before, after)
    assert after["energy"]["kendall_tau"] > before["energy"]["kendall_tau"]


def test_shrink_is_zero_when_there_is_nothing_to_learn(synthetic):
    # labels = the analytic model plus noise that no feature explains: CV keeps the analytic model
    rng = np.random.default_rng(0)
    data = synthetic.take(np.asarray([int(g[1:]) < 12 for g in synthetic.group]))
    noisy = C.LayerData(**{**data.__dict__, "y": rng.normal(0.0, 0.05, data.y.shape)})
    corr, _ = C.fit_correction_cv(load_technology("rram_32nm"), noisy, SMALL, folds=2, log=lambda *a: None)
    assert np.all(np.asarray(corr.shrink) <= 0.2), corr.shrink


def _zeroed(corr):
    return corr.replace(shrink=jnp.zeros_like(corr.shrink))


def test_design_metrics_is_the_analytic_model_without_correction_and_matches_the_backend():
    sp = get_space("mbv2_rram")
    corr = IO.load_correction("rram_32nm")
    g = sp.sample(jax.random.PRNGKey(2), 24)
    tech = load_technology("rram_32nm")
    f = jax.jit(lambda c, g: calibrated.design_metrics(sp, g, c, tech, chunk=16))   # 2 chunks
    m0, r = f(_zeroed(corr), g), evaluate_designs(sp, g, tech)
    for k in ("energy_j", "latency_s", "area_mm2", "cells_needed", "cells_available"):
        np.testing.assert_allclose(m0[k], getattr(r, k), rtol=1e-5)   # jitted vs eager float32
    m = f(corr, g)
    assert set(m) == {"energy_j", "latency_s", "area_mm2", "valid", "cells_needed", "cells_available"}
    v = np.asarray(m["valid"])
    assert v.any() and np.all(np.asarray(m["energy_j"])[v] > 0)
    # the same designs' layer records through the calibrated backend sum to the design's energy, latency
    recs = design_layer_records(sp, np.asarray(g)[:3])
    flat = get_backend("calibrated").evaluate_records([r for rs in recs for r in rs])
    pos = 0
    for p, rs in enumerate(recs):
        out, pos = flat[pos:pos + len(rs)], pos + len(rs)
        if not all(o["status"] == "ok" for o in out):
            continue
        np.testing.assert_allclose(sum(o["result"]["energy_J"] for o in out), m["energy_j"][p], rtol=2e-4)
        np.testing.assert_allclose(sum(o["result"]["latency_s"] for o in out), m["latency_s"][p], rtol=2e-4)
        assert all(o["result"]["backend"] == "calibrated" and "analytic" in o["result"] for o in out)
    # the search fitness built on it has hardware_fitness's keys (traced, not run)
    fit = calibrated.calibrated_fitness(sp, lambda g: jnp.zeros(g.shape[0]), corr)
    assert set(jax.eval_shape(fit, g)) == {"energy_j", "latency_s", "area_mm2", "valid", "cells_needed",
                                           "cells_available", "accuracy"}


def _held_out(technology):
    try:
        data, train, _ = IO.reference_data(technology)
    except FileNotFoundError as e:
        pytest.skip(f"../shared absent: {e}")
    return data.take(~train)


@pytest.mark.parametrize("technology", ["rram_32nm", "sram_7nm"])
def test_shipped_correction_loads_and_does_not_lose_to_the_analytic_model(technology):
    held = _held_out(technology)
    corr = IO.load_correction(technology)
    man = json.loads((IO.correction_path(technology) / "manifest.json").read_text())
    assert man["technology"] == technology and man["features"] == list(C.FEATURE_NAMES)
    a = C.layer_metrics(held.analytic, held.truth)
    c = C.layer_metrics(C.corrected(corr, held), held.truth)
    for t in C.TARGETS:
        assert c[t]["mape_pct"] <= a[t]["mape_pct"] + 0.01, (t, a[t], c[t])
    assert np.mean([c[t]["mape_pct"] for t in C.TARGETS]) < np.mean([a[t]["mape_pct"] for t in C.TARGETS])
    # the manifest's held-out table is what the shipped correction gives today
    stored = man["held_out_layers"]["calibrated"]
    for t in C.TARGETS:
        np.testing.assert_allclose(stored[t]["mape_pct"], c[t]["mape_pct"], rtol=1e-3, atol=1e-3)


def test_retrain_from_a_label_folder(tmp_path):
    # active-learning step: a labelling folder (analytic backend standing in for CiMLoop) adds its
    # designs' layers to the training rows
    from cimnas_jax.label import LabelStore, run_labelling
    sp = get_space("mbv2_rram")
    g = np.asarray(sp.sample(jax.random.PRNGKey(9), 4))
    store = LabelStore(str(tmp_path / "labels"))
    run_labelling(sp, g, store, backend="analytic", chunk_size=4, log=lambda *a: None)
    store.write_manifest({"backend": "analytic", "space": sp.name})
    data, prov = IO.label_dir_data(tmp_path / "labels", "rram_32nm")
    n_ok = sum(l["status"] == "ok" for d in store.read_designs() for l in d["layers"])
    assert len(data) == n_ok > 0 and prov["backend"] == "analytic" and "not CiMLoop" in prov["note"]
    assert len(set(data.group)) == 4
    np.testing.assert_allclose(data.y[:, :2], 0.0, atol=1e-4)   # analytic labels: nothing to correct
    assert IO.label_dir_data(tmp_path / "labels", "sram_7nm")[1]["n_other_technology"] == prov["n_layer_records"]
    corr, rep = IO.retrain("rram_32nm", [tmp_path / "labels"], C.FitConfig(hidden=(16,), members=2, steps=50),
                           folds=2, reference=False, log=lambda *a: None)
    assert rep["n_train_rows"] == n_ok and rep["data"][0]["path"].endswith("labels")
    out = tmp_path / "corr"
    IO.save_correction(out, corr, {"note": "test"})
    back = IO.load_correction(str(out))
    x = jnp.asarray(data.x[:5])
    np.testing.assert_allclose(C.predict_log_ratio(back, x), C.predict_log_ratio(corr, x), rtol=1e-6, atol=1e-7)


def test_cli_calibrated_backend(tmp_path):
    rec = {"id": "x", "layer": {"name": "pw", "kind": "pointwise", "C": 40, "M": 240, "R": 1, "S": 1, "P": 28, "Q": 28,
                                "stride": 1, "groups": 1, "macs": 7526400}, "input_bits": 8, "weight_bits": 8,
           "hw": {"voltage": 0.7, "bits_per_cell": 4, "base_latency_s": 4e-9, "rows": 128, "cols": 128,
                  "router_group": 8, "tiles": 16, "macros_per_tile": 16, "glb_depth_words": 32768}}
    sram = json.loads(json.dumps(rec))
    sram["id"] = "s"
    sram["hw"].update(cell="sram_sinangil_jssc_2021", technology_nm=7, adc_bits=6, bits_per_cell=1)
    bad = {**rec, "id": "b", "hw": {**rec["hw"], "rows": 0}}
    jobs, outp = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    jobs.write_text("".join(json.dumps(r) + "\n" for r in (rec, sram, bad)))
    env = {"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-m", "cimnas_jax.hw", "--backend=calibrated", f"--jobs={jobs}", f"--out={outp}"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    out = [json.loads(l) for l in outp.read_text().splitlines()]
    ana = get_backend("analytic").evaluate_records([rec, sram, bad])
    assert [o["status"] for o in out] == ["ok", "ok", "error"] and "hw.rows" in out[2]["error"]
    for o, a in zip(out[:2], ana[:2]):
        r = o["result"]
        assert r["backend"] == "calibrated" and set(a["result"]) - {"backend"} <= set(r)
        np.testing.assert_allclose(r["analytic"]["energy_J"], a["result"]["energy_J"], rtol=1e-9)
        np.testing.assert_allclose(r["energy_J"], a["result"]["energy_J"] * np.exp(r["log_ratio"][0]), rtol=1e-9)
        np.testing.assert_allclose(sum(r["energy_breakdown_J"].values()), r["energy_J"], rtol=1e-6)
    assert out[1]["result"]["technology"] == "sram_7nm"
