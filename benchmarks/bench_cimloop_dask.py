"""Real CiMLoop layer evaluations through the executors: layer evaluations per second with the
dask executor (LocalCluster of 1 and 2 workers) and, as the peer in the same run, the local
process pool with the same worker count. Needs CiMLoop (``source /tmp/cimloop/env.sh``) and
dask[distributed].

  nice -n 10 python benchmarks/bench_cimloop_dask.py --layers=4 --workers=1,2

Each configuration evaluates the SAME ``--layers`` distinct layer records (from one sampled
design of --space) into a fresh SQLite cache, so nothing is a cache hit. Prints one line per
configuration (layers, wall seconds, layers/s, mean seconds per layer inside the worker) and a
projection for --project_workers workers that assumes perfect scaling of the measured
per-worker rate (no scheduler limit, one core per worker) -- a projection, not a measurement.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="mbv2_rram")
    ap.add_argument("--layers", type=int, default=4, help="distinct layer records per configuration")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--executors", default="dask,local")
    ap.add_argument("--timeout_s", type=float, default=900.0)
    ap.add_argument("--project_workers", type=int, default=64)
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args()

    import numpy as np
    from cimnas_jax.cimloop import CimloopBackend, CimloopUnavailable
    from cimnas_jax.label import design_layer_records, make_genomes
    from cimnas_jax.space import get_space

    sp = get_space(a.space)
    recs = design_layer_records(sp, make_genomes(sp, "uniform", 1, a.seed))[0]
    # the largest distinct layers first would bias towards slow ones; take evenly spaced layers
    pick = np.linspace(0, len(recs) - 1, a.layers).round().astype(int)
    records = [recs[i] for i in dict.fromkeys(pick.tolist())]
    print(f"CiMLoop via executors: {len(records)} distinct layers of one {sp.name} design "
          f"({', '.join(r['layer']['name'] for r in records)}); {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start", flush=True)
    rows = []
    for w in [int(x) for x in a.workers.split(",")]:
        for ex in a.executors.split(","):
            with tempfile.TemporaryDirectory() as d:
                try:
                    be = CimloopBackend(cache_path=os.path.join(d, "c.sqlite"), workers=w, timeout_s=a.timeout_s,
                                        executor=ex)
                except CimloopUnavailable as e:
                    sys.exit(f"error: CiMLoop unavailable: {e}")
                t0 = time.perf_counter()
                out = be.evaluate_records(records)
                wall = time.perf_counter() - t0
                be.close()
            st = be.last_stats
            ok = sum(1 for r in out if r["status"] == "ok")
            per = st["eval_seconds_sum"] / max(st["n_evaluated"], 1)
            rows.append((ex, w, wall, st["n_evaluated"], per))
            print(f"  executor {ex:5s} workers {w}: {st['n_evaluated']} layers ({ok} ok) in {wall:.1f} s wall = "
                  f"{st['n_evaluated'] / wall:.4f} layer evaluations/s; {per:.1f} s per layer inside a worker; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
    for ex in a.executors.split(","):
        mine = [r for r in rows if r[0] == ex]
        if len(mine) >= 2:
            (_, w1, t1, n1, _), (_, w2, t2, n2, _) = mine[0], mine[-1]
            print(f"  {ex}: {w2} vs {w1} workers: {(n2 / t2) / (n1 / t1):.2f}x the rate")
    d = {(r[0], r[1]): r for r in rows}
    for w in sorted({r[1] for r in rows}):
        if ("dask", w) in d and ("local", w) in d:
            print(f"  workers {w}: dask rate / local pool rate = "
                  f"{(d['dask', w][3] / d['dask', w][2]) / (d['local', w][3] / d['local', w][2]):.2f}")
    best = max((r for r in rows if r[0] == "dask"), key=lambda r: r[3] / r[2] / r[1], default=None)
    if best is not None:
        rate = best[3] / best[2] / best[1]
        print(f"  PROJECTION (not measured): {a.project_workers} Dask workers x {rate:.4f} layer evaluations/s per "
              f"worker (the best measured per-worker rate, perfect scaling assumed) = "
              f"{a.project_workers * rate:.2f} layer evaluations/s = {3600 * a.project_workers * rate:.0f} per hour")


if __name__ == "__main__":
    main()
