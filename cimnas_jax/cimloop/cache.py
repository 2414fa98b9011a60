"""SQLite result cache for per-layer evaluations.

Keyed by ``config.cache_key`` (canonical hash of layer shape, bits, hardware values and
backend configuration/version). Safe with several processes writing at once (WAL
journal, busy timeout, INSERT OR IGNORE: the first result for a key wins) and after
kill -9 (every insert is its own committed transaction; SQLite's journal rolls back a
half-written one).
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Iterable, Mapping

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,          -- ok | error | timeout
    error TEXT,
    result TEXT,                   -- JSON of the result dict (ok only)
    record TEXT NOT NULL,          -- JSON of the canonical record evaluated
    backend TEXT NOT NULL,
    eval_seconds REAL,
    created_unix REAL NOT NULL
)
"""


class ResultCache:
    """Per-key store of layer results. ``path=":memory:"`` gives a private cache."""

    def __init__(self, path: str, busy_timeout_s: float = 60.0):
        self.path = str(path)
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
        self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def get_many(self, keys: Iterable[str], include_failed: bool = True) -> dict:
        """{key: {"status", "error", "result", "eval_seconds"}} for keys present."""
        keys = list(dict.fromkeys(keys))
        out = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = ("SELECT key, status, error, result, eval_seconds FROM results WHERE key IN (%s)"
                 % ",".join("?" * len(chunk)))
            for key, status, error, result, secs in self._conn.execute(q, chunk):
                if status != "ok" and not include_failed:
                    continue
                out[key] = {"status": status, "error": error,
                            "result": json.loads(result) if result else None,
                            "eval_seconds": secs}
        return out

    def put(self, key: str, status: str, record: Mapping, backend: str, result=None,
            error: str | None = None, eval_seconds: float | None = None) -> bool:
        """Insert one result; returns False if the key was already present (kept as is)."""
        if status not in ("ok", "error", "timeout"):
            raise ValueError(f"status={status!r}; allowed ok, error, timeout")
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?,?,?)",
            (key, status, error, json.dumps(result) if result is not None else None,
             json.dumps(record, sort_keys=True), backend, eval_seconds, time.time()))
        return cur.rowcount == 1

    def delete(self, keys: Iterable[str]) -> None:
        """Forget keys (used to retry failed/timed-out evaluations)."""
        self._conn.executemany("DELETE FROM results WHERE key = ?", [(k,) for k in keys])

    def stats(self) -> dict:
        rows = self._conn.execute("SELECT status, COUNT(*) FROM results GROUP BY status").fetchall()
        return {s: n for s, n in rows}

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
