"""The L-BFGS linear classifiers (NumPy and torch): scikit-learn conformance, agreement with
LinearSVC and LogisticRegression, warm starts, the cross-validated C path, and no copy of
float32 input."""

import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from featpipe.classical import linear
from featpipe.classical.linear import (
    LBFGSLinearSVC,
    LBFGSLogisticRegression,
    Objective,
    encode_targets,
    primal_objective,
    row_blocks,
)
from featpipe.classical.transformers import Standardizer


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small problems: torch's intra-op threads only add synchronization (and spin badly when
    the cores are shared), so this module runs torch on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@parametrize_with_checks([LBFGSLinearSVC(), LBFGSLogisticRegression()])
def test_sklearn_conformance(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    return X[:1200], y[:1200], X[1200:], y[1200:]


def reference(kind, C):
    if kind == "svc":
        return LinearSVC(C=C, dual=False, tol=1e-6, max_iter=10_000), LBFGSLinearSVC(C=C)
    # float64 and tol=1e-10: on uncentred float32 features scikit-learn's lbfgs stopped at
    # tol=1e-7 with probabilities 0.02 away from the optimum (featpipe's centred fit: 1e-4)
    return LogisticRegression(C=C, tol=1e-10, max_iter=100_000), LBFGSLogisticRegression(C=C)


@pytest.mark.parametrize("kind", ["svc", "logistic"])
@pytest.mark.parametrize("C", [1e-3, 0.1])
@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("offset", [0.0, 3.0])  # uncentred features: the centred fit is exact
def test_agrees_with_scikit_learn(digits, kind, C, binary, offset):
    X, y, X_test, y_test = digits
    X, X_test = X + np.float32(offset), X_test + np.float32(offset)
    if binary:
        y, y_test = y > 4, y_test > 4
    theirs, ours = reference(kind, C)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        theirs.fit(X.astype(np.float64), y)
    ours.fit(X, y)
    assert ours.converged_
    assert ours.coef_.shape == theirs.coef_.shape and ours.coef_.dtype == np.float32
    assert ours.intercept_.shape == theirs.intercept_.shape
    reference_objective = primal_objective(theirs, X, y)
    assert abs(primal_objective(ours, X, y) - reference_objective) <= 1e-3 * reference_objective
    assert np.mean(ours.predict(X_test) == theirs.predict(X_test)) >= 0.99
    if kind == "logistic":
        np.testing.assert_allclose(ours.predict_proba(X_test), theirs.predict_proba(X_test),
                                   atol=2e-3)


@pytest.mark.parametrize("Estimator", [LBFGSLinearSVC, LBFGSLogisticRegression])
def test_warm_start_along_c_path_equals_cold_start(digits, Estimator):
    X, y, X_test, _ = digits
    warm = Estimator(warm_start=True, tol=1e-6)
    for C in (1e-3, 1e-2, 1e-1):
        warm.set_params(C=C).fit(X, y)
    cold = Estimator(C=1e-1, tol=1e-6).fit(X, y)
    # restarts at the solution: a few steps at float32's limit, not the cold start's dozens
    assert warm.set_params(C=1e-1).fit(X, y).n_iter_ <= max(4, np.max(cold.n_iter_) // 10)
    assert abs(primal_objective(warm, X, y) / primal_objective(cold, X, y) - 1) < 1e-5
    np.testing.assert_array_equal(warm.predict(X_test), cold.predict(X_test))


def test_max_iter_is_reported_and_warned_as_scikit_learn_does(digits):
    from sklearn.exceptions import ConvergenceWarning

    X, y, _, _ = digits
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        clf = LBFGSLinearSVC(C=10.0, max_iter=3).fit(X, y)
    assert clf.n_iter_ == 3 and not clf.converged_
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converged fit is silent
        assert LBFGSLinearSVC(C=0.01, max_iter=1000).fit(X, y).converged_


@pytest.fixture
def fitted_arrays(monkeypatch):
    """The arrays that every :class:`Objective` built in the test fits on."""
    seen = []
    real_init = linear.Objective.__init__

    def spy(self, X, *args, **kwargs):
        seen.append(X)
        real_init(self, X, *args, **kwargs)

    monkeypatch.setattr(linear.Objective, "__init__", spy)
    return seen


@pytest.mark.parametrize("Estimator", [LBFGSLinearSVC, LBFGSLogisticRegression])
def test_float32_input_is_not_copied(Estimator, fitted_arrays):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 300), dtype=np.float32)
    y = rng.integers(0, 5, 2000)
    X[np.arange(2000), y] += 3.0
    Estimator(C=0.1).fit(X, y)  # warm up lazily initialized sklearn and scipy state
    fitted_arrays.clear()
    tracemalloc.start()
    Estimator(C=0.1).fit(X, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(fitted_arrays) == 1 and fitted_arrays[0] is X
    assert peak < 0.5 * X.nbytes  # NumPy allocations; no float64 or float32 copy of X


@pytest.mark.parametrize("Estimator", [LBFGSLinearSVC, LBFGSLogisticRegression])
def test_int8_input_is_not_copied_and_fits_as_its_float32_values(Estimator, fitted_arrays):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 1500)
    X8 = rng.integers(-1, 2, (1500, 200), dtype=np.int8)  # FNE-like {-1, 0, 1}
    X8[np.arange(1500), y] = 1
    X32 = X8.astype(np.float32)
    expected = Estimator(C=0.1).fit(X32, y)
    fitted = Estimator(C=0.1).fit(X8, y)
    assert fitted_arrays[-1] is X8
    np.testing.assert_array_equal(fitted.coef_, expected.coef_)  # same values, same sums
    np.testing.assert_array_equal(fitted.intercept_, expected.intercept_)
    # float32 products of 200 terms, summed in BLAS's order for the kernel of this CPU (an
    # Intel Xeon's differed from an AMD EPYC's by 1.3e-6 on values of ~0.04)
    np.testing.assert_allclose(fitted.decision_function(X8), expected.decision_function(X32),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("Estimator", [LBFGSLinearSVC, LBFGSLogisticRegression])
def test_cuda_matches_cpu(digits, Estimator):
    X, y, X_test, _ = digits
    cpu = Estimator(C=0.1).fit(X, y)
    cuda = Estimator(C=0.1, device="cuda").fit(X, y)
    assert abs(primal_objective(cuda, X, y) / primal_objective(cpu, X, y) - 1) < 1e-4
    assert np.mean(cuda.predict(X_test) == cpu.predict(X_test)) >= 0.99


@pytest.mark.parametrize("Estimator", [LBFGSLinearSVC, LBFGSLogisticRegression])
def test_tensor_input_solves_the_same_problem_as_numpy(digits, Estimator):
    X, y, X_test, _ = digits
    numpy_fit = Estimator(C=0.1).fit(X, y)  # featpipe.classical.lbfgs
    tensor_fit = Estimator(C=0.1).fit(torch.from_numpy(X), y)  # torch.optim.LBFGS
    assert numpy_fit.converged_ and tensor_fit.converged_
    assert primal_objective(tensor_fit, X, y) == pytest.approx(
        primal_objective(numpy_fit, X, y), rel=1e-4)
    assert np.mean(tensor_fit.predict(X_test) == numpy_fit.predict(X_test)) >= 0.99


@pytest.mark.parametrize("as_array", [np.asarray, torch.from_numpy], ids=["numpy", "torch"])
@pytest.mark.parametrize("loss", ["squared_hinge", "multinomial"])
def test_centring_is_an_exact_reparametrization(digits, loss, as_array):
    X, y, _, _ = digits
    X = as_array(X + np.float32(2.0))
    targets = encode_targets(y, 10, loss, X)
    plain = Objective(X, targets, loss, 0.1, True)
    centred = Objective(X, targets, loss, 0.1, True, center=True)
    assert centred.center is not None and float(abs(centred.center).max()) > 1.0
    rng = np.random.default_rng(0)
    coef = rng.standard_normal((10, 64)).astype(np.float32) * 0.05
    intercept = rng.standard_normal(10).astype(np.float32)
    f_plain, _ = plain(plain.start(coef, intercept, (10, 65)))
    theta = centred.start(coef, intercept, (10, 65))
    f_centred, _ = centred(theta)
    assert float(f_centred) == pytest.approx(float(f_plain), rel=1e-5)
    back = centred.solution(theta)
    np.testing.assert_allclose(back[0], coef)
    np.testing.assert_allclose(back[1], intercept, atol=1e-5)


@pytest.mark.parametrize("kind", [np.ndarray, torch.Tensor], ids=["numpy", "torch"])
def test_row_blocks_slice_runs_and_gather_scattered_rows(kind):
    X = np.zeros((3000, 2), np.float32)
    X = X if kind is np.ndarray else torch.from_numpy(X)
    runs = np.r_[0:600, 900:1800]  # a fold's training rows in fold order: two runs
    blocks = row_blocks(len(runs), runs, X)
    assert all(isinstance(source, slice) for source, _ in blocks)
    np.testing.assert_array_equal(np.concatenate([np.arange(s.start, s.stop) for s, _ in blocks]),
                                  runs)
    assert [p.start for _, p in blocks] == list(np.cumsum([0] + [p.stop - p.start
                                                                for _, p in blocks])[:-1])
    scattered = np.arange(0, 3000, 2)
    blocks = row_blocks(len(scattered), scattered, X)
    assert all(isinstance(source, kind) and len(source) <= 512 for source, _ in blocks)
    np.testing.assert_array_equal(np.concatenate([np.asarray(source) for source, _ in blocks]),
                                  scattered)


@pytest.mark.parametrize("Estimator", [LBFGSLinearSVC, LBFGSLogisticRegression])
@pytest.mark.parametrize("layout", ["runs", "scattered"])
def test_fit_rows_equals_fit_on_the_standardized_copy(digits, Estimator, layout):
    X, y, _, _ = digits
    raw = X * np.float32(3.0) + np.float32(5.0)
    rows = np.arange(150, 1050) if layout == "runs" else \
        np.sort(np.random.default_rng(0).choice(len(X), 900, replace=False))
    scaler = Standardizer().fit(raw[rows])
    copy = scaler.transform(raw[rows])
    in_place = Estimator(C=0.1, tol=1e-7).fit_rows(raw, y, rows, scaler.affine(np.float32))
    copied = Estimator(C=0.1, tol=1e-7).fit(copy, y[rows])
    assert in_place.n_features_in_ == 64
    assert primal_objective(in_place, copy, y[rows]) == pytest.approx(
        primal_objective(copied, copy, y[rows]), rel=1e-5)
    np.testing.assert_array_equal(in_place.predict(copy), copied.predict(copy))
    without_affine = Estimator(C=0.1, tol=1e-7).fit_rows(copy, y[rows])
    assert primal_objective(without_affine, copy, y[rows]) == pytest.approx(
        primal_objective(copied, copy, y[rows]), rel=1e-5)
