"""Job runner + SQLite cache + failure semantics, with small deterministic Python evaluators
standing in for CiMLoop (the machinery is the one the cimloop backend uses)."""
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cimnas_jax.cimloop import CimloopConfig, ResultCache, cache_key, design_totals, run_records

REPO = Path(__file__).resolve().parents[1]
REF = Path(__file__).resolve().parents[2] / "shared" / "cimloop_reference"
CFG = CimloopConfig(version="test")


def toy_evaluate(record):
    """Deterministic stand-in: a result in the reference schema computed from the record."""
    lay, hw = record["layer"], record["hw"]
    if lay.get("name") == "raise":
        raise RuntimeError("timeloop found no valid mapping (toy)")
    if lay.get("name") == "sleep":
        time.sleep(30)
    if lay.get("name") == "die":
        os._exit(3)
    macs = lay["C"] * lay["M"] * lay["R"] * lay["S"] * lay["P"] * lay["Q"] // lay["groups"]
    slices = math.ceil(record["weight_bits"] / hw["bits_per_cell"])
    e = macs * 1e-13 * record["input_bits"] * slices * hw["voltage"] ** 2
    cycles = lay["P"] * lay["Q"]
    cyc_s = hw["base_latency_s"] / hw["voltage"]
    area = 1e-9 * hw["rows"] * hw["cols"] * hw["router_group"] * hw["tiles"] * hw["macros_per_tile"]
    return {"energy_J": e, "cycles": cycles, "cycle_seconds": cyc_s,
            "latency_s": cycles * cyc_s, "area_m2_total": area, "computes": float(macs),
            "energy_breakdown_J": {"cim_unit": 0.6 * e, "glb": 0.4 * e},
            "area_breakdown_m2": {"adc": area}, "pid": os.getpid()}


HW = {"voltage": 0.7, "bits_per_cell": 4, "base_latency_s": 4e-9, "rows": 128, "cols": 128,
      "router_group": 8, "tiles": 16, "macros_per_tile": 16, "glb_depth_words": 32768}


def rec(name="a", C=16, M=32, P=14, bits=8, **hw):
    return {"layer": {"name": name, "kind": "pointwise", "C": C, "M": M, "R": 1, "S": 1, "P": P,
                      "Q": P, "stride": 1, "groups": 1, "macs": C * M * P * P},
            "input_bits": bits, "weight_bits": bits, "hw": {**HW, **hw}}


def key(r):
    k = cache_key(r, CFG)
    # the toy failure markers must not share a key with a normal layer of equal shape
    return k + (r["layer"]["name"] if r["layer"]["name"] in ("raise", "sleep", "die") else "")


def _strip(r):
    return {k: v for k, v in r["result"].items() if k != "pid"}


def test_dedup_cache_and_results_match_direct_evaluation(tmp_path):
    recs = [rec("a"), rec("b", C=24), rec("a2"), rec("c", bits=6), rec("d", voltage=0.8)]
    # rec("a2") has the same shape/bits/hw as rec("a"): one evaluation for both
    with ResultCache(str(tmp_path / "c.sqlite")) as cache:
        out, st = run_records(recs, toy_evaluate, key, cache=cache, workers=2, timeout_s=60)
        assert st["n_records"] == 5 and st["n_unique"] == 4 and st["n_evaluated"] == 4
        for r, o in zip(recs, out):
            assert o["status"] == "ok" and o["layer"] == r["layer"]
            assert _strip(o) == _strip({"result": toy_evaluate(r)})
        assert out[2]["cache_hit"] and not out[0]["cache_hit"]
        assert len({o["result"]["pid"] for o in out}) <= 2  # a pool of 2 workers
        out2, st2 = run_records(recs, toy_evaluate, key, cache=cache, workers=2)
        assert st2["n_evaluated"] == 0 and st2["n_cache_hits"] == 4
        assert [o["result"] for o in out2] == [o["result"] for o in out]
    # a new process/connection sees the same results
    with ResultCache(str(tmp_path / "c.sqlite")) as cache:
        assert len(cache) == 4 and cache.stats() == {"ok": 4}


def test_failure_timeout_and_dead_worker_are_recorded(tmp_path):
    recs = [rec("a"), rec("raise"), rec("sleep"), rec("die"), rec("b", C=8)]
    with ResultCache(str(tmp_path / "c.sqlite")) as cache:
        t0 = time.monotonic()
        out, st = run_records(recs, toy_evaluate, key, cache=cache, workers=2, timeout_s=3)
        wall = time.monotonic() - t0
        assert wall < 25, "the sleeping job was not killed at its timeout"
        status = {o["layer"]["name"]: o["status"] for o in out}
        assert status == {"a": "ok", "raise": "error", "sleep": "timeout", "die": "error", "b": "ok"}
        errs = {o["layer"]["name"]: o["error"] for o in out}
        assert "no valid mapping" in errs["raise"] and "timed out" in errs["sleep"]
        assert "died" in errs["die"]
        assert st["n_failed"] == 3
        assert all(o["result"] is None for o in out if o["status"] != "ok")
        # failures are cached with their error (a dead worker is not a property of the layer)
        assert cache.stats() == {"ok": 2, "error": 1, "timeout": 1}
        out2, st2 = run_records(recs[:3] + recs[4:], toy_evaluate, key, cache=cache, workers=2,
                                timeout_s=3)
        assert st2["n_evaluated"] == 0
        assert [o["status"] for o in out2] == [o["status"] for o in out[:3] + out[4:]]
        # ... and evaluated again on request
        out3, st3 = run_records(recs[:2], toy_evaluate, key, cache=cache, workers=1,
                                timeout_s=3, retry_failed=True)
        assert st3["n_evaluated"] == 1 and out3[1]["status"] == "error"


def test_workers_that_cannot_run_abort_the_run():
    recs = [rec("die", C=c) for c in range(1, 9)]
    with pytest.raises(RuntimeError, match="died in a row"):
        run_records(recs, toy_evaluate, key, workers=1, timeout_s=30)


def test_failed_layer_makes_design_invalid_and_unrankable():
    good = [{**rec("a"), "status": "ok", "result": toy_evaluate(rec("a"))},
            {**rec("b", C=8, bits=4), "status": "ok", "result": toy_evaluate(rec("b", C=8, bits=4))}]
    bad = good[:1] + [{**rec("x"), "status": "error", "error": "no valid mapping", "result": None}]
    t_good, t_bad = design_totals(good), design_totals(bad)
    assert t_good["valid"] and not t_bad["valid"]
    assert t_bad["energy_j"] is None and t_bad["edap_j_s_mm2"] is None and t_bad["n_failed"] == 1
    assert "no valid mapping" in t_bad["errors"][0]
    e = sum(g["result"]["energy_J"] for g in good)
    t = sum(g["result"]["latency_s"] for g in good)
    macs = sum(g["layer"]["macs"] for g in good)
    assert t_good["energy_j"] == pytest.approx(e) and t_good["latency_s"] == pytest.approx(t)
    assert t_good["tops_per_w_total"] == pytest.approx(2 * macs / e / 1e12)
    mean = sum(2 * g["layer"]["macs"] / g["result"]["energy_J"] / 1e12 for g in good) / 2
    assert t_good["tops_per_w_mean_of_layers"] == pytest.approx(mean)
    assert t_good["tops_per_w_mean_of_layers"] != pytest.approx(t_good["tops_per_w_total"])
    assert design_totals([])["valid"] is False


def test_totals_reproduce_reference_network_totals():
    if not REF.exists():
        pytest.skip(f"../shared absent: {REF}")
    nets = [json.loads(line) for line in open(REF / "networks.jsonl")]
    for net in nets:
        if not net["complete"]:
            continue
        layers = [{"layer": {**pl["shape"], "kind": pl["kind"], "name": pl["name"]},
                   "status": pl["status"], "error": pl["error"],
                   "result": {k: pl[k] for k in ("energy_J", "latency_s", "cycles",
                                                  "area_m2_total", "energy_breakdown_J")}}
                  for pl in net["per_layer"]]
        t = design_totals(layers)
        ref = net["totals"]
        assert t["valid"]
        assert t["energy_j"] == pytest.approx(ref["energy_J"], rel=1e-9)
        assert t["latency_s"] == pytest.approx(ref["latency_s"], rel=1e-9)
        assert t["cycles"] == ref["cycles"] and t["macs"] == ref["macs"]
        assert t["area_mm2"] == pytest.approx(ref["chip_area_m2"] * 1e6, rel=1e-9)
        for c, v in ref["energy_breakdown_J"].items():
            assert t["energy_breakdown_j"][c] == pytest.approx(v, rel=1e-9, abs=1e-30)


def _writer(path, start, n):
    with ResultCache(path) as c:
        for i in range(start, start + n):
            c.put(f"k{i % 50}", "ok", {"i": i}, "toy", result={"v": i % 50})


def test_cache_concurrent_writers_insert_each_key_once(tmp_path):
    import multiprocessing as mp
    path = str(tmp_path / "c.sqlite")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, s, 200)) for s in (0, 7, 13)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with ResultCache(path) as c:
        assert len(c) == 50
        got = c.get_many([f"k{i}" for i in range(50)])
        assert all(got[f"k{i}"]["result"] == {"v": i} for i in range(50))


def test_cache_survives_kill_9(tmp_path):
    path = str(tmp_path / "c.sqlite")
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from cimnas_jax.cimloop.cache import ResultCache\n"
            "c = ResultCache(%r)\n"
            "i = 0\n"
            "while True:\n"
            "    c.put('k%%d' %% i, 'ok', {'i': i}, 'toy', result={'v': [i] * 50})\n"
            "    i += 1\n" % (str(REPO), path))
    p = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    n = 0
    while time.time() < deadline and n < 200:
        time.sleep(0.2)
        try:
            with sqlite3.connect(path, timeout=5) as con:
                n = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        except sqlite3.OperationalError:
            pass
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert n >= 200
    with ResultCache(path) as c:
        assert c._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = c._conn.execute("SELECT key, result FROM results").fetchall()
        assert len(rows) >= n
        for k, res in rows:  # every committed row is complete
            assert json.loads(res)["v"] == [int(k[1:])] * 50
        c.put("after", "ok", {}, "toy", result={"v": 1})  # still writable
