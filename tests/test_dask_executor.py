"""The dask executor of the layer job runner (LocalCluster on this machine): the same outcomes,
cache rows and labels as the local process pool; a client killed with -9 resumes without losing,
duplicating or re-evaluating finished layers. Skipped where dask[distributed] is not installed
(it is an optional extra: pip install -r requirements-dask.txt)."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="dask[distributed] not installed (optional extra: "
                    "pip install -r requirements-dask.txt)")

from cimnas_jax.cimloop import ResultCache, run_records  # noqa: E402
from cimnas_jax.cimloop.dask_executor import run_records_dask  # noqa: E402
from test_cimloop_runner import key, rec, toy_evaluate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LABEL = REPO / "experiments" / "label.py"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}


def test_dask_outcomes_timeout_and_cache_match_the_local_pool(tmp_path):
    recs = [rec("a"), rec("raise"), rec("sleep"), rec("die"), rec("b", C=8), rec("a2")]
    with ResultCache(str(tmp_path / "d.sqlite")) as cache:
        t0 = time.monotonic()
        out, st = run_records_dask(recs, toy_evaluate, key, cache=cache, workers=2, timeout_s=3, retries=0)
        assert time.monotonic() - t0 < 40, "the sleeping task was not killed at its timeout"
        status = {o["layer"]["name"]: o["status"] for o in out}
        assert status == {"a": "ok", "raise": "error", "sleep": "timeout", "die": "error", "b": "ok", "a2": "ok"}
        errs = {o["layer"]["name"]: o["error"] for o in out}
        assert "no valid mapping" in errs["raise"] and "timed out after 3 s" in errs["sleep"]
        assert "died" in errs["die"]
        assert st["executor"] == "dask" and st["dask_workers"] == 2
        assert st["n_unique"] == 5 and st["n_evaluated"] == 5 and st["n_failed"] == 3
        assert out[5]["cache_hit"] and not out[0]["cache_hit"]      # a2 == a: one task for both
        assert all(o["result"] is None for o in out if o["status"] != "ok")
        # the client wrote every outcome but the dead worker's (not a property of the layer)
        assert cache.stats() == {"ok": 2, "error": 1, "timeout": 1}
        out2, st2 = run_records_dask([recs[0], recs[1], recs[2], recs[4]], toy_evaluate, key, cache=cache)
        assert st2["n_evaluated"] == 0 and [o["status"] for o in out2] == ["ok", "error", "timeout", "ok"]
    with ResultCache(str(tmp_path / "l.sqlite")) as cache:
        local, _ = run_records([r for r in recs if r["layer"]["name"] != "die"], toy_evaluate, key, cache=cache,
                               workers=2, timeout_s=3)
    ok_d = [o for o in out if o["status"] == "ok"]
    ok_l = [o for o in local if o["status"] == "ok"]
    strip = lambda r: {k: v for k, v in r["result"].items() if k != "pid"}  # noqa: E731
    assert [strip(a) for a in ok_d] == [strip(b) for b in ok_l]
    assert errs["raise"] == next(o["error"] for o in local if o["layer"]["name"] == "raise")  # same text


def _label(out, cache, *extra, chunk=10):
    return subprocess.Popen([sys.executable, str(LABEL), f"--out_dir={out}", "--n=20", f"--chunk_size={chunk}",
                             "--seed=11", "--sampler=lhs", "--backend=analytic_layers", f"--cache_db={cache}",
                             "--workers=2", "--timeout_s=0", *extra],
                            cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _rows(db):
    with sqlite3.connect(db, timeout=30) as con:
        return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def test_label_dask_equals_local_and_a_killed_client_resumes(tmp_path):
    """20 designs, the analytic model per layer standing in for CiMLoop: --executor=dask (a
    LocalCluster of 2 workers) killed with -9 mid-run and rerun gives exactly the labels of
    --executor=local; finished layers are not evaluated again."""
    import psutil
    ref = _label(tmp_path / "local", tmp_path / "local.sqlite", chunk=20)   # labels do not depend on chunks
    assert ref.wait(timeout=300) == 0, ref.stderr.read()[-3000:]
    run_dir, db = tmp_path / "dask", tmp_path / "dask.sqlite"
    victim = _label(run_dir, db, "--executor=dask")
    deadline = time.time() + 240
    n_cached = 0
    while time.time() < deadline and victim.poll() is None:   # kill in the second chunk, layers cached
        if (run_dir / "designs.jsonl").exists() and db.exists():
            n_cached = _rows(db)
            if n_cached > 600:
                break
        time.sleep(0.2)
    assert victim.poll() is None, f"run ended before it could be killed: {victim.stderr.read()[-3000:]}"
    workers = psutil.Process(victim.pid).children(recursive=True)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    n_cached = _rows(db)
    n_written = len((run_dir / "designs.jsonl").read_text().splitlines())
    assert 10 <= n_written < 20
    resumed = _label(run_dir, db, "--executor=dask")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-3000:]
    a = (tmp_path / "local" / "designs.jsonl").read_text().splitlines()
    b = (run_dir / "designs.jsonl").read_text().splitlines()
    assert len(b) == 20 and len({json.loads(x)["index"] for x in b}) == 20      # none lost, none twice
    assert a == b                                                                # exactly the local labels
    st = json.loads((run_dir / "stats.json").read_text())
    ev = st["layer_evaluations_this_run"]
    assert st["run"]["n_skipped_resume"] == n_written and ev["executor"] == "dask"
    assert ev["n_evaluated"] == st["unique_evaluations"] - n_cached > 0          # finished layers: cache hits
    assert _rows(db) == st["unique_evaluations"] == _rows(tmp_path / "local.sqlite")
    _, alive = psutil.wait_procs(workers, timeout=60)                           # the killed client's workers
    assert not alive, f"LocalCluster workers outlived their client: {alive}"


def test_label_cli_executor_flags_are_checked_before_work(tmp_path):
    r = subprocess.run([sys.executable, str(LABEL), f"--out_dir={tmp_path}", "--executor=dask"],
                       cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--executor=dask runs layer evaluations: it needs --backend in" in r.stderr
    r = subprocess.run([sys.executable, str(LABEL), f"--out_dir={tmp_path}", "--executor=ray"],
                       cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--executor='ray' is not allowed; use one of ('local', 'dask')" in r.stderr
    assert not (tmp_path / "manifest.json").exists()
