"""The main job: the CIMNAS baseline design, fitness construction, finalists, the CLI end to end."""
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from cimnas_jax import pipeline as pl
from cimnas_jax.space import get_space

from conftest import read_jsonl, shared_path

ROOT = Path(__file__).resolve().parents[1]


def test_baseline_genome_is_the_cimnas_notebook_design():
    sp = get_space("mbv2_rram")
    g = pl.baseline_genome(sp)
    d = {k: float(v[0]) for k, v in sp.decode(g[None]).items()}
    assert [d[f"depth_s{i}"] for i in range(1, 6)] == [2, 3, 4, 3, 3]
    assert d["xbar_rows"] == 128 and d["glb_mb"] == 8 and d["bits_per_cell"] == 4
    a = {k: np.asarray(v)[0] for k, v in sp.architecture(g[None]).items()}
    act = a["block_active"]
    assert set(a["kernel"][act]) == {3} and set(a["pw_w_bits"][act]) == {8}
    assert act.sum() == 16


def test_baseline_hardware_matches_real_cimloop_totals():
    net = {r["network"]: r for r in read_jsonl(shared_path("cimloop_reference", "networks.jsonl"))}["net1_baseline_hw1"]
    sp = get_space("mbv2_rram")
    tr = pl.hardware_truth(sp, pl.baseline_genome(sp)[None])[0]
    assert tr["valid"]
    assert abs(tr["energy_j"] / net["totals"]["energy_J"] - 1) < 0.10
    assert abs(tr["latency_s"] / net["totals"]["latency_s"] - 1) < 0.10
    assert abs(tr["area_mm2"] / (net["totals"]["chip_area_m2"] * 1e6) - 1) < 0.10
    assert tr["macs"] == net["totals"]["macs"]


def test_resnet_baseline_decodes_and_fits():
    sp = get_space("resnet50_sram7nm")
    tr = pl.hardware_truth(sp, pl.baseline_genome(sp)[None])[0]
    assert tr["cells_needed"] <= tr["cells_available"] and tr["macs"] > 3e9


def test_select_finalists_skips_infeasible_nan_and_duplicates():
    sp = get_space("mbv2_rram")
    g = np.asarray(sp.canonicalise(sp.sample(jax.random.key(0), 5)))
    pop = np.stack([g[0], g[1], g[1], g[2], g[3], g[4]])
    fit = np.array([5.0, 1.0, 1.0, 0.5, np.nan, 2.0], np.float32)
    viol = np.array([0.0, 0.0, 0.0, 0.3, 0.0, np.inf], np.float32)
    out = pl.select_finalists(sp, pop, viol, fit, 10)
    np.testing.assert_array_equal(out, np.stack([g[1], g[0]]))   # infeasible, NaN, inf and the copy dropped


def test_make_fitness_rejects_bad_sources():
    sp = get_space("mbv2_rram")
    with pytest.raises(ValueError, match="hw_source must be one of"):
        pl.make_fitness(sp, "magic", "constant")
    with pytest.raises(ValueError, match="surrogate set is needed"):
        pl.make_fitness(sp, "analytic", "surrogate", None)
    f = jax.jit(pl.make_fitness(sp, "analytic", "constant"))
    m = f(sp.sample(jax.random.key(1), 8))
    assert set(m) >= {"energy_j", "latency_s", "area_mm2", "accuracy", "valid", "cells_needed"}


def test_main_job_end_to_end(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "experiments" / "cimnas.py"), "--population=16", "--generations=4",
           "--chunk=2", "--finalists=2", "--measure_accuracy=false", f"--out_dir={out}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    names = [d["design"] for d in res["designs"]]
    assert names[0] == "baseline" and 1 <= len(names) <= 3
    base = res["designs"][0]
    for d in res["designs"][1:]:
        assert d["valid"] and d["edap_j_s_mm2"] > 0
        assert d["edap_reduction_vs_baseline_x"] == pytest.approx(base["edap_j_s_mm2"] / d["edap_j_s_mm2"])
        assert 0 < d["predicted_accuracy"] <= 1
    assert res["units"]["energy_j"] == "J" and len(res["history"]) == 4
    for f in ("report.md", "finalists.csv", "convergence.png", "finalists.png"):
        assert (out / f).stat().st_size > 0
    # a second run into the same folder without --resume is refused, naming the flag
    r1 = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r1.returncode != 0 and "pass --resume" in r1.stderr, r1.stderr[-2000:]
    # killed runs resume: rerunning with --resume continues from the checkpoint, not from scratch
    r2 = subprocess.run(cmd[:-1] + ["--generations=6", "--resume", f"--out_dir={out}"],
                        capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0 and "resumed from" in r2.stdout, r2.stderr[-2000:]


@pytest.mark.parametrize("flag, msg", [("--hw_source=x", "--hw_source='x'; allowed: analytic, surrogate"),
                                       ("--population=1", "--population=1 must be an integer >= 4"),
                                       ("--space=nope", "--space='nope'; allowed")])
def test_main_job_bad_flags(flag, msg, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "cimnas.py"), flag, f"--out_dir={tmp_path}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and msg in r.stderr
