r"""The log of a 2-D integral of exp(log_f) by composite Simpson's rule on a box.

    log int_box exp(log_f(x)) dx  ~=  logsumexp_{ij} [log w_i + log w_j + log_f(x_ij)]

with Simpson's weights h/3 (1, 4, 2, 4, ..., 2, 4, 1) in each coordinate (an odd number of
nodes; Davis & Rabinowitz 1984, "Methods of Numerical Integration", Sec. 2.2). Working in logs
lets the integrand span hundreds of orders of magnitude (an unnormalised energy model's
exp(E) does). The error of Simpson's rule is O(h^4) for a smooth integrand; the mass outside
the box is not counted, so the box must hold it (``vilab ring --density`` compares the result
with an importance-sampling estimate, which has no box). Pure torch; never imports Pyro.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["log_integral_2d", "simpson_log_weights"]


def simpson_log_weights(
    lower: float, upper: float, num_points: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(nodes (n,), log weights (n,)) of composite Simpson's rule on [lower, upper], n odd."""
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 3:
        raise ValueError(f"num_points must be an odd integer >= 3, got {num_points!r}")
    if num_points % 2 == 0:
        raise ValueError(f"num_points must be odd for Simpson's rule, got {num_points}")
    if not (math.isfinite(lower) and math.isfinite(upper) and lower < upper):
        raise ValueError(f"need finite lower < upper, got lower={lower!r}, upper={upper!r}")
    nodes = torch.linspace(lower, upper, num_points, dtype=torch.float64)
    h = (upper - lower) / (num_points - 1)
    w = torch.full((num_points,), 2.0, dtype=torch.float64)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    return nodes, (w * h / 3).log()


def log_integral_2d(
    log_f: Callable[[torch.Tensor], torch.Tensor],
    box: tuple[float, float, float, float],
    num_points: int = 801,
    *,
    chunk: int = 1 << 16,
) -> float:
    """log of the integral of exp(log_f) over box = (x_lo, x_hi, y_lo, y_hi).

    Args:
        log_f: maps points (M, 2) float64 to log-integrand values (M,).
        num_points: odd nodes per coordinate (n^2 evaluations, ``chunk`` at a time).
    """
    x_lo, x_hi, y_lo, y_hi = (float(v) for v in box)
    xs, log_wx = simpson_log_weights(x_lo, x_hi, num_points)
    ys, log_wy = simpson_log_weights(y_lo, y_hi, num_points)
    grid = torch.cartesian_prod(xs, ys)  # (n^2, 2), x major
    log_w = (log_wx[:, None] + log_wy[None, :]).flatten()
    parts = []
    for start in range(0, grid.shape[0], chunk):
        values = log_f(grid[start : start + chunk]).flatten()  # + float64 log_w: float64
        parts.append(torch.logsumexp(values + log_w[start : start + chunk], dim=0))
    return torch.logsumexp(torch.stack(parts), dim=0).item()
