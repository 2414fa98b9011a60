"""Engine throughput at large populations (the GPU benchmark's body; runs on CPU with small sizes).

  python benchmarks/bench_engine.py --parts=mlp,real,nsga2,profile --populations=100000,1000000

Parts (each prints one line per figure, with its unit):
- ``mlp``:  GA with the synthetic 3x400 MLP fitness (``search.fitness.mlp_fitness``, float32 and,
  with --mlp_dtypes, bfloat16), candidates/s of ours (generations in lax.scan chunks) and of the
  NAIVE PEER measured in the same run: a Python loop calling one jitted generation per step and
  reading its metrics back each generation (what a host-driven loop does), and their ratio.
- ``real``: the same with the main job's real fitness (analytic CIM model + the shipped accuracy
  surrogate, objective EDAP/accuracy, ``pipeline.fitness.fitness_for(RunConfig())``).
- ``nsga2``: NSGA-II (objective accuracy_edap, the main job's fitness) generation time in ms,
  with the sub-quadratic sort (ours) and the dense N x N sort (``pareto.*_dense``, the peer)
  where its matrices fit in --dense_memory_gb (else it says so).
- ``profile``: what a GA generation at each population spends, in ms: variation (ask), fitness,
  survival (tell: design keys, duplicate tables, top_k), measured as separately jitted pieces.

Compilation is timed separately (first call) and never counted in a rate.
"""
from __future__ import annotations

import argparse
import statistics
import time


def _timed(f, *a, repeat=3):
    import jax
    t0 = time.perf_counter()
    out = jax.block_until_ready(f(*a))
    first = time.perf_counter() - t0
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = jax.block_until_ready(f(*a))
        ts.append(time.perf_counter() - t0)
    return out, first, statistics.median(ts)


def engine_rates(search, seed, chunk, naive_gens):
    """(ours cand/s, naive cand/s, compile s): ours = one lax.scan chunk of ``chunk`` generations
    (after a compiled warm-up chunk); naive = ``naive_gens`` Python-loop generations of a jitted step."""
    import jax
    lam = search.algo.num_offspring
    st = search.init(seed)
    f = search._chunk_fn(chunk)
    t0 = time.perf_counter()
    st, _ = jax.block_until_ready(f(st))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    st, _ = jax.block_until_ready(f(st))
    ours = chunk * lam / (time.perf_counter() - t0)
    step = jax.jit(search.step)
    s2 = search.init(seed + 1)
    s2, stats = step(s2)                # compile + generation 0 (the initial population)
    jax.device_get(stats)
    s2, stats = step(s2)
    jax.device_get(stats)
    t0 = time.perf_counter()
    for _ in range(naive_gens):
        s2, stats = step(s2)
        jax.device_get(stats)           # the host reads the metrics every generation
    naive = naive_gens * lam / (time.perf_counter() - t0)
    return ours, naive, compile_s


def part_engine(name, sp, fitness_fn, objective, pops, chunk, naive_gens, out):
    from cimnas_jax.search import GA, Search
    for pop in pops:
        s = Search(GA(sp, pop), fitness_fn, objective)
        ours, naive, comp = engine_rates(s, 0, chunk, naive_gens)
        print(f"[{name}] population {pop}: ours {ours:.3e} candidates/s (lax.scan chunks of {chunk} generations); "
              f"naive peer {naive:.3e} candidates/s (Python loop of jitted generations, {naive_gens} timed); "
              f"ratio ours/naive {ours / naive:.2f}x; first chunk incl. compile {comp:.1f} s", flush=True)
        out.append({"part": name, "population": pop, "ours_cand_per_s": ours, "naive_cand_per_s": naive,
                    "compile_s": comp})


def part_nsga2(sp, fitness_fn, pops, gens, dense_gb, out, objective="accuracy_edap"):
    import jax
    from cimnas_jax.search import NSGA2, Objective, Search, pareto
    from cimnas_jax.pipeline.config import RunConfig
    from cimnas_jax.pipeline.objective import build_objective

    class DenseNSGA2(NSGA2):     # the peer: the N x N domination matrix sort and archive test
        nondominated_rank = staticmethod(pareto.nondominated_rank_dense)
        first_front = staticmethod(pareto.first_front_dense)

    obj = build_objective(RunConfig(algorithm="nsga2", objective=objective))
    assert isinstance(obj, Objective)
    for pop in pops:
        row = {"part": "nsga2", "population": pop, "objective": obj.name}
        for label, cls in (("ours", NSGA2), ("dense", DenseNSGA2)):
            pool = 2 * pop
            need_gb = 5.0 * pool * pool / 1e9     # bool matrix + its float32 copy
            if label == "dense" and need_gb > dense_gb:
                print(f"[nsga2] population {pop}: dense peer not run: its {pool} x {pool} domination matrices need "
                      f"~{need_gb:.0f} GB > --dense_memory_gb={dense_gb:g}", flush=True)
                row["dense_ms_per_generation"] = None
                continue
            s = Search(cls(sp, pop, obj.n_objectives), fitness_fn, obj)
            st = s.init(0)
            f = s._chunk_fn(gens)
            t0 = time.perf_counter()
            st, _ = jax.block_until_ready(f(st))
            comp = time.perf_counter() - t0
            t0 = time.perf_counter()
            st, _ = jax.block_until_ready(f(st))
            ms = (time.perf_counter() - t0) / gens * 1e3
            row[f"{label}_ms_per_generation"] = ms
            print(f"[nsga2] population {pop} ({obj.name}, {obj.n_objectives} objectives): {label} "
                  f"{ms:.1f} ms per generation ({gens} generations timed after a compiled chunk; compile + first "
                  f"chunk {comp:.1f} s)", flush=True)
        if row.get("dense_ms_per_generation"):
            print(f"[nsga2] population {pop}: ratio dense/ours {row['dense_ms_per_generation'] / row['ours_ms_per_generation']:.2f}x "
                  "(time per generation)", flush=True)
        out.append(row)


def part_profile(sp, fitness_fn, objective, pops, out):
    import jax
    import jax.numpy as jnp
    from cimnas_jax.search import GA, operators as ops
    for pop in pops:
        algo = GA(sp, pop)
        params = algo.default_params()
        st = algo.init(jax.random.key(0), params)
        st = st.replace(generation=jnp.ones((), jnp.int32))
        key = jax.random.key(1)
        ask = jax.jit(lambda k, s: algo.ask(k, s, params)[0])
        x, c_ask, t_ask = _timed(ask, key, st)
        fit = jax.jit(lambda g: objective(fitness_fn(g)))
        (F, v), c_fit, t_fit = _timed(fit, x)
        tell = jax.jit(lambda k, x, F, v, s: algo.tell(k, x, F, v, s, params)[0])
        _, c_tell, t_tell = _timed(tell, key, x, F, v, st)
        keyf = jax.jit(algo.design_key)
        _, _, t_key = _timed(keyf, jnp.concatenate([st.population, x]))
        pool_h = keyf(jnp.concatenate([st.population, x]))
        sk = jnp.zeros((2 * pop,), jnp.float32)
        _, _, t_dup = _timed(jax.jit(ops.duplicate_mask_by_key), pool_h, sk)
        _, _, t_topk = _timed(jax.jit(lambda k: jax.lax.top_k(k, pop)[1]), jax.random.normal(key, (2 * pop,)))
        print(f"[profile] population {pop}: ask {t_ask * 1e3:.2f} ms, fitness {t_fit * 1e3:.2f} ms, tell "
              f"{t_tell * 1e3:.2f} ms (of which design keys {t_key * 1e3:.2f} ms, duplicate tables {t_dup * 1e3:.2f} "
              f"ms, top_k {t_topk * 1e3:.2f} ms) per generation, each jitted alone", flush=True)
        out.append({"part": "profile", "population": pop, "ask_ms": t_ask * 1e3, "fitness_ms": t_fit * 1e3,
                    "tell_ms": t_tell * 1e3, "design_key_ms": t_key * 1e3, "dedup_ms": t_dup * 1e3,
                    "top_k_ms": t_topk * 1e3})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="mlp,real,nsga2,profile")
    ap.add_argument("--space", default="mbv2_rram")
    ap.add_argument("--populations", default="100000,1000000", help="GA populations (mlp, real, profile)")
    ap.add_argument("--nsga2_populations", default="10000,100000")
    ap.add_argument("--chunk", type=int, default=10, help="generations per timed lax.scan chunk")
    ap.add_argument("--naive_generations", type=int, default=5)
    ap.add_argument("--nsga2_generations", type=int, default=3)
    ap.add_argument("--nsga2_objective", default="accuracy_edap", help="2-4 terms or a preset (main job's names)")
    ap.add_argument("--mlp_dtypes", default="float32", help="comma-separated: float32, bfloat16")
    ap.add_argument("--dense_memory_gb", type=float, default=6.0,
                    help="run the dense NSGA-II peer only where its matrices fit in this many GB")
    ap.add_argument("--json_out", default="")
    a = ap.parse_args(argv)

    import jax
    from cimnas_jax.pipeline.config import RunConfig
    from cimnas_jax.pipeline.fitness import fitness_for
    from cimnas_jax.pipeline.objective import build_objective
    from cimnas_jax.search import Constraints, Objective
    from cimnas_jax.search import fitness as fit
    from cimnas_jax.space import get_space

    sp = get_space(a.space)
    pops = [int(x) for x in a.populations.split(",") if x]
    parts = a.parts.split(",")
    print(f"bench_engine: {jax.devices()[0]} ({jax.default_backend()}, {jax.device_count()} devices), space "
          f"{sp.name} ({sp.n_genes} genes), jax {jax.__version__}", flush=True)
    out = []
    energy = Objective.single("energy", Constraints(capacity=False, area_limit_mm2=None))
    if "mlp" in parts:
        for dt in a.mlp_dtypes.split(","):
            part_engine(f"mlp_3x400_{dt}", sp, fit.mlp_fitness(sp, dtype=dt), energy, pops, a.chunk,
                        a.naive_generations, out)
    if {"real", "nsga2"} & set(parts):
        cfg = RunConfig()
        real_fit, real_obj = fitness_for(cfg, sp), build_objective(cfg)
        if "real" in parts:
            part_engine("real_analytic+accuracy_surrogate", sp, real_fit, real_obj, pops, a.chunk,
                        a.naive_generations, out)
        if "nsga2" in parts:
            part_nsga2(sp, real_fit, [int(x) for x in a.nsga2_populations.split(",") if x], a.nsga2_generations,
                       a.dense_memory_gb, out, a.nsga2_objective)
    if "profile" in parts:
        part_profile(sp, fit.mlp_fitness(sp), energy, pops, out)
    if a.json_out:
        from cimnas_jax.fileio import atomic_write_json
        atomic_write_json(a.json_out, {"device": str(jax.devices()[0]), "rows": out})


if __name__ == "__main__":
    main()
