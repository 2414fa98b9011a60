"""Plots for reports: atomic PNG writes, readable labels, the baseline always marked."""
from __future__ import annotations

import os
from pathlib import Path


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, path, tight: bool = True) -> Path:
    """tight_layout (unless the caller laid the figure out itself: ``tight=False``) + atomic write
    (tmp file + rename) + close."""
    plt = _plt()
    path = Path(path)
    if tight:
        fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.{os.getpid()}.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    plt.close(fig)
    return path


def convergence(path, history, ylabel: str, title: str, xkey: str = "evaluations"):
    """Best feasible objective so far against evaluations (log y)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    pts = [(h[xkey], h["best"][0]) for h in history if h["best"] and h["best"][0] is not None
           and h["best"][0] != float("inf")]
    if pts:
        ax.semilogy(*zip(*pts))
    ax.set_xlabel("fitness evaluations" if xkey == "evaluations" else xkey)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save(fig, path)


def labelled_scatter(path, points, xlabel: str, ylabel: str, title: str, logx=True, logy=False):
    """``points``: dicts with x, y, label, baseline (bool) and optionally ci = (lo, hi) drawn as an
    error bar. The baseline is a large star; labels are placed in alternating offsets so
    neighbouring points do not overprint each other."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    pts = [p for p in points if p["x"] is not None and p["y"] is not None]
    offsets = [(6, 6), (6, -12), (-40, 6), (-40, -12)]
    order = sorted(range(len(pts)), key=lambda i: (pts[i]["x"], pts[i]["y"]))
    for rank, i in enumerate(order):
        p = pts[i]
        if p.get("ci"):
            lo, hi = p["ci"]
            ax.errorbar(p["x"], p["y"], yerr=[[p["y"] - lo], [hi - p["y"]]], fmt="none", ecolor="0.6",
                        capsize=3, zorder=1)
        if p.get("baseline"):
            ax.scatter(p["x"], p["y"], marker="*", s=220, color="tab:red", zorder=3, label="baseline (reference)")
        else:
            ax.scatter(p["x"], p["y"], marker="o", s=50, color="tab:blue", zorder=2)
        ax.annotate(p["label"], (p["x"], p["y"]), fontsize=7, xytext=offsets[rank % len(offsets)],
                    textcoords="offset points")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if any(p.get("baseline") for p in pts):
        ax.legend(loc="best", fontsize=8)
    if any(p.get("ci") for p in pts):
        ax.text(0.01, 0.01, "bars: 95 % confidence interval", transform=ax.transAxes, fontsize=7, color="0.4")
    return save(fig, path)
