"""Fidelity metrics for surrogates: MAPE, Kendall tau, Spearman, top-10 % recall, calibration."""
from __future__ import annotations

import numpy as np
from scipy import stats


def fidelity(y_true, y_pred, *, lower_is_better: bool = True, log_space: bool = True,
             std=None) -> dict:
    """Metrics on finite pairs. y_* in label units (J, s, mm^2 or accuracy fraction).

    mape_pct: mean |pred - true| / |true| x 100; kendall_tau, spearman; top10_recall: share of
    the true best 10 % that the prediction also puts in its best 10 %. With ``std`` (1-sigma in
    log units when ``log_space``, else label units): coverage of +-1/2 sigma and a binned
    error-vs-sigma table (5 quantile bins of predicted sigma).
    """
    t, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    ok = np.isfinite(t) & np.isfinite(p)
    t, p = t[ok], p[ok]
    out = {"n": int(len(t))}
    if len(t) < 3:
        return out
    out["mape_pct"] = float(np.mean(np.abs(p - t) / np.maximum(np.abs(t), 1e-30)) * 100)
    out["kendall_tau"] = float(stats.kendalltau(t, p)[0])
    out["spearman"] = float(stats.spearmanr(t, p)[0])
    k = max(1, int(round(0.1 * len(t))))
    sgn = 1 if lower_is_better else -1
    top_t, top_p = set(np.argsort(sgn * t)[:k]), set(np.argsort(sgn * p)[:k])
    out["top10_recall"] = len(top_t & top_p) / k
    if std is not None:
        s = np.asarray(std, np.float64)[ok]
        err = (np.log(t) - np.log(p)) if log_space else (t - p)
        z = np.abs(err) / np.maximum(s, 1e-12)
        out["coverage_1sigma"] = float(np.mean(z <= 1))
        out["coverage_2sigma"] = float(np.mean(z <= 2))
        edges = np.quantile(s, np.linspace(0, 1, 6))
        bins = []
        for i in range(5):
            sel = (s >= edges[i]) & (s <= edges[i + 1]) if i == 4 else (s >= edges[i]) & (s < edges[i + 1])
            if sel.sum():
                bins.append({"mean_sigma": float(s[sel].mean()), "rmse": float(np.sqrt(np.mean(err[sel] ** 2))),
                             "n": int(sel.sum())})
        out["calibration_bins"] = bins
    return out


def plot_fidelity(path, name, y_true, y_pred, std=None, *, log_axes=True, metrics=None) -> None:
    """Predicted-vs-true scatter (left) and error-vs-predicted-sigma calibration (right) PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    ok = np.isfinite(t) & np.isfinite(p)
    fig, axes = plt.subplots(1, 2 if std is not None else 1, figsize=(10 if std is not None else 5, 4.5))
    axes = np.atleast_1d(axes)
    ax = axes[0]
    ax.scatter(t[ok], p[ok], s=3, alpha=0.4)
    lo, hi = np.min(np.r_[t[ok], p[ok]]), np.max(np.r_[t[ok], p[ok]])
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    if log_axes:
        ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlabel(f"true {name}"); ax.set_ylabel(f"predicted {name}")
    if metrics:
        ax.set_title(f"{name}: MAPE {metrics.get('mape_pct', float('nan')):.2f}%  "
                     f"tau {metrics.get('kendall_tau', float('nan')):.3f}", fontsize=9)
    if std is not None and metrics and metrics.get("calibration_bins"):
        b = metrics["calibration_bins"]
        ax = axes[1]
        ms = [x["mean_sigma"] for x in b]; rm = [x["rmse"] for x in b]
        ax.plot(ms, rm, "o-", label="binned RMSE")
        m = max(ms + rm)
        ax.plot([0, m], [0, m], "k--", lw=1, label="ideal")
        ax.set_xlabel("predicted sigma" + (" (log units)" if log_axes else ""))
        ax.set_ylabel("observed RMSE")
        ax.set_title(f"coverage 1s {metrics['coverage_1sigma']:.2f} (0.68), 2s {metrics['coverage_2sigma']:.2f} (0.95)",
                     fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
