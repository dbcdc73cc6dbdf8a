"""Randomized SVD of ``X - mean`` without a centred copy of ``X``.

scikit-learn's ``PCA(svd_solver="randomized")`` centres a copy of its input (or, with
``copy=False``, the caller's array in place), so fitting a PCA on a matrix the caller keeps
costs a second matrix. The randomized algorithm only multiplies the matrix by thin ones, and a
centred product is the plain product minus a rank-one term: ``(X - 1 m^T) Q = X Q - 1 (m^T Q)``
and ``(X - 1 m^T)^T Q = X^T Q - m (1^T Q)``. :func:`centred_randomized_svd` runs scikit-learn's
steps (Halko et al.'s range finder with LU-normalised power iterations, then the SVD of the
projected matrix; the same random numbers, the same orientation) on those products, so its
result equals ``PCA(svd_solver="randomized")``'s up to float rounding.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from sklearn.utils import check_random_state


#: Rows gathered at a time when the matrix is some rows of ``X`` (512 x 3,120 float32: 6.4 MB).
BLOCK_ROWS = 512


def _blocks(X: np.ndarray, rows: np.ndarray | None, whole: bool = False):
    """``(positions, X[rows][positions])`` a block of :data:`BLOCK_ROWS` at a time (views of
    ``X`` when rows is None; with ``whole``, ``X`` itself in one block then: one BLAS call)."""
    if rows is None:
        step = max(len(X), 1) if whole else BLOCK_ROWS
        for start in range(0, len(X), step):
            yield slice(start, start + step), X[start : start + step]
        return
    for start in range(0, len(rows), BLOCK_ROWS):
        yield slice(start, start + BLOCK_ROWS), X[rows[start : start + BLOCK_ROWS]]


def column_mean_and_total_variance(X: np.ndarray, rows: np.ndarray | None = None
                                   ) -> tuple[np.ndarray, float]:
    """The mean of the rows ``X[rows]`` (all rows when None), in ``X``'s dtype, and the sum of
    the columns' variances with ``ddof=1``; both accumulated in float64 a block at a time."""
    n_samples = len(X) if rows is None else len(rows)
    total = np.zeros(X.shape[1])
    for _, block in _blocks(X, rows):
        total += block.sum(axis=0, dtype=np.float64)
    mean = (total / n_samples).astype(X.dtype)
    variance = 0.0
    for _, block in _blocks(X, rows):
        centred = block - mean
        variance += float(np.square(centred, out=centred).sum(dtype=np.float64))
    return mean, variance / max(n_samples - 1, 1)


def centred_randomized_svd(X: np.ndarray, mean: np.ndarray, n_components: int, *,
                           rows: np.ndarray | None = None, n_oversamples: int = 10,
                           n_iter="auto", random_state=None):
    """Truncated SVD ``U, S, Vt`` of ``X[rows] - mean`` (all rows when None; ``X`` is read, never
    modified, and its rows are gathered :data:`BLOCK_ROWS` at a time), computed as
    scikit-learn's ``_randomized_svd(X[rows] - mean, flip_sign=False)``.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(50, 8)) + 3.0
    >>> U, S, Vt = centred_randomized_svd(X, X.mean(axis=0), 2, random_state=0)
    >>> bool(np.allclose(S, np.linalg.svd(X - X.mean(axis=0), compute_uv=False)[:2]))
    True
    """
    random_state = check_random_state(random_state)
    n_samples, n_features = (len(X) if rows is None else len(rows)), X.shape[1]
    if n_iter == "auto":
        n_iter = 7 if n_components < 0.1 * min(n_samples, n_features) else 4

    def times(Q):  # (X[rows] - mean) @ Q
        out = np.empty((n_samples, Q.shape[1]), dtype=np.result_type(X, Q))
        for positions, block in _blocks(X, rows, whole=True):
            np.matmul(block, Q, out=out[positions])
        out -= mean @ Q
        return out

    def times_transposed(Q):  # (X[rows] - mean).T @ Q
        out = -np.outer(mean, Q.sum(axis=0))
        for positions, block in _blocks(X, rows, whole=True):
            out += block.T @ Q[positions]
        return out

    transpose = n_samples < n_features  # as scikit-learn: the range of the thinner side
    forward, backward = (times_transposed, times) if transpose else (times, times_transposed)
    Q = random_state.normal(size=(n_samples if transpose else n_features,
                                  n_components + n_oversamples))
    if X.dtype == np.float32:
        Q = Q.astype(np.float32, copy=False)
    if n_iter > 2:
        def normalize(A):
            return linalg.lu(A, permute_l=True, check_finite=False)[0]
    else:
        def normalize(A):
            return A
    for _ in range(n_iter):
        Q = normalize(backward(normalize(forward(Q))))
    Q = linalg.qr(forward(Q), mode="economic", check_finite=False)[0]
    Uhat, S, Vt = linalg.svd(backward(Q).T, full_matrices=False, lapack_driver="gesdd")
    U = Q @ Uhat
    if transpose:
        return Vt[:n_components].T, S[:n_components], U[:, :n_components].T
    return U[:, :n_components], S[:n_components], Vt[:n_components]
