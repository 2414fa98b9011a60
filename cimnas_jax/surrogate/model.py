"""Deep-ensemble Flax MLPs and the pure ``predict(sset, genomes)`` used as a search fitness.

An ``Ensemble`` holds M members' parameters stacked on a leading axis (trained and applied
with ``jax.vmap``). Each member maps [one-hot | standardised numeric features] to a Gaussian
(mean, log-variance) per standardised target; the ensemble mean is the average of member means
and its variance the mean member variance plus the spread of member means (Lakshminarayanan
et al. 2017). Hardware targets are natural logs (log J, log s, log mm^2) plus a validity logit.

Physics-informed variant (``base_technology`` set): the targets are *corrections* on top of
the analytic model ``cimnas_jax.hw.evaluate_designs`` in log space, and the analytic logs are
extra inputs. When the labels are that same analytic model the correction is ~0, so this
variant is only worth its cost when labels come from elsewhere (CiMLoop, another node).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from cimnas_jax.surrogate import features as F

HW_TARGETS = ("energy_j", "latency_s", "area_mm2")
ACC_TARGETS = ("accuracy",)


class MLP(nn.Module):
    """[one-hot | numeric] -> (mean, log-variance) per target, plus optional validity logit."""

    hidden: Sequence[int]
    n_out: int
    with_valid: bool = False

    @nn.compact
    def __call__(self, x):
        h = x
        for w in self.hidden:
            h = nn.gelu(nn.Dense(w)(h))
        mean = nn.Dense(self.n_out)(h)
        logvar = nn.Dense(self.n_out, kernel_init=nn.initializers.zeros,
                          bias_init=nn.initializers.constant(-2.0))(h)
        valid = nn.Dense(1)(h)[..., 0] if self.with_valid else jnp.zeros(h.shape[:-1])
        return mean, jnp.clip(logvar, -14.0, 6.0), valid


@flax.struct.dataclass
class Ensemble:
    """M stacked members plus the normalisation they were trained with.

    params: member parameters, leading axis M; x_mean/x_std: numeric feature normalisation [F];
    y_mean/y_std: target normalisation [T] (of the label, or of the correction when physics).
    """

    params: Any
    x_mean: jax.Array
    x_std: jax.Array
    y_mean: jax.Array
    y_std: jax.Array
    hidden: tuple = flax.struct.field(pytree_node=False, default=(256, 256))
    targets: tuple = flax.struct.field(pytree_node=False, default=HW_TARGETS)
    with_valid: bool = flax.struct.field(pytree_node=False, default=False)
    base_technology: str | None = flax.struct.field(pytree_node=False, default=None)
    features: str = flax.struct.field(pytree_node=False, default="full")   # "full" | "arch" | "arch_onehot"

    @property
    def module(self) -> MLP:
        return MLP(tuple(self.hidden), len(self.targets), self.with_valid)

    @property
    def n_members(self) -> int:
        return int(jax.tree_util.tree_leaves(self.params)[0].shape[0])


@flax.struct.dataclass
class SurrogateSet:
    """Hardware and/or accuracy ensembles for one space; ``predict`` is its pure entry point."""

    hw: Ensemble | None
    acc: Ensemble | None
    space_name: str = flax.struct.field(pytree_node=False, default="")


def physics_base(space, genomes, technology: str) -> tuple[jax.Array, jax.Array]:
    """Analytic-model logs ``[P, 3]`` (log J, log s, log mm^2; 0 where not finite) and valid ``[P]``."""
    from cimnas_jax.hw import evaluate_designs, load_technology
    r = evaluate_designs(space, genomes, tech=load_technology(technology))
    logs = jnp.stack([jnp.log(r.energy_j), jnp.log(r.latency_s), jnp.log(r.area_mm2)], -1)
    ok = jnp.all(jnp.isfinite(logs), -1)
    return jnp.where(jnp.isfinite(logs), logs, 0.0), r.valid & ok


def inputs(space, genomes, ens: Ensemble, base=None) -> jax.Array:
    """Model input ``[P, C + F (+3)]`` for one ensemble (numeric part standardised)."""
    arch = ens.features in ("arch", "arch_onehot")
    num = F.arch_numeric(space, genomes) if arch else F.numeric(space, genomes)
    if ens.base_technology is not None:
        num = jnp.concatenate([num, base], -1)
    num = (num - ens.x_mean) / ens.x_std
    if ens.features == "arch":   # ordinal architecture features alone (see features.arch_numeric)
        return num
    oh = F.arch_onehot(space, genomes) if arch else F.onehot(space, genomes)
    return jnp.concatenate([oh, num], -1)


def apply_members(ens: Ensemble, x):
    """Per-member standardised (mean, logvar, valid_logit): ``[M, P, T]``, ``[M, P, T]``, ``[M, P]``."""
    return jax.vmap(lambda p: ens.module.apply(p, x))(ens.params)


def ensemble_stats(ens: Ensemble, x, base=None):
    """Ensemble mean and std ``[P, T]`` in label units (log units for hardware), valid prob ``[P]``."""
    mu, logvar, vlogit = apply_members(ens, x)
    mu = mu * ens.y_std + ens.y_mean
    var = jnp.exp(logvar) * ens.y_std ** 2
    mean = jnp.mean(mu, 0)
    std = jnp.sqrt(jnp.mean(var, 0) + jnp.var(mu, 0))
    if ens.base_technology is not None:
        mean = mean + base
    return mean, std, jnp.mean(jax.nn.sigmoid(vlogit), 0)


def _predict_chunk(sset: SurrogateSet, genomes):
    from cimnas_jax.space import get_space
    space = get_space(sset.space_name)
    g = jnp.atleast_2d(jnp.asarray(genomes, jnp.int32))
    out = {}
    if sset.hw is not None:
        base, bvalid = (physics_base(space, g, sset.hw.base_technology)
                        if sset.hw.base_technology is not None else (None, None))
        mean, std, pvalid = ensemble_stats(sset.hw, inputs(space, g, sset.hw, base), base)
        for i, t in enumerate(sset.hw.targets):
            out[t] = jnp.exp(mean[:, i])
            out[f"{t}_std"] = out[t] * std[:, i]          # delta method: std of the value
            out[f"log_{t}_std"] = std[:, i]               # relative uncertainty
        if sset.hw.with_valid:
            out["valid_prob"] = pvalid                    # learned validity classifier
        elif bvalid is not None:
            out["valid_prob"] = bvalid.astype(jnp.float32)  # analytic model's own verdict
    if sset.acc is not None:
        mean, std, _ = ensemble_stats(sset.acc, inputs(space, g, sset.acc))
        out["accuracy"], out["accuracy_std"] = mean[:, 0], std[:, 0]
    return out


def predict(sset: SurrogateSet, genomes: jax.Array, chunk: int = 8192) -> dict:
    """Pure, jittable surrogate prediction for ``int32[P, G]`` genomes.

    Returns energy_j [J], latency_s [s], area_mm2 [mm^2] (with ``*_std`` absolute and
    ``log_*_std`` relative 1-sigma), valid_prob, and accuracy/accuracy_std [fraction] when the
    set has an accuracy model. Large batches run in chunks of ``chunk`` designs (``lax.map``)
    so memory stays O(chunk x one-hot width). Inputs are not checked here (it runs under jit):
    use ``Surrogate.__call__`` or ``check_genomes`` on host data.
    """
    g = jnp.atleast_2d(jnp.asarray(genomes, jnp.int32))
    P = g.shape[0]
    if P <= chunk:
        return _predict_chunk(sset, g)
    n = -(-P // chunk)
    gp = jnp.concatenate([g, jnp.zeros((n * chunk - P, g.shape[1]), g.dtype)], 0)
    out = jax.lax.map(lambda c: _predict_chunk(sset, c), gp.reshape(n, chunk, -1))
    return {k: v.reshape(n * chunk)[:P] for k, v in out.items()}


def check_genomes(space, genomes) -> np.ndarray:
    """Host-side validation: reject NaN/inf/non-integer values and out-of-range genes clearly."""
    a = np.asarray(genomes)
    if a.dtype == object:
        raise ValueError("surrogate: genomes must be a numeric array of choice indices")
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a)
        if bad.any():
            row, col = map(int, np.argwhere(np.atleast_2d(bad))[0])
            name = space.gene_names[col] if a.ndim == 2 and col < space.n_genes else f"#{col}"
            raise ValueError(f"surrogate: genome {row} has a non-finite value ({a.flat[np.argmax(bad)]}) "
                             f"at gene '{name}'; genomes must hold integer choice indices")
    return space.check(a)
