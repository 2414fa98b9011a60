"""Export / load a trained supernet: params.msgpack (flax msgpack, float32 params only; BN
statistics are re-estimated per subnet) + MANIFEST.json (family, config and how it was trained).

The manifest's ``family`` (cimnas_jax.nets.family: ``mbv2`` or ``resnet``; absent = ``mbv2``,
for exports that predate the field) decides which model ``load_supernet`` builds."""

from __future__ import annotations

import json
from pathlib import Path

from cimnas_jax.assets import asset_path
from cimnas_jax.fileio import atomic_write
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from cimnas_jax.nets.config import SupernetConfig
from cimnas_jax.nets.family import family_of, get_family

PARAMS_FILE = "params.msgpack"
MANIFEST_FILE = "MANIFEST.json"
DEFAULT_SUPERNET_DIR = asset_path("supernet_fmnist")


def save_supernet(out_dir, params, cfg: SupernetConfig, manifest: dict) -> None:
    """Write params + manifest atomically; manifest gets the config under 'config' and the
    family (cimnas_jax.nets.family) under 'family'."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    host = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    atomic_write(out / PARAMS_FILE, flax.serialization.msgpack_serialize(host))
    m = dict(manifest, config=cfg.to_dict(), family=family_of(cfg).name)
    atomic_write(out / MANIFEST_FILE, (json.dumps(m, indent=2, sort_keys=True) + "\n").encode())


def load_supernet(path=None):
    """(model, params, cfg, manifest) from a folder written by save_supernet
    (default: the shipped cimnas_jax/assets/supernet_fmnist); the model is the manifest's
    family (``manifest['family']``, absent = mbv2). ``supernet_dir_for(space)`` gives a
    space's own shipped supernet."""
    d = Path(path) if path else DEFAULT_SUPERNET_DIR
    if not (d / PARAMS_FILE).exists() or not (d / MANIFEST_FILE).exists():
        raise FileNotFoundError(f"--supernet_dir: {d} lacks {PARAMS_FILE} / {MANIFEST_FILE}; train one with "
                                "experiments/train_supernet.py --export_dir=<folder>")
    manifest = json.loads((d / MANIFEST_FILE).read_text())
    try:
        fam = get_family(manifest.get("family"))
    except ValueError as e:
        raise ValueError(f"{d / MANIFEST_FILE}: {e}") from None
    cfg = fam.config_cls.from_dict(manifest["config"])
    template = fam.param_shapes(cfg)
    raw = flax.serialization.msgpack_restore((d / PARAMS_FILE).read_bytes())
    params = flax.serialization.from_state_dict(template, raw)
    bad = [f"{jax.tree_util.keystr(p)}: {a.shape} vs {t.shape}" for (p, a), t in
           zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(template))
           if tuple(a.shape) != tuple(t.shape)]
    if bad:
        raise ValueError(f"{d / PARAMS_FILE} does not match its MANIFEST config: {bad[:3]}")
    params = jax.tree.map(jnp.asarray, params)
    return fam.model_cls(cfg), params, cfg, manifest


def supernet_dir_for(space) -> Path:
    """The shipped supernet of a space (``space.supernet``, an asset name), e.g.
    cimnas_jax/assets/supernet_fmnist for mbv2_rram.  ValueError when the space has none."""
    name = getattr(space, "supernet", None)
    if not name:
        raise ValueError(f"space {getattr(space, 'name', space)!r} has no supernet (its `supernet` is None)")
    return asset_path(name)


def val_split_size(manifest: dict) -> int:
    """Validation images the supernet's training split off the training set (the labels and
    fine-tuning must use the same split); 5 000 for manifests that predate the field."""
    return int(manifest.get("run", {}).get("n_val", 5000))


def enable_compile_cache(path: str | None) -> None:
    """Persistent XLA compilation cache: the supernet graphs take minutes to compile on a busy
    2-core CPU; scripts that evaluate with the same shapes then reuse each other's executables."""
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
