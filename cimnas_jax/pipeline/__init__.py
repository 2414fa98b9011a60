"""The main job as stages: search -> refine -> verify -> report, behind one ``RunConfig``.

    from cimnas_jax.pipeline import RunConfig, run
    out = run(RunConfig(population=64, generations=10), "runs/demo")

Each stage is one module with one function taking and returning plain dataclasses
(``results.py``), saved in the run folder, so any stage can be rerun alone on the previous
stage's saved output (``RunConfig(stages="verify,report")``):

    search  (search.py)  the algorithm from the registry on the configured fitness -> SearchResult
                         and the Finalists (best distinct designs + the space's reference design)
    refine  (refine.py)  gradient refinement of the finalists by cimnas_jax.relax, re-scored by the
                         search's fitness (off: a recorded copy)
    verify  (verify.py)  hardware ground truth and measured accuracy per finalist -> Verification
    report  (cimnas_jax.report.run)  report.md, results.json, finalists.csv, plots

With ``--active_rounds=N`` (``active.py``) the four stages run N times, each round in
``round_<r>/`` searching with the CiMLoop correction retrained on the earlier rounds' ground truth.
"""
from __future__ import annotations

import time
from pathlib import Path

from cimnas_jax.pipeline.config import (STAGES, ConfigError, RunConfig, config_from_flags, define_flags,
                                        load_config, save_config)
from cimnas_jax.pipeline.context import RunContext
from cimnas_jax.pipeline.fitness import ACCURACY_SOURCES, HW_SOURCES, fitness_for, make_fitness
from cimnas_jax.pipeline.results import Candidate, Finalists, SearchResult, Verification
from cimnas_jax.pipeline.search import select_finalists
from cimnas_jax.pipeline.verify import hardware_truth

# Fields that decide what the search computed: a later stage run alone must agree with them.
SEARCH_FIELDS = ("space", "technology", "algorithm", "objective", "coefficients", "bounds", "population",
                 "offspring", "generations", "seed", "crossover", "mutation", "crossover_prob", "mutation_rate",
                 "archive_size", "rng_impl", "hw_source", "hw_correction", "accuracy_source", "surrogate_dir", "area_limit_mm2",
                 "accuracy_floor", "capacity", "freeze", "finalists", "finalist_rule")


class RunFolderError(ValueError):
    """The run folder does not fit the request (holds another search, lacks a stage's output)."""


def baseline_genome(space):
    """Genome of the reference design the report compares against (int32 [G]); the space owns it."""
    return space.reference_genome()


def check(cfg: RunConfig, out_dir, resume: bool = False) -> None:
    """Every check that can fail before any work: fields, inputs of later stages, the run folder."""
    from cimnas_jax.pipeline import refine as refine_stage
    from cimnas_jax.pipeline import verify as verify_stage
    from cimnas_jax.space import get_space
    cfg.check()
    space = get_space(cfg.space)
    refine_stage.check_inputs(cfg, space)
    verify_stage.check_inputs(cfg, space)
    if cfg.hw_source == "calibrated":
        from cimnas_jax.pipeline.fitness import correction_info
        try:
            correction_info(cfg.technology or space.technology, cfg.hw_correction)
        except (FileNotFoundError, ValueError) as e:
            flag = f"--hw_correction={cfg.hw_correction}" if cfg.hw_correction else "--hw_source=calibrated"
            raise ConfigError(f"{flag}: {e}" + ("" if cfg.hw_correction else
                              " (no shipped correction for this technology; pass --hw_correction=FOLDER)")) from None
    import jax
    if jax.process_count() > 1:        # a multi-process search shards the population over every device
        ndev = jax.device_count()
        lam = cfg.offspring or cfg.population
        if cfg.population % ndev or lam % ndev:
            raise ConfigError(f"--population={cfg.population} --offspring={cfg.offspring}: a "
                              f"{jax.process_count()}-process run shards them over {ndev} devices; use multiples "
                              f"of {ndev}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out_dir={out} is a file, not a folder")
    if cfg.active_rounds:
        if jax.process_count() > 1:
            raise ConfigError(f"--active_rounds={cfg.active_rounds}: active learning runs in one process")
        from cimnas_jax.pipeline.active import check_folder
        check_folder(cfg, out, resume)
        return
    stages = cfg.stage_list
    ckpt = out / "checkpoints"
    if "search" in stages and not resume and ckpt.is_dir() and any(ckpt.iterdir()):
        raise RunFolderError(f"--out_dir={out} already holds a search ({ckpt}); pass --resume to continue it, "
                             "choose a new --out_dir, or run later stages alone with --stages=verify,report")
    if resume and "search" not in stages:
        raise RunFolderError("--resume continues a search: it needs 'search' in --stages")
    if resume:
        if not (ckpt.is_dir() and any(ckpt.iterdir())):
            raise RunFolderError(f"--resume: {out} holds no search checkpoint to continue; drop --resume to start")
        saved_cfg = out / "config.json"
        if saved_cfg.is_file():
            try:
                saved = load_config(saved_cfg).to_dict()
            except ConfigError:
                saved = None
            if saved is not None:
                # a resumed search may run for more generations; everything else must match
                diff = [k for k in SEARCH_FIELDS if k not in ("generations", "finalists", "finalist_rule")
                        and saved.get(k) != getattr(cfg, k)]
                if diff:
                    k = diff[0]
                    raise RunFolderError(f"--resume: the search in {out} ran with {k}={saved[k]!r}, this "
                                         f"configuration has {k}={getattr(cfg, k)!r}; resume with the same settings "
                                         "or start a new --out_dir")
    first = stages[0]
    if first != "search":
        from cimnas_jax.pipeline.results import has_stage, load_stage
        if not has_stage(out, "search"):
            raise RunFolderError(f"--stages={cfg.stages}: {out} holds no search output (stage_search.json); "
                                 "run the search stage first")
        saved = load_stage(out, "search")["config"]
        default = RunConfig()          # a field the saved run predates had its default value
        diff = {k: (saved.get(k, getattr(default, k)), getattr(cfg, k)) for k in SEARCH_FIELDS
                if saved.get(k, getattr(default, k)) != getattr(cfg, k)}
        if diff:
            k, (a, b) = next(iter(diff.items()))
            raise RunFolderError(f"--stages={cfg.stages}: the saved search in {out} ran with {k}={a!r}, this "
                                 f"configuration has {k}={b!r}; rerun the search or drop that flag")


def run(cfg: RunConfig, out_dir, resume: bool = False, log=print, truth_backend=None) -> dict:
    """Run the configured stages into ``out_dir``; returns the stage results (with
    ``--active_rounds``: the rounds, see ``active.run_active``). ``truth_backend``: a record backend
    the verify stage uses as the ground truth instead of the one --verify_hw names."""
    from cimnas_jax.fileio import FolderLock
    from cimnas_jax.pipeline import refine as refine_stage
    from cimnas_jax.pipeline import verify as verify_stage
    from cimnas_jax.pipeline.objective import build_objective
    from cimnas_jax.pipeline.results import has_stage, load_stage, save_stage
    from cimnas_jax.pipeline.search import finalists_from_search, run_search
    from cimnas_jax.provenance import provenance
    from cimnas_jax.report import run as report_run
    from cimnas_jax.space import get_space

    check(cfg, out_dir, resume)
    if cfg.active_rounds:
        from cimnas_jax.pipeline.active import run_active
        return run_active(cfg, out_dir, resume, log)
    from cimnas_jax.search.distributed import is_primary
    if not is_primary():
        return _search_worker(cfg, out_dir, resume)
    ctx = RunContext(Path(out_dir), resume=resume, log=log)
    space = get_space(cfg.space)
    stages = cfg.stage_list
    n = len(STAGES)
    with FolderLock(ctx.out_dir, "cimnas-jax run"):
        save_config(cfg, ctx.out_dir / "config.json")
        prov = provenance(seed=cfg.seed, stages=list(stages))
        fitness = fitness_for(cfg, space)
        objective = build_objective(cfg)
        conf = cfg.to_dict()
        sres = None
        if "search" in stages:
            from cimnas_jax.pipeline.fitness import search_model_info
            log(f"[1/{n}] search: {cfg.algorithm} on {space.name} ({space.n_genes} genes), population "
                f"{cfg.population}, {cfg.generations} generations, objective {objective.name}, hardware "
                f"{search_model_info(cfg, space)['name']}, accuracy {cfg.accuracy_source}, area limit {cfg.area_limit_mm2:g} mm^2")
            sres, state, search = run_search(cfg, ctx, space, fitness, objective)
            finalists = finalists_from_search(cfg, space, search, state, fitness, objective)
            save_stage(ctx.out_dir, "search", {"result": sres.to_dict(), "finalists": finalists.to_dict(),
                                               "search_model": search_model_info(cfg, space)}, conf)
            log(f"  finalists: {len(finalists.found)} designs ({finalists.rule}) + the reference design"
                + (f"; {finalists.note}" if finalists.note else ""))
        else:
            saved = load_stage(ctx.out_dir, "search")
            sres, finalists = SearchResult.from_dict(saved["result"]), Finalists.from_dict(saved["finalists"])
        refinement = None
        if "refine" in stages:
            log(f"[2/{n}] refine: " + ("off" if cfg.refine_steps == 0 else f"{cfg.refine_steps} gradient steps"))
            finalists, refinement = refine_stage.refine(cfg, ctx, space, finalists, fitness, objective)
            save_stage(ctx.out_dir, "refine", {"finalists": finalists.to_dict(), "summary": refinement}, conf)
        elif has_stage(ctx.out_dir, "refine") and stages[0] != "search":
            saved = load_stage(ctx.out_dir, "refine")
            finalists, refinement = Finalists.from_dict(saved["finalists"]), saved.get("summary")
        ver = None
        if "verify" in stages:
            log(f"[3/{n}] verify: {len(finalists.candidates)} designs")
            ver = verify_stage.verify(cfg, ctx, space, finalists, fitness, backend=truth_backend)
            save_stage(ctx.out_dir, "verify", {"verification": ver.to_dict(), "finalists": finalists.to_dict()},
                       conf)
        elif "report" in stages:
            saved = load_stage(ctx.out_dir, "verify")
            ver, finalists = Verification.from_dict(saved["verification"]), Finalists.from_dict(saved["finalists"])
        report = None         # ver is None only when neither verify nor report runs (e.g. --stages=search)
        if "report" in stages:
            wall = time.perf_counter() - ctx.started
            report = report_run.write(ctx.out_dir, space, cfg, sres, finalists, ver, prov, wall, refinement)
            log(f"[4/{n}] report: {report}  (total {wall:.0f} s)")
    return {"search": sres, "finalists": finalists, "refinement": refinement, "verification": ver, "report": report}


def _search_worker(cfg: RunConfig, out_dir, resume: bool) -> dict:
    """A process other than 0 of a multi-process run (jax.distributed): its share of the search and
    of the cooperative orbax checkpoints in out_dir/checkpoints, nothing else (no lock, no files, no
    log); process 0 runs the later stages and writes everything."""
    from cimnas_jax.pipeline.objective import build_objective
    from cimnas_jax.pipeline.search import run_search
    from cimnas_jax.space import get_space
    out = {"search": None, "finalists": None, "verification": None, "report": None}
    if "search" not in cfg.stage_list:
        return out
    space = get_space(cfg.space)
    ctx = RunContext(Path(out_dir), resume=resume, log=lambda line: None)
    out["search"], _, _ = run_search(cfg, ctx, space, fitness_for(cfg, space), build_objective(cfg))
    return out


__all__ = ["STAGES", "ConfigError", "RunConfig", "RunContext", "RunFolderError", "config_from_flags",
           "define_flags", "load_config", "save_config", "run", "check", "make_fitness", "fitness_for",
           "select_finalists", "hardware_truth", "baseline_genome", "Candidate", "Finalists", "SearchResult",
           "Verification", "HW_SOURCES", "ACCURACY_SOURCES"]
