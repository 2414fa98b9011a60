"""Refine a saved search output by Gumbel-softmax gradient steps; write the refined designs.

  python -m cimnas_jax.relax --input=runs/ga/results.json --output=runs/ga/refined.json \
      --steps=60 --candidates=16
  python experiments/refine.py ...          # the same (needs the package importable)

``--input`` is the ``results.json`` of ``experiments/search.py`` (or of the main job): its
``designs[].genome`` are the starts (best first; the main job's ``baseline`` row is skipped) and
its ``config`` gives the space, objective and constraints unless flags override them.
``--uniform`` ignores the designs and starts from uniform logits (pure differentiable NAS).
Refined designs are re-scored exactly with the search's genome-level fitness; one replaces its
start only if it is strictly better (feasible first). The output JSON holds the settings, the
cost (gradient steps, exact evaluations, seconds) and, per candidate, its provenance: start
and refined genome, hash and exact objective, gradient steps and exact evaluations used.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

from absl import app, flags, logging

from cimnas_jax.cli.common import FlagError  # noqa: F401  (one FlagError for every command)
from cimnas_jax.pipeline.config import ConfigError
from cimnas_jax.pipeline.objective import parse_weights

FLAGS = flags.FLAGS


def define_flags():
    """Define this command's flags (before parsing; see cimnas_jax.cli.run_command)."""
    flags.DEFINE_string("input", "", "results.json of experiments/search.py or experiments/cimnas.py (required)")
    flags.DEFINE_string("output", "", "output JSON path (default: refined.json next to --input)")
    flags.DEFINE_string("space", "", "space ('' = the input's config.space)")
    flags.DEFINE_string("hw_source", "", "hardware scores: analytic | surrogate ('' = the input's, else analytic)")
    flags.DEFINE_string("accuracy_source", "", "accuracy: surrogate | constant ('' = the input's; "
                        "experiments/search.py runs are constant)")
    flags.DEFINE_float("accuracy_value", -1.0, "value of a constant accuracy in (0, 1] (-1 = the input's, else 1)")
    flags.DEFINE_string("surrogate_dir", "", "surrogate set folder ('' = the shipped one)")
    flags.DEFINE_string("objective", "", "single objective ('' = the input's config.objective, else "
                        "edap_per_accuracy); priority / weighted_sum need --coefficients and --bounds")
    flags.DEFINE_string("coefficients", "", "priority / weighted_sum: term=value,...")
    flags.DEFINE_string("bounds", "", "priority / weighted_sum: term=lo:hi,...")
    flags.DEFINE_float("area_limit_mm2", -1.0, "area limit mm^2 (0 = off, -1 = the input's)")
    flags.DEFINE_float("accuracy_floor", -1.0, "accuracy floor in (0, 1] (0 = off, -1 = the input's)")
    flags.DEFINE_string("capacity", "", "require weights to fit: true | false ('' = the input's, else true)")
    flags.DEFINE_integer("top", 0, "designs of the input used as starts (0 = --candidates)")
    flags.DEFINE_bool("uniform", False, "start from uniform logits instead of the input's designs")
    flags.DEFINE_integer("steps", 60, "gradient steps (>= 0; 0 = only re-score the starts)")
    flags.DEFINE_integer("candidates", 16, "candidates refined at once (>= 1)")
    flags.DEFINE_float("lr", 0.1, "Adam learning rate on the logits (> 0)")
    flags.DEFINE_float("tau_start", 1.0, "Gumbel-softmax temperature at the first step (> 0)")
    flags.DEFINE_float("tau_end", 0.2, "temperature at the last step (> 0)")
    flags.DEFINE_string("tau_schedule", "exponential", "exponential | linear | constant")
    flags.DEFINE_bool("hard", True, "straight-through one-hot samples (false: relaxed samples)")
    flags.DEFINE_integer("samples", 1, "Gumbel samples per candidate and step (>= 1)")
    flags.DEFINE_float("init_peak", 3.0, "start logit on each start's choices (>= 0)")
    flags.DEFINE_float("penalty", 10.0, "weight of the relative constraint violation in the loss (>= 0)")
    flags.DEFINE_integer("eval_every", 10, "gradient steps between exact scorings (>= 1)")
    flags.DEFINE_integer("seed", 0, "PRNG seed of the Gumbel noise")


NAMES = ("input", "output", "space", "hw_source", "accuracy_source", "accuracy_value", "surrogate_dir",
         "objective", "coefficients", "bounds", "area_limit_mm2", "accuracy_floor", "capacity", "top",
         "uniform", "steps", "candidates", "lr", "tau_start", "tau_end", "tau_schedule", "hard",
         "samples", "init_peak", "penalty", "eval_every", "seed")
HW_SOURCES = ("analytic", "surrogate")
ACCURACY_SOURCES = ("surrogate", "constant")




def read_input(path: str) -> dict:
    """The input results.json as a dict with ``config`` and ``designs`` (FlagError otherwise)."""
    if not path:
        raise FlagError("--input is required (a results.json written by experiments/search.py)")
    if not os.path.isfile(path):
        raise FlagError(f"--input={path!r}: no such file")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise FlagError(f"--input={path!r}: not readable JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("designs"), list):
        raise FlagError(f"--input={path!r}: expected a results.json with a 'designs' list")
    data.setdefault("config", {})
    return data


def resolve(v: dict, data: dict) -> dict:
    """Validate flags against the input; returns the settings (space, sources, objective,
    RefineConfig, start genomes). Raises FlagError naming the flag and the allowed values."""
    from cimnas_jax.relax.refine import TAU_SCHEDULES, RefineConfig
    from cimnas_jax.search.objectives import SINGLE_CHOICES, Constraints, Objective
    from cimnas_jax.space import get_space, space_names

    cfg = data["config"]
    space_name = v["space"] or cfg.get("space") or ""
    if space_name not in space_names():
        raise FlagError(f"--space={space_name!r} (from {'the flag' if v['space'] else 'the input'}) "
                        f"is not allowed; use one of {space_names()}")
    hw = v["hw_source"] or cfg.get("hw_source") or "analytic"
    if hw not in HW_SOURCES:
        raise FlagError(f"--hw_source={hw!r} is not allowed; use one of {HW_SOURCES}")
    acc = v["accuracy_source"] or cfg.get("accuracy_source") or cfg.get("accuracy") or "constant"
    if acc not in ACCURACY_SOURCES:
        raise FlagError(f"--accuracy_source={acc!r} is not allowed; use one of {ACCURACY_SOURCES}")
    acc_value = v["accuracy_value"] if v["accuracy_value"] != -1.0 else float(cfg.get("accuracy_value", 1.0))
    if not 0 < acc_value <= 1:
        raise FlagError(f"--accuracy_value={acc_value} must be in (0, 1]")
    for name, lo in (("steps", 0), ("candidates", 1), ("samples", 1), ("eval_every", 1), ("top", 0)):
        if v[name] < lo:
            raise FlagError(f"--{name}={v[name]} must be an integer >= {lo}")
    for name in ("lr", "tau_start", "tau_end"):
        if not (math.isfinite(v[name]) and v[name] > 0):
            raise FlagError(f"--{name}={v[name]} must be a number > 0")
    for name in ("init_peak", "penalty"):
        if not (math.isfinite(v[name]) and v[name] >= 0):
            raise FlagError(f"--{name}={v[name]} must be a number >= 0")
    if v["tau_schedule"] not in TAU_SCHEDULES:
        raise FlagError(f"--tau_schedule={v['tau_schedule']!r} is not allowed; use one of {TAU_SCHEDULES}")
    area = v["area_limit_mm2"] if v["area_limit_mm2"] != -1.0 else float(cfg.get("area_limit_mm2") or 0.0)
    if area < 0:
        raise FlagError(f"--area_limit_mm2={area} must be > 0 mm^2, 0 = off, or -1 = the input's")
    floor = v["accuracy_floor"] if v["accuracy_floor"] != -1.0 else float(cfg.get("accuracy_floor") or 0.0)
    if not 0 <= floor <= 1:
        raise FlagError(f"--accuracy_floor={floor} must be in (0, 1], 0 = off, or -1 = the input's")
    cap_text = v["capacity"].lower()
    if cap_text not in ("", "true", "false"):
        raise FlagError(f"--capacity={v['capacity']!r} is not allowed; use true, false or '' (the input's)")
    capacity = (cap_text == "true") if cap_text else bool(cfg.get("capacity", True))
    cons = Constraints(capacity=capacity, area_limit_mm2=area or None, accuracy_floor=floor or None)
    name = v["objective"] or cfg.get("objective") or "edap_per_accuracy"
    try:
        objective = Objective.single(name, cons, *parse_weights(v["coefficients"], v["bounds"]))
    except ConfigError as e:
        raise FlagError(str(e)) from None
    except ValueError as e:
        raise FlagError(f"--objective={name!r}: {e}; allowed: {SINGLE_CHOICES} (single objectives only)") from None
    config = RefineConfig(steps=v["steps"], candidates=v["candidates"], lr=v["lr"], tau_start=v["tau_start"],
                          tau_end=v["tau_end"], tau_schedule=v["tau_schedule"], hard=bool(v["hard"]),
                          samples=v["samples"], init_peak=v["init_peak"], penalty=v["penalty"],
                          eval_every=v["eval_every"])
    sp = get_space(space_name)
    starts = None
    if not v["uniform"]:
        rows = [r for r in data["designs"] if isinstance(r, dict) and r.get("design") != "baseline"]
        genomes = [r.get("genome") for r in rows]
        if not genomes:
            raise FlagError(f"--input={v['input']!r} holds no designs to refine (pass --uniform to "
                            "start from uniform logits)")
        for i, g in enumerate(genomes):
            if not isinstance(g, list) or len(g) != sp.n_genes:
                raise FlagError(f"--input: designs[{i}].genome must be a list of {sp.n_genes} choice "
                                f"indices for space {sp.name!r}")
        try:
            starts = sp.check(genomes)
        except ValueError as e:
            raise FlagError(f"--input: {e}") from None
        starts = starts[: (v["top"] or v["candidates"])]
    if acc == "surrogate" and not _has_accuracy_surrogate(sp, v["surrogate_dir"]):
        raise FlagError(f"--accuracy_source=surrogate: the surrogate set for {sp.name} has no accuracy "
                        "model; use --accuracy_source=constant")
    output = v["output"] or os.path.join(os.path.dirname(os.path.abspath(v["input"])), "refined.json")
    from cimnas_jax.cli import common as C
    C.seed(v)
    C.out_file({"output": output}, "output")
    return dict(space=sp, hw_source=hw, accuracy_source=acc, accuracy_value=acc_value, objective=objective,
                config=config, starts=starts, output=output)


def _has_accuracy_surrogate(sp, surrogate_dir: str) -> bool:
    from cimnas_jax.surrogate.io import default_set_path, read_manifest
    try:
        man = read_manifest(surrogate_dir or default_set_path(sp))
    except (FileNotFoundError, ValueError):
        return False
    return (man.get("model") or {}).get("acc") is not None


def design_rows(sp, fitness, objective, genomes) -> list[dict]:
    """Exact metrics with units and decoded values for ``genomes`` (one row each)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    g = jnp.asarray(np.asarray(genomes, np.int32))
    m = jax.device_get(jax.jit(fitness)(g))
    F, viol = jax.device_get(objective(m))
    dec = jax.device_get(sp.decode(g))
    fin = lambda x: float(x) if np.isfinite(x) else None
    rows = []
    for i in range(len(genomes)):
        r = {f"objective_{objective.name}": fin(F[i, 0]), "violation": fin(viol[i])}
        for k in ("energy_j", "latency_s", "area_mm2", "accuracy", "cells_needed", "cells_available"):
            r[k] = fin(m[k][i])
        e, l, a = m["energy_j"][i], m["latency_s"][i], m["area_mm2"][i]
        r["edap_j_s_mm2"] = fin(e * l * a)
        r["valid"] = bool(m["valid"][i])
        r["values"] = {n: float(dec[n][i]) for n in sp.gene_names}
        rows.append(r)
    return rows


def main(argv):
    from cimnas_jax.cli.common import fail
    logging.set_verbosity(logging.WARNING)
    v = {n: FLAGS[n].value for n in NAMES}
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags are --name=value")
    try:
        data = read_input(v["input"])
        s = resolve(v, data)
    except FlagError as e:
        fail(str(e))

    import jax
    from cimnas_jax.fileio import atomic_write_json
    from cimnas_jax.pipeline import make_fitness
    from cimnas_jax.relax.fitness import make_soft_fitness
    from cimnas_jax.relax.refine import refine

    sp, objective, config = s["space"], s["objective"], s["config"]
    surrogate = None
    if "surrogate" in (s["hw_source"], s["accuracy_source"]):
        from cimnas_jax.surrogate import load_surrogates
        surrogate = load_surrogates(sp.name, v["surrogate_dir"] or None)
    exact = make_fitness(sp, s["hw_source"], s["accuracy_source"], surrogate, s["accuracy_value"])
    soft = make_soft_fitness(sp, s["hw_source"], s["accuracy_source"], surrogate, s["accuracy_value"])
    n_starts = 0 if s["starts"] is None else len(s["starts"])
    print(f"refine: {sp.name}, objective {objective.name}, hardware {s['hw_source']}, accuracy "
          f"{s['accuracy_source']}, {config.candidates} candidates from "
          f"{'uniform logits' if s['starts'] is None else f'{n_starts} designs of ' + v['input']}, "
          f"{config.steps} steps, lr {config.lr}, tau {config.tau_start} -> {config.tau_end} "
          f"({config.tau_schedule}), device {jax.default_backend()}", flush=True)
    t0 = time.perf_counter()
    res = refine(sp, exact, soft, objective, s["starts"], config, jax.random.key(v["seed"]),
                 log=lambda line: print("  " + line, flush=True))
    wall = time.perf_counter() - t0
    summary = res.summary(sp)
    order = res.order()
    rows = design_rows(sp, exact, objective, res.genomes[order])
    detail = summary.pop("candidates_detail")
    designs = []
    for rank, (k, r) in enumerate(zip(order, rows)):
        designs.append(dict(rank=rank, **detail[int(k)], metrics=r))
    out = dict(
        input=os.path.abspath(v["input"]), command=" ".join(sys.argv),
        settings=dict(space=sp.name, hw_source=s["hw_source"], accuracy_source=s["accuracy_source"],
                      accuracy_value=s["accuracy_value"], objective=objective.name,
                      constraints=dict(capacity=objective.constraints.capacity,
                                       area_limit_mm2=objective.constraints.area_limit_mm2,
                                       accuracy_floor=objective.constraints.accuracy_floor),
                      seed=v["seed"]),
        units={"energy_j": "J", "latency_s": "s", "area_mm2": "mm^2", "edap_j_s_mm2": "J*s*mm^2",
               "accuracy": "fraction", "cells_needed": "cells", "cells_available": "cells",
               "timing_s": "s (wall clock)"},
        metrics_source=f"exact genome-level fitness: hardware {s['hw_source']} model, accuracy "
                       f"{s['accuracy_source']}",
        wall_s=wall, refine=summary, designs=designs)
    os.makedirs(os.path.dirname(os.path.abspath(s["output"])) or ".", exist_ok=True)
    atomic_write_json(s["output"], out)
    best = designs[0] if designs else None
    if best and best["objective"] is not None:
        gain = (f", {best['start_objective'] / best['objective']:.4f}x its start"
                if best.get("start_objective") else "")
        print(f"best: {objective.name} = {best['objective']:.4e} ({best['status']}{gain}); "
              f"{summary['accepted']}/{len(designs)} candidates improved; "
              f"{summary['exact_evaluations']} exact evaluations, {res.gradient_steps} gradient steps "
              f"x {config.candidates} candidates")
    else:
        print("no design with a finite exact score")
    print(f"wrote {s['output']} ({wall:.1f} s)")


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
