"""L-BFGS for NumPy: the two-loop recursion with a strong Wolfe line search, float32 vectors.

The solver of :mod:`featpipe.classical.linear` on NumPy input (Nocedal & Wright, *Numerical
Optimization*, 2nd ed., algorithms 7.4 and 7.5 for the direction; 3.5 and 3.6 with cubic
interpolation for the step). SciPy's L-BFGS-B, tried first, spent 12 ms an iteration on its
own bookkeeping for 31,210 unknowns (a linear SVM of 3,120 features and 10 classes), as long as
an evaluation of the objective on 2,000 rows, and the two fold fits in parallel threads waited
on each other there; these vector operations take well under a millisecond.

Examples
--------
>>> import numpy as np
>>> scale = np.linspace(1.0, 100.0, 50, dtype=np.float32)
>>> def quadratic(x):
...     return float(0.5 * np.sum(scale * (x - 1.0) ** 2)), scale * (x - 1.0)
>>> result = minimize(quadratic, np.zeros(50, np.float32), max_iter=100, max_eval=200,
...                   tolerance_grad=1e-4, tolerance_change=1e-12, history_size=10)
>>> bool(np.abs(result.x - 1.0).max() < 1e-4), result.stopped_on_limit
(True, False)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Sufficient decrease and curvature constants of the strong Wolfe conditions.
C1, C2 = 1e-4, 0.9
#: Most objective evaluations of one line search.
MAX_LINE_SEARCH = 25


@dataclass
class Result:
    x: np.ndarray
    n_iter: int
    n_eval: int
    stopped_on_limit: bool  # max_iter or max_eval reached before a tolerance


@dataclass
class _Point:
    """A trial step ``t`` along the search direction: objective, gradient, slope."""

    t: float
    f: float
    g: np.ndarray
    slope: float


def minimize(fun: Callable, x0: np.ndarray, *, max_iter: int, max_eval: int,
             tolerance_grad: float, tolerance_change: float, history_size: int) -> Result:
    """Minimize ``fun`` (``x -> (f, gradient)``, both for a flat float32 ``x``) from ``x0``.

    Stops when the largest absolute gradient entry is at most ``tolerance_grad``, when a step
    changes ``f`` or every entry of ``x`` by less than ``tolerance_change``, when the line
    search finds no strong Wolfe step (the float32 objective's rounding hides any further
    decrease), or on ``max_iter`` iterations or ``max_eval`` evaluations
    (``stopped_on_limit``).
    """
    x = np.array(x0, dtype=np.float32)
    f, g = _evaluate(fun, x)
    n_eval, n_iter = 1, 0
    if np.abs(g).max() <= tolerance_grad:
        return Result(x, 0, n_eval, False)
    history: deque = deque(maxlen=history_size)  # (s, y, 1 / y.s)
    while True:
        n_iter += 1
        direction = _direction(g, history)
        slope = float(g @ direction)
        if slope > -tolerance_change:
            return Result(x, n_iter, n_eval, False)
        first = 1.0 if n_iter > 1 else min(1.0, 1.0 / float(np.abs(g).sum()))
        point, used, wolfe = _line_search(fun, x, f, g, slope, direction, first,
                                          tolerance_change)
        n_eval += used
        step = np.float32(point.t) * direction
        change = point.g - g
        curvature = float(change @ step)
        if curvature > 1e-10:
            history.append((step, change, 1.0 / curvature))
        x += step
        f_before, f, g = f, point.f, point.g
        if np.abs(g).max() <= tolerance_grad:
            return Result(x, n_iter, n_eval, False)
        if n_iter >= max_iter or n_eval >= max_eval:
            return Result(x, n_iter, n_eval, True)
        if not wolfe or np.abs(step).max() <= tolerance_change \
                or abs(f - f_before) < tolerance_change:
            return Result(x, n_iter, n_eval, False)


def _evaluate(fun, x) -> tuple[float, np.ndarray]:
    f, g = fun(x)
    return float(f), np.asarray(g, dtype=np.float32).ravel()


def _direction(g: np.ndarray, history: deque) -> np.ndarray:
    """``-H g`` by the two-loop recursion over the stored ``(s, y, rho)`` pairs."""
    q = -g
    alphas = []
    for s, y, rho in reversed(history):
        alpha = rho * float(s @ q)
        q -= np.float32(alpha) * y
        alphas.append(alpha)
    if history:
        s, y, _ = history[-1]
        q *= np.float32(float(s @ y) / float(y @ y))
    for (s, y, rho), alpha in zip(history, reversed(alphas)):
        beta = rho * float(y @ q)
        q += np.float32(alpha - beta) * s
    return q


def _line_search(fun, x, f, gradient, slope, direction, t,
                 tolerance_change) -> tuple[_Point, int, bool]:
    """A step satisfying the strong Wolfe conditions (bracketing, then zoom): the accepted
    point, the evaluations used, and True. When none is found in :data:`MAX_LINE_SEARCH`
    evaluations (the objective's float32 rounding then hides any further decrease), the point
    of lowest objective seen (``t = 0``, no step, when none lowered it) and False."""
    origin = _Point(0.0, f, gradient, slope)
    best = [origin]  # the lowest objective so far: the answer should the search fail

    def at(t):
        value, gradient = _evaluate(fun, x + np.float32(t) * direction)
        point = _Point(t, value, gradient, float(gradient @ direction))
        if point.f < best[0].f:
            best[0] = point
        return point

    previous, used = origin, 0
    while True:
        point = at(t)
        used += 1
        if point.f > f + C1 * t * slope or (used > 1 and point.f >= previous.f):
            return _zoom(at, origin, previous, point, used, direction, tolerance_change, best)
        if abs(point.slope) <= -C2 * slope:
            return point, used, True
        if point.slope >= 0:
            return _zoom(at, origin, point, previous, used, direction, tolerance_change, best)
        if used >= MAX_LINE_SEARCH:
            return best[0], used, False
        low, high = t + 0.01 * (t - previous.t), 10.0 * t
        previous, t = point, _cubic_minimum(previous, point, low, high)


def _zoom(at, origin, low, high, used, direction, tolerance_change,
          best) -> tuple[_Point, int, bool]:
    """Shrink the bracket ``[low, high]`` (``low`` the better end, with sufficient decrease,
    possibly the origin) to a strong Wolfe step, as :func:`_line_search` returns it."""
    size = float(np.abs(direction).max())
    while used < MAX_LINE_SEARCH and abs(high.t - low.t) * size >= tolerance_change:
        lo, hi = sorted((low.t, high.t))
        t = _cubic_minimum(low, high, lo, hi)
        margin = 0.1 * (hi - lo)
        if min(t - lo, hi - t) < margin:  # too close to an end: no progress, bisect
            t = 0.5 * (lo + hi)
        point = at(t)
        used += 1
        if point.f > origin.f + C1 * t * origin.slope or point.f >= low.f:
            high = point
            continue
        if abs(point.slope) <= -C2 * origin.slope:
            return point, used, True
        if point.slope * (high.t - low.t) >= 0:
            high = low
        low = point
    return best[0], used, False


def _cubic_minimum(a: _Point, b: _Point, low: float, high: float) -> float:
    """Minimizer within ``[low, high]`` of the cubic that interpolates the values and slopes
    at ``a`` and ``b`` (the middle of the interval when the cubic has no minimum)."""
    if a.t == b.t:
        return 0.5 * (low + high)
    d1 = a.slope + b.slope - 3.0 * (a.f - b.f) / (a.t - b.t)
    square = d1 * d1 - a.slope * b.slope
    if square < 0 or not np.isfinite(square):
        return 0.5 * (low + high)
    d2 = np.sign(b.t - a.t) * np.sqrt(square)
    denominator = b.slope - a.slope + 2.0 * d2
    if denominator == 0:
        return 0.5 * (low + high)
    t = b.t - (b.t - a.t) * (b.slope + d2 - d1) / denominator
    return float(min(max(t, low), high))
