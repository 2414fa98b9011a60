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
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:         # disk full, read-only, interrupted: leave no *.tmp.<pid> behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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


class JsonlRead:
    """What ``parse_jsonl`` found: the records (dicts, file order), the 1-based line numbers of the
    corrupt lines it skipped, and the byte offset where a torn last line (no newline) starts
    (None when the file ends cleanly)."""

    def __init__(self, records, bad_lines, torn_at, torn_bytes):
        self.records, self.bad_lines, self.torn_at, self.torn_bytes = records, bad_lines, torn_at, torn_bytes

    @property
    def n_skipped(self) -> int:
        return len(self.bad_lines) + (self.torn_at is not None)

    def describe(self, path) -> str:
        """One warning line ('' when nothing was skipped)."""
        if not self.n_skipped:
            return ""
        parts = []
        if self.bad_lines:
            shown = ", ".join(map(str, self.bad_lines[:5])) + (", ..." if len(self.bad_lines) > 5 else "")
            parts.append(f"{len(self.bad_lines)} corrupt line(s) (line {shown})")
        if self.torn_at is not None:
            parts.append(f"a truncated last line ({self.torn_bytes} bytes)")
        return (f"warning: {path}: skipped {' and '.join(parts)}; kept the {len(self.records)} good "
                "record(s), the skipped designs are labelled again")


def parse_jsonl(data: bytes, required=(), accept=None) -> JsonlRead:
    """Parse JSON lines, skipping (not stopping at) a corrupt line: one that is not JSON, not an object,
    lacks a ``required`` key, or that ``accept(record)`` refuses. A last line without its newline (a write cut short) is reported
    as torn, not parsed, so a caller can cut it off before appending."""
    records, bad, pos, n = [], [], 0, 0
    torn_at = None
    while pos < len(data):
        nl = data.find(b"\n", pos)
        n += 1
        if nl < 0:
            torn_at = pos if data[pos:].strip() else None
            break
        line = data[pos:nl]
        pos = nl + 1
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError:            # JSONDecodeError, UnicodeDecodeError
            bad.append(n)
            continue
        if not isinstance(d, dict) or any(k not in d for k in required) or (accept and not accept(d)):
            bad.append(n)
            continue
        records.append(d)
    return JsonlRead(records, bad, torn_at, 0 if torn_at is None else len(data) - torn_at)


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


def replace_folder(tmp, path, replaced) -> Path:
    """Move the finished folder ``tmp`` into place at ``path`` (same parent; a rename, so readers see
    the old or the new folder, never a mix). Files of an existing ``path`` whose names are not in
    ``replaced`` (a README, figures) are carried over into the new folder; ``tmp`` is gone after."""
    import shutil
    tmp, path = Path(tmp), Path(path)
    try:
        if path.exists():
            for extra in path.iterdir():
                if extra.name not in replaced:
                    shutil.move(str(extra), tmp / extra.name)
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
