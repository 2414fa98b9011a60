"""On-device evolutionary search over a CIM co-design space (GA or NSGA-II).

  python experiments/search.py --space=mbv2_rram --algorithm=ga --population=150 \
      --generations=100 --output_dir=/tmp/search_ga --checkpoint_dir=/tmp/search_ga/ckpt
  python experiments/search.py --algorithm=nsga2 --objective=energy,latency,area \
      --population=1000 --generations=200 --chunk=20 --output_dir=/tmp/search_mo
  # killed?  rerun the same command with --resume: same final result, bit for bit (CPU).

Prints one progress line per chunk; writes results.json, results.csv (decoded designs with
units, metrics with units) and a PNG (best-so-far curve, or the Pareto front) into
--output_dir. Accuracy comes from --accuracy (only "constant" until surrogates exist: a
hardware-only search in which every design has the same accuracy).
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root

from cimnas_jax.fileio import atomic_write  # noqa: E402

ALGORITHMS = ("ga", "nsga2")
FITNESSES = ("analytic", "linear", "mlp")
ACCURACIES = ("constant",)
CROSSOVERS = ("uniform", "group", "none")
MUTATIONS = ("sparse", "dense")
RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")

FLAGS = flags.FLAGS
flags.DEFINE_string("space", "mbv2_rram", "search space (cimnas_jax.space registry)")
flags.DEFINE_string("algorithm", "ga", f"one of {ALGORITHMS}")
flags.DEFINE_string("objective", "", "ga: edap_per_accuracy (default), edap, edp, energy, "
                    "latency, area, any product like energy*latency/accuracy, priority, "
                    "weighted_sum; nsga2: 2-4 comma-separated terms of error, energy, latency, "
                    "area, edap, edp or a preset accuracy_edap | accuracy_energy_latency_area "
                    "(default energy,latency,area with --accuracy=constant)")
flags.DEFINE_string("coefficients", "", "priority / weighted_sum: term=value,... "
                    "(e.g. energy=1,latency=1,area=1)")
flags.DEFINE_string("bounds", "", "priority / weighted_sum: fixed min-max bounds term=lo:hi,...")
flags.DEFINE_float("area_limit_mm2", 800.0, "chip area limit in mm^2 (CIMNAS: 8 cm^2); 0 = off")
flags.DEFINE_float("accuracy_floor", 0.0, "minimum accuracy in (0, 1]; 0 = off")
flags.DEFINE_bool("capacity", True, "require cells_needed <= cells_available")
flags.DEFINE_string("fitness", "analytic", f"one of {FITNESSES} (linear/mlp: synthetic, "
                    "for engine tests)")
flags.DEFINE_string("accuracy", "constant", f"accuracy source, one of {ACCURACIES}")
flags.DEFINE_float("accuracy_value", 1.0, "value of the constant accuracy, in (0, 1]")
flags.DEFINE_integer("population", 150, "population size mu (>= 2)")
flags.DEFINE_integer("offspring", 0, "offspring per generation lambda (0 = population)")
flags.DEFINE_integer("generations", 100, "generations in total (>= 1)")
flags.DEFINE_integer("chunk", 10, "generations per lax.scan chunk: log + checkpoint after each")
flags.DEFINE_integer("seed", 1, "random seed")
flags.DEFINE_string("crossover", "uniform", f"one of {CROSSOVERS}")
flags.DEFINE_string("mutation", "sparse", f"one of {MUTATIONS}: sparse = 8 candidate sites "
                    "per child (mean rate x genes mutations), dense = one coin per gene")
flags.DEFINE_float("crossover_prob", 0.9, "probability a mating uses crossover, in [0, 1]")
flags.DEFINE_float("mutation_rate", 0.0, "per-gene mutation probability in [0, 1] "
                   "(0 = 1 / number of genes)")
flags.DEFINE_integer("archive_size", 256, "nsga2: Pareto archive capacity (>= 2)")
flags.DEFINE_string("rng_impl", "threefry2x32", f"PRNG implementation, one of {RNG_IMPLS}")
flags.DEFINE_integer("top", 20, "ga: best unique designs written to the results")
flags.DEFINE_string("checkpoint_dir", "", "orbax checkpoints after every chunk ('' = none)")
flags.DEFINE_string("output_dir", "", "results.json, results.csv, PNG (required)")
flags.DEFINE_bool("resume", False, "continue from the latest checkpoint in --checkpoint_dir")
flags.DEFINE_float("sleep_per_chunk_s", 0.0, "testing only: pause after each chunk's "
                   "checkpoint (lets a kill-and-resume test kill the run mid-way)")


class FlagError(ValueError):
    """A flag value outside what is allowed; the message names the flag."""


def _kv(text, flag):
    out = {}
    for part in filter(None, text.split(",")):
        if "=" not in part:
            raise FlagError(f"--{flag}: expected term=value pairs, got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def check_flags(v: dict) -> dict:
    """Validate flag values (a dict of name -> value); returns derived settings or raises
    FlagError naming the flag and its allowed values."""
    from cimnas_jax.space import space_names

    def enum(name, allowed):
        if v[name] not in allowed:
            raise FlagError(f"--{name}={v[name]!r} is not allowed; use one of {tuple(allowed)}")

    enum("space", space_names())
    enum("algorithm", ALGORITHMS)
    enum("fitness", FITNESSES)
    enum("accuracy", ACCURACIES)
    enum("crossover", CROSSOVERS)
    enum("mutation", MUTATIONS)
    enum("rng_impl", RNG_IMPLS)
    for name, lo in (("population", 2), ("generations", 1), ("chunk", 1), ("archive_size", 2),
                     ("top", 1)):
        if v[name] < lo:
            raise FlagError(f"--{name}={v[name]} must be an integer >= {lo}")
    if v["offspring"] < 0:
        raise FlagError(f"--offspring={v['offspring']} must be >= 0 (0 = --population)")
    if v["area_limit_mm2"] < 0:
        raise FlagError(f"--area_limit_mm2={v['area_limit_mm2']} must be > 0 mm^2, or 0 = off")
    if not 0 <= v["accuracy_floor"] <= 1:
        raise FlagError(f"--accuracy_floor={v['accuracy_floor']} must be in (0, 1], or 0 = off")
    if not 0 < v["accuracy_value"] <= 1:
        raise FlagError(f"--accuracy_value={v['accuracy_value']} must be in (0, 1]")
    if not 0 <= v["crossover_prob"] <= 1:
        raise FlagError(f"--crossover_prob={v['crossover_prob']} must be in [0, 1]")
    if not 0 <= v["mutation_rate"] <= 1:
        raise FlagError(f"--mutation_rate={v['mutation_rate']} must be in [0, 1] (0 = default)")
    if not v["output_dir"]:
        raise FlagError("--output_dir is required (folder for results.json/.csv/.png)")
    if v["resume"] and not v["checkpoint_dir"]:
        raise FlagError("--resume needs --checkpoint_dir")
    return build_objective(v)


def build_objective(v: dict):
    from cimnas_jax.search.objectives import (MULTI_PRESETS, MULTI_TERMS, SINGLE_CHOICES,
                                              Constraints, Objective)
    cons = Constraints(capacity=bool(v["capacity"]),
                       area_limit_mm2=v["area_limit_mm2"] or None,
                       accuracy_floor=v["accuracy_floor"] or None)
    name = v["objective"]
    try:
        if v["algorithm"] == "ga":
            name = name or "edap_per_accuracy"
            coefs = {k: float(x) for k, x in _kv(v["coefficients"], "coefficients").items()}
            bounds = {}
            for k, x in _kv(v["bounds"], "bounds").items():
                if ":" not in x:
                    raise FlagError(f"--bounds: expected term=lo:hi, got {k}={x}")
                bounds[k] = tuple(float(t) for t in x.split(":"))
            return Objective.single(name, cons, coefs or None, bounds or None)
        name = name or ("energy,latency,area" if v["accuracy"] == "constant" else "accuracy_edap")
        return Objective.multi(name, cons)
    except FlagError:
        raise
    except ValueError as e:
        allowed = (SINGLE_CHOICES if v["algorithm"] == "ga"
                   else f"2-4 of {MULTI_TERMS} or {tuple(MULTI_PRESETS)}")
        raise FlagError(f"--objective={name!r} with --algorithm={v['algorithm']}: {e}; "
                        f"allowed: {allowed}") from None


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    names = [n for n in FLAGS if n in {
        "space", "algorithm", "objective", "coefficients", "bounds", "area_limit_mm2",
        "accuracy_floor", "capacity", "fitness", "accuracy", "accuracy_value", "population",
        "offspring", "generations", "chunk", "seed", "crossover", "mutation", "crossover_prob",
        "mutation_rate", "archive_size", "rng_impl", "top", "checkpoint_dir", "output_dir",
        "resume"}]
    v = {n: FLAGS[n].value for n in names}
    try:
        objective = check_flags(v)
    except FlagError as e:
        raise app.UsageError(str(e))

    import jax
    import jax.numpy as jnp
    import numpy as np
    from cimnas_jax.space import get_space
    from cimnas_jax.search import GA, NSGA2, Search, hv_exact
    from cimnas_jax.search import fitness as fit

    sp = get_space(v["space"])
    acc = fit.constant_accuracy_hardware_only(v["accuracy_value"])
    if v["fitness"] == "analytic":
        fitness_fn = fit.hardware_fitness(sp, acc)
    elif v["fitness"] == "linear":
        fitness_fn = fit.linear_fitness(sp)
    else:
        fitness_fn = fit.mlp_fitness(sp)
    kw = dict(num_offspring=v["offspring"] or None, crossover=v["crossover"],
              mutation=v["mutation"])
    if v["algorithm"] == "ga":
        algo = GA(sp, v["population"], **kw)
    else:
        algo = NSGA2(sp, v["population"], objective.n_objectives,
                     archive_size=v["archive_size"], **kw)
    params = algo.default_params()
    if v["mutation_rate"] > 0:
        params = params.replace(mutation_rate=v["mutation_rate"])
    params = params.replace(crossover_prob=v["crossover_prob"])
    config = {k: v[k] for k in ("space", "algorithm", "fitness", "accuracy", "accuracy_value",
                                "crossover", "mutation", "area_limit_mm2", "accuracy_floor", "capacity")}
    config.update(crossover_prob=float(params.crossover_prob),
                  mutation_rate=float(params.mutation_rate))
    search = Search(algo, fitness_fn, objective, params, rng_impl=v["rng_impl"], config=config)
    print(f"search: {v['algorithm']} on {sp.name} ({sp.n_genes} genes), objective "
          f"{objective.name} {objective.names}, fitness {v['fitness']}, accuracy "
          f"{acc.__name__}, population {algo.popsize}, offspring {algo.num_offspring}, "
          f"devices {jax.local_device_count()} ({jax.default_backend()})", flush=True)
    t0 = time.perf_counter()
    state, history = search.run(v["seed"], v["generations"], v["chunk"],
                                checkpoint_dir=v["checkpoint_dir"] or None, resume=v["resume"],
                                log=_logger(FLAGS.sleep_per_chunk_s))
    wall = time.perf_counter() - t0

    # ---- final designs: GA -> best unique feasible population members; NSGA2 -> archive
    st = jax.device_get(state.algo)
    if v["algorithm"] == "ga":
        keep = np.isfinite(st.fitness)
        genomes = st.population[keep][: v["top"]]
    else:
        genomes = st.archive.genomes[st.archive.filled]
    out = {"config": {**config, **{k: v[k] for k in ("population", "offspring", "generations",
                                                      "chunk", "seed", "rng_impl")},
                      "objective": objective.name, "objective_terms": list(objective.names)},
           "units": {"energy_j": "J", "latency_s": "s", "area_mm2": "mm^2",
                     "edap_j_s_mm2": "J*s*mm^2", "accuracy": "fraction",
                     "cells_needed": "cells", "cells_available": "cells"},
           "wall_s": wall, "history": history, "designs": []}
    rows = []
    if len(genomes):
        g = jnp.asarray(genomes)
        m = jax.device_get(jax.jit(fitness_fn)(g))
        F, viol = jax.device_get(objective(m))
        decoded = jax.device_get(sp.decode(g))
        hashes = sp.hash_hex(np.asarray(genomes))
        for i in range(len(genomes)):
            row = {"rank": i, "hash": hashes[i]}
            for j, t in enumerate(objective.names):
                row[f"objective_{t}"] = float(F[i, j])
            row["violation"] = float(viol[i])
            for k in ("energy_j", "latency_s", "area_mm2", "accuracy", "cells_needed",
                      "cells_available"):
                row[k] = float(m[k][i])
            row["edap_j_s_mm2"] = row["energy_j"] * row["latency_s"] * row["area_mm2"]
            row["valid"] = bool(m["valid"][i])
            for name in sp.gene_names:
                row[name] = float(decoded[name][i])
            row["genome"] = [int(x) for x in genomes[i]]
            rows.append(row)
        if v["algorithm"] == "nsga2":
            ref = np.asarray(jax.device_get(state.hv_ref), np.float64)
            if np.all(np.isfinite(ref)):
                out["hypervolume_exact_normalised"] = hv_exact(np.asarray(F) / ref, np.ones_like(ref))
                out["hypervolume_reference"] = ref.tolist()
    out["designs"] = rows
    os.makedirs(v["output_dir"], exist_ok=True)
    atomic_write(os.path.join(v["output_dir"], "results.json"), json.dumps(out, indent=1))
    if rows:
        buf = io.StringIO()
        cols = [c for c in rows[0] if c != "genome"] + ["genome"]
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "genome": " ".join(map(str, r["genome"]))})
        atomic_write(os.path.join(v["output_dir"], "results.csv"), buf.getvalue())
    png = _plot(v["algorithm"], history, rows, objective, v["output_dir"])
    best = rows[0] if rows else None
    if best and v["algorithm"] == "ga":
        print(f"best: {objective.name} = {best['objective_' + objective.names[0]]:.4e}  "
              f"energy {best['energy_j']:.4e} J  latency {best['latency_s']:.4e} s  area "
              f"{best['area_mm2']:.2f} mm^2  EDAP {best['edap_j_s_mm2']:.4e} J*s*mm^2")
    elif v["algorithm"] == "nsga2":
        print(f"archive: {len(rows)} non-dominated feasible designs; hypervolume (exact, "
              f"normalised) {out.get('hypervolume_exact_normalised', float('nan')):.4f}")
    else:
        print("no feasible design found")
    print(f"wrote {v['output_dir']}/results.json, results.csv, {os.path.basename(png)} "
          f"({wall:.1f} s)")


UNIT_LABELS = {"energy": "energy (J)", "latency": "latency (s)", "area": "area (mm^2)",
               "edap": "EDAP (J*s*mm^2)", "edp": "EDP (J*s)", "error": "1 - accuracy"}


def _logger(sleep_s: float):
    def log(line: str):
        print(line, flush=True)
        if sleep_s > 0:
            time.sleep(sleep_s)
    return log


def _plot(algorithm, history, rows, objective, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if algorithm == "ga":
        ev = [h["evaluations"] for h in history]
        best = [h["best"][0] for h in history]
        ax.plot(ev, best)
        ax.set_yscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel(f"best feasible {objective.name}"
                      + (" (J*s*mm^2)" if objective.name == "edap" else ""))
        ax.set_title("GA best-so-far")
        path = os.path.join(outdir, "best_so_far.png")
    else:
        t = objective.names
        if rows:
            x = [r[f"objective_{t[0]}"] for r in rows]
            y = [r[f"objective_{t[1]}"] for r in rows]
            c = [r[f"objective_{t[2]}"] for r in rows] if len(t) > 2 else None
            sc = ax.scatter(x, y, c=c, s=12)
            if c is not None:
                fig.colorbar(sc, label=UNIT_LABELS.get(t[2], t[2]))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(UNIT_LABELS.get(t[0], t[0]))
        ax.set_ylabel(UNIT_LABELS.get(t[1], t[1]))
        ax.set_title(f"NSGA-II archive ({len(rows)} designs)")
        path = os.path.join(outdir, "pareto_front.png")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)
    return path


if __name__ == "__main__":
    app.run(main)
