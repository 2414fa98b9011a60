"""experiments/search.py: flag validation, and kill -9 then --resume equals an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cimnas_jax.cli.search as cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}   # the scripts import the package (installed, or this checkout)

BASE = dict(space="mbv2_rram", algorithm="ga", objective="", coefficients="", bounds="",
            area_limit_mm2=800.0, accuracy_floor=0.0, capacity=True, fitness="analytic",
            accuracy="constant", accuracy_value=1.0, population=150, offspring=0,
            generations=100, chunk=10, seed=1, crossover="uniform", mutation="sparse", crossover_prob=0.9,
            mutation_rate=0.0, archive_size=256, rng_impl="threefry2x32", top=20, checkpoint_dir="",
            output_dir="/tmp/x", resume=False)


@pytest.mark.parametrize("flag,value,allowed", [
    ("space", "mbv3", "mbv2_rram"),
    ("algorithm", "pso", "nsga2"),
    ("fitness", "cimloop", "analytic"),
    ("accuracy", "apq", "constant"),
    ("crossover", "sbx", "group"),
    ("mutation", "pm", "dense"),
    ("rng_impl", "philox", "unsafe_rbg"),
    ("population", 1, ">= 2"),
    ("generations", 0, ">= 1"),
    ("chunk", 0, ">= 1"),
    ("mutation_rate", 1.5, "[0, 1]"),
    ("crossover_prob", -0.1, "[0, 1]"),
    ("accuracy_floor", 2.0, "(0, 1]"),
    ("area_limit_mm2", -5.0, "0 = off"),
    ("objective", "energy*speed", "edap_per_accuracy"),
    ("output_dir", "", "required"),
])
def test_bad_flag_values_name_flag_and_allowed_values(flag, value, allowed):
    with pytest.raises(cli.FlagError) as e:
        cli.check_flags({**BASE, flag: value})
    assert f"--{flag}" in str(e.value) and allowed in str(e.value)


def test_flag_combinations():
    with pytest.raises(cli.FlagError, match="--objective.*nsga2.*2-4"):
        cli.check_flags({**BASE, "algorithm": "nsga2", "objective": "edap"})
    with pytest.raises(cli.FlagError, match="--resume needs --checkpoint_dir"):
        cli.check_flags({**BASE, "resume": True})
    with pytest.raises(cli.FlagError, match="bounds"):
        cli.check_flags({**BASE, "objective": "priority", "coefficients": "energy=1"})
    obj = cli.check_flags({**BASE, "algorithm": "nsga2", "objective": "accuracy_edap"})
    assert obj.names == ("error", "edap")
    assert cli.check_flags(BASE).name == "edap_per_accuracy"


def _cmd(out, ckpt, *extra):
    return [sys.executable, str(ROOT / "experiments" / "search.py"), "--fitness=linear",
            "--population=32", "--generations=12", "--chunk=2", "--seed=5",
            f"--output_dir={out}", f"--checkpoint_dir={ckpt}", *extra]


def test_cli_bad_flag_exits_with_message(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "search.py"),
                        "--algorithm=pso", f"--output_dir={tmp_path}"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, env=ENV)
    assert r.returncode != 0
    # (the registry now also holds 'random')
    assert "--algorithm='pso' is not allowed; use one of ('ga', 'nsga2', 'random')" in r.stderr + r.stdout


def test_kill_then_resume_equals_uninterrupted(tmp_path):
    env = {**ENV, "JAX_PLATFORMS": "cpu"}
    full = subprocess.Popen(_cmd(tmp_path / "full", tmp_path / "full_ckpt"), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = subprocess.Popen(_cmd(tmp_path / "k", tmp_path / "k_ckpt", "--sleep_per_chunk_s=30"),
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "k_ckpt" / "2").exists():   # first chunk's checkpoint
            assert time.time() < deadline and killed.poll() is None, "no checkpoint appeared"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert not (tmp_path / "k" / "results.json").exists()
    r = subprocess.run(_cmd(tmp_path / "k", tmp_path / "k_ckpt", "--resume"), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from" in r.stdout and "at generation 2" in r.stdout
    out_full, _ = full.communicate(timeout=180)
    assert full.returncode == 0, out_full[-2000:]
    a = json.loads((tmp_path / "full" / "results.json").read_text())
    b = json.loads((tmp_path / "k" / "results.json").read_text())
    assert a["history"] == b["history"] and len(a["history"]) == 12
    assert a["designs"] == b["designs"] and len(a["designs"]) == 20
    assert (tmp_path / "k" / "results.csv").exists() and (tmp_path / "k" / "best_so_far.png").exists()
