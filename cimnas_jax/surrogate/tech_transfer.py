"""Physics-informed new-node transfer: re-fit the analytic model's technology coefficients.

A new technology node changes *what each action costs*, not how a network is mapped: cycles,
action counts and the form of every energy / area term stay those of ``cimnas_jax.hw``. So the
transferred surrogate for a new node is the analytic model itself, with its per-component
technology coefficients (energy per action, shape exponents, ADC figure of merit, buffer / router
/ driver areas, a GLB-area scale) fitted to a few full-network labels of the new node, starting
from (and pulled towards, by a Gaussian prior) the *source* node's calibrated coefficients.

Only the new node's datasheet description is taken from its technology file - node (nm), cell
type / area / bits, which components its macro lacks, default ADC bits - never its calibrated
coefficients or GLB area table (``node_description``). The source contributes its coefficients
and its GLB area table (shifted by a fitted log-scale).

Fit: maximum a posteriori in whitened coordinates, ``theta = theta0 + sigma * z``:

    L(z) = mean_i sum_t (log pred_it(theta) - log y_it)^2 + (noise / n) |z|^2

(labels in natural-log units; NaN labels ignored), minimised with optax Adam then L-BFGS.
``noise`` (the assumed squared log error of the model family) is chosen by k-fold
cross-validation on the training labels only. Everything in the loss is pure JAX and jitted.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cimnas_jax.hw import tech as _tech
from cimnas_jax.hw.evaluate import evaluate_layer_table
from cimnas_jax.hw.tech import Technology

# every coefficient the analytic model reads (optional ones included when this hw version has them)
COEFFICIENT_NAMES = tuple(getattr(_tech, "ALL_COEFFICIENT_NAMES", _tech.COEFFICIENT_NAMES))

GLB_SCALE = "glb_area_ln_scale"        # extra free parameter: ln shift of the GLB area table

# Prior standard deviation of each coefficient around its starting value (coefficient units).
# Intercepts (ln J / ln m^2 per action or per instance) may move by e^±3 between nodes; shape
# exponents by ~0.5; ADC figure-of-merit terms by a few dB.
PRIOR_SIGMA = {
    **{k: 3.0 for k in ("ln_e_cim", "ln_e_row", "ln_e_row2", "ln_e_col", "ln_e_ibuf", "ln_e_obuf", "ln_e_router_in",
                        "ln_e_router_out", "ln_e_glb_in", "ln_e_glb_out", "adc_e0", "ln_a_row", "ln_a_col",
                        "ln_a_router", "ibuf_a0", "obuf_a0", "adc_a0", GLB_SCALE)},
    **{k: 0.5 for k in ("cim_v_exp", "row_cols_exp", "row_pulse_exp", "row_ib_exp", "ibuf_ib_exp", "ibuf_ct_exp",
                        "ibuf_size_exp", "obuf_rt_exp", "obuf_sl_exp", "obuf_size_exp", "glb_fp_exp", "glb_fq_exp",
                        "glb_fp_exp_dw", "glb_fq_exp_dw", "glb_fp_exp_t", "glb_fq_exp_t", "glb_tm_exp", "glb_psum",
                        "col_cols_exp", "col_sl_exp", "ibuf_a1", "obuf_a1", "ibuf_a3", "obuf_a3", "adc_a_f",
                        "adc_a_e", "cim_slice_a", "cim_slice_b", "adc_lnf_shift", "row2_cols_exp")},
    "row2_v_exp": 1.0,
    "adc_fom_icpt": 5.0, "adc_fom_max": 5.0, "adc_fom_slope": 1.0,
    "glb_e1": 0.3, "glb_e2": 0.05, "ibuf_a2": 0.05, "obuf_a2": 0.05,
}
# Not fitted: the ADC terms (adc_*) are the accelergy ADC plug-in's constants, shared by every node
# (the node enters through node_nm); ok_theta only decides validity, which is not a regression label.
NOT_FITTED = ("ok_theta",)
NOT_FITTED_PREFIXES = ("adc_",)
COMPONENT_COEFS = {"column_drivers": ("ln_e_col", "ln_a_col", "col_cols_exp", "col_sl_exp")}
DESCRIPTION_FIELDS = ("name", "node_nm", "cell_type", "cell_area_m2", "max_bits_per_cell", "default_adc_bits",
                      "absent_components")


def node_description(tech: Technology) -> dict:
    """The uncalibrated datasheet description of a node (no fitted coefficient, no area table)."""
    return {k: getattr(tech, k) for k in DESCRIPTION_FIELDS}


def start_technology(source: Technology, description: dict) -> Technology:
    """Source coefficients and GLB area table, new node's description (node, cell, absent parts)."""
    bad = sorted(set(description) - set(DESCRIPTION_FIELDS))
    if bad:
        raise ValueError(f"start_technology: description fields {bad} are not allowed; allowed {list(DESCRIPTION_FIELDS)}")
    return source.replace(**description, version=f"transfer-from-{source.name}")


def generic_technology(description: dict, cell_area_overhead: float = 2.0) -> Technology:
    """A node-agnostic start for fitting *without* source knowledge ("from scratch" in the same
    model family): the calibrator's hand-set pre-calibration values ``cimnas_jax.hw.tech.INIT``
    (fitted to no node; the ADC terms are the plug-in constants every node shares), the new node's
    description, and a GLB area of ``bytes x 8 x cell area x cell_area_overhead`` (a bare bit-cell
    array; the fitted GLB scale absorbs the rest)."""
    kb = np.asarray([2.0 ** 19, 2.0 ** 25], np.float64)
    d = {"name": description.get("name", "generic"), "version": "generic-init", "node_nm": description["node_nm"],
         "cell": {"type": description["cell_type"], "area_m2": description["cell_area_m2"],
                  "max_bits_per_cell": description["max_bits_per_cell"]},
         "default_adc_bits": description.get("default_adc_bits", 8.0),
         "absent_components": list(description.get("absent_components", ())),
         "glb_area_table": {"bytes": kb.tolist(),
                            "area_m2": (kb * 8 * description["cell_area_m2"] * cell_area_overhead).tolist()},
         "coefficients": {k: float(v) for k, v in _tech.INIT.items() if k in COEFFICIENT_NAMES}}
    return _tech.technology_from_dict(d, "<generic start>")


def free_names(tech: Technology) -> tuple:
    """Coefficients fitted for ``tech``: all but NOT_FITTED and those of absent components, + GLB scale."""
    skip = set(NOT_FITTED)
    for comp in tech.absent_components:
        skip |= set(COMPONENT_COEFS.get(comp, ()))
    return tuple(k for k in COEFFICIENT_NAMES if k in tech.coef and k not in skip
                 and not k.startswith(NOT_FITTED_PREFIXES)) + (GLB_SCALE,)


def apply_params(tech0: Technology, theta: dict) -> Technology:
    """``tech0`` with the coefficients in ``theta`` replaced (jittable: theta may hold tracers)."""
    coef = {**tech0.coef, **{k: v for k, v in theta.items() if k != GLB_SCALE}}
    out = tech0.replace_coef(coef)
    if GLB_SCALE in theta:
        out = out.replace(glb_ln_area=jnp.asarray(tech0.glb_ln_area) + theta[GLB_SCALE])
    return out


def predict_logs(tech: Technology, layers, hw) -> jax.Array:
    """Natural logs ``[P, 3]`` of energy [J], latency [s], area [mm^2] by the analytic model."""
    r = evaluate_layer_table(tech, layers, hw)
    return jnp.stack([jnp.log(r.energy_j), jnp.log(r.latency_s), jnp.log(r.area_mm2)], -1)


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """adam_steps/lr: Adam on the whitened coordinates; lbfgs_steps: L-BFGS polish; noise_grid:
    candidate squared log errors of the family (prior weight = noise / n), chosen by ``folds``-fold
    CV when there are at least ``min_cv`` labels (else ``noise_default``)."""

    adam_steps: int = 1000
    lr: float = 0.05
    lbfgs_steps: int = 200
    noise_grid: tuple = (1e-4, 1e-3, 1e-2, 1e-1)
    noise_default: float = 1e-2
    folds: int = 4
    min_cv: int = 20
    seed: int = 0


def _make_fit(tech0: Technology, names: tuple, cfg: TransferConfig, lbfgs_steps: int = 0):
    """Pure MAP fit ``(layers, hw, y, w, noise, sigma) -> theta``: Adam (then L-BFGS) on the
    whitened offsets z, labels y [n, T] with weights w [n, T] (0 = ignored). vmap-able over
    (w, noise) so every cross-validation fold and candidate runs in one call."""
    theta0 = {k: (jnp.float32(tech0.coef[k]) if k != GLB_SCALE else jnp.float32(0.0)) for k in names}

    def fit(layers, hw, y, w, noise, sigma):
        n_eff = jnp.maximum(jnp.sum(jnp.any(w > 0, -1)), 1.0)
        yy = jnp.where(w > 0, y, 0.0)

        def loss(z):
            th = {k: theta0[k] + sigma[k] * z[k] for k in names}
            p = predict_logs(apply_params(tech0, th), layers, hw)
            r = jnp.where(w > 0, jnp.where(jnp.isfinite(p), p, 0.0) - yy, 0.0)
            prior = sum(z[k] ** 2 for k in names)
            return jnp.sum(w * r ** 2) / n_eff + noise / n_eff * prior

        opt = optax.chain(optax.clip_by_global_norm(10.0),
                          optax.adam(optax.cosine_decay_schedule(cfg.lr, max(cfg.adam_steps, 1), alpha=0.02)))
        finite = lambda t: jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(t)]))

        def adam_body(carry, _):
            z, s = carry
            l, g = jax.value_and_grad(loss)(z)
            g = jax.tree_util.tree_map(lambda x: jnp.where(jnp.isfinite(x), x, 0.0), g)
            u, s = opt.update(g, s, z)
            return (optax.apply_updates(z, u), s), l

        z = {k: jnp.float32(0.0) for k in names}
        (z, _), _ = jax.lax.scan(adam_body, (z, opt.init(z)), None, length=cfg.adam_steps)
        if lbfgs_steps > 0:
            lb = optax.lbfgs()
            vg = optax.value_and_grad_from_state(loss)

            def lb_body(carry, _):
                z, s, best_z, best_l = carry
                l, g = vg(z, state=s)
                u, s2 = lb.update(g, s, z, value=l, grad=g, value_fn=loss)
                z2 = optax.apply_updates(z, u)
                better = jnp.isfinite(l) & (l < best_l)
                best_z = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), z, best_z)
                best_l = jnp.where(better, l, best_l)
                z2 = jax.tree_util.tree_map(lambda a, b: jnp.where(finite(z2), a, b), z2, z)
                return (z2, s2, best_z, best_l), l

            (z, _, bz, bl), _ = jax.lax.scan(lb_body, (z, lb.init(z), z, jnp.inf), None, length=lbfgs_steps)
            lz = loss(z)
            z = jax.tree_util.tree_map(lambda a, b: jnp.where(lz <= bl, a, b), z, bz)
        return {k: theta0[k] + sigma[k] * z[k] for k in names}

    return fit


def fit_technology(tech0: Technology, layers, hw, y, *, names: Sequence[str] | None = None,
                   sigma: dict | None = None, cfg: TransferConfig = TransferConfig(),
                   log: Callable = lambda *_: None) -> tuple[Technology, dict]:
    """Fit ``tech0``'s free coefficients to log labels ``y [n, 3]`` (NaN = not a label) of the
    designs ``layers`` / ``hw`` (LayerTable [n, L], HardwareParams [n]).

    With at least ``cfg.min_cv`` labels the prior weight (``noise``) is chosen by k-fold CV on
    these labels. Every (fold or all labels) x candidate fit runs in one vmapped Adam call (one
compilation); ``cfg.lbfgs_steps > 0`` polishes the chosen all-label fit with L-BFGS.
    Returns (fitted technology, info: names fitted, n, CV error per candidate, noise chosen).
    """
    names = tuple(free_names(tech0) if names is None else names)
    unknown = [k for k in names if k not in COEFFICIENT_NAMES and k != GLB_SCALE]
    if unknown:
        raise ValueError(f"fit_technology: unknown coefficient(s) {unknown}; allowed {list(COEFFICIENT_NAMES)} "
                         f"and {GLB_SCALE!r}")
    sig = {**PRIOR_SIGMA, **(sigma or {})}
    sigma_ = {k: jnp.float32(sig.get(k, 1.0)) for k in names}
    y = np.asarray(y, np.float32)
    if y.ndim != 2 or y.shape[0] != np.asarray(hw.rows).shape[0]:
        raise ValueError(f"fit_technology: y must be [n designs, 3] log labels, got shape {y.shape}")
    w_all = np.isfinite(y).astype(np.float32)
    n = int(np.sum(w_all.any(-1)))
    if n == 0:
        raise ValueError("fit_technology: no finite label to fit")
    grid = tuple(float(v) for v in cfg.noise_grid) if (n >= cfg.min_cv and len(cfg.noise_grid) > 1) \
        else (float(cfg.noise_default),)
    folds = cfg.folds if len(grid) > 1 else 0
    fold = np.random.default_rng(cfg.seed).permutation(len(y)) % max(folds, 1)
    info = {"names": list(names), "n": n}
    Y = jnp.asarray(np.nan_to_num(y))
    # rows: (each CV fold, then all labels) x noise candidate; Adam fits, one vmapped call
    Ws = np.stack([w_all * (fold != f)[:, None] for f in range(folds) for _ in grid] + [w_all for _ in grid])
    Ns = np.asarray([nz for _ in range(folds + 1) for nz in grid], np.float32)
    fit = jax.jit(jax.vmap(_make_fit(tech0, names, cfg), in_axes=(None, None, None, 0, 0, None)))
    thetas = fit(layers, hw, Y, jnp.asarray(Ws), jnp.asarray(Ns), sigma_)
    pick = 0
    if folds:
        ev = jax.jit(jax.vmap(lambda th: predict_logs(apply_params(tech0, th), layers, hw)))
        P = np.asarray(ev({k: v[:folds * len(grid)] for k, v in thetas.items()}))   # [folds x grid, n, T]
        cv = []
        for j, nz in enumerate(grid):
            err = 0.0
            for f in range(folds):
                m = (fold == f)[:, None] & (w_all > 0)
                err += float(np.sum(np.where(m, (np.nan_to_num(P[f * len(grid) + j]) - np.nan_to_num(y)) ** 2, 0.0)))
            cv.append(err / max(float(np.sum(w_all)), 1.0))
            log(f"    noise {nz:g}: CV mean squared log error {cv[-1]:.5f}")
        pick = int(np.argmin(cv))
        info["cv_mse"] = dict(zip(grid, cv))
    info["noise"] = grid[pick]
    th = {k: v[folds * len(grid) + pick] for k, v in thetas.items()}
    if cfg.lbfgs_steps > 0:      # optional L-BFGS polish of the chosen fit (one more compilation)
        final = jax.jit(_make_fit(tech0, names, cfg, cfg.lbfgs_steps))
        th = final(layers, hw, Y, jnp.asarray(w_all), jnp.float32(grid[pick]), sigma_)
    tech = apply_params(tech0, th)
    coef = {k: np.float32(v) for k, v in tech.coef.items()}
    tech = tech.replace(coef=coef, glb_ln_area=np.asarray(tech.glb_ln_area, np.float32))
    return tech, info


def designs(space, genomes):
    """LayerTable and HardwareParams of ``genomes`` (host-side helper, jitted)."""
    f = jax.jit(lambda g: (space.workloads(g), space.hardware(g)))
    return f(jnp.asarray(genomes, jnp.int32))


__all__ = ["TransferConfig", "fit_technology", "start_technology", "generic_technology", "node_description", "free_names",
           "apply_params", "predict_logs", "designs", "PRIOR_SIGMA", "GLB_SCALE", "NOT_FITTED"]
