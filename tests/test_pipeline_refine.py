"""The main job's refine stage: cimnas_jax.relax on the search's finalists, re-scored by the
search's own fitness; a refined design replaces its start only if strictly better; provenance;
results.json / report.md; the stage rerun alone from the saved search reproduces itself."""
import json

import numpy as np
import pytest

from cimnas_jax import pipeline as pl
from cimnas_jax.pipeline.fitness import evaluate_padded
from cimnas_jax.pipeline.objective import build_objective
from cimnas_jax.search import freeze_mask
from cimnas_jax.space import get_space


def _exact(cfg, space, genomes):
    """(objective [n], violation [n]) by the search's fitness, computed here independently."""
    fitness, objective = pl.fitness_for(cfg, space), build_objective(cfg)
    F, v = evaluate_padded(lambda g: objective(fitness(g)), np.asarray(genomes, np.int32))
    return np.asarray(F, np.float64)[:, 0], np.asarray(v, np.float64)


def _saved_search(cfg, sp, out):
    """A search stage's saved output (stage_search.json) whose finalists are two feasible variants
    of the reference design (glb_mb, xbar_rows at their smallest choice), best first: the refine
    stage starts from designs a short search would hand it, without paying for the search."""
    from cimnas_jax.pipeline.results import Candidate, Finalists, SearchResult, save_stage
    ref = np.asarray(sp.reference_genome(), np.int32)
    genomes = []
    for gene in ("glb_mb", "xbar_rows"):
        g = ref.copy()
        g[sp.gene_names.index(gene)] = 0 if gene == "xbar_rows" else 1
        genomes.append(np.asarray(sp.canonicalise(g[None]))[0])
    cands = [Candidate("baseline", [int(x) for x in ref], sp.hash_hex(ref[None])[0], "reference")]
    for j, g in enumerate(genomes):      # their exact scores are checked by the caller
        cands.append(Candidate(f"found_{j + 1}", [int(x) for x in g], sp.hash_hex(g[None])[0], "search",
                               None, 0.0, {"algorithm": "ga"}))
    res = SearchResult("ga", "edap_per_accuracy", ["edap_per_accuracy"], 0, 1.0, 0.0, None, "cpu", [])
    save_stage(out, "search", {"result": res.to_dict(), "finalists": Finalists(cands, cfg.finalist_rule).to_dict()},
               cfg.to_dict())
    return Finalists(cands, cfg.finalist_rule)


def test_refine_stage_never_worse_with_provenance_and_reruns_alone(tmp_path):
    # hardware-device genes frozen: the stage must keep them at the reference values
    cfg = pl.RunConfig(finalists=2, measure_accuracy=False, seed=3, accuracy_source="constant",
                       freeze="hardware-device", refine_steps=10, refine_candidates=3,
                       stages="refine,verify,report")
    sp = get_space(cfg.space)
    out_dir = tmp_path / "a"
    out_dir.mkdir()
    before = _saved_search(cfg, sp, out_dir).found
    out = pl.run(cfg, out_dir, log=lambda s: None)
    after = out["finalists"].found
    assert len(before) == len(after) == 2
    s = out["refinement"]
    assert s["enabled"] and s["gradient_steps"] == 10 and s["candidates"] == 3 and s["starts"] == 2

    F, v = _exact(cfg, sp, [c.genome for c in before + after])
    F0, F1 = F[:2], F[2:]
    assert np.all(v == 0) and F0[0] < F0[1]                          # feasible starts, best first
    assert np.all(F1 <= F0)                                          # never worse, exactly
    mask = freeze_mask(sp, cfg.freeze)
    ref = np.asarray(sp.reference_genome())
    for b, a, f0, f1 in zip(before, after, F0, F1):
        assert (np.asarray(a.genome)[mask] == ref[mask]).all()      # frozen genes untouched
        assert a.hash == sp.hash_hex(np.asarray([a.genome]))[0]
        if a.origin == "refine":
            assert f1 < f0 and a.name == "refined_" + b.name.split("_")[1]
            p = a.provenance
            assert p["source"] == "refine" and p["start_design"] == b.name and p["start_hash"] == b.hash
            assert p["start_genome"] == b.genome and p["start_objective"] == pytest.approx(f0, rel=1e-6)
            assert a.search_objective[0] == pytest.approx(f1, rel=1e-6)
        else:
            assert a.genome == b.genome and f1 == f0
    assert s["improved"] == sum(a.origin == "refine" for a in after) >= 1   # this seeded run improves
    for r, f0 in zip(s["per_finalist"], F0):
        assert r["start_objective"] == pytest.approx(f0, rel=1e-6)
        assert r["gain_x"] >= 1.0
    for r in s["per_candidate"]:
        assert r["gradient_steps"] == 10 and r["exact_evaluations"] >= 2 and r["seconds"] > 0
        assert r["start_objective"] > 0 and (r["refined_objective"] is None or r["refined_objective"] > 0)

    # the refined designs are what verify and the report see
    assert [r["design"] for r in out["verification"].rows] == [c.name for c in out["finalists"].candidates]
    res = json.loads((out_dir / "results.json").read_text())
    assert res["refinement"]["per_candidate"] == json.loads(json.dumps(s["per_candidate"]))
    md = (out_dir / "report.md").read_text()
    assert "## Refinement" in md and f"Improved: {s['improved']} of 2" in md
    saved = json.loads((out_dir / "stage_refine.json").read_text())
    assert saved["finalists"] == json.loads(json.dumps(out["finalists"].to_dict()))

    # the refine stage rerun alone on the saved search reproduces the finalists and the scores
    again = pl.run(cfg, out_dir, log=lambda s: None)
    assert again["finalists"].to_dict() == out["finalists"].to_dict()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(again["refinement"]["per_candidate"]) == strip(s["per_candidate"])
    # the report alone picks the refinement summary up from stage_refine.json
    third = pl.run(cfg.replace(stages="report"), out_dir, log=lambda s: None)
    assert third["finalists"].to_dict() == out["finalists"].to_dict()
    assert third["refinement"]["improved"] == s["improved"]
    assert f"Improved: {s['improved']} of 2" in (out_dir / "report.md").read_text()


def test_refine_off_is_a_recorded_copy(tmp_path):
    from cimnas_jax.pipeline import refine as stage
    fin = pl.Finalists(candidates=[pl.Candidate("baseline", [0], "h0", "reference"),
                                   pl.Candidate("found_1", [1], "h1", "search", [1.0], 0.0)])
    out, summary = stage.refine(pl.RunConfig(), None, get_space("mbv2_rram"), fin, None, None)
    assert out is fin and summary["enabled"] is False and "--refine_steps=0" in summary["note"]
    cfg = pl.RunConfig(refine_steps=5)
    out, summary = stage.refine(cfg, None, get_space("mbv2_rram"), pl.Finalists(fin.candidates[:1]), None, None)
    assert summary["enabled"] is False and "no found finalist" in summary["note"]
