"""Run a search whole on the accelerator: generations inside ``lax.scan``, in chunks.

Between chunks (and only there) the host logs one progress line and writes an orbax
checkpoint of the whole state -- population, fitness, archive, PRNG key, generation -- plus
a JSON record of the configuration and the per-generation history. Orbax writes each step
into a temporary directory and renames it when complete, so a kill never leaves a
half-written "latest" checkpoint. Resuming restores the latest step and continues; the
result equals an uninterrupted run bit for bit on CPU (every generation is the same
compiled computation of the same state).

PRNG: the state holds a JAX key (raw key data); every generation splits it, and the
generation's variation bits come from ``operators.counter_bits`` seeded by two words drawn
from the split key (a counter-based hash stream, ~15x cheaper than drawing all the
generation's bits with threefry on a CPU). The key implementation is ``rng_impl``
(threefry2x32 by default; "rbg"/"unsafe_rbg" selectable: their streams are deterministic
for a given backend and device count but not promised identical across JAX versions).
"""
from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .hypervolume import hypervolume
from .objectives import Objective

RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


@struct.dataclass
class SearchState:
    algo: Any               # the algorithm's own state (GAState, NSGA2State, ...)
    key_data: jax.Array     # uint32 raw key data (typed keys are rebuilt with wrap_key_data)
    hv_ref: jax.Array       # float32[M] hypervolume reference point (inf until first feasible)


class Search:
    """An algorithm (``base.Algorithm`` protocol) + a fitness + an objective, run generation by
    generation on device. Nothing here depends on which algorithm it is."""

    def __init__(self, algo, fitness_fn: Callable, objective: Objective, params=None,
                 rng_impl: str = "threefry2x32", shard: bool = True, config: Optional[dict] = None):
        if rng_impl not in RNG_IMPLS:
            raise ValueError(f"rng_impl must be one of {RNG_IMPLS}, got {rng_impl!r}")
        if getattr(algo, "n_objectives", objective.n_objectives) != objective.n_objectives:
            raise ValueError(f"{algo.name} built for {algo.n_objectives} objective(s), objective "
                             f"{objective.name!r} has {objective.n_objectives}")
        self.algo = algo
        self.fitness_fn = fitness_fn
        self.objective = objective
        self.params = params if params is not None else algo.default_params()
        self.rng_impl = rng_impl
        self.config = dict(config or {})
        self.multi = objective.n_objectives > 1      # hypervolume is tracked for fronts
        self.mesh = None
        # one global mesh over every device of every process (jax.distributed): the population
        # axis is sharded over all of them; a single process shards over its local devices
        ndev = jax.device_count()
        self.multiprocess = jax.process_count() > 1
        if self.multiprocess and not (algo.popsize % ndev == 0 and algo.num_offspring % ndev == 0):
            raise ValueError(f"a {jax.process_count()}-process search shards the population over {ndev} devices: "
                             f"population {algo.popsize} and offspring {algo.num_offspring} must be multiples of "
                             f"{ndev}")
        if (shard or self.multiprocess) and ndev > 1 and algo.popsize % ndev == 0 and algo.num_offspring % ndev == 0:
            from jax.sharding import Mesh
            self.mesh = Mesh(np.array(jax.devices()), ("pop",))
        self._chunks = {}
        self._hv = jax.jit(self._hv_impl)
        if self.mesh is not None:
            from jax.sharding import NamedSharding, PartitionSpec as P
            self._replicated = NamedSharding(self.mesh, P())
            self._hv_global = jax.jit(self._hv_impl, out_shardings=self._replicated)

    # ------------------------------------------------------------------ pure pieces
    def _sharding_tree(self, tree):
        from jax.sharding import NamedSharding, PartitionSpec as P
        pops = {self.algo.popsize, self.algo.num_offspring}

        def spec(a):
            if a.ndim >= 1 and a.shape[0] in pops:
                return NamedSharding(self.mesh, P("pop"))
            return NamedSharding(self.mesh, P())

        return jax.tree_util.tree_map(spec, tree)

    def _constrain(self, tree):
        if self.mesh is None:
            return tree
        return jax.lax.with_sharding_constraint(tree, self._sharding_tree(tree))

    def _init_local(self, seed: int) -> SearchState:
        key = jax.random.key(seed, impl=self.rng_impl)
        key, k_init = jax.random.split(key)
        return SearchState(algo=self.algo.init(k_init, self.params),
                           key_data=jax.random.key_data(key),
                           hv_ref=jnp.full((self.objective.n_objectives,), jnp.inf, jnp.float32))

    def init(self, seed: int) -> SearchState:
        st = self._init_local(seed)
        if self.multiprocess:   # every process computed the same state: assemble the global arrays
            from .distributed import to_global
            host = jax.device_get(st)
            st = to_global(host, self._sharding_tree(host))
        elif self.mesh is not None:
            st = jax.device_put(st, self._sharding_tree(st))
        else:  # committed, like restored arrays, so a resumed run reuses the compiled chunk
            st = jax.device_put(st, jax.local_devices()[0])
        return st

    def step(self, state: SearchState, params=None):
        """One generation: ask -> fitness -> objectives -> tell. Returns (state, stats).
        ``params``: the algorithm's params (None = ``self.params``)."""
        params = self.params if params is None else params
        key = jax.random.wrap_key_data(state.key_data, impl=self.rng_impl)
        key, k_ask = jax.random.split(key)
        k_tell = jax.random.fold_in(k_ask, 1)
        x, algo_state = self.algo.ask(k_ask, state.algo, params)
        x = self._constrain(x)
        F, v = self.objective(self.fitness_fn(x))
        feasible = v == 0
        algo_state, stats = self.algo.tell(k_tell, x, F, v, algo_state, params)
        hv_ref = state.hv_ref
        if self.multi:   # reference point: 1.1 x the worst feasible value of the first feasible batch
            cand = 1.1 * jnp.max(jnp.where(feasible[:, None], F, -jnp.inf), axis=0)
            hv_ref = jnp.where(jnp.isfinite(state.hv_ref) | ~jnp.any(feasible), state.hv_ref, cand)
        stats = dict(stats)
        stats["feasible_fraction"] = jnp.mean(feasible.astype(jnp.float32))
        new = SearchState(algo=algo_state, key_data=jax.random.key_data(key), hv_ref=hv_ref)
        return self._constrain(new), stats

    def _chunk_fn(self, n: int):
        """jit(run)(state, params) for ``n`` generations. The algorithm's params are an argument
        (numbers, e.g. rates or a frozen-gene mask, do not recompile); None = ``self.params`` as
        constants (several processes: every argument would have to be a global array)."""
        if n not in self._chunks:
            def run(state, params=None):
                state, stats = jax.lax.scan(lambda s, _: self.step(s, params), state, None, length=n)
                if self.mesh is not None:   # the per-generation metrics on every process
                    stats = jax.lax.with_sharding_constraint(stats, self._replicated)
                return state, stats
            self._chunks[n] = jax.jit(run, donate_argnums=0)
        return self._chunks[n]

    def _hv_impl(self, state: SearchState):
        d = self.algo.final_designs(state.algo)
        ref = state.hv_ref
        ok = jnp.all(jnp.isfinite(ref))
        safe = jnp.where(ok, ref, 1.0)
        mask = d.mask & (d.violation == 0)
        return jnp.where(ok, hypervolume(d.objectives / safe, jnp.ones_like(safe), mask), 0.0)

    def hypervolume(self, state: SearchState) -> float:
        """Normalised hypervolume of the algorithm's final designs (objectives / hv_ref,
        reference = 1). Exact for 2 objectives, Monte-Carlo with a fixed key for 3-4."""
        if not self.multi:
            raise ValueError("hypervolume is defined for multi-objective searches only")
        if self.mesh is not None and _is_global(state):
            return float(self._hv_global(state))
        return float(self._hv(state))

    def final_designs(self, state: SearchState):
        """The algorithm's result (``base.Designs``, best first), on the host. With several
        processes every one must call it (it gathers the sharded state)."""
        if self.multiprocess and _is_global(state):
            state = self.host_state(state)
        return jax.device_get(self.algo.final_designs(state.algo))

    def host_state(self, state: SearchState) -> SearchState:
        """The whole state as numpy arrays on this process (a collective with several processes:
        every process calls it); afterwards ``final_designs`` / ``hypervolume`` of it run locally."""
        from .distributed import to_host
        return to_host(state)

    # ------------------------------------------------------------------ host loop
    def run(self, seed: int, generations: int, chunk: int = 10,
            checkpoint_dir: Optional[str] = None, resume: bool = False,
            log: Optional[Callable[[str], None]] = print, max_chunks: Optional[int] = None):
        """Run to ``generations`` (counting from a resumed checkpoint). Returns (state, history).

        ``max_chunks`` stops early after that many chunks (used to simulate a kill).
        """
        if generations < 1 or chunk < 1:
            raise ValueError(f"generations and chunk must be >= 1, got {generations}, {chunk}")
        mgr = _Checkpoints(checkpoint_dir) if checkpoint_dir else None
        meta = {"config": {**self.config, "seed": int(seed), "rng_impl": self.rng_impl,
                           "algorithm": self.algo.name,
                           "popsize": self.algo.popsize,
                           "num_offspring": self.algo.num_offspring,
                           "objective": self.objective.name},
                "history": []}
        state = None
        if resume and mgr is not None and mgr.latest_step() is not None:
            if self.mesh is not None:     # restore straight into the (global) shardings
                host = jax.eval_shape(lambda: self._init_local(seed))
                abstract = jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                                  host, self._sharding_tree(host))
            else:
                abstract = jax.eval_shape(lambda: self.init(seed))
            state, saved = mgr.restore(abstract, log)
            for k, v in meta["config"].items():
                if k in saved["config"] and saved["config"][k] != v:
                    raise ValueError(f"cannot resume from {checkpoint_dir}: checkpoint has "
                                     f"{k}={saved['config'][k]!r}, this run has {v!r}")
            meta["history"] = saved["history"]
            # design keys are internal: recompute them with this version's key function
            if self.mesh is not None:
                sh = self._sharding_tree(state.algo)
                state = state.replace(algo=jax.jit(self.algo.rehash, out_shardings=sh)(state.algo))
            else:
                state = state.replace(algo=jax.jit(self.algo.rehash)(state.algo))
            if log:
                log(f"resumed from {checkpoint_dir} at generation {int(state.algo.generation)}")
        elif mgr is not None and mgr.latest_step() is not None and not resume:
            raise ValueError(f"checkpoint_dir {checkpoint_dir} already holds a checkpoint; "
                             "pass resume=True (--resume) or use an empty directory")
        if state is None:
            state = self.init(seed)
        gen = int(state.algo.generation)
        lam = self.algo.num_offspring
        done_chunks = 0
        while gen < generations and (max_chunks is None or done_chunks < max_chunks):
            n = min(chunk, generations - gen)
            t0 = time.perf_counter()
            state, stats = self._chunk_fn(n)(state, None if self.multiprocess else self.params)
            stats = jax.device_get(stats)
            dt = time.perf_counter() - t0
            for i in range(n):
                row = {"generation": gen + i + 1, "evaluations": (gen + i + 1) * lam,
                       "best": [float(b) for b in stats["best"][i]]}
                for k, val in stats.items():      # every other per-generation scalar metric
                    if k != "best" and np.ndim(val[i]) == 0:
                        row[k] = val[i].item()
                meta["history"].append(row)
            gen += n
            done_chunks += 1
            line = (f"gen {gen:6d}  evals {gen * lam:10d}  ")
            if self.multi:
                hv = self.hypervolume(state)
                meta["history"][-1]["hypervolume"] = hv
                line += f"hv {hv:.4f}  "
                if "archive_size" in meta["history"][-1]:
                    line += f"archive {meta['history'][-1]['archive_size']:4d}  "
            else:
                line += f"best {meta['history'][-1]['best'][0]:.4e}  "
            left = generations - gen
            rate = n * lam / dt
            line += (f"feasible {meta['history'][-1]['feasible_fraction']:.3f}  "
                     f"candidates/s {rate:.3e}  ETA {left * lam / rate:.0f} s")
            if mgr is not None:
                mgr.save(gen, state, meta)
                line += "  [checkpoint]"
            if log:
                log(line)
        if mgr is not None:
            mgr.close()
        return state, meta["history"]


def _is_global(tree) -> bool:
    """True if some leaf is a jax.Array not wholly on this process."""
    return any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in jax.tree_util.tree_leaves(tree))


class _Checkpoints:
    """orbax CheckpointManager around (state pytree, JSON meta); atomic per step."""

    def __init__(self, directory: str):
        import orbax.checkpoint as ocp
        self.ocp = ocp
        self.dir = os.path.abspath(directory)
        self.mgr = ocp.CheckpointManager(
            self.dir, options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True,
                                                           enable_async_checkpointing=False))

    def latest_step(self):
        return self.mgr.latest_step()

    def save(self, step: int, state, meta: dict):
        ocp = self.ocp
        self.mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)))
        self.mgr.wait_until_finished()

    def restore(self, abstract_state, log=None):
        """The newest checkpoint that restores intact; a damaged one is skipped with a warning."""
        ocp = self.ocp
        errors, damaged = [], []
        for step in sorted(self.mgr.all_steps(), reverse=True):
            try:
                out = self.mgr.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
                meta = out["meta"]
                if not isinstance(meta, dict) or len(meta.get("history", [])) != int(out["state"].algo.generation):
                    raise ValueError("metadata does not match the state")
            except Exception as e:  # noqa: BLE001 - any damage: try the previous checkpoint
                errors.append(f"step {step}: {type(e).__name__}: {str(e)[:200]}")
                damaged.append(step)
                if log:
                    log(f"warning: checkpoint {self.dir}/{step} is damaged ({type(e).__name__}); trying an older one")
                continue
            for d in damaged:                   # the run continues from `step`: drop what it will rewrite
                shutil.rmtree(os.path.join(self.dir, str(d)), ignore_errors=True)
            if damaged:
                self.mgr.reload()
            return out["state"], meta
        raise ValueError(f"no intact checkpoint in {self.dir}: " + "; ".join(errors))

    def close(self):
        self.mgr.close()
