"""Stage 2, refine: gradient refinement of the finalists by ``cimnas_jax.relax`` (Gumbel-softmax
relaxation through the analytic model / the Flax surrogates), judged by the search's own fitness.

Off by default (``--refine_steps=0``): the finalists pass through unchanged, recorded as such.
With ``--refine_steps=N``:

* starts: the search's found finalists, best first, at most ``--refine_candidates`` of them;
  ``relax.refine`` runs K = ``--refine_candidates`` candidates at once from logits peaked on the
  starts (cycled when there are fewer starts than K: extra candidates are independent Gumbel
  chains from the same start), N Adam steps at ``--refine_lr``, temperature
  ``--refine_tau_start`` -> ``--refine_tau_end`` (exponential), Gumbel noise from ``--seed``;
* genes frozen by ``--freeze`` get the reference design's one-hot in the relaxed fitness (no
  gradient) and are set back to the reference values in every discretised design;
* every start and every candidate's best design (canonicalised) is re-scored here with the
  search's fitness and objective in one batch; per start, the best of its candidates replaces it
  only if strictly better (finite, lower violation, then lower objective) and not a copy of
  another finalist; a replacement is a ``Candidate`` with ``origin="refine"`` named
  ``refined_<j>`` (j of the ``found_<j>`` it replaces) whose provenance holds
  ``source="refine"``, the start's name, hash, genome and exact objective, and the cost.

The summary (``results.json["refinement"]``) records, per candidate, the start and refined exact
objective, exact evaluations, gradient steps and seconds (the K candidates run as one batch:
per-candidate seconds are the batch's wall time / K), and per finalist the gain.
"""
from __future__ import annotations

import functools
import time
from types import SimpleNamespace

import numpy as np

from cimnas_jax.pipeline.results import Candidate, Finalists


def _relax_sources():
    from cimnas_jax.relax.fitness import ACCURACY_SOURCES, HW_SOURCES
    return HW_SOURCES, ACCURACY_SOURCES


def check_inputs(cfg, space) -> None:
    """Fail before the search when refinement is asked for but cannot run (ConfigError naming
    the flag): a multi-objective search, a source the relaxation has no twin of."""
    from cimnas_jax.pipeline.config import ConfigError
    if cfg.refine_steps == 0:
        return
    flag = f"--refine_steps={cfg.refine_steps}"
    try:
        hw_sources, acc_sources = _relax_sources()
    except ImportError:
        raise ConfigError(f"{flag}: gradient refinement (cimnas_jax.relax) is not available in this "
                          "version; use --refine_steps=0") from None
    from cimnas_jax.pipeline.objective import build_objective
    objective = build_objective(cfg)
    if objective.kind == "multi":
        raise ConfigError(f"{flag}: gradient refinement follows one scalar objective, but --algorithm="
                          f"{cfg.algorithm} minimises {objective.n_objectives} ({objective.name}); use "
                          "--refine_steps=0 or a single-objective algorithm (ga, random)")
    if cfg.hw_source not in hw_sources:
        raise ConfigError(f"{flag}: --hw_source={cfg.hw_source!r} has no relaxed counterpart; refinement "
                          f"allows {', '.join(hw_sources)}")
    if cfg.accuracy_source not in acc_sources:
        raise ConfigError(f"{flag}: --accuracy_source={cfg.accuracy_source!r} has no relaxed counterpart; "
                          f"refinement allows {', '.join(acc_sources)}")


def refine_config(cfg):
    """The ``relax.RefineConfig`` of a run configuration."""
    from cimnas_jax.relax import RefineConfig
    return RefineConfig(steps=cfg.refine_steps, candidates=cfg.refine_candidates, lr=cfg.refine_lr,
                        tau_start=cfg.refine_tau_start, tau_end=cfg.refine_tau_end)


@functools.lru_cache(maxsize=8)
def _soft_fitness(space, hw_source: str, accuracy_source: str, surrogate_dir: str, technology: str):
    """``relax.make_soft_fitness`` for these sources, one object per setting in a process, so
    that a rerun reuses relax's compiled gradient steps (they are cached by function identity)."""
    from cimnas_jax.pipeline.fitness import load_surrogate_for
    from cimnas_jax.relax import make_soft_fitness
    src = SimpleNamespace(hw_source=hw_source, accuracy_source=accuracy_source, surrogate_dir=surrogate_dir,
                          technology=technology)
    return make_soft_fitness(space, hw_source, accuracy_source, load_surrogate_for(src, space),
                             technology=technology or None)


def _frozen(cfg, space):
    """(mask bool [G], values int32 [G]) of the genes --freeze holds, or (None, None)."""
    if not cfg.freeze:
        return None, None
    from cimnas_jax.search import freeze_mask
    return np.asarray(freeze_mask(space, cfg.freeze), bool), np.asarray(space.reference_genome(), np.int32)


def _with_frozen(space, fitness, soft, mask, values):
    """The exact and relaxed fitness with the frozen genes held at ``values``."""
    if mask is None:
        return fitness, soft
    import jax.numpy as jnp
    m, v = jnp.asarray(mask), jnp.asarray(values)

    def exact(g):
        return fitness(jnp.where(m, v, g).astype(jnp.int32))
    return exact, _frozen_soft(space, soft, tuple(bool(x) for x in mask), tuple(int(x) for x in values))


@functools.lru_cache(maxsize=8)
def _frozen_soft(space, soft, mask: tuple, values: tuple):
    """``soft`` with the genes of ``mask`` given the one-hot of ``values`` (no gradient); one
    object per setting, so that a rerun reuses the compiled gradient steps."""
    import jax
    import jax.numpy as jnp
    m = jnp.asarray(np.asarray(mask, bool))
    hot = jax.nn.one_hot(jnp.asarray(np.asarray(values, np.int32)), space.value_table.shape[1], dtype=jnp.float32)

    def relaxed(p):
        return soft(jnp.where(m[:, None], hot, p))
    return relaxed


def _off(note: str) -> dict:
    return {"enabled": False, "note": note}


def refine(cfg, ctx, space, finalists: Finalists, fitness, objective) -> tuple[Finalists, dict]:
    """(refined finalists, a summary for results.json). A recorded copy when refinement is off
    or there is nothing to refine."""
    if cfg.refine_steps == 0:
        return finalists, _off("refinement off (--refine_steps=0): finalists unchanged")
    found = [c for c in finalists.candidates if c.origin != "reference"]
    if not found:
        return finalists, _off("no found finalist to refine (the search found no feasible design)")
    import jax

    from cimnas_jax import relax
    from cimnas_jax.pipeline.fitness import evaluate_padded

    t0 = time.perf_counter()
    rcfg = refine_config(cfg)
    K = rcfg.candidates
    starts_c = found[:K]
    n = len(starts_c)
    mask, values = _frozen(cfg, space)

    def project(g):
        g = np.asarray(g, np.int32)
        if mask is not None:
            g = np.where(mask, values, g)
        return np.asarray(space.canonicalise(g), np.int32)

    starts = project([c.genome for c in starts_c])
    soft = _soft_fitness(space, cfg.hw_source, cfg.accuracy_source, cfg.surrogate_dir, cfg.technology)
    exact_fn, soft_fn = _with_frozen(space, fitness, soft, mask, values)
    ctx.log(f"  refining {n} finalist(s) as {K} candidates: {rcfg.steps} Adam steps, lr {rcfg.lr:g}, tau "
            f"{rcfg.tau_start:g} -> {rcfg.tau_end:g}; relaxed {cfg.hw_source} hardware, {cfg.accuracy_source} "
            f"accuracy; judged by the search's fitness ({objective.name})")
    res = relax.refine(space, exact_fn, soft_fn, objective, starts, rcfg, jax.random.key(cfg.seed),
                       log=lambda line: ctx.log("    " + line))
    # the authoritative exact scores: starts and every candidate's best design, one batch
    reached = project(res.refined_genomes)
    F, v = evaluate_padded(lambda g: objective(fitness(g)), np.concatenate([starts, reached]))
    F, v = np.asarray(F, np.float64)[:, 0], np.asarray(v, np.float64)
    sF, sv, rF, rv = F[:n], v[:n], F[n:], v[n:]
    own = 1          # exact evaluations of this stage's re-scoring, per candidate (its reached design)
    per_cand_evals = res.summary(space)["candidates_detail"][0]["exact_evaluations"] + own
    total_evals = res.exact_evaluations + n + K
    wall = time.perf_counter() - t0
    per_cand_s = wall / K
    reached_h = space.hash_hex(reached)
    start_h = [c.hash for c in starts_c]
    fin = lambda x: float(x) if np.isfinite(x) else None
    cand_rows = []
    for k in range(K):
        j = k % n
        better_k = bool(relax.better(rv[k], rF[k], sv[j], sF[j]))
        cand_rows.append(dict(candidate=k, start_design=starts_c[j].name, start_hash=start_h[j],
                              start_objective=fin(sF[j]), start_violation=fin(sv[j]),
                              refined_hash=reached_h[k], refined_genome=[int(x) for x in reached[k]],
                              refined_objective=fin(rF[k]), refined_violation=fin(rv[k]),
                              better_than_start=better_k, refined_at_step=int(res.refined_step[k]),
                              refined_from_sample=bool(res.refined_from_sample[k]),
                              gradient_steps=int(res.gradient_steps), exact_evaluations=int(per_cand_evals),
                              seconds=per_cand_s))
    # per start: its best candidate, accepted only if strictly better and not a copy
    taken = {c.hash for c in finalists.candidates}
    replace, fin_rows = {}, []
    for j, c in enumerate(starts_c):
        ks = [k for k in range(K) if k % n == j]
        best = ks[0]
        for k in ks[1:]:
            if relax.better(rv[k], rF[k], rv[best], rF[best]):
                best = k
        ok = bool(relax.better(rv[best], rF[best], sv[j], sF[j]))
        note = "refined design strictly better exactly" if ok else "no candidate better than the start exactly"
        if ok and reached_h[best] in taken:
            ok, note = False, "refined design is a copy of another finalist: start kept"
        row = dict(design=c.name, start_hash=c.hash, start_objective=fin(sF[j]), candidates=ks,
                   best_candidate=best, refined_hash=reached_h[best], refined_objective=fin(rF[best]),
                   improved=ok, note=note)
        if ok:
            taken.add(reached_h[best])
            name = "refined_" + c.name.split("_", 1)[-1] if c.name.startswith("found_") else f"refined_{j + 1}"
            prov = dict(source="refine", start_design=c.name, start_hash=c.hash, start_genome=list(c.genome),
                        start_objective=fin(sF[j]), start_violation=fin(sv[j]), start_provenance=c.provenance,
                        refined_objective=fin(rF[best]), candidate=best, refined_at_step=int(res.refined_step[best]),
                        refined_from_sample=bool(res.refined_from_sample[best]),
                        gradient_steps=int(res.gradient_steps), exact_evaluations=int(per_cand_evals) * len(ks),
                        objective=objective.name, seed=cfg.seed)
            replace[c.name] = Candidate(name=name, genome=[int(x) for x in reached[best]], hash=reached_h[best],
                                        origin="refine", search_objective=[float(rF[best])],
                                        search_violation=float(rv[best]), provenance=prov)
            row.update(chosen_design=name, chosen_objective=fin(rF[best]))
        else:
            row.update(chosen_design=c.name, chosen_objective=fin(sF[j]))
        row["gain_x"] = (row["start_objective"] / row["chosen_objective"]
                         if row["start_objective"] and row["chosen_objective"] else None)
        fin_rows.append(row)
    out = Finalists(candidates=[replace.get(c.name, c) for c in finalists.candidates], rule=finalists.rule,
                    note=finalists.note)
    improved = sum(r["improved"] for r in fin_rows)
    wall = time.perf_counter() - t0
    timing = dict(res.timing_s)
    summary = dict(
        enabled=True, objective=objective.name, space=space.name, hw_source=cfg.hw_source,
        accuracy_source=cfg.accuracy_source, relaxed_fitness=getattr(soft, "__name__", "soft fitness"),
        config=rcfg.to_dict(), seed=cfg.seed, frozen=cfg.freeze, starts=n, candidates=K,
        gradient_steps=int(res.gradient_steps), exact_evaluations=int(total_evals),
        skipped_updates=int(res.skipped_updates), seconds=wall, relax_timing_s=timing,
        candidate_steps_per_second=(K * res.gradient_steps / timing["wall_s"]) if timing.get("wall_s") else None,
        improved=int(improved), refined_finalists=len(fin_rows), history=res.history,
        per_finalist=fin_rows, per_candidate=cand_rows,
        note=("exact objective = the search's own fitness and objective; a refined design replaces its start "
              "only if strictly better (finite, lower violation, then lower objective); per-candidate seconds = "
              "the stage's wall time / candidates (they run as one batch)"))
    ctx.log(f"  refine: {improved}/{n} finalist(s) improved; {total_evals} exact evaluations, "
            f"{res.gradient_steps} steps x {K} candidates in {wall:.1f} s")
    return out, summary
