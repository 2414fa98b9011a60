"""Stage 1, search: run the configured algorithm on the configured fitness, checkpointed, and pick
the finalists (plus the space's reference design) for the next stages."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from cimnas_jax.pipeline.fitness import evaluate_padded
from cimnas_jax.pipeline.results import Candidate, Finalists, SearchResult

FINALIST_RULES = ("distinct_hardware", "distinct_designs")


def build_search(cfg, space, fitness, objective):
    """The ``Search`` object of a configuration (the algorithm looked up by name)."""
    from cimnas_jax.search import Frozen, Search, freeze_mask, make_algorithm
    algo = make_algorithm(cfg.algorithm, space, cfg.population, objective.n_objectives,
                          num_offspring=cfg.offspring or None, crossover=cfg.crossover,
                          mutation=cfg.mutation, archive_size=cfg.archive_size)
    params = algo.default_params()
    over = {"crossover_prob": cfg.crossover_prob}
    if cfg.mutation_rate > 0:
        over["mutation_rate"] = cfg.mutation_rate
    params = params.replace(**{k: v for k, v in over.items() if hasattr(params, k)})
    if cfg.freeze:
        algo = Frozen(algo, freeze_mask(space, cfg.freeze), space.reference_genome())
        params = algo.wrap_params(params)
    ident = dict(space=space.name, technology=cfg.technology or space.technology, hw_source=cfg.hw_source,
                 accuracy_source=cfg.accuracy_source, area_limit_mm2=cfg.area_limit_mm2,
                 accuracy_floor=cfg.accuracy_floor, capacity=cfg.capacity, crossover=cfg.crossover,
                 mutation=cfg.mutation, freeze=cfg.freeze)
    return Search(algo, fitness, objective, params, rng_impl=cfg.rng_impl, config=ident)


def run_search(cfg, ctx, space, fitness, objective):
    """Run (or resume) the search into ``ctx.out_dir/checkpoints``; returns (SearchResult, state,
    Search)."""
    search = build_search(cfg, space, fitness, objective)
    lam = search.algo.num_offspring
    stamps = []   # (wall time, generation) at each chunk's end; the steady rate skips the first chunk

    def log(line):
        if line.startswith("gen"):
            stamps.append((time.perf_counter(), int(line.split()[1])))
        ctx.log("  " + line)
    t0 = time.perf_counter()
    state, history = search.run(cfg.seed, cfg.generations, cfg.chunk,
                                checkpoint_dir=str(ctx.out_dir / "checkpoints"), resume=ctx.resume, log=log)
    seconds = time.perf_counter() - t0
    if search.multiprocess:     # every process takes part; from here on all stages run locally on process 0
        state = search.host_state(state)
    steady = None
    if len(stamps) >= 2 and stamps[-1][0] > stamps[0][0]:
        steady = (stamps[-1][1] - stamps[0][1]) * lam / (stamps[-1][0] - stamps[0][0])
    evaluations = int(cfg.generations * lam)
    hv = search.hypervolume(state) if search.multi else None
    res = SearchResult(algorithm=cfg.algorithm, objective=objective.name, objective_terms=list(objective.names),
                       evaluations=evaluations, seconds=seconds, candidates_per_second=evaluations / seconds,
                       steady_candidates_per_second=steady, device=jax.default_backend(), history=history,
                       hypervolume_normalised=hv, resumed=bool(ctx.resume))
    return res, state, search


def select_finalists(space, genomes, violation, objective, k: int, metrics=None,
                     rule: str = "distinct_designs") -> np.ndarray:
    """Canonical genomes (int32 [k', G]) of the designs ``finalist_indices`` picks."""
    idx = finalist_indices(space, genomes, violation, objective, k, metrics, rule)
    return np.asarray(space.canonicalise(np.asarray(genomes)[idx]), np.int32).reshape(-1, space.n_genes)


def finalist_indices(space, genomes, violation, objective, k: int, metrics=None,
                     rule: str = "distinct_hardware") -> np.ndarray:
    """Row indices of up to ``k`` best feasible designs, best first (by violation, then first
    objective), one per canonical design.

    rule "distinct_designs": any distinct canonical designs. "distinct_hardware": at most one per
    hardware configuration first (so the finalists are different chips, not one chip with bits
    that change nothing), then, if fewer than k, other designs whose metrics (``metrics``: dict of
    [P] arrays) differ by more than 0.1 % from every one already chosen."""
    if rule not in FINALIST_RULES:
        raise ValueError(f"finalist rule {rule!r}; allowed {FINALIST_RULES}")
    pop = np.asarray(space.canonicalise(genomes))
    if len(pop) == 0:                   # no final design at all (every one failed to evaluate)
        return np.zeros(0, np.int64)
    obj = np.asarray(objective, np.float64).reshape(len(pop), -1)[:, 0]
    viol = np.asarray(violation, np.float64)
    ok = np.isfinite(viol) & (viol == 0) & np.isfinite(obj)
    order = [i for i in np.lexsort((obj, viol)) if ok[i]]
    seen, chosen = set(), []
    for i in order:                     # distinct canonical designs
        key = pop[i].tobytes()
        if key not in seen:
            seen.add(key)
            chosen.append(i)
    if rule == "distinct_designs":
        return np.asarray(chosen[:k], np.int64)
    hw = np.array([g.group.startswith("hardware") for g in space.genes])
    out, chips = [], set()
    for i in chosen:
        chip = pop[i, hw].tobytes()
        if chip not in chips:
            chips.add(chip)
            out.append(i)
    if len(out) < k and metrics is not None:
        keys = [m for m in ("energy_j", "latency_s", "area_mm2", "accuracy") if m in metrics]
        M = np.stack([np.asarray(metrics[m], np.float64) for m in keys], -1) if keys else None

        def differs(i):
            return all(np.any(np.abs(M[i] / M[j] - 1) > 1e-3) for j in out)
        for i in chosen:
            if len(out) >= k:
                break
            if i not in out and M is not None and differs(i):
                out.append(i)
    out = sorted(out, key=lambda i: chosen.index(i))
    return np.asarray(out[:k], np.int64)


def finalists_from_search(cfg, space, search, state, fitness, objective) -> Finalists:
    """The reference design plus up to cfg.finalists chosen designs, scored exactly."""
    d = search.final_designs(state)
    mask = np.asarray(d.mask)
    genomes = np.asarray(d.genomes)[mask]
    F, v = np.asarray(d.objectives)[mask], np.asarray(d.violation)[mask]     # as the search scored them
    m = evaluate_padded(fitness, genomes) if len(genomes) else None
    rule = cfg.finalist_rule
    idx = finalist_indices(space, genomes, v, F, cfg.finalists, m, rule)
    base = space.reference_genome()
    # the fitness at the padded batch size the finalists' scoring compiled (a lambda would compile it again)
    bF, bv = objective(jax.tree_util.tree_map(jnp.asarray, evaluate_padded(fitness, base[None])))
    bF, bv = np.asarray(bF), np.asarray(bv)
    cands = [Candidate(name="baseline", genome=[int(x) for x in base], hash=space.hash_hex(base[None])[0],
                       origin="reference", search_objective=[float(x) for x in bF[0]],
                       search_violation=float(bv[0]), provenance={"doc": space.reference_doc})]
    canon = np.asarray(space.canonicalise(genomes[idx])) if len(idx) else np.zeros((0, space.n_genes), np.int32)
    hashes = space.hash_hex(canon) if len(idx) else []
    for j, i in enumerate(idx):
        cands.append(Candidate(name=f"found_{j + 1}", genome=[int(x) for x in canon[j]], hash=hashes[j],
                               origin="search", search_objective=[float(x) for x in F[i]],
                               search_violation=float(v[i]),
                               provenance={"algorithm": cfg.algorithm, "rank_in_final_designs": int(i)}))
    note = "" if len(idx) else ("no feasible design found: every candidate broke a constraint or failed to "
                                "evaluate")
    return Finalists(candidates=cands, rule=rule, note=note)
