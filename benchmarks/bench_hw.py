"""Throughput of the analytic hardware model on full designs (sample genomes -> workloads ->
evaluate, one jitted function, batched). Prints designs/s per batch size on this machine.

    python benchmarks/bench_hw.py [--space=mbv2_rram] [--batch=4096,16384] [--repeats=5]

Reports wall-clock designs/s and designs per CPU-second (process time; robust when other jobs
share the machine; with 2 cores a fully parallel run gets up to 2 CPU-s per wall-s).
"""
from __future__ import annotations

import os
import time

from absl import app, flags

import jax  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("space", "mbv2_rram", "search space (mbv2_rram or resnet50_sram7nm)")
flags.DEFINE_list("batch", ["1024", "4096", "16384"], "batch sizes (designs per call)")
flags.DEFINE_integer("repeats", 5, "timed calls per batch size")


def main(argv):
    del argv
    from cimnas_jax.hw import evaluate_designs
    from cimnas_jax.space import get_space
    sp = get_space(FLAGS.space)

    for b in [int(x) for x in FLAGS.batch]:
        if b < 1:
            raise app.UsageError("--batch sizes must be >= 1")

        @jax.jit
        def step(key):
            g = sp.sample(key, b)
            r = evaluate_designs(sp, g)
            return r.energy_j, r.latency_s, r.area_mm2, r.valid

        key = jax.random.PRNGKey(0)
        jax.block_until_ready(step(key))  # compile
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(FLAGS.repeats):
            out = step(jax.random.fold_in(key, i + 1))
            jax.block_until_ready(out)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(f"{FLAGS.space}: batch {b:6d}: {FLAGS.repeats * b / dt:10.0f} designs/s wall, "
              f"{FLAGS.repeats * b / dc:10.0f} designs/CPU-s ({dt / FLAGS.repeats * 1e3:.1f} ms/call, "
              f"valid {float(out[3].mean()):.2f}, {jax.devices()[0].platform}, {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    app.run(main)
