"""A CiMLoop-trained correction of the analytic model: per layer, log(CiMLoop / analytic) of energy,
latency and area, predicted by a Flax deep ensemble (``cimnas_jax.surrogate``'s MLP members).

    feats = layer_features(tech, layers, hw)          # [..., L, F] (pure JAX, jit/vmap-able)
    delta = predict_log_ratio(corr, feats)            # [..., L, 3]: log CiMLoop/analytic (E, T, A)
    data = dataset_from_records(records, tech)        # CiMLoop layer records -> features + targets
    corr, hist = fit_correction(tech, train, val)     # deep ensemble, beta-NLL, optax AdamW

Inputs per layer (``FEATURE_NAMES``): the layer (kind one-hot, log C, M, R, S, P, Q, stride), its
bits, the hardware knobs, the analytic model's own mapping (slices, crossbar tiles, copies, weight
passes, P split, re-read factors; ``hw.model.map_layer`` / ``action_counts``), its log energy,
latency and area and per-component energy shares. The correction is trained per technology (one
for rram_32nm, one for sram_7nm); ``cimnas_jax.hw.calibrated`` applies it to designs and records.
"""
from __future__ import annotations

import dataclasses
import functools
import time
import zlib
from typing import Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cimnas_jax.hw import model as M
from cimnas_jax.hw.tech import Technology
from cimnas_jax.vocab import ENERGY_COMPONENTS, KIND_NAMES

TARGETS = ("energy", "latency", "area")   # log(CiMLoop / analytic) per layer
FEATURE_NAMES = (
    *(f"kind_{k}" for k in KIND_NAMES),
    "ln_C", "ln_M", "ln_R", "ln_S", "ln_P", "ln_Q", "ln_stride", "input_bits", "weight_bits",
    "voltage_v", "bits_per_cell", "ln_clock_s", "ln_rows", "ln_cols", "ln_router_group", "ln_tiles",
    "ln_macros_per_tile", "ln_glb_bytes", "adc_bits", "ln_n_adc_per_bank",
    "ln_slices", "ln_row_tiles", "ln_col_tiles", "ln_macros_per_copy", "ln_passes", "ln_copies", "ln_p_parallel",
    "ln_p_steps", "ln_cycles", "ln_row_reread", "ln_col_reuse", "ln_c_passes", "ln_m_passes", "multi_pass",
    "ln_p_macro", "ln_p_tile", "ln_p_router", "ln_spare_macro", "ln_spare_tile", "ln_spare_router",
    "ln_fmap_over_glb", "ln_energy_analytic", "ln_latency_analytic", "ln_area_analytic",
    *(f"share_{k}" for k in ENERGY_COMPONENTS),
)
# The area target's inputs: CiMLoop's chip area depends on the hardware alone (every layer of a chip
# reports the same area), so its correction sees only the hardware knobs (a
# per-layer input would make layers of one chip disagree about its area).
CHIP_FEATURES = ("voltage_v", "bits_per_cell", "ln_clock_s", "ln_rows", "ln_cols", "ln_router_group", "ln_tiles",
                 "ln_macros_per_tile", "ln_glb_bytes", "adc_bits", "ln_n_adc_per_bank")
CHIP_INDEX = tuple(FEATURE_NAMES.index(f) for f in CHIP_FEATURES)
LAYER_TARGETS, CHIP_TARGETS = (0, 1), (2,)   # indices into TARGETS


def analytic_layers(tech: Technology, layers, hw) -> dict:
    """The analytic model per layer slot ``[..., L]``: energy_j (all components), latency_s,
    area_m2 (the chip at this layer's bits, as a CiMLoop layer record reports it), ok, and the
    intermediates the features use. Inactive slots should hold unit shapes (see ``safe_layers``)."""
    shape = M.layer_shape(layers)
    mp = M.map_layer(shape, hw)
    act = M.action_counts(shape, mp)
    en = M.component_energies(tech, shape, mp, act, hw)
    energy = sum(en[k] for k in ENERGY_COMPONENTS)
    hw_l = jax.tree_util.tree_map(lambda x: x[..., None], hw)
    area = M.chip_area(tech, hw_l, mp.slices)
    area_m2 = sum(area[k] for k in ENERGY_COMPONENTS)
    return {"energy_j": energy, "latency_s": mp.latency_s, "area_m2": area_m2, "ok": M.layer_fits(tech, act, hw),
            "energy_breakdown_j": en, "mapping": mp, "actions": act}


def safe_layers(layers):
    """Inactive slots (which may hold zeros) get harmless unit shapes so logs stay finite."""
    act = layers.active.astype(bool) if layers.active.dtype != bool else layers.active
    one = lambda x: jnp.where(act, x, jnp.ones_like(x))
    return layers.replace(C=one(layers.C), M=one(layers.M), R=one(layers.R), S=one(layers.S), P=one(layers.P),
                          Q=one(layers.Q), stride=one(layers.stride), input_bits=one(layers.input_bits),
                          weight_bits=one(layers.weight_bits))


def layer_features(tech: Technology, layers, hw, analytic: dict | None = None) -> jax.Array:
    """Correction inputs ``float32[..., L, F]`` (names ``FEATURE_NAMES``) for a LayerTable ``[..., L]``
    and HardwareParams ``[...]``; pass ``analytic`` (``analytic_layers``' output) to reuse it."""
    a = analytic_layers(tech, layers, hw) if analytic is None else analytic
    mp, ac = a["mapping"], a["actions"]
    ln = lambda x: jnp.log(jnp.maximum(x, 1e-30))
    b = lambda x: jnp.broadcast_to(x[..., None], layers.C.shape)   # hardware [...] -> [..., L]
    e = a["energy_j"]
    cols = [(layers.kind == k).astype(jnp.float32) for k in range(len(KIND_NAMES))]
    cols += [ln(layers.C), ln(layers.M), ln(layers.R), ln(layers.S), ln(layers.P), ln(layers.Q), ln(layers.stride),
             layers.input_bits, layers.weight_bits]
    cols += [b(hw.voltage_v), b(hw.bits_per_cell), b(ln(hw.clock_period_s)), b(ln(hw.rows)), b(ln(hw.cols)),
             b(ln(hw.router_group)), b(ln(hw.tiles)), b(ln(hw.macros_per_tile)), b(ln(hw.glb_bytes)),
             b(hw.adc_bits), b(ln(hw.n_adc_per_bank))]
    cols += [ln(mp.slices), ln(mp.row_tiles), ln(mp.col_tiles), ln(mp.macros_per_copy), ln(mp.passes), ln(mp.copies),
             ln(mp.p_parallel), ln(mp.p_steps), ln(mp.cycles), ln(ac.row_reread), ln(ac.col_reuse), ln(ac.c_passes),
             ln(ac.m_passes), ac.multi_pass.astype(jnp.float32), ln(ac.p_macro), ln(ac.p_tile), ln(ac.p_router),
             ln(mp.spare_macro), ln(mp.spare_tile), ln(mp.spare_router),
             ln((ac.in_bits + ac.out_bits) / 8.0) - b(ln(hw.glb_bytes)), ln(e), ln(a["latency_s"]), ln(a["area_m2"])]
    cols += [a["energy_breakdown_j"][k] / e for k in ENERGY_COMPONENTS]
    out = jnp.stack([jnp.broadcast_to(jnp.asarray(c, jnp.float32), layers.C.shape) for c in cols], -1)
    return jnp.where(jnp.isfinite(out), out, 0.0)


@flax.struct.dataclass
class Correction:
    """A trained correction for one technology.

    params: ensemble members' MLP parameters (leading axis M): {"layer": energy and latency from all
    features, "chip": area from ``CHIP_FEATURES``}; x_mean/x_std: feature normalisation [F];
    y_mean/y_std: target normalisation [3] (log-ratio units); shrink [3]: the applied correction is
    shrink x the ensemble mean, shrink in [0, 1] chosen per target by grouped cross-validation on the
    training data (0: the data do not support a correction of that target, the analytic model
    stands); hidden: MLP widths; technology: the
    technology file the analytic base uses; technology_sha256: that file's hash at training time."""

    params: object
    x_mean: jax.Array
    x_std: jax.Array
    y_mean: jax.Array
    y_std: jax.Array
    shrink: jax.Array   # [3] factor on the predicted log-ratio, chosen by grouped cross-validation
    hidden: tuple = flax.struct.field(pytree_node=False, default=(64, 64))
    technology: str = flax.struct.field(pytree_node=False, default="")
    technology_sha256: str = flax.struct.field(pytree_node=False, default="")

    @property
    def modules(self) -> dict:
        return _modules(self.hidden)

    @property
    def n_members(self) -> int:
        return int(jax.tree_util.tree_leaves(self.params)[0].shape[0])


def _modules(hidden) -> dict:
    from cimnas_jax.surrogate.model import MLP
    return {"layer": MLP(tuple(hidden), len(LAYER_TARGETS), False), "chip": MLP(tuple(hidden), len(CHIP_TARGETS), False)}


def _apply(modules, p, x):
    """Standardised (mean, logvar) ``[N, 3]`` of one member for standardised features ``[N, F]``."""
    mu_l, lv_l, _ = modules["layer"].apply(p["layer"], x)
    mu_c, lv_c, _ = modules["chip"].apply(p["chip"], x[:, CHIP_INDEX])
    return jnp.concatenate([mu_l, mu_c], -1), jnp.concatenate([lv_l, lv_c], -1)


def predict_log_ratio(corr: Correction, feats: jax.Array, with_std: bool = False):
    """Ensemble mean of log(CiMLoop / analytic) ``[..., 3]`` (energy, latency, area) for features
    ``[..., F]``; with ``with_std`` also the ensemble's 1-sigma (log units: mean member variance plus
    the spread of member means)."""
    lead = feats.shape[:-1]
    x = ((feats - corr.x_mean) / corr.x_std).reshape(-1, feats.shape[-1])
    mods = corr.modules
    mu, logvar = jax.vmap(lambda p: _apply(mods, p, x))(corr.params)
    mu = mu * corr.y_std + corr.y_mean
    mean = (jnp.mean(mu, 0) * corr.shrink).reshape(*lead, len(TARGETS))
    if not with_std:
        return mean
    var = jnp.exp(logvar) * corr.y_std ** 2
    std = (jnp.sqrt(jnp.mean(var, 0) + jnp.var(mu, 0)) * corr.shrink).reshape(*lead, len(TARGETS))
    return mean, std


# --------------------------------------------------------------------------- data
@dataclasses.dataclass
class LayerData:
    """Training / evaluation rows: features [N, F], targets y [N, 3] (log CiMLoop/analytic; NaN =
    not known, e.g. the area of a layer whose design failed), analytic [N, 3] (J, s, m^2), truth [N, 3]
    (CiMLoop's J, s, m^2), group [N] (rows of a group never straddle a split), source [N], ids [N]."""

    x: np.ndarray
    y: np.ndarray
    analytic: np.ndarray
    truth: np.ndarray
    group: np.ndarray
    source: np.ndarray
    ids: np.ndarray

    def __len__(self):
        return len(self.y)

    def take(self, mask) -> "LayerData":
        return LayerData(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))

    @staticmethod
    def concat(parts) -> "LayerData":
        parts = [p for p in parts if p is not None and len(p)]
        return LayerData(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(LayerData)))


@jax.jit
def _features_and_base(tech, layers, hw):
    a = analytic_layers(tech, layers, hw)
    f = layer_features(tech, layers, hw, a)
    return f[:, 0], jnp.stack([a["energy_j"][:, 0], a["latency_s"][:, 0], a["area_m2"][:, 0]], -1)


def dataset_from_records(records: list[dict], tech: Technology, group_fn: Callable[[dict], str],
                         source: str, area_m2=None) -> LayerData:
    """CiMLoop ``ok`` layer records (reference schema: result energy_J, latency_s, area_m2_total) of
    technology ``tech`` -> LayerData. ``area_m2``: optional per-record area overriding the result's
    (NaN = unknown)."""
    from cimnas_jax.hw.records import records_to_arrays
    keep = [i for i, r in enumerate(records) if r.get("status") == "ok" and r.get("result")]
    recs = [records[i] for i in keep]
    if not recs:
        return None
    layers, hw = records_to_arrays(recs, tech)
    x, base = _features_and_base(tech, layers, hw)
    x, base = np.asarray(x, np.float64), np.asarray(base, np.float64)
    area = (np.asarray([r["result"].get("area_m2_total", np.nan) for r in recs], float) if area_m2 is None
            else np.asarray(area_m2, float)[keep])
    truth = np.stack([[float(r["result"]["energy_J"]) for r in recs], [float(r["result"]["latency_s"]) for r in recs],
                      area], -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(truth / base)
    y = np.where(np.isfinite(y), y, np.nan)
    return LayerData(x=x.astype(np.float32), y=y, analytic=base, truth=truth,
                     group=np.asarray([group_fn(r) for r in recs], object), source=np.asarray([source] * len(recs), object),
                     ids=np.asarray([str(r.get("id", i)) for i, r in zip(keep, recs)], object))


def is_train_group(group: str) -> bool:
    """calibrate.py's split rule on a group name: the one-at-a-time sweep ("oat") trains; other
    groups train when crc32(group) % 10 < 6."""
    if group == "oat":
        return True
    return zlib.crc32(str(group).encode()) % 10 < 6


# --------------------------------------------------------------------------- training
@dataclasses.dataclass(frozen=True)
class FitConfig:
    """hidden: MLP widths; members: ensemble size; steps: full-batch AdamW steps; lr, weight_decay;
    beta: beta-NLL exponent (0 = NLL, 1 ~ MSE); seed."""

    hidden: tuple = (64, 64)
    members: int = 8
    steps: int = 2000
    lr: float = 3e-3
    weight_decay: float = 1e-3
    beta: float = 0.5
    seed: int = 0


@functools.lru_cache(maxsize=16)
def _trainer(hidden: tuple, steps: int, lr: float, weight_decay: float, beta: float):
    """(jitted full-batch training loop, optimiser) for one configuration (cached: compiled once per
    data shape)."""
    mods = _modules(hidden)
    sched = optax.warmup_cosine_decay_schedule(0.0, lr, max(steps // 20, 1), steps, lr * 0.02)
    opt = optax.chain(optax.clip_by_global_norm(5.0), optax.adamw(sched, weight_decay=weight_decay))

    def member_loss(p, w, mk, X, Y):
        # weighted beta-NLL: rows count by their bootstrap weight (weights enter the masked average)
        mu, logvar = _apply(mods, p, X)
        var = jnp.exp(logvar)
        nll = 0.5 * (logvar + (Y - mu) ** 2 / var) * jax.lax.stop_gradient(var ** beta)
        ww = jnp.where(mk, w[:, None], 0.0)
        return jnp.sum(ww * nll) / jnp.maximum(jnp.sum(ww), 1.0)

    @jax.jit
    def run(params, state, Wk, Mk, X, Y):
        def body(carry, _):
            p, s = carry
            l, g = jax.vmap(jax.value_and_grad(member_loss), in_axes=(0, 0, 0, None, None))(p, Wk, Mk, X, Y)
            u, s = jax.vmap(opt.update)(g, s, p)
            return (optax.apply_updates(p, u), s), l.mean()
        (params, state), ls = jax.lax.scan(body, (params, state), None, length=steps)
        return params, ls

    return run, opt


def fit_correction(tech: Technology, data: LayerData, cfg: FitConfig = FitConfig(), technology_sha256: str = "",
                   log: Callable = print) -> tuple[Correction, dict]:
    """Train the ensemble on ``data`` (all rows; NaN targets masked). Members differ in their
    initialisation and in a bootstrap resample of the groups. Returns (correction, history)."""
    t0 = time.time()
    x = np.asarray(data.x, np.float64)
    x_mean, x_std = x.mean(0), x.std(0)
    x_std = np.where(x_std > 1e-6, x_std, 1.0)
    m = np.isfinite(data.y)
    y_mean = np.nan_to_num(np.nanmean(np.where(m, data.y, np.nan), 0))
    y_std = np.maximum(np.nan_to_num(np.nanstd(np.where(m, data.y, np.nan), 0), nan=1.0), 1e-3)
    X = jnp.asarray((x - x_mean) / x_std, jnp.float32)
    Y = jnp.asarray(np.where(m, (data.y - y_mean) / y_std, 0.0), jnp.float32)
    mods = _modules(cfg.hidden)
    rng = np.random.default_rng(cfg.seed)
    groups = np.unique(data.group.astype(str))
    gidx = {g: np.flatnonzero(data.group.astype(str) == g) for g in groups}
    # bootstrap weights per member (resampled groups; every member sees each row 0, 1, 2... times)
    W = np.zeros((cfg.members, len(data)), np.float32)
    for k in range(cfg.members):
        for g in rng.choice(groups, len(groups), replace=True):
            W[k, gidx[g]] += 1.0
    Mk = jnp.asarray(m[None] & (W[..., None] > 0))
    Wk = jnp.asarray(W)
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.members)
    params = jax.vmap(lambda kk: {"layer": mods["layer"].init(jax.random.fold_in(kk, 0), X[:1]),
                                  "chip": mods["chip"].init(jax.random.fold_in(kk, 1), X[:1, CHIP_INDEX])})(keys)
    # rows padded to a multiple of 128 with zero weight: the cross-validation folds and a refit share
    # one compiled training loop
    pad = (-len(data)) % 128
    X, Y = jnp.pad(X, ((0, pad), (0, 0))), jnp.pad(Y, ((0, pad), (0, 0)))
    Wk = jnp.concatenate([Wk, jnp.zeros((cfg.members, pad), Wk.dtype)], 1)
    Mk = jnp.concatenate([Mk, jnp.zeros((cfg.members, pad, Mk.shape[-1]), bool)], 1)
    run, opt = _trainer(tuple(cfg.hidden), cfg.steps, cfg.lr, cfg.weight_decay, cfg.beta)
    state = jax.vmap(opt.init)(params)
    params, losses = run(params, state, Wk, Mk, X, Y)
    losses = np.asarray(losses)
    log(f"  correction fit ({tech.name}): {len(data)} rows, {cfg.members} members, {cfg.steps} steps, "
        f"loss {losses[0]:+.3f} -> {losses[-1]:+.3f} ({time.time() - t0:.1f} s)")
    corr = Correction(params=params, x_mean=jnp.asarray(x_mean, jnp.float32), x_std=jnp.asarray(x_std, jnp.float32),
                      y_mean=jnp.asarray(y_mean, jnp.float32), y_std=jnp.asarray(y_std, jnp.float32),
                      shrink=jnp.ones(len(TARGETS), jnp.float32), hidden=tuple(cfg.hidden), technology=tech.name, technology_sha256=technology_sha256)
    return corr, {"loss_first": float(losses[0]), "loss_last": float(losses[-1]), "seconds": time.time() - t0,
                  "n_rows": len(data), "n_groups": len(groups)}


SHRINK_GRID = np.linspace(0.0, 1.0, 21)


def fold_of(group: str, k: int) -> int:
    return zlib.crc32(("cv:" + str(group)).encode()) % k


def fit_correction_cv(tech: Technology, data: LayerData, cfg: FitConfig = FitConfig(), folds: int = 5,
                      technology_sha256: str = "", log: Callable = print) -> tuple[Correction, dict]:
    """``fit_correction`` on all of ``data`` with the per-target shrink chosen by grouped K-fold
    cross-validation on ``data`` alone: out-of-fold log-ratios delta, then per target the factor in
    0, 0.05, ..., 1 minimising the out-of-fold MAPE of analytic x exp(factor x delta). Returns
    (correction, report with the CV MAPE at every factor and the chosen ones)."""
    g = data.group.astype(str)
    fold = np.asarray([fold_of(x, folds) for x in g])
    oof = np.full(data.y.shape, np.nan)
    for f in range(folds):
        te = fold == f
        if not te.any() or te.all():
            continue
        c, _ = fit_correction(tech, data.take(~te), dataclasses.replace(cfg, seed=cfg.seed + 1 + f), log=lambda *a: None)
        oof[te] = np.asarray(jax.jit(predict_log_ratio)(c, jnp.asarray(data.x[te])), np.float64)
    shrink, curves = [], {}
    for i, t in enumerate(TARGETS):
        ok = np.isfinite(data.y[:, i]) & np.isfinite(oof[:, i])
        curve = [float(np.mean(np.abs(np.exp(a * oof[ok, i] - data.y[ok, i]) - 1.0)) * 100) if ok.any() else np.nan
                 for a in SHRINK_GRID]
        best = int(np.nanargmin(curve)) if ok.any() else 0
        shrink.append(float(SHRINK_GRID[best]))
        curves[t] = {"cv_mape_pct_by_shrink": dict(zip([round(float(a), 2) for a in SHRINK_GRID], curve)),
                     "shrink": shrink[-1], "cv_mape_pct_analytic": curve[0], "cv_mape_pct_chosen": curve[best],
                     "n": int(ok.sum())}
    log(f"  {tech.name}: {folds}-fold grouped CV shrink " + ", ".join(
        f"{t} {curves[t]['shrink']:.2f} (CV MAPE {curves[t]['cv_mape_pct_analytic']:.2f} -> "
        f"{curves[t]['cv_mape_pct_chosen']:.2f} %)" for t in TARGETS))
    corr, hist = fit_correction(tech, data, cfg, technology_sha256, log)
    corr = corr.replace(shrink=jnp.asarray(shrink, jnp.float32))
    return corr, {**hist, "cv": {"folds": folds, "rule": "crc32('cv:' + group) % folds", "targets": curves}}


def corrected(corr: Correction | None, data: LayerData) -> np.ndarray:
    """Corrected per-layer (J, s, m^2) ``[N, 3]`` for LayerData rows (the analytic model when ``corr`` is None)."""
    if corr is None:
        return data.analytic
    d = np.asarray(jax.jit(predict_log_ratio)(corr, jnp.asarray(data.x)), np.float64)
    return data.analytic * np.exp(d)


def _kendall(a, b):
    from scipy import stats
    return float(stats.kendalltau(a, b)[0])


def layer_metrics(pred: np.ndarray, truth: np.ndarray) -> dict:
    """MAPE [%] and Kendall tau per metric over rows with a known truth."""
    out = {}
    for i, t in enumerate(TARGETS):
        ok = np.isfinite(truth[:, i]) & np.isfinite(pred[:, i])
        p, r = pred[ok, i], truth[ok, i]
        out[t] = {"n": int(ok.sum()), "mape_pct": float(np.mean(np.abs(p / r - 1.0)) * 100),
                  "kendall_tau": _kendall(p, r) if ok.sum() > 2 else float("nan")}
    return out


def network_errors(pred: np.ndarray, data: LayerData, totals: dict) -> dict:
    """Per network (``data.group`` = network name): relative error of summed energy / latency and of
    the chip area (max over layers) against ``totals`` {network: (energy_J, latency_s, chip_area_m2)}."""
    out = {}
    for net, (e, t, a) in totals.items():
        sel = data.group.astype(str) == net
        if not sel.any():
            continue
        out[net] = {"energy_err": float(pred[sel, 0].sum() / e - 1), "latency_err": float(pred[sel, 1].sum() / t - 1),
                    "area_err": float(np.nanmax(pred[sel, 2]) / a - 1), "n_layers": int(sel.sum())}
    return out
