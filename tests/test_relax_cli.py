"""python -m cimnas_jax.relax (experiments/refine.py): flag / input validation and one small run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cimnas_jax.relax import cli

ROOT = Path(__file__).resolve().parents[1]
BASE = dict(input="x", output="", space="", hw_source="", accuracy_source="", accuracy_value=-1.0,
            surrogate_dir="", objective="", coefficients="", bounds="", area_limit_mm2=-1.0,
            accuracy_floor=-1.0, capacity="", top=0, uniform=False, steps=10, candidates=2, lr=0.1,
            tau_start=1.0, tau_end=0.2, tau_schedule="exponential", hard=True, samples=1,
            init_peak=3.0, penalty=10.0, eval_every=5, seed=0)


def _input(genomes, **config):
    cfg = dict(space="mbv2_rram", objective="edap_per_accuracy", accuracy="constant", accuracy_value=1.0,
               area_limit_mm2=800.0, accuracy_floor=0.0, capacity=True)
    cfg.update(config)
    return {"config": cfg, "designs": [{"rank": i, "genome": [int(x) for x in g]} for i, g in enumerate(genomes)]}


@pytest.fixture(scope="module")
def genomes():
    import jax
    from cimnas_jax.space import get_space
    return np.asarray(get_space("mbv2_rram").sample(jax.random.key(0), 3))


@pytest.mark.parametrize("flag,value,allowed", [
    ("steps", -1, ">= 0"), ("candidates", 0, ">= 1"), ("samples", 0, ">= 1"), ("eval_every", 0, ">= 1"),
    ("lr", 0.0, "> 0"), ("tau_start", -1.0, "> 0"), ("tau_end", float("nan"), "> 0"),
    ("penalty", -2.0, ">= 0"), ("tau_schedule", "cosine", "exponential"), ("space", "mbv3", "mbv2_rram"),
    ("hw_source", "cimloop", "analytic"), ("accuracy_source", "apq", "constant"),
    ("accuracy_value", 2.0, "(0, 1]"), ("area_limit_mm2", -5.0, "0 = off"), ("accuracy_floor", 1.5, "(0, 1]"),
    ("capacity", "maybe", "true, false"), ("objective", "energy*speed", "edap_per_accuracy"),
    ("objective", "accuracy_edap", "single objectives"),
])
def test_bad_flags_name_the_flag_and_allowed_values(flag, value, allowed, genomes):
    with pytest.raises(cli.FlagError) as e:
        cli.resolve({**BASE, flag: value}, _input(genomes))
    assert f"--{flag}" in str(e.value) and allowed in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_inputs_are_named(tmp_path, genomes):
    with pytest.raises(cli.FlagError, match="--input is required"):
        cli.read_input("")
    with pytest.raises(cli.FlagError, match="no such file"):
        cli.read_input(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(cli.FlagError, match="not readable JSON"):
        cli.read_input(str(tmp_path / "bad.json"))
    with pytest.raises(cli.FlagError, match="genome must be a list of 141"):
        cli.resolve(BASE, _input([[0, 1, 2]]))
    bad = genomes.copy()
    bad[0, 0] = 99
    with pytest.raises(cli.FlagError, match="voltage_v"):
        cli.resolve(BASE, _input(bad))
    with pytest.raises(cli.FlagError, match="no designs"):
        cli.resolve(BASE, _input([]))
    s = cli.resolve({**BASE, "uniform": True}, _input([]))
    assert s["starts"] is None
    s = cli.resolve({**BASE, "area_limit_mm2": 0.0, "top": 2}, _input(genomes))
    assert s["objective"].constraints.area_limit_mm2 is None and len(s["starts"]) == 2
    assert s["accuracy_source"] == "constant" and s["config"].candidates == 2


def test_cli_refines_a_saved_search_output(tmp_path, genomes):
    src = tmp_path / "results.json"
    src.write_text(json.dumps(_input(genomes)))
    out = tmp_path / "refined.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-m", "cimnas_jax.relax", f"--input={src}", f"--output={out}",
                        "--steps=6", "--candidates=2", "--eval_every=3", "--seed=1"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    rec = json.loads(out.read_text())
    assert rec["refine"]["gradient_steps"] == 6 and rec["refine"]["candidates"] == 2
    assert rec["refine"]["exact_evaluations"] == 2 * (1 + 2 + 1)   # starts, 2 checks, best samples
    assert len(rec["designs"]) == 2
    from cimnas_jax.space import get_space
    canon = np.asarray(get_space("mbv2_rram").canonicalise(genomes)).tolist()
    for d in rec["designs"]:
        assert d["start_genome"] in canon[:2]      # the first --candidates designs, canonicalised
        assert d["status"] in ("refined", "kept_start")
        if d["objective"] is not None and d["start_objective"] is not None:
            assert d["objective"] <= d["start_objective"]
        assert d["metrics"]["energy_j"] > 0 and d["exact_evaluations"] == 4
    p = subprocess.run([sys.executable, "-m", "cimnas_jax.relax", f"--input={src}", "--lr=-1"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "--lr=-1.0 must be a number > 0" in p.stderr
    assert "Traceback" not in p.stderr
