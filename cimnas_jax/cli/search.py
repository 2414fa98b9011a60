"""cimnas-jax search: an on-device evolutionary search alone (any registered algorithm).

  cimnas-jax search --space=mbv2_rram --algorithm=ga --population=150 --generations=100 \
      --output_dir=/tmp/search_ga --checkpoint_dir=/tmp/search_ga/ckpt
  cimnas-jax search --algorithm=nsga2 --objective=energy,latency,area --population=1000 \
      --generations=200 --chunk=20 --output_dir=/tmp/search_mo
  cimnas-jax search --accuracy=surrogate --objective=edap_per_accuracy ...   # the shipped accuracy surrogate
  cimnas-jax search --fitness=calibrated [--hw_correction=FOLDER] ...        # analytic x CiMLoop-trained correction
  # killed?  rerun the same command with --resume: same final result, bit for bit (CPU).

Prints one progress line per chunk; writes results.json, results.csv (decoded designs with
units, metrics with units) and a PNG (best-so-far curve, or the Pareto front) into
--output_dir.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

from absl import flags

from cimnas_jax.cli.common import FlagError

FITNESSES = ("analytic", "surrogate", "calibrated", "linear", "mlp")
ACCURACIES = ("constant", "surrogate")
CROSSOVERS = ("uniform", "group", "none")
MUTATIONS = ("sparse", "dense")
RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")

FLAGS = flags.FLAGS


def define_flags():
    """Define this command's flags (called by cimnas_jax.cli.run_command before parsing)."""
    flags.DEFINE_string("space", "mbv2_rram", "search space (cimnas_jax.space registry)")
    flags.DEFINE_string("algorithm", "ga", "search algorithm (cimnas_jax.search registry: ga, nsga2, random, ...)")
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
    flags.DEFINE_string("fitness", "analytic", f"one of {FITNESSES}: the analytic CIM model, its surrogate "
                        "ensemble, the analytic model with the CiMLoop-trained correction (calibrated, the main "
                        "job's --hw_source=calibrated), or synthetic (linear/mlp, for engine tests)")
    flags.DEFINE_string("hw_correction", "", "--fitness=calibrated: hardware correction folder (manifest.json + "
                        "params.msgpack, e.g. an active-learning round's correction/) ('' = the shipped one of the "
                        "space's technology)")
    flags.DEFINE_string("accuracy", "constant", f"accuracy source, one of {ACCURACIES} (surrogate: the space's "
                        "shipped accuracy ensemble)")
    flags.DEFINE_float("accuracy_value", 1.0, "value of the constant accuracy, in (0, 1]")
    flags.DEFINE_string("surrogate_dir", "", "surrogate set folder ('' = the space's shipped set)")
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
    flags.DEFINE_integer("top", 20, "single objective: best unique designs written to the results")
    flags.DEFINE_string("checkpoint_dir", "", "orbax checkpoints after every chunk ('' = none)")
    flags.DEFINE_string("output_dir", "", "results.json, results.csv, PNG (required)")
    flags.DEFINE_bool("resume", False, "continue from the latest checkpoint in --checkpoint_dir")
    flags.DEFINE_float("sleep_per_chunk_s", 0.0, "testing only: pause after each chunk's "
                       "checkpoint (lets a kill-and-resume test kill the run mid-way)")
    define_distributed_flags()


def define_distributed_flags():
    """--coordinator_address / --num_processes / --process_id / --distributed_auto (also used by
    the main job): one search over the devices of several processes (jax.distributed)."""
    flags.DEFINE_string("coordinator_address", "", "multi-process search: host:port of process 0's "
                        "coordinator ('' = a single process); every process gets the same flags but its own "
                        "--process_id")
    flags.DEFINE_integer("num_processes", 0, "multi-process search: number of processes (0 = single process)")
    flags.DEFINE_integer("process_id", -1, "multi-process search: this process's index in [0, --num_processes)")
    flags.DEFINE_bool("distributed_auto", False, "multi-process search with jax.distributed's cluster "
                      "auto-detection (Slurm, Open MPI, Kubernetes) instead of the three flags above")


def init_distributed_from_flags():
    """jax.distributed.initialize from the flags (before any JAX work); one-line error on bad values."""
    from cimnas_jax.cli.common import fail
    from cimnas_jax.search.distributed import DistributedError, initialize
    try:
        return initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                          FLAGS.distributed_auto)
    except DistributedError as e:
        fail(str(e))


NAMES = ("space", "algorithm", "objective", "coefficients", "bounds", "area_limit_mm2", "accuracy_floor",
         "capacity", "fitness", "hw_correction", "accuracy", "accuracy_value", "surrogate_dir", "population", "offspring",
         "generations", "chunk", "seed", "crossover", "mutation", "crossover_prob", "mutation_rate",
         "archive_size", "rng_impl", "top", "checkpoint_dir", "output_dir", "resume")




def check_flags(v: dict):
    """Validate flag values (a dict of name -> value); returns the Objective or raises FlagError
    naming the flag and its allowed values."""
    import math

    from cimnas_jax.pipeline.config import ConfigError
    from cimnas_jax.pipeline.objective import build_objective
    from cimnas_jax.search import algorithm_names
    from cimnas_jax.space import space_names

    v = {"surrogate_dir": "", "hw_correction": "", **v}

    def enum(name, allowed):
        if v[name] not in allowed:
            raise FlagError(f"--{name}={v[name]!r} is not allowed; use one of {tuple(allowed)}")

    enum("space", space_names())
    enum("algorithm", algorithm_names())
    enum("fitness", FITNESSES)
    enum("accuracy", ACCURACIES)
    enum("crossover", CROSSOVERS)
    enum("mutation", MUTATIONS)
    enum("rng_impl", RNG_IMPLS)
    for name in ("area_limit_mm2", "accuracy_floor", "accuracy_value", "crossover_prob", "mutation_rate"):
        if not math.isfinite(v[name]):
            raise FlagError(f"--{name}={v[name]} must be a finite number")
    for name, lo in (("population", 2), ("generations", 1), ("chunk", 1), ("archive_size", 2),
                     ("top", 1)):
        if v[name] < lo:
            raise FlagError(f"--{name}={v[name]} must be an integer >= {lo}")
    if not 0 <= v["seed"] < 2 ** 31:
        raise FlagError(f"--seed={v['seed']} must be an integer in [0, 2^31)")
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
    if v["accuracy"] == "surrogate" and v["fitness"] in ("linear", "mlp"):
        raise FlagError(f"--accuracy=surrogate needs --fitness=analytic, surrogate or calibrated, not {v['fitness']!r}")
    if v["hw_correction"] and v["fitness"] != "calibrated":
        raise FlagError(f"--hw_correction={v['hw_correction']!r} is used only with --fitness=calibrated")
    if v["accuracy_floor"] and v["accuracy"] == "constant":
        raise FlagError("--accuracy_floor needs a real accuracy source (--accuracy=surrogate); with "
                        "--accuracy=constant every design has the same accuracy")
    cfg = SimpleNamespace(algorithm=v["algorithm"], objective=v["objective"], coefficients=v["coefficients"],
                          bounds=v["bounds"], capacity=v["capacity"], area_limit_mm2=v["area_limit_mm2"],
                          accuracy_floor=v["accuracy_floor"],
                          accuracy_source="constant" if v["accuracy"] == "constant" else "surrogate")
    try:
        return build_objective(cfg)
    except ConfigError as e:
        raise FlagError(str(e)) from None


def build_fitness(v: dict, sp):
    """The fitness the flags name (genomes -> metrics) and a one-line description of its sources."""
    from cimnas_jax.search import fitness as fit
    if v["fitness"] == "linear":
        return fit.linear_fitness(sp), "synthetic linear fitness"
    if v["fitness"] == "mlp":
        return fit.mlp_fitness(sp), "synthetic 3x400 MLP fitness"
    from cimnas_jax.pipeline.fitness import correction_info, hw_source_name, make_fitness
    info = None
    if v["fitness"] == "calibrated":
        try:
            info = correction_info(sp.technology, v.get("hw_correction", ""))
        except (FileNotFoundError, ValueError) as e:
            raise FlagError(f"--hw_correction={v.get('hw_correction', '')!r}: {e}") from None
    surrogate = None
    if "surrogate" in (v["fitness"], v["accuracy"]):
        from cimnas_jax.surrogate import SurrogateMismatch, load_surrogates
        try:
            surrogate = load_surrogates(sp.name, v["surrogate_dir"] or None)
        except (FileNotFoundError, SurrogateMismatch) as e:
            raise FlagError(f"--surrogate_dir: {e}") from None
        if v["accuracy"] == "surrogate" and not surrogate.has_accuracy:
            raise FlagError(f"--accuracy=surrogate: the surrogate set for {sp.name} has no accuracy model")
    acc = "surrogate" if v["accuracy"] == "surrogate" else "constant"
    f = make_fitness(sp, v["fitness"], acc, surrogate, constant_accuracy=v["accuracy_value"],
                     correction=info["path"] if info else None)
    desc = (f"hardware {hw_source_name(v['fitness'], info)}, accuracy "
            + ("the shipped accuracy surrogate" if acc == "surrogate" else f"constant {v['accuracy_value']:g}"))
    return f, desc


def main(argv):
    from absl import logging

    from cimnas_jax.cli.common import fail, log
    from cimnas_jax.fileio import FolderBusy, FolderLock
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags are --name=value")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    v = {n: FLAGS[n].value for n in NAMES}
    init_distributed_from_flags()        # before anything touches a JAX backend
    try:
        objective = check_flags(v)
    except FlagError as e:
        fail(str(e))
    import os

    from cimnas_jax.report import search as report
    from cimnas_jax.search import Search, make_algorithm
    from cimnas_jax.space import get_space

    sp = get_space(v["space"])
    try:
        fitness_fn, fitness_desc = build_fitness(v, sp)
    except FlagError as e:
        fail(str(e))
    algo = make_algorithm(v["algorithm"], sp, v["population"], objective.n_objectives,
                          num_offspring=v["offspring"] or None, crossover=v["crossover"], mutation=v["mutation"],
                          archive_size=v["archive_size"])
    params = algo.default_params()
    over = {"crossover_prob": v["crossover_prob"]}
    if v["mutation_rate"] > 0:
        over["mutation_rate"] = v["mutation_rate"]
    params = params.replace(**{k: x for k, x in over.items() if hasattr(params, k)})
    config = {k: v[k] for k in ("space", "algorithm", "fitness", "accuracy", "accuracy_value",
                                "crossover", "mutation", "area_limit_mm2", "accuracy_floor", "capacity")}
    config.update({k: float(getattr(params, k)) for k in ("crossover_prob", "mutation_rate") if hasattr(params, k)})
    if v["fitness"] == "calibrated":      # the correction decides the scores: a checkpoint of another one is refused
        from cimnas_jax.pipeline.fitness import correction_info
        config["hw_correction_sha256"] = correction_info(sp.technology, v["hw_correction"])["params_sha256"]
    from cimnas_jax.search.distributed import describe, is_primary
    try:
        search = Search(algo, fitness_fn, objective, params, rng_impl=v["rng_impl"], config=config)
    except ValueError as e:       # a population that does not divide over the processes' devices
        fail(f"--population={v['population']}: {e}")
    primary = is_primary()        # process 0 writes the outputs; every process checkpoints (orbax)
    lock = FolderLock(v["output_dir"], "cimnas-jax search")
    if primary:
        try:
            lock.__enter__()
        except (FolderBusy, OSError) as e:
            fail(f"--output_dir={v['output_dir']}: {e}")
    try:
        if primary:
            log(f"search: {v['algorithm']} on {sp.name} ({sp.n_genes} genes), objective "
                f"{objective.name} {objective.names}, {fitness_desc}, population {algo.popsize}, offspring "
                f"{algo.num_offspring}, {describe()}")
        sleep_s = FLAGS.sleep_per_chunk_s

        def chunk_log(line):
            if primary:
                log(line)
            if sleep_s > 0:
                time.sleep(sleep_s)
        t0 = time.perf_counter()
        try:
            state, history = search.run(v["seed"], v["generations"], v["chunk"],
                                        checkpoint_dir=v["checkpoint_dir"] or None, resume=v["resume"],
                                        log=chunk_log)
        except ValueError as e:          # a checkpoint of another configuration, or one without --resume
            fail(f"--checkpoint_dir={v['checkpoint_dir']}: {e}")
        wall = time.perf_counter() - t0
        if search.multiprocess:
            state = search.host_state(state)     # every process takes part; process 0 writes
        if not primary:
            return
        run_config = {**config, **{k: v[k] for k in ("population", "offspring", "generations", "chunk", "seed",
                                                     "rng_impl")},
                      "objective": objective.name, "objective_terms": list(objective.names),
                      "fitness_sources": fitness_desc}
        written = report.write(v["output_dir"], sp, search, state, history, objective, fitness_fn, run_config,
                               wall, top=v["top"])
        log(written["summary"])
        log(f"wrote {', '.join(os.path.join(v['output_dir'], f) for f in written['files'])} ({wall:.1f} s)")
    finally:
        if primary:
            lock.__exit__(None, None, None)
