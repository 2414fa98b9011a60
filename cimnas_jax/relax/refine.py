"""Gradient refinement of genomes by Gumbel-softmax relaxation, judged by the exact fitness.

    result = refine(space, exact_fitness, soft_fitness, objective, start_genomes, config, key)

K candidates (``config.candidates``) each hold per-gene logits ``[G, W]``: peaked on a start
genome (``config.init_peak`` at its choices; starts are taken in order, cycled if fewer than K)
or, with ``start_genomes=None``, uniform (pure differentiable NAS from scratch, as FBNet).
Every gradient step draws ``config.samples`` Gumbel-softmax samples per candidate (straight-
through hard samples by default: the model sees real designs, the gradient is the relaxed
one) at temperature ``tau`` from an optax schedule, evaluates ``soft_fitness`` on them and
takes an optax Adam step on ``log objective + penalty x violation`` (``relax.loss``).

Every ``config.eval_every`` steps (and after the last) each candidate's logits are discretised
(argmax, canonicalised) and scored with ``exact_fitness`` and the Objective -- the same
genome-level fitness the search uses; each candidate keeps the best design it reached (feasible
first, then lower violation, then lower objective). With hard samples every step's forward pass
evaluates real designs (the soft fitness equals the exact one at a one-hot), so each candidate
also tracks the best sample it drew; after the last step those are re-scored with
``exact_fitness`` (K more evaluations) and compete on their exact scores. At the end a candidate's design replaces its
start only if it is strictly better by that order; the start's own exact score is measured once
at the beginning. A candidate step whose loss or gradient is not finite (a NaN from a surrogate
or the model) leaves its logits' gradient at zero, and a design whose exact metrics are not
finite scores +inf (``Objective``) and so never replaces anything.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cimnas_jax.relax import logits as LG
from cimnas_jax.relax.loss import check_objective, relaxed_loss

TAU_SCHEDULES = ("exponential", "linear", "constant")


@dataclasses.dataclass(frozen=True)
class RefineConfig:
    """Settings of one refinement.

    steps: gradient steps (0 = only score the starts); candidates: K designs refined at once;
    lr: Adam learning rate on the logits; tau_start / tau_end: Gumbel-softmax temperature at
    the first / last step, on ``tau_schedule`` (exponential | linear | constant = tau_start);
    hard: straight-through one-hot samples (True) or relaxed samples (False); samples: Gumbel
    samples per candidate and step (the loss is their mean); init_peak: start logit of each
    start's choice (others 0); penalty: weight of the relative constraint violation in the loss;
    eval_every: gradient steps between exact scorings of the discretised candidates.
    """

    steps: int = 100
    candidates: int = 16
    lr: float = 0.1
    tau_start: float = 1.0
    tau_end: float = 0.2
    tau_schedule: str = "exponential"
    hard: bool = True
    samples: int = 1
    init_peak: float = 3.0
    penalty: float = 10.0
    eval_every: int = 10

    def __post_init__(self):
        def bad(field, rule):
            raise ValueError(f"RefineConfig.{field}={getattr(self, field)!r}: {rule}")
        for f, lo in (("steps", 0), ("candidates", 1), ("samples", 1), ("eval_every", 1)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                bad(f, f"must be an integer >= {lo}")
        for f in ("lr", "tau_start", "tau_end"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                bad(f, "must be a finite number > 0")
        for f in ("init_peak", "penalty"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                bad(f, "must be a finite number >= 0")
        if self.tau_schedule not in TAU_SCHEDULES:
            bad("tau_schedule", f"allowed: {', '.join(TAU_SCHEDULES)}")

    def temperatures(self) -> np.ndarray:
        """float32 ``[steps]``: tau at each step, from the optax schedule."""
        n = max(self.steps - 1, 1)
        if self.tau_schedule == "exponential":
            sched = optax.exponential_decay(self.tau_start, n, self.tau_end / self.tau_start)
        elif self.tau_schedule == "linear":
            sched = optax.linear_schedule(self.tau_start, self.tau_end, n)
        else:
            sched = optax.constant_schedule(self.tau_start)
        return np.asarray(sched(jnp.arange(self.steps)), np.float32)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RefineResult:
    """Outcome per candidate (numpy arrays, leading axis K) and the run's bookkeeping.

    genomes / objective / violation: the chosen design (refined if accepted, else the start);
    accepted: the refined design was strictly better exactly; start_* / refined_*: both designs
    and their exact scores (start_* None for a uniform start); refined_step: the gradient step
    at whose check the refined design was found (-1: none finite; ``steps`` for a drawn sample,
    re-scored after the last step); refined_from_sample: it is a drawn Gumbel sample rather than
    a discretised candidate; exact_evaluations: exact fitness evaluations used in all (K per
    check, K for the starts, K for re-scoring the best drawn samples); gradient_steps: steps
    taken (each on K candidates x samples); skipped_updates: candidate-steps whose loss or
    gradient was not finite; history: one row per check; timing_s: wall-clock seconds.
    """

    space_name: str
    objective_name: str
    config: RefineConfig
    genomes: np.ndarray
    objective: np.ndarray
    violation: np.ndarray
    accepted: np.ndarray
    start_genomes: Optional[np.ndarray]
    start_objective: Optional[np.ndarray]
    start_violation: Optional[np.ndarray]
    refined_genomes: np.ndarray
    refined_objective: np.ndarray
    refined_violation: np.ndarray
    refined_step: np.ndarray
    refined_from_sample: np.ndarray
    exact_evaluations: int
    gradient_steps: int
    skipped_updates: int
    history: list
    timing_s: dict

    def order(self) -> np.ndarray:
        """Candidate indices, best chosen design first (feasible, violation, objective)."""
        return np.lexsort((self.objective, self.violation))

    def summary(self, space) -> dict:
        """JSON-serialisable record: configuration, totals, timing and per-candidate provenance
        (non-finite scores written as null)."""
        f = lambda x: float(x) if np.isfinite(x) else None
        hx = lambda g: space.hash_hex(g) if g is not None else None
        start_h, ref_h, chosen_h = hx(self.start_genomes), hx(self.refined_genomes), hx(self.genomes)
        n_checks = len(self.history)
        per = n_checks + (self.start_genomes is not None) + (bool(self.config.hard) and self.gradient_steps > 0)
        rows = []
        for k in range(len(self.genomes)):
            finite = np.isfinite(self.objective[k]) and np.isfinite(self.violation[k])
            status = ("refined" if self.accepted[k] else "kept_start") if finite else "failed"
            row = dict(candidate=k, status=status, accepted=bool(self.accepted[k]),
                       hash=chosen_h[k], objective=f(self.objective[k]), violation=f(self.violation[k]),
                       genome=[int(x) for x in self.genomes[k]],
                       start_hash=start_h[k] if start_h else None,
                       start_genome=[int(x) for x in self.start_genomes[k]] if start_h else None,
                       start_objective=f(self.start_objective[k]) if start_h else None,
                       start_violation=f(self.start_violation[k]) if start_h else None,
                       refined_hash=ref_h[k], refined_genome=[int(x) for x in self.refined_genomes[k]],
                       refined_objective=f(self.refined_objective[k]),
                       refined_violation=f(self.refined_violation[k]),
                       refined_at_step=int(self.refined_step[k]),
                       refined_from_sample=bool(self.refined_from_sample[k]),
                       gradient_steps=int(self.gradient_steps), exact_evaluations=int(per))
            rows.append(row)
        return dict(space=self.space_name, objective=self.objective_name, config=self.config.to_dict(),
                    start="genomes" if self.start_genomes is not None else "uniform",
                    gradient_steps=int(self.gradient_steps), candidates=len(self.genomes),
                    exact_evaluations=int(self.exact_evaluations), skipped_updates=int(self.skipped_updates),
                    accepted=int(np.sum(self.accepted)), timing_s=dict(self.timing_s),
                    history=self.history, candidates_detail=rows)


def better(v1, f1, v2, f2):
    """Elementwise: (v1, f1) strictly better than (v2, f2) -- finite, then lower violation,
    then lower objective (the GA's order: feasible first)."""
    v1, f1, v2, f2 = (np.asarray(x, np.float64) for x in (v1, f1, v2, f2))
    ok = np.isfinite(v1) & np.isfinite(f1)
    return ok & ((v1 < v2) | ((v1 == v2) & (f1 < f2)))


@functools.lru_cache(maxsize=32)
def _scorer(exact_fitness, objective):
    def score(g):
        F, v = objective(exact_fitness(g))
        return F[:, 0], v
    return jax.jit(score)


def _better_j(v1, f1, v2, f2):
    ok = jnp.isfinite(v1) & jnp.isfinite(f1)
    return ok & ((v1 < v2) | ((v1 == v2) & (f1 < f2)))


@functools.lru_cache(maxsize=32)
def _stepper(space, soft_fitness, objective, K: int, S: int, hard: bool, penalty: float):
    """Jitted ``chunk(carry, keys [n], taus [n], lr) -> (carry, loss [n, K], ok [n, K])``: n
    gradient steps in one ``lax.scan``. ``carry = (logits, opt_state, tracked)``; with hard
    samples ``tracked = (genomes [K, G], objective [K], violation [K])`` is the best sample each
    candidate has drawn so far, scored by the soft fitness's forward pass (which is the exact
    fitness at a one-hot); the caller re-scores it exactly before using it."""
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)

    def loss_fn(lg, key, tau):
        x = jnp.repeat(lg, S, axis=0) if S > 1 else lg
        y = LG.gumbel_softmax(space, key, x, tau, hard)
        m = soft_fitness(y)
        lk = jnp.mean(relaxed_loss(objective, m, penalty).reshape(K, S), axis=1)
        F, v = objective(jax.lax.stop_gradient(m))
        return jnp.sum(jnp.where(jnp.isfinite(lk), lk, 0.0)), (lk, F[:, 0], v, jax.lax.stop_gradient(y))

    def step(carry, xs):
        lg, st, (tg, tf, tv) = carry
        key, tau = xs
        (_, (lk, F, v, y)), g = jax.value_and_grad(loss_fn, has_aux=True)(lg, key, tau)
        ok = jnp.isfinite(lk) & jnp.all(jnp.isfinite(g), axis=(1, 2))
        g = jnp.where(ok[:, None, None], g, 0.0)
        upd, st = opt.update(g, st, lg)
        if hard:   # best of this step's S samples per candidate, then against the tracked best
            F, v = F.reshape(K, S), v.reshape(K, S)
            gs = jnp.argmax(y, axis=-1).astype(jnp.int32).reshape(K, S, -1)
            vmin = jnp.min(v, axis=1, keepdims=True)
            j = jnp.argmin(jnp.where(v == vmin, F, jnp.inf), axis=1)
            pick = lambda a: jnp.take_along_axis(a, j[:, None], axis=1)[:, 0]
            sg, sf, sv = gs[jnp.arange(K), j], pick(F), pick(v)
            imp = _better_j(sv, sf, tv, tf)
            tg = jnp.where(imp[:, None], sg, tg)
            tf, tv = jnp.where(imp, sf, tf), jnp.where(imp, sv, tv)
        return (optax.apply_updates(lg, upd), st, (tg, tf, tv)), (lk, ok)

    def chunk(carry, keys, taus, lr):
        lg, st, tracked = carry
        st = st._replace(hyperparams={**st.hyperparams, "learning_rate": jnp.asarray(lr, jnp.float32)})
        carry, (lk, ok) = jax.lax.scan(step, (lg, st, tracked), (keys, taus))
        return carry, lk, ok

    return opt, jax.jit(chunk)


def refine(space, exact_fitness: Callable, soft_fitness: Callable, objective, start_genomes,
           config: RefineConfig = RefineConfig(), key=None, log: Optional[Callable[[str], None]] = None
           ) -> RefineResult:
    """Refine ``start_genomes`` (int ``[N, G]``, best first; None = uniform logits) by gradient
    steps on ``soft_fitness`` (``probs [P, G, W] -> metrics``, see ``relax.fitness``); judge with
    ``exact_fitness`` (``genomes -> metrics``) under ``objective``. See the module docstring."""
    check_objective(objective)
    key = jax.random.key(0) if key is None else key
    K, S = config.candidates, config.samples
    score = _scorer(exact_fitness, objective)
    t_start = time.perf_counter()
    timing = dict(exact_s=0.0, gradient_s=0.0, first_chunk_s=0.0)

    def exact(g):
        t0 = time.perf_counter()
        F, v = jax.device_get(score(jnp.asarray(g, jnp.int32)))
        timing["exact_s"] += time.perf_counter() - t0
        return np.asarray(F, np.float64), np.asarray(v, np.float64)

    evals = 0
    if start_genomes is not None:
        sg = space.check(start_genomes)
        if len(sg) == 0:
            raise ValueError("refine: start_genomes is empty (pass None for uniform logits)")
        starts = np.asarray(space.canonicalise(sg[np.arange(K) % len(sg)]), np.int32)
        sF, sv = exact(starts)
        evals += K
        lg = LG.peaked_logits(space, starts, config.init_peak)
    else:
        starts = sF = sv = None
        lg = LG.uniform_logits(space, K)
    best_g = np.array(LG.discretise(space, lg), np.int32)
    best_F = np.full(K, np.inf)
    best_v = np.full(K, np.inf)
    best_step = np.full(K, -1, np.int64)
    from_sample = np.zeros(K, bool)
    history, skipped = [], 0
    if config.steps > 0:
        opt, chunk = _stepper(space, soft_fitness, objective, K, S, bool(config.hard), float(config.penalty))
        tracked = (jnp.zeros((K, space.n_genes), jnp.int32), jnp.full((K,), jnp.inf, jnp.float32),
                   jnp.full((K,), jnp.inf, jnp.float32))
        carry = (lg, opt.init(lg), tracked)
        keys = jax.random.split(key, config.steps)
        taus = jnp.asarray(config.temperatures())
        for c0 in range(0, config.steps, config.eval_every):
            n = min(config.eval_every, config.steps - c0)
            t0 = time.perf_counter()
            carry, lk, ok = chunk(carry, keys[c0:c0 + n], taus[c0:c0 + n], config.lr)
            lg = carry[0]
            lk, ok = jax.device_get((lk, ok))
            dt = time.perf_counter() - t0
            if c0 == 0:
                timing["first_chunk_s"] = dt
            else:
                timing["gradient_s"] += dt
            skipped += int(np.sum(~ok))
            g = np.asarray(LG.discretise(space, lg), np.int32)
            F, v = exact(g)
            evals += K
            imp = better(v, F, best_v, best_F)
            best_g[imp], best_F[imp], best_v[imp], best_step[imp] = g[imp], F[imp], v[imp], c0 + n
            from_sample[imp] = False
            feas = np.isfinite(best_F) & (best_v == 0)
            lk_f = np.where(np.isfinite(lk), lk, np.nan)
            row = dict(step=c0 + n, exact_evaluations=evals, tau=float(taus[c0 + n - 1]),
                       mean_loss=float(np.nanmean(lk_f)) if np.isfinite(lk_f).any() else None,
                       best_feasible_objective=float(best_F[feas].min()) if feas.any() else None,
                       feasible_candidates=int(feas.sum()))
            history.append(row)
            if log:
                log(f"refine step {row['step']:5d}  tau {row['tau']:.3f}  loss {row['mean_loss']}  "
                    f"best {row['best_feasible_objective']}  feasible {row['feasible_candidates']}/{K}")
        if config.hard:   # the best drawn sample of each candidate, re-scored exactly
            tg = np.asarray(space.canonicalise(carry[2][0]), np.int32)
            F, v = exact(tg)
            evals += K
            imp = better(v, F, best_v, best_F)
            best_g[imp], best_F[imp], best_v[imp] = tg[imp], F[imp], v[imp]
            best_step[imp] = config.steps
            from_sample[imp] = True
    if starts is not None:
        acc = better(best_v, best_F, sv, sF)
        chosen = np.where(acc[:, None], best_g, starts)
        cF, cv = np.where(acc, best_F, sF), np.where(acc, best_v, sv)
    else:
        acc = np.isfinite(best_F) & np.isfinite(best_v)
        chosen, cF, cv = best_g, best_F, best_v
    timing["wall_s"] = time.perf_counter() - t_start
    steady_steps = config.steps - min(config.eval_every, config.steps)
    timing["steady_steps"] = steady_steps
    timing["steady_candidate_steps_per_s"] = (steady_steps * K / timing["gradient_s"]
                                              if timing["gradient_s"] > 0 else None)
    return RefineResult(
        space_name=space.name, objective_name=objective.name, config=config, genomes=chosen,
        objective=cF, violation=cv, accepted=acc, start_genomes=starts, start_objective=sF,
        start_violation=sv, refined_genomes=best_g, refined_objective=best_F, refined_violation=best_v,
        refined_step=best_step, refined_from_sample=from_sample, exact_evaluations=evals, gradient_steps=config.steps,
        skipped_updates=skipped, history=history, timing_s=timing)
