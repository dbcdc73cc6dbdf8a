"""Closed-form ridge probe: every alpha of every fold from one matrix decomposition per fold.

:class:`RidgeProbeClassifier` is a scikit-learn classifier (one-vs-rest targets in {-1, 1},
as :class:`~sklearn.linear_model.RidgeClassifier`) that picks its regularisation from a grid by
exact stratified k-fold or exact leave-one-out scores. Per training block it forms, in float64,
the smaller of the two normal matrices (the Gram matrix ``Xc Xcᵀ`` when there are no more rows
than features, else ``Xcᵀ Xc``) and decomposes it once: a k-fold fold by a symmetric
tridiagonal reduction ``Q T Qᵀ`` (each alpha is then an O(m) tridiagonal solve per target), the
leave-one-out fit by an eigendecomposition (the hat matrix diagonal of every alpha needs it).
The refit on all rows is one Cholesky solve of the normal matrix in rectangular full packed
storage (k-fold: half its memory) or reuses the leave-one-out decomposition.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from scipy.linalg import eigh, solveh_banded
from scipy.linalg.blas import dsyrk
from scipy.linalg.lapack import dormqr, dpftrf, dpftrs, dsfrk, dsytrd, dsytrd_lwork
from sklearn.base import BaseEstimator, _fit_context
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.model_selection import StratifiedKFold, check_cv
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from featpipe.classical.device import is_tensor, tensor_input

# 45 log-spaced values, four per decade over [1e-3, 1e8]: for standardized features the
# eigenvalues of Xc Xcᵀ sum to n·p, so 1e-3 is unregularised (minimum-norm) for any realistic
# n and 1e8 >= n·p up to 10k x 10k reaches the other limit (a class-centroid classifier).
DEFAULT_ALPHAS = tuple(np.logspace(-3, 8, 45).tolist())

# Float64 elements in one temporary block of X (2 MiB): X is converted and centred block by block.
# 4 MiB blocks took the same time and peaked 3.7 MiB higher (3k Fashion-MNIST `ridge` fit).
_BLOCK = 1 << 18
#: Held-out rows of a fold scored at a time (:meth:`_RidgePath.decisions`).
TEST_ROWS = 256


def _row_blocks(rows, width):
    step = max(1, _BLOCK // max(width, 1))
    for start in range(0, len(rows), step):
        yield slice(start, start + step), rows[start : start + step]


def _col_blocks(width, height):
    step = max(1, _BLOCK // max(height, 1))
    for start in range(0, width, step):
        yield slice(start, start + step)


class _Rows:
    """Blocks of ``X``'s rows (and columns), as ``X * multiplier - shift`` in float64 when an
    affine map (:meth:`~featpipe.classical.transformers.Standardizer.affine`) is given: the
    standardized features without a standardized copy of ``X``."""

    def __init__(self, X, affine=None):
        self.X, self.shape = X, X.shape
        self.multiplier, self.shift = (None, None) if affine is None else \
            (np.asarray(a, dtype=np.float64) for a in affine)

    def __getitem__(self, key):
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        block = self.X[rows, cols]
        if self.multiplier is None:
            return block
        return block * self.multiplier[cols] - self.shift[cols]

    def centred(self, rows, mean, cols=slice(None)):
        """``self[rows, cols] - mean[cols]``: one new float64 block, mapped in place."""
        block = self.X[rows, cols]
        block = block.astype(np.float64, copy=np.may_share_memory(block, self.X))
        if self.multiplier is not None:
            block *= self.multiplier[cols]
            block -= self.shift[cols]
        block -= mean[cols]
        return block


def _mean(X, rows):
    total = np.zeros(X.shape[1])
    for _, r in _row_blocks(rows, X.shape[1]):
        total += X[r].sum(axis=0, dtype=np.float64)
    return total / len(rows)


def _xt_dot(X, rows, mean, S):
    """``(X[rows] - mean)ᵀ @ S`` in float64, one block of rows at a time."""
    out = np.zeros((X.shape[1], S.shape[1]))
    for part, r in _row_blocks(rows, X.shape[1]):
        out += X.centred(r, mean).T @ S[part]
    return out


def _apply_q(R, tau, C, side):
    """``Qᵀ C`` (side "L") or ``C Q`` (side "R"), in place, for ``Q = diag(1, Q')`` of sytrd."""
    if len(tau) == 0:
        return C
    part = np.asfortranarray(C[1:] if side == "L" else C[:, 1:])
    trans = "T" if side == "L" else "N"
    lwork = int(dormqr(side, trans, R, tau, part, -1)[1][0])
    part, _, _ = dormqr(side, trans, R, tau, part, lwork, overwrite_c=1)
    if side == "L":
        C[1:] = part
    else:
        C[:, 1:] = part
    return C


def _tridiagonalize(M):
    """``M = Q T Qᵀ`` in place (LAPACK sytrd, lower triangle): ``d``, ``e`` of ``T`` and the
    reflectors of ``Q`` moved to an ``(m-1) × (m-1)`` Fortran array in ``M``'s own memory."""
    m = len(M)
    lwork = max(int(dsytrd_lwork(m, lower=1)[0]), m)
    c, d, e, tau, _ = dsytrd(M, lower=1, lwork=lwork, overwrite_a=1)
    flat = c.reshape(-1, order="F")  # a view: the reflectors of Q' are c[1:, :-1]
    for j in range(m - 1):  # column j moves back by j + 1 places; earlier columns are done
        flat[j * (m - 1) : (j + 1) * (m - 1)] = flat[j * m + 1 : (j + 1) * m]
    return d, e, flat[: (m - 1) ** 2].reshape((m - 1, m - 1), order="F"), tau


class _RidgePath:
    """Ridge regressions of the ±1 targets ``Y[train]`` on ``X[train]`` for any alpha.

    The normal matrix ``M`` (``Xc Xcᵀ`` if ``dual`` else ``Xcᵀ Xc``) is reduced once, by
    ``method``: "eigen" (``M = U diag(w) Uᵀ``: leave-one-out needs the hat matrix diagonal),
    "tridiagonal" (``M = Q T Qᵀ``: each alpha is then a tridiagonal solve; about half the cost
    of "eigen", no second m × m array) or "cholesky" (``M`` packed, for one solve: the refit).
    """

    def __init__(self, X, Y, train, fit_intercept, method, affine=None):
        X = _Rows(X, affine)
        n, p = len(train), X.shape[1]
        self.X, self.train, self.dual = X, train, n <= p
        self.mean = _mean(X, train) if fit_intercept else np.zeros(p)
        self.ybar = Y[train].mean(axis=0) if fit_intercept else np.zeros(Y.shape[1])
        self.offset = 1.0 / n if fit_intercept else 0.0
        self.Yc = Y[train] - self.ybar
        self.rhs = self.Yc if self.dual else _xt_dot(X, train, self.mean, self.Yc)
        if method == "cholesky":
            self.M = self._normal_matrix(packed=True)
            return
        M = self._normal_matrix(packed=False)
        if method == "tridiagonal":
            self.d, self.e, self.R, self.tau = _tridiagonalize(M)
            self.B = _apply_q(self.R, self.tau, np.array(self.rhs), "L")
        else:  # MRRR ("evr"): exact to float64 round-off, O(m) workspace beyond U
            w, self.U = eigh(M, lower=True, overwrite_a=True, check_finite=False, driver="evr")
            # Null eigenvalues (the centred Gram matrix always has the constant vector) come out
            # as ±1e-16·λ_max·m; make them exact zeros: LOO's ``1 - h`` cancels them against
            # ``offset`` and would keep an error of ~w_null/alpha² otherwise.
            self.w = np.where(w > len(w) * np.finfo(float).eps * w[-1], w, 0.0)
            self.B = self.U.T @ self.rhs

    def _normal_matrix(self, packed):
        """The lower triangle of ``M`` by rank-k updates into one array (no second m × m
        copy): a Fortran m × m array, or ``packed`` in LAPACK's rectangular full packed format
        (m (m + 1) / 2 values: half the memory, for the Cholesky solve of :meth:`coef`)."""
        X, train, mean, dual = self.X, self.train, self.mean, self.dual
        m = len(train) if dual else X.shape[1]
        M = np.zeros(m * (m + 1) // 2) if packed else np.zeros((m, m), order="F")
        parts = _col_blocks(X.shape[1], m) if dual else (r for _, r in _row_blocks(train, m))
        for part in parts:
            # the transposed view of a C-ordered block is in Fortran order: LAPACK copies none
            A = (X.centred(train, mean, part) if dual else X.centred(part, mean)).T
            if packed:  # dual: M += Aᵀ A (A is columns × m), else M += A Aᵀ (A is m × rows)
                M = dsfrk(m, A.shape[0] if dual else A.shape[1], 1.0, A, 1.0, M, transr="N",
                          uplo="L", trans="T" if dual else "N", overwrite_c=1)
            else:
                M = dsyrk(1.0, A, trans=int(dual), beta=1.0, c=M, lower=1, overwrite_c=True)
            del A  # before the next block is made
        return M

    def decisions(self, test, alphas):
        """Yield ``(i, part, decision values of X[test[part]] for alphas[i])`` ("tridiagonal"),
        :data:`TEST_ROWS` test rows at a time: their products with ``Xcᵀ Q`` (dual) or ``Q``
        are ``(rows, m)`` float64 and ``_apply_q`` copies them once more, so all test rows at
        once took 2 x 38 MiB beside a 12,000-image fold's 74 MiB normal matrix. Each part
        solves every alpha again (an O(m) banded solve per target)."""
        band = np.zeros((2, len(self.d)))
        band[0, 1:] = self.e
        for start in range(0, len(test), TEST_ROWS):
            part = slice(start, start + TEST_ROWS)
            G = _apply_q(self.R, self.tau, self._test_products(test[part]), "R")
            for i, alpha in enumerate(alphas):
                band[1] = self.d + alpha
                S = solveh_banded(band, self.B, check_finite=False) if len(band[1]) > 1 else \
                    self.B / band[1, 0]  # scipy's ptsv path rejects 1 × 1
                yield i, part, G @ S + self.ybar

    def _test_products(self, test):
        """``(X[test] - mean) Xcᵀ`` (dual) or ``X[test] - mean``, float64, Fortran order."""
        X, p = self.X, self.X.shape[1]
        if self.dual:
            G = np.zeros((len(test), len(self.train)), order="F")
            for cols in _col_blocks(p, len(self.train) + len(test)):
                G += X.centred(test, self.mean, cols) @ X.centred(self.train, self.mean, cols).T
            return G
        G = np.empty((len(test), p), order="F")
        for part, r in _row_blocks(test, p):
            G[part] = X.centred(r, self.mean)
        return G

    def loo_decisions(self, alphas):
        """Yield ``(i, rows, leave-one-out decision values of rows for alphas[i])``.

        Exact LOO residuals ``r / (1 - h)`` with ``h`` the diagonal of the hat matrix (the
        intercept is an unpenalised column of ones: ``h = offset + Σ_j Z_ij² / (w_j + alpha)``).
        """
        U, B, winv = self.U, self.B, 1.0 / (self.w[:, None] + np.asarray(alphas)[None, :])
        if self.dual:  # U is a full basis: 1 - h = alpha Σ_j U_ij² / (w_j + alpha) - offset
            one_minus_h = np.empty((len(U), len(alphas)))
            for part, _ in _row_blocks(np.arange(len(U)), len(U)):
                one_minus_h[part] = (U[part] ** 2 @ winv) * alphas - self.offset
            for i, alpha in enumerate(alphas):
                residual = alpha * (U @ (B * winv[:, i : i + 1]))
                yield i, slice(None), self.Yc + self.ybar - residual / one_minus_h[:, i : i + 1]
            return
        for part, r in _row_blocks(self.train, self.X.shape[1]):
            Z = self.X.centred(r, self.mean) @ U
            one_minus_h = 1.0 - self.offset - Z**2 @ winv
            for i in range(len(alphas)):
                residual = self.Yc[part] - Z @ (B * winv[:, i : i + 1])
                yield i, part, self.Yc[part] + self.ybar - residual / one_minus_h[:, i : i + 1]

    def coef(self, alpha):
        """``(p, K)`` coefficients of the ridge fit with ``alpha`` (uses up ``M`` if kept)."""
        if hasattr(self, "M"):
            m = len(self.rhs)
            self.M[_packed_diagonal(m)] += alpha
            factor, info = dpftrf(m, self.M, transr="N", uplo="L", overwrite_a=1)
            del self.M
            if info == 0:
                S, info = dpftrs(m, factor, np.asfortranarray(self.rhs), transr="N", uplo="L",
                                 overwrite_b=1)
            if info != 0:
                raise np.linalg.LinAlgError(f"ridge refit: the normal matrix plus alpha={alpha:g}"
                                            " is not positive definite (LAPACK pftrf/pftrs info "
                                            f"{info})")
        else:
            S = self.U @ (self.B / (self.w + alpha)[:, None])
        return _xt_dot(self.X, self.train, self.mean, S) if self.dual else S


def _packed_diagonal(m):
    """Positions of the diagonal of an m × m matrix's lower triangle in rectangular full
    packed format (LAPACK ``TRANSR="N"``, ``UPLO="L"``: ``dtrttf``'s layout), in order."""
    k = (m + 1) // 2
    j = np.arange(k)
    if m % 2 == 0:  # an (m + 1) × k array: T[j, j] at A[j + 1, j], T[k + j, k + j] at A[j, j]
        return np.concatenate([j * (m + 2) + 1, j * (m + 2)])
    # an m × k array: T[j, j] at A[j, j], T[k + j, k + j] at A[j, j + 1]
    return np.concatenate([j * (m + 1), j[:-1] * (m + 1) + m])


def _spread(Y, rows, n):
    """``Y`` (one row per fitted row) as rows of an ``n``-row array: the paths index targets
    by rows of ``X``."""
    if len(rows) == n and np.array_equal(rows, np.arange(n)):
        return Y
    spread = np.zeros((n, Y.shape[1]))
    spread[rows] = Y
    return spread


def _labels(decision):
    return (decision[:, 0] > 0).astype(np.intp) if decision.shape[1] == 1 else decision.argmax(1)


def _scores(pred, y, scoring):
    """Accuracy or balanced accuracy of each row of ``pred`` (n_alphas × n) against ``y``."""
    correct = pred == y
    if scoring == "accuracy":
        return correct.mean(axis=1)
    return np.mean([correct[:, y == c].mean(axis=1) for c in np.unique(y)], axis=0)


class RidgeProbeClassifier(LinearClassifierMixin, BaseEstimator):
    """Ridge classifier whose alpha is chosen by exact CV scores from closed-form ridge paths.

    Targets are one-vs-rest in {-1, 1} (as :class:`~sklearn.linear_model.RidgeClassifier`);
    ``predict`` is the argmax of ``decision_function`` (its sign for two classes). For each
    training block (a fold, or all rows) the normal matrix with the smaller side (``Xc Xcᵀ`` if
    there are no more rows than features, else ``Xcᵀ Xc``) is formed and decomposed once, in
    float64 (float32 normal matrices would lose ~1e-7 × λ_max, more than small alphas); the
    held-out decision values of every alpha then cost a tridiagonal solve and a matrix product.
    ``X`` itself stays in its dtype (float32 is not copied); it is centred and converted to
    float64 a 4 MiB block at a time. Peak extra memory is about one float64 ``m × m`` matrix
    (k-fold) or two (leave-one-out: the matrix and its eigenvectors), ``m = min(n_train_rows,
    n_features)``. The reductions are backward stable: errors of about ``1e-16 × λ_max``,
    negligible next to ``alpha`` unless alpha is below about ``1e-10 × λ_max``.

    Parameters
    ----------
    alphas : array-like of float > 0, default=DEFAULT_ALPHAS
        The regularisation grid (sorted ascending into ``alphas_``). The default, 45 values four
        per decade over [1e-3, 1e8], spans, for standardized features, from no regularisation to
        the class-centroid limit up to n × p = 1e8.
    cv : int, cross-validation generator, iterable or None, default=None
        None: exact leave-one-out from the decomposition of all rows (which the refit reuses).
        int k: ``StratifiedKFold(k, shuffle=True, random_state=random_state)``, one
        tridiagonal reduction per fold, then a Cholesky refit. Other splitters are used as given.
    scoring : {"accuracy", "balanced_accuracy"}, default="accuracy"
        Score of the held-out predictions per fold (for leave-one-out: of all rows' LOO
        predictions at once).
    fit_intercept : bool, default=True
        Fit an unpenalised intercept (centre X and Y with the training block's means only).
    random_state : int, RandomState instance or None, default=0
        Shuffling of the folds when ``cv`` is an int.

    Attributes
    ----------
    alpha_ : float
        The alpha with the best mean CV score; on ties the largest (most regularised).
    alpha_at_edge_ : bool
        True when ``alpha_`` is the smallest or largest of ``alphas_``: extend the grid there
        (and stop extending once ``best_score_`` no longer improves: a plateau of equal scores
        reaching the top of the grid keeps choosing its largest alpha).
    alphas_ : ndarray of shape (n_alphas,)
        The grid, sorted ascending; the rows of ``cv_scores_``.
    cv_scores_ : ndarray of shape (n_alphas, n_splits)
        Score of each alpha on each fold (``n_splits = 1`` for leave-one-out).
    best_score_ : float
        Mean of ``cv_scores_`` over the folds at ``alpha_``.
    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        In the dtype of ``X`` (computed in float64).
    intercept_ : ndarray of shape (1,) or (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    Notes
    -----
    Unlike ``RidgeClassifierCV(cv=None)``, which ranks alphas by the squared error of the LOO
    decision values, the leave-one-out choice here is by ``scoring`` of the LOO predictions.
    Fitting is NumPy/SciPy (LAPACK), or torch on a tensor's device (eigendecompositions for
    every block, :mod:`featpipe.classical.ridge_torch`; coefficients stored as NumPy);
    ``decision_function`` and ``predict`` come from scikit-learn's ``LinearClassifierMixin``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = RidgeProbeClassifier(cv=5).fit(X[:1000], y[:1000])
    >>> clf.cv_scores_.shape, bool(clf.alpha_at_edge_)
    ((45, 5), False)
    >>> round(float(clf.score(X[1000:], y[1000:])), 2) > 0.85
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "alphas": ["array-like", Interval(Real, 0, None, closed="neither")],
        "cv": ["cv_object"],
        "scoring": [StrOptions({"accuracy", "balanced_accuracy"})],
        "fit_intercept": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(self, alphas=DEFAULT_ALPHAS, *, cv=None, scoring="accuracy", fit_intercept=True,
                 random_state=0):
        self.alphas = alphas
        self.cv = cv
        self.scoring = scoring
        self.fit_intercept = fit_intercept
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Score every alpha by cross-validation, then refit on all rows with the best one.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Float32 input is kept as float32.
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : RidgeProbeClassifier
        """
        if is_tensor(X):  # decomposed on the tensor's device (featpipe.classical.ridge_torch)
            X, y = tensor_input(self, X, y)
        else:
            X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        return self._fit(X, y, None, None)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_rows(self, X, y, rows=None, affine=None):
        """:meth:`fit` on ``X[rows] * multiplier - shift`` without forming it.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Float32 input is not copied.
        y : array-like of shape (n_samples,)
            Labels of all rows of ``X``.
        rows : array of int, default=None
            The rows to fit on (None: all).
        affine : (multiplier, shift) arrays of shape (n_features,), default=None
            The model is fitted, and its ``coef_`` expressed, on the standardized features
            (:meth:`~featpipe.classical.transformers.Standardizer.affine`), taken a block
            at a time in float64; None: on ``X``.

        Returns
        -------
        self : RidgeProbeClassifier

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from featpipe.classical.transformers import Standardizer
        >>> X, y = load_digits(return_X_y=True)
        >>> scaler = Standardizer().fit(X)
        >>> a = RidgeProbeClassifier(cv=3).fit_rows(X, y, affine=scaler.affine())
        >>> b = RidgeProbeClassifier(cv=3).fit(scaler.transform(X), y)
        >>> a.alpha_ == b.alpha_, bool(np.allclose(a.coef_, b.coef_))
        (True, True)
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        return self._fit(X, y, None if rows is None else np.asarray(rows), affine)

    def _fit(self, X, y, rows, affine):
        rows = np.arange(len(y)) if rows is None else rows
        y = y[rows]
        check_classification_targets(y)
        alphas = np.unique(np.asarray(self.alphas, dtype=np.float64).ravel())
        if alphas.size == 0 or not np.all(np.isfinite(alphas)) or alphas[0] <= 0:
            raise ValueError(f"alphas must be positive and finite; got {self.alphas!r}")
        self.classes_, y_index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("RidgeProbeClassifier needs at least 2 classes; got 1 class")
        if len(self.classes_) == 2:
            Y = np.where(y_index == 1, 1.0, -1.0)[:, None]
        else:
            Y = -np.ones((len(y), len(self.classes_)))
            Y[np.arange(len(y)), y_index] = 1.0
        Y = _spread(Y, rows, len(X))
        if self.cv is None:
            path = self._path(X, Y, rows, "eigen", affine)
            pred = np.empty((len(alphas), len(y)), dtype=np.intp)
            for i, part, decision in path.loo_decisions(alphas):
                pred[i, part] = _labels(decision)
            scores = _scores(pred, y_index, self.scoring)[:, None]
        else:
            if isinstance(self.cv, Integral):
                splitter = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state)
            else:
                splitter = check_cv(self.cv, y, classifier=True)
            columns = []
            for train, test in splitter.split(np.empty((len(y), 0)), y_index):
                fold = self._path(X, Y, rows[train], "tridiagonal", affine)
                pred = np.empty((len(alphas), len(test)), dtype=np.intp)
                for i, part, decision in fold.decisions(rows[test], alphas):
                    pred[i, part] = _labels(decision)
                columns.append(_scores(pred, y_index[test], self.scoring))
                del fold
            scores = np.stack(columns, axis=1)
            path = self._path(X, Y, rows, "cholesky", affine)
        mean_scores = scores.mean(axis=1)
        best = int(np.flatnonzero(mean_scores == mean_scores.max())[-1])
        self.alphas_, self.cv_scores_ = alphas, scores
        self.alpha_, self.best_score_ = float(alphas[best]), float(mean_scores[best])
        self.alpha_at_edge_ = best in (0, len(alphas) - 1)
        coef = path.coef(self.alpha_)
        dtype = np.dtype(str(X.dtype).removeprefix("torch."))  # NumPy's or torch's float
        self.coef_ = np.ascontiguousarray(coef.T, dtype=dtype)
        self.intercept_ = (path.ybar - path.mean @ coef).astype(dtype)
        return self

    def _path(self, X, Y, rows, method, affine=None):
        """The NumPy path by ``method``, or the torch path (eigen decompositions throughout)."""
        if not is_tensor(X):
            return _RidgePath(X, Y, rows, self.fit_intercept, method, affine)
        from featpipe.classical.ridge_torch import TorchRidgePath

        return TorchRidgePath(X, Y, rows, self.fit_intercept)
