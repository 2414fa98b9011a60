"""Bad input gets a clear error before any work: every case names the flag (or field) and what is
allowed, in a line or two, with no traceback and nothing written.

In-process cases go through the same validation functions the CLIs call (fast); one subprocess case
per entry point checks the whole path: exit status, the message, the output size, no traceback, no
files written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}

# ----------------------------------------------------------------------------- cimnas-jax run (RunConfig)
RUN_CASES = [  # (field overrides, text the error must contain)
    (dict(space="mbv3"), "--space='mbv3'; allowed: mbv2_rram"),
    (dict(technology="gaas_5nm"), "--technology='gaas_5nm'; allowed: rram_32nm"),
    (dict(algorithm="pso"), "--algorithm='pso'; allowed: ga, nsga2, random"),
    (dict(hw_source="cimloop_live"), "--hw_source='cimloop_live'; allowed: analytic"),
    (dict(accuracy_source="apq"), "--accuracy_source='apq'; allowed: surrogate, constant"),
    (dict(verify_hw="spice"), "--verify_hw='spice'; allowed: auto, analytic, cimloop"),
    (dict(crossover="sbx"), "--crossover='sbx'; allowed: uniform"),
    (dict(mutation="pm"), "--mutation='pm'; allowed: sparse, dense"),
    (dict(rng_impl="philox"), "--rng_impl='philox'; allowed: threefry2x32"),
    (dict(finalist_rule="best"), "--finalist_rule='best'; allowed: distinct_hardware"),
    (dict(population=1), "--population=1 must be an integer >= 4"),
    (dict(population=-5), "--population=-5 must be an integer >= 4"),
    (dict(generations=0), "--generations=0 must be an integer >= 1"),
    (dict(chunk=0), "--chunk=0 must be an integer >= 1"),
    (dict(offspring=-1), "--offspring=-1 must be an integer >= 0"),
    (dict(seed=-1), "--seed=-1 must be an integer in [0, 2147483647]"),
    (dict(seed=2 ** 40), "--seed=1099511627776 must be an integer in [0, 2147483647]"),
    (dict(finalists=0), "--finalists=0 must be an integer >= 1"),
    (dict(archive_size=1), "--archive_size=1 must be an integer >= 2"),
    (dict(area_limit_mm2=float("nan")), "--area_limit_mm2=nan must be a finite number"),
    (dict(area_limit_mm2=float("inf")), "--area_limit_mm2=inf must be a finite number"),
    (dict(area_limit_mm2=-3.0), "--area_limit_mm2=-3.0 must be a number >= 0.0"),
    (dict(accuracy_floor=1.5), "--accuracy_floor=1.5 must be a number in [0.0, 0.9999]"),
    (dict(accuracy_floor=-0.1), "--accuracy_floor=-0.1 must be a number in [0.0, 0.9999]"),
    (dict(accuracy_floor=0.8, accuracy_source="constant"), "--accuracy_floor=0.8 needs a real accuracy source"),
    (dict(crossover_prob=1.2), "--crossover_prob=1.2 must be a number in [0.0, 1.0]"),
    (dict(crossover_prob=float("nan")), "--crossover_prob=nan must be a finite number"),
    (dict(mutation_rate=2.0), "--mutation_rate=2.0 must be a number in [0.0, 1.0]"),
    (dict(test_images=-5), "--test_images=-5 must be an integer >= 0"),
    (dict(finetune_steps=-1), "--finetune_steps=-1 must be an integer >= 0"),
    (dict(finetune_designs=-1), "--finetune_designs=-1 must be an integer >= 0"),
    (dict(refine_steps=-1), "--refine_steps=-1 must be an integer >= 0"),
    (dict(refine_candidates=0), "--refine_candidates=0 must be an integer >= 1"),
    (dict(refine_lr=0.0), "--refine_lr=0.0 must be a number >= 1e-09"),
    (dict(refine_tau_start=0.5, refine_tau_end=1.0), "--refine_tau_end=1 must be <= --refine_tau_start=0.5"),
    (dict(refine_steps=-20), "--refine_steps=-20 must be an integer >= 0"),
    (dict(refine_candidates=-3), "--refine_candidates=-3 must be an integer >= 1"),
    (dict(refine_lr=-0.1), "--refine_lr=-0.1 must be a number >= 1e-09"),
    (dict(refine_lr=float("nan")), "--refine_lr=nan must be a finite number"),
    (dict(refine_tau_end=0.0), "--refine_tau_end=0.0 must be a number >= 1e-06"),
    (dict(refine_tau_start=0.05), "--refine_tau_end=0.1 must be <= --refine_tau_start=0.05"),
    (dict(refine_steps=5, algorithm="nsga2", objective="energy,latency"),
     "--refine_steps=5: gradient refinement follows one scalar objective"),
    (dict(verify_tolerance=-0.1), "--verify_tolerance=-0.1 must be a number >= 0.0"),
    (dict(cimloop_timeout_s=0.0), "--cimloop_timeout_s=0.0 must be a number >= 1.0"),
    (dict(cimloop_workers=-2), "--cimloop_workers=-2 must be an integer >= 0"),
    (dict(cimloop_executor="ray"), "--cimloop_executor='ray'; allowed: local, dask"),
    (dict(dask_scheduler="tcp://x:8786"), "--dask_scheduler='tcp://x:8786' is used only with --cimloop_executor=dask"),
    (dict(active_rounds=-1), "--active_rounds=-1 must be an integer >= 0"),
    (dict(active_rounds=2), "--active_rounds=2 needs --hw_source=calibrated"),
    (dict(active_rounds=2, hw_source="surrogate"), "--active_rounds=2 needs --hw_source=calibrated"),
    (dict(active_rounds=2, hw_source="calibrated", stages="search,verify,report"), "--active_rounds=2 runs every stage"),
    (dict(active_rounds=1, hw_source="calibrated", active_fit_hidden="wide"), "--active_fit_hidden='wide' must be"),
    (dict(active_rounds=1, hw_source="calibrated", active_fit_folds=1), "--active_fit_folds=1 must be an integer >= 2"),
    (dict(active_rounds=1, hw_source="calibrated", active_fit_steps=0), "--active_fit_steps=0 must be an integer >= 1"),
    (dict(hw_correction="corr"), "--hw_correction='corr' is used only with --hw_source=calibrated"),
    (dict(hw_source="calibrated", hw_correction="/nonexistent/corr"), "--hw_correction=/nonexistent/corr: no hardware "
                                                                      "correction"),
    (dict(hw_source="calibrated", hw_correction=str(ROOT / "cimnas_jax" / "assets" / "hw_correction" / "sram_7nm")),
     "is for 'sram_7nm', the search evaluates 'rram_32nm'"),
    (dict(stages="search,report,verify"), "stages must be distinct and in pipeline order"),
    (dict(stages="search,deploy"), "--stages='search,deploy': allowed a comma-separated subset of"),
    (dict(stages=""), "--stages='': allowed a comma-separated subset of"),
    (dict(objective="energy*speed"), "--objective='energy*speed' with --algorithm=ga"),
    (dict(objective="edap", algorithm="nsga2"), "nsga2 needs 2-4 objectives"),
    (dict(objective="energy,latency", algorithm="ga"), "--objective='energy,latency' with --algorithm=ga"),
    (dict(objective="error,error", algorithm="nsga2"), "need 2-4 distinct terms"),
    (dict(objective="edap", coefficients="energy=1"), "--coefficients/--bounds are used only by --objective=priority"),
    (dict(objective="priority", coefficients="energy=1"), "needs fixed (lo, hi) bounds"),
    (dict(objective="priority", coefficients="energy"), "--coefficients: expected term=value pairs"),
    (dict(objective="priority", coefficients="speed=1", bounds="speed=0:1"), "priority term 'speed'"),
    (dict(objective="priority", coefficients="energy=1", bounds="energy=5"), "--bounds: expected term=lo:hi"),
    (dict(objective="priority", coefficients="energy=1", bounds="energy=5:1"), "need hi > lo"),
]


@pytest.mark.parametrize("over, msg", RUN_CASES, ids=[str(o) for o, _ in RUN_CASES])
def test_run_config_rejects(over, msg, tmp_path):
    from cimnas_jax.pipeline import ConfigError, RunConfig, check
    with pytest.raises(ConfigError) as e:
        check(RunConfig(measure_accuracy=False).replace(**over), tmp_path / "run")
    assert msg in str(e.value) and len(str(e.value).splitlines()) <= 2, str(e.value)
    assert not (tmp_path / "run").exists()                                  # nothing written


RUN_FILE_CASES = [  # (how to prepare, text)
    ("out_is_file", "is a file, not a folder"),
    ("resume_nothing", "holds no search checkpoint to continue"),
    ("stages_without_search", "holds no search output (stage_search.json)"),
    ("config_missing", "no such file"),
    ("config_not_json", "not valid JSON"),
    ("config_unknown_field", "unknown field(s) ['populaton']"),
    ("config_wrong_type", "field 'population' must be an integer"),
    ("config_py_without_get_config", "must define get_config()"),
    ("supernet_missing", "--supernet_dir="),
    ("active_rounds_exist", "already holds active-learning rounds [1]; pass --resume"),
    ("active_resume_nothing", "holds no active-learning round to continue"),
]


@pytest.mark.parametrize("case, msg", RUN_FILE_CASES)
def test_run_inputs_and_folders_rejected_before_work(case, msg, tmp_path):
    from cimnas_jax.pipeline import ConfigError, RunConfig, RunFolderError, check, load_config
    cfg, out, resume = RunConfig(measure_accuracy=False), tmp_path / "run", False
    if case == "out_is_file":
        out.write_text("x")
    elif case == "resume_nothing":
        resume = True
    elif case == "stages_without_search":
        cfg = cfg.replace(stages="verify,report")
    elif case.startswith("config"):
        p = tmp_path / ("c.py" if case.endswith("get_config") else "c.json")
        p.write_text({"config_missing": None, "config_not_json": "{pop", "config_unknown_field": '{"populaton": 3}',
                      "config_wrong_type": '{"population": "many"}',
                      "config_py_without_get_config": "x = 1\n"}[case] or "") if case != "config_missing" else None
        with pytest.raises(ConfigError) as e:
            load_config(tmp_path / "nope.json" if case == "config_missing" else p)
        assert msg in str(e.value)
        return
    elif case == "supernet_missing":
        cfg = RunConfig(supernet_dir=str(tmp_path / "no_supernet"))
    elif case.startswith("active"):
        cfg = cfg.replace(active_rounds=2, hw_source="calibrated")
        if case == "active_rounds_exist":
            (out / "round_1").mkdir(parents=True)
        else:
            resume = True
    with pytest.raises((ConfigError, RunFolderError)) as e:
        check(cfg, out, resume)
    assert msg in str(e.value) and len(str(e.value).splitlines()) <= 2, str(e.value)


# ----------------------------------------------------------------------------- cimnas-jax search
SEARCH_CASES = [
    ("space", "mbv3", "mbv2_rram"), ("algorithm", "pso", "nsga2"), ("fitness", "cimloop", "analytic"),
    ("accuracy", "apq", "constant"), ("crossover", "sbx", "group"), ("mutation", "pm", "dense"),
    ("rng_impl", "philox", "unsafe_rbg"), ("population", 1, ">= 2"), ("generations", 0, ">= 1"),
    ("chunk", 0, ">= 1"), ("archive_size", 0, ">= 2"), ("top", 0, ">= 1"), ("seed", -3, "[0, 2^31)"),
    ("seed", 2 ** 33, "[0, 2^31)"), ("offspring", -1, ">= 0"), ("mutation_rate", 1.5, "[0, 1]"),
    ("crossover_prob", -0.1, "[0, 1]"), ("accuracy_floor", 2.0, "(0, 1]"), ("area_limit_mm2", -5.0, "0 = off"),
    ("area_limit_mm2", float("nan"), "finite"), ("accuracy_value", 0.0, "(0, 1]"),
    ("accuracy_value", float("nan"), "finite"), ("objective", "energy*speed", "edap_per_accuracy"),
    ("output_dir", "", "required"),
]


@pytest.mark.parametrize("flag, value, allowed", SEARCH_CASES, ids=[f"{f}={v}" for f, v, _ in SEARCH_CASES])
def test_search_flags_rejected(flag, value, allowed):
    import cimnas_jax.cli.search as cli
    base = dict(space="mbv2_rram", algorithm="ga", objective="", coefficients="", bounds="", area_limit_mm2=800.0,
                accuracy_floor=0.0, capacity=True, fitness="analytic", accuracy="constant", accuracy_value=1.0,
                population=150, offspring=0, generations=100, chunk=10, seed=1, crossover="uniform",
                mutation="sparse", crossover_prob=0.9, mutation_rate=0.0, archive_size=256,
                rng_impl="threefry2x32", top=20, checkpoint_dir="", output_dir="/tmp/x", resume=False)
    with pytest.raises(cli.FlagError) as e:
        cli.check_flags({**base, flag: value})
    assert f"--{flag}" in str(e.value) and allowed in str(e.value), str(e.value)


def test_search_flag_combinations_rejected():
    import cimnas_jax.cli.search as cli
    base = dict(space="mbv2_rram", algorithm="ga", objective="", coefficients="", bounds="", area_limit_mm2=800.0,
                accuracy_floor=0.0, capacity=True, fitness="analytic", accuracy="constant", accuracy_value=1.0,
                population=150, offspring=0, generations=100, chunk=10, seed=1, crossover="uniform",
                mutation="sparse", crossover_prob=0.9, mutation_rate=0.0, archive_size=256,
                rng_impl="threefry2x32", top=20, checkpoint_dir="", output_dir="/tmp/x", resume=False)
    for over, msg in ((dict(accuracy="surrogate", fitness="linear"), "--accuracy=surrogate needs --fitness"),
                      (dict(accuracy_floor=0.8), "--accuracy_floor needs a real accuracy source"),
                      (dict(coefficients="energy=1"), "--coefficients/--bounds are used only by"),
                      (dict(resume=True), "--resume needs --checkpoint_dir"),
                      (dict(hw_correction="corr"), "--hw_correction='corr' is used only with --fitness=calibrated")):
        with pytest.raises(cli.FlagError, match=msg.replace("(", r"\(")):
            cli.check_flags({**base, **over})


# ----------------------------------------------------------------------------- whole path, one per entry point
def _cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "cimnas_jax", *args], capture_output=True, text=True,
                          timeout=180, env=ENV, cwd=cwd)


@pytest.mark.parametrize("args, msg", [
    (["run", "--population=1", "--out_dir=out"], "--population=1 must be an integer >= 4"),
    (["run", "--seed=1e20", "--out_dir=out"], "--seed=1e20"),
    (["search", "--algorithm=pso", "--output_dir=out"], "--algorithm='pso' is not allowed"),
    (["nonsense"], "unknown command 'nonsense'"),
])
def test_cli_error_is_short_and_writes_nothing(args, msg, tmp_path):
    r = _cli(args, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and msg in out, out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= 3, out
    assert not (tmp_path / "out").exists()
