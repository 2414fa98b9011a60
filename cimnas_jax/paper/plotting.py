"""Small plotting helpers shared by the paper experiments (the figures go through report.plots.save)."""
from __future__ import annotations

import math


def plain_log_ticks(ax, axis: str = "y", fontsize: int = 7) -> None:
    """Log axis labelled with plain numbers ('0.5', '2', '10') instead of '2×10⁰'; minor ticks are
    labelled only when the axis spans less than about one decade (else they would overprint)."""
    from matplotlib.ticker import FuncFormatter
    a = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    span = math.log10(hi / lo) if lo > 0 and hi > 0 else 10
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if span < 1.1 else ""))
    ax.tick_params(axis=axis, which="both", labelsize=fontsize)
