"""Identity of the installed CiMLoop stack: the version string that enters every cache key.

A cached CiMLoop result is only valid for the stack that produced it, so the string names every
part that changes results (``stack_version``):
- CiMLoop's models folder: its git commit (plus a hash of uncommitted changes to tracked files);
- timeloop-mapper: sha256 of the binary that runs (wrapper scripts on PATH are followed to the
  binary they exec) and of the ``libtimeloop-*.so`` next to it, plus the git commit of the
  checkout it sits in (or ``$TIMELOOP_SRC_DIR``) when there is one — timeloop has no --version;
- Python parts (accelergy, its NeuroSim / ADC / CACTI / library plug-ins, timeloopfe, pytimeloop):
  distribution name and version plus a hash of the distribution's RECORD (the sha256 of every
  installed file, so a rebuilt plug-in of the same version differs); editable installs and
  packages found on ``sys.path`` without metadata (timeloopfe from a timeloop-python checkout) by
  their git commit or, outside git, a hash of their ``.py`` sources.
Pure Python; imports no CiMLoop module.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# distributions that make up the stack (normalised names); others qualify when their RECORD
# installs an accelergy estimation plug-in (the library plug-in's distribution is called "library")
STACK_DISTRIBUTIONS = ("accelergy", "accelergy-neurosim-plug-in", "accelergy-adc-plug-in",
                       "accelergy-cacti-plug-in", "accelergy-library-plug-in", "timeloopfe", "pytimeloop")
PLUG_IN_MARK = "estimation_plug_ins"
# importable packages whose identity is taken from their files when no distribution covers them
STACK_PACKAGES = (("pytimeloop", "timeloopfe"), ("timeloopfe",), ("pytimeloop",))


def _sha12(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _file_sha12(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def _git(path, *args) -> str:
    try:
        p = subprocess.run(["git", "-C", str(path), *args], capture_output=True, timeout=20)
        return p.stdout.decode(errors="replace").strip() if p.returncode == 0 else ""
    except Exception:  # noqa: BLE001
        return ""


def git_identity(path) -> str:
    """``<commit>`` of the checkout holding ``path`` (``+dirty-<hash of git diff HEAD>`` when tracked
    files are modified), or "nogit"."""
    head = _git(path, "rev-parse", "HEAD")
    if not head:
        return "nogit"
    diff = _git(path, "diff", "HEAD", "--", ".")
    return head + (f"+dirty-{_sha12(diff.encode())}" if diff else "")


def _git_root(start: Path) -> Path | None:
    for d in [start, *start.parents]:
        if (d / ".git").exists():
            return d
    return None


def _follow_wrappers(path: Path, name: str, depth: int = 4) -> Path:
    """A script on PATH that execs ``/abs/path/<name>`` (e.g. to set LD_LIBRARY_PATH) -> that binary."""
    p = path.resolve()
    for _ in range(depth):
        try:
            head = p.read_bytes()[:65536] if p.stat().st_size < 65536 else b""
        except OSError:
            break
        if not head.startswith(b"#!"):
            break
        targets = [Path(t) for t in re.findall(rf"(/[^\s'\"]*/{re.escape(name)})\b", head.decode(errors="replace"))]
        targets = [t for t in targets if t.resolve() != p and t.is_file()]
        if not targets:
            break
        p = targets[0].resolve()
    return p


def timeloop_identity(name: str = "timeloop-mapper") -> str:
    """sha256 of the timeloop binary that runs and of its libtimeloop libraries, and its checkout's commit."""
    found = shutil.which(name)
    if not found:
        return "absent"
    real = _follow_wrappers(Path(found), name)
    parts = [f"sha256:{_file_sha12(real)}"]
    libs = sorted({q.resolve() for d in (real.parent.parent / "lib", real.parent.parent / "build", real.parent)
                   if d.is_dir() for q in d.glob("libtimeloop-*.so*")})
    if libs:
        h = hashlib.sha256()
        for q in libs:
            h.update(q.name.encode() + _file_sha12(q).encode())
        parts.append(f"libs:{h.hexdigest()[:12]}")
    src = os.environ.get("TIMELOOP_SRC_DIR")
    root = Path(src) if src else _git_root(real.parent)
    if root is not None:
        parts.append(f"git:{git_identity(root)}")
    return ",".join(parts)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution_identity(dist) -> str:
    ver = dist.version
    direct = dist.read_text("direct_url.json")
    if direct:
        try:
            info = json.loads(direct)
        except json.JSONDecodeError:
            info = {}
        commit = (info.get("vcs_info") or {}).get("commit_id")
        if commit:
            ver += f"+vcs:{commit[:12]}"
        url = info.get("url", "")
        if (info.get("dir_info") or {}).get("editable") and url.startswith("file://"):
            return f"{ver}+editable:{git_identity(url[len('file://'):])}"   # RECORD does not cover the source
    record = dist.read_text("RECORD") or ""
    return f"{ver}+record:{_sha12(record.encode())}"


def python_identities(path: list[str] | None = None) -> list[str]:
    """``name=identity`` of every stack distribution found on ``path`` (default sys.path), then of
    stack packages importable from ``path`` that no distribution describes."""
    path = list(sys.path if path is None else path)
    out, seen = {}, set()
    for dist in importlib.metadata.distributions(path=path):
        name = _norm(dist.metadata["Name"] or "")
        if not name or name in seen:
            continue
        record = dist.read_text("RECORD") or ""
        if name in STACK_DISTRIBUTIONS or PLUG_IN_MARK in record:
            seen.add(name)
            out[name] = _distribution_identity(dist)
    for mods in STACK_PACKAGES:
        label = ".".join(mods)
        if _norm(mods[-1]) in out or label in out:
            continue
        spec = importlib.machinery.PathFinder.find_spec(mods[0], path)
        if spec is None or not spec.submodule_search_locations:
            continue
        loc = Path(list(spec.submodule_search_locations)[0])
        for m in mods[1:]:
            loc = loc / m
        if not loc.is_dir():
            continue
        loc = loc.resolve()
        root = _git_root(loc)
        if root is not None:
            out[label] = f"git:{git_identity(root)}"
        else:
            h = hashlib.sha256()
            for q in sorted(loc.rglob("*.py")):
                h.update(str(q.relative_to(loc)).encode() + q.read_bytes())
            out[label] = f"src:{h.hexdigest()[:12]}"
    return [f"{k}={v}" for k, v in sorted(out.items())]


def stack_version(models_dir: str, path: list[str] | None = None) -> str:
    """Everything about the installed stack that changes a CiMLoop result, as one string
    (part of every cache key): CiMLoop's commit, timeloop-mapper, the Python parts."""
    return ";".join([f"cimloop={git_identity(models_dir)}", f"timeloop-mapper={timeloop_identity()}",
                     *python_identities(path)])
