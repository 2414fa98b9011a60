"""The search's fitness: pure ``genomes -> metrics`` from a hardware source and an accuracy source.

Hardware sources: ``analytic`` (the embedded analytic CIM model, calibrated to real CiMLoop),
``surrogate`` (its Flax ensemble), ``calibrated`` (the analytic model times the CiMLoop-trained
per-layer correction of ``cimnas_jax.hw.calibrated``: the shipped one of the technology, or a folder
such as an active-learning round's retrained ``correction/``). Accuracy sources: ``surrogate`` (the shipped accuracy ensemble,
trained on accuracies measured on real quantized subnets), ``constant`` (every design equally
accurate: a hardware-only search). Metric keys as in ``cimnas_jax.search.objectives``.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

HW_SOURCES = ("analytic", "surrogate", "calibrated")
ACCURACY_SOURCES = ("surrogate", "constant")
SOURCE_NAMES = {"analytic": "analytic CIM model", "surrogate": "Flax surrogate ensemble",
                "calibrated": "analytic model + CiMLoop-trained correction",
                "constant": "constant (hardware-only search)"}


def correction_info(technology: str, path: str = "") -> dict:
    """Where the correction of ``hw_source='calibrated'`` comes from, without loading its weights:
    {path, technology, id, params_sha256, shipped}. ``id`` is the manifest's ``id`` where it has one
    (an active-learning round's), else ``<technology>@<params sha256[:12]>``. FileNotFoundError when
    there is none; ValueError when it is for another technology."""
    import hashlib
    import json
    from pathlib import Path

    from cimnas_jax.hw.correction_io import correction_path
    p = Path(path) if path else correction_path(technology)
    if not (p / "manifest.json").is_file() or not (p / "params.msgpack").is_file():
        raise FileNotFoundError(f"no hardware correction (manifest.json + params.msgpack) at {p}")
    man = json.loads((p / "manifest.json").read_text())
    if man.get("technology") != technology:
        raise ValueError(f"the hardware correction at {p} is for {man.get('technology')!r}, the search evaluates "
                         f"{technology!r}")
    sha = hashlib.sha256((p / "params.msgpack").read_bytes()).hexdigest()
    return {"path": str(p), "technology": technology, "id": man.get("id") or f"{technology}@{sha[:12]}",
            "params_sha256": sha, "shipped": not path}


def hw_source_name(hw_source: str, info: dict | None = None) -> str:
    """The search model's hardware source in words (with the correction's id for 'calibrated')."""
    if hw_source == "calibrated" and info:
        return f"{SOURCE_NAMES['calibrated']} {info['id']}" + (" (shipped)" if info.get("shipped") else "")
    return SOURCE_NAMES.get(hw_source, hw_source)


def make_fitness(space, hw_source: str = "analytic", accuracy_source: str = "surrogate",
                 surrogate=None, constant_accuracy: float = 1.0, technology: str | None = None,
                 correction=None) -> Callable:
    """Pure ``genomes -> metrics`` for the search (keys as in cimnas_jax.search.objectives).
    ``correction`` (hw_source 'calibrated'): a Correction, a folder, or None for the shipped one."""
    if hw_source not in HW_SOURCES:
        raise ValueError(f"hw_source must be one of {HW_SOURCES}, got {hw_source!r}")
    if accuracy_source not in ACCURACY_SOURCES:
        raise ValueError(f"accuracy_source must be one of {ACCURACY_SOURCES}, got {accuracy_source!r}")
    if (hw_source == "surrogate" or accuracy_source == "surrogate") and surrogate is None:
        raise ValueError("a surrogate set is needed for hw_source/accuracy_source 'surrogate'")
    if accuracy_source == "surrogate" and not surrogate.has_accuracy:
        raise ValueError(f"surrogate set for {space.name} has no accuracy model; use accuracy_source='constant'")
    from cimnas_jax.search.fitness import constant_accuracy_hardware_only, hardware_fitness
    from cimnas_jax.surrogate import predict
    from cimnas_jax.workload import capacity

    if accuracy_source == "surrogate":
        sset = surrogate.sset

        def acc_fn(g):
            return jnp.clip(predict(sset, g)["accuracy"], 1e-3, 1.0)
    else:
        acc_fn = constant_accuracy_hardware_only(constant_accuracy)
    if hw_source == "analytic":
        return hardware_fitness(space, acc_fn, technology)
    if hw_source == "calibrated":
        from cimnas_jax.hw.calibrated import calibrated_fitness
        return calibrated_fitness(space, acc_fn, correction or None, technology)

    sset = surrogate.sset

    def fitness(g):
        p = predict(sset, g)
        needed, avail = capacity(space.workloads(g), space.hardware(g))
        valid = p.get("valid_prob", jnp.ones_like(p["energy_j"])) > 0.5
        return dict(energy_j=p["energy_j"], latency_s=p["latency_s"], area_mm2=p["area_mm2"],
                    accuracy=acc_fn(g), valid=valid, cells_needed=needed, cells_available=avail)
    return fitness


def load_surrogate_for(cfg, space):
    """The surrogate set a configuration needs (None when neither source is 'surrogate')."""
    if "surrogate" not in (cfg.hw_source, cfg.accuracy_source):
        return None
    from cimnas_jax.surrogate import load_surrogates
    from cimnas_jax.surrogate.io import default_set_path
    path = cfg.surrogate_dir or default_set_path(space, cfg.technology or None)
    return load_surrogates(space.name, path)


def fitness_for(cfg, space, surrogate=None):
    """``make_fitness`` for a RunConfig (loads the surrogate set when needed)."""
    surrogate = surrogate if surrogate is not None else load_surrogate_for(cfg, space)
    return make_fitness(space, cfg.hw_source, cfg.accuracy_source, surrogate,
                        technology=cfg.technology or None, correction=cfg.hw_correction or None)


def search_model_info(cfg, space) -> dict:
    """{hw_source, name, correction (info dict or None)} of a RunConfig's search model."""
    info = None
    if cfg.hw_source == "calibrated":
        info = correction_info(cfg.technology or space.technology, cfg.hw_correction)
    return {"hw_source": cfg.hw_source, "name": hw_source_name(cfg.hw_source, info), "correction": info}


def padded_batch_size(n: int, minimum: int = 8) -> int:
    """The batch size ``n`` designs are evaluated at: the next power of two >= max(n, minimum), so
    a few compiled shapes serve every finalist count instead of one compilation per count."""
    size = minimum
    while size < n:
        size *= 2
    return size


def evaluate_padded(fn: Callable, genomes):
    """``jax.jit(fn)`` on ``genomes`` int32 [n, G] padded (with copies of the last row) to
    ``padded_batch_size(n)`` rows; returns the host pytree sliced back to n rows."""
    import jax
    import numpy as np
    g = np.asarray(genomes, np.int32)
    n = len(g)
    if n == 0:
        raise ValueError("evaluate_padded: no genomes")
    pad = padded_batch_size(n) - n
    if pad:
        g = np.concatenate([g, np.repeat(g[-1:], pad, 0)])
    out = jax.device_get(jax.jit(fn)(jnp.asarray(g)))
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[:n] if np.ndim(a) and np.shape(a)[0] == n + pad else a, out)
