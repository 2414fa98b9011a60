"""Copy finished experiments' tables and figures into the documentation (docs/results/).

    cimnas-jax paper --experiment=all --out_dir=runs/paper --collect=docs/results

For each experiment found in out_dir: ``<docs>/<experiment>.md`` (its table.md with its figures
embedded) and the figures under ``<docs>/<experiment>/`` -- only those below ``max_bytes`` (the repo
keeps small files; a larger figure is named, with its size, instead of copied).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from cimnas_jax.fileio import atomic_write

MAX_BYTES = 300_000
# an absolute path to a shipped asset (the run's checkout) reads as the repo-relative cimnas_jax/assets/...
_ASSET_PATH = re.compile(r"(?<![\w.])/\S*?/(cimnas_jax/assets/)")


def collect(out_dir, docs_dir, names, max_bytes: int = MAX_BYTES) -> list[Path]:
    """Returns the Markdown files written; raises FileNotFoundError naming an experiment not run."""
    out, docs = Path(out_dir), Path(docs_dir)
    written = []
    for name in names:
        src = out / name
        if not (src / "results.json").is_file():
            raise FileNotFoundError(f"{src}/results.json is missing: run --experiment={name} into {out} first")
        res = json.loads((src / "results.json").read_text())
        dst = docs / name
        dst.mkdir(parents=True, exist_ok=True)
        lines = [_ASSET_PATH.sub(r"\1", (src / "table.md").read_text().rstrip()), "", "## Figures", ""]
        for f in res.get("figures", []):
            size = (src / f).stat().st_size
            if size <= max_bytes:
                shutil.copyfile(src / f, dst / f)
                lines += [f"![{f}]({name}/{f})", ""]
            else:
                lines += [f"- {f}: {size / 1e3:.0f} kB, above the {max_bytes / 1e3:.0f} kB kept in the repo; in "
                          f"{src}/{f} of the run", ""]
        from cimnas_jax.paper.common import reuse_note
        lines += [f"Source: `{src}` ({res['scale']} settings, {res['wall_seconds']:.0f} s wall"
                  f"{reuse_note(res.get('sub_runs', []))}).", ""]
        p = docs / f"{name}.md"
        atomic_write(p, "\n".join(lines))
        written.append(p)
    return written
