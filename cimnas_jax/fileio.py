"""Atomic file writes: a killed job leaves either the old file or the new one, never half."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def atomic_write(path, data: bytes | str) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path``: tmp file, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path, obj, indent: int = 1, **kw) -> None:
    """Readable JSON (numpy scalars and arrays allowed), written atomically."""
    atomic_write(path, json.dumps(obj, indent=indent, default=_json_default, **kw) + "\n")
