"""Where a result came from: package versions, the source commit, the command line, the machine."""
from __future__ import annotations

import functools
import platform
import subprocess
import sys
import time
from pathlib import Path


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """Commit of the cimnas_jax source tree ('' when installed from a wheel / not a git checkout);
    '+dirty' when tracked files differ from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def versions() -> dict:
    """Versions of Python and the numerical stack."""
    out = {"python": platform.python_version()}
    from importlib.metadata import PackageNotFoundError, version
    for dist in ("cimnas-jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    import cimnas_jax
    out.setdefault("cimnas-jax", cimnas_jax.__version__)
    return out


def provenance(**extra) -> dict:
    """A record for a run folder: commit, versions, command, machine, time, plus ``extra``."""
    import jax
    return {"git_commit": git_commit(), "versions": versions(), "command": [sys.executable] + sys.argv,
            "host": platform.node(), "platform": platform.platform(), "jax_backend": jax.default_backend(),
            "jax_devices": [str(d) for d in jax.devices()],
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
