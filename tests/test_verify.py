"""The verify stage: ground-truth source selection, the record (CiMLoop) path with the analytic record
backend standing in, disagreement flags, accuracy intervals and the baseline comparison."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from cimnas_jax.pipeline import ConfigError, RunConfig, RunContext, check
from cimnas_jax.pipeline import verify as V
from cimnas_jax.pipeline.fitness import make_fitness
from cimnas_jax.pipeline.results import Candidate, Finalists
from cimnas_jax.space import get_space
from cimnas_jax.stats import wilson_interval


def _cimloop_here() -> bool:
    from cimnas_jax.cimloop import cimloop_available
    return cimloop_available()[0]


@pytest.mark.skipif(_cimloop_here(), reason="CiMLoop is installed here: 'auto' would use it")
def test_auto_falls_back_to_analytic_and_says_why(tmp_path):
    src, why = V.resolve_truth(RunConfig(verify_hw="auto"))
    assert src == "analytic" and "CiMLoop is not installed" in why and "stands in" in why
    with pytest.raises(ConfigError, match="--verify_hw=cimloop: CiMLoop is not usable here"):
        check(RunConfig(verify_hw="cimloop"), tmp_path / "run")          # before any search


def _finalists(sp, n=3, seed=0):
    g = np.asarray(sp.canonicalise(sp.sample(jax.random.key(seed), 64)))
    base = sp.reference_genome()
    cands = [Candidate("baseline", base.tolist(), sp.hash_hex(base[None])[0], "reference")]
    # feasible designs only: the reference chip with random networks fits and maps
    for i in range(n):
        x = g[i].copy()
        hw = [j for j, gene in enumerate(sp.genes) if gene.group.startswith("hardware")]
        x[hw] = base[hw]
        cands.append(Candidate(f"found_{i + 1}", x.tolist(), sp.hash_hex(x[None])[0], "search"))
    return Finalists(cands, rule="test")


def test_record_path_equals_the_analytic_model_and_flags_a_wrong_search_model(tmp_path):
    """Ground truth through the record path (what --verify_hw=cimloop runs), with the analytic
    record backend standing in for CiMLoop, equals the analytic design evaluation; a search model
    that overstates energy by 20 % is flagged on energy only."""
    from cimnas_jax.hw import get_backend
    sp = get_space("mbv2_rram")
    fin = _finalists(sp)
    cfg = RunConfig(measure_accuracy=False, accuracy_source="constant", verify_tolerance=0.05)
    exact = make_fitness(sp, "analytic", "constant")
    ctx = RunContext(tmp_path, log=lambda s: None)
    ref = V.verify(cfg, ctx, sp, fin, exact)
    rec = V.verify(cfg, ctx, sp, fin, exact, backend=get_backend("analytic"))
    assert (tmp_path / "verify_labels" / "designs.jsonl").exists()
    for a, b in zip(ref.rows, rec.rows):
        assert a["valid"] == b["valid"] is True
        for k in ("energy_j", "latency_s", "area_mm2", "edap_j_s_mm2"):
            assert b[k] == pytest.approx(a[k], rel=1e-5), k
        assert b["model_disagrees_on"] == []

    def wrong(g):
        m = exact(g)
        return dict(m, energy_j=1.2 * m["energy_j"])
    bad = V.verify(cfg, ctx, sp, fin, wrong, backend=get_backend("analytic"))
    assert all(r["model_disagrees_on"] == ["energy_j"] for r in bad.rows)
    assert all(r["predicted_error_energy"] == pytest.approx(0.2, rel=1e-4) for r in bad.rows)
    assert bad.extra["flagged"] == [r["design"] for r in bad.rows]


def test_disagreement_and_invalid_truth():
    assert V.disagreement({"energy_j": 1.0, "latency_s": 1.0, "area_mm2": 1.0, "valid": True},
                          {"valid": True, "energy_j": 1.04, "latency_s": 0.5, "area_mm2": 1.0}, 0.05) == ["latency_s"]
    assert V.disagreement({"valid": True}, {"valid": False}, 0.05) == ["valid"]
    assert V.disagreement({"valid": False}, {"valid": False}, 0.05) == []


def test_accuracy_intervals_and_baseline_comparison():
    lo, hi = wilson_interval(0.9, 10000)
    assert lo < 0.9 < hi and hi - lo == pytest.approx(2 * 1.96 * (0.09 / 10000) ** 0.5, rel=0.01)
    assert wilson_interval(1.0, 50)[1] == 1.0 and wilson_interval(0.0, 50)[0] == 0.0
    rows = [dict(measured_accuracy=0.90, accuracy_ci95=wilson_interval(0.90, 10000)),
            dict(measured_accuracy=0.902, accuracy_ci95=wilson_interval(0.902, 10000)),
            dict(measured_accuracy=0.93, accuracy_ci95=wilson_interval(0.93, 10000)),
            dict(measured_accuracy=0.80, accuracy_ci95=wilson_interval(0.80, 10000))]
    V.compare_to_baseline(rows)
    assert [r["accuracy_vs_baseline"] for r in rows[1:]] == ["indistinguishable", "higher", "lower"]
    assert all("intervals overlap" in r["accuracy_vs_baseline_test"] for r in rows[1:])


def test_mcnemar_exact_and_paired_difference():
    from cimnas_jax.stats import mcnemar_exact, paired_accuracy_difference
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 2 ** 12)      # 2 P(X <= 2), X ~ Bin(12, 1/2)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2) and mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(5, 5) == 1.0
    assert 0 < mcnemar_exact(3000, 2800) < 0.02 and mcnemar_exact(3000, 2990) > 0.5   # no underflow at large n
    a = np.array([1, 1, 0, 1, 0, 1], bool)
    b = np.array([1, 0, 0, 1, 1, 0], bool)
    t = paired_accuracy_difference(a, b)
    assert (t["only_a"], t["only_b"], t["n_images"]) == (2, 1, 6) and t["difference"] == pytest.approx(1 / 6)
    assert t["difference_ci95"][0] < t["difference"] < t["difference_ci95"][1] and t["p_value"] == 1.0
    with pytest.raises(ValueError, match="equal-length"):
        paired_accuracy_difference(a, b[:3])


def test_paired_comparison_separates_what_overlapping_intervals_cannot():
    """Two classifiers on the same 10 000 images, 0.8958 vs 0.8841 (the ResNet full run's baseline and
    joint design): the 95 % intervals overlap, but 117 net images lost out of 297 discordant pairs is
    significant under the paired (McNemar) test, which is the one verify uses when it has the outcomes."""
    n = 10_000
    base = np.zeros(n, bool)
    base[:8958] = True
    design = base.copy()
    design[:207] = False                          # 207 images right only under the baseline
    design[8958:8958 + 90] = True                 # 90 right only under the design: net -117 -> 0.8841
    rows = [dict(measured_accuracy=base.mean(), accuracy_ci95=wilson_interval(base.mean(), n)),
            dict(measured_accuracy=design.mean(), accuracy_ci95=wilson_interval(design.mean(), n))]
    assert design.mean() == pytest.approx(0.8841)
    V.compare_to_baseline([dict(r) for r in rows])
    unpaired = [dict(r) for r in rows]
    V.compare_to_baseline(unpaired)
    assert unpaired[1]["accuracy_vs_baseline"] == "indistinguishable"          # intervals overlap
    V.compare_to_baseline(rows, {(0, "accuracy"): base, (1, "accuracy"): design})
    r = rows[1]
    assert r["accuracy_vs_baseline"] == "lower" and r["accuracy_vs_baseline_p"] < 1e-9
    assert r["accuracy_difference_vs_baseline"] == pytest.approx(-0.0117)
    lo, hi = r["accuracy_difference_ci95"]
    assert lo < -0.0117 < hi < 0 and "McNemar" in r["accuracy_vs_baseline_test"]
