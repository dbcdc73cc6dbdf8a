"""featpipe's NumPy L-BFGS: it reaches the minimizer, honours its limits, and stops (without
claiming the iteration limit) when rounding hides any further decrease."""

import numpy as np
import pytest

from featpipe.classical.lbfgs import minimize

OPTIONS = dict(max_eval=2000, tolerance_grad=1e-6, tolerance_change=1e-12, history_size=10)


def quadratic(n=200, condition=1e4, seed=0):
    """``0.5 (x - x*)ᵀ A (x - x*)`` with a rotated, ill-conditioned ``A``."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * np.logspace(0, np.log10(condition), n)) @ Q.T
    target = rng.standard_normal(n)

    def fun(x):
        r = x.astype(np.float64) - target
        g = A @ r
        return 0.5 * float(r @ g), g.astype(np.float32)

    return fun, target


def test_reaches_the_minimizer_of_an_ill_conditioned_quadratic():
    fun, target = quadratic()
    result = minimize(fun, np.zeros(len(target), np.float32), max_iter=1000, **OPTIONS)
    assert not result.stopped_on_limit
    assert np.abs(result.x - target).max() < 1e-3
    assert result.n_eval <= 1.2 * result.n_iter + 5  # the unit step is nearly always taken


def test_rosenbrock():
    def fun(x):
        a, b = float(x[0]), float(x[1])
        f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
        g = [-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)]
        return f, np.asarray(g, np.float32)

    result = minimize(fun, np.array([-1.2, 1.0], np.float32), max_iter=500, **OPTIONS)
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-3)


def test_stops_on_max_iter_and_says_so():
    fun, target = quadratic()
    result = minimize(fun, np.zeros(len(target), np.float32), max_iter=5, **OPTIONS)
    assert result.stopped_on_limit and result.n_iter == 5


def test_a_start_at_the_minimizer_takes_no_step():
    fun, target = quadratic()
    start = target.astype(np.float32)
    result = minimize(fun, start, max_iter=100, **{**OPTIONS, "tolerance_grad": 1e-2})
    assert result.n_iter == 0 and result.n_eval == 1
    np.testing.assert_array_equal(result.x, start)


@pytest.mark.parametrize("resolution", [1e-3, 1e-1])
def test_rounding_that_hides_the_decrease_ends_the_run_without_the_limit(resolution):
    fun, target = quadratic(n=50, condition=1e3)

    def rounded(x):
        f, g = fun(x)
        return np.round(f / resolution) * resolution, g

    result = minimize(rounded, np.zeros(len(target), np.float32), max_iter=10_000, **OPTIONS)
    assert not result.stopped_on_limit and result.n_iter < 10_000
    assert fun(result.x)[0] < fun(np.zeros(len(target), np.float32))[0]
