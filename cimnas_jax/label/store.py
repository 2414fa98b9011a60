"""Dataset folder: crash-safe, resumable label files.

- ``designs.jsonl``: one JSON line per completed design (its per-layer labels inside),
  appended and fsync'ed per chunk. On restart a torn last line (killed mid-write) is cut
  off, a corrupt line elsewhere is skipped (its design is labelled again; every good line
  after it is kept), both counted in ``skipped`` with one warning line, and designs already
  present (index + canonical hash) are skipped, so nothing is lost or duplicated.
- ``manifest.json``: backend, configuration, versions, seed, command, units (atomic write).
- ``designs.csv`` / ``layers.csv``: flat exports written atomically at the end.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from typing import Iterable, Mapping

from cimnas_jax.fileio import atomic_write, parse_jsonl

UNITS = {
    "energy_j": "J", "latency_s": "s", "area_mm2": "mm^2", "edap_j_s_mm2": "J*s*mm^2",
    "macs": "multiply-accumulates", "cycles": "clock cycles",
    "tops_per_w_total": "TOPS/W = 2*sum(MACs)/sum(energy)/1e12",
    "tops_per_mm2_total": "TOPS/mm^2 = 2*sum(MACs)/sum(latency)/1e12/area_mm2",
    "tops_per_w_mean_of_layers": "TOPS/W, mean over layers of 2*MACs/energy/1e12 (CIMNAS)",
    "tops_per_mm2_mean_of_layers": "TOPS/mm^2, mean over layers (CIMNAS)",
    "energy_breakdown_j": "J per component", "area_breakdown_mm2": "mm^2 per component",
    "cells_needed": "crossbar cells", "cells_available": "crossbar cells",
    "layers[].energy_j": "J", "layers[].latency_s": "s",
}

DESIGN_CSV_FIELDS = ("index", "hash", "valid", "weights_fit", "energy_j", "latency_s",
                     "area_mm2", "edap_j_s_mm2", "macs", "tops_per_w_total",
                     "tops_per_mm2_total", "tops_per_w_mean_of_layers",
                     "tops_per_mm2_mean_of_layers", "cells_needed", "cells_available",
                     "n_layers", "n_failed")
LAYER_CSV_FIELDS = ("design_index", "design_hash", "index", "name", "kind", "C", "M", "R", "S",
                    "P", "Q", "stride", "groups", "macs", "input_bits", "weight_bits", "status",
                    "energy_j", "latency_s", "cache_key", "error")


class LabelStore:
    """Append-only design labels in ``out_dir`` with resume support."""

    def __init__(self, out_dir: str, warn=None):
        self.out_dir = out_dir
        os.makedirs(out_dir, exist_ok=True)
        self.designs_path = os.path.join(out_dir, "designs.jsonl")
        self.manifest_path = os.path.join(out_dir, "manifest.json")
        self.warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        # lines skipped on reading designs.jsonl: corrupt line numbers, and truncated last lines cut off
        self.skipped = {"corrupt_lines": [], "truncated_last_lines_cut": 0}
        self._warned = None

    # -- manifest -----------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        if not os.path.exists(self.manifest_path):
            return None
        with open(self.manifest_path) as f:
            return json.load(f)

    def write_manifest(self, manifest: Mapping) -> None:
        atomic_write(self.manifest_path, json.dumps(manifest, indent=1, sort_keys=True))

    # -- designs ------------------------------------------------------------------
    def load_done(self) -> dict:
        """{index: hash} of complete lines. A corrupt line is skipped (counted in ``skipped``, one
        warning line), never the good lines after it; a torn trailing line is cut off the file."""
        return {int(d["index"]): d["hash"] for d in self._read()}

    def _read(self) -> list[dict]:
        if not os.path.exists(self.designs_path):
            return []
        with open(self.designs_path, "rb") as f:
            data = f.read()
        r = parse_jsonl(data, required=("index", "hash"),
                        accept=lambda d: isinstance(d["index"], int) and isinstance(d["hash"], str))
        good, seen = [], set()
        for d in r.records:
            idx = d["index"]
            if idx in seen:
                raise ValueError(f"{self.designs_path}: design index {idx} appears twice")
            seen.add(idx)
            good.append(d)
        if r.torn_at is not None:          # cut it off, so the next append starts on a fresh line
            with open(self.designs_path, "r+b") as f:
                f.truncate(r.torn_at)
                f.flush()
                os.fsync(f.fileno())
            self.skipped["truncated_last_lines_cut"] += 1
        self.skipped["corrupt_lines"] = list(r.bad_lines)
        key = tuple(r.bad_lines)
        if r.n_skipped and (r.torn_at is not None or key != self._warned):   # once per set of skips
            self.warn(r.describe(self.designs_path))
            self._warned = key
        return good

    @property
    def n_skipped(self) -> int:
        return len(self.skipped["corrupt_lines"]) + self.skipped["truncated_last_lines_cut"]

    def append(self, designs: Iterable[Mapping]) -> None:
        """Append complete design lines and fsync before returning."""
        buf = "".join(json.dumps(d, sort_keys=True, allow_nan=False) + "\n" for d in designs)
        if not buf:
            return
        with open(self.designs_path, "a") as f:
            f.write(buf)
            f.flush()
            os.fsync(f.fileno())

    def read_designs(self) -> list[dict]:
        """The good design lines, by index (corrupt lines skipped, see ``load_done``)."""
        return sorted(self._read(), key=lambda d: int(d["index"]))

    def export_csv(self) -> tuple[str, str]:
        """designs.csv and layers.csv from designs.jsonl (atomic)."""
        designs = self.read_designs()
        paths = []
        for name, fields, rows in (
            ("designs.csv", DESIGN_CSV_FIELDS, designs),
            ("layers.csv", LAYER_CSV_FIELDS,
             [{**lay, "design_index": d["index"], "design_hash": d["hash"]}
              for d in designs for lay in d["layers"]]),
        ):
            s = io.StringIO()
            w = csv.DictWriter(s, fieldnames=list(fields), extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
            path = os.path.join(self.out_dir, name)
            atomic_write(path, s.getvalue())
            paths.append(path)
        return tuple(paths)
