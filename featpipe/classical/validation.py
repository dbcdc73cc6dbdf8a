"""Checks on training data before any fit: labels, classes per fold, finite values; one line each."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from featpipe.errors import FeatpipeError
from featpipe.params import HasMethods, Interval, validate

SCORINGS = ("accuracy", "balanced_accuracy")
UNLABELLED = -1
#: ``cv``: a number of stratified folds (at least 2) or a scikit-learn CV splitter.
CV_CONSTRAINT = [Interval(int, 2, None), HasMethods("get_n_splits", "a CV splitter")]


def _n_splits(cv) -> int:
    validate({"cv": cv}, {"cv": CV_CONSTRAINT})
    if isinstance(cv, numbers.Integral):
        return int(cv)
    return int(cv.get_n_splits())


def _label_name(label, class_names) -> str:
    if (
        class_names is not None
        and isinstance(label, numbers.Integral)
        and 0 <= label < len(class_names)
    ):
        return repr(class_names[int(label)])
    return repr(label.item() if isinstance(label, np.generic) else label)


def validate_training_data(X, y, cv, class_names: Sequence[str] | None = None) -> None:
    """Refuse data a cross-validated search cannot learn from, with one clear line.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,) or None
        Labels; -1 marks an unlabelled sample.
    cv : int or CV splitter
        Number of folds (each class needs at least that many samples).
    class_names : sequence of str, default=None
        Used to name a class in messages.

    Raises
    ------
    FeatpipeError
        Empty X, no labels, unlabelled samples, a single class, a class with fewer samples
        than folds, a length mismatch, or NaN/inf features.

    Examples
    --------
    >>> import numpy as np
    >>> validate_training_data(np.zeros((4, 2)), np.array([0, 0, 1, 1]), cv=2)
    >>> validate_training_data(np.zeros((4, 2)), np.array([0, 0, 0, 1]), cv=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    featpipe.errors.FeatpipeError: class 1 has 1 sample(s), fewer than the 2 cross-validation ...
    """
    n_splits = _n_splits(cv)
    if X is None or np.ndim(X) != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        shape = None if X is None else tuple(np.shape(X))
        raise FeatpipeError(
            f"no features to learn from (X has shape {shape}); extract features first"
        )
    if y is None:
        raise FeatpipeError("the features have no labels; use a store extracted from class folders")
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise FeatpipeError(
            f"{X.shape[0]} feature rows but labels of shape {y.shape}; use matching X and y"
        )
    unlabelled = int(np.sum(y == UNLABELLED)) if y.dtype.kind in "iu" else 0
    if unlabelled == len(y):
        raise FeatpipeError(
            "the features have no labels (all -1); use a store extracted from class folders"
        )
    if unlabelled:
        raise FeatpipeError(f"{unlabelled} samples have no label (-1); drop them before training")
    labels, counts = np.unique(y, return_counts=True)
    if len(labels) < 2:
        raise FeatpipeError(
            f"only one class ({_label_name(labels[0], class_names)}) in the labels; "
            "a classifier needs at least two"
        )
    smallest = int(np.argmin(counts))
    if counts[smallest] < n_splits:
        raise FeatpipeError(
            f"class {_label_name(labels[smallest], class_names)} has {counts[smallest]} sample(s), "
            "fewer than the "
            f"{n_splits} cross-validation folds; lower `cv` or add samples of that class"
        )
    bad_rows = _count_non_finite_rows(X)
    if bad_rows:
        raise FeatpipeError(
            f"{bad_rows} feature rows contain NaN or inf; re-extract or drop those images"
        )


def _count_non_finite_rows(X, chunk_rows: int = 8192) -> int:
    if hasattr(X, "__array_namespace__") and not isinstance(X, np.ndarray):
        # torch and other array-API arrays: reduce on their own device.
        from sklearn.utils._array_api import get_namespace

        xp, _ = get_namespace(X)
        return int(xp.sum(xp.astype(~xp.all(xp.isfinite(X), axis=1), xp.int64)))
    return sum(
        int(np.count_nonzero(~np.isfinite(np.asarray(X[i : i + chunk_rows])).all(axis=1)))
        for i in range(0, X.shape[0], chunk_rows)
    )

