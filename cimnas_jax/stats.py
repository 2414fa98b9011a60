"""Small statistics used where numbers are reported: confidence intervals for measured accuracy."""
from __future__ import annotations

import math


def wilson_interval(p: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95 % (by default) Wilson score interval of a proportion ``p`` measured on ``n`` trials
    (e.g. accuracy on n test images). Stays inside [0, 1] and is sensible near 0 and 1."""
    if n <= 0:
        return (0.0, 1.0)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if p <= 0 else lo, 1.0 if p >= 1 else hi)   # exact ends (no round-off above 0 at p = 0)


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True when two intervals share a point: the two measurements cannot be told apart."""
    return a[0] <= b[1] and b[0] <= a[1]
