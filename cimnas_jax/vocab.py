"""The project's shared vocabulary, defined once (pure Python: no jax, no CiMLoop).

Technologies: which (node, CiMLoop cell) pairs exist. The technology files
(``cimnas_jax/hw/tech/<name>.json``: ``node_nm``, ``cell_name``, ``default_adc_bits``) are the source;
a reference-format record names its technology through ``hw.technology_nm`` and ``hw.cell``
(CiMLoop's cell file name, with or without the ``.cell.yaml`` suffix). A record with neither is the
RRAM 32 nm CIMNAS configuration (the shared RRAM reference records carry no ``cell``).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Mapping

TECH_DIR = Path(__file__).resolve().parent / "hw" / "tech"
CELL_FILE_SUFFIX = ".cell.yaml"
DEFAULT_TECHNOLOGY = "rram_32nm"  # records without hw.technology_nm / hw.cell


class RecordError(ValueError):
    """A reference-format record is malformed or names no known technology (message names the field)."""


@dataclasses.dataclass(frozen=True)
class TechnologyId:
    """What a record says about its technology: file name, node [nm], CiMLoop cell, default ADC bits."""

    name: str
    node_nm: float
    cell: str
    default_adc_bits: float = 8.0

    def describe(self) -> str:
        return f"{self.name} (technology_nm {self.node_nm:g}, cell {self.cell})"


def cell_name(cell) -> str:
    """CiMLoop cell file name without the ``.cell.yaml`` suffix (the canonical spelling)."""
    if not isinstance(cell, str) or not cell.strip():
        raise RecordError(f"field 'hw.cell' must be a CiMLoop cell file name (e.g. 'rram_neurosim_default'), "
                          f"got {cell!r}")
    c = cell.strip()
    return c[:-len(CELL_FILE_SUFFIX)] if c.endswith(CELL_FILE_SUFFIX) else c


@functools.lru_cache(maxsize=None)
def technology_catalog(tech_dir: str | None = None) -> tuple[TechnologyId, ...]:
    """Every technology file's identity, sorted by name (read from the JSON files, no validation of
    the coefficients: that is ``cimnas_jax.hw.tech.load_technology``'s job)."""
    out = []
    for p in sorted(Path(tech_dir or TECH_DIR).glob("*.json")):
        d = json.loads(p.read_text())
        out.append(TechnologyId(name=str(d.get("name", p.stem)), node_nm=float(d["node_nm"]),
                                cell=str(d.get("cell_name", "")), default_adc_bits=float(d.get("default_adc_bits", 8))))
    return tuple(out)


def technology_by_name(name: str) -> TechnologyId:
    for t in technology_catalog():
        if t.name == name:
            return t
    raise RecordError(f"unknown technology {name!r}; known: {[t.name for t in technology_catalog()]}")


def resolve_technology(hw: Mapping) -> TechnologyId:
    """The technology a record's ``hw`` names through ``technology_nm`` and ``cell``.

    Neither present: ``DEFAULT_TECHNOLOGY``. One or both present: the one known technology that
    agrees with every field given; none (e.g. 32 nm with the SRAM cell) or several is a
    ``RecordError`` naming both fields and the known pairs.
    """
    node, cell = hw.get("technology_nm"), hw.get("cell")
    if node is None and cell is None:
        return technology_by_name(DEFAULT_TECHNOLOGY)
    if node is not None and (isinstance(node, bool) or not isinstance(node, (int, float))
                             or not math.isfinite(float(node))):
        raise RecordError(f"field 'hw.technology_nm' must be a finite number (nm), got {node!r}")
    cname = cell_name(cell) if cell is not None else None
    cat = technology_catalog()
    hits = [t for t in cat if (node is None or abs(float(node) - t.node_nm) < 1e-9)
            and (cname is None or cname == t.cell)]
    if len(hits) == 1:
        return hits[0]
    known = "; ".join(t.describe() for t in cat)
    said = f"hw.technology_nm={node!r} and hw.cell={cell!r}"
    if not hits:
        raise RecordError(f"{said} match no known technology (known: {known})")
    raise RecordError(f"{said} match several technologies ({', '.join(t.name for t in hits)}); give both fields "
                      f"(known: {known})")
