"""Fidelity of the shipped technology files against the real CiMLoop reference data in ../shared
(held-out layers, full networks, failure statuses) and a short run of the fitting machinery."""
import json
from pathlib import Path

import numpy as np
import pytest

from cimnas_jax.hw import calibrate as cal
from cimnas_jax.hw.tech import TECH_DIR, load_technology

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _need(name):
    d = cal.REFERENCE[name]
    if not (d / "layers.jsonl").exists():
        pytest.skip(f"../shared absent: no CiMLoop reference data at {d}")
    return d


def _metrics(name):
    d = _need(name)
    tech = load_technology(name)
    coef = {k: float(v) for k, v in tech.coef.items()}
    glb = json.loads((TECH_DIR / f"{name}.json").read_text())["glb_area_table"]
    recs = cal.load_jsonl(d / "layers.jsonl")
    test = [r for r in recs if not cal.is_train(r)]
    nets = nl = None
    if (d / "networks.jsonl").exists():
        nets, nl = cal.load_jsonl(d / "networks.jsonl"), cal.load_jsonl(d / "networks_layers.jsonl")
    m = cal.metrics(name, coef, glb, test, nets, nl)
    _, m["ok_agreement"] = cal.fit_ok_theta_eval(name, coef, glb, recs + (nl or []))
    return m


@pytest.fixture(scope="module")
def rram():
    return _metrics("rram_32nm")


@pytest.fixture(scope="module")
def sram():
    return _metrics("sram_7nm")


def test_split_is_grouped_and_fixed():
    d = _need("rram_32nm")
    recs = cal.load_jsonl(d / "layers.jsonl")
    groups = {}
    for r in recs:
        g = r["tags"].get("group")
        if g is not None:
            groups.setdefault(g, set()).add(cal.is_train(r))
    assert all(len(v) == 1 for v in groups.values())  # a group never straddles train/test
    assert all(cal.is_train(r) for r in recs if r["tags"].get("design") == "oat")
    n_test = sum(not cal.is_train(r) for r in recs)
    assert 0.25 * len(recs) < n_test < 0.5 * len(recs)


def test_rram_held_out_fidelity(rram):
    for k in ("energy", "latency", "area"):
        assert rram[k]["mape"] <= 0.10, (k, rram[k])
        assert rram[k]["kendall_tau"] >= 0.9, (k, rram[k])
    assert rram["cycles_exact_fraction"] >= 0.95


def test_rram_network_totals(rram):
    assert len(rram["networks"]) == 3
    for n, e in rram["networks"].items():
        for k in ("energy_err", "latency_err", "area_err"):
            assert abs(e[k]) <= 0.10, (n, k, e[k])


def test_rram_failure_rule_agreement(rram):
    assert rram["ok_agreement"] >= 0.97


def _sram_inputs():
    d = _need("sram_7nm")
    tech = load_technology("sram_7nm")
    coef = {k: float(v) for k, v in tech.coef.items()}
    glb = json.loads((TECH_DIR / "sram_7nm.json").read_text())["glb_area_table"]
    return coef, glb, cal.load_jsonl(d / "layers.jsonl")


@pytest.mark.parametrize("name", ["rram_32nm", "sram_7nm"])
def test_adc_is_the_plug_in(name):
    # the model's ADC (accelergy ADC plug-in form and constants) reproduces CiMLoop's ADC bank area:
    # RRAM at its recorded 8 bit; SRAM at one resolution in the README's 4..8 for every record
    d = _need(name)
    tech = load_technology(name)
    coef = {k: float(v) for k, v in tech.coef.items()}
    glb = json.loads((TECH_DIR / f"{name}.json").read_text())["glb_area_table"]
    recs = [r for r in cal.load_jsonl(d / "layers.jsonl") if r["status"] == "ok"]
    bits, err = cal.implied_adc_bits(name, coef, glb, recs)
    assert float(err.max()) < 1e-4
    assert set(np.unique(bits)) <= {4.0, 5.0, 6.0, 7.0, 8.0}
    if name == "rram_32nm":
        assert (bits == 8.0).all()


def test_sram_adc_labels_contradict_adc_area():
    # the data defect the SRAM figures carry (docs/hardware_model.md): hw.adc_bits is 8 in every
    # record while the ADC area says 4..8 bit; if the data owner fixes the labels this test fails
    # and the xfail below should start passing
    coef, glb, recs = _sram_inputs()
    chk = cal.adc_label_check("sram_7nm", coef, glb, recs)
    assert chk["n_area_matches_a_resolution"] == chk["n_records"]
    assert chk["n_adc_bits_label_disagrees"] > 0.5 * chk["n_records"], chk


def test_sram_held_out_fidelity_measured(sram):
    # with the records' hw as given (adc_bits 8 everywhere): latency meets the target; energy and
    # area are bounded so regressions are caught (the ADC follows the wrong label)
    assert sram["latency"]["mape"] <= 0.10 and sram["latency"]["kendall_tau"] >= 0.9
    assert sram["energy"]["mape"] <= 0.20 and sram["energy"]["kendall_tau"] >= 0.85
    assert sram["area"]["mape"] <= 0.30 and sram["area"]["kendall_tau"] >= 0.9
    assert sram["ok_agreement"] == 1.0


def test_sram_held_out_fidelity_with_implied_adc_labels():
    # diagnostic, not the fidelity figure: with hw.adc_bits set to the resolution the reference ADC
    # area implies (reads the reference result), the model meets the target on every metric
    coef, glb, recs = _sram_inputs()
    test = cal.with_implied_adc_bits("sram_7nm", coef, glb, [r for r in recs if not cal.is_train(r)])
    m = cal.metrics("sram_7nm", coef, glb, test)
    for k in ("energy", "latency", "area"):
        assert m[k]["mape"] <= 0.10, (k, m[k])
        assert m[k]["kendall_tau"] >= 0.9, (k, m[k])


@pytest.mark.xfail(strict=True, reason="7 nm SRAM reference: every record says hw.adc_bits=8 (and technology_nm=32) "
                   "while its ADC area is the ADC plug-in's at 4..8 bit and 7 nm (README: ADC 4-8 bit varied); "
                   "the model follows the label, so held-out energy/area MAPE ~15%/~25% "
                   "(docs/hardware_model.md)")
def test_sram_held_out_fidelity_target(sram):
    for k in ("energy", "latency", "area"):
        assert sram[k]["mape"] <= 0.10, (k, sram[k])
        assert sram[k]["kendall_tau"] >= 0.9, (k, sram[k])


def test_shipped_file_records_its_metrics(rram):
    d = json.loads((TECH_DIR / "rram_32nm.json").read_text())
    stored = d["calibration"]["metrics_held_out"]
    for k in ("energy", "latency", "area"):
        np.testing.assert_allclose(stored[k]["mape"], rram[k]["mape"], rtol=1e-3, atol=1e-4)


def test_fit_reduces_loss_on_a_subset():
    d = _need("rram_32nm")
    recs = [r for r in cal.load_jsonl(d / "layers.jsonl") if cal.is_train(r)][:60]
    logs = []
    cal.fit("rram_32nm", recs, steps=40, log=logs.append, lbfgs_steps=0)
    losses = [float(l.split()[-1]) for l in logs if "adam step" in l]
    assert losses[-1] < 0.5 * losses[0], logs
