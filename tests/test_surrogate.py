"""Surrogate tests: recover a known function, save/load round trip, space mismatch, bad inputs.

Tiny models and datasets (2 600 designs, 2 members, 32-wide layers) keep this < ~1 min.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cimnas_jax.space import get_space
from cimnas_jax.surrogate import (HW_TARGETS, Surrogate, SurrogateMismatch, SurrogateSet, TrainConfig,
                                  check_genomes, fidelity, fit_ensemble, load_set, load_surrogates,
                                  predict, save_set)
from cimnas_jax.surrogate import features as F

SPACE = "mbv2_rram"


def _known_function(sp, g):
    """A smooth synthetic 'hardware' law in log space: depends on hw sizes, depth and bits."""
    d = sp.decode(jnp.asarray(g))
    bits = d["pw_w_bits_b01"]
    depth = sum(d[f"depth_s{i}"] for i in range(1, 7))
    e = 0.8 * jnp.log(d["xbar_rows"]) - 0.5 * jnp.log(d["tiles"]) + 0.15 * depth + 0.1 * bits
    lat = 1.2 * jnp.log(d["clock_period_ns"]) + 0.4 * jnp.log(d["xbar_cols"]) + 0.1 * depth
    area = 0.7 * jnp.log(d["tiles"] * d["macros_per_tile"]) + 0.2 * jnp.log(d["glb_mb"])
    return np.asarray(jnp.stack([e, lat, area], -1), np.float64)


@pytest.fixture(scope="module")
def trained():
    sp = get_space(SPACE)
    g = np.asarray(sp.canonicalise(sp.sample(jax.random.PRNGKey(0), 2600)))
    y = _known_function(sp, g)
    valid = np.ones(len(g), bool)
    valid[::10] = False                       # 'invalid designs': NaN labels must be excluded
    y[~valid] = np.nan
    tr, va, te = slice(0, 2000), slice(2000, 2300), slice(2300, 2600)
    D = lambda s: {"genomes": g[s], "y": y[s], "valid": valid[s]}
    cfg = TrainConfig(hidden=(32, 32), members=2, lr=3e-3, batch=64, max_epochs=40, patience=8, weight_decay=1e-4)
    ens, hist = fit_ensemble(sp, D(tr), D(va), cfg, targets=HW_TARGETS, with_valid=True, log=lambda *_: None)
    sset = SurrogateSet(hw=ens, acc=None, space_name=sp.name)
    return sp, sset, g[te], y[te], valid[te], hist


def test_recovers_known_function(trained):
    sp, sset, g, y, valid, hist = trained
    assert hist["epochs"] >= 5 and all(np.isfinite(hist["train_loss"]))
    out = jax.jit(predict)(sset, jnp.asarray(g))
    for i, t in enumerate(HW_TARGETS):
        m = fidelity(np.exp(y[valid, i]), np.asarray(out[t])[valid], std=np.asarray(out[f"log_{t}_std"])[valid])
        assert m["kendall_tau"] > 0.85, (t, m)
        assert m["mape_pct"] < 10.0, (t, m)
        assert np.all(np.asarray(out[f"{t}_std"]) > 0)
    # validity has no signal in the genome here (every 10th design): only check it is a probability
    pv = np.asarray(out["valid_prob"])
    assert np.all((pv >= 0) & (pv <= 1))


def test_chunked_predict_matches_unchunked(trained):
    sp, sset, g, *_ = trained
    a = predict(sset, jnp.asarray(g))
    b = predict(sset, jnp.asarray(g), chunk=64)          # 300 designs -> 5 chunks with padding
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=2e-5, atol=1e-12)


def test_onehot_ignores_inactive_genes():
    sp = get_space(SPACE)
    g = np.asarray(sp.sample(jax.random.PRNGKey(3), 64))
    c = np.asarray(sp.canonicalise(g))
    np.testing.assert_array_equal(np.asarray(F.onehot(sp, g)), np.asarray(F.onehot(sp, c)))
    assert F.onehot(sp, g).shape == (64, int(sp.n_choices.sum()))


def test_save_load_round_trip(trained, tmp_path):
    sp, sset, g, *_ = trained
    path = save_set(tmp_path / "set", sset, sp, {"note": "test"})
    man = json.loads((path / "manifest.json").read_text())
    assert man["space"] == SPACE and man["n_genes"] == sp.n_genes and man["model"]["hw"]["members"] == 2
    s = load_surrogates(SPACE, path)
    a, b = jax.jit(predict)(sset, jnp.asarray(g)), s(g)   # same jitted path: bitwise-equal params
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-6)
    save_set(path, sset, sp, {"note": "again"})          # overwrite in place keeps working
    assert json.loads((path / "manifest.json").read_text())["note"] == "again"


def test_mismatched_space_fails_clearly(trained, tmp_path):
    sp, sset, *_ = trained
    path = save_set(tmp_path / "set", sset, sp, {})
    with pytest.raises(SurrogateMismatch, match="space"):
        load_set(path, get_space("resnet50_sram7nm"))
    man = json.loads((path / "manifest.json").read_text())
    man["choices_hash"] = "deadbeef"
    (path / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(SurrogateMismatch, match="choices_hash"):
        load_set(path, sp)
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_set(tmp_path / "nothing", sp)


def test_nan_and_bad_inputs_rejected(trained):
    sp, sset, g, *_ = trained
    s = Surrogate(sset, sp)
    bad = g[:4].astype(np.float32)
    bad[2, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite.*gene 'router_group'"):
        s(bad)
    with pytest.raises(ValueError, match="shape"):
        s(g[:, :10])
    oob = g[:2].copy()
    oob[0, 0] = 99
    with pytest.raises(ValueError, match="voltage_v"):
        check_genomes(sp, oob)


def test_fidelity_metrics_behave():
    rng = np.random.default_rng(0)
    t = np.exp(rng.normal(size=4000))
    perfect = fidelity(t, t)
    assert perfect["mape_pct"] == 0 and perfect["kendall_tau"] == pytest.approx(1) and perfect["top10_recall"] == 1
    sigma = 0.1
    noisy = t * np.exp(rng.normal(scale=sigma, size=t.size))
    m = fidelity(t, noisy, std=np.full(t.size, sigma))
    assert m["coverage_1sigma"] == pytest.approx(0.683, abs=0.03)
    assert m["coverage_2sigma"] == pytest.approx(0.954, abs=0.02)
    assert 0.5 < m["kendall_tau"] < 1


def test_shipped_set_loads_and_predicts():
    from cimnas_jax.assets import assets_root
    root = assets_root()
    for name, rel in (("mbv2_rram", "mbv2_rram/rram_32nm"), ("resnet50_sram7nm", "resnet50_sram7nm/sram_7nm")):
        if not (root / rel / "manifest.json").exists():
            pytest.skip(f"shipped set {rel} not trained yet (experiments/train_surrogates.py)")
        s = load_surrogates(name)
        sp = get_space(name)
        out = s(np.asarray(sp.sample(jax.random.PRNGKey(1), 16)))
        for k in ("energy_j", "latency_s", "area_mm2"):
            assert np.all(np.isfinite(np.asarray(out[k]))) and np.all(np.asarray(out[k]) > 0)
        assert ("accuracy" in out) == s.has_accuracy


def test_accuracy_label_files_parsed_and_checked(tmp_path):
    """Accuracy labels: the supernet's JSONL folder is read, canonicalises, and rejects wrong hashes."""
    from cimnas_jax.surrogate.labels import read_accuracy_labels
    sp = get_space(SPACE)
    g = np.asarray(sp.sample(jax.random.PRNGKey(5), 6))
    hs = sp.hash_hex(g)
    lines = [json.dumps({"genome": g[i].tolist(), "hash": hs[i], "accuracy": 0.5 + 0.05 * i}) for i in range(6)]
    (tmp_path / "part-1.jsonl").write_text("\n".join(lines[:3]) + "\n")
    (tmp_path / "part-2.jsonl").write_text("\n".join(lines[3:]) + "\n")
    ga, ha, a = read_accuracy_labels(sp, [str(tmp_path)])
    assert len(a) == 6 and sorted(ha) == sorted(hs)
    np.testing.assert_array_equal(ga, np.asarray(sp.canonicalise(ga)))
    bad = json.loads(lines[0]); bad["hash"] = "0" * 16
    (tmp_path / "part-3.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(Exception, match="does not match"):
        read_accuracy_labels(sp, [str(tmp_path)])


@pytest.mark.parametrize("features", ["arch", "arch_onehot"])
def test_accuracy_arch_features_ignore_hardware_and_round_trip(tmp_path, features):
    """An accuracy ensemble on architecture features (ordinal or one-hot genes): learns a known
    law of the network genes, is blind to hardware genes, and keeps its feature kind through
    save/load."""
    from cimnas_jax.surrogate import ACC_TARGETS
    sp = get_space(SPACE)
    g = np.asarray(sp.canonicalise(sp.sample(jax.random.PRNGKey(3), 700)))
    d = sp.decode(jnp.asarray(g))
    depth = sum(d[f"depth_s{i}"] for i in range(1, 6))
    y = np.asarray(0.5 + 0.02 * depth + 0.01 * d["kernel_b01"] + 0.005 * d["pw_w_bits_b01"], np.float64)[:, None]
    cfg = TrainConfig(hidden=(), members=2, lr=1e-2, batch=32, max_epochs=60, patience=20, weight_decay=1e-4)
    D = lambda s: {"genomes": g[s], "y": y[s]}
    ens, _ = fit_ensemble(sp, D(slice(0, 500)), D(slice(500, 600)), cfg, targets=ACC_TARGETS,
                          log=lambda *_: None, features=features)
    assert ens.features == features
    sset = SurrogateSet(hw=None, acc=ens, space_name=sp.name)
    out = np.asarray(predict(sset, jnp.asarray(g[600:]))["accuracy"])
    assert fidelity(y[600:, 0], out, log_space=False)["kendall_tau"] > 0.8
    g2 = g[600:].copy()
    g2[:, :9] = (g2[:, :9] + 1) % sp.n_choices[:9]          # change every hardware gene
    np.testing.assert_allclose(np.asarray(predict(sset, jnp.asarray(g2))["accuracy"]), out, rtol=1e-6)
    save_set(tmp_path / "s", sset, sp, {"note": "test"})
    back = load_set(tmp_path / "s", sp)
    assert back.acc.features == features
    np.testing.assert_allclose(np.asarray(predict(back, jnp.asarray(g[600:]))["accuracy"]), out, rtol=1e-6)


def test_tech_transfer_recovers_known_coefficients():
    """Physics new-node transfer: a synthetic 'new node' = rram_32nm with known shifts of three
    technology coefficients and of the GLB area scale. Fitted from the unshifted coefficients on
    48 designs' totals, it recovers the shifts, leaves an unshifted coefficient alone, and predicts
    held-out designs (latency is technology-free, so exact)."""
    from cimnas_jax.hw import load_technology
    from cimnas_jax.surrogate import tech_transfer as TT
    sp = get_space(SPACE)
    src = load_technology("rram_32nm")
    shift = {"ln_e_cim": 0.8, "ln_e_glb_in": -0.6, "ibuf_a0": 0.5, TT.GLB_SCALE: 0.4}
    truth = TT.apply_params(src, {k: (src.coef[k] if k != TT.GLB_SCALE else 0.0) + v for k, v in shift.items()})
    g = np.asarray(sp.canonicalise(sp.sample(jax.random.PRNGKey(11), 96)))
    layers, hw = TT.designs(sp, g)
    y = np.asarray(jax.jit(TT.predict_logs)(truth, layers, hw), np.float64)
    y[5] = np.nan                                            # a missing label is ignored, not fitted
    tr, te = slice(0, 48), slice(48, 96)
    take = lambda tree, s: jax.tree_util.tree_map(lambda a: a[s], tree)
    names = ("ln_e_cim", "ln_e_glb_in", "ibuf_a0", "ln_e_row", TT.GLB_SCALE)
    cfg = TT.TransferConfig(adam_steps=600, lr=0.05, lbfgs_steps=0, min_cv=10 ** 9, noise_default=1e-5)   # one fit, noiseless labels
    fitted, info = TT.fit_technology(src, take(layers, tr), take(hw, tr), y[tr], names=names, cfg=cfg)
    assert info["n"] == 47 and info["names"] == list(names)
    for k in ("ln_e_cim", "ln_e_glb_in", "ibuf_a0"):
        assert float(fitted.coef[k]) - float(src.coef[k]) == pytest.approx(shift[k], abs=0.05), k
    assert float(fitted.coef["ln_e_row"]) == pytest.approx(float(src.coef["ln_e_row"]), abs=0.05)
    np.testing.assert_allclose(np.asarray(fitted.glb_ln_area) - np.asarray(src.glb_ln_area), 0.4, atol=0.05)
    p = np.asarray(TT.predict_logs(fitted, take(layers, te), take(hw, te)))
    ok = np.all(np.isfinite(y[te]), -1)
    assert np.max(np.abs(p[ok] - y[te][ok])[:, [0, 2]]) < 0.02          # energy, area within 2 %
    np.testing.assert_allclose(p[ok, 1], y[te][ok, 1], rtol=1e-5)
    # the start keeps the new node's description only; calibrated fields cannot be smuggled in
    desc = TT.node_description(load_technology("sram_7nm"))
    start = TT.start_technology(src, desc)
    assert start.node_nm == 7.0 and start.cell_type == "SRAM" and start.coef["ln_e_cim"] == src.coef["ln_e_cim"]
    with pytest.raises(ValueError, match="not allowed"):
        TT.start_technology(src, {**desc, "coef": {}})
