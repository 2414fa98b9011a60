"""Number formatting, Markdown tables and CSV text."""
from __future__ import annotations

import csv
import io
import math


def fmt(x, spec: str = ".3e") -> str:
    """A number for a table ('n/a' for None, NaN and inf)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    return format(x, spec)


def markdown_table(headers, rows) -> list[str]:
    """Lines of a Markdown table; ``rows`` are sequences of already formatted cells."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def csv_text(columns, rows) -> str:
    """CSV with a header; ``rows`` are dicts (missing keys and None become empty cells)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    return buf.getvalue()
