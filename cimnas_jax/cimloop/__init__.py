"""Real CiMLoop backend (lazy: importable without CiMLoop) and its job/cache machinery.

- ``config``: CiMLoop configuration, spec variables per layer record, canonical cache keys.
- ``runner``: generic process pool + per-job timeout + cache over any evaluate function.
- ``cache``: SQLite result cache (WAL, busy timeout, INSERT OR IGNORE).
- ``totals``: per-design totals and TOPS figures from per-layer results.
- ``backend``: ``CimloopBackend`` (``get_backend("cimloop")``).
"""
from .cache import ResultCache
from .config import (CimloopConfig, cache_key, canonical_record, record_from_arrays,
                     spec_inputs, workload_instance, workload_yaml)
from .runner import WorkerPool, run_records
from .totals import design_totals
from .backend import (CimloopBackend, CimloopUnavailable, check_installation,
                      cimloop_available, get_cimloop_backend)

__all__ = ["ResultCache", "CimloopConfig", "cache_key", "canonical_record", "record_from_arrays",
           "spec_inputs", "workload_instance", "workload_yaml", "WorkerPool", "run_records",
           "design_totals", "CimloopBackend", "CimloopUnavailable", "check_installation",
           "cimloop_available", "get_cimloop_backend"]
