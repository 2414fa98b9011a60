"""Technology description as data: one JSON file per node/cell (``tech/<name>.json``).

A file holds the node (nm), the cell (type RRAM/SRAM, area per cell in m^2, max bits per cell),
the global-buffer area table (CiMLoop/CACTI areas at known sizes, log-log interpolated) and the
fitted component coefficients of the analytic model (see docs/hardware_model.md). Loading
validates every field and raises ``TechnologyError`` naming the bad field.
"""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

import flax.struct
import numpy as np

from cimnas_jax.vocab import COMPONENTS, TECH_DIR  # noqa: F401 (TECH_DIR re-exported)


# Every coefficient the analytic model reads (names documented in docs/hardware_model.md).
COEFFICIENT_NAMES = (
    # array read energy per (MAC x input pulse x weight slice) and partial-slice factor
    "ln_e_cim", "cim_slice_a", "cim_slice_b", "cim_v_exp",
    # row drivers: per (input x column tile x pulse), grows with columns driven; V^2
    "ln_e_row", "row_cols_exp", "row_pulse_exp", "row_ib_exp",
    # ADC (accelergy ADC plug-in form): per-conversion energy from Schreier FOM, area regression
    "adc_e0", "adc_lnf_shift", "adc_fom_icpt", "adc_fom_slope", "adc_fom_max",
    "adc_a0", "adc_a_f", "adc_a_e", "adc_a_b", "adc_a_t",
    # column drivers (~0 in CiMLoop), tile buffers, router, global buffer energies
    "ln_e_col", "ln_e_ibuf", "ibuf_ib_exp", "ibuf_ct_exp", "ibuf_size_exp",
    "ln_e_obuf", "obuf_rt_exp", "obuf_sl_exp", "obuf_size_exp",
    "ln_e_router_in", "ln_e_router_out",
    "ln_e_glb_in", "ln_e_glb_out", "glb_e1", "glb_e2", "glb_fp_exp", "glb_fq_exp", "glb_fp_exp_dw", "glb_fq_exp_dw",
    "glb_fp_exp_t", "glb_fq_exp_t", "glb_tm_exp", "glb_psum",
    # areas: drivers per row / column, router, tile buffers (SRAM of rows|cols x macros per tile)
    "ln_a_row", "ln_a_col", "col_cols_exp", "col_sl_exp", "ln_a_router",
    "ibuf_a0", "ibuf_a1", "ibuf_a2", "ibuf_a3", "obuf_a0", "obuf_a1", "obuf_a2", "obuf_a3",
    # layer feasibility: input+output feature maps (bytes) must stay below ok_theta x GLB bytes
    "ok_theta",
)

# accelergy ADC plug-in ff0fb48 (adc_data/model.yaml) in model.adc_energy_area's parametrisation. Not
# fitted: they reproduce both reference sets' ADC area to 1e-5 and energy per conversion to ~0.1 %
# (docs/hardware_model.md), and the 7 nm SRAM records' adc_bits labels are unusable for fitting.
ADC_PLUG_IN = {"adc_e0": -math.log(2.0) + 26.0496215686518 - 1.4702022133784405, "adc_lnf_shift": 0.0,
               "adc_fom_icpt": 213.7806687348118, "adc_fom_slope": 2.8719030399529957,
               "adc_fom_max": 128.3068287398817, "adc_a0": 1.3461916439910742, "adc_a_f": 0.18071538424508238,
               "adc_a_e": 0.29912426192653485, "adc_a_b": 0.0, "adc_a_t": 0.9932794744745022}
# Hand-set pre-calibration coefficients, fitted to no node: the calibrator's start and the
# generic start of surrogate.tech_transfer.
INIT = {
    "ln_e_cim": -33.24, "cim_slice_a": 1 / 3, "cim_slice_b": 4 / 3, "cim_v_exp": 0.0,
    "ln_e_row": -35.0, "row_cols_exp": 0.9, "row_pulse_exp": 1.0, "row_ib_exp": 0.0,
    "ln_e_row2": -35.0, "row2_v_exp": -1.0, "row2_cols_exp": -0.5,
    **ADC_PLUG_IN,
    "ln_e_col": -48.0, "ln_e_ibuf": -40.0, "ibuf_ib_exp": 1.0, "ibuf_ct_exp": 0.5, "ibuf_size_exp": 0.3,
    "ln_e_obuf": -35.0, "obuf_rt_exp": 1.0, "obuf_sl_exp": 1.0, "obuf_size_exp": 0.3, "ln_e_router_in": -30.0, "ln_e_router_out": -30.0,
    "ln_e_glb_in": -26.6, "ln_e_glb_out": -26.2, "glb_e1": 0.44, "glb_e2": 0.01, "glb_fp_exp": 1.0,
    "glb_fq_exp": 1.0, "glb_fp_exp_dw": 1.0, "glb_fq_exp_dw": 1.0, "glb_fp_exp_t": 1.0, "glb_fq_exp_t": 1.0, "glb_tm_exp": 0.0, "glb_psum": 1.0,
    "ln_a_row": -26.25, "ln_a_col": -26.5, "col_cols_exp": 0.667, "col_sl_exp": 0.333, "ln_a_router": -17.8,
    "ibuf_a0": -26.0, "ibuf_a1": 0.73, "ibuf_a2": 0.0, "ibuf_a3": 0.5,
    "obuf_a0": -26.0, "obuf_a1": 0.73, "obuf_a2": 0.0, "obuf_a3": 0.5,
    "ok_theta": 1.0,
}

# Optional coefficients: a file without them loads with the neutral default (term switched off), so
# older files stay valid; they are not in COEFFICIENT_NAMES (surrogate.tech_transfer fits them too).
OPTIONAL_COEFFICIENTS = {
    # row drivers' second (driver-sizing) term per input pulse: exp(ln_e_row2) V^row2_v_exp cols^row2_cols_exp
    "ln_e_row2": -80.0, "row2_v_exp": 0.0, "row2_cols_exp": 0.0,
}
ALL_COEFFICIENT_NAMES = COEFFICIENT_NAMES + tuple(OPTIONAL_COEFFICIENTS)
# Coefficients whose sign physics fixes (the others are logs, exponents or intercepts of log-linear
# fits, where any sign is allowed): a read can't cost less than nothing (cim_slice_a/b), a partial sum
# can't un-write the GLB (glb_psum), an ADC's FOM can't improve with its rate (adc_fom_slope), the
# feasibility threshold is a positive fraction of the GLB (ok_theta).
NONNEGATIVE_COEFFICIENTS = ("cim_slice_a", "cim_slice_b", "glb_psum", "adc_fom_slope")
POSITIVE_COEFFICIENTS = ("ok_theta",)


class TechnologyError(ValueError):
    """A technology file is missing a field or has a bad value (message names the field)."""


@flax.struct.dataclass
class Technology:
    """A node/cell description plus fitted coefficients (pytree: coefficients are leaves)."""

    coef: dict
    glb_ln_bytes: np.ndarray   # knots: ln(GLB bytes)
    glb_ln_area: np.ndarray    # ln(GLB area m^2) at the knots
    name: str = flax.struct.field(pytree_node=False, default="")
    node_nm: float = flax.struct.field(pytree_node=False, default=32.0)
    cell_type: str = flax.struct.field(pytree_node=False, default="RRAM")
    cell_name: str = flax.struct.field(pytree_node=False, default="")   # CiMLoop cell file (no .cell.yaml)
    cell_area_m2: float = flax.struct.field(pytree_node=False, default=0.0)
    max_bits_per_cell: int = flax.struct.field(pytree_node=False, default=8)
    default_adc_bits: float = flax.struct.field(pytree_node=False, default=8.0)
    version: str = flax.struct.field(pytree_node=False, default="")
    absent_components: tuple = flax.struct.field(pytree_node=False, default=())

    def replace_coef(self, coef: dict) -> "Technology":
        return self.replace(coef=dict(coef))


def _need(d: dict, key: str, where: str):
    if not isinstance(d, dict) or key not in d:
        raise TechnologyError(f"technology file {where}: missing field '{key}'")
    return d[key]


def _num(v, field: str, where: str, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise TechnologyError(f"technology file {where}: field '{field}' must be a finite number, got {v!r}")
    if positive and float(v) <= 0:
        raise TechnologyError(f"technology file {where}: field '{field}' must be > 0, got {v!r}")
    return float(v)


def technology_from_dict(d: dict, where: str = "<dict>") -> Technology:
    """Validate a parsed technology description and build a ``Technology``."""
    if not isinstance(d, dict):
        raise TechnologyError(f"technology file {where}: top level must be an object")
    name = _need(d, "name", where)
    if not isinstance(name, str) or not name:
        raise TechnologyError(f"technology file {where}: field 'name' must be a non-empty string")
    version = str(_need(d, "version", where))
    node = _num(_need(d, "node_nm", where), "node_nm", where, positive=True)
    cell = _need(d, "cell", where)
    ctype = _need(cell, "type", where + " cell")
    if ctype not in ("RRAM", "SRAM"):
        raise TechnologyError(f"technology file {where}: field 'cell.type' must be 'RRAM' or 'SRAM', got {ctype!r}")
    area = _num(_need(cell, "area_m2", where + " cell"), "cell.area_m2", where, positive=True)
    mbpc = _num(_need(cell, "max_bits_per_cell", where + " cell"), "cell.max_bits_per_cell", where, positive=True)
    adc = _num(d.get("default_adc_bits", 8), "default_adc_bits", where, positive=True)
    glb = _need(d, "glb_area_table", where)
    kb = _need(glb, "bytes", where + " glb_area_table")
    ka = _need(glb, "area_m2", where + " glb_area_table")
    if not isinstance(kb, list) or not isinstance(ka, list) or len(kb) != len(ka) or len(kb) < 2:
        raise TechnologyError(f"technology file {where}: 'glb_area_table.bytes' and 'glb_area_table.area_m2' "
                              "must be lists of equal length >= 2")
    kb = [_num(v, "glb_area_table.bytes", where, True) for v in kb]
    ka = [_num(v, "glb_area_table.area_m2", where, True) for v in ka]
    if any(b2 <= b1 for b1, b2 in zip(kb, kb[1:])):
        raise TechnologyError(f"technology file {where}: 'glb_area_table.bytes' must be strictly increasing")
    coefs = _need(d, "coefficients", where)
    if not isinstance(coefs, dict):
        raise TechnologyError(f"technology file {where}: field 'coefficients' must be an object")
    coef = {}
    for k in COEFFICIENT_NAMES:
        coef[k] = np.float32(_num(_need(coefs, k, where + " coefficients"), f"coefficients.{k}", where))
    for k, default in OPTIONAL_COEFFICIENTS.items():
        coef[k] = np.float32(_num(coefs.get(k, default), f"coefficients.{k}", where))
    for k in NONNEGATIVE_COEFFICIENTS:
        if coef[k] < 0:
            raise TechnologyError(f"technology file {where}: field 'coefficients.{k}' must be >= 0, got {float(coef[k])!r}")
    for k in POSITIVE_COEFFICIENTS:
        if coef[k] <= 0:
            raise TechnologyError(f"technology file {where}: field 'coefficients.{k}' must be > 0, got {float(coef[k])!r}")
    unknown = sorted(set(coefs) - set(ALL_COEFFICIENT_NAMES))
    if unknown:
        raise TechnologyError(f"technology file {where}: unknown field(s) in 'coefficients': {unknown}")
    cell_name = d.get("cell_name", "")
    if not isinstance(cell_name, str):
        raise TechnologyError(f"technology file {where}: field 'cell_name' must be a string (CiMLoop cell file name)")
    absent = d.get("absent_components", [])
    if not isinstance(absent, list) or any(a not in COMPONENTS for a in absent):
        raise TechnologyError(f"technology file {where}: field 'absent_components' must be a list of {list(COMPONENTS)}")
    # numpy (not jax) leaves: a technology loaded inside a jit trace must not hold tracers
    return Technology(coef=coef, glb_ln_bytes=np.log(np.asarray(kb, np.float32)),
                      glb_ln_area=np.log(np.asarray(ka, np.float32)), name=name, node_nm=node,
                      cell_type=ctype, cell_name=cell_name, cell_area_m2=area, max_bits_per_cell=int(mbpc),
                      default_adc_bits=adc, version=version, absent_components=tuple(absent))


def technology_to_dict(tech: Technology, extra: dict | None = None) -> dict:
    """Inverse of ``technology_from_dict`` (for writing fitted files)."""
    d = {
        "name": tech.name, "version": tech.version, "node_nm": tech.node_nm,
        "cell": {"type": tech.cell_type, "area_m2": tech.cell_area_m2, "max_bits_per_cell": tech.max_bits_per_cell},
        "default_adc_bits": tech.default_adc_bits,
        **({"cell_name": tech.cell_name} if tech.cell_name else {}),
        "absent_components": list(tech.absent_components),
        "glb_area_table": {"bytes": [float(round(math.exp(float(v)))) for v in tech.glb_ln_bytes],
                           "area_m2": [float(math.exp(float(v))) for v in tech.glb_ln_area]},
        "coefficients": {k: float(tech.coef[k]) for k in ALL_COEFFICIENT_NAMES if k in tech.coef},
    }
    if extra:
        d.update(extra)
    return d


def load_technology(name_or_path: str | os.PathLike) -> Technology:
    """Load ``tech/<name>.json`` (e.g. "rram_32nm", "sram_7nm") or a JSON file path."""
    return _load_cached(str(name_or_path))


@functools.lru_cache(maxsize=32)
def _load_cached(name_or_path: str) -> Technology:
    p = Path(name_or_path)
    if not (p.suffix == ".json" and p.exists()):
        p = TECH_DIR / f"{name_or_path}.json"
        if not p.exists():
            avail = sorted(q.stem for q in TECH_DIR.glob("*.json"))
            raise TechnologyError(f"unknown technology {name_or_path!r}; available: {avail}")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise TechnologyError(f"technology file {p}: not valid JSON ({e})") from e
    return technology_from_dict(d, str(p))


def technology_names() -> list[str]:
    return sorted(q.stem for q in TECH_DIR.glob("*.json"))
