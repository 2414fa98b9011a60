"""``RunConfig``: everything that determines a main-job run, in one frozen dataclass.

Built from absl flags (one flag per field, defined from the dataclass itself), or loaded from a
JSON file or a Python file with ``get_config()``; saved as ``config.json`` in the run folder, so
``--config=<run>/config.json`` repeats the run exactly. ``check()`` validates every field before
any work and raises ``ConfigError`` naming the field (flag) and its allowed values.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

STAGES = ("search", "refine", "verify", "report")


class ConfigError(ValueError):
    """A configuration value outside what is allowed; the message names the field."""


def _f(default, help: str, **check):
    return dataclasses.field(default=default, metadata={"help": help, **check})


@dataclasses.dataclass(frozen=True)
class RunConfig:
    # ------------------------------------------------------------------ what is designed
    space: str = _f("mbv2_rram", "search space (python -m cimnas_jax.space --describe)", allowed="spaces")
    technology: str = _f("", "technology file of the hardware model ('' = the space's default)",
                         allowed="technologies", empty_ok=True)
    # ------------------------------------------------------------------ search
    algorithm: str = _f("ga", "search algorithm", allowed="algorithms")
    objective: str = _f("", "what is minimised ('' = the algorithm's default: EDAP/accuracy for ga; "
                            "2-4 comma-separated terms or a preset for nsga2)")
    coefficients: str = _f("", "priority / weighted_sum objectives: term=value,... (e.g. energy=1,error=2)")
    bounds: str = _f("", "priority / weighted_sum objectives: fixed min-max bounds term=lo:hi,...")
    population: int = _f(256, "population size (designs kept per generation)", lo=4)
    offspring: int = _f(0, "designs evaluated per generation (0 = population)", lo=0)
    generations: int = _f(60, "generations", lo=1)
    chunk: int = _f(10, "generations per lax.scan chunk (progress line + checkpoint)", lo=1)
    seed: int = _f(0, "PRNG seed", lo=0, hi=2 ** 31 - 1)
    crossover: str = _f("uniform", "crossover operator", allowed=("uniform", "group", "none"))
    mutation: str = _f("sparse", "mutation operator", allowed=("sparse", "dense"))
    crossover_prob: float = _f(0.9, "probability a mating uses crossover", lo=0.0, hi=1.0)
    mutation_rate: float = _f(0.0, "per-gene mutation probability (0 = 1 / number of genes)", lo=0.0, hi=1.0)
    archive_size: int = _f(256, "nsga2: Pareto archive capacity", lo=2)
    rng_impl: str = _f("threefry2x32", "PRNG implementation", allowed=("threefry2x32", "rbg", "unsafe_rbg"))
    hw_source: str = _f("analytic", "hardware scores during the search", allowed="hw_sources")
    accuracy_source: str = _f("surrogate", "accuracy during the search ('constant' = hardware-only search)",
                              allowed="accuracy_sources")
    surrogate_dir: str = _f("", "surrogate set folder ('' = the shipped cimnas_jax/assets/<space>/<technology>)")
    hw_correction: str = _f("", "--hw_source=calibrated: folder of the CiMLoop-trained hardware correction "
                            "(manifest.json + params.msgpack, e.g. a retrained one) ('' = the shipped one of the "
                            "technology, cimnas_jax/assets/hw_correction/<technology>)")
    area_limit_mm2: float = _f(800.0, "chip area limit in mm^2 (CIMNAS: 8 cm^2); 0 = off", lo=0.0)
    accuracy_floor: float = _f(0.0, "minimum predicted accuracy (fraction); 0 = off", lo=0.0, hi=0.9999)
    capacity: bool = _f(True, "require every weight to fit on the chip (cells needed <= cells available)")
    freeze: str = _f("", "genes held at the reference design's values during the search: comma-separated gene "
                         "groups (software, quantization, hardware-device, hardware-circuit, hardware-architecture, "
                         "hardware) or gene names; '' = search every gene")
    # ------------------------------------------------------------------ finalists
    finalists: int = _f(5, "designs handed from the search to verification", lo=1)
    finalist_rule: str = _f("distinct_hardware", "how finalists are chosen: distinct_hardware = the best design "
                            "of each distinct chip first (then designs whose metrics differ), distinct_designs = "
                            "the best distinct canonical designs", allowed=("distinct_hardware", "distinct_designs"))
    # ------------------------------------------------------------------ refine
    refine_steps: int = _f(0, "gradient refinement steps (0 = off)", lo=0)
    refine_candidates: int = _f(8, "designs refined (the best finalists)", lo=1)
    refine_lr: float = _f(0.05, "refinement learning rate (Adam on the logits)", lo=1e-9)
    refine_tau_start: float = _f(1.0, "Gumbel-softmax temperature at the first step", lo=1e-6)
    refine_tau_end: float = _f(0.1, "Gumbel-softmax temperature at the last step", lo=1e-6)
    # ------------------------------------------------------------------ verify
    verify_hw: str = _f("auto", "hardware ground truth for verification: cimloop (real CiMLoop; fails before the "
                        "search when it is not installed), analytic (the embedded model), auto (CiMLoop where "
                        "check_installation() passes, else the analytic model; the report says which and why)",
                        allowed="verify_hw")
    verify_tolerance: float = _f(0.05, "relative difference between the search model and the ground truth above "
                                 "which a finalist is flagged", lo=0.0)
    cimloop_models_dir: str = _f("", "CiMLoop workspace/models folder ('' = $CIMLOOP_MODELS_DIR)")
    cimloop_workers: int = _f(0, "CiMLoop worker processes (0 = number of CPUs)", lo=0)
    cimloop_timeout_s: float = _f(900.0, "seconds per CiMLoop layer evaluation before it is killed", lo=1.0)
    cimloop_executor: str = _f("local", "where CiMLoop layer evaluations run: local (a process pool here) or dask "
                               "(one Dask task per distinct layer: a LocalCluster of --cimloop_workers, or the "
                               "cluster at --dask_scheduler)", allowed=("local", "dask"))
    dask_scheduler: str = _f("", "Dask scheduler address (tcp://HOST:8786) for --cimloop_executor=dask ('' = a "
                             "LocalCluster on this machine)")
    cimloop_cache: str = _f("", "CiMLoop SQLite result cache ('' = $CIMNAS_CIMLOOP_CACHE or "
                            "~/.cache/cimnas_jax/cimloop_results.sqlite)")
    measure_accuracy: bool = _f(True, "measure the finalists' accuracy with the space's supernet")
    supernet_dir: str = _f("", "supernet folder ('' = the space's shipped supernet)")
    data_dir: str = _f("", "image data: Fashion-MNIST IDX folder ('' = the Debian package's)")
    test_images: int = _f(0, "test images per accuracy measurement (0 = all 10 000)", lo=0)
    finetune_steps: int = _f(60, "QAT fine-tuning steps (batch 128) for the best finalists and the baseline "
                             "(0 = off); accuracy is reported inherited and fine-tuned", lo=0)
    finetune_designs: int = _f(1, "found designs fine-tuned besides the baseline (the best by verified EDAP / "
                               "accuracy)", lo=0)
    # ------------------------------------------------------------------ active learning
    active_rounds: int = _f(0, "active-learning rounds (0 = off): each round searches with --hw_source=calibrated "
                            "and the current correction, verifies the finalists with --verify_hw, adds their layer "
                            "records to the correction's training set and retrains it (into the run folder) for "
                            "the next round", lo=0)
    active_fit_steps: int = _f(1000, "active learning: full-batch AdamW steps per correction fit", lo=1)
    active_fit_members: int = _f(8, "active learning: ensemble members of the retrained correction", lo=1)
    active_fit_hidden: str = _f("128,128", "active learning: MLP hidden widths of the retrained correction "
                                "(comma-separated)")
    active_fit_folds: int = _f(5, "active learning: grouped cross-validation folds (per-target shrink)", lo=2)
    # ------------------------------------------------------------------ run
    stages: str = _f(",".join(STAGES), "stages to run, comma-separated, in pipeline order; a later stage "
                                       "alone reuses the earlier stages' saved output in out_dir")

    # ------------------------------------------------------------------ derived
    @property
    def stage_list(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.stages.split(",") if s.strip())

    @property
    def active_hidden(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.active_fit_hidden.split(",") if x.strip())

    def replace(self, **kw) -> "RunConfig":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "RunConfig":
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(known)}")
        kw = {}
        for k, v in d.items():
            kw[k] = _coerce(known[k], v, where)
        return cls(**kw)

    # ------------------------------------------------------------------ validation
    def check(self) -> "RunConfig":
        """Validate every field (allowed values, ranges, combinations); returns self."""
        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name))
        bad = [s for s in self.stage_list if s not in STAGES]
        if bad or not self.stage_list:
            raise ConfigError(f"--stages={self.stages!r}: allowed a comma-separated subset of {','.join(STAGES)}")
        order = [STAGES.index(s) for s in self.stage_list]
        if order != sorted(order) or len(set(order)) != len(order):
            raise ConfigError(f"--stages={self.stages!r}: stages must be distinct and in pipeline order "
                              f"{','.join(STAGES)}")
        if self.cimloop_executor == "dask":
            import importlib.util
            if importlib.util.find_spec("distributed") is None:
                raise ConfigError("--cimloop_executor=dask needs dask[distributed] (pip install -r requirements-dask.txt)")
        if self.dask_scheduler and self.cimloop_executor != "dask":
            raise ConfigError(f"--dask_scheduler={self.dask_scheduler!r} is used only with --cimloop_executor=dask")
        if self.accuracy_floor and self.accuracy_source == "constant":
            raise ConfigError(f"--accuracy_floor={self.accuracy_floor:g} needs a real accuracy source: with "
                              "--accuracy_source=constant every design has the same accuracy")
        if self.active_rounds and self.hw_source != "calibrated":
            raise ConfigError(f"--active_rounds={self.active_rounds} needs --hw_source=calibrated (each round "
                              f"searches with the retrained CiMLoop correction), not --hw_source={self.hw_source!r}")
        if self.active_rounds and self.stage_list != STAGES:
            raise ConfigError(f"--active_rounds={self.active_rounds} runs every stage in each round; drop "
                              f"--stages={self.stages!r}")
        if self.hw_correction and self.hw_source != "calibrated":
            raise ConfigError(f"--hw_correction={self.hw_correction!r} is used only with --hw_source=calibrated")
        try:
            hidden = self.active_hidden
        except ValueError:
            hidden = ()
        if not hidden or min(hidden) < 1:
            raise ConfigError(f"--active_fit_hidden={self.active_fit_hidden!r} must be comma-separated positive "
                              "integers (e.g. 128,128)")
        if self.refine_tau_end > self.refine_tau_start:
            raise ConfigError(f"--refine_tau_end={self.refine_tau_end:g} must be <= --refine_tau_start="
                              f"{self.refine_tau_start:g}")
        if self.freeze:
            from cimnas_jax.search import freeze_mask
            from cimnas_jax.space import get_space
            try:
                mask = freeze_mask(get_space(self.space), self.freeze)
            except ValueError as e:
                raise ConfigError(f"--freeze={self.freeze!r}: {e}") from None
            if mask.all():
                raise ConfigError(f"--freeze={self.freeze!r} freezes every gene: nothing is left to search")
        from cimnas_jax.pipeline.objective import build_objective
        build_objective(self)          # raises ConfigError naming --objective/--coefficients/--bounds
        return self


def _coerce(f: dataclasses.Field, v: Any, where: str):
    t = f.type if isinstance(f.type, type) else {"str": str, "int": int, "float": float, "bool": bool}[f.type]
    if t is bool:
        if not isinstance(v, bool):
            raise ConfigError(f"{where}: field '{f.name}' must be true or false, got {v!r}")
        return v
    if t is int:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            raise ConfigError(f"{where}: field '{f.name}' must be an integer, got {v!r}")
        return int(v)
    if t is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{where}: field '{f.name}' must be a number, got {v!r}")
        return float(v)
    if not isinstance(v, str):
        raise ConfigError(f"{where}: field '{f.name}' must be a string, got {v!r}")
    return v


def allowed_values(kind: str) -> tuple[str, ...]:
    """The allowed values of an enumerated field, looked up where they are defined."""
    if kind == "spaces":
        from cimnas_jax.space import space_names
        return space_names()
    if kind == "technologies":
        from cimnas_jax.hw import technology_names
        return tuple(technology_names())
    if kind == "algorithms":
        from cimnas_jax.search import algorithm_names
        return algorithm_names()
    if kind == "hw_sources":
        from cimnas_jax.pipeline.fitness import HW_SOURCES
        return HW_SOURCES
    if kind == "accuracy_sources":
        from cimnas_jax.pipeline.fitness import ACCURACY_SOURCES
        return ACCURACY_SOURCES
    if kind == "verify_hw":
        from cimnas_jax.pipeline.verify import VERIFY_HW
        return VERIFY_HW
    raise KeyError(kind)


def _check_field(f: dataclasses.Field, v) -> None:
    m = f.metadata
    flag = f"--{f.name}={v!r}" if isinstance(v, str) else f"--{f.name}={v}"
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{flag} must be a finite number")
    allowed = m.get("allowed")
    if allowed is not None:
        values = allowed_values(allowed) if isinstance(allowed, str) else tuple(allowed)
        if not (m.get("empty_ok") and v == "") and v not in values:
            raise ConfigError(f"{flag}; allowed: {', '.join(map(str, values))}")
    lo, hi = m.get("lo"), m.get("hi")
    if lo is not None and v < lo or hi is not None and v > hi:
        kind = "an integer" if isinstance(v, int) and not isinstance(v, bool) else "a number"
        rng = (f">= {lo}" if hi is None else f"in [{lo}, {hi}]")
        raise ConfigError(f"{flag} must be {kind} {rng}")


# ---------------------------------------------------------------------- files
def load_config(path: str | Path) -> RunConfig:
    """A RunConfig from a JSON file (``config.json`` of a run) or a Python file defining
    ``get_config() -> dict | RunConfig``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config={path}: no such file")
    if p.suffix == ".py":
        spec = importlib.util.spec_from_file_location("_cimnas_user_config", p)
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception as e:  # noqa: BLE001 - a user file: report, do not crash
            raise ConfigError(f"--config={path}: cannot execute ({type(e).__name__}: {e})") from None
        if not hasattr(mod, "get_config"):
            raise ConfigError(f"--config={path}: a Python config must define get_config()")
        c = mod.get_config()
        return c if isinstance(c, RunConfig) else RunConfig.from_dict(dict(c), str(path))
    try:
        d = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config={path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"--config={path}: expected a JSON object of config fields")
    d = d.get("config", d)          # a results.json-style wrapper is accepted too
    return RunConfig.from_dict(d, str(path))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    from cimnas_jax.fileio import atomic_write_json
    atomic_write_json(path, cfg.to_dict(), indent=1, sort_keys=True)


# ---------------------------------------------------------------------- flags
def define_flags(flag_values=None, defaults: RunConfig | None = None) -> None:
    """Define one absl flag per RunConfig field (plus --config) on ``flag_values``."""
    from absl import flags
    fv = flag_values or flags.FLAGS
    d = defaults or RunConfig()
    flags.DEFINE_string("config", None, "load the configuration from a JSON (e.g. a run's config.json) or "
                        "Python (get_config()) file; flags given as well override it", flag_values=fv)
    for f in dataclasses.fields(RunConfig):
        default = getattr(d, f.name)
        help_ = f.metadata.get("help", "")
        allowed = f.metadata.get("allowed")
        if isinstance(allowed, tuple):
            help_ += f" (one of {', '.join(allowed)})"
        kind = type(default)
        define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                  str: flags.DEFINE_string}[kind]
        define(f.name, default, help_, flag_values=fv)


def config_from_flags(flag_values=None) -> RunConfig:
    """RunConfig from --config (if given) with every flag set on the command line on top."""
    from absl import flags
    fv = flag_values or flags.FLAGS
    base = load_config(fv["config"].value) if fv["config"].value else RunConfig()
    over = {f.name: fv[f.name].value for f in dataclasses.fields(RunConfig) if fv[f.name].present}
    return base.replace(**over)
