"""CiMLoop spec variables, workload files, cache keys, output parsing: no CiMLoop needed."""
import dataclasses
import shutil
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from cimnas_jax.cimloop import backend as cl_backend
from cimnas_jax.cimloop.config import (HW_FIELDS, LAYER_FIELDS, CimloopConfig, cache_key,
                                       canonical_record, spec_inputs, workload_instance, workload_yaml)
from cimnas_jax.vocab import RecordError

SHARED = Path(__file__).resolve().parents[2] / "shared"
REF = SHARED / "cimloop_reference"
REPO = Path(__file__).resolve().parents[1]


def _records(name="layers.jsonl"):
    if not REF.exists():
        pytest.skip(f"../shared absent: {REF}")
    with open(REF / name) as f:
        return [json.loads(line) for line in f]


def _oat_records():
    """Baseline + one record per knob of the one-at-a-time sweep + a stride-2 depthwise."""
    recs = _records()
    picked, seen = [], set()
    for r in recs:
        knob = r["tags"].get("knob")
        if r["tags"].get("design") == "oat" and knob not in seen:
            picked.append(r)
            seen.add(knob)
    picked += [r for r in recs if r["layer"]["kind"] == "depthwise" and r["layer"]["stride"] == 2][:2]
    picked += [r for r in recs if r["layer"]["kind"] in ("conv", "fc")][:2]
    assert len(seen) >= 10
    return picked


def test_spec_variables_follow_reference_mapping():
    # README: knob -> attribute mapping and the fixed variables of the CIMNAS configuration.
    for r in _oat_records():
        hw = r["hw"]
        s = spec_inputs(r)
        v, a = s["variables"], s["attributes"]
        assert s["get_spec"] == {"macro": "basic_analog", "tile": "input_output_bufs",
                                 "chip": "large_router_glb",
                                 "system": "ws_dummy_buffer_many_macro"}
        assert s["jinja_parse_data"] == {"cell_override": "rram_neurosim_default.cell.yaml"}
        assert v["VOLTAGE"] == pytest.approx(hw["voltage"])
        assert v["BITS_PER_CELL"] == hw["bits_per_cell"]
        assert v["BASE_LATENCY"] == pytest.approx(hw["base_latency_s"])
        assert v["INPUT_BITS"] == r["input_bits"] and v["WEIGHT_BITS"] == r["weight_bits"]
        assert v["TEMPORAL_DAC_RESOLUTION"] == r["input_bits"]
        fixed = {"TECHNOLOGY": 32, "ADC_RESOLUTION": 8, "N_ADC_PER_BANK": 16,
                 "VOLTAGE_DAC_RESOLUTION": 1, "OUTPUT_BITS": 8, "READ_PULSE_WIDTH": 1e-8,
                 "BATCH_SIZE": 1, "MAX_UTILIZATION": False, "CIM_UNIT_WIDTH_CELLS": 1,
                 "CIM_UNIT_DEPTH_CELLS": 1}
        for k, want in fixed.items():
            assert v[k] == want, k
        assert a == {"row.spatial.meshY": hw["rows"], "column.spatial.meshX": hw["cols"],
                     "shared_router_group.spatial.meshX": hw["router_group"],
                     "tile_in_chip.spatial.meshX": hw["tiles"],
                     "macro_in_tile.spatial.meshX": hw["macros_per_tile"],
                     "glb.attributes.depth": hw["glb_depth_words"],
                     "macro_in_system.spatial.meshX": 1}
        if r["status"] == "ok":  # macros on the chip = router_group * tiles * macros_per_tile
            assert r["result"]["n_macros"] == a["shared_router_group.spatial.meshX"] * \
                a["tile_in_chip.spatial.meshX"] * a["macro_in_tile.spatial.meshX"]


def _ref_instance(layer):
    name = (f"{layer['kind']}_C{layer['C']}_M{layer['M']}_G{layer['groups']}_R{layer['R']}"
            f"_S{layer['S']}_P{layer['P']}_Q{layer['Q']}_s{layer['stride']}.yaml")
    text = (REF / "workloads" / name).read_text()
    body = re.search(r"instance:\s*\{([^}]*)\}", text).group(1)
    return {k.strip(): int(x) for k, x in (kv.split(":") for kv in body.split(","))}


def test_workload_instances_match_reference_files():
    recs = _records() + _records("networks_layers.jsonl")
    shapes = {json.dumps({f: r["layer"][f] for f in LAYER_FIELDS}, sort_keys=True): r["layer"]
              for r in recs}
    assert len(shapes) > 50
    n_dw_s2 = 0
    for layer in shapes.values():
        inst = workload_instance(layer)
        assert inst == _ref_instance(layer), layer
        assert "HStride" not in inst
        if layer["kind"] == "depthwise" and layer["stride"] == 2:
            assert inst["Hstride"] == 2 and inst["G"] == layer["C"] and inst["C"] == inst["M"] == 1
            n_dw_s2 += 1
    assert n_dw_s2 > 0


def test_workload_yaml_has_instance_and_include():
    layer = {"kind": "depthwise", "C": 120, "M": 120, "R": 5, "S": 5, "P": 14, "Q": 14,
             "stride": 2, "groups": 120}
    text = workload_yaml(layer, "/x/workloads/problem_base.yaml", name="b3 dw")
    assert "{{include_text('/x/workloads/problem_base.yaml')}}" in text
    assert "instance: {G: 120, C: 1, M: 1, R: 5, S: 5, P: 14, Q: 14, Hstride: 2, Wstride: 2}" in text
    with pytest.raises(ValueError, match="C == M == groups"):
        workload_instance({**layer, "M": 60})


def test_cache_key_stable_and_sensitive_to_every_field():
    r = _records()[0]
    cfg = CimloopConfig()
    k = cache_key(r, cfg)
    # same design written differently: names, order, float32 round-off, ints as floats,
    # fixed knobs omitted -> same key
    r2 = json.loads(json.dumps(r))
    r2["layer"]["name"] = "other"
    r2["hw"] = {kk: r["hw"][kk] for kk in reversed(list(r["hw"]))}
    r2["hw"]["voltage"] = float(np.float32(r["hw"]["voltage"]))
    r2["hw"]["base_latency_s"] = float(np.float32(r["hw"]["base_latency_s"]))
    r2["hw"]["rows"] = float(r["hw"]["rows"])
    for f in ("technology_nm", "adc_bits", "n_adc_per_bank"):
        r2["hw"].pop(f)
    r2["tags"] = {"x": 1}
    assert cache_key(r2, cfg) == k
    # the key does not depend on the process (hash seed) that computes it
    code = ("import json,sys; from cimnas_jax.cimloop.config import cache_key, CimloopConfig;"
            "print(cache_key(json.loads(sys.stdin.read()), CimloopConfig()))")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(r), text=True,
                         capture_output=True, cwd=REPO, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == k, out.stderr
    # every field changes it
    keys = {k}
    for f in LAYER_FIELDS[1:]:
        m = json.loads(json.dumps(r))
        m["layer"][f] += 1
        keys.add(cache_key(m, cfg))
    m = json.loads(json.dumps(r))
    m["layer"]["kind"] = "conv"
    keys.add(cache_key(m, cfg))
    for f in ("input_bits", "weight_bits"):
        m = json.loads(json.dumps(r))
        m[f] = 6
        keys.add(cache_key(m, cfg))
    for f in HW_FIELDS:
        m = json.loads(json.dumps(r))
        if f == "technology_nm":  # the only other known node; its cell comes with it
            m["hw"].update(technology_nm=7, cell="sram_sinangil_jssc_2021.cell.yaml", bits_per_cell=1)
        else:
            m["hw"][f] = r["hw"][f] * 2
        keys.add(cache_key(m, cfg))
    n_cfg = 0
    for fld in dataclasses.fields(CimloopConfig):
        if fld.name == "models_dir":
            continue
        val = getattr(cfg, fld.name)
        new = (val + (("EXTRA", 1),)) if isinstance(val, tuple) else (
            val + 1 if isinstance(val, int) else f"{val}x")
        keys.add(cache_key(r, dataclasses.replace(cfg, **{fld.name: new})))
        n_cfg += 1
    n_expected = 1 + (len(LAYER_FIELDS) - 1) + 1 + 2 + len(HW_FIELDS) + n_cfg
    assert len(keys) == n_expected
    # models_dir (a path) is not part of the key; the version string is
    assert cache_key(r, dataclasses.replace(cfg, models_dir="/elsewhere")) == k


def _sram_records():
    p = SHARED / "cimloop_reference_sram7nm" / "layers.jsonl"
    if not p.exists():
        pytest.skip(f"../shared absent: {p}")
    return [json.loads(line) for line in open(p)]


def test_sram_record_spec_says_7nm_and_the_sram_cell():
    # the 7 nm SRAM reference records: TECHNOLOGY, the cell override and ADC_RESOLUTION per record
    recs = _sram_records()
    assert {r["hw"]["adc_bits"] for r in recs} == {4, 5, 6, 7, 8}
    for r in recs[::7]:
        s = spec_inputs(r)
        assert s["variables"]["TECHNOLOGY"] == 7
        assert s["jinja_parse_data"] == {"cell_override": "sram_sinangil_jssc_2021.cell.yaml"}
        assert s["variables"]["ADC_RESOLUTION"] == r["hw"]["adc_bits"]
        assert s["variables"]["BITS_PER_CELL"] == 1
    # the same layer built for the resnet50_sram7nm space (record_from_arrays with its technology)
    from cimnas_jax.cimloop.config import record_from_arrays
    lay = {"kind": 2, "C": 64, "M": 256, "R": 1, "S": 1, "P": 56, "Q": 56, "stride": 1, "groups": 1,
           "input_bits": 8, "weight_bits": 6, "macs": 64 * 256 * 56 * 56}
    hwf = {"voltage_v": 0.8, "bits_per_cell": 1, "clock_period_s": 1e-9, "rows": 512, "cols": 256,
           "router_group": 4, "tiles": 16, "macros_per_tile": 16, "glb_bytes": 8 * 2 ** 20, "adc_bits": 5,
           "n_adc_per_bank": 16}
    rec = record_from_arrays(lay, hwf, technology="sram_7nm")
    assert rec["hw"]["technology_nm"] == 7 and rec["hw"]["cell"] == "sram_sinangil_jssc_2021"
    assert rec["hw"]["adc_bits"] == 5
    s = spec_inputs(rec)
    assert s["variables"]["TECHNOLOGY"] == 7 and s["variables"]["ADC_RESOLUTION"] == 5
    assert s["jinja_parse_data"]["cell_override"] == "sram_sinangil_jssc_2021.cell.yaml"
    rr = record_from_arrays(lay, {**hwf, "bits_per_cell": 4, "adc_bits": 8})   # default technology: RRAM 32 nm
    assert rr["hw"]["technology_nm"] == 32 and rr["hw"]["cell"] == "rram_neurosim_default"
    assert spec_inputs(rr)["jinja_parse_data"]["cell_override"] == "rram_neurosim_default.cell.yaml"


def test_cache_key_names_the_cell_and_technology():
    r = _records()[0]
    assert "cell" not in r["hw"]                       # the RRAM reference records carry no cell
    cfg = CimloopConfig()
    k = cache_key(r, cfg)
    # spelling the default cell out (with or without the suffix) is the same record
    for c in ("rram_neurosim_default", "rram_neurosim_default.cell.yaml"):
        assert cache_key({**r, "hw": {**r["hw"], "cell": c}}, cfg) == k
    assert canonical_record(r)["hw"]["cell"] == "rram_neurosim_default"
    # a different cell (with its node) is a different key; a pair no technology has is an error
    # naming both fields, before any work
    s = {**r, "hw": {**r["hw"], "cell": "sram_sinangil_jssc_2021", "technology_nm": 7, "bits_per_cell": 1}}
    assert cache_key(s, cfg) != k
    assert cache_key(s, cfg) != cache_key({**r, "hw": {**r["hw"], "bits_per_cell": 1}}, cfg)   # same knobs, the other technology
    with pytest.raises(RecordError, match=r"hw.technology_nm=32 and hw.cell='sram_sinangil_jssc_2021'"):
        cache_key({**r, "hw": {**r["hw"], "cell": "sram_sinangil_jssc_2021"}}, cfg)
    with pytest.raises(RecordError, match="hw.technology_nm"):
        spec_inputs({**r, "hw": {**r["hw"], "technology_nm": 45}})
    # the cell is per record: the configuration has no cell any more
    assert "cell_override" not in CimloopConfig().key_dict()


def test_missing_fields_name_the_field():
    r = _records()[0]
    bad = json.loads(json.dumps(r))
    del bad["hw"]["rows"]
    with pytest.raises(ValueError, match="rows"):
        cache_key(bad, CimloopConfig())
    bad = json.loads(json.dumps(r))
    bad["layer"]["kind"] = "attention"
    with pytest.raises(ValueError, match="kind"):
        spec_inputs(bad)


def test_parse_output_reproduces_reference_fields():
    # A timeloopfe-like OutputStats built from reference per-component numbers must be
    # read back into exactly the reference result fields.
    for r in [x for x in _oat_records() if x["status"] == "ok"][:6]:
        res = r["result"]
        enc = r["input_bits"] * r["weight_bits"] * 8
        stats = types.SimpleNamespace(
            variables={"ENCODED_INPUT_BITS": r["input_bits"], "ENCODED_WEIGHT_BITS": r["weight_bits"],
                       "ENCODED_OUTPUT_BITS": 8},
            per_component_energy={**res["energy_breakdown_J"], "dummy_top": 0.0},
            per_component_area={**res["area_breakdown_m2"], "virtual_bitwise_mac": 0.0},
            cycles=res["cycles"], cycle_seconds=r["hw"]["base_latency_s"] / r["hw"]["voltage"],
            computes=res["computes"] * enc, percent_utilization=res["utilization_percent"],
            mapping="m")
        out = cl_backend.parse_output(stats, r)
        for f in ("energy_J", "latency_s", "cycle_seconds", "area_m2_total", "area_m2_per_macro",
                  "area_m2_macros", "area_m2_tile_buffers", "area_m2_chip_level", "computes",
                  "tops_per_w"):
            assert out[f] == pytest.approx(res[f], rel=1e-9), f
        assert out["n_macros"] == res["n_macros"] and out["cycles"] == res["cycles"]
        assert out["derived"] == res["derived"]


def test_backend_import_is_lazy_and_error_says_what_to_do(tmp_path, monkeypatch):
    code = ("import sys, cimnas_jax.cimloop; "
            "assert not any(m.startswith(('pytimeloop','timeloopfe','accelergy')) for m in sys.modules);"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "ok", out.stderr
    monkeypatch.delenv("CIMLOOP_MODELS_DIR", raising=False)
    with pytest.raises(cl_backend.CimloopUnavailable, match="CIMLOOP_MODELS_DIR"):
        cl_backend.CimloopBackend()
    with pytest.raises(cl_backend.CimloopUnavailable, match="top.yaml.jinja2"):
        cl_backend.CimloopBackend(models_dir=str(tmp_path))
    ok, why = cl_backend.cimloop_available(str(tmp_path))
    assert not ok and "top.yaml.jinja2" in why


def test_get_backend_cimloop_without_cimloop_is_a_clear_error(monkeypatch):
    hw = pytest.importorskip("cimnas_jax.hw", reason="cimnas_jax.hw not importable")
    if not hasattr(hw, "get_backend"):
        pytest.skip("cimnas_jax.hw.get_backend not present yet")
    if cl_backend.cimloop_available()[0]:
        pytest.skip("CiMLoop is installed here")
    monkeypatch.delenv("CIMLOOP_MODELS_DIR", raising=False)
    with pytest.raises(Exception, match="CIMLOOP_MODELS_DIR"):
        hw.get_backend("cimloop")


def _fake_stack(root):
    """A fake installed stack: a CiMLoop checkout (git), a timeloop-mapper wrapper script on PATH that
    execs the real binary (with its libtimeloop next to it), and a site folder with accelergy, the
    library plug-in (distribution "library") and a metadata-less pytimeloop/timeloopfe package."""
    models = root / "cimloop" / "workspace" / "models"
    models.mkdir(parents=True)
    (models / "top.yaml.jinja2").write_text("top\n")
    git = lambda *a: subprocess.run(["git", "-C", str(root / "cimloop"), *a], check=True, capture_output=True)
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x")
    prefix = root / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    (prefix / "bin" / "timeloop-mapper").write_bytes(b"\x7fELF timeloop 4cf6d4c")
    (prefix / "lib" / "libtimeloop-mapper.so").write_bytes(b"\x7fELF lib 4cf6d4c")
    wrap = root / "bin" / "timeloop-mapper"
    wrap.parent.mkdir()
    wrap.write_text(f"#!/bin/sh\nLD_LIBRARY_PATH={prefix}/lib exec {prefix}/bin/timeloop-mapper \"$@\"\n")
    wrap.chmod(0o755)
    site = root / "site"
    for name, ver, rec in (("accelergy", "0.4", "accelergy/__init__.py,sha256=aaa,10\n"),
                           ("library", "0.1", "../../../share/accelergy/estimation_plug_ins/accelergy-library-plugin/"
                                              "accelergywrapper.py,sha256=bbb,10\n")):
        d = site / f"{name}-{ver}.dist-info"
        d.mkdir(parents=True)
        (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {ver}\n")
        (d / "RECORD").write_text(rec)
    fe = site / "pytimeloop" / "timeloopfe"
    fe.mkdir(parents=True)
    (site / "pytimeloop" / "__init__.py").write_text("")
    (fe / "__init__.py").write_text("v = 1\n")
    return models, prefix, site


def test_stack_version_names_every_part_and_changes_the_key(tmp_path, monkeypatch):
    from cimnas_jax.cimloop.stack import stack_version
    models, prefix, site = _fake_stack(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.delenv("TIMELOOP_SRC_DIR", raising=False)
    rec = {"layer": {"kind": "pointwise", "C": 40, "M": 240, "R": 1, "S": 1, "P": 28, "Q": 28, "stride": 1,
                     "groups": 1}, "input_bits": 8, "weight_bits": 8,
           "hw": {"voltage": 0.7, "bits_per_cell": 4, "base_latency_s": 4e-9, "rows": 128, "cols": 128,
                  "router_group": 8, "tiles": 16, "macros_per_tile": 16, "glb_depth_words": 32768}}
    v0 = stack_version(str(models), path=[str(site)])
    parts = dict(p.split("=", 1) for p in v0.split(";"))
    assert set(parts) == {"cimloop", "timeloop-mapper", "accelergy", "library", "pytimeloop.timeloopfe", "pytimeloop"}
    assert len(parts["cimloop"]) == 40 and parts["timeloop-mapper"].startswith("sha256:")
    assert "libs:" in parts["timeloop-mapper"] and parts["accelergy"].startswith("0.4+record:")
    assert stack_version(str(models), path=[str(site)]) == v0          # deterministic
    key = lambda v: cache_key(rec, CimloopConfig(version=v))
    seen = {key(v0)}

    def changed(what):
        v = stack_version(str(models), path=[str(site)])
        assert v != v0 and key(v) not in seen, what
        seen.add(key(v))

    (prefix / "bin" / "timeloop-mapper").write_bytes(b"\x7fELF timeloop rebuilt")
    changed("timeloop binary (through its wrapper)")
    (prefix / "lib" / "libtimeloop-mapper.so").write_bytes(b"\x7fELF lib rebuilt")
    changed("libtimeloop")
    (site / "library-0.1.dist-info" / "RECORD").write_text("../share/accelergy/estimation_plug_ins/x.py,sha256=ccc,10\n")
    changed("library plug-in files")
    (site / "accelergy-0.4.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: accelergy\nVersion: 0.5\n")
    changed("accelergy version")
    (site / "pytimeloop" / "timeloopfe" / "__init__.py").write_text("v = 2\n")
    changed("timeloopfe source")
    (models / "top.yaml.jinja2").write_text("edited\n")
    changed("uncommitted CiMLoop model edit")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    if shutil.which("timeloop-mapper") is None:
        changed("timeloop-mapper absent")


def test_cimloop_path_rejects_bad_fields_before_any_work():
    # the same allowed ranges as the analytic path: a bad record never reaches CiMLoop (its key fails,
    # naming the field; CimloopBackend.evaluate_records turns that into an error record)
    r = _records()[0]
    for where, f, v in (("layer", "C", 0), ("layer", "stride", -1), ("hw", "rows", 0), ("hw", "voltage", -0.7),
                        ("hw", "adc_bits", "x"), ("hw", "adc_bits", None), ("hw", "glb_depth_words", 0),
                        ("hw", "bits_per_cell", 0), ("top", "input_bits", 0)):
        m = json.loads(json.dumps(r))
        (m if where == "top" else m[where])[f] = v
        name = f if where == "top" else f"{where}.{f}"
        with pytest.raises(RecordError, match=re.escape(name)):
            cache_key(m, CimloopConfig())
    with pytest.raises(RecordError, match="hw.bits_per_cell.*1..1"):
        cache_key({**r, "hw": {**r["hw"], "technology_nm": 7, "bits_per_cell": 4}}, CimloopConfig())


def test_cimloop_backend_returns_bad_records_as_errors(monkeypatch, tmp_path):
    # without CiMLoop: a backend object whose installation check is bypassed; the bad record must come
    # back as an error without the job runner seeing it
    b = cl_backend.CimloopBackend.__new__(cl_backend.CimloopBackend)
    b.config, b.workers, b.timeout_s, b.retry_failed = CimloopConfig(version="t"), 1, 10, False
    from cimnas_jax.cimloop import ResultCache
    b.cache = ResultCache(":memory:")
    seen = []
    monkeypatch.setattr(cl_backend, "run_records", lambda recs, *a, **k: (seen.extend(recs) or [], {}))
    r = _records()[0]
    bad = {**r, "id": "bad", "hw": {**r["hw"], "cell": "sram_sinangil_jssc_2021"}}
    out = b.evaluate_records([bad])
    assert seen == [] and out[0]["status"] == "error" and "hw.cell" in out[0]["error"]
    assert "hw.technology_nm=32" in out[0]["error"] and b.last_stats["n_rejected_input"] == 1
