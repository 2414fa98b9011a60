"""Training of deep ensembles: beta-NLL regression + validity BCE, optax AdamW, early stopping.

All members train at once (``jax.vmap`` over stacked parameters), each on its own shuffle and
from its own initialisation. Targets that are NaN (invalid designs, non-finite labels) are
masked out of the regression loss - an invalid design is never a regression target - and only
feed the optional validity head. Early stopping keeps, per member, the parameters with the
lowest validation NLL.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cimnas_jax.surrogate import features as F
from cimnas_jax.surrogate.model import Ensemble, physics_base


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """hidden: layer widths; members: ensemble size; lr/weight_decay: AdamW; batch: designs per
    step; max_epochs/patience: early stopping on validation NLL; beta: beta-NLL exponent
    (0 = plain NLL, 1 = MSE-like mean fit); valid_weight: weight of the validity BCE."""

    hidden: tuple = (256, 256)
    members: int = 5
    lr: float = 2e-3
    weight_decay: float = 1e-5
    batch: int = 256
    max_epochs: int = 150
    patience: int = 12
    beta: float = 0.5
    valid_weight: float = 0.1
    seed: int = 0
    max_seconds: float = math.inf
    select: str = "nll"          # early-stopping criterion on validation: "nll" or "mse" (of the mean)


FEATURE_SETS = ("full", "arch", "arch_onehot")


def featurise(space, genomes, base_technology=None, chunk: int = 8192, features: str = "full"):
    """Host arrays: one-hot bool [N, C], numeric float32 [N, F(+3)], base logs [N, 3] or None.

    features: "full" (all genes + hardware/workload numerics), "arch" (ordinal network and bit
    gene values + architecture numerics; for accuracy from few labels) or "arch_onehot" (one-hot
    network and bit genes + architecture numerics; for accuracy from thousands of labels)."""
    if features not in FEATURE_SETS:
        raise ValueError(f"features must be one of {FEATURE_SETS}, got {features!r}")
    arch = features != "full"
    g = np.asarray(genomes, np.int32)
    f_oh = jax.jit(lambda x: (jnp.zeros((x.shape[0], 0), jnp.bool_) if features == "arch"
                              else F.arch_onehot(space, x, jnp.bool_) if arch
                              else F.onehot(space, x, jnp.bool_)))
    f_num = jax.jit(lambda x: F.arch_numeric(space, x) if arch else F.numeric(space, x))
    f_base = jax.jit(lambda x: physics_base(space, x, base_technology)[0]) if base_technology else None
    oh, num, base = [], [], []
    for i in range(0, len(g), chunk):
        c = g[i:i + chunk]
        pad = (-len(c)) % chunk if len(g) > chunk else 0
        cp = np.concatenate([c, np.repeat(c[:1], pad, 0)]) if pad else c
        oh.append(np.asarray(f_oh(cp))[:len(c)])
        num.append(np.asarray(f_num(cp))[:len(c)])
        if f_base is not None:
            base.append(np.asarray(f_base(cp))[:len(c)])
    oh, num = np.concatenate(oh), np.concatenate(num)
    base = np.concatenate(base) if f_base is not None else None
    if base is not None:
        num = np.concatenate([num, base], -1)
    return oh, num, base


def _loss_fn(module, beta, valid_weight):
    def loss(params, x, y, m, v):
        mu, logvar, vlogit = module.apply(params, x)
        var = jnp.exp(logvar)
        yy = jnp.where(m, y, 0.0)
        nll = 0.5 * (logvar + (yy - mu) ** 2 / var)
        if beta > 0:
            nll = nll * jax.lax.stop_gradient(var ** beta)
        reg = jnp.sum(jnp.where(m, nll, 0.0)) / jnp.maximum(jnp.sum(m), 1.0)
        if module.with_valid:
            bce = optax.sigmoid_binary_cross_entropy(vlogit, v.astype(jnp.float32)).mean()
            reg = reg + valid_weight * bce
        return reg
    return loss


def _plain_nll(module, params, x, y, m, select="nll"):
    mu, logvar, _ = module.apply(params, x)
    yy = jnp.where(m, y, 0.0)
    nll = 0.5 * (logvar + (yy - mu) ** 2 / jnp.exp(logvar)) if select == "nll" else (yy - mu) ** 2
    return jnp.sum(jnp.where(m, nll, 0.0)) / jnp.maximum(jnp.sum(m), 1.0)


def fit_ensemble(space, train: dict, val: dict | None, cfg: TrainConfig, *, targets: tuple,
                 with_valid: bool = False, base_technology: str | None = None,
                 init: Ensemble | None = None, log: Callable = print,
                 features: str = "full") -> tuple[Ensemble, dict]:
    """Train an ensemble.

    train/val: dicts with ``genomes`` int32 [N, G], ``y`` float [N, T] in label units (log units
    for hardware; NaN = excluded) and optionally ``valid`` bool [N]. With ``init`` the members
    start from that ensemble (fine-tuning) and keep its feature normalisation. Without ``val``
    training runs ``max_epochs`` and keeps the last parameters. Returns (ensemble, history).
    """
    t0 = time.time()
    T = len(targets)
    def prep(d):
        y = np.asarray(d["y"], np.float64).reshape(len(d["genomes"]), T)
        oh, num, base = featurise(space, d["genomes"], base_technology, features=features)
        if base is not None:
            y = y - base
        m = np.isfinite(y)
        v = np.asarray(d.get("valid", m.all(-1)), bool)
        return oh, num, np.where(m, y, 0.0).astype(np.float32), m, v
    oh, num, y, m, v = prep(train)
    if init is None:
        x_mean, x_std = num.mean(0), num.std(0)
        x_std = np.where(x_std > 1e-6, x_std, 1.0)
        yf = np.where(m, y, np.nan)
        y_mean, y_std = np.nanmean(yf, 0), np.nanstd(yf, 0)
        # floor 1e-3 (not 1): a physics correction that is ~0 must stay ~0 after de-standardising
        y_mean, y_std = np.nan_to_num(y_mean), np.maximum(np.nan_to_num(y_std, nan=1.0), 1e-3)
    else:
        x_mean, x_std, y_std = map(np.asarray, (init.x_mean, init.x_std, init.y_std))
        y_mean = np.asarray(init.y_mean)
    ens = Ensemble(params=None, x_mean=jnp.asarray(x_mean, jnp.float32), x_std=jnp.asarray(x_std, jnp.float32),
                   y_mean=jnp.asarray(y_mean, jnp.float32), y_std=jnp.asarray(y_std, jnp.float32),
                   hidden=tuple(cfg.hidden), targets=tuple(targets), with_valid=with_valid,
                   base_technology=base_technology, features=features)
    module = ens.module
    to_x = lambda oh_, num_: np.concatenate([oh_.astype(np.float32), (num_ - x_mean) / x_std], -1).astype(np.float32)
    X = jnp.asarray(to_x(oh, num))
    Y = jnp.asarray((y - y_mean) / y_std, jnp.float32)
    M_, V = jnp.asarray(m), jnp.asarray(v)
    N = X.shape[0]
    key = jax.random.PRNGKey(cfg.seed)
    if init is None:
        keys = jax.random.split(key, cfg.members)
        params = jax.vmap(lambda k: module.init(k, X[:1]))(keys)
    else:
        params = init.params
    n_mem = jax.tree_util.tree_leaves(params)[0].shape[0]
    B = int(min(cfg.batch, N))
    steps = max(N // B, 1)
    sched = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, min(steps * 2, steps * cfg.max_epochs // 10 + 1),
                                               steps * cfg.max_epochs, cfg.lr * 0.02)
    opt = optax.chain(optax.clip_by_global_norm(5.0), optax.adamw(sched, weight_decay=cfg.weight_decay))
    opt_state = jax.vmap(opt.init)(params)
    loss = _loss_fn(module, cfg.beta, cfg.valid_weight)

    def member_step(p, s, idx):
        l, gr = jax.value_and_grad(loss)(p, X[idx], Y[idx], M_[idx], V[idx])
        upd, s = opt.update(gr, s, p)
        return optax.apply_updates(p, upd), s, l

    @jax.jit
    def epoch(params, opt_state, perms):            # perms [steps, M, B]
        def body(carry, idx):
            p, s = carry
            p, s, l = jax.vmap(member_step)(p, s, idx)
            return (p, s), l
        (params, opt_state), ls = jax.lax.scan(body, (params, opt_state), perms)
        return params, opt_state, ls.mean(0)

    if val is not None:
        voh, vnum, vy, vm, _ = prep(val)
        Xv = jnp.asarray(to_x(voh, vnum))
        Yv, Mv = jnp.asarray((vy - y_mean) / y_std, jnp.float32), jnp.asarray(vm)
        val_loss = jax.jit(lambda p: jax.vmap(lambda q: _plain_nll(module, q, Xv, Yv, Mv, cfg.select))(p))
    rng = np.random.default_rng(cfg.seed)
    best = params
    best_loss = np.full(n_mem, np.inf)
    since = np.zeros(n_mem, int)
    hist = {"train_loss": [], "val_nll": [], "epochs": 0}
    for ep in range(cfg.max_epochs):
        perms = np.stack([rng.permutation(N)[:steps * B].reshape(steps, B) for _ in range(n_mem)], 1)
        params, opt_state, tl = epoch(params, opt_state, jnp.asarray(perms))
        hist["train_loss"].append(float(np.mean(tl)))
        hist["epochs"] = ep + 1
        if val is None:
            best = params
        else:
            vl = np.asarray(val_loss(params))
            hist["val_nll"].append(float(np.mean(vl)))
            imp = vl < best_loss - 1e-4
            best_loss = np.where(imp, vl, best_loss)
            since = np.where(imp, 0, since + 1)
            sel = jnp.asarray(imp)
            best = jax.tree_util.tree_map(
                lambda b, p: jnp.where(sel.reshape((-1,) + (1,) * (p.ndim - 1)), p, b), best, params)
            if np.all(since >= cfg.patience):
                break
        if ep % 10 == 0 or ep == cfg.max_epochs - 1:
            log(f"  epoch {ep:4d} train {hist['train_loss'][-1]:+.4f} "
                + (f"val_nll {hist['val_nll'][-1]:+.4f}" if hist["val_nll"] else "") + f" ({time.time() - t0:.0f}s)")
        if time.time() - t0 > cfg.max_seconds:
            log(f"  stopping: max_seconds {cfg.max_seconds} reached")
            break
    hist["seconds"] = time.time() - t0
    hist["best_val_nll"] = best_loss.tolist() if val is not None else None
    return ens.replace(params=best), hist
