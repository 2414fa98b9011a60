"""The project's shared vocabulary, defined once (pure Python: no jax, no CiMLoop).

Hardware component names (``COMPONENTS``), layer kinds (``KIND_*``, ``KIND_NAMES``), the
reference-format record's fields and their allowed ranges with the record key <-> LayerTable /
HardwareParams field mapping and unit conversion (``LAYER_DIM_FIELDS``, ``BIT_FIELDS``,
``HW_RECORD_FIELDS``; e.g. ``glb_depth_words`` x ``GLB_WORD_BYTES`` = ``glb_bytes``,
``base_latency_s`` = ``clock_period_s``), and the technologies.

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
    max_bits_per_cell: int = 8

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
                                cell=str(d.get("cell_name", "")), default_adc_bits=float(d.get("default_adc_bits", 8)),
                                max_bits_per_cell=int(d.get("cell", {}).get("max_bits_per_cell", 8))))
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


# --------------------------------------------------------------------------- hardware components
# CiMLoop's component names, in the reference records' energy_breakdown_J / area_breakdown_m2 and the
# analytic model's breakdowns (energy and area share the names)
COMPONENTS = ("cim_unit", "row_drivers", "column_drivers", "adc", "input_buffer", "output_buffer", "router", "glb")
ENERGY_COMPONENTS = AREA_COMPONENTS = COMPONENTS


# --------------------------------------------------------------------------- layer kinds
# LayerTable.kind codes; the names are the reference records' ``layer.kind``
KIND_CONV, KIND_DEPTHWISE, KIND_POINTWISE, KIND_FC = 0, 1, 2, 3
KIND_NAMES = ("conv", "depthwise", "pointwise", "fc")          # index = code
KIND_CODES = {name: code for code, name in enumerate(KIND_NAMES)}


# --------------------------------------------------------------------------- record fields
GLB_WORD_BYTES = 256  # CiMLoop's glb.attributes.depth counts 2048-bit words: bytes = words x 256


@dataclasses.dataclass(frozen=True)
class Field:
    """One numeric field of a reference-format record and its allowed range.

    ``key``: the record's name (inside ``layer`` / ``hw`` or top level); ``param``: the
    LayerTable / HardwareParams field it fills, ``param = record value x scale``; ``integer``:
    a whole number; ``lo``..``hi`` inclusive (``lo_open``: strictly above ``lo``); ``unit``.
    """

    key: str
    param: str
    integer: bool
    lo: float
    hi: float | None = None
    lo_open: bool = False
    scale: float = 1.0
    unit: str = ""

    def allowed(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        lo = f"> {self.lo:g}" if self.lo_open else f">= {self.lo:g}"
        rng = f"{lo}" if self.hi is None else f"in {self.lo:g}..{self.hi:g}"
        return f"{kind} {rng}" + (f" ({self.unit})" if self.unit else "")

    def check(self, value, where: str) -> float:
        """The value as float, or ``RecordError`` naming ``where`` and the allowed range."""
        bad = (value is None or isinstance(value, bool) or not isinstance(value, (int, float))
               or not math.isfinite(float(value)))
        if not bad:
            v = float(value)
            bad = ((v <= self.lo) if self.lo_open else (v < self.lo)) or (self.hi is not None and v > self.hi) \
                or (self.integer and v != round(v))
        if bad:
            raise RecordError(f"field {where!r} must be {self.allowed()}, got {value!r}")
        return float(value)


# LayerTable fields a layer record is built from (cimnas_jax.cimloop.config.record_from_arrays)
LAYER_TABLE_FIELDS = ("kind", "C", "M", "R", "S", "P", "Q", "stride", "groups", "input_bits", "weight_bits", "macs")
# layer shape (``record["layer"]``): output sizes P, Q; a depthwise layer has C = M = channels
LAYER_DIM_FIELDS = tuple(Field(k, k, True, 1.0) for k in ("C", "M", "R", "S", "P", "Q", "stride"))
# precision (top level of a record)
BIT_FIELDS = (Field("input_bits", "input_bits", True, 1.0, 16.0, unit="bit"),
              Field("weight_bits", "weight_bits", True, 1.0, 16.0, unit="bit"))
# hardware knobs (``record["hw"]``) <-> cimnas_jax.workload.HardwareParams, with unit conversion
HW_RECORD_FIELDS = (
    Field("voltage", "voltage_v", False, 0.0, lo_open=True, unit="V"),
    Field("bits_per_cell", "bits_per_cell", True, 1.0),
    Field("base_latency_s", "clock_period_s", False, 0.0, lo_open=True, unit="s"),   # CiMLoop BASE_LATENCY
    Field("rows", "rows", True, 1.0),
    Field("cols", "cols", True, 1.0),
    Field("router_group", "router_group", True, 1.0),
    Field("tiles", "tiles", True, 1.0),
    Field("macros_per_tile", "macros_per_tile", True, 1.0),
    Field("glb_depth_words", "glb_bytes", True, 1.0, scale=GLB_WORD_BYTES, unit="2048-bit words"),
    Field("adc_bits", "adc_bits", True, 4.0, 16.0, unit="bit"),       # the accelergy ADC plug-in needs >= 4
    Field("n_adc_per_bank", "n_adc_per_bank", True, 1.0),
)
HW_RECORD_DEFAULTS = {"n_adc_per_bank": 16.0}   # adc_bits defaults to the technology's default_adc_bits
HW_PARAM_FIELDS = tuple(f.param for f in HW_RECORD_FIELDS)   # HardwareParams field order
FIELDS_BY_KEY = {f.key: f for f in LAYER_DIM_FIELDS + BIT_FIELDS + HW_RECORD_FIELDS}


def check_bits_per_cell(value: float, tech: TechnologyId, where: str = "hw.bits_per_cell") -> None:
    """A cell stores at most its technology's ``max_bits_per_cell`` bits (SRAM: 1)."""
    if value > tech.max_bits_per_cell:
        raise RecordError(f"field {where!r} must be a whole number in 1..{tech.max_bits_per_cell} for {tech.name} "
                          f"(cell {tech.cell}), got {value:g}")
