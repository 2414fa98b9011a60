"""Labelling pipeline: sampling, canonical per-layer keys, store resume, kill -9 + rerun."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cimnas_jax.cimloop import CimloopConfig, cache_key
from cimnas_jax.label import (LabelStore, design_layer_records, key_statistics, make_genomes,
                              read_genomes, sample_lhs)
from cimnas_jax.label.sampling import hardware_gene_mask
from cimnas_jax.space import get_space

REPO = Path(__file__).resolve().parents[1]
LABEL = REPO / "experiments" / "label.py"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}   # the script imports the package (installed, or this checkout)


@pytest.fixture(scope="module")
def sp():
    return get_space("mbv2_rram")


def test_lhs_stratifies_every_hardware_gene(sp):
    n = 40
    g = sample_lhs(sp, n, seed=3)
    hwm = hardware_gene_mask(sp)
    assert hwm.sum() == 9
    nc = np.asarray(sp.n_choices)
    for j in np.flatnonzero(hwm):
        counts = np.bincount(g[:, j], minlength=nc[j])
        assert counts.max() - counts.min() <= 1 and counts.sum() == n, (sp.gene_names[j], counts)
    assert np.all(np.asarray(sp.in_range(g)))
    assert not np.array_equal(g, sample_lhs(sp, n, seed=4))
    np.testing.assert_array_equal(g, sample_lhs(sp, n, seed=3))


def test_read_genomes_formats(sp, tmp_path):
    g = make_genomes(sp, "uniform", 5, 0)
    (tmp_path / "a.json").write_text(json.dumps({"genomes": g.tolist()}))
    (tmp_path / "b.json").write_text(json.dumps([{"genome": x, "f": 1} for x in g.tolist()]))
    vals = {k: np.asarray(v) for k, v in sp.decode(g).items()}  # physical values per gene
    with open(tmp_path / "c.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank"] + list(sp.gene_names))
        w.writerows([[i] + [float(vals[n][i]) for n in sp.gene_names] for i in range(5)])
    with open(tmp_path / "e.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "genome"])
        w.writerows([[i, json.dumps(x)] for i, x in enumerate(g.tolist())])
    np.save(tmp_path / "d.npy", g)
    for name in ("a.json", "b.json", "c.csv", "d.npy", "e.csv"):
        np.testing.assert_array_equal(read_genomes(sp, str(tmp_path / name)), g)
    bad = g.copy()
    bad[0, 0] = 99
    (tmp_path / "bad.json").write_text(json.dumps(bad.tolist()))
    with pytest.raises(ValueError, match=sp.gene_names[0]):
        read_genomes(sp, str(tmp_path / "bad.json"))


def test_equal_designs_have_equal_layer_keys(sp):
    g = make_genomes(sp, "uniform", 64, 1)
    c = np.asarray(sp.canonicalise(g))
    differ = np.flatnonzero(np.any(c != g, axis=1))
    assert differ.size > 0, "expected genomes with no-effect genes set"
    cfg = CimloopConfig()
    rg = design_layer_records(sp, g[differ[:4]])
    rc = design_layer_records(sp, c[differ[:4]])
    for a, b in zip(rg, rc):
        assert [cache_key(r, cfg) for r in a] == [cache_key(r, cfg) for r in b]
    assert sp.hash_hex(g[differ[:4]]) == sp.hash_hex(c[differ[:4]])
    # and a real change (a hardware gene) changes every key of the design
    g2 = g[:1].copy()
    g2[0, 0] = (g2[0, 0] + 1) % int(np.asarray(sp.n_choices)[0])
    k1 = [cache_key(r, cfg) for r in design_layer_records(sp, g[:1])[0]]
    k2 = [cache_key(r, cfg) for r in design_layer_records(sp, g2)[0]]
    assert not set(k1) & set(k2)


def test_layer_records_follow_reference_conventions(sp):
    g = make_genomes(sp, "uniform", 3, 2)
    lt = sp.workloads(g)
    for p, recs in enumerate(design_layer_records(sp, g)):
        assert len(recs) == int(np.asarray(lt.active)[p].sum())
        first = recs[0]
        assert first["layer"]["kind"] == "conv" and first["layer"]["C"] == 3
        assert first["layer"]["stride"] == 2 and first["layer"]["P"] == 112
        assert recs[-1]["layer"]["kind"] == "fc" and recs[-1]["layer"]["M"] == 1000
        for r in recs:
            lay = r["layer"]
            if lay["kind"] == "depthwise":
                assert lay["C"] == lay["M"] == lay["groups"]
                assert lay["macs"] == lay["C"] * lay["R"] * lay["S"] * lay["P"] * lay["Q"]
            hw = r["hw"]
            assert hw["glb_depth_words"] * 256 in [int(x * 2 ** 20) for x in (0.5, 1, 2, 4, 8, 16, 32)]
            assert 1e-9 <= hw["base_latency_s"] <= 1e-8


def test_store_cuts_torn_line_and_refuses_duplicates(tmp_path):
    st = LabelStore(str(tmp_path))
    st.append([{"index": 0, "hash": "a", "layers": []}, {"index": 1, "hash": "b", "layers": []}])
    with open(st.designs_path, "a") as f:
        f.write('{"index": 2, "hash": "c", "lay')  # killed mid-write
    assert st.load_done() == {0: "a", 1: "b"}
    assert open(st.designs_path).read().endswith('"b", "index": 1, "layers": []}\n')
    st.append([{"index": 2, "hash": "c", "layers": []}])
    assert st.load_done() == {0: "a", 1: "b", 2: "c"}
    st.append([{"index": 2, "hash": "c", "layers": []}])
    with pytest.raises(ValueError, match="twice"):
        st.load_done()


def test_key_statistics_counts_shared_layers(sp):
    g = make_genomes(sp, "uniform", 4, 5)
    g[1] = g[0]  # the same design twice: its layers are all cache hits
    recs = design_layer_records(sp, g)
    st = key_statistics(recs)
    calls = sum(len(r) for r in recs)
    uniq = len({cache_key(r, CimloopConfig()) for rs in recs for r in rs})
    assert st["layer_calls_cimnas"] == calls and st["unique_evaluations"] == uniq
    assert uniq <= calls - len(recs[0])
    assert st["cache_hit_rate"] == pytest.approx(1 - uniq / calls)


def test_record_path_matches_analytic_fast_path(sp):
    hw = pytest.importorskip("cimnas_jax.hw")
    from cimnas_jax.label import label_batch_analytic, label_batch_records
    g = make_genomes(sp, "uniform", 3, 7)
    idx, hs = [0, 1, 2], sp.hash_hex(g)
    fast = label_batch_analytic(sp, g, idx, hs, CimloopConfig())
    slow = label_batch_records(sp, g, idx, hs, hw.get_backend("analytic"))
    for a, b in zip(fast, slow):
        assert [l["cache_key"] for l in a["layers"]] == [l["cache_key"] for l in b["layers"]]
        assert [l["status"] for l in a["layers"]] == [l["status"] for l in b["layers"]]
        ea = np.array([l["energy_j"] or 0.0 for l in a["layers"]])
        eb = np.array([l["energy_j"] or 0.0 for l in b["layers"]])
        np.testing.assert_allclose(ea, eb, rtol=1e-4)


def _run(out_dir, *extra):
    return subprocess.Popen([sys.executable, str(LABEL), f"--out_dir={out_dir}", "--n=12",
                             "--chunk_size=3", "--seed=11", "--sampler=lhs", *extra],
                            cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _lines(path):
    with open(path) as f:
        return f.read().splitlines()


def test_kill_9_mid_run_then_rerun_gives_identical_labels(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = _run(ref_dir)
    victim = _run(run_dir, "--sleep_per_chunk_s=1.5")
    designs = run_dir / "designs.jsonl"
    deadline = time.time() + 120
    n_before = 0
    while time.time() < deadline and victim.poll() is None:
        if designs.exists():
            n_before = len(_lines(designs))
            if n_before >= 3:
                break
        time.sleep(0.05)
    assert victim.poll() is None, f"run ended before it could be killed: {victim.stderr.read()[-3000:]}"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    n_killed = len(_lines(designs))
    assert 3 <= n_killed < 12
    assert ref.wait(timeout=180) == 0, ref.stderr.read()
    resumed = _run(run_dir)
    assert resumed.wait(timeout=180) == 0, resumed.stderr.read()
    a, b = _lines(ref_dir / "designs.jsonl"), _lines(designs)
    assert len(b) == 12 and len({json.loads(x)["index"] for x in b}) == 12
    assert a == b  # identical labels, none lost, none duplicated
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["complete"] and man["backend"] == "analytic" and man["seed"] == 11
    assert man["units"]["energy_j"] == "J"
    stats = json.loads((run_dir / "stats.json").read_text())
    assert stats["run"]["n_skipped_resume"] == n_killed
    with open(run_dir / "layers.csv") as f:
        n_layer_rows = sum(1 for _ in csv.DictReader(f))
    assert n_layer_rows == sum(len(json.loads(x)["layers"]) for x in b)
    # a different run cannot be appended to this folder
    other = subprocess.run([sys.executable, str(LABEL), f"--out_dir={run_dir}", "--n=12",
                            "--seed=12", "--sampler=lhs"], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert other.returncode != 0 and "another run" in other.stderr


class _ToyCachedBackend:
    """cimloop-style backend (generic runner + SQLite cache) over the toy evaluator."""
    name = "toy"
    config = CimloopConfig(version="toy")

    def __init__(self, path):
        from cimnas_jax.cimloop import ResultCache
        self.cache = ResultCache(path)
        self.last_stats = {}

    def evaluate_records(self, records, progress=None):
        from cimnas_jax.cimloop import run_records
        from test_cimloop_runner import toy_evaluate
        out, self.last_stats = run_records(records, toy_evaluate,
                                           lambda r: cache_key(r, self.config), cache=self.cache,
                                           workers=2, timeout_s=60, progress=progress)
        return out


def test_record_path_dedups_layers_across_designs(sp, tmp_path):
    from cimnas_jax.label import label_batch_records
    g = make_genomes(sp, "uniform", 2, 9)
    g = np.concatenate([g, g[:1]])  # design 2 == design 0: all its layers are shared
    be = _ToyCachedBackend(str(tmp_path / "c.sqlite"))
    logs = []
    d = label_batch_records(sp, g, [0, 1, 2], sp.hash_hex(g), be, log=logs.append)
    recs = design_layer_records(sp, g)
    uniq = {cache_key(r, be.config) for rs in recs for r in rs}
    assert be.last_stats["n_unique"] == len(uniq) and be.last_stats["n_evaluated"] == len(uniq)
    assert be.last_stats["n_records"] == sum(len(r) for r in recs)
    assert d[0]["valid"] and d[0]["energy_j"] == d[2]["energy_j"] and d[0]["hash"] == d[2]["hash"]
    assert all(l["cache_key"] for l in d[1]["layers"])
    assert d[0]["tops_per_w_total"] != pytest.approx(d[0]["tops_per_w_mean_of_layers"])
    assert any("layer evaluations" in m for m in logs)
    d2 = label_batch_records(sp, g, [0, 1, 2], sp.hash_hex(g), be)  # all from the cache
    assert be.last_stats["n_evaluated"] == 0 and d2 == d


def test_label_cli_bad_flag_names_flag_and_allowed_values(tmp_path):
    r = subprocess.run([sys.executable, str(LABEL), f"--out_dir={tmp_path}", "--backend=timeloop"],
                       cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: --backend='timeloop' is not allowed; use one of ('analytic', 'cimloop', 'analytic_layers')"]


def test_label_cli_refuses_a_folder_in_use(tmp_path):
    from cimnas_jax.fileio import FolderLock
    with FolderLock(tmp_path, "a test"):
        r = subprocess.run([sys.executable, "-m", "cimnas_jax", "label", f"--out_dir={tmp_path}", "--n=2"],
                           cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "in use by a test" in r.stderr
    assert not (tmp_path / "designs.jsonl").exists()


def test_label_cli_writes_7nm_sram_records_for_the_sram_space(tmp_path):
    # experiments/label.py --space=resnet50_sram7nm: every design's hw and every layer's key carry
    # the space's technology (7 nm, the SRAM cell, the design's ADC resolution), not RRAM 32 nm
    out = tmp_path / "r50"
    p = subprocess.run([sys.executable, str(LABEL), f"--out_dir={out}", "--space=resnet50_sram7nm", "--n=3",
                        "--chunk_size=3", "--seed=2"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    designs = [json.loads(x) for x in _lines(out / "designs.jsonl")]
    sp7 = get_space("resnet50_sram7nm")
    g = np.asarray([d["genome"] for d in designs], np.int32)
    adc = np.asarray(sp7.hardware(g).adc_bits)
    assert len(designs) == 3
    for d, a in zip(designs, adc):
        assert d["hw"]["technology_nm"] == 7 and d["hw"]["cell"] == "sram_sinangil_jssc_2021", d["hw"]
        assert d["hw"]["adc_bits"] == int(a)
    recs = design_layer_records(sp7, g)
    assert all(r["hw"]["technology_nm"] == 7 for rs in recs for r in rs)
    assert [l["cache_key"] for l in designs[0]["layers"]] == [cache_key(r, CimloopConfig()) for r in recs[0]]
    assert json.loads((out / "manifest.json").read_text())["technology"] == "sram_7nm"
