"""Linear classifiers solved by L-BFGS, float32 end to end, on NumPy arrays or torch tensors.

:class:`LBFGSLinearSVC` minimizes the objective of scikit-learn's
``LinearSVC(penalty="l2", loss="squared_hinge", dual=False)`` (one-vs-rest, liblinear's
regularized intercept) and :class:`LBFGSLogisticRegression` the one of
``LogisticRegression(solver="lbfgs")`` (multinomial; binomial for two classes; unpenalized
intercept), over one ``(n_columns, n_features + 1)`` parameter matrix: all classes at once.
One objective (:class:`Objective`) is written against the array namespace of its input; NumPy
input on the CPU is solved by featpipe's L-BFGS (:mod:`featpipe.classical.lbfgs`), torch
tensors (and ``device="cuda"``) by ``torch.optim.LBFGS``, both with a strong Wolfe line
search. A CPU fit then runs no torch code: the first torch operations of a process page in
~25 MiB of ``libtorch_cpu`` (measured, 3,120 features), as much as the whole 2,000-image
Fashion-MNIST feature matrix, and OpenBLAS's single-threaded products were as fast as torch's
MKL here (6,400 x 3,120, 10 classes, one thread: 24.4 against 24.6 ms an evaluation).

Float32, C-contiguous NumPy input is used as it is (no copy); other input is converted to
float32 once. Each loss/gradient evaluation computes ``W @ X.T`` and ``G @ X`` (a block of rows
at a time on the CPU) and allocates only ``n_columns x n_samples`` and
``n_columns x n_features`` temporaries, so a fit needs little memory beyond ``X`` (0.1-0.5x
the float32 ``X`` measured, against 6x for liblinear, which copies ``X`` to float64 and into
its sparse format).

The objective is divided by ``C * n_samples`` (mean loss + ``0.5 * ||w||^2 / (C n)``), which has
the same minimizer. ``tol`` is relative: L-BFGS stops when the largest absolute gradient entry
is below ``tol`` times that entry at ``w = 0``, or when a step no longer changes the float32
objective. Fits that stop on ``max_iter`` set ``converged_ = False`` and warn
(``ConvergenceWarning``).

With an intercept, L-BFGS may run on centred features: the scores ``W x + b`` are written
``W (x - mean) + v`` (``v = b + W mean``, the mean over the fitted rows) and liblinear's
intercept penalty is kept on ``b``, so the objective and its minimizer are unchanged, but the
mean's direction no longer dominates the Hessian. On 6,400 x 3,120 per-layer-L2 Fashion-MNIST
features (uncentred, non-negative: the mean holds most of ``E||x||^2``) the fits of C = 0.01,
0.1, 1, 10 (warm-started, tol 1e-4, one thread) took 36, 69, 156, 185 iterations instead of
92, 163, 373, 579 (21 s against 62 s) with the same held-out accuracy within 0.2 points. The
penalized intercept then couples ``W`` and ``v`` along the mean: on FNE's {-1, 0, 1} features
(the mean holds a few percent of ``E||x||^2``) centring took 296-341 iterations instead of
57-210 at C = 1e-4 to 1e-2, so the squared hinge centres only unstandardized features whose mean
holds at least half of ``E||x||^2`` (the logistic losses, whose intercept is not penalized,
always do).

Torch runs on ``torch.get_num_threads()`` threads, NumPy's products on BLAS's. On cores shared
with other jobs their threads spin at every barrier: with 2 threads on 2 busy cores a torch fit
ran 3-14x slower than with ``torch.set_num_threads(1)``, which the caller should then set (or
``threadpoolctl.threadpool_limits(1, user_api="blas")``).
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.externals import array_api_compat
from sklearn.utils._param_validation import Interval
from sklearn.utils.extmath import softmax
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featpipe.classical import lbfgs
from featpipe.classical.device import is_tensor, tensor_input

# L-BFGS memory (scipy's and liblinear-free scikit-learn solvers' default).
HISTORY_SIZE = 10
# A step whose objective change is below this is no progress in float32.
TOLERANCE_CHANGE = 1e-12
LOSSES = ("squared_hinge", "multinomial", "binomial")
#: Rows of ``X`` per block of an evaluation on the CPU (:class:`Objective`): 256 x 3,120 float32
#: features are 3.2 MB, which stay in the cache between the block's two products. Two folds
#: fitted at once (6,400 gathered rows each, squared hinge, 10 classes, AMD EPYC, 2 cores)
#: took a median 44.0 ms per evaluation with 256 rows, 59.3 ms with 384 and 60.5 ms with 512.
BLOCK_ROWS = 256


class FitCancelled(Exception):
    """A fit stopped by :func:`cancel_when`; the estimator keeps its previous solution."""


_cancel = threading.local()


@contextmanager
def cancel_when(event: threading.Event):
    """Fits of the L-BFGS classifiers started in this thread inside the block raise
    :class:`FitCancelled` at their next objective evaluation once ``event`` is set (a
    speculative fit that is no longer needed: :mod:`featpipe.classical.foldwalk`)."""
    saved = getattr(_cancel, "event", None)
    _cancel.event = event
    try:
        yield
    finally:
        _cancel.event = saved


def as_input_array(X: np.ndarray, device: str):
    """``X`` for :class:`Objective`: C-contiguous float32 NumPy (no copy when it already is)
    on the CPU, a float32 tensor on another torch ``device``. int8 stays int8 (the objective
    casts a block at a time): small integer features such as FNE's {-1, 0, 1} in a quarter of
    the memory."""
    X = np.ascontiguousarray(X, dtype=np.int8 if X.dtype == np.int8 else np.float32)
    if device == "cpu":
        return X
    import torch

    return torch.from_numpy(X).to(device)


def _namespace(X):
    """The array namespace of ``X``: NumPy itself (array-API compatible since 2.1; the
    compatibility layer's wrappers cost ~0.1 ms a call, held under the GIL), or torch's."""
    return np if isinstance(X, np.ndarray) else array_api_compat.array_namespace(X)


def _to_numpy(array) -> np.ndarray:
    return array if isinstance(array, np.ndarray) else array.cpu().numpy()


def _times_transposed(X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``X @ coef.T``; int8 ``X`` is taken as float32 a block of rows at a time."""
    if X.dtype != np.int8:
        return X @ coef.T
    return np.concatenate([X[start : start + BLOCK_ROWS].astype(np.float32) @ coef.T
                           for start in range(0, max(len(X), 1), BLOCK_ROWS)])


class Objective:
    """Scaled loss and gradient of a linear classifier on ``X``.

    The parameters ``theta`` are ``(n_columns, n_features + 1)`` (the last column the intercept,
    absent without one) and the scores ``theta[:, :p] @ X.T`` are ``(n_columns, n_samples)``:
    ``W @ X.T`` and ``G @ X`` were 2-5x faster than ``X @ W.T`` and ``X.T @ G`` with torch's
    MKL on AMD EPYC. The loss is the mean over samples; the penalty ``0.5 / (C n) ||w||^2``.
    The same code runs on NumPy arrays and on torch tensors (their array namespace).

    On the CPU the samples are taken :data:`BLOCK_ROWS` at a time, scores and gradient of a
    block together, so that ``X`` is read from memory once per evaluation instead of twice
    (the block's second use comes from the cache): on 6,400 x 3,120 features, 10 classes, one
    thread, an evaluation took 23.5-24.3 ms instead of 27.3-29.3 ms (squared hinge) and
    24.4-27.3 ms instead of 29.5-30.6 ms (multinomial). A GPU takes all rows at once.

    Parameters
    ----------
    X : ndarray or tensor of shape (n_samples, n_features), float32 or int8
    targets : array of shape (n_columns, n_samples)
        +-1 for the squared hinge and binomial losses, one-hot for the multinomial loss
        (:func:`encode_targets`).
    loss : {"squared_hinge", "multinomial", "binomial"}
    C : float
    fit_intercept : bool
    intercept_scaling : float
        The squared hinge's intercept is ``intercept_scaling * w_b`` with ``w_b`` penalized,
        as in liblinear; the logistic losses' intercept is not penalized.
    rows : array of int, optional
        Fit on ``X[rows]`` (a fold) without copying them out of ``X``; ``targets`` are then
        those of ``rows``. Sorted rows in long runs are read in place (:func:`row_blocks`).
    affine : (multiplier, shift) arrays of shape (n_features,), optional
        Fit on ``X * multiplier - shift`` (standardized features,
        :meth:`~featpipe.classical.transformers.Standardizer.affine`) without forming it: the
        scores are ``(W * multiplier) @ X.T - W @ shift`` and the gradient is mapped back.
    center : bool, default=False
        Work on centred features where that helps (module notes): ``theta`` is then the
        centred model; :meth:`start` and :meth:`solution` map a model to ``theta`` and back.
    """

    def __init__(self, X, targets, loss, C, fit_intercept, intercept_scaling=1.0, rows=None,
                 affine=None, center=False):
        self.X, self.targets, self.loss, self.fit_intercept = X, targets, loss, fit_intercept
        self.xp, self.device = _namespace(X), array_api_compat.device(X)
        self.affine = affine
        self.scaling = float(intercept_scaling) if loss == "squared_hinge" else 1.0
        n = X.shape[0] if rows is None else len(rows)
        self.weight = 1.0 / n  # of each sample's loss
        self.penalty = 1.0 / (C * n)
        self.blocks = row_blocks(n, rows, X)
        self._buffers = {}
        self.center = None
        if center and fit_intercept:
            self._center()

    def _center(self):
        """Fit on centred features, an exact reparametrization (module notes), when it helps:
        always with an unpenalized intercept; with liblinear's penalized one only for
        unstandardized features whose mean carries at least half of their energy
        ``E||x||^2`` (the penalty then couples ``W`` to ``v`` along the mean, which costs more
        than it saves otherwise)."""
        xp = self.xp
        hinge = self.loss == "squared_hinge"
        if hinge and self.affine is not None:
            return
        total = xp.zeros(self.X.shape[1], dtype=xp.float64, device=self.device)
        energy = 0.0
        for source, _ in self.blocks:  # float32 within a block: no float64 copy of it
            X = self._rows(source)
            total += xp.sum(X, axis=0)
            if hinge:
                energy += float(xp.sum(X * X, dtype=xp.float64))
        mean = total * self.weight
        if hinge and float(xp.sum(mean * mean)) < 0.5 * energy * self.weight:
            return
        multiplier, shift = self.affine if self.affine is not None else (
            xp.ones_like(mean, dtype=xp.float32), xp.zeros_like(mean, dtype=xp.float32))
        self.center = xp.astype(mean * xp.astype(multiplier, xp.float64)
                                - xp.astype(shift, xp.float64), xp.float32)
        self.affine = (multiplier, shift + self.center)

    def start(self, coef, intercept, shape):
        """``theta`` for the model ``coef``, ``intercept`` (zeros when ``coef`` is None)."""
        xp = self.xp
        theta = xp.zeros(shape, dtype=xp.float32, device=self.device)
        if coef is None:
            return theta
        p = self.X.shape[1]
        theta[:, :p] = xp.asarray(np.asarray(coef, np.float32), device=self.device)
        if self.fit_intercept:
            b = xp.asarray(np.asarray(intercept, np.float32), device=self.device)
            if self.center is not None:
                b = b + theta[:, :p] @ self.center
            theta[:, p] = b / self.scaling
        return theta

    def solution(self, theta):
        """``(coef, intercept)`` as NumPy float32 of the model ``theta`` (:meth:`start`'s
        inverse)."""
        p = self.X.shape[1]
        coef = theta[:, :p]
        if not self.fit_intercept:
            return _to_numpy(coef).copy(), np.zeros(theta.shape[0], np.float32)
        b = self.scaling * theta[:, p]
        if self.center is not None:
            b = b - coef @ self.center
        return _to_numpy(coef).copy(), _to_numpy(b)

    def _buffer(self, dtype):
        """One ``(BLOCK_ROWS, n_features)`` array per dtype, reused by every block (a fresh
        array per block costs page faults)."""
        if dtype not in self._buffers:
            rows = max(len(range(*source.indices(len(self.X)))) if isinstance(source, slice)
                       else len(source) for source, _ in self.blocks)
            self._buffers[dtype] = self.xp.empty((rows, self.X.shape[1]), dtype=dtype,
                                                 device=self.device)
        return self._buffers[dtype]

    def _rows(self, source):
        """The rows of a block as float32: a slice of ``X`` is a view; rows given by index are
        gathered, and int8 rows cast, into reused buffers."""
        if isinstance(source, slice):
            X = self.X[source]
        else:
            X = _gather_rows(self.X, source, self._buffer(self.X.dtype)[: len(source)])
        if X.dtype == self.xp.float32:
            return X
        cast = self._buffer(self.xp.float32)[: X.shape[0]]
        cast[...] = X
        return cast

    def _block_loss(self, Z, targets):
        """Summed loss (float64) of a block's scores ``Z`` and its gradient in ``Z``."""
        xp = self.xp
        if self.loss == "multinomial":  # targets one-hot
            top = xp.max(Z, axis=0, keepdims=True)
            G = xp.exp(Z - top)
            total = xp.sum(G, axis=0, keepdims=True)
            G /= total
            f = xp.sum(xp.log(total) + top - xp.sum(Z * targets, axis=0, keepdims=True),
                       dtype=xp.float64)
            G -= targets
        elif self.loss == "squared_hinge":
            margin = xp.clip(1.0 - targets * Z, min=0.0)
            f = xp.sum(margin * margin, dtype=xp.float64)
            G = -2.0 * targets * margin
        else:  # binomial, targets +-1
            yz = targets * Z
            f = xp.sum(xp.logaddexp(xp.zeros_like(yz), -yz), dtype=xp.float64)
            G = -targets / (1.0 + xp.exp(yz))
        return f, G

    def __call__(self, theta):
        """Objective (float64 scalar array) and its gradient (shaped like ``theta``)."""
        xp = self.xp
        p = self.X.shape[1]
        coef = theta[:, :p]
        effective, offset = coef, None
        if self.affine is not None:  # scores of X * multiplier - shift, from X itself
            multiplier, shift = self.affine
            effective, offset = coef * multiplier, -(coef @ shift)[:, None]
        grad = xp.zeros_like(theta)
        summed = xp.zeros(theta.shape[0], dtype=theta.dtype, device=self.device)
        f = xp.zeros((), dtype=xp.float64, device=self.device)
        for source, positions in self.blocks:
            X = self._rows(source)
            Z = effective @ X.T
            if self.fit_intercept:
                Z += self.scaling * theta[:, p:]
            if offset is not None:
                Z += offset
            f_block, G = self._block_loss(Z, self.targets[:, positions])
            f += f_block
            grad[:, :p] += G @ X
            summed += xp.sum(G, axis=1)
        f, grad, summed = f * self.weight, grad * self.weight, summed * self.weight
        if self.affine is not None:
            grad[:, :p] = grad[:, :p] * multiplier - summed[:, None] * shift[None, :]
        if self.fit_intercept:
            grad[:, p] += self.scaling * summed
        grad[:, :p] += self.penalty * coef
        f = f + 0.5 * self.penalty * xp.sum(xp.astype(coef, xp.float64) ** 2)
        if self.fit_intercept and self.loss == "squared_hinge":  # liblinear's penalized w_b
            w_b = theta[:, p]
            if self.center is not None:  # w_b of the uncentred model
                w_b = w_b - (coef @ self.center) / self.scaling
                grad[:, :p] -= (self.penalty / self.scaling * w_b)[:, None] * self.center[None, :]
            grad[:, p] += self.penalty * w_b
            f = f + 0.5 * self.penalty * xp.sum(xp.astype(w_b, xp.float64) ** 2)
        return f, grad


def _gather_rows(X, index, out):
    """``X[index]`` written into ``out`` (a reused buffer)."""
    if isinstance(X, np.ndarray):
        return np.take(X, index, axis=0, out=out, mode="clip")  # "raise" would buffer
    import torch

    return torch.index_select(X, 0, index, out=out)


def row_blocks(n: int, rows, X) -> list[tuple]:
    """``(source, positions)`` per block of an evaluation on ``X``: ``source`` selects the
    block's rows of ``X`` (a slice, or an index array of ``X``'s kind when the rows are
    scattered), ``positions`` the block's place among the ``n`` rows of the fit (its targets).

    On the CPU a block has at most :data:`BLOCK_ROWS` rows; runs of consecutive rows averaging
    a block or more are sliced (no copy), other rows gathered. A GPU takes all rows at once.

    Examples
    --------
    >>> [(s, p) for s, p in row_blocks(3, np.array([4, 5, 6]), np.zeros((8, 2)))]
    [(slice(4, 7, None), slice(0, 3, None))]
    """
    device = array_api_compat.device(X)
    cpu = str(device) == "cpu"
    step = BLOCK_ROWS if cpu else max(n, 1)
    if rows is None:
        return [(slice(start, min(start + step, n)), slice(start, min(start + step, n)))
                for start in range(0, n, step)]
    rows = np.asarray(rows)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    if not cpu or len(breaks) + 1 > max(1, n // BLOCK_ROWS):
        index = _namespace(X).asarray(rows, device=device)
        return [(index[start : start + step], slice(start, min(start + step, n)))
                for start in range(0, n, step)]
    blocks = []
    for run_start, run in zip([0, *breaks.tolist()], np.split(rows, breaks)):
        for offset in range(0, len(run), step):
            first, count = int(run[offset]), len(run[offset : offset + step])
            position = run_start + offset
            blocks.append((slice(first, first + count), slice(position, position + count)))
    return blocks


def minimize(objective, theta, max_iter, tol, grad0_max):
    """Run L-BFGS on ``theta`` in place; returns ``(n_iter, converged)``: featpipe's own
    (:mod:`featpipe.classical.lbfgs`) for NumPy, ``torch.optim.LBFGS`` for a tensor (both
    with a strong Wolfe line search)."""
    tolerance = tol * max(grad0_max, np.finfo(np.float32).tiny)
    cancel = getattr(_cancel, "event", None)

    def evaluate(theta):
        if cancel is not None and cancel.is_set():
            raise FitCancelled
        return objective(theta)

    run = _minimize_numpy if isinstance(theta, np.ndarray) else _minimize_torch
    n_iter, stopped_on_limit = run(evaluate, theta, max_iter, tolerance)
    if not stopped_on_limit:
        return n_iter, True
    _, grad = objective(theta)
    return n_iter, bool(float(_namespace(grad).max(abs(grad))) <= tolerance)


def _minimize_numpy(evaluate, theta, max_iter, tolerance):
    """:func:`featpipe.classical.lbfgs.minimize` on ``theta`` in place:
    ``(n_iter, stopped on max_iter)``."""
    shape = theta.shape

    def function(x):
        f, grad = evaluate(x.reshape(shape))
        return f, grad.ravel()

    result = lbfgs.minimize(function, theta.ravel(), max_iter=max_iter, max_eval=2 * max_iter,
                            tolerance_grad=tolerance, tolerance_change=TOLERANCE_CHANGE,
                            history_size=HISTORY_SIZE)
    theta[...] = result.x.reshape(shape)
    return result.n_iter, result.stopped_on_limit


def _minimize_torch(evaluate, theta, max_iter, tolerance):
    """``torch.optim.LBFGS`` on ``theta`` in place: ``(n_iter, stopped on max_iter)``."""
    import torch

    theta.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [theta], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter, tolerance_grad=tolerance,
        tolerance_change=TOLERANCE_CHANGE, history_size=HISTORY_SIZE,
        line_search_fn="strong_wolfe",
    )

    def closure():
        with torch.no_grad():
            f, grad = evaluate(theta)
        theta.grad = grad
        return f

    optimizer.step(closure)
    theta.requires_grad_(False)
    state = optimizer.state[theta]
    n_iter = int(state.get("n_iter", 0))
    return n_iter, not (n_iter < max_iter and state["func_evals"] < 2 * max_iter)


def encode_targets(y_index, n_classes, loss, like):
    """Targets of :class:`Objective` from class indices ``y_index``, an array like ``like``:
    ``(n_columns, n_samples)`` of +-1 (one-hot for the multinomial loss)."""
    y_index = np.asarray(y_index)
    if n_classes == 2 and loss != "multinomial":
        targets = np.where(y_index == 1, 1.0, -1.0)[None, :]
    else:
        onehot = y_index[None, :] == np.arange(n_classes)[:, None]
        targets = onehot if loss == "multinomial" else np.where(onehot, 1.0, -1.0)
    targets = np.ascontiguousarray(targets, dtype=np.float32)
    return _namespace(like).asarray(targets, device=array_api_compat.device(like))


def loss_for(estimator, n_classes) -> str:
    if isinstance(estimator, LBFGSLinearSVC):
        return "squared_hinge"
    return "binomial" if n_classes == 2 else "multinomial"


def zero_grad_max(objective, theta_shape):
    """Largest absolute gradient entry of the data term at ``theta = 0`` (C-independent), in
    the uncentred parametrization: the stopping rule of ``tol`` does not depend on centring
    (whose gradient at 0 lacks the class imbalance's share, so ``tol`` would tighten)."""
    xp = objective.xp
    saved, objective.penalty = objective.penalty, 0.0
    try:
        _, grad = objective(xp.zeros(theta_shape, dtype=xp.float32, device=objective.device))
    finally:
        objective.penalty = saved
    if objective.center is not None:  # d/dW of W x + b = (d/dW of W (x - mean) + v) + mean ⊗ d/dv
        p = objective.X.shape[1]
        grad[:, :p] += (grad[:, p] / objective.scaling)[:, None] * objective.center[None, :]
    return float(xp.max(xp.abs(grad)))


class _LBFGSLinearClassifier(ClassifierMixin, BaseEstimator):
    _parameter_constraints: dict = {
        "C": [Interval(Real, 0.0, None, closed="neither")],
        "fit_intercept": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "device": [str],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
    }

    def _columns(self, n_classes):
        return 1 if n_classes == 2 else n_classes

    def fit(self, X, y):
        """Fit the model on ``X`` (float32 or int8: C-contiguous input is not copied) and ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : object
        """
        self._validate_params()
        if is_tensor(X):  # computed on the tensor's device
            X_t, y = tensor_input(self, X, y)
            X_t = X_t.float().contiguous()
        else:
            X, y = validate_data(self, X, y, dtype=[np.float32, np.int8], order="C")
            X_t = as_input_array(X, self.device)
        return self._fit(X_t, y)

    def fit_rows(self, X, y, rows=None, affine=None):
        """Fit on ``X[rows] * multiplier - shift`` without forming it (the fast search's folds).

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Float32 or int8, C-contiguous (not copied).
        y : array-like of shape (n_samples,)
            Labels of all rows of ``X``.
        rows : array of int, default=None
            The rows to fit on (None: all); sorted rows in long runs are read in place.
        affine : (multiplier, shift) arrays of shape (n_features,), default=None
            The model is fitted, and its ``coef_`` expressed, on standardized features
            (:meth:`~featpipe.classical.transformers.Standardizer.affine`); None: on ``X``.

        Returns
        -------
        self : object

        Examples
        --------
        >>> from sklearn.datasets import make_classification
        >>> from featpipe.classical.transformers import Standardizer
        >>> X, y = make_classification(n_samples=200, n_features=8, random_state=0)
        >>> X = X.astype(np.float32) * 10 + 3
        >>> scaler = Standardizer().fit(X[:150])
        >>> a = LBFGSLinearSVC().fit_rows(X, y, np.arange(150), scaler.affine(np.float32))
        >>> b = LBFGSLinearSVC().fit(scaler.transform(X[:150]), y[:150])
        >>> bool(np.allclose(a.coef_, b.coef_, atol=1e-4))
        True
        """
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float32, np.int8], order="C")
        X_t = as_input_array(X, self.device)
        if rows is not None:
            rows = np.asarray(rows)
            y = y[rows]
        if affine is not None:
            xp, device = _namespace(X_t), array_api_compat.device(X_t)
            affine = tuple(xp.asarray(np.asarray(a, np.float32), device=device) for a in affine)
        return self._fit(X_t, y, rows, affine)

    def _fit(self, X_t, y, rows=None, affine=None):
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(
                "This solver needs samples of at least 2 classes in the data, but the data"
                f" contains only one class: {self.classes_[0]!r}"
            )
        loss = loss_for(self, n_classes)
        m = self._columns(n_classes)
        objective = Objective(X_t, encode_targets(y_index, n_classes, loss, X_t), loss,
                              self.C, self.fit_intercept, self._intercept_scaling(), rows,
                              affine, center=True)
        p = X_t.shape[1]
        shape = (m, p + int(self.fit_intercept))
        warm = self.warm_start and getattr(self, "coef_", None) is not None \
            and self.coef_.shape == (m, p)
        theta = objective.start(self.coef_ if warm else None, getattr(self, "intercept_", None),
                                shape)
        grad0 = zero_grad_max(objective, shape)
        n_iter, self.converged_ = minimize(objective, theta, self.max_iter, self.tol, grad0)
        if not self.converged_:
            warnings.warn(f"L-BFGS stopped at max_iter={self.max_iter} before reaching "
                          f"tol={self.tol}; raise max_iter", ConvergenceWarning)
        self.coef_, self.intercept_ = objective.solution(theta)
        self._set_iterations(n_iter)
        return self

    def _intercept_scaling(self):
        return 1.0

    def _set_iterations(self, n_iter):
        self.n_iter_ = n_iter

    def decision_function(self, X):
        """Signed scores: ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) for two classes, else (n_samples, n_classes)
        """
        check_is_fitted(self)
        if is_tensor(X):  # scored on the tensor's device, returned as NumPy
            import torch

            X = tensor_input(self, X).float()
            coef = torch.as_tensor(self.coef_, device=X.device)
            scores = (X @ coef.T + torch.as_tensor(self.intercept_, device=X.device)).cpu().numpy()
        else:
            X = validate_data(self, X, dtype=[np.float64, np.float32, np.int8], reset=False)
            scores = _times_transposed(X, self.coef_) + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict(self, X):
        """Predicted class of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        scores = self.decision_function(X)
        index = (scores > 0).astype(int) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[index]


class LBFGSLinearSVC(_LBFGSLinearClassifier):
    """Linear SVM (L2 penalty, squared hinge, one-vs-rest) solved by L-BFGS.

    Minimizes, for each class ``c`` against the rest (``y_i = +-1``),
    ``0.5 * (||w_c||^2 + b_c^2) + C * sum_i max(0, 1 - y_i (x_i . w_c + b_c))^2``:
    scikit-learn's ``LinearSVC(penalty="l2", loss="squared_hinge", dual=False)`` objective,
    including liblinear's penalized intercept (``intercept_scaling=1``). The classes' problems
    are independent and are solved jointly by one L-BFGS in float32.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularization strength.
    fit_intercept : bool, default=True
        Fit a (penalized, as in liblinear) intercept.
    max_iter : int, default=1000
        Most L-BFGS iterations; reaching it first sets ``converged_ = False`` and warns
        (``ConvergenceWarning``, as scikit-learn's solvers do).
    tol : float, default=1e-6
        Stop when the largest absolute gradient entry falls below ``tol`` times its value at 0.
        The squared hinge is ill-conditioned at large C: on 2000 x 3120 standardized features,
        tol=1e-4 left the objective 0.3 % (C=0.1) to 18 % (C=1) above liblinear's optimum,
        1e-5 0.001 % and 0.06 % (98.4 % of held-out predictions equal at C=1), 1e-6 0.00005 %
        and 0.0006 % (all equal) for 1.2-1.5x the iterations of 1e-5.
    device : str, default="cpu"
        ``"cpu"``: NumPy; another torch device (``"cuda"``) copies ``X`` to it once
        and solves there with torch. Tensor input is solved on its own device.
    warm_start : bool, default=False
        Start from the previous fit's ``coef_`` and ``intercept_`` when the shapes match.
    random_state : int, RandomState instance or None, default=None
        Unused (the solver is deterministic); accepted for compatibility with ``LinearSVC``.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) for two classes, else (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_iter_ : int
        L-BFGS iterations.
    converged_ : bool
        False when L-BFGS stopped on ``max_iter``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` has string column names.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    >>> clf = LBFGSLinearSVC(C=0.1).fit(X, y)
    >>> clf.coef_.shape, clf.converged_
    ((1, 8), True)
    >>> float(clf.score(X, y)) > 0.9
    True
    """

    def __init__(self, C=1.0, fit_intercept=True, max_iter=1000, tol=1e-6, device="cpu",
                 warm_start=False, random_state=None):
        self.C = C
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.warm_start = warm_start
        self.random_state = random_state


class LBFGSLogisticRegression(_LBFGSLinearClassifier):
    """Multinomial logistic regression (L2 penalty) solved by L-BFGS.

    Minimizes ``0.5 * ||W||_F^2 + C * sum_i -log softmax(x_i W^T + b)_{y_i}`` (binomial
    loss with one coefficient vector for two classes; the intercept is not penalized):
    scikit-learn's ``LogisticRegression(C=C, solver="lbfgs")`` objective, in float32.

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularization strength.
    fit_intercept : bool, default=True
    max_iter : int, default=1000
        Most L-BFGS iterations; reaching it first sets ``converged_ = False`` and warns
        (``ConvergenceWarning``, as scikit-learn's solvers do).
    tol : float, default=1e-5
        Stop when the largest absolute gradient entry falls below ``tol`` times its value at 0.
        On 2000 x 3120 standardized features, tol=1e-4 (and scikit-learn's own default) left
        the objective up to 0.2 % above the optimum at C=1 (99.2 % of held-out predictions
        equal), 1e-5 0.0002 % (all equal) for ~1.7x the iterations.
    device : str, default="cpu"
        ``"cpu"``: NumPy; another torch device (``"cuda"``) copies ``X`` to it once
        and solves there with torch. Tensor input is solved on its own device.
    warm_start : bool, default=False
        Start from the previous fit's ``coef_`` and ``intercept_`` when the shapes match.
    random_state : int, RandomState instance or None, default=None
        Unused (the solver is deterministic).

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) for two classes, else (n_classes, n_features)
    intercept_ : ndarray of shape (1,) or (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_iter_ : ndarray of shape (1,)
        L-BFGS iterations (shaped like ``LogisticRegression.n_iter_``).
    converged_ : bool
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LBFGSLogisticRegression(C=1.0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    >>> float(clf.score(X, y)) > 0.95
    True
    """

    def __init__(self, C=1.0, fit_intercept=True, max_iter=1000, tol=1e-5, device="cpu",
                 warm_start=False, random_state=None):
        self.C = C
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.warm_start = warm_start
        self.random_state = random_state

    def _set_iterations(self, n_iter):
        self.n_iter_ = np.array([n_iter])

    def predict_proba(self, X):
        """Class probabilities (softmax; logistic for two classes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            positive = 1.0 / (1.0 + np.exp(-scores))
            return np.column_stack([1.0 - positive, positive])
        return softmax(scores.astype(np.float64, copy=False))

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        return np.log(self.predict_proba(X))


def primal_objective(estimator, X, y) -> float:
    """scikit-learn's (unscaled) objective of a fitted linear classifier, in float64.

    ``LinearSVC``/``LBFGSLinearSVC``: one-vs-rest squared hinge with liblinear's penalized
    intercept (summed over classes); ``LogisticRegression``/``LBFGSLogisticRegression``:
    multinomial (binomial for two classes) with an unpenalized intercept.

    Parameters
    ----------
    estimator : fitted classifier with ``coef_``, ``intercept_`` and ``classes_``
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)

    Returns
    -------
    float

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LBFGSLogisticRegression(C=1.0).fit(X, y)
    >>> primal_objective(clf, X, y) > 0
    True
    """
    X = np.asarray(X, dtype=np.float64)
    coef = np.asarray(estimator.coef_, np.float64)
    intercept = np.asarray(estimator.intercept_, np.float64)
    Z = X @ coef.T + intercept
    classes = estimator.classes_
    index = np.searchsorted(classes, y)
    C = estimator.C
    if type(estimator).__name__ in ("LinearSVC", "LBFGSLinearSVC"):
        targets = (np.where(index == 1, 1.0, -1.0)[:, None] if len(classes) == 2
                   else np.where(index[:, None] == np.arange(len(classes)), 1.0, -1.0))
        margin = np.maximum(0.0, 1.0 - targets * Z)
        return float(C * (margin**2).sum() + 0.5 * ((coef**2).sum() + (intercept**2).sum()))
    if len(classes) == 2:
        loss = np.logaddexp(0.0, -np.where(index == 1, 1.0, -1.0) * Z[:, 0]).sum()
    else:
        loss = (np.logaddexp.reduce(Z, axis=1) - Z[np.arange(len(Z)), index]).sum()
    return float(C * loss + 0.5 * (coef**2).sum())
