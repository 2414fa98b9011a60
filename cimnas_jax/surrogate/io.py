"""Save / load trained surrogate sets: an orbax checkpoint of the arrays plus ``manifest.json``.

Layout of a set directory: ``manifest.json`` (space fingerprint, model config, provenance,
splits, metrics, versions, command) and ``checkpoint/`` (orbax PyTree of the ensembles' arrays).
Loading checks the space name, gene count and choices hash and raises ``SurrogateMismatch``.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import jax

import jax.numpy as jnp
import numpy as np

from cimnas_jax.assets import asset_path
from cimnas_jax.fileio import replace_folder
from cimnas_jax.surrogate import features as F
from cimnas_jax.surrogate.model import Ensemble, SurrogateSet, check_genomes, predict



class SurrogateMismatch(ValueError):
    """A surrogate set was loaded for a space it was not trained on."""


def _ens_config(e: Ensemble | None):
    if e is None:
        return None
    return {"hidden": list(e.hidden), "targets": list(e.targets), "with_valid": bool(e.with_valid),
            "base_technology": e.base_technology, "members": e.n_members, "features": e.features}


def save_set(path, sset: SurrogateSet, space, manifest: dict) -> Path:
    """Write ``sset`` to directory ``path`` atomically (tmp dir + rename); returns the path."""
    import orbax.checkpoint as ocp
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fp = F.space_fingerprint(space)
    if sset.space_name != space.name:
        raise SurrogateMismatch(f"set is for space '{sset.space_name}', not '{space.name}'")
    man = dict(manifest)
    man.update({"format": "cimnas_jax.surrogate/1", **fp,
                "model": {"hw": _ens_config(sset.hw), "acc": _ens_config(sset.acc)},
                "numeric_features": list(F.NUMERIC_NAMES), "onehot_width": F.n_onehot(space)})
    tree = {k: {f: np.asarray(getattr(e, f)) if f != "params" else jax.tree_util.tree_map(np.asarray, e.params)
                for f in ("params", "x_mean", "x_std", "y_mean", "y_std")}
            for k, e in (("hw", sset.hw), ("acc", sset.acc)) if e is not None}
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        ocp.PyTreeCheckpointer().save(tmp / "checkpoint", tree)
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=_json_default) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # keep non-model files (README, PNGs) of an existing set; replace model files
    return replace_folder(tmp, path, ("checkpoint", "manifest.json"))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def read_manifest(path) -> dict:
    p = Path(path) / "manifest.json"
    if not p.exists():
        raise FileNotFoundError(f"no surrogate set at {path} (missing manifest.json)")
    return json.loads(p.read_text())


def check_space(manifest: dict, space) -> None:
    """Raise SurrogateMismatch naming what differs between a set's manifest and ``space``."""
    fp = F.space_fingerprint(space)
    for k in ("space", "n_genes", "choices_hash"):
        if manifest.get(k) != fp[k]:
            raise SurrogateMismatch(
                f"surrogate set was trained for {k}={manifest.get(k)!r} but space '{space.name}' has "
                f"{k}={fp[k]!r}; retrain it (experiments/train_surrogates.py --space={space.name})")
    if manifest.get("onehot_width") not in (None, F.n_onehot(space)) or \
            manifest.get("numeric_features") not in (None, list(F.NUMERIC_NAMES)):
        raise SurrogateMismatch("surrogate set was trained with different input features; retrain it")


def load_set(path, space) -> SurrogateSet:
    """Load a set from ``path`` for ``space`` (fails clearly if it was trained on another space)."""
    import orbax.checkpoint as ocp
    path = Path(path).resolve()
    man = read_manifest(path)
    check_space(man, space)
    tree = ocp.PyTreeCheckpointer().restore(path / "checkpoint")
    ens = {}
    for k in ("hw", "acc"):
        cfg = man["model"].get(k)
        if cfg is None:
            ens[k] = None
            continue
        d = tree[k]
        ens[k] = Ensemble(params=jax.tree_util.tree_map(jnp.asarray, d["params"]),
                          x_mean=jnp.asarray(d["x_mean"]), x_std=jnp.asarray(d["x_std"]),
                          y_mean=jnp.asarray(d["y_mean"]), y_std=jnp.asarray(d["y_std"]),
                          hidden=tuple(cfg["hidden"]), targets=tuple(cfg["targets"]),
                          with_valid=bool(cfg["with_valid"]), base_technology=cfg["base_technology"],
                          features=cfg.get("features", "full"))
    _warn_if_base_changed(man, ens["hw"])
    return SurrogateSet(hw=ens["hw"], acc=ens["acc"], space_name=space.name)


def _warn_if_base_changed(man: dict, hw: Ensemble | None) -> None:
    """A physics set adds its correction to the *current* analytic model: warn if that model's
    technology file differs from the one the set was trained against."""
    if hw is None or hw.base_technology is None:
        return
    import hashlib
    import warnings
    lab = man.get("labels", {}).get("hardware", {})
    try:
        from cimnas_jax.hw.tech import TECH_DIR
        now = hashlib.sha256((TECH_DIR / f"{hw.base_technology}.json").read_bytes()).hexdigest()
    except OSError:
        return
    if lab.get("technology") == hw.base_technology and lab.get("sha256") not in (None, now):
        warnings.warn(f"surrogate set was trained against {hw.base_technology}.json sha256 {lab['sha256'][:12]}, "
                      f"the analytic model now uses {now[:12]}; retrain with: {man.get('command', '')}")


class Surrogate:
    """A loaded set bound to its space: ``surrogate(genomes)`` checks inputs then predicts (jitted).

    ``surrogate.sset`` and ``surrogate.predict`` (pure) are what a jitted search uses directly.
    """

    def __init__(self, sset: SurrogateSet, space, manifest: dict | None = None):
        self.sset, self.space, self.manifest = sset, space, manifest or {}
        self._jit = jax.jit(predict, static_argnames=("chunk",))

    @staticmethod
    def predict(sset, genomes, chunk: int = 8192):
        return predict(sset, genomes, chunk)

    @property
    def has_accuracy(self) -> bool:
        return self.sset.acc is not None

    def __call__(self, genomes, chunk: int = 8192) -> dict:
        g = check_genomes(self.space, genomes)
        return self._jit(self.sset, jnp.asarray(g), chunk=chunk)


def default_set_path(space, technology: str | None = None) -> Path:
    """Where the shipped surrogate set of ``space`` at ``technology`` (default: the space's) lives."""
    return asset_path(space.name, technology or space.technology)


def load_surrogates(space_name: str, path=None) -> Surrogate:
    """The shipped (or given) surrogate set for ``space_name``, checked against that space.

    path: a set directory; default the shipped ``cimnas_jax/assets/<space>/<technology>/``.
    """
    from cimnas_jax.space import get_space
    space = get_space(space_name)
    if path is None:
        path = default_set_path(space)
    sset = load_set(path, space)
    return Surrogate(sset, space, read_manifest(path))
