"""cimnas-jax label: label designs with a hardware backend into a resumable dataset folder.

  cimnas-jax label --out_dir=/tmp/labels --n=100 --backend=analytic
  cimnas-jax label --out_dir=/tmp/labels_cl --n=100 --backend=cimloop \
      --cimloop_models_dir=$HOME/cimloop/workspace/models --workers=16
  cimnas-jax label ... --backend=cimloop --executor=dask --dask_scheduler=tcp://head:8786   # a cluster

Writes designs.jsonl (one line per design, per-layer labels inside), designs.csv,
layers.csv, manifest.json (backend, configuration, versions, seed, command, units) and
stats.json (per-layer cache statistics as the cimloop backend uses them). Killed and
rerun with the same flags, it skips the designs already written. ``experiments/label.py``
is the same command.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time

from absl import flags

FLAGS = flags.FLAGS

BACKENDS = ("analytic", "cimloop", "analytic_layers")
EXECUTORS = ("local", "dask")
RECORD_BACKENDS = ("cimloop", "analytic_layers")   # evaluated layer by layer through an executor
SAMPLERS = ("uniform", "lhs", "file")


def define_flags():
    """Define this command's flags (called by cimnas_jax.cli.run_command before parsing)."""
    flags.DEFINE_string("space", "mbv2_rram", "search space name (cimnas_jax.space registry)")
    flags.DEFINE_string("backend", "analytic", f"hardware backend, one of {BACKENDS}: analytic = the "
                        "analytic model in jitted batches; cimloop = real CiMLoop per layer; analytic_layers = "
                        "the analytic model per layer record through the same job runner, cache and executor "
                        "as cimloop (a stand-in for testing and timing the executors)")
    flags.DEFINE_integer("n", 100, "designs to label (for --sampler=file: at most this many; 0 = all)")
    flags.DEFINE_string("sampler", "uniform", f"one of {SAMPLERS}: uniform over all genes, Latin "
                        "hypercube over hardware genes, or a file")
    flags.DEFINE_string("genomes_file", None, "search output (.json/.jsonl/.csv/.npy) for --sampler=file")
    flags.DEFINE_integer("seed", 0, "sampling seed")
    flags.DEFINE_string("out_dir", None, "dataset folder (created; reused to resume)")
    flags.DEFINE_integer("chunk_size", 32, "designs per batch (analytic jit batch / cimloop chunk)")
    flags.DEFINE_integer("workers", 0, "cimloop worker processes (0 = number of CPUs); with --executor=dask "
                         "and no --dask_scheduler: the LocalCluster's worker processes")
    flags.DEFINE_float("timeout_s", 900.0, "cimloop: seconds per layer evaluation before it is killed "
                       "(0 = no limit)")
    flags.DEFINE_string("executor", "local", f"where layer evaluations run, one of {EXECUTORS}: local = a process "
                        "pool on this machine; dask = one Dask task per distinct layer (needs dask[distributed])")
    flags.DEFINE_string("dask_scheduler", "", "--executor=dask: scheduler address (tcp://host:8786); '' = a "
                        "distributed.LocalCluster of --workers processes on this machine")
    flags.DEFINE_integer("dask_retries", 1, "--executor=dask: retries of a task whose worker died or that "
                         "failed outside the evaluation")
    flags.DEFINE_string("cache_db", None, "cimloop: SQLite result cache (default "
                        "$CIMNAS_CIMLOOP_CACHE or ~/.cache/cimnas_jax/cimloop_results.sqlite)")
    flags.DEFINE_string("cimloop_models_dir", None, "CiMLoop workspace/models folder "
                        "(default $CIMLOOP_MODELS_DIR)")
    flags.DEFINE_bool("retry_failed", False, "cimloop: evaluate cached failures/timeouts again")
    flags.DEFINE_float("seconds_per_cimloop_eval", 15.0, "for the designs/hour estimate in "
                       "stats.json (reference median with accelergy, one core)")
    flags.DEFINE_float("sleep_per_chunk_s", 0.0, "testing only: pause after each chunk "
                       "(lets a crash-resume test kill the run mid-way)")


def _git_commit() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        return subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def _model_fingerprint(backend: str, key_config) -> str:
    """sha256 of what determines the labels: the analytic model's source and technology
    files, or the CiMLoop configuration + versions. A resume across a change is refused."""
    if backend == "analytic":
        from cimnas_jax.label.analytic_layers import analytic_model_fingerprint
        return analytic_model_fingerprint()
    return hashlib.sha256(json.dumps(key_config.key_dict(), sort_keys=True).encode()).hexdigest()


def check_flags(v: dict) -> None:
    """Validate flag values (name -> value) before any work; raises ValueError naming the flag
    and its allowed values."""
    from cimnas_jax.space import space_names
    if v["space"] not in space_names():
        raise ValueError(f"--space={v['space']!r} is not allowed; use one of {tuple(space_names())}")
    if v["backend"] not in BACKENDS:
        raise ValueError(f"--backend={v['backend']!r} is not allowed; use one of {BACKENDS}")
    if v["sampler"] not in SAMPLERS:
        raise ValueError(f"--sampler={v['sampler']!r} is not allowed; use one of {SAMPLERS}")
    if not v["out_dir"]:
        raise ValueError("--out_dir is required (the dataset folder)")
    from cimnas_jax.cli import common as C
    C.out_folder(v, "out_dir")
    C.seed(v)
    if v["n"] < 0 or (v["n"] == 0 and v["sampler"] != "file"):
        raise ValueError(f"--n={v['n']} must be > 0 (0 = all, only with --sampler=file)")
    if v["sampler"] == "file" and not v["genomes_file"]:
        raise ValueError("--sampler=file needs --genomes_file=PATH")
    if v["chunk_size"] < 1:
        raise ValueError(f"--chunk_size={v['chunk_size']} must be an integer >= 1")
    if v["workers"] < 0:
        raise ValueError(f"--workers={v['workers']} must be >= 0 (0 = number of CPUs)")
    if not v["timeout_s"] >= 0:
        raise ValueError(f"--timeout_s={v['timeout_s']} must be > 0 seconds, or 0 = no limit")
    if v["executor"] not in EXECUTORS:
        raise ValueError(f"--executor={v['executor']!r} is not allowed; use one of {EXECUTORS}")
    if v["executor"] == "dask" and v["backend"] not in RECORD_BACKENDS:
        raise ValueError(f"--executor=dask runs layer evaluations: it needs --backend in {RECORD_BACKENDS}, "
                         f"not {v['backend']!r}")
    if v["dask_scheduler"] and v["executor"] != "dask":
        raise ValueError("--dask_scheduler needs --executor=dask")
    if v["dask_retries"] < 0:
        raise ValueError(f"--dask_retries={v['dask_retries']} must be an integer >= 0")
    if v["executor"] == "dask":
        from cimnas_jax.cimloop.dask_executor import DaskUnavailable, require_dask
        try:
            require_dask()
        except DaskUnavailable as e:
            raise ValueError(f"--executor=dask: {e}") from None


NAMES = ("space", "backend", "n", "sampler", "genomes_file", "seed", "out_dir", "chunk_size", "workers",
         "timeout_s", "executor", "dask_scheduler", "dask_retries")


class _CountingBackend:
    """Delegates to a record-path backend and sums its per-chunk statistics over the run."""

    def __init__(self, inner):
        self.inner, self.name, self.config = inner, inner.name, inner.config
        self.cache = inner.cache
        self.last_stats: dict = {}
        self.totals = {"n_records": 0, "n_unique": 0, "n_cache_hits": 0, "n_evaluated": 0, "n_failed": 0,
                       "wall_seconds": 0.0}

    def evaluate_records(self, records, progress=None):
        out = self.inner.evaluate_records(records, progress=progress)
        self.last_stats = self.inner.last_stats
        for k in self.totals:
            self.totals[k] += self.last_stats.get(k) or 0
        return out


def main(argv):
    from absl import logging

    from cimnas_jax.cli.common import fail
    from cimnas_jax.fileio import FolderBusy, FolderLock
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags are --name=value")
    v = {n: FLAGS[n].value for n in NAMES}
    try:
        check_flags(v)
    except ValueError as e:
        fail(str(e))
    from cimnas_jax.label import make_genomes
    from cimnas_jax.space import get_space
    try:                          # a bad genome file is bad input: refused before the folder exists
        genomes = make_genomes(get_space(v["space"]), v["sampler"], v["n"], v["seed"], v["genomes_file"])
    except (ValueError, OSError) as e:
        fail(f"--genomes_file={v['genomes_file']}: {e}" if v["sampler"] == "file" else f"--sampler: {e}")
    logging.set_verbosity(logging.INFO)
    existed = os.path.isdir(v["out_dir"])
    try:
        lock = FolderLock(v["out_dir"], "cimnas-jax label")
        lock.__enter__()
    except (FolderBusy, OSError) as e:
        fail(f"--out_dir={v['out_dir']}: {e}")
    try:
        _label(fail, genomes)
    except SystemExit:            # a handled error: leave no empty folder behind
        if not existed:
            _remove_if_empty(v["out_dir"])
        raise
    finally:
        lock.__exit__(None, None, None)


def _remove_if_empty(folder: str) -> None:
    """Remove ``folder`` if it holds nothing but its lock file (and leftover tmp files of this pid)."""
    try:
        names = os.listdir(folder)
        if all(n == ".lock" or n.endswith(f".tmp.{os.getpid()}") for n in names):
            for n in names:
                os.unlink(os.path.join(folder, n))
            os.rmdir(folder)
    except OSError:
        pass


def _label(fail, genomes):
    from absl import logging
    import jax
    import numpy as np

    from cimnas_jax.cimloop import CimloopConfig
    from cimnas_jax.fileio import atomic_write_json
    from cimnas_jax.label import UNITS, LabelStore, design_layer_records, key_statistics, run_labelling
    from cimnas_jax.space import get_space

    sp = get_space(FLAGS.space)
    genomes_sha = hashlib.sha256(np.ascontiguousarray(genomes).tobytes()).hexdigest()
    store = LabelStore(FLAGS.out_dir)

    backend_obj = None
    key_config = CimloopConfig()
    timeout_s = FLAGS.timeout_s or None
    executor = dict(executor=FLAGS.executor, dask_scheduler=FLAGS.dask_scheduler or None,
                    dask_retries=FLAGS.dask_retries)
    if FLAGS.backend == "cimloop":
        from cimnas_jax.cimloop import CimloopBackend, CimloopUnavailable
        try:
            backend_obj = CimloopBackend(models_dir=FLAGS.cimloop_models_dir,
                                         cache_path=FLAGS.cache_db,
                                         workers=FLAGS.workers or None,
                                         timeout_s=timeout_s,
                                         retry_failed=FLAGS.retry_failed, **executor)
        except CimloopUnavailable as e:
            fail(f"--backend=cimloop: {e}")
    elif FLAGS.backend == "analytic_layers":
        from cimnas_jax.cimloop.backend import default_cache_path
        from cimnas_jax.label.analytic_layers import AnalyticLayerBackend
        backend_obj = AnalyticLayerBackend(cache_path=FLAGS.cache_db or default_cache_path(),
                                           workers=FLAGS.workers or None, timeout_s=timeout_s,
                                           retry_failed=FLAGS.retry_failed, technology=sp.technology, **executor)
    if backend_obj is not None:
        key_config = backend_obj.config
        backend_obj = _CountingBackend(backend_obj)

    ident = {"space": FLAGS.space, "backend": FLAGS.backend, "sampler": FLAGS.sampler,
             "seed": FLAGS.seed, "n_designs": int(genomes.shape[0]),
             "genomes_sha256": genomes_sha,
             "model_fingerprint": _model_fingerprint(FLAGS.backend, key_config)}
    old = store.read_manifest()
    if old is not None:
        diff = {k: (old.get(k), v) for k, v in ident.items() if old.get(k) != v}
        if diff:
            fail(f"--out_dir={FLAGS.out_dir} holds another run (differs in {diff}); use a fresh --out_dir")
    manifest = {
        **ident,
        "genomes_file": FLAGS.genomes_file,
        "command": [sys.executable] + sys.argv,
        "technology": sp.technology,
        "cimloop_config": key_config.key_dict(),
        "versions": {"python": platform.python_version(), "jax": jax.__version__,
                     "numpy": np.__version__, "cimnas_jax_git": _git_commit()},
        "units": UNITS,
        "files": {"designs.jsonl": "one JSON line per design, per-layer labels in 'layers'",
                  "designs.csv": "flat per-design labels", "layers.csv": "flat per-layer labels",
                  "stats.json": "cache statistics and run timing"},
        "started_unix": (old or {}).get("started_unix", time.time()),
        "complete": False,
    }
    store.write_manifest(manifest)

    try:
        run = run_labelling(sp, genomes, store, backend=FLAGS.backend, backend_obj=backend_obj,
                            chunk_size=FLAGS.chunk_size, key_config=key_config, log=logging.info,
                            sleep_per_chunk_s=FLAGS.sleep_per_chunk_s)
    except ValueError as e:       # the folder's designs belong to another run
        fail(f"--out_dir={FLAGS.out_dir}: {e}")
    finally:
        if backend_obj is not None:
            backend_obj.inner.close()     # the Dask client and its LocalCluster, if one was opened
    stats = key_statistics(design_layer_records(sp, genomes), key_config,
                           FLAGS.seconds_per_cimloop_eval)
    designs = store.read_designs()
    stats.update(run=run, n_valid=sum(1 for d in designs if d["valid"]), skipped_lines=store.skipped,
                 designs_per_hour_this_run=(3600.0 * run["n_written"] / run["wall_seconds"]
                                            if run["n_written"] else None))
    if backend_obj is not None:
        stats["layer_evaluations_this_run"] = {**backend_obj.totals, "executor": FLAGS.executor}
        if FLAGS.backend == "cimloop":
            stats["cimloop_cache"] = backend_obj.cache.stats()
    atomic_write_json(os.path.join(FLAGS.out_dir, "stats.json"), stats)
    store.export_csv()
    manifest.update(complete=len(designs) == genomes.shape[0], finished_unix=time.time())
    store.write_manifest(manifest)
    from cimnas_jax.report import labels as label_report
    summary = label_report.write(FLAGS.out_dir, designs, manifest, stats)
    print(f"wrote {summary} and labels.png", flush=True)
    logging.info("done: %d designs (%d valid) in %s; stats: %s", len(designs), stats["n_valid"],
                 FLAGS.out_dir, json.dumps({k: v for k, v in stats.items() if k != "run"}))
