"""The paper experiments (cimnas_jax/paper): each one's smallest configuration (--tiny) runs and writes
its files, with what it must show checked on the numbers; the CLI end to end and its bad-flag errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cimnas_jax.paper import EXPERIMENTS, run_experiment
from cimnas_jax.paper import common as C
from cimnas_jax.space import get_space

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """The experiments' output folder. The many small pipeline runs of the same configuration compile
    once: programs go to the test session's persistent XLA cache (tests/conftest.py), shared with the
    other test files' runs of the same programs (the main job's fitness, the search step)."""
    return tmp_path_factory.mktemp("paper")


def _load(out, name):
    d = out / name
    res = json.loads((d / "results.json").read_text())
    for f in res["figures"]:
        assert (d / f).stat().st_size > 10_000, f          # a real plot, not an empty canvas
    table = (d / "table.md").read_text()
    assert res["hardware_ground_truth"] in table and "analytic" in res["hardware_ground_truth"]
    assert res["provenance"]["git_commit"] is not None and res["provenance"]["versions"]["jax"]
    assert res["seeds"] == list(range(res["settings"]["seeds"])) and res["scale"] == "tiny"
    assert res["units"]["energy_j"].startswith("J") and res["wall_seconds"] > 0
    assert len(res["machine"]["load_average_1_5_15_start"]) == 3
    return res["results"], table


def _run(out, name):
    run_experiment(name, "tiny", out, log=lambda line: None)
    return _load(out, name)


def test_helpers():
    assert C.spread([3.0, None, 1.0, 2.0]) == dict(median=2.0, min=1.0, max=3.0, n=3)
    assert C.spread([None]) == dict(median=None, min=None, max=None, n=0)
    assert C.median_index([5.0, 1.0, None, 3.0]) == 3 and C.median_index([None]) is None
    assert C.fmt_spread(C.spread([1.0, 2.0, 4.0]), ".1f") == "2.0 [1.0, 4.0]"
    assert C.reuse_note([dict(seconds=5.0, cached=False)]) == ""
    assert C.reuse_note([dict(seconds=5.0, cached=False), dict(seconds=30.4, cached=True)]) == (
        "; 1 of 2 sub-runs reused from an earlier run of the same configuration (they took 30 s when they ran)")
    from cimnas_jax.paper.pareto import nondominated
    F = np.array([[1, 5], [2, 2], [3, 3], [5, 1], [1, 5]], float)
    assert nondominated(F).tolist() == [True, True, False, True, False]   # (3,3) dominated; the copy too
    from cimnas_jax.paper.parameter_effects import _ranks
    sp = get_space("mbv2_rram")            # per-layer TOPS of the baseline: finite, positive, one value per design
    tw, tm = C.layer_mean_tops(sp, np.stack([sp.reference_genome()] * 2))
    assert tw.shape == tm.shape == (2,) and np.all(np.isfinite(tw)) and np.all(tw > 0) and tw[0] == tw[1]
    assert _ranks(np.array([10, 20, 20, 5])).tolist() == [2.0, 3.5, 3.5, 1.0]
    # a saved sub-run that predates a RunConfig field counts it at its default; a changed value does not match
    from cimnas_jax.pipeline import RunConfig
    cfg = RunConfig(population=8).to_dict()
    old = {k: v for k, v in cfg.items() if k not in ("cimloop_executor", "dask_scheduler")}
    assert C._same(old, cfg) and not C._same(old, dict(cfg, cimloop_executor="dask"))
    assert not C._same(dict(old, population=16), cfg)


def test_mbv2_table_tiny(out):
    res, table = _run(out, "mbv2_table")
    sp = get_space("mbv2_rram")
    ref = sp.reference_genome()
    groups = np.asarray([g.group for g in sp.genes])
    hw = np.char.startswith(groups.astype(str), "hardware")
    frozen = {"hw_only": ~hw, "net_quant": hw, "quant_only": groups != "quantization", "joint": np.zeros_like(hw)}
    b = res["baseline"]
    for name, v in res["variants"].items():
        assert len(v["seeds"]) == 2
        for d in v["seeds"]:
            assert d["feasible"]
            g = np.asarray(d["genome"])
            np.testing.assert_array_equal(g[frozen[name]], ref[frozen[name]])   # freeze held those genes
            assert d["edap_reduction_vs_baseline_x"] == pytest.approx(b["edap_j_s_mm2"] / d["edap_j_s_mm2"], rel=1e-6)
            assert d["tops_per_w_vs_baseline_x"] == pytest.approx(d["tops_per_w"] / b["tops_per_w"], rel=1e-9)
        s = v["spread"]["edap_j_s_mm2"]
        assert s["n"] == 2 and s["min"] <= s["median"] <= s["max"]
    # the chip-frozen variants keep the baseline chip's area; the joint gains are paired by seed
    assert res["variants"]["quant_only"]["spread"]["area_mm2"]["max"] == pytest.approx(b["area_mm2"], rel=1e-6)
    j = res["variants"]["joint"]["seeds"]
    h = res["variants"]["hw_only"]["seeds"]
    want = sorted(hh["edap_j_s_mm2"] / jj["edap_j_s_mm2"] for jj, hh in zip(j, h))
    r = res["reductions"]["hw_only"]["edap_reduction_x"]
    assert [r["min"], r["max"]] == pytest.approx(want)
    assert "90.1–104.5" in table and "CIMNAS baseline design" in table and "hardware only" in table
    # CIMNAS's TOPS definition (mean of per-layer values) beside ours (whole network): a layer's TOPS/W lies
    # between the network's extremes, so the per-layer mean differs from the energy-weighted whole-network value
    lm = res["reductions_layer_mean_tops"]
    want = sorted(jj["tops_per_w_layer_mean"] / b["tops_per_w_layer_mean"] for jj in j)
    assert lm["tops_per_w_x"]["n"] == 2 and [lm["tops_per_w_x"]["min"], lm["tops_per_w_x"]["max"]] == pytest.approx(want)
    assert b["tops_per_w_layer_mean"] > 0 and b["tops_per_w_layer_mean"] != pytest.approx(b["tops_per_w"], rel=1e-3)
    assert "mean of per-layer values" in table


def test_parameter_effects_tiny(out):
    res, table = _run(out, "parameter_effects")
    sweeps = {s["sweep"]: s for s in res["sweeps"]}
    base_acc = res["baseline"]["accuracy"]
    for s in res["sweeps"]:
        if s["baseline_index"] is not None:          # the baseline's own choice reproduces the baseline
            p = s["points"][s["baseline_index"]]
            assert p["edap_j_s_mm2_vs_baseline_x"] == pytest.approx(1.0, rel=1e-5)
        if s["group"].startswith("hardware"):        # hardware never moves accuracy
            assert all(p["accuracy"] == pytest.approx(base_acc, abs=1e-6) for p in s["points"])
    # fewer bits: less energy, same chip area; a longer clock period: slower
    e = [p["energy_j"] for p in sweeps["all_bits"]["points"]]
    assert e[0] < e[1] < e[2]
    lat = [p["latency_s"] for p in sweeps["clock_period_ns"]["points"]]
    assert lat == sorted(lat)
    rd = res["random"]
    M = np.asarray(rd["spearman_valid"]["matrix"])
    np.testing.assert_allclose(np.diag(M), 1.0, atol=1e-9)
    np.testing.assert_allclose(M, M.T, atol=1e-9)
    for metric, r2 in rd["group_r2"].items():          # nested least squares: all genes explain at least any group
        assert all(-1e-9 <= v <= 1 + 1e-9 for v in r2.values())
        assert r2["all genes"] >= max(v for k, v in r2.items() if k != "all genes") - 1e-9
    assert rd["group_r2"]["accuracy (surrogate)"]["hardware-architecture"] < 0.05   # no hardware gene moves it
    assert rd["designs"] == 2048 and 0 < rd["valid_fraction"] <= 1 and "Spearman" in table


def test_top_designs_tiny(out):
    res, table = _run(out, "top_designs")
    assert set(res["objectives"]) == {"edap_per_accuracy", "energy"}
    for o, e in res["objectives"].items():
        assert e["spread"]["energy_j"]["n"] == 2 and e["median_design"]["hardware"]
        assert e["median_design"]["stats"]["active_blocks"] >= 6
    top = res["objectives"]["edap_per_accuracy"]["top"]
    assert 1 <= len(top) <= 3 and len({json.dumps(t["hardware"], sort_keys=True) for t in top}) == len(top)
    assert "Top" in table and "EDAP / accuracy (CIMNAS default)" in table
    chips = len({json.dumps(t["hardware"], sort_keys=True) for t in top})     # the heading counts them, not claims them
    assert f"{chips} distinct chip" in table


def test_priority_tiny(out):
    res, table = _run(out, "priority")
    assert set(res["settings"]) == {"balanced", "accuracy ×8"}
    hi = res["bounds_hi"]
    b = res["settings"]["balanced"]
    assert b["bounds_flag"].startswith("energy=0:") and f"{hi['energy']:.9g}" in b["bounds_flag"]
    for e in res["settings"].values():
        for d in e["seeds"]:
            assert d["energy_j"] > 0 and 0 < d["predicted_accuracy"] < 1
    assert "--coefficients" in table and "error=8" in table


def test_resnet50_sram7nm_tiny(out):
    from cimnas_jax.paper.resnet50_sram7nm import accuracy_available
    res, table = _run(out, "resnet50_sram7nm")
    has, why = accuracy_available(get_space("resnet50_sram7nm"))
    assert res["accuracy_source"] == ("surrogate" if has else "constant")
    if not has:
        assert why in res["search_accuracy_note"] and why in table and "EDAP alone" in table
    # no surrogate, yet the verify stage measures the baseline's and every seed's best design's accuracy
    # with the shipped ResNet supernet (95 % Wilson intervals on the tiny setting's 100 test images)
    b = res["baseline"]
    assert 0.5 < b["measured_accuracy"] <= 1 and b["accuracy_ci95"][0] < b["measured_accuracy"] < b["accuracy_ci95"][1]
    assert "supernet_resnet_fmnist" in res["accuracy_note"] and "100 Fashion-MNIST test images" in res["accuracy_note"]
    for v in res["variants"].values():
        accs = [d["measured_accuracy"] for d in v["seeds"] if d.get("genome")]
        assert len(accs) == 2 and all(0 < a <= 1 for a in accs)
        assert v["spread"]["measured_accuracy"]["n"] == 2 and sum(v["accuracy_vs_baseline_counts"].values()) == 2
    assert f"{b['measured_accuracy']:.4f} [" in table
    assert res["published_edap_reduction_x"] == 819.5 and "819.5" in table
    ref = get_space("resnet50_sram7nm").reference_genome()
    hw = np.array([g.group.startswith("hardware") for g in get_space("resnet50_sram7nm").genes])
    for d in res["variants"]["hw_only"]["seeds"]:
        np.testing.assert_array_equal(np.asarray(d["genome"])[~hw], ref[~hw])
    sw = np.array([g.group == "software" for g in get_space("resnet50_sram7nm").genes])
    for d in res["variants"]["quant_hw"]["seeds"]:      # the network fixed, its bits and the chip free
        np.testing.assert_array_equal(np.asarray(d["genome"])[sw], ref[sw])
    assert res["variants"]["quant_hw"]["spread"]["edap_reduction_vs_baseline_x"]["median"] >= 1
    if has:                    # the floor variant: every seed's design predicted at or above the floor
        assert res["accuracy_floor"] == pytest.approx(b["predicted_accuracy"] - 0.01, abs=1e-4)
        for d in res["variants"]["joint_floor"]["seeds"]:
            assert d.get("genome") is None or d["predicted_accuracy"] >= res["accuracy_floor"] - 1e-6
    assert res["baseline"]["macs"] > 3e9


def test_pareto_tiny(out):
    from cimnas_jax.paper.pareto import nondominated
    res, table = _run(out, "pareto")
    for obj, sm in res["sets"].items():
        m = len(sm["terms"])
        for e in sm["seeds"]:
            F = np.asarray(e["ours_F"])
            assert len(F) >= 1 and nondominated(F).all()
            assert e["ours_evaluations"] == 16 * 3
            assert 0 <= e["ours_hv"] <= 1.1 ** m
            if res["pymoo"]:
                assert 0 <= e["pymoo_hv"] <= 1.1 ** m and e["pymoo_evaluations"] <= 16 * 3 + 16
    assert len(res["ga"]) == 2 and "hypervolume" in table


def test_every_experiment_has_a_test():
    names = {n[len("test_"):-len("_tiny")] for n in globals() if n.startswith("test_") and n.endswith("_tiny")}
    assert names == set(EXPERIMENTS)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "experiments" / "paper.py"), *args], capture_output=True,
                          text=True, timeout=600, env=ENV, cwd=cwd)


@pytest.mark.parametrize("args,msg", [
    ([], "--experiment is required"),
    (["--experiment=mbv2"], "--experiment='mbv2': unknown"),
    (["--experiment=pareto", "--small", "--tiny"], "--small and --tiny exclude each other"),
    (["--experiment=pareto", "--verify_hw=timeloop"], "--verify_hw='timeloop'; allowed"),
    (["--experiment=pareto", "--seeds=-1"], "--seeds=-1 must be"),
])
def test_cli_bad_flags_fail_in_one_line(args, msg, tmp_path):
    r = _cli(*args, f"--out_dir={tmp_path / 'o'}")
    assert r.returncode == 2, r.stderr[-500:]
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) <= 2 and lines[-1].startswith("error: ") and msg in lines[-1] and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_cli_reruns_an_experiment_from_its_saved_sub_runs(out):
    """The command line on test_mbv2_table_tiny's folder: every pipeline run is reused (none redone), the
    results are the same and the provenance names the command."""
    if not (out / "mbv2_table" / "results.json").is_file():
        pytest.skip("needs test_mbv2_table_tiny's output (run the module whole)")
    first = json.loads((out / "mbv2_table" / "results.json").read_text())
    r = _cli("--experiment=mbv2_table", "--tiny", f"--out_dir={out}", "--xla_cache_dir=")
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((out / "mbv2_table" / "results.json").read_text())
    assert all(s["cached"] for s in again["sub_runs"]) and len(again["sub_runs"]) == len(first["sub_runs"])
    n = len(first["sub_runs"])
    assert f"{n} of {n} sub-runs reused" in (out / "mbv2_table" / "table.md").read_text()
    assert again["results"]["variants"] == first["results"]["variants"]
    assert "paper.py" in " ".join(again["provenance"]["command"]) and "--tiny" in again["provenance"]["command"]


def test_collect_copies_tables_and_small_figures(out, tmp_path):
    from cimnas_jax.paper.collect import collect
    if not (out / "mbv2_table" / "results.json").is_file():
        pytest.skip("needs test_mbv2_table_tiny's output (run the module whole)")
    (p,) = collect(out, tmp_path / "docs", ["mbv2_table"], max_bytes=10**9)
    text = p.read_text()
    assert "90.1–104.5" in text and "![edap_reduction.png](mbv2_table/edap_reduction.png)" in text
    if (out / "resnet50_sram7nm" / "results.json").is_file():      # its table names the supernet it measured with
        (p,) = collect(out, tmp_path / "docs3", ["resnet50_sram7nm"], max_bytes=10**9)
        text = p.read_text()
        assert "the supernet cimnas_jax/assets/supernet_resnet_fmnist (" in text and str(ROOT) not in text
    assert (tmp_path / "docs" / "mbv2_table" / "edap_reduction.png").stat().st_size > 10_000
    (p,) = collect(out, tmp_path / "docs2", ["mbv2_table"], max_bytes=1)      # too large: named, not copied
    assert "above the" in p.read_text() and not (tmp_path / "docs2" / "mbv2_table" / "designs.png").exists()
    with pytest.raises(FileNotFoundError, match="--experiment=pareto"):
        collect(tmp_path / "nothing", tmp_path / "d", ["pareto"])
