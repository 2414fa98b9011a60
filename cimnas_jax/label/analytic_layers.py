"""The analytic CIM model evaluated one layer record at a time: a stand-in for CiMLoop on the
record path (job runner, SQLite cache, local pool or Dask), so the executors can be tested and
timed without CiMLoop. Labels are the analytic model's, per layer.

    be = AnalyticLayerBackend(cache_path="/tmp/c.sqlite", executor="dask", workers=2)
    evaluated = be.evaluate_records(records)           # like CimloopBackend.evaluate_records

``analytic_layer_result(record)`` is picklable (a module-level function), so worker processes
and Dask tasks run it; it raises for a layer the model finds infeasible, as CiMLoop does for a
layer timeloop cannot map.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from typing import Mapping, Sequence

from cimnas_jax.cimloop.cache import ResultCache
from cimnas_jax.cimloop.config import CimloopConfig, cache_key
from cimnas_jax.cimloop.dask_executor import close_client, execute_records, make_client


def analytic_model_fingerprint() -> str:
    """sha256 of the analytic model's source and technology files (what determines its labels)."""
    import cimnas_jax.hw as hw_pkg
    h = hashlib.sha256()
    root = os.path.dirname(os.path.abspath(hw_pkg.__file__))
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name.endswith((".py", ".json")):
                with open(os.path.join(dirpath, name), "rb") as f:
                    h.update(name.encode() + f.read())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _predict():
    import jax
    from cimnas_jax.hw.records import predict_arrays
    return jax.jit(predict_arrays)     # one compile per worker process; ~6 ms per record after it


def analytic_layer_result(record: Mapping, technology: str | None = None) -> dict:
    """Result dict (reference schema: energy_J, latency_s, cycles, area_m2_total, breakdowns; SI
    units) of one layer record by the analytic model; RuntimeError if the model rejects the layer."""
    import numpy as np
    from cimnas_jax.hw.model import ENERGY_COMPONENTS
    from cimnas_jax.hw.records import records_to_arrays, tech_name_for
    from cimnas_jax.hw.tech import load_technology

    tname = technology or tech_name_for(record["hw"])
    tech = load_technology(tname)
    layers, hw = records_to_arrays([dict(record)], tech)
    pr = {k: (np.asarray(v) if not isinstance(v, dict) else {c: np.asarray(x) for c, x in v.items()})
          for k, v in _predict()(tech, layers, hw).items()}
    if not bool(pr["ok"][0]):
        raise RuntimeError("analytic model: layer infeasible (input+output feature maps exceed the global buffer)")
    eb = {c: float(pr["energy"][c][0]) for c in ENERGY_COMPONENTS}
    ab = {c: float(pr["area"][c][0]) for c in ENERGY_COMPONENTS}
    e = sum(eb.values())
    cyc = float(pr["cycles"][0])
    cs = float(np.asarray(hw.clock_period_s)[0] / np.asarray(hw.voltage_v)[0])
    macs = float(np.asarray(layers.macs)[0, 0])
    if not (np.isfinite(e) and e > 0 and cyc > 0):
        raise RuntimeError(f"analytic model: non-positive or non-finite result (energy {e} J, {cyc} cycles)")
    return {"energy_J": e, "cycles": cyc, "cycle_seconds": cs, "latency_s": cyc * cs,
            "area_m2_total": sum(ab.values()), "computes": macs, "tops_per_w": 2 * macs / e / 1e12,
            "energy_breakdown_J": eb, "area_breakdown_m2": ab, "backend": "analytic", "technology": tname}


class AnalyticLayerBackend:
    """Record-path backend: ``analytic_layer_result`` per distinct layer key, cached in SQLite,
    through the ``local`` pool or ``dask`` (``execute_records``). ``last_stats`` as CimloopBackend."""

    name = "analytic_layers"

    def __init__(self, cache_path: str = ":memory:", workers: int | None = None, timeout_s: float | None = None,
                 executor: str = "local", dask_scheduler: str | None = None, dask_retries: int = 1,
                 retry_failed: bool = False, technology: str | None = None):
        self.config = dataclasses.replace(CimloopConfig(),
                                          version=f"analytic-model-{analytic_model_fingerprint()[:16]}")
        self.cache = ResultCache(cache_path)
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.timeout_s = timeout_s
        self.executor = executor
        self.dask_scheduler = dask_scheduler
        self.dask_retries = dask_retries
        self.retry_failed = retry_failed
        self.technology = technology
        self.last_stats: dict = {}
        self._client = None

    def key(self, record: Mapping) -> str:
        return cache_key(record, self.config)

    def evaluate_records(self, records: Sequence[Mapping], progress=None) -> list[dict]:
        if self.executor == "dask" and self._client is None:
            self._client = make_client(self.dask_scheduler, self.workers)
        out, self.last_stats = execute_records(
            self.executor, records, functools.partial(analytic_layer_result, technology=self.technology),
            self.key, cache=self.cache, backend_name=self.name, workers=self.workers, timeout_s=self.timeout_s,
            retry_failed=self.retry_failed, progress=progress, dask_client=self._client,
            dask_retries=self.dask_retries)
        return out

    def close(self) -> None:
        """Close the Dask client (and its LocalCluster) if one was opened."""
        if self._client is not None:
            close_client(self._client)
            self._client = None
