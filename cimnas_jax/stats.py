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


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test: the p-value of ``b`` images right only under A and ``c`` right
    only under B (the discordant pairs of two classifiers on the same images) under "A and B are
    equally accurate" (b ~ Binomial(b + c, 1/2)). 1.0 when there is no discordant pair."""
    n, k = int(b) + int(c), min(int(b), int(c))
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1))        # exact integers: no underflow at n ~ 10^4
    return min(1.0, 2 * tail / 2 ** n)


def paired_accuracy_difference(correct_a, correct_b, z: float = 1.959963984540054) -> dict:
    """Accuracy of A minus accuracy of B measured on the same images (``correct_*``: bool per image,
    same order): the difference, its 95 % interval (Wald interval of a paired difference of
    proportions), the discordant counts and the exact McNemar p-value."""
    import numpy as np
    a, bb = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != bb.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"per-image outcomes must be two equal-length vectors, got {a.shape} and {bb.shape}")
    n = len(a)
    only_a, only_b = int(np.sum(a & ~bb)), int(np.sum(~a & bb))
    d = (only_a - only_b) / n
    half = z * math.sqrt(max(0.0, (only_a + only_b) / n - d * d) / n)
    return dict(difference=d, difference_ci95=[d - half, d + half], only_a=only_a, only_b=only_b, n_images=n,
                p_value=mcnemar_exact(only_a, only_b))
