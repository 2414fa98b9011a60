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


class FolderBusy(RuntimeError):
    """Another process holds this output folder's lock."""


class FolderLock:
    """Exclusive lock on an output folder (``<folder>/.lock``, ``flock``): a second run on the same
    folder stops at once with a clear message. The kernel drops the lock when the holder exits,
    even after kill -9, so a killed run never leaves the folder locked.

        with FolderLock(out_dir, "label.py"):
            ...
    """

    def __init__(self, folder, tool: str = ""):
        self.folder = Path(folder)
        self.tool = tool
        self._fh = None

    def __enter__(self):
        import fcntl
        import time
        self.folder.mkdir(parents=True, exist_ok=True)
        fh = open(self.folder / ".lock", "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise FolderBusy(f"{self.folder} is in use by {holder}; wait for it to finish or use another "
                             "output folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{self.tool or 'a cimnas-jax run'} (pid {os.getpid()}, since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc):
        import fcntl
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None
