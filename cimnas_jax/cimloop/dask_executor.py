"""Layer evaluations on a Dask cluster: the ``dask`` executor of ``run_records``.

    out, stats = run_records_dask(records, evaluate_fn, key_fn, cache=cache,
                                  scheduler=None, workers=2, timeout_s=900, retries=1)

Same contract as ``runner.run_records`` (the ``local`` executor): records are deduplicated
by cache key, the cache is read first, and every distinct key left is ONE Dask task
(``client.submit(..., key="layer-<cache key>", retries=retries)``). Results come back to the
client as they finish (``distributed.as_completed``) and the client alone writes them into
the SQLite cache (one writer; workers never touch it), so a client killed mid-run loses only
the evaluations in flight: rerun, and every finished layer is a cache hit.

Outcomes (as the local pool records them):
- ``ok``: the result dict;
- ``error``: the evaluate function raised (e.g. timeloop found no mapping), cached;
- ``timeout``: the evaluation ran past ``timeout_s`` and its process group was killed, cached;
- a task whose worker died, or that raised outside the evaluation ``retries`` + 1 times
  (Dask reschedules tasks of dead workers on its own, up to
  ``distributed.scheduler.allowed-failures``), is ``error`` with ``worker process died`` /
  the exception, and NOT cached (an infrastructure fault, not a property of the layer).

Per-task timeout: Dask cannot stop a running task, so with ``timeout_s`` each evaluation
runs in a child process (``python -m cimnas_jax.cimloop.dask_task``, its own session) that
the task kills with its whole process group (timeloop-mapper, accelergy) at the deadline.
Without ``timeout_s`` the evaluation runs in the worker's thread (cheap: for fast stand-in
evaluators).

``scheduler``: the address of a running scheduler (``tcp://host:8786``; a Slurm / Kubernetes
cluster, see docs/cimloop_backend.md), or None for a ``distributed.LocalCluster`` of
``workers`` single-threaded worker processes on this machine. ``dask`` and ``distributed``
are an optional extra (``pip install cimnas-jax[dask]``); nothing imports them until a dask
executor runs.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from typing import Callable, Mapping, Sequence

from .cache import ResultCache
from .runner import DEAD_WORKER, format_failure, run_records

EXECUTORS = ("local", "dask")
DASK_HINT = "the dask executor needs dask and distributed: pip install 'dask[distributed]' (or cimnas-jax[dask])"


class DaskUnavailable(ImportError):
    """dask / distributed are not installed."""


def require_dask():
    try:
        import distributed  # noqa: F401
    except ImportError as e:
        raise DaskUnavailable(f"{DASK_HINT} ({e})") from None
    return distributed


# --------------------------------------------------------------------------- the task
def _child_env() -> dict:
    """The worker's environment with its sys.path, so the child unpickles what the worker can."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def evaluate_task(evaluate_fn: Callable, record: Mapping, timeout_s: float | None):
    """Run on a Dask worker: ``(status, result, error, seconds)`` of one layer evaluation.

    An exception of ``evaluate_fn`` is an ``error`` outcome (returned, so Dask does not retry a
    deterministic failure); a child that dies without an outcome raises ``RuntimeError`` (Dask
    retries it ``retries`` times, then the client records it as a dead worker)."""
    t0 = time.perf_counter()
    if timeout_s is None:
        try:
            return "ok", evaluate_fn(record), None, time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - every failure of the layer is recorded
            return "error", None, format_failure(e), time.perf_counter() - t0
    import cloudpickle
    payload = cloudpickle.dumps((evaluate_fn, dict(record)))
    p = subprocess.Popen([sys.executable, "-m", "cimnas_jax.cimloop.dask_task"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(),
                         start_new_session=True)
    try:
        out, err = p.communicate(payload, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(p)
        from .backend import _remove_job_dirs     # a killed CiMLoop evaluation's job folders
        _remove_job_dirs(p.pid)
        return ("timeout", None, f"timed out after {timeout_s:g} s (evaluation process group killed)",
                time.perf_counter() - t0)
    finally:
        if p.poll() is None:
            _kill_group(p)
    try:
        status, result, error = pickle.loads(out)
    except Exception:  # noqa: BLE001 - no outcome: the child died
        tail = err.decode(errors="replace")[-1500:]
        raise RuntimeError(f"{DEAD_WORKER} (exit code {p.returncode}): {tail}") from None
    return status, result, error, time.perf_counter() - t0


def _kill_group(p: subprocess.Popen) -> None:
    import signal
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        p.kill()
    p.wait()


# --------------------------------------------------------------------------- the client
def make_client(scheduler: str | None = None, workers: int = 2):
    """A ``distributed.Client``: connected to ``scheduler``, or to a new LocalCluster of
    ``workers`` single-threaded processes (closed with the client)."""
    distributed = require_dask()
    if scheduler:
        return distributed.Client(scheduler, timeout="60s")
    cluster = distributed.LocalCluster(n_workers=max(1, int(workers)), threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=50)
    client = distributed.Client(cluster)
    client._cimnas_own_cluster = cluster
    return client


def close_client(client) -> None:
    cluster = getattr(client, "_cimnas_own_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def run_records_dask(
    records: Sequence[Mapping],
    evaluate_fn: Callable,
    key_fn: Callable[[Mapping], str],
    cache: ResultCache | None = None,
    backend_name: str = "",
    client=None,
    scheduler: str | None = None,
    workers: int = 2,
    timeout_s: float | None = None,
    retries: int = 1,
    retry_failed: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict], dict]:
    """``run_records`` with every distinct uncached key one Dask task; same outputs and
    statistics (plus ``executor``, ``dask_workers``). ``client``: an open ``distributed.Client``
    to reuse; else one is made from ``scheduler`` / ``workers`` and closed at the end."""
    keys = [key_fn(r) for r in records]
    first: dict = {}
    for k, r in zip(keys, records):
        first.setdefault(k, r)
    found = cache.get_many(first) if cache is not None else {}
    if retry_failed:
        stale = [k for k, v in found.items() if v["status"] != "ok"]
        if stale and cache is not None:
            cache.delete(stale)
        found = {k: v for k, v in found.items() if v["status"] == "ok"}
    todo = [k for k in first if k not in found]
    outcomes = dict(found)
    eval_seconds = 0.0
    t0 = time.perf_counter()
    n_workers = None
    if todo:
        distributed = require_dask()
        own = client is None
        client = client or make_client(scheduler, workers)
        try:
            n_workers = len(client.scheduler_info().get("workers", {}))
            futures = {}
            for k in todo:   # task keys name the layer: a resubmitted key reuses a running task
                f = client.submit(evaluate_task, evaluate_fn, dict(first[k]), timeout_s, key=f"layer-{k}",
                                  pure=False, retries=retries)
                futures[f] = k
            done = 0
            for f in distributed.as_completed(list(futures)):
                k = futures[f]
                cacheable = True
                if f.status == "finished":
                    status, result, error, secs = f.result()
                else:                       # raised outside the evaluation, or its workers died
                    exc = f.exception()
                    status, result, secs = "error", None, None
                    error = str(exc)[:4000] if DEAD_WORKER in str(exc) else (
                        f"{DEAD_WORKER} or task failed: {type(exc).__name__}: {exc}"[:4000])
                    cacheable = False
                outcomes[k] = {"status": status, "error": error, "result": result, "eval_seconds": secs}
                eval_seconds += secs or 0.0
                if cache is not None and cacheable:
                    cache.put(k, status, first[k], backend_name, result=result, error=error,
                              eval_seconds=secs)
                done += 1
                f.release()
                if progress is not None:
                    progress(done, len(todo))
        finally:
            if own:
                close_client(client)
    evaluated = set(todo)
    out = []
    for k, r in zip(keys, records):
        o = outcomes[k]
        rec = dict(r)
        rec.update(status=o["status"], error=o["error"], result=o["result"], cache_key=k,
                   cache_hit=k not in evaluated)
        evaluated.discard(k)
        out.append(rec)
    stats = {
        "executor": "dask",
        "dask_workers": n_workers,
        "n_records": len(records),
        "n_unique": len(first),
        "n_cache_hits": len(first) - len(todo),
        "n_evaluated": len(todo),
        "n_failed": sum(1 for k in todo if outcomes[k]["status"] != "ok"),
        "eval_seconds_sum": eval_seconds,
        "wall_seconds": time.perf_counter() - t0,
    }
    return out, stats


def execute_records(executor: str, records, evaluate_fn, key_fn, cache=None, backend_name="", workers=1,
                    timeout_s=None, retry_failed=False, progress=None, dask_scheduler=None, dask_client=None,
                    dask_retries=1, **local_kw):
    """``run_records`` through the named executor: ``local`` (the process pool of ``runner``) or
    ``dask`` (``run_records_dask``). Raises ValueError for another name."""
    if executor == "local":
        out, st = run_records(records, evaluate_fn, key_fn, cache=cache, backend_name=backend_name,
                              workers=workers, timeout_s=timeout_s, retry_failed=retry_failed,
                              progress=progress, **local_kw)
        return out, {"executor": "local", **st}
    if executor == "dask":
        return run_records_dask(records, evaluate_fn, key_fn, cache=cache, backend_name=backend_name,
                                client=dask_client, scheduler=dask_scheduler, workers=workers,
                                timeout_s=timeout_s, retries=dask_retries, retry_failed=retry_failed,
                                progress=progress)
    raise ValueError(f"executor={executor!r}; allowed: {', '.join(EXECUTORS)}")
