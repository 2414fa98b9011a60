"""Which designs to label: uniform samples, Latin-hypercube over hardware genes, or
genomes read from a search's output (JSON / CSV / .npy)."""
from __future__ import annotations

import csv
import json
import os

import jax
import numpy as np

SAMPLERS = ("uniform", "lhs", "file")


def hardware_gene_mask(sp) -> np.ndarray:
    """bool[G]: genes whose group is one of the hardware-* groups."""
    gid = np.asarray(sp.group_ids)
    return np.array([sp.group_names[i].startswith("hardware") for i in gid])


def sample_uniform(sp, n: int, seed: int) -> np.ndarray:
    """int32[n, G] uniform over every gene's choices (``sp.sample``)."""
    return np.array(sp.sample(jax.random.PRNGKey(seed), n), dtype=np.int32)  # writable copy


def sample_lhs(sp, n: int, seed: int) -> np.ndarray:
    """Uniform genomes whose hardware genes are a Latin hypercube.

    For each hardware gene with k choices, the n samples take the midpoints of n equal
    strata of [0, 1) (strata randomly paired across genes) and map to choice floor(u·k),
    so choice counts differ by at most one.
    """
    g = sample_uniform(sp, n, seed)
    rng = np.random.default_rng(seed + 1)
    n_choices = np.asarray(sp.n_choices)
    for j in np.flatnonzero(hardware_gene_mask(sp)):
        u = (rng.permutation(n) + 0.5) / n
        g[:, j] = np.minimum((u * n_choices[j]).astype(np.int32), n_choices[j] - 1)
    return g


def _rows_to_genomes(sp, rows) -> np.ndarray:
    names = list(sp.gene_names)
    out = []
    for i, r in enumerate(rows):
        if isinstance(r, dict):
            if "genome" in r:
                r = r["genome"]
            elif all(n in r for n in names):  # physical values per gene (search CSV columns)
                r = sp.encode({n: float(r[n]) for n in names}).tolist()
            else:
                raise ValueError(f"genomes file row {i}: a dict needs a 'genome' list or one "
                                 f"column of physical values per gene name ({names[0]}, ...)")
        if not isinstance(r, (list, tuple)):
            raise ValueError(f"genomes file row {i}: expected a list of {sp.n_genes} gene indices, got {str(r)[:40]}")
        vals = []
        for x in r:
            try:
                f = float(x)
            except (TypeError, ValueError):
                f = float("nan")
            if not np.isfinite(f) or f != round(f):
                raise ValueError(f"genomes file row {i}: gene value {x!r} is not an integer index")
            vals.append(int(f))
        if len(vals) != sp.n_genes:
            raise ValueError(f"genomes file row {i}: {len(vals)} genes; expected rows of {sp.n_genes} gene indices")
        out.append(vals)
    g = np.asarray(out, dtype=np.int32)
    if g.ndim != 2 or g.shape[1] != sp.n_genes:
        raise ValueError(f"genomes file: expected rows of {sp.n_genes} gene indices, "
                         f"got shape {g.shape}")
    return g


def _genome_cell(text, path, line):
    """A CSV ``genome`` cell: a JSON list, or gene indices separated by spaces (as search's results.csv)."""
    text = (text or "").strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {line}: genome cell is not a JSON list ({e})") from None
    return text.replace(",", " ").split()


def read_genomes(sp, path: str) -> np.ndarray:
    """int32[N, G] from .npy, .json (list of genomes, {"genomes"|"designs": [...]}, records
    with a "genome" index list, or per-gene physical values) or .csv (a ``genome`` column
    holding a JSON index list or space-separated indices, else one column of physical values per gene name, as
    experiments/search.py writes). Checked with ``sp.check``."""
    if not os.path.exists(path):
        raise ValueError(f"--genomes_file {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"--genomes_file {path!r} is a folder, not a file")
    try:
        g = _read_rows(sp, path)
    except (TypeError, KeyError, IndexError, EOFError, OverflowError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a genomes file ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                         f"expected rows of {sp.n_genes} gene indices") from None
    sp.check(g)
    return g


def _read_rows(sp, path: str) -> np.ndarray:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{path}: not a genomes file (not a readable .npy array: {e})") from None
        if a.dtype.kind not in "iub":
            if a.dtype.kind != "f" or not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise ValueError(f"{path}: genes must be integer indices (got dtype {a.dtype} with non-integer "
                                 "or non-finite values)")
        rows = a.astype(np.int64).tolist()
    elif ext in (".json", ".jsonl"):
        with open(path) as f:
            try:
                if ext == ".jsonl":
                    data = [json.loads(line) for line in f if line.strip()]
                else:
                    data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not valid JSON{' lines' if ext == '.jsonl' else ''} ({e}); a .json "
                                 "file holds one list of genomes, a .jsonl file one genome per line") from None
        if isinstance(data, dict):
            for key in ("genomes", "population", "pareto_genomes", "designs"):
                if key in data:
                    data = data[key]
                    break
            else:
                raise ValueError(f"{path}: JSON object needs a 'genomes' list")
        rows = data
    elif ext == ".csv":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = [({"genome": _genome_cell(r["genome"], path, i + 2)} if "genome" in r else r)
                    for i, r in enumerate(reader)]
    else:
        raise ValueError(f"--genomes_file {path!r}: extension must be .npy, .json, .jsonl "
                         f"or .csv")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: no genomes (expected a non-empty list of rows of {sp.n_genes} gene indices)")
    return _rows_to_genomes(sp, rows)


def make_genomes(sp, sampler: str, n: int, seed: int, genomes_file: str | None = None):
    """Genomes to label: [N, G] int32."""
    if sampler == "uniform":
        return sample_uniform(sp, n, seed)
    if sampler == "lhs":
        return sample_lhs(sp, n, seed)
    if sampler == "file":
        if not genomes_file:
            raise ValueError("--sampler=file needs --genomes_file")
        g = read_genomes(sp, genomes_file)
        return g[:n] if n and n > 0 else g
    raise ValueError(f"--sampler={sampler!r}; allowed {SAMPLERS}")
