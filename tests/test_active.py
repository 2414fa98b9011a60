"""--hw_source=calibrated in the main job and active learning (--active_rounds), with the analytic
record backend standing in for CiMLoop as the ground truth (verify_hw=analytic) and a tiny search."""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cimnas_jax.pipeline import RunConfig

TINY = dict(population=8, generations=1, chunk=1, finalists=1, measure_accuracy=False, accuracy_source="constant",
            hw_source="calibrated", verify_hw="analytic", seed=5)
FIT = dict(active_fit_steps=20, active_fit_members=2, active_fit_hidden="8", active_fit_folds=2)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=4)
def _calibrated_fn(correction: str):
    """hw.calibrated.design_metrics with one correction (a technology or folder) as one function
    object, so evaluate_padded compiles it once per correction and batch size across tests."""
    from cimnas_jax.hw.calibrated import design_metrics
    from cimnas_jax.hw.correction_io import load_correction
    from cimnas_jax.space import get_space
    sp, corr = get_space("mbv2_rram"), load_correction(correction)
    return lambda g: design_metrics(sp, g, corr)


def _calibrated_energy(correction: str, genomes) -> np.ndarray:
    from cimnas_jax.pipeline.fitness import evaluate_padded
    return np.asarray(evaluate_padded(_calibrated_fn(correction), np.asarray(genomes, np.int32))["energy_j"])


def test_active_learning_two_rounds_records_retrains_and_resumes(tmp_path):
    """Two rounds: round 1 is a main job with --hw_source=calibrated and the shipped correction (named
    with its id in results.json and the report; its search-model figures are hw.calibrated's with that
    correction, not the analytic model that is the ground truth here); per-round records and the
    round's retrained correction in the run folder; round 2 searches with round 1's correction (its id
    and params hash, and its scores); the per-round table in results.json / report.md; deleting round
    2's output and resuming redoes round 2 only. (One test: every round costs compilations.)"""
    from cimnas_jax.hw.correction_io import correction_path
    from cimnas_jax.pipeline import RunFolderError, check, run
    cfg = RunConfig(**TINY, **FIT, active_rounds=2)
    out_dir = tmp_path / "al"
    lines = []
    out = run(cfg, out_dir, log=lines.append)
    assert len(out["rounds"]) == 2
    shipped_sha = _sha(correction_path("rram_32nm") / "params.msgpack")
    for r, s in enumerate(out["rounds"], 1):
        rd = out_dir / f"round_{r}"
        saved = json.loads((rd / "round.json").read_text())["summary"]
        assert saved["round"] == r and saved["chosen"]["design_hash"] == s["chosen"]["design_hash"]
        c = saved["chosen"]
        assert c["search_model_edap_j_s_mm2"] > 0 and c["truth_edap_j_s_mm2"] > 0
        assert c["search_model_error_edap"] == pytest.approx(c["search_model_edap_j_s_mm2"] / c["truth_edap_j_s_mm2"] - 1)
        assert c["analytic_error_edap"] == pytest.approx(0.0, abs=1e-5)     # the analytic model is the truth here
        labels = (rd / "verify_labels" / "designs.jsonl").read_text().splitlines()
        assert len(labels) == 2 and all(json.loads(x)["layers"] for x in labels)     # baseline + found_1
        assert json.loads((rd / "verify_labels" / "manifest.json").read_text())["backend"] == "analytic"
        man = json.loads((rd / "correction" / "manifest.json").read_text())
        tc = saved["trained_correction"]
        assert man["id"] == tc["id"] == f"rram_32nm@al/round_{r}"
        assert tc["params_sha256"] == _sha(rd / "correction" / "params.msgpack") != shipped_sha
        assert len(tc["label_dirs"]) == r                                   # every round's records so far
        assert set(tc["held_out_layers"]["calibrated"]) == {"energy", "latency", "area"}
    r1, r2 = out["rounds"]
    assert r1["search_model_correction"]["params_sha256"] == shipped_sha
    res1 = json.loads((out_dir / "round_1" / "results.json").read_text())
    sm = res1["search_model"]
    assert sm["hw_source"] == "calibrated" and sm["correction"]["shipped"]
    assert sm["correction"]["params_sha256"] == shipped_sha
    assert sm["name"].startswith("analytic model + CiMLoop-trained correction rram_32nm@")
    assert sm["name"] in (out_dir / "round_1" / "report.md").read_text()
    ver1 = json.loads((out_dir / "round_1" / "stage_verify.json").read_text())["verification"]["rows"]
    np.testing.assert_allclose([x["predicted_energy_j"] for x in ver1],
                               _calibrated_energy("rram_32nm", [x["genome"] for x in ver1]), rtol=1e-5)
    assert all(abs(x["predicted_error_energy"]) > 1e-4 for x in ver1)    # the correction moved the energy
    assert r2["search_model_correction"]["id"] == r1["trained_correction"]["id"]
    assert r2["search_model_correction"]["params_sha256"] == r1["trained_correction"]["params_sha256"]
    st2 = json.loads((out_dir / "round_2" / "stage_search.json").read_text())
    assert st2["search_model"]["correction"]["params_sha256"] == r1["trained_correction"]["params_sha256"]
    assert r2["trained_correction"]["n_train_rows"] > r1["trained_correction"]["n_train_rows"]
    # round 2's search-model figures are round 1's correction's
    ver2 = json.loads((out_dir / "round_2" / "stage_verify.json").read_text())["verification"]["rows"]
    np.testing.assert_allclose([x["predicted_energy_j"] for x in ver2],
                               _calibrated_energy(str(out_dir / "round_1" / "correction"), [x["genome"] for x in ver2]),
                               rtol=1e-5)
    res = json.loads((out_dir / "results.json").read_text())
    assert [s["round"] for s in res["active_learning"]["rounds"]] == [1, 2]
    rep = (out_dir / "report.md").read_text()
    assert "ground-truth EDAP" in rep and r2["chosen"]["design_hash"][:12] in rep
    # a rerun without --resume is refused before any work
    with pytest.raises(RunFolderError, match="--resume"):
        check(cfg, out_dir, resume=False)
    # resume after deleting round 2's output: round 1 reused as it is, round 2 redone
    import shutil
    r1_stamp = (out_dir / "round_1" / "round.json").stat().st_mtime_ns
    r1_corr = _sha(out_dir / "round_1" / "correction" / "params.msgpack")
    shutil.rmtree(out_dir / "round_2")
    lines2 = []
    again = run(cfg, out_dir, resume=True, log=lines2.append)
    assert any("round 1/2: finished earlier" in x for x in lines2)
    assert not any("round 2/2: finished earlier" in x for x in lines2)
    assert sum("[1/4] search" in x for x in lines2) == 1                  # one search: round 2's
    assert (out_dir / "round_1" / "round.json").stat().st_mtime_ns == r1_stamp
    assert _sha(out_dir / "round_1" / "correction" / "params.msgpack") == r1_corr
    assert (out_dir / "round_2" / "round.json").is_file()
    assert again["rounds"][1]["chosen"]["design_hash"] == r2["chosen"]["design_hash"]
    assert again["rounds"][1]["search_model_correction"]["params_sha256"] == r1_corr


def test_search_cli_calibrated_fitness(tmp_path):
    """cimnas-jax search --fitness=calibrated: the fitness is the calibrated model of the shipped (or
    --hw_correction) correction, and its description names the correction; a folder of another
    technology is a flag error."""
    import cimnas_jax.cli.search as cli
    from cimnas_jax.hw.correction_io import correction_path
    from cimnas_jax.pipeline.fitness import evaluate_padded
    from cimnas_jax.space import get_space
    sp = get_space("mbv2_rram")
    v = dict(fitness="calibrated", accuracy="constant", accuracy_value=1.0, hw_correction="")
    f, desc = cli.build_fitness(v, sp)
    assert "CiMLoop-trained correction rram_32nm@" in desc
    g = np.asarray(sp.reference_genome())[None]
    got = evaluate_padded(f, g)["energy_j"]
    np.testing.assert_allclose(got, _calibrated_energy("rram_32nm", g), rtol=1e-5)
    with pytest.raises(cli.FlagError, match="--hw_correction=.*is for 'sram_7nm'"):
        cli.build_fitness({**v, "hw_correction": str(correction_path("sram_7nm"))}, sp)
