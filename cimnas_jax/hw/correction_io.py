"""Data and files of the CiMLoop-trained correction (``cimnas_jax.hw.correction``).

- ``reference_data(technology)``: the shared CiMLoop reference layer records of that node (RRAM:
  layers.jsonl + networks_layers.jsonl; SRAM: layers.jsonl) as LayerData, split by calibrate.py's
  rule (the "oat" sweep and groups with crc32(group) % 10 < 6 train; network layers train).
- ``label_dir_data(path, technology)``: the per-layer labels of an ``experiments/label.py`` folder
  (``--backend=cimloop``; any backend is read, its name is recorded) as LayerData grouped by design.
- ``retrain(technology, label_dirs)``: training set = reference train split + every label folder,
  grouped-CV shrink, final fit; held-out reference layers evaluated (analytic vs corrected).
- ``save_correction`` / ``load_correction``: ``<dir>/manifest.json`` + ``<dir>/params.msgpack``;
  shipped ones at ``cimnas_jax/assets/hw_correction/<technology>/``.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cimnas_jax.fileio import replace_folder
from cimnas_jax.hw import correction as C
from cimnas_jax.hw.tech import TECH_DIR, load_technology
from cimnas_jax.vocab import RecordError, resolve_technology

SHARED = Path(__file__).resolve().parents[3] / "shared"
REFERENCE_FILES = {"rram_32nm": ("cimloop_reference", ("layers.jsonl", "networks_layers.jsonl")),
                   "sram_7nm": ("cimloop_reference_sram7nm", ("layers.jsonl",))}
FORMAT = "cimnas_jax.hw_correction/1"


def shared_dir() -> Path:
    return Path(os.environ.get("CIMNAS_SHARED", SHARED))


def _read_jsonl(p) -> list[dict]:
    with open(p) as f:
        return [json.loads(line) for line in f if line.strip()]


def reference_group(rec: dict) -> str:
    t = rec.get("tags", {})
    if t.get("design") == "oat":
        return "oat"
    return str(t.get("group", t.get("network", rec.get("id"))))


def tech_sha256(technology: str) -> str:
    return hashlib.sha256((TECH_DIR / f"{technology}.json").read_bytes()).hexdigest()


def reference_data(technology: str) -> tuple[C.LayerData, np.ndarray, dict]:
    """(LayerData of every ok reference layer record of ``technology``, train mask, network totals
    {network: (energy_J, latency_s, chip_area_m2)}). Raises FileNotFoundError if ../shared is absent."""
    sub, files = REFERENCE_FILES[technology]
    d = shared_dir() / sub
    if not (d / files[0]).exists():
        raise FileNotFoundError(f"CiMLoop reference data for {technology} not found at {d}")
    tech = load_technology(technology)
    parts = [C.dataset_from_records(_read_jsonl(d / f), tech, reference_group, f) for f in files]
    data = C.LayerData.concat(parts)
    train = (data.source != "layers.jsonl") | np.asarray([C.is_train_group(g) for g in data.group.astype(str)])
    totals = {}
    if (d / "networks.jsonl").exists():
        for n in _read_jsonl(d / "networks.jsonl"):
            t = n["totals"]
            totals[n["network"]] = (t["energy_J"], t["latency_s"], t["chip_area_m2"])
    return data, train, totals


def label_dir_records(path) -> tuple[list[dict], list, dict]:
    """Reference-format layer records (result: energy_J, latency_s, area_m2_total = the design's chip
    area, NaN when the design failed) of a labelling folder, their design hashes, and its manifest."""
    path = Path(path)
    man_p = path / "manifest.json"
    manifest = json.loads(man_p.read_text()) if man_p.exists() else {}
    if not (path / "designs.jsonl").exists():
        raise FileNotFoundError(f"{path}: no designs.jsonl (an experiments/label.py output folder?)")
    recs, groups = [], []
    for d in _read_jsonl(path / "designs.jsonl"):
        hw = d.get("hw")
        if not hw:
            continue
        area = d.get("area_mm2")
        area_m2 = float(area) * 1e-6 if (d.get("valid") and area) else float("nan")
        for lay in d.get("layers", []):
            ok = lay.get("status") == "ok" and lay.get("energy_j") and lay.get("latency_s")
            recs.append({"id": f"{d['hash']}_{lay.get('index')}",
                         "layer": {k: lay[k] for k in ("kind", "C", "M", "R", "S", "P", "Q", "stride", "groups", "macs")},
                         "input_bits": lay["input_bits"], "weight_bits": lay["weight_bits"], "hw": hw,
                         "status": "ok" if ok else "error",
                         "result": {"energy_J": lay["energy_j"], "latency_s": lay["latency_s"],
                                    "area_m2_total": area_m2} if ok else None})
            groups.append(d["hash"])
    return recs, groups, manifest


def label_dir_data(path, technology: str) -> tuple[C.LayerData | None, dict]:
    """LayerData of a labelling folder's layers at ``technology`` (other technologies' designs are
    skipped and counted) and its provenance."""
    recs, groups, man = label_dir_records(path)
    keep, other = [], 0
    for r, g in zip(recs, groups):
        try:
            t = resolve_technology(r["hw"]).name
        except RecordError:
            t = None
        if t == technology:
            keep.append((r, g))
        else:
            other += 1
    gid = {id(r): g for r, g in keep}
    data = C.dataset_from_records([r for r, _ in keep], load_technology(technology), lambda r: gid[id(r)],
                                  f"labels:{Path(path).name}") if keep else None
    prov = {"path": str(path), "backend": man.get("backend"), "space": man.get("space"),
            "n_layer_records": len(keep), "n_ok": 0 if data is None else len(data), "n_other_technology": other}
    if man.get("backend") not in (None, "cimloop"):
        prov["note"] = f"labels from the {man.get('backend')!r} backend, not CiMLoop"
    return data, prov


def evaluate(corr, data: C.LayerData, totals: dict | None = None) -> dict:
    """Per-layer MAPE / tau of the analytic model and of ``corr`` on ``data`` (and network errors)."""
    out = {"analytic": C.layer_metrics(data.analytic, data.truth),
           "calibrated": C.layer_metrics(C.corrected(corr, data), data.truth), "n": len(data)}
    if totals:
        out["networks_analytic"] = C.network_errors(data.analytic, data, totals)
        out["networks_calibrated"] = C.network_errors(C.corrected(corr, data), data, totals)
    return out


def retrain(technology: str, label_dirs: Sequence = (), cfg: C.FitConfig = C.FitConfig(), folds: int = 5,
            reference: bool = True, log: Callable = print) -> tuple[C.Correction, dict]:
    """Train (or retrain, with more CiMLoop labels) the correction of ``technology``.

    Training rows: the reference train split (``reference``; held-out layers never train) plus every
    layer of every ``label_dirs`` folder at this technology. Returns (correction, report) with the
    data provenance, CV shrink and the held-out evaluation (analytic vs calibrated)."""
    parts, prov, held, totals = [], [], None, {}
    if reference:
        data, train, totals = reference_data(technology)
        parts.append(data.take(train))
        held = data.take(~train)
        prov.append({"reference": REFERENCE_FILES[technology][0], "files": list(REFERENCE_FILES[technology][1]),
                     "n_train": int(train.sum()), "n_held_out": int((~train).sum()),
                     "split": "oat + crc32(tags.group) % 10 < 6 train (calibrate.py); network layers train"})
    for p in label_dirs:
        d, pr = label_dir_data(p, technology)
        parts.append(d)
        prov.append(pr)
    train_data = C.LayerData.concat(parts)
    if train_data is None or not len(train_data):
        raise ValueError(f"no CiMLoop layer records for {technology} to train on")
    corr, hist = C.fit_correction_cv(load_technology(technology), train_data, cfg, folds, tech_sha256(technology), log)
    report = {"technology": technology, "data": prov, "n_train_rows": len(train_data), "fit": hist,
              "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}}
    if held is not None and len(held):
        report["held_out_layers"] = evaluate(corr, held)
    return corr, report


# --------------------------------------------------------------------------- files
def _versions() -> dict:
    import flax
    import optax
    return {"python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "numpy": np.__version__}


def save_correction(path, corr: C.Correction, manifest: dict) -> Path:
    """Write ``manifest.json`` + ``params.msgpack`` into ``path`` atomically (tmp dir + rename)."""
    from flax import serialization
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tree = {"params": jax.tree_util.tree_map(np.asarray, corr.params),
            **{k: np.asarray(getattr(corr, k)) for k in ("x_mean", "x_std", "y_mean", "y_std", "shrink")}}
    man = {"format": FORMAT, "technology": corr.technology, "technology_sha256": corr.technology_sha256,
           "hidden": list(corr.hidden), "members": corr.n_members, "targets": list(C.TARGETS),
           "features": list(C.FEATURE_NAMES), "shrink": [float(x) for x in np.asarray(corr.shrink)],
           "versions": _versions(), **manifest}
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o755)   # mkdtemp makes it private; a shipped folder must be readable
    try:
        (tmp / "params.msgpack").write_bytes(serialization.msgpack_serialize(tree))
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=float) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return replace_folder(tmp, path, ("params.msgpack", "manifest.json"))   # keeps a README


def correction_path(technology: str) -> Path:
    from cimnas_jax.assets import asset_path
    return asset_path("hw_correction", technology)


def load_correction(technology_or_path: str) -> C.Correction:
    """A saved correction: a technology name (the shipped ``assets/hw_correction/<name>/``) or a folder.
    Warns when its technology file has changed since training (the correction corrects that model)."""
    from flax import serialization
    p = Path(technology_or_path)
    if not (p / "manifest.json").exists():
        p = correction_path(str(technology_or_path))
    if not (p / "manifest.json").exists():
        raise FileNotFoundError(f"no hardware correction at {technology_or_path!r} (looked in {p}); train one with "
                                f"experiments/train_hw_correction.py")
    man = json.loads((p / "manifest.json").read_text())
    if man.get("format") != FORMAT:
        raise ValueError(f"{p}: not a hardware correction (format {man.get('format')!r})")
    if man.get("features") != list(C.FEATURE_NAMES):
        raise ValueError(f"{p}: trained on other input features; retrain it (experiments/train_hw_correction.py)")
    tree = serialization.msgpack_restore((p / "params.msgpack").read_bytes())
    corr = C.Correction(params=jax.tree_util.tree_map(jnp.asarray, tree["params"]),
                        **{k: jnp.asarray(tree[k]) for k in ("x_mean", "x_std", "y_mean", "y_std", "shrink")},
                        hidden=tuple(man["hidden"]), technology=man["technology"],
                        technology_sha256=man.get("technology_sha256", ""))
    try:
        now = tech_sha256(corr.technology)
    except OSError:
        now = None
    if now and corr.technology_sha256 and now != corr.technology_sha256:
        import warnings
        warnings.warn(f"hardware correction {p} was trained against {corr.technology}.json sha256 "
                      f"{corr.technology_sha256[:12]}; the analytic model now uses {now[:12]}: retrain it")
    return corr
