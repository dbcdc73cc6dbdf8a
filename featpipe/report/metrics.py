"""Test-set metrics of a fitted classifier.

Examples
--------
>>> from sklearn.datasets import load_iris
>>> from sklearn.linear_model import LogisticRegression
>>> X, y = load_iris(return_X_y=True)
>>> model = LogisticRegression(max_iter=500).fit(X, y)
>>> ev = evaluate(model, X, y, ["setosa", "versicolor", "virginica"])
>>> round(ev["accuracy"], 2), ev["per_class"][0]["class"]
(0.97, 'setosa')
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

from featpipe.errors import FeatpipeError


def evaluate(estimator, X_test, y_test, class_names: Sequence[str] | None = None) -> dict:
    """Test-set metrics of a fitted classifier.

    Parameters
    ----------
    estimator : fitted classifier or pipeline
    X_test : array of shape (n_samples, n_features)
    y_test : array of shape (n_samples,)
        Integer labels indexing ``class_names``.
    class_names : sequence of str, default=None
        Names of labels 0..k-1; None uses the labels themselves.

    Returns
    -------
    dict
        ``n_test``, ``accuracy``, ``balanced_accuracy``, ``per_class`` (list of
        ``{"class", "n", "accuracy"}``; accuracy is None for a class absent from the test
        set), ``labels``, ``confusion_matrix`` (rows true, columns predicted) and
        ``predict_seconds``.
    """
    if X_test is None or np.ndim(X_test) != 2 or X_test.shape[0] == 0:
        raise FeatpipeError("no test samples to evaluate; use a test split with at least one image")
    if y_test is None or len(y_test) != X_test.shape[0]:
        raise FeatpipeError(
            "test labels are missing or do not match the test features; use a labelled store"
        )
    y_test = np.asarray(y_test)
    start = time.perf_counter()
    y_pred = np.asarray(estimator.predict(X_test))
    return score_predictions(y_test, y_pred, class_names, time.perf_counter() - start)


def score_predictions(y_test, y_pred, class_names: Sequence[str] | None = None,
                      predict_seconds: float = 0.0) -> dict:
    """The metrics of :func:`evaluate` from labels and predictions already made (e.g. a batch
    at a time by an out-of-core model).

    Examples
    --------
    >>> score_predictions([0, 1, 1], [0, 1, 0], ["a", "b"])["balanced_accuracy"]
    0.75
    """
    y_test, y_pred = np.asarray(y_test), np.asarray(y_pred)
    labels = (
        np.arange(len(class_names))
        if class_names is not None
        else np.unique(np.concatenate([y_test, y_pred]))
    )
    names = list(class_names) if class_names is not None else [str(label) for label in labels]
    matrix = confusion_matrix(y_test, y_pred, labels=labels)
    support = matrix.sum(axis=1)
    per_class = [
        {"class": name, "n": int(n), "accuracy": float(matrix[i, i] / n) if n else None}
        for i, (name, n) in enumerate(zip(names, support, strict=True))
    ]
    return {
        "n_test": int(len(y_test)),
        "accuracy": float(accuracy_score(y_test, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_test, y_pred)),
        "per_class": per_class,
        "labels": names,
        "confusion_matrix": matrix.tolist(),
        "predict_seconds": predict_seconds,
    }

