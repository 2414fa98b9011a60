"""CiMLoop configuration, spec variables per layer record, canonical cache keys.

Pure Python, no CiMLoop import: everything here is testable without CiMLoop.
Defaults reproduce the CIMNAS configuration documented in
``/work/shared/cimloop_reference/README.md``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Mapping

from cimnas_jax.vocab import (CELL_FILE_SUFFIX, DEFAULT_TECHNOLOGY, FIELDS_BY_KEY, GLB_WORD_BYTES, HW_RECORD_DEFAULTS,
                              HW_RECORD_FIELDS, KIND_NAMES, LAYER_DIM_FIELDS, RecordError, check_bits_per_cell,
                              resolve_technology, technology_by_name)

KINDS = KIND_NAMES  # index = LayerTable.kind code

# Hardware knobs of a record's ``hw`` dict -> CiMLoop spec attribute path.
HW_ATTRIBUTES = {
    "rows": "row.spatial.meshY",
    "cols": "column.spatial.meshX",
    "router_group": "shared_router_group.spatial.meshX",
    "tiles": "tile_in_chip.spatial.meshX",
    "macros_per_tile": "macro_in_tile.spatial.meshX",
    "glb_depth_words": "glb.attributes.depth",
}
# Hardware knobs of a record's ``hw`` dict -> CiMLoop variable.
HW_VARIABLES = {
    "voltage": "VOLTAGE",
    "bits_per_cell": "BITS_PER_CELL",
    "base_latency_s": "BASE_LATENCY",
    "technology_nm": "TECHNOLOGY",
    "adc_bits": "ADC_RESOLUTION",
    "n_adc_per_bank": "N_ADC_PER_BANK",
}
HW_FIELDS = tuple(HW_VARIABLES) + tuple(HW_ATTRIBUTES)
# The CiMLoop cell file (jinja ``cell_override``): a string knob of the record's ``hw``, canonically
# without its ``.cell.yaml`` suffix; with ``technology_nm`` it names the technology (cimnas_jax.vocab).
HW_CELL = "cell"
# Knobs a record may omit: technology_nm and cell default to the technology they resolve to
# (neither given: rram_32nm, the CIMNAS configuration), adc_bits to that technology's default.
HW_FIXED_DEFAULTS = HW_RECORD_DEFAULTS
INT_HW_FIELDS = {f.key for f in HW_RECORD_FIELDS if f.integer} | {"technology_nm"}
LAYER_FIELDS = ("kind",) + tuple(f.key for f in LAYER_DIM_FIELDS) + ("groups",)
assert set(HW_FIELDS) == {f.key for f in HW_RECORD_FIELDS} | {"technology_nm"}, "record hw fields (cimnas_jax.vocab)"


@dataclasses.dataclass(frozen=True)
class CimloopConfig:
    """Which CiMLoop architecture is evaluated and its fixed variables.

    Every field goes into the cache key (through ``key_dict``) except ``models_dir``,
    whose *content* is represented by ``version`` instead of its path. The memory cell and the
    technology node are not here: they are per record (``hw.cell``, ``hw.technology_nm``).
    """
    macro: str = "basic_analog"
    tile: str = "input_output_bufs"
    chip: str = "large_router_glb"
    system: str = "ws_dummy_buffer_many_macro"
    fixed_variables: tuple = (
        ("VOLTAGE_DAC_RESOLUTION", 1),
        ("OUTPUT_BITS", 8),
        ("READ_PULSE_WIDTH", 1e-8),
        ("BATCH_SIZE", 1),
        ("MAX_UTILIZATION", False),
        ("CIM_UNIT_WIDTH_CELLS", 1),
        ("CIM_UNIT_DEPTH_CELLS", 1),
    )
    macro_in_system: int = 1  # one chip
    version: str = "unknown"  # CiMLoop/timeloop/accelergy versions; set by the backend
    models_dir: str | None = dataclasses.field(default=None, compare=False)

    def key_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("models_dir")
        d["fixed_variables"] = {k: v for k, v in self.fixed_variables}
        return d


def _num(x: Any, integer: bool, field: str = "value") -> Any:
    """Canonical number: ints as int, floats rounded to 6 significant digits.

    6 digits absorb float32 round-off (0.699999988 -> 0.7) while every knob in the
    search spaces has at most 3 significant digits. A non-number or non-finite value is a
    ``RecordError`` naming ``field``.
    """
    if isinstance(x, bool):
        return bool(x)
    try:
        xf = float(x)
    except (TypeError, ValueError):
        raise RecordError(f"field {field!r} must be a number, got {x!r}") from None
    if not math.isfinite(xf):
        raise RecordError(f"field {field!r} must be finite, got {x!r}")
    if integer:
        if abs(xf - round(xf)) > 1e-6 * max(1.0, abs(xf)):
            raise RecordError(f"field {field!r} must be an integer, got {x!r}")
        return int(round(xf))
    return float(f"{xf:.6g}")


def canonical_layer(layer: Mapping) -> dict:
    """Shape fields of a layer (name dropped: equal shapes share results)."""
    missing = [f for f in LAYER_FIELDS if f not in layer]
    if missing:
        raise RecordError(f"layer record lacks fields {missing}; needs {list(LAYER_FIELDS)}")
    kind = layer["kind"]
    if not isinstance(kind, str):
        kind = KINDS[int(kind)]
    if kind not in KINDS:
        raise RecordError(f"layer.kind={kind!r}; allowed {KINDS}")
    out = {"kind": kind}
    for f in LAYER_FIELDS[1:]:
        if f in FIELDS_BY_KEY:   # range check (groups: any whole number, checked by workload_instance)
            FIELDS_BY_KEY[f].check(layer[f], f"layer.{f}")
        out[f] = _num(layer[f], True, f"layer.{f}")
    return out


def canonical_hw(hw: Mapping) -> dict:
    """Hardware knobs with defaults filled in, canonical numbers, fixed order, plus the cell.

    ``technology_nm`` and ``cell`` are those of the technology the record resolves to
    (``cimnas_jax.vocab.resolve_technology``; a pair no technology has raises ``RecordError``);
    ``adc_bits`` defaults to that technology's, ``n_adc_per_bank`` to 16.
    """
    tech = resolve_technology(hw)
    full = {**HW_FIXED_DEFAULTS, "adc_bits": tech.default_adc_bits,
            **{k: v for k, v in hw.items() if k in HW_FIELDS}, "technology_nm": tech.node_nm}
    missing = [f for f in HW_FIELDS if f not in full]
    if missing:
        raise RecordError(f"hw record lacks fields {missing}; needs {list(HW_FIELDS)}")
    for f in HW_FIELDS:   # allowed ranges (cimnas_jax.vocab), the same checks as the analytic path's
        if f in FIELDS_BY_KEY:
            FIELDS_BY_KEY[f].check(full[f], f"hw.{f}")
    check_bits_per_cell(float(full["bits_per_cell"]), tech)
    out = {f: _num(full[f], f in INT_HW_FIELDS, f"hw.{f}") for f in HW_FIELDS}
    out[HW_CELL] = tech.cell
    return out


def canonical_record(record: Mapping) -> dict:
    """The part of a layer record that determines its CiMLoop result."""
    for f in ("layer", "input_bits", "weight_bits", "hw"):
        if f not in record:
            raise RecordError(f"record lacks field {f!r}")
    for f in ("input_bits", "weight_bits"):
        FIELDS_BY_KEY[f].check(record[f], f)
    return {
        "layer": canonical_layer(record["layer"]),
        "input_bits": _num(record["input_bits"], True, "input_bits"),
        "weight_bits": _num(record["weight_bits"], True, "weight_bits"),
        "hw": canonical_hw(record["hw"]),
    }


def cache_key(record: Mapping, config: CimloopConfig | Mapping | None) -> str:
    """sha256 hex of (layer shape, bits, hardware values, configuration + versions)."""
    cfg = config.key_dict() if isinstance(config, CimloopConfig) else dict(config or {})
    payload = {"record": canonical_record(record), "config": cfg}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def workload_instance(layer: Mapping) -> dict:
    """Timeloop problem instance of a layer.

    Depthwise: {G: channels, C: 1, M: 1, ...}. Strides use the spelling timeloop reads
    (``Hstride``/``Wstride``; ``HStride`` is silently ignored) and are written only when
    not 1, like the reference workload files.
    """
    lay = canonical_layer(layer)
    if lay["kind"] == "depthwise":
        if not (lay["C"] == lay["M"] == lay["groups"]):
            raise ValueError(f"depthwise layer needs C == M == groups, got {lay}")
        inst = {"G": lay["C"], "C": 1, "M": 1}
    else:
        if lay["groups"] != 1:
            raise ValueError(f"grouped non-depthwise layers are not supported: {lay}")
        inst = {"C": lay["C"], "M": lay["M"]}
    inst.update(R=lay["R"], S=lay["S"], P=lay["P"], Q=lay["Q"])
    if lay["stride"] != 1:
        inst.update(Hstride=lay["stride"], Wstride=lay["stride"])
    return inst


def workload_yaml(layer: Mapping, problem_base_path: str, name: str = "layer") -> str:
    """Text of a CiMLoop workload file (same layout as CiMLoop's own workloads)."""
    inst = workload_instance(layer)
    body = ", ".join(f"{k}: {v}" for k, v in inst.items())
    safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in str(name))
    return (
        f"{{{{include_text('{problem_base_path}')}}}}\n"
        "problem:\n"
        "  <<<: *problem_base\n"
        f"  instance: {{{body}}}\n"
        "  name: Conv2d\n"
        "  dnn_name: cimnas_jax\n"
        f"  notes: {safe}\n"
    )


def spec_inputs(record: Mapping, config: CimloopConfig | None = None) -> dict:
    """Everything set on the CiMLoop spec for one layer record.

    Returns {"jinja_parse_data": {...}, "get_spec": {macro, tile, chip, system},
    "variables": {NAME: value}, "attributes": {"node.path": value}, "instance": {...}}.
    """
    config = config or CimloopConfig()
    rec = canonical_record(record)
    hw = rec["hw"]
    variables = dict(config.fixed_variables)
    for field, var in HW_VARIABLES.items():
        variables[var] = hw[field]
    variables["INPUT_BITS"] = rec["input_bits"]
    variables["WEIGHT_BITS"] = rec["weight_bits"]
    variables["TEMPORAL_DAC_RESOLUTION"] = rec["input_bits"]
    attributes = {path: hw[field] for field, path in HW_ATTRIBUTES.items()}
    attributes["macro_in_system.spatial.meshX"] = config.macro_in_system
    return {
        "get_spec": {"macro": config.macro, "tile": config.tile, "chip": config.chip,
                     "system": config.system},
        "jinja_parse_data": {"cell_override": hw[HW_CELL] + CELL_FILE_SUFFIX},
        "variables": variables,
        "attributes": attributes,
        "instance": workload_instance(rec["layer"]),
    }


def record_from_arrays(layer_fields: Mapping, hw_fields: Mapping, name: str = "",
                       technology: str = DEFAULT_TECHNOLOGY) -> dict:
    """Reference-format layer record from one layer's LayerTable / HardwareParams values.

    ``layer_fields``: kind (int code or name), C, M, R, S, P, Q, stride, groups,
    input_bits, weight_bits, macs. ``hw_fields``: HardwareParams names (voltage_v,
    bits_per_cell, clock_period_s, rows, cols, router_group, tiles, macros_per_tile,
    glb_bytes, adc_bits, n_adc_per_bank). ``technology``: the technology file's name (a space's
    ``technology``); the record carries its ``technology_nm`` and ``cell``, and ``adc_bits``
    from ``hw_fields`` (default: the technology's).
    """
    tech = technology_by_name(technology)
    kind = layer_fields["kind"]
    kind = kind if isinstance(kind, str) else KINDS[int(kind)]
    layer = {"name": name, "kind": kind}
    for f in LAYER_FIELDS[1:]:
        layer[f] = int(round(float(layer_fields[f])))
    layer["macs"] = int(round(float(layer_fields["macs"])))
    defaults = {**HW_RECORD_DEFAULTS, "adc_bits": tech.default_adc_bits}
    hw = {f.key: _num(float(hw_fields[f.param] if f.param in hw_fields else defaults[f.key]) / f.scale, f.integer,
                      f"hw.{f.key}") for f in HW_RECORD_FIELDS}
    hw.update(technology_nm=_num(tech.node_nm, True), cell=tech.cell)
    return {"layer": layer, "input_bits": int(round(float(layer_fields["input_bits"]))),
            "weight_bits": int(round(float(layer_fields["weight_bits"]))), "hw": hw}
