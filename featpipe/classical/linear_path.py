"""Cross-validated C path of the L-BFGS linear classifiers, all folds in one solve.

:func:`fit_c_path` walks C in increasing order, warm-starting every fold from its solution at
the previous C. The folds are solved together: one L-BFGS over a ``(n_folds * n_columns,
n_features + 1)`` parameter matrix whose row block ``f`` weighs the rows of fold ``f``'s
training set by ``1 / n_train`` and its other rows by 0. ``X`` is therefore never copied per
fold, and one ``X @ W`` per evaluation serves all folds (and gives the test rows' scores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d

from featpipe.classical.linear import (
    LBFGSLinearSVC,
    LBFGSLogisticRegression,
    Objective,
    as_float32_tensor,
    encode_targets,
    loss_for,
    minimize,
    zero_grad_max,
)


@dataclass
class CPathResult:
    """Scores of a C path: row ``i`` of each array is ``Cs[i]`` (in the order given)."""

    Cs: np.ndarray
    fold_scores: np.ndarray  # (n_Cs, n_folds)
    n_iter: np.ndarray  # (n_Cs,) L-BFGS iterations of the joint solve
    converged: np.ndarray  # (n_Cs,) bool

    @property
    def mean_scores(self) -> np.ndarray:
        return self.fold_scores.mean(axis=1)

    @property
    def best_C(self) -> float:
        """The C of the best mean score (the smallest such C on ties, as GridSearchCV)."""
        means = self.mean_scores
        best = np.flatnonzero(means == means.max())
        return float(self.Cs[best[np.argmin(self.Cs[best])]])


def fit_c_path(
    estimator,
    X,
    y,
    Cs: Sequence[float],
    train_test_folds: Sequence[tuple[np.ndarray, np.ndarray]],
    scoring: str | Callable | None = None,
) -> CPathResult:
    """Cross-validation scores of ``estimator`` for each C, folds solved jointly.

    Parameters
    ----------
    estimator : LBFGSLinearSVC or LBFGSLogisticRegression
        Supplies ``fit_intercept``, ``max_iter``, ``tol`` and ``device``; not fitted.
    X : array-like of shape (n_samples, n_features)
        Float32 C-contiguous input is not copied.
    y : array-like of shape (n_samples,)
    Cs : sequence of float
        Walked in increasing order; results are returned in the given order.
    train_test_folds : sequence of (train_indices, test_indices)
        E.g. ``list(StratifiedKFold(5).split(X, y))``. Every training set must contain every
        class of ``y``.
    scoring : str, callable or None, default=None
        None or "accuracy": accuracy from the joint decision values (no per-fold copies);
        otherwise a scikit-learn scorer, called on a fitted clone and ``X[test]``.

    Returns
    -------
    CPathResult
        ``fold_scores`` equal fitting ``clone(estimator).set_params(C=C)`` on each training
        set (up to the solver's tolerance).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import StratifiedKFold
    >>> X, y = load_iris(return_X_y=True)
    >>> folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    >>> result = fit_c_path(LBFGSLogisticRegression(), X, y, [0.01, 1.0], folds)
    >>> result.fold_scores.shape, bool(result.mean_scores[1] > 0.9)
    ((2, 3), True)
    """
    if not isinstance(estimator, (LBFGSLinearSVC, LBFGSLogisticRegression)):
        raise TypeError(f"fit_c_path needs an L-BFGS linear classifier, not {estimator!r}")
    estimator._validate_params()
    X = check_array(X, dtype=np.float32, order="C")
    y = column_or_1d(y)
    check_classification_targets(y)
    classes, y_index = np.unique(y, return_inverse=True)
    n, p = X.shape
    n_classes, n_folds = len(classes), len(train_test_folds)
    if n_classes < 2:
        raise ValueError("fit_c_path needs at least 2 classes in y")
    loss = loss_for(estimator, n_classes)
    k = 1 if n_classes == 2 else n_classes
    X_t = as_float32_tensor(X, estimator.device)
    device = X_t.device
    weights = torch.zeros((n_folds, n), dtype=torch.float32)
    n_train = np.zeros(n_folds)
    for f, (train, _) in enumerate(train_test_folds):
        train = np.asarray(train)
        if len(np.unique(y_index[train])) != n_classes:
            raise ValueError(f"the training set of fold {f} lacks some classes of y")
        weights[f, train] = 1.0 / len(train)
        n_train[f] = len(train)
    targets = encode_targets(y_index, n_classes, loss, device)
    if loss != "multinomial":
        targets = targets.repeat(n_folds, 1)
    objective = Objective(X_t, targets, weights.to(device), loss, n_folds,
                          estimator.fit_intercept)
    shape = (n_folds * k, p + int(estimator.fit_intercept))
    theta = torch.zeros(shape, dtype=torch.float32, device=device)
    grad0 = zero_grad_max(objective, shape, torch.float32, device)
    scorer = None if scoring in (None, "accuracy") else get_scorer(scoring)

    Cs = np.asarray(Cs, dtype=float)
    fold_scores = np.zeros((len(Cs), n_folds))
    n_iter = np.zeros(len(Cs), dtype=int)
    converged = np.zeros(len(Cs), dtype=bool)
    for i in np.argsort(Cs, kind="stable"):
        objective.set_C(Cs[i], n_train, n_folds * k)
        n_iter[i], converged[i] = minimize(objective, theta, estimator.max_iter, estimator.tol,
                                           grad0)
        with torch.no_grad():
            scores = objective.decision(theta).cpu().numpy()
        solution = theta.cpu().numpy()
        for f, (_, test) in enumerate(train_test_folds):
            block = slice(f * k, (f + 1) * k)
            if scorer is None:
                fold = scores[block, test].T
                index = (fold[:, 0] > 0).astype(int) if k == 1 else fold.argmax(axis=1)
                fold_scores[i, f] = np.mean(index == y_index[test])
            else:
                fitted = _fitted_clone(estimator, Cs[i], solution[block], objective.scaling,
                                       classes, p)
                fold_scores[i, f] = scorer(fitted, X[test], y[test])
    return CPathResult(Cs=Cs, fold_scores=fold_scores, n_iter=n_iter, converged=converged)


def _fitted_clone(estimator, C, theta, scaling, classes, p):
    """A clone of ``estimator`` at ``C`` whose fitted attributes are one fold's solution."""
    fitted = clone(estimator).set_params(C=C)
    fitted.classes_, fitted.n_features_in_, fitted.converged_ = classes, p, True
    fitted._set_solution(torch.from_numpy(np.ascontiguousarray(theta)), scaling, p, 0)
    return fitted
