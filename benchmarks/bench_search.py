"""Search engine benchmark: cimnas-jax GA vs pymoo's GA with CIMNAS's settings, and random search.

  python benchmarks/bench_search.py                       # speed (linear + analytic) + quality
  python benchmarks/bench_search.py --parts=speed --population=1000
  python benchmarks/bench_search.py --mlp_fitness --population=100000 --parts=speed --skip_pymoo
                                                          # GPU config: 3x400 MLP fitness

Speed: candidates per second of the whole loop, per wall-clock second and per CPU second
(process time; robust when other jobs share the machine) (selection, variation, duplicate elimination,
fitness, survival) at --population, for (a) a cheap fitness (linear function of the genome)
and (b) the analytic hardware model (cimnas_jax.hw) as fitness. pymoo's GA uses CIMNAS's
settings: integer random sampling, binary tournament (feasibility first), SBX (prob .95,
eta 3) and polynomial mutation (prob .95, eta 3) on the integer index vector as reals with
rounding repair, duplicate elimination; the same jitted fitness is called once per
generation on the whole population through a vectorised Problem (padded to a fixed size so
it never recompiles). Ours: steady-state chunks of generations in lax.scan (compile time
reported separately). By default the whole process (ours and pymoo) runs on one CPU with
single-threaded Eigen (see the top of the file; --nopin_one_cpu / --noxla_single_thread).
Quality: best feasible EDAP (J*s*mm^2; capacity + 800 mm^2 area constraints) after the same
number of evaluations (population 150 x 100 generations = 15 000, CIMNAS's budget), median
over 5 seeds, for our GA, pymoo's GA and uniform random search.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

from absl import app, flags, logging


# XLA:CPU runs our small per-generation kernels faster on one thread than split over the
# 2 cores (no thread hand-offs; pymoo/numpy is single-threaded too). Must be set before
# jax is imported; --noxla_single_thread (or a preset XLA_FLAGS) leaves XLA's default.
if "--noxla_single_thread" not in sys.argv and "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"   # Eigen dots: 1 thread
# XLA:CPU still splits every loop fusion into one task per schedulable CPU (its parallel
# task assignment reads the process's CPU affinity), and on a small population the hand-offs
# and the idle worker's spinning cost more than they save (measured: 0.62-0.70 ms CPU per
# generation of 1 000 unpinned vs 0.44 ms on one CPU). So, with the single-thread setting,
# the whole process -- ours AND pymoo, which is single-threaded anyway -- runs on ONE CPU,
# the least busy one over a short /proc/stat sample. Must happen before jax starts its
# thread pools; --nopin_one_cpu (or --skip_pymoo: nothing to compare) leaves it alone.
PINNED_CPU = None
if ("--nopin_one_cpu" not in sys.argv and "--noxla_single_thread" not in sys.argv
        and "--skip_pymoo" not in sys.argv
        and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1):
    def _busy():
        out = {}
        with open("/proc/stat") as fh:
            for line in fh:
                f = line.split()
                if f[0].startswith("cpu") and f[0] != "cpu":
                    v = list(map(int, f[1:]))
                    out[int(f[0][3:])] = (sum(v) - v[3] - v[4], sum(v))
        return out
    _a = _busy()
    time.sleep(0.3)
    _b = _busy()
    _allowed = os.sched_getaffinity(0)
    _load = {c: (_b[c][0] - _a[c][0]) / max(_b[c][1] - _a[c][1], 1) for c in _b if c in _allowed}
    if _load:
        PINNED_CPU = min(_load, key=_load.get)
        os.sched_setaffinity(0, {PINNED_CPU})
# pymoo's numpy/BLAS likewise on one thread: multi-threaded BLAS spin-waits inflate its CPU
# time on a shared 2-core machine (measured: 4.5x more CPU seconds than wall seconds).
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

FLAGS = flags.FLAGS
flags.DEFINE_bool("xla_single_thread", True, "CPU: run XLA single-threaded (set before "
                  "jax is imported; see top of file)")
flags.DEFINE_bool("pin_one_cpu", True, "CPU: run the whole process (ours and pymoo) on the "
                  "least busy CPU (set before jax starts; see top of file)")
flags.DEFINE_list("parts", ["speed", "quality"], "speed and/or quality")
flags.DEFINE_string("space", "mbv2_rram", "search space")
flags.DEFINE_integer("population", 1000, "population for the speed part")
flags.DEFINE_integer("generations", 220, "our generations per speed measurement (the first "
                     "chunk, with compilation, is not timed)")
flags.DEFINE_integer("chunk", 20, "our generations per lax.scan chunk (one timing each)")
flags.DEFINE_integer("pymoo_generations", 5, "pymoo generations timed per speed measurement "
                     "(after the initial one)")
flags.DEFINE_list("speed_cases", ["linear", "analytic_hw"], "speed part: fitnesses to time")
flags.DEFINE_bool("mlp_fitness", False, "speed part: 3x400 MLP fitness instead of linear/analytic")
flags.DEFINE_bool("skip_pymoo", False, "speed part: ours only (e.g. on a GPU without pymoo)")
flags.DEFINE_integer("quality_population", 150, "quality part: population (CIMNAS: 150)")
flags.DEFINE_integer("quality_generations", 100, "quality part: generations (CIMNAS: 100)")
flags.DEFINE_integer("seeds", 5, "quality part: seeds (median reported)")
flags.DEFINE_string("json_out", "", "optional: write all numbers to this JSON file")


def _pymoo_ga(sp, fitness_fn, objective, pop, n_gen, seed):
    """pymoo GA with CIMNAS's settings on the same jitted fitness. Returns (best, evals, s)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from pymoo.algorithms.soo.nonconvex.ga import GA as PymooGA
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    ev = jax.jit(lambda g: objective(fitness_fn(g)))

    class P(Problem):
        def __init__(self):
            super().__init__(n_var=sp.n_genes, n_obj=1, n_ieq_constr=1, xl=0,
                             xu=np.asarray(sp.n_choices) - 1, vtype=int)

        def _evaluate(self, X, out, *args, **kwargs):
            n = len(X)
            Xp = np.zeros((max(pop, n), sp.n_genes), np.int32)    # fixed shape: no recompiles
            Xp[:n] = np.round(X).astype(np.int32)
            F, v = ev(jnp.asarray(Xp))
            F = np.asarray(F[:n, 0], np.float64)
            v = np.asarray(v[:n], np.float64)
            bad = ~np.isfinite(F) | ~np.isfinite(v)
            out["F"] = np.where(bad, 1e30, F)[:, None]
            out["G"] = np.where(bad, 1e30, v)[:, None]

    algo = PymooGA(pop_size=pop, sampling=IntegerRandomSampling(),
                   crossover=SBX(prob=0.95, eta=3, vtype=float, repair=RoundingRepair()),
                   mutation=PM(prob=0.95, eta=3, vtype=float, repair=RoundingRepair()),
                   eliminate_duplicates=True)
    prob = P()
    prob.evaluate(np.zeros((pop, sp.n_genes)))       # compile outside the timing
    t0, c0 = time.perf_counter(), time.process_time()
    res = minimize(prob, algo, ("n_gen", n_gen), seed=seed, verbose=False)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    best = float(res.F[0]) if res.F is not None and res.CV is not None and res.CV[0] <= 0 \
        else float("inf")
    return best, int(res.algorithm.evaluator.n_eval), dt, dc


def _ours(sp, fitness_fn, objective, pop, generations, chunk, seed):
    """Our GA. Returns (best, evals, per-chunk wall s list, per-chunk CPU s list,
    compile + first chunk s, evals per chunk)."""
    import jax
    from cimnas_jax.search import GA, Search
    s = Search(GA(sp, pop), fitness_fn, objective)
    st = s.init(seed)
    f = s._chunk_fn(chunk)
    t0 = time.perf_counter()
    st, _ = jax.block_until_ready(f(st))
    first = time.perf_counter() - t0
    walls, cpus = [], []
    done = chunk
    while done < generations:
        t0, c0 = time.perf_counter(), time.process_time()
        st, _ = jax.block_until_ready(f(st))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        done += chunk
    a = jax.device_get(st.algo)
    best = float(a.fitness[0]) if a.violation[0] == 0 else float("inf")
    return best, done * s.algo.num_offspring, walls, cpus, first, chunk * s.algo.num_offspring


def _random_search(sp, fitness_fn, objective, n, seed, batch=1500):
    import jax
    import numpy as np
    ev = jax.jit(lambda k: objective(fitness_fn(sp.sample(k, batch))))
    best = np.inf
    key = jax.random.key(seed)
    for i in range(n // batch):
        F, v = ev(jax.random.fold_in(key, i))
        F, v = np.asarray(F[:, 0]), np.asarray(v)
        ok = (v == 0) & np.isfinite(F)
        if ok.any():
            best = min(best, float(F[ok].min()))
    return best


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    import jax
    from cimnas_jax.space import get_space
    from cimnas_jax.search import Constraints, Objective
    from cimnas_jax.search import fitness as fit

    sp = get_space(FLAGS.space)
    out = {"device": str(jax.devices()[0]), "backend": jax.default_backend(),
           "population": FLAGS.population, "xla_flags": os.environ.get("XLA_FLAGS", "")}
    out["pinned_cpu"] = PINNED_CPU
    print(f"device {out['device']} ({jax.default_backend()}, {jax.local_device_count()} devices)"
          f"  XLA_FLAGS={out['xla_flags']!r}  process pinned to CPU: {PINNED_CPU}")
    edap = Objective.single("edap", Constraints(capacity=True, area_limit_mm2=800.0))
    energy = Objective.single("energy", Constraints(capacity=False, area_limit_mm2=None))
    pop = FLAGS.population
    if "speed" in FLAGS.parts:
        if FLAGS.mlp_fitness:
            cases = [("mlp_3x400", fit.mlp_fitness(sp), energy)]
        else:
            cases = []
            if "linear" in FLAGS.speed_cases:
                cases.append(("linear", fit.linear_fitness(sp), energy))
            if "analytic_hw" in FLAGS.speed_cases:
                cases.append(("analytic_hw", fit.hardware_fitness(
                    sp, fit.constant_accuracy_hardware_only()), edap))
        for name, fn, obj in cases:
            _, _, walls, cpus, first, per = _ours(sp, fn, obj, pop, FLAGS.generations,
                                                  FLAGS.chunk, 0)
            ours_w = per / statistics.median(walls)
            ours_c = per / statistics.median(cpus)
            row = {"ours_cand_per_s_wall": ours_w, "ours_cand_per_cpu_s": ours_c,
                   "ours_first_chunk_incl_compile_s": first}
            line = (f"[speed {name:11s}] pop {pop}: ours {ours_w:.3e} cand/s wall, "
                    f"{ours_c:.3e} per CPU-s (median of {len(walls)} chunks of {per} evals; "
                    f"first chunk incl. compile {first:.1f} s)")
            if not FLAGS.skip_pymoo:
                # steady state, like ours (whose first chunk, with the initial population and
                # compilation, is not timed): (time of 1 + k generations) - (time of the
                # initial generation alone), same seed, best of 2 pairs
                k = FLAGS.pymoo_generations
                rates_w, rates_c = [], []
                for r in range(2):
                    _, e1, w1, c1 = _pymoo_ga(sp, fn, obj, pop, 1, r)
                    _, ek, wk, ck = _pymoo_ga(sp, fn, obj, pop, 1 + k, r)
                    rates_w.append((ek - e1) / (wk - w1))
                    rates_c.append((ek - e1) / (ck - c1))
                theirs_w, theirs_c = max(rates_w), max(rates_c)
                row.update(pymoo_cand_per_s_wall=theirs_w, pymoo_cand_per_cpu_s=theirs_c,
                           ratio_wall=ours_w / theirs_w, ratio_cpu=ours_c / theirs_c)
                line += (f"\n    pymoo GA {theirs_w:.3e} cand/s wall, {theirs_c:.3e} per CPU-s "
                         f"(steady state over {k} generations, best of 2)\n    RATIO ours/pymoo: "
                         f"{ours_w / theirs_w:.1f}x wall-clock, {ours_c / theirs_c:.1f}x CPU-time")
            out[f"speed_{name}"] = row
            print(line, flush=True)
    if "quality" in FLAGS.parts:
        hw = fit.hardware_fitness(sp, fit.constant_accuracy_hardware_only())
        qp, qg = FLAGS.quality_population, FLAGS.quality_generations
        res = {"ours": [], "pymoo": [], "random": [], "ours_evals": [], "pymoo_evals": []}
        for seed in range(1, FLAGS.seeds + 1):
            b, ev, *_ = _ours(sp, hw, edap, qp, qg, qg // 4 if qg % 4 == 0 else qg, seed)
            pb, pev, _, _ = _pymoo_ga(sp, hw, edap, qp, qg, seed)
            rb = _random_search(sp, hw, edap, qp * qg, seed)
            res["ours"].append(b); res["pymoo"].append(pb); res["random"].append(rb)
            res["ours_evals"].append(ev); res["pymoo_evals"].append(pev)
            print(f"[quality seed {seed}] best feasible EDAP (J*s*mm^2) after {ev} evals: "
                  f"ours {b:.4e}  pymoo GA {pb:.4e} ({pev} evals)  random {rb:.4e}", flush=True)
        med = {k: statistics.median(res[k]) for k in ("ours", "pymoo", "random")}
        res["median"] = med
        out["quality"] = res
        print(f"[quality median of {FLAGS.seeds}] ours {med['ours']:.4e}  pymoo GA "
              f"{med['pymoo']:.4e}  random {med['random']:.4e}   pymoo/ours "
              f"{med['pymoo'] / med['ours']:.2f}x  random/ours {med['random'] / med['ours']:.2f}x")
    if FLAGS.json_out:
        from cimnas_jax.fileio import atomic_write_json
        atomic_write_json(FLAGS.json_out, out)


if __name__ == "__main__":
    app.run(main)
