"""Generic job runner: deduplicate records by cache key, read the cache, evaluate the
rest in a pool of worker processes with a per-job timeout, write every outcome back.

The evaluate function is any picklable ``f(record: dict) -> dict`` (the CiMLoop layer
evaluation, an analytic evaluator, a test function). A job that raises is recorded as
``status="error"`` with its message; a job that runs past ``timeout_s`` has its worker
killed and is recorded as ``status="timeout"``; a worker that dies is recorded as
``error`` but not cached (an infrastructure fault, not a property of the layer).
Other failures are cached too (deterministic: "no valid mapping"), unless
``retry_failed`` asks to evaluate them again. Workers that keep dying without finishing
any job abort the run with ``RuntimeError`` instead of failing every job.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from multiprocessing.connection import wait
from typing import Callable, Mapping, Sequence

from .cache import ResultCache

DEAD_WORKER = "worker process died"


def format_failure(e: BaseException) -> str:
    """``Type: message`` plus the last frames of the evaluation's own traceback (the caller's
    frame dropped), at most 4000 characters: the same text whichever executor ran the job."""
    tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
    frames = "".join(traceback.format_tb(tb, limit=-3)) if tb is not None else ""
    return f"{type(e).__name__}: {e}\n{frames}"[:4000]


def _worker_main(conn, evaluate_fn) -> None:
    """Worker loop: receive (job_id, record), send (job_id, status, result, error, secs).

    The worker leads its own process group so that a timeout kills the tools it started
    (timeloop-mapper, accelergy) together with it.
    """
    if hasattr(os, "setsid"):
        try:
            os.setsid()
        except OSError:
            pass
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, record = msg
        t0 = time.perf_counter()
        try:
            result = evaluate_fn(record)
            out = (job_id, "ok", result, None, time.perf_counter() - t0)
        except BaseException as e:  # noqa: BLE001 - report every failure, keep serving
            out = (job_id, "error", None, format_failure(e), time.perf_counter() - t0)
        try:
            conn.send(out)
        except (BrokenPipeError, OSError):
            return


class WorkerPool:
    """``n`` worker processes evaluating records, each job limited to ``timeout_s``."""

    def __init__(self, evaluate_fn: Callable, workers: int = 1, timeout_s: float | None = None,
                 start_method: str = "spawn", on_worker_killed: Callable[[int], None] | None = None):
        if workers < 1:
            raise ValueError(f"workers={workers}; must be >= 1")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s={timeout_s}; must be > 0 or None")
        self.evaluate_fn = evaluate_fn
        self.n = workers
        self.timeout_s = timeout_s
        self.ctx = mp.get_context(start_method)
        self.on_worker_killed = on_worker_killed  # e.g. remove a killed worker's job dirs

    def _spawn(self):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker_main, args=(child, self.evaluate_fn), daemon=True)
        p.start()
        child.close()
        return p, parent

    def _retire(self, w, kill: bool) -> None:
        p, conn = w
        if kill:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # worker and its children
            except (AttributeError, ProcessLookupError, PermissionError, OSError):
                p.kill()
        else:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join()
        conn.close()
        if kill and self.on_worker_killed is not None:
            self.on_worker_killed(p.pid)

    def map_unordered(self, jobs: Sequence[tuple]):
        """Yield (job_id, status, result, error, eval_seconds) as jobs finish."""
        pending = list(jobs)[::-1]
        busy = {}  # conn -> (worker, job_id, start)
        idle = []
        deaths_in_a_row = 0
        try:
            while pending or busy:
                while pending and (idle or len(busy) + len(idle) < self.n):
                    w = idle.pop() if idle else self._spawn()
                    job_id, record = pending.pop()
                    w[1].send((job_id, record))
                    busy[w[1]] = (w, job_id, time.monotonic())
                if self.timeout_s is None:
                    wait_s = None
                else:
                    now = time.monotonic()
                    wait_s = max(0.0, min(s + self.timeout_s for _, _, s in busy.values()) - now)
                ready = wait(list(busy), timeout=wait_s)
                for conn in ready:
                    w, job_id, start = busy.pop(conn)
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        self._retire(w, kill=True)
                        code = w[0].exitcode
                        deaths_in_a_row += 1
                        if deaths_in_a_row >= max(3, 2 * self.n):
                            raise RuntimeError(
                                f"{deaths_in_a_row} worker processes died in a row (last exit "
                                f"code {code}); the evaluate function cannot run in a worker")
                        yield (job_id, "error", None, f"{DEAD_WORKER} (exit code {code})",
                               time.monotonic() - start)
                        continue
                    deaths_in_a_row = 0
                    idle.append(w)
                    yield msg
                if self.timeout_s is not None:
                    now = time.monotonic()
                    for conn, (w, job_id, start) in list(busy.items()):
                        if now - start >= self.timeout_s and conn not in ready:
                            busy.pop(conn)
                            self._retire(w, kill=True)
                            yield (job_id, "timeout", None,
                                   f"timed out after {self.timeout_s:g} s (worker killed)",
                                   now - start)
        finally:
            for w, _, _ in busy.values():
                self._retire(w, kill=True)
            for w in idle:
                self._retire(w, kill=False)


def run_records(
    records: Sequence[Mapping],
    evaluate_fn: Callable,
    key_fn: Callable[[Mapping], str],
    cache: ResultCache | None = None,
    backend_name: str = "",
    workers: int = 1,
    timeout_s: float | None = None,
    retry_failed: bool = False,
    progress: Callable[[int, int], None] | None = None,
    start_method: str = "spawn",
    on_worker_killed: Callable[[int], None] | None = None,
) -> tuple[list[dict], dict]:
    """Evaluate records once per distinct cache key; returns (records out, statistics).

    Each output record is the input record plus ``status`` (ok | error | timeout),
    ``error``, ``result``, ``cache_key`` and ``cache_hit`` (True if no evaluation ran for
    it in this call: found in the cache or a duplicate of an earlier record).
    """
    keys = [key_fn(r) for r in records]
    first = {}
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
    if todo:
        pool = WorkerPool(evaluate_fn, workers=workers, timeout_s=timeout_s,
                          start_method=start_method, on_worker_killed=on_worker_killed)
        jobs = [(k, dict(first[k])) for k in todo]
        for i, (k, status, result, error, secs) in enumerate(pool.map_unordered(jobs), 1):
            outcomes[k] = {"status": status, "error": error, "result": result,
                           "eval_seconds": secs}
            eval_seconds += secs or 0.0
            if cache is not None and not (error or "").startswith(DEAD_WORKER):
                cache.put(k, status, first[k], backend_name, result=result, error=error,
                          eval_seconds=secs)
            if progress is not None:
                progress(i, len(todo))
    evaluated = set(todo)
    out = []
    for k, r in zip(keys, records):
        o = outcomes[k]
        rec = dict(r)
        rec.update(status=o["status"], error=o["error"], result=o["result"], cache_key=k,
                   cache_hit=k not in evaluated)
        evaluated.discard(k)  # later duplicates of the same key are hits
        out.append(rec)
    stats = {
        "n_records": len(records),
        "n_unique": len(first),
        "n_cache_hits": len(first) - len(todo),
        "n_evaluated": len(todo),
        "n_failed": sum(1 for k in todo if outcomes[k]["status"] != "ok"),
        "eval_seconds_sum": eval_seconds,
        "wall_seconds": time.perf_counter() - t0,
    }
    return out, stats
