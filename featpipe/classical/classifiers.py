"""The classifiers a recipe ends in, by name, with their default grids' value ranges."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from featpipe.params import Options, validate

CLASSIFIERS = ("linearsvc", "liblinear", "svc", "logistic", "knn", "ridge", "ridge-probe")


# Kornblith, Shlens & Le (CVPR 2019): 45 log-spaced L2 regularization strengths in
# [1e-6, 1e5]; scikit-learn's C is the inverse strength, hence C in [1e-5, 1e6].
KORNBLITH_C_GRID = sorted((1.0 / np.logspace(-6, 5, 45)).tolist())


def _logspace(low: int, high: int) -> list[float]:
    return np.logspace(low, high, high - low + 1).tolist()


def make_classifier(name: str, random_state: int | None = 0):
    """Build one of :data:`CLASSIFIERS` with featpipe's defaults.

    Parameters
    ----------
    name : {"linearsvc", "liblinear", "svc", "logistic", "knn", "ridge", "ridge-probe"}
        ``linearsvc`` is LinearSVC's objective (squared hinge, L2, primal) solved by L-BFGS in
        float32 (:class:`~featpipe.classical.linear.LBFGSLinearSVC`: no float64 or sparse copy
        of X, warm starts along a C path); ``liblinear`` is scikit-learn's ``LinearSVC`` itself.
        ``logistic`` is ``LogisticRegression``'s multinomial objective solved the same way
        (:class:`~featpipe.classical.linear.LBFGSLogisticRegression`).
        ``ridge-probe`` tunes its own alpha by exact cross-validation (closed form).
    random_state : int or None, default=0

    Returns
    -------
    estimator : scikit-learn classifier

    Examples
    --------
    >>> make_classifier("logistic")
    LBFGSLogisticRegression(random_state=0)
    """
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC, LinearSVC

    factories: dict[str, Callable[[], object]] = {
        "linearsvc": lambda: _lbfgs_svc(random_state),
        # Discretized / normalized features with many columns need more than 1000 iterations.
        "liblinear": lambda: LinearSVC(C=1.0, max_iter=5000, random_state=random_state),
        "svc": lambda: SVC(kernel="rbf", C=1.0, gamma="scale", random_state=random_state),
        "logistic": lambda: _lbfgs_logistic(random_state),
        # brute force: exact, fast on a reducer's few dimensions, and no tree object that
        # skops would refuse to load
        "knn": lambda: KNeighborsClassifier(n_neighbors=5, algorithm="brute"),
        "ridge": lambda: RidgeClassifier(alpha=1.0),
        "ridge-probe": lambda: _ridge_probe(random_state),
    }
    validate({"classifier": name}, {"classifier": [Options(CLASSIFIERS)]})
    return factories[name]()


def _ridge_probe(random_state):
    from featpipe.classical.ridge import RidgeProbeClassifier

    return RidgeProbeClassifier(cv=5, random_state=random_state)


def _lbfgs_logistic(random_state):
    from featpipe.classical.linear import LBFGSLogisticRegression

    return LBFGSLogisticRegression(C=1.0, random_state=random_state)


def _lbfgs_svc(random_state):
    from featpipe.classical.linear import LBFGSLinearSVC

    return LBFGSLinearSVC(C=1.0, random_state=random_state)
