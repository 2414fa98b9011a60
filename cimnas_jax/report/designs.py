"""A design decoded for people: hardware by gene, the network gene by gene kind, enough to rebuild it."""
from __future__ import annotations

import numpy as np


def _kind(name: str) -> str:
    base, _, tail = name.rpartition("_")
    return base if base and tail[:1] in "bs" and tail[1:].isdigit() else name


def decode(space, genome) -> dict:
    """{"hardware": {gene: value}, "network": {kind: [values of the active genes, in order]},
    "genes": {gene: value or None where the gene has no effect}} for one genome."""
    g = np.asarray(genome, np.int32)[None]
    vals = np.asarray(space.values(g))[0]
    act = np.asarray(space.active(g))[0]
    genes, hw, net = {}, {}, {}
    for i, gene in enumerate(space.genes):
        v = float(vals[i])
        v = int(v) if v.is_integer() else v
        genes[gene.name] = v if act[i] else None
        if gene.group.startswith("hardware"):
            hw[gene.name] = v
        elif act[i]:
            net.setdefault(_kind(gene.name), []).append(v)
    return {"hardware": hw, "network": net, "genes": genes}


def values_cell(v: list) -> str:
    """'3 3 5 7' or 'all 8 (×16)' for a table cell."""
    if len(v) > 2 and len(set(v)) == 1:
        return f"all {v[0]:g} (×{len(v)})"
    return " ".join(f"{x:g}" for x in v)
