"""The ``cimloop`` hardware backend: real CiMLoop (timeloop-mapper + accelergy) per layer.

CiMLoop is imported lazily, inside the worker that evaluates a layer; importing this
module never needs it. ``CimloopBackend(...)`` checks the installation first and raises
``CimloopUnavailable`` saying what to install or set.

Per layer record: a fresh temporary directory holds the workload file and timeloop's
outputs (removed afterwards; a killed job's directories are removed by the pool), the
spec is built through CiMLoop's own front end (``top.yaml.jinja2`` + its
``ArrayProcessor``, as ``scripts/utils.py:get_spec`` does), the variables and node
attributes from ``config.spec_inputs`` are set, ``timeloopfe.call_mapper`` runs, and
the output statistics are read into the reference result schema.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Mapping, Sequence

from .cache import ResultCache
from .config import CimloopConfig, cache_key, canonical_record, spec_inputs, workload_yaml
from .runner import run_records
from .stack import stack_version
from .totals import COMPONENTS

ENV_MODELS_DIR = "CIMLOOP_MODELS_DIR"
ENV_SCRIPTS_DIR = "CIMLOOP_SCRIPTS_DIR"
ENV_CACHE = "CIMNAS_CIMLOOP_CACHE"
JOB_ROOT = os.path.join(tempfile.gettempdir(), "cimnas_jax_cimloop_jobs")

INSTALL_HINT = (
    "The cimloop backend needs CiMLoop's stack: timeloop (timeloop-mapper on PATH), "
    "accelergy with the NeuroSim, ADC, CACTI and library plug-ins, timeloop-python "
    "(`import pytimeloop.timeloopfe.v4`), and a checkout of mit-emze/cimloop whose "
    "workspace/models folder is given by --cimloop_models_dir or the CIMLOOP_MODELS_DIR "
    "environment variable (see docs/cimloop_backend.md)."
)


class CimloopUnavailable(ImportError):
    """CiMLoop (or part of its stack) is not installed or not found."""


def default_cache_path() -> str:
    return os.environ.get(ENV_CACHE) or os.path.join(
        os.path.expanduser("~"), ".cache", "cimnas_jax", "cimloop_results.sqlite")


def locate(models_dir: str | None = None) -> tuple[str, str]:
    """(models_dir, scripts_dir) from the argument or the environment; raises if absent."""
    models_dir = models_dir or os.environ.get(ENV_MODELS_DIR)
    if not models_dir:
        raise CimloopUnavailable(f"CiMLoop models folder not set. {INSTALL_HINT}")
    models_dir = os.path.abspath(os.path.expanduser(models_dir))
    if not os.path.isfile(os.path.join(models_dir, "top.yaml.jinja2")):
        raise CimloopUnavailable(
            f"{models_dir} has no top.yaml.jinja2: not a CiMLoop models folder "
            f"(expected <cimloop>/workspace/models). {INSTALL_HINT}")
    scripts_dir = os.environ.get(ENV_SCRIPTS_DIR) or os.path.join(models_dir, "..", "scripts")
    scripts_dir = os.path.abspath(scripts_dir)
    if not os.path.isfile(os.path.join(scripts_dir, "processors.py")):
        raise CimloopUnavailable(
            f"CiMLoop's scripts/processors.py not found in {scripts_dir}; set "
            f"{ENV_SCRIPTS_DIR} to CiMLoop's workspace/scripts folder. {INSTALL_HINT}")
    return models_dir, scripts_dir


def check_installation(models_dir: str | None = None) -> dict:
    """Raise CimloopUnavailable naming what is missing; return paths and versions."""
    models, scripts = locate(models_dir)
    try:
        importlib.import_module("pytimeloop.timeloopfe.v4")
    except Exception as e:  # noqa: BLE001
        raise CimloopUnavailable(f"cannot import pytimeloop.timeloopfe.v4 ({e}). "
                                 f"{INSTALL_HINT}") from e
    missing = [t for t in ("timeloop-mapper", "accelergy") if shutil.which(t) is None]
    if missing:
        raise CimloopUnavailable(f"{missing} not on PATH. {INSTALL_HINT}")
    return {"models_dir": models, "scripts_dir": scripts, "version": stack_version(models)}


def _set_attribute(spec, path: str, value) -> None:
    """Set ``node.spatial.meshX`` / ``node.attributes.depth`` style paths on the spec."""
    node, group, attr = path.split(".")
    leaf = spec.architecture.find(node)
    getattr(leaf, group)[attr] = value


def _remove_job_dirs(pid: int) -> None:
    shutil.rmtree(os.path.join(JOB_ROOT, str(pid)), ignore_errors=True)


def parse_output(stats, record: Mapping) -> dict:
    """timeloopfe OutputStats -> reference ``result`` dict (SI units)."""
    v = stats.variables
    rec = canonical_record(record)
    hw = rec["hw"]
    scale = 1.0
    for name in ("ENCODED_INPUT_BITS", "ENCODED_WEIGHT_BITS", "ENCODED_OUTPUT_BITS"):
        scale *= float(v.get(name, 1))
    energy_by = {k: float(x) for k, x in stats.per_component_energy.items()}
    area_by = {k: float(x) for k, x in stats.per_component_area.items()}
    energy = sum(energy_by.values())
    cycles = int(stats.cycles)
    cycle_s = float(stats.cycle_seconds)
    if not (cycles > 0 and math.isfinite(energy) and energy > 0):
        raise RuntimeError(f"timeloop returned no usable result (cycles={cycles}, "
                           f"energy={energy})")
    computes = float(stats.computes) / scale
    macro_parts = ("cim_unit", "row_drivers", "column_drivers", "adc")
    n_macros = hw["router_group"] * hw["tiles"] * hw["macros_per_tile"]
    area_macros = sum(area_by.get(c, 0.0) for c in macro_parts)
    eb = {c: energy_by.get(c, 0.0) for c in COMPONENTS}
    other = energy - sum(eb.values())
    if abs(other) > 1e-9 * energy:
        eb["other"] = other
    w, bpc = rec["weight_bits"], hw["bits_per_cell"]
    return {
        "energy_J": energy,
        "cycles": cycles,
        "cycle_seconds": cycle_s,
        "latency_s": cycles * cycle_s,
        "area_m2_total": sum(area_by.values()),
        "area_m2_per_macro": area_macros / n_macros,
        "area_m2_macros": area_macros,
        "area_m2_tile_buffers": area_by.get("input_buffer", 0.0) + area_by.get("output_buffer", 0.0),
        "area_m2_chip_level": area_by.get("glb", 0.0) + area_by.get("router", 0.0),
        "n_macros": n_macros,
        "computes": computes,
        "utilization_percent": float(stats.percent_utilization),
        "tops_per_w": 2 * computes / energy / 1e12,
        "energy_breakdown_J": eb,
        "area_breakdown_m2": {c: area_by[c] for c in area_by if area_by[c] != 0.0},
        "derived": {"weight_bits_per_slice": min(w, bpc), "n_weight_slices": -(-w // bpc),
                    "cim_unit_width_cells": 1},
        "mapping": stats.mapping if isinstance(stats.mapping, str) else None,
    }


def _config_from_dict(config: Mapping) -> CimloopConfig:
    return CimloopConfig(**{**config, "fixed_variables": tuple(
        tuple(kv) for kv in config["fixed_variables"])})


def build_spec(record: Mapping, cfg: CimloopConfig, job_dir: str):
    """CiMLoop spec for one layer record, built through CiMLoop's own front end.

    Writes the workload file into ``job_dir``; returns a timeloopfe v4 Specification with
    the record's variables and node attributes set (``scripts/utils.py:get_spec`` +
    ``run_layer`` with a per-job workload file instead of a shared one).
    """
    models_dir, scripts_dir = locate(cfg.models_dir)
    if scripts_dir not in sys.path:
        sys.path.insert(0, scripts_dir)
    import pytimeloop.timeloopfe.v4 as tl  # lazy: only where CiMLoop runs
    from processors import ArrayProcessor  # CiMLoop's own spec processor

    inputs = spec_inputs(record, cfg)
    layer_path = os.path.join(job_dir, "layer.yaml")
    with open(layer_path, "w") as f:
        f.write(workload_yaml(record["layer"],
                              os.path.join(models_dir, "workloads", "problem_base.yaml"),
                              name=record["layer"].get("name", "layer")))
    jinja = {**inputs["jinja_parse_data"], **inputs["get_spec"],
             "iso": inputs["get_spec"]["macro"], "layer": layer_path}
    spec = tl.Specification.from_yaml_files(
        os.path.join(models_dir, "top.yaml.jinja2"), processors=[ArrayProcessor],
        jinja_parse_data=jinja)
    variables = inputs["variables"]
    spec.variables.update(variables)
    for k in list(spec.variables.keys()):  # keep set values first (as run_layer does)
        if k not in variables:
            spec.variables[k] = spec.variables.pop(k)
    for path, value in inputs["attributes"].items():
        _set_attribute(spec, path, value)
    return spec


def evaluate_layer(record: Mapping, config: Mapping) -> dict:
    """Run CiMLoop on one layer record (called in a worker process).

    ``config``: CimloopConfig fields as a dict (picklable), models_dir included.
    Raises on any failure (e.g. timeloop finding no valid mapping).
    """
    import pytimeloop.timeloopfe.v4 as tl

    cfg = _config_from_dict(config)
    root = os.path.join(JOB_ROOT, str(os.getpid()))
    os.makedirs(root, exist_ok=True)
    job_dir = tempfile.mkdtemp(prefix="job_", dir=root)
    t0 = time.perf_counter()
    try:
        spec = build_spec(record, cfg, job_dir)
        stats = tl.call_mapper(specification=spec, output_dir=job_dir,
                               log_to=os.path.join(job_dir, "timeloop-mapper.log"))
        result = parse_output(stats, record)
        result["eval_seconds"] = time.perf_counter() - t0
        return result
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


class CimloopBackend:
    """Hardware backend running real CiMLoop per distinct (layer, bits, hardware).

    evaluate_records(records) -> records with status/error/result (reference schema),
    deduplicated by cache key, cached in SQLite, evaluated by ``workers`` processes
    with ``timeout_s`` per layer. ``last_stats`` holds the last call's statistics.
    """

    name = "cimloop"

    def __init__(self, models_dir: str | None = None, cache_path: str | None = None,
                 workers: int | None = None, timeout_s: float | None = 900.0,
                 config: CimloopConfig | None = None, retry_failed: bool = False,
                 executor: str = "local", dask_scheduler: str | None = None, dask_retries: int = 1):
        info = check_installation(models_dir)
        base = config or CimloopConfig()
        self.config = dataclasses.replace(base, models_dir=info["models_dir"],
                                          version=info["version"])
        self.cache = ResultCache(cache_path or default_cache_path())
        self.workers = workers or max(1, (os.cpu_count() or 1))
        self.timeout_s = timeout_s
        self.retry_failed = retry_failed
        self.last_stats: dict = {}
        # executor: "local" (runner.WorkerPool on this machine) or "dask" (dask_executor: one Dask
        # task per layer on a LocalCluster of `workers`, or on the cluster at `dask_scheduler`)
        self.executor, self.dask_scheduler, self.dask_retries = executor, dask_scheduler, dask_retries
        self._client = None

    def key(self, record: Mapping) -> str:
        return cache_key(record, self.config)

    def evaluate_records(self, records: Sequence[Mapping], progress=None) -> list[dict]:
        """Records whose fields cannot be canonicalised (a missing or non-numeric knob, a
        technology_nm / cell pair no technology has) come back as ``status="error"`` naming the
        field, without running anything; the rest go through the job runner."""
        cfg = dataclasses.asdict(self.config)
        out: list = [None] * len(records)
        good = []
        for i, r in enumerate(records):
            try:
                self.key(r)
                good.append(i)
            except ValueError as e:  # RecordError and the workload checks
                out[i] = {**dict(r), "status": "error", "result": None, "cache_key": None, "cache_hit": False,
                          "error": f"record {r.get('id', i)!r}: {e}"}
        if getattr(self, "executor", "local") != "local":   # dask: one task per distinct layer (dask_executor)
            from .dask_executor import execute_records, make_client
            if getattr(self, "_client", None) is None:
                self._client = make_client(self.dask_scheduler, self.workers)
            done, self.last_stats = execute_records(
                self.executor, [records[i] for i in good], functools.partial(evaluate_layer, config=cfg), self.key,
                cache=self.cache, backend_name=self.name, workers=self.workers, timeout_s=self.timeout_s,
                retry_failed=self.retry_failed, progress=progress, dask_client=self._client,
                dask_retries=self.dask_retries)
            for i, r in zip(good, done):
                out[i] = r
            self.last_stats["n_rejected_input"] = len(records) - len(good)
            return out
        done, self.last_stats = run_records(
            [records[i] for i in good], functools.partial(evaluate_layer, config=cfg), key_fn=self.key,
            cache=self.cache, backend_name=self.name, workers=self.workers,
            timeout_s=self.timeout_s, retry_failed=self.retry_failed, progress=progress,
            on_worker_killed=_remove_job_dirs)
        for i, r in zip(good, done):
            out[i] = r
        self.last_stats["n_rejected_input"] = len(records) - len(good)
        return out

    def close(self) -> None:
        """Close the Dask client (and its LocalCluster) if one was opened."""
        if getattr(self, "_client", None) is not None:
            from .dask_executor import close_client
            close_client(self._client)
            self._client = None


def get_cimloop_backend(**kwargs) -> CimloopBackend:
    """Entry point for ``cimnas_jax.hw.get_backend("cimloop", **kwargs)``."""
    return CimloopBackend(**kwargs)


def cimloop_available(models_dir: str | None = None) -> tuple[bool, str]:
    """(True, "") when the backend can run here, else (False, reason)."""
    try:
        check_installation(models_dir)
        return True, ""
    except CimloopUnavailable as e:
        return False, str(e)


__all__ = ["build_spec", "CimloopBackend", "CimloopUnavailable", "check_installation", "cimloop_available",
           "evaluate_layer", "get_cimloop_backend", "locate", "parse_output"]
