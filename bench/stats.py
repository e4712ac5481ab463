"""Order statistics for the tables: median and p95 by linear interpolation (numpy's default)."""
from __future__ import annotations

from collections.abc import Sequence


def quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float | None:
    return quantile(values, 0.5)


def p95(values: Sequence[float]) -> float | None:
    return quantile(values, 0.95)
