"""A least-squares line through a few points: calibration (words to tokens) and the latency
floor (TTFT over prompt tokens) both fit one to the server's own answers."""

from __future__ import annotations

from collections.abc import Sequence


def line(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(slope, intercept), or None when the points cannot define a line (fewer than two xs)."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return slope, mean_y - slope * mean_x
