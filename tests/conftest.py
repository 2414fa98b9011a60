"""Shared test helpers: where the read-only reference data lives, and skips that say why."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

SHARED = Path(os.environ.get("CIMNAS_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def shared_path(*parts: str) -> Path:
    """Path under ../shared, or skip the test saying it is absent (a newcomer's clone has none)."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference data {p} absent (../shared is not part of a fresh clone)")
    return p


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in open(path) if line.strip()]
