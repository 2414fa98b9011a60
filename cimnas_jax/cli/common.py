"""What every command shares: one-line errors, the output-folder lock, progress lines."""
from __future__ import annotations

import sys
import time


def fail(message: str, code: int = 2):
    """Print ``error: <message>`` on stderr and exit (no traceback, no help dump)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def log(line: str) -> None:
    print(line, flush=True)


class Progress:
    """'what done/total, rate unit/s, ETA' lines, at most every ``every_s`` seconds."""

    def __init__(self, what: str, total: int, unit: str = "items", every_s: float = 5.0, out=log):
        self.what, self.total, self.unit, self.every_s, self.out = what, total, unit, every_s, out
        self.t0 = time.perf_counter()
        self._last = -1e9

    def __call__(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and done < self.total and now - self._last < self.every_s:
            return
        self._last = now
        el = now - self.t0
        rate = done / el if el > 0 else float("inf")
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        self.out(f"  {self.what}: {done}/{self.total} {self.unit}, {rate:.3g} {self.unit}/s, ETA {eta:.0f} s")
