"""Percentiles and summaries of measured samples (no interpolation, no smoothing)."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list; None when empty."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


def summary(values: Iterable[float], digits: int = 1) -> dict:
    """count, p50, p95, p99, max of the samples (rounded), None figures when empty."""
    v = sorted(values)
    out: dict = {"count": len(v)}
    for name, p in (("p50", 50), ("p95", 95), ("p99", 99)):
        x = percentile(v, p)
        out[name] = None if x is None else round(x, digits)
    out["max"] = round(v[-1], digits) if v else None
    return out


def ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    """a / b, None when either is missing or b is 0."""
    if a is None or not b:
        return None
    return round(a / b, digits)
