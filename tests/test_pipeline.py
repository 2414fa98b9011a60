"""The main job: the CIMNAS baseline design, fitness construction, finalists, the CLI end to end."""
import json
import os
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
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}   # the scripts import the package (installed, or this checkout)


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
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
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
    no_tmp = lambda: [str(p) for p in out.rglob("*.tmp.*")]              # noqa: E731
    assert no_tmp() == []                                                # a normal run leaves no tmp files
    # a second run into the same folder without --resume is refused, naming the flag
    r1 = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert r1.returncode != 0 and "pass --resume" in r1.stderr, r1.stderr[-2000:]
    assert no_tmp() == []                                                # nor a handled error
    # killed runs resume: rerunning with --resume continues from the checkpoint, not from scratch
    r2 = subprocess.run(cmd[:-1] + ["--generations=6", "--resume", f"--out_dir={out}"],
                        capture_output=True, text=True, timeout=600, env=ENV)
    assert r2.returncode == 0 and "resumed from" in r2.stdout, r2.stderr[-2000:]
    assert no_tmp() == []


@pytest.mark.parametrize("flag, msg", [("--hw_source=x", "--hw_source='x'; allowed: analytic, surrogate"),
                                       ("--population=1", "--population=1 must be an integer >= 4"),
                                       ("--space=nope", "--space='nope'; allowed")])
def test_main_job_bad_flags(flag, msg, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "cimnas.py"), flag, f"--out_dir={tmp_path}"],
                       capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode != 0 and msg in r.stderr


# ----------------------------------------------------------------------------- the restructured pipeline
def _flags_to_config(flags):
    """RunConfig from the main job's --name=value flags (as the CLI would build it)."""
    from cimnas_jax.pipeline import RunConfig
    kw = {}
    fields = {f: type(getattr(RunConfig(), f)) for f in RunConfig().to_dict()}
    for f in flags:
        k, v = f[2:].split("=", 1)
        t = fields[k]
        kw[k] = (v == "true") if t is bool else t(v)
    return RunConfig(**kw)


def test_seeded_main_job_equals_the_job_before_the_restructure(tmp_path):
    """The designs and metrics of a seeded main job (tests/data: written by the pre-restructure
    experiments/cimnas.py, commit 17b28df) are reproduced exactly by the pipeline of stages."""
    from cimnas_jax.pipeline import run
    ref = json.loads((ROOT / "tests" / "data" / "main_job_before_restructure.json").read_text())["a"]
    cfg = _flags_to_config(ref["flags"])
    out = run(cfg, tmp_path / "a", log=lambda s: None)
    rows = out["verification"].rows
    assert [r["design"] for r in rows] == [d["design"] for d in ref["designs"]]
    for old, new in zip(ref["designs"], rows):
        assert new["design_hash"] == old["design_hash"] and new["genome"] == old["genome"]
        # rel 1e-5: the verify stage's analytic ground truth is jitted since 728c139 (the reference was
        # computed op by op); XLA's fused float32 sums differ in the last digits (found_2's area by 1.8e-6)
        for k in ("energy_j", "latency_s", "area_mm2", "edap_j_s_mm2", "cells_needed", "predicted_accuracy"):
            assert new[k] == pytest.approx(old[k], rel=1e-5), (old["design"], k)
    assert [h["best"][0] for h in out["search"].history] == pytest.approx(ref["best_history"], rel=1e-6)


def test_config_file_reproduces_the_run_and_stages_rerun_alone(tmp_path):
    """config.json written by one run repeats it exactly; verify+report rerun alone on the saved
    search reproduce the verification; a later stage alone with a changed search field is refused."""
    from cimnas_jax.pipeline import RunConfig, RunFolderError, load_config, run
    cfg = RunConfig(population=12, generations=3, chunk=3, finalists=2, measure_accuracy=False, seed=7)
    a = run(cfg, tmp_path / "a", log=lambda s: None)
    cfg2 = load_config(tmp_path / "a" / "config.json")
    assert cfg2 == cfg
    b = run(cfg2, tmp_path / "b", log=lambda s: None)
    strip = lambda rows: [{k: v for k, v in r.items()} for r in rows]
    assert strip(a["verification"].rows) == strip(b["verification"].rows)
    assert a["search"].history == b["search"].history
    c = run(cfg.replace(stages="verify,report"), tmp_path / "a", log=lambda s: None)
    assert strip(c["verification"].rows) == strip(a["verification"].rows)
    assert (tmp_path / "a" / "report.md").read_text().count("| found_") >= 2
    with pytest.raises(RunFolderError, match="seed"):
        run(cfg.replace(stages="verify,report", seed=8), tmp_path / "a", log=lambda s: None)


def test_a_new_algorithm_is_one_file_and_a_registry_line(tmp_path):
    """Random search (cimnas_jax/search/random_search.py + its register_algorithm line) runs through
    Search and through the main job; nothing else names it. A test-local algorithm registered at run
    time works the same way."""
    from cimnas_jax.pipeline import RunConfig, run
    from cimnas_jax.search import (Constraints, Objective, RandomSearch, Search, linear_fitness,
                                   make_algorithm, register_algorithm)
    sp = get_space("mbv2_rram")
    algo = make_algorithm("random", sp, 16)
    s = Search(algo, linear_fitness(sp), Objective.single("energy", Constraints(False, None)))
    st, hist = s.run(0, 4, chunk=2, log=None)
    best = [h["best"][0] for h in hist]
    assert all(b2 <= b1 for b1, b2 in zip(best, best[1:]))          # keeps the best seen
    grep = subprocess.run(["grep", "-rl", "RandomSearch", str(ROOT / "cimnas_jax")], capture_output=True, text=True)
    assert sorted(Path(p).name for p in grep.stdout.split()) == ["__init__.py", "random_search.py"]

    class Elitist(RandomSearch):     # a user's algorithm: registered without touching the package
        name = "test_elitist"
    register_algorithm("test_elitist", Elitist, "edap_per_accuracy")
    for name in ("random", "test_elitist"):
        out = run(RunConfig(algorithm=name, population=8, generations=2, chunk=1, finalists=2,
                            accuracy_source="constant", measure_accuracy=False), tmp_path / name,
                  log=lambda s: None)
        assert out["search"].algorithm == name and out["verification"].rows[0]["design"] == "baseline"
        assert len(out["finalists"].found) >= 1


def test_frozen_genes_stay_at_the_reference_values(tmp_path):
    """--freeze=software,quantization searches the chip alone: every finalist has the reference
    network and bits; --freeze=hardware keeps the reference chip."""
    from cimnas_jax.pipeline import RunConfig, run
    sp = get_space("mbv2_rram")
    ref = sp.reference_genome()
    hw = np.array([g.group.startswith("hardware") for g in sp.genes])
    for freeze, fixed in (("software,quantization", ~hw), ("hardware", hw)):
        out = run(RunConfig(population=12, generations=3, chunk=3, finalists=3, freeze=freeze,
                            accuracy_source="constant", measure_accuracy=False), tmp_path / freeze,
                  log=lambda s: None)
        found = out["finalists"].found
        assert found
        for c in found:
            g = np.asarray(c.genome)
            assert (g[fixed] == np.asarray(sp.canonicalise(ref[None])[0])[fixed]).all(), (freeze, c.name)
            assert (g[~fixed] != ref[~fixed]).any()
