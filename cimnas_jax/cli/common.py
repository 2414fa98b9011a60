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


# ----------------------------------------------------------------------------- flag checks
# Pure checks on flag values shared by the commands' ``check_flags(v)``: each raises FlagError whose
# one-line message names the flag, the value and what is allowed. A command's main turns it into
# ``fail`` (exit 2, no traceback) before any work.
class FlagError(ValueError):
    """A flag value outside what is allowed; the message names the flag and the allowed values."""


SEED_MAX = 2 ** 31 - 1


def choice(v: dict, name: str, allowed) -> None:
    if v[name] not in allowed:
        raise FlagError(f"--{name}={v[name]!r} is not allowed; use one of {tuple(allowed)}")


def integer(v: dict, name: str, lo: int | None = None, hi: int | None = None, note: str = "") -> None:
    x = v[name]
    ok = isinstance(x, int) and not isinstance(x, bool) and (lo is None or x >= lo) and (hi is None or x <= hi)
    if not ok:
        rng = (f"in [{lo}, {hi}]" if lo is not None and hi is not None else f">= {lo}" if lo is not None
               else f"<= {hi}")
        raise FlagError(f"--{name}={x} must be an integer {rng}{note}")


def seed(v: dict, name: str = "seed") -> None:
    integer(v, name, 0, SEED_MAX)


def number(v: dict, name: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           note: str = "") -> None:
    import math
    x = v[name]
    lo_s = f"{'(' if lo_open else '['}{lo}"
    rng = (f"in {lo_s}, {hi}]" if lo is not None and hi is not None
           else f"{'>' if lo_open else '>='} {lo}" if lo is not None else f"<= {hi}" if hi is not None else "")
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise FlagError(f"--{name}={x} must be a finite number {rng}{note}".replace("  ", " ").rstrip())
    bad_lo = lo is not None and (x <= lo if lo_open else x < lo)
    if bad_lo or (hi is not None and x > hi):
        raise FlagError(f"--{name}={x} must be a number {rng}{note}")


def required(v: dict, name: str, what: str) -> None:
    if not v[name]:
        raise FlagError(f"--{name} is required ({what})")


def out_folder(v: dict, name: str) -> None:
    """--name is a folder that is or can be created (not a file; its nearest existing parent writable)."""
    import os
    p = os.path.abspath(v[name])
    if os.path.exists(p) and not os.path.isdir(p):
        raise FlagError(f"--{name}={v[name]} is a file, not a folder; give a folder path")
    q = p
    while not os.path.exists(q):
        q = os.path.dirname(q)
    if not os.path.isdir(q) or not os.access(q, os.W_OK | os.X_OK):
        raise FlagError(f"--{name}={v[name]}: {q} is not a writable folder")


def out_file(v: dict, name: str) -> None:
    """--name is a file path that can be written (not a folder; its nearest existing parent writable)."""
    import os
    p = os.path.abspath(v[name])
    if os.path.isdir(p):
        raise FlagError(f"--{name}={v[name]} is a folder; give a file path")
    q = os.path.dirname(p)
    while not os.path.exists(q):
        q = os.path.dirname(q)
    if not os.path.isdir(q) or not os.access(q, os.W_OK | os.X_OK):
        raise FlagError(f"--{name}={v[name]}: {q} is not a writable folder")


def existing(v: dict, name: str, kind: str = "path") -> None:
    """--name (if set) exists: kind = 'file', 'dir' or 'path'."""
    import os
    p = v[name]
    if not p:
        return
    ok = os.path.isfile(p) if kind == "file" else os.path.isdir(p) if kind == "dir" else os.path.exists(p)
    if not ok:
        raise FlagError(f"--{name}={p}: no such {'folder' if kind == 'dir' else kind}")


def int_list(text: str, name: str, allow_empty: bool = False) -> tuple:
    """'256,256' -> (256, 256); positive integers only ('' or '0' -> () when allow_empty)."""
    if allow_empty and text.strip() in ("", "0"):
        return ()
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise FlagError(f"--{name}={text!r} must be comma-separated positive integers, e.g. 256,256") from None
    if not out or min(out) <= 0:
        raise FlagError(f"--{name}={text!r} must be comma-separated positive integers, e.g. 256,256")
    return out


def flag_values(names) -> dict:
    """name -> parsed value of the absl flags ``names``."""
    from absl import flags
    return {n: flags.FLAGS[n].value for n in names}


def check_or_fail(check, *args):
    """Run ``check(*args)``; a FlagError (or ValueError) becomes ``fail`` (one line, exit 2)."""
    try:
        return check(*args)
    except ValueError as e:
        fail(str(e))
