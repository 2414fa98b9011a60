"""Surrogate throughput on CPU: designs scored per second for population batches.

Loads a trained set (default: the shipped one for --space) and times ``jax.jit(predict)`` on
random populations after a warm-up call; for reference also times the analytic hardware model
(``cimnas_jax.hw.evaluate_designs``) on the same batch.

  nice python benchmarks/bench_surrogate.py --space=mbv2_rram --sizes=1000,10000,100000
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from absl import app, flags


FLAGS = flags.FLAGS
flags.DEFINE_string("space", "mbv2_rram", "search space")
flags.DEFINE_string("set", None, "surrogate set directory (default: the shipped set of --space)")
flags.DEFINE_string("sizes", "1000,10000,100000", "population sizes")
flags.DEFINE_integer("chunk", 8192, "designs per chunk inside predict")
flags.DEFINE_integer("repeats", 3, "timed calls per size (best is reported)")
flags.DEFINE_bool("analytic", True, "also time the analytic hardware model")
flags.DEFINE_string("json_out", None, "write results here as JSON")


def _time(f, *a, repeats=3):
    import jax
    jax.block_until_ready(f(*a))                      # compile + warm up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*a))
        best = min(best, time.perf_counter() - t)
    return best


def main(argv):
    del argv
    import jax
    from cimnas_jax.space import get_space
    from cimnas_jax.surrogate import load_surrogates, predict
    try:
        sizes = [int(x) for x in FLAGS.sizes.split(",")]
    except ValueError:
        raise app.UsageError(f"--sizes must be comma-separated integers, got {FLAGS.sizes!r}")
    sp = get_space(FLAGS.space)
    s = load_surrogates(FLAGS.space, FLAGS.set)
    f = jax.jit(lambda ss, g: predict(ss, g, FLAGS.chunk))
    rows = []
    for n in sizes:
        g = sp.sample(jax.random.PRNGKey(n), n)
        t = _time(f, s.sset, g, repeats=FLAGS.repeats)
        row = {"population": n, "surrogate_s": round(t, 4), "surrogate_designs_per_s": round(n / t)}
        if FLAGS.analytic:
            from cimnas_jax.hw import evaluate_designs
            h = jax.jit(lambda x: evaluate_designs(sp, x).energy_j)
            ta = _time(h, g, repeats=FLAGS.repeats)
            row.update({"analytic_s": round(ta, 4), "analytic_designs_per_s": round(n / ta)})
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {"space": FLAGS.space, "variant": s.manifest.get("train", {}).get("variant"),
           "members": s.sset.hw.n_members, "hidden": list(s.sset.hw.hidden), "has_accuracy": s.has_accuracy,
           "devices": [str(d) for d in jax.devices()], "rows": rows}
    if FLAGS.json_out:
        Path(FLAGS.json_out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    app.run(main)
