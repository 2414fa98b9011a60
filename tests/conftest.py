"""Shared test helpers: where the read-only reference data lives, and skips that say why."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# One persistent XLA compilation cache per test session, shared by the pytest-xdist workers and
# every subprocess a test starts (they inherit the environment): the same programs (the main job's
# fitness, the search step) are compiled in many tests; from the second on they load from disk
# (test_pipeline + test_search_cli: 178 -> 132 CPU-seconds, measured). A fresh, empty folder each
# session (removed at exit), so a run never depends on an earlier one; a cache the user set is kept.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="cimnas_test_xla_")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

SHARED = Path(os.environ.get("CIMNAS_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def shared_path(*parts: str) -> Path:
    """Path under ../shared, or skip the test saying it is absent (a newcomer's clone has none)."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference data {p} absent (../shared is not part of a fresh clone)")
    return p


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path) if line.strip()]
