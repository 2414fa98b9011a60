"""Accuracy label files (JSONL written by experiments/label_accuracy.py) -> arrays."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def read_accuracy_labels(sp, paths):
    """Accuracy labels (canonical genomes int32[N, G], hashes, accuracies float[N]) from
    JSONL files or folders of them; a record whose hash disagrees with the space is an error;
    later duplicates of a design overwrite earlier ones."""
    rows = {}
    files = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise ValueError(f"{path}: file or folder not found")
        files += sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    if not files:
        raise ValueError(f"{paths}: no .jsonl files")
    for p in files:
        path = p
        for i, line in enumerate(p.read_text().splitlines()):
            if not line.strip():
                continue
            d = json.loads(line)
            acc = d.get("accuracy", d.get("top1"))
            if "genome" not in d or acc is None:
                raise ValueError(f"{path}:{i + 1}: needs 'genome' and 'accuracy'")
            g = sp.check(np.asarray(d["genome"])[None])[0]
            h = sp.hash_hex(g[None])[0]
            given = d.get("hash", d.get("design_hash"))
            if given is not None and given != h:
                raise ValueError(f"{path}:{i + 1}: hash {given} does not match space '{sp.name}' ({h})")
            rows[h] = (np.asarray(sp.canonicalise(g[None]))[0], float(acc))
    hs = sorted(rows)
    g = np.stack([rows[h][0] for h in hs]) if hs else np.zeros((0, sp.n_genes), np.int32)
    a = np.asarray([rows[h][1] for h in hs], np.float64)
    return g, hs, a
