"""Preprocessing fitted and applied a block of rows at a time, so that memory is bounded by its
output, never by copies of the input.

``pipeline.fit(X[rows])`` copies the selected rows, then each step's ``fit_transform`` makes a
full-size intermediate: a fold of the FNE recipe (standardize -> discretize) held three copies of
its rows at once. :func:`fit_rows` instead fits a step that learns nothing from the rows
(layer selection, per-layer L2, FNE discretization) on one block and a step with
``partial_fit`` (:class:`~featpipe.classical.transformers.Standardizer`) block by block;
other steps (PCA, UMAP) are fitted on the copied rows as usual (the fast search lets a lone
PCA read its rows in place instead). :func:`transform_rows` writes
``preprocess.transform(X[rows])`` into one preallocated array, :data:`CHUNK_ROWS` rows at a
time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn.pipeline import Pipeline

from featpipe.classical.device import is_tensor
from featpipe.classical.transformers import FNEDiscretizer, LayerL2Normalizer, LayerSelector

#: Rows per block: 128 x 3,120 float32 features are 1.6 MB, and a step's temporaries (FNE
#: discretization makes four; a Standardizer's statistics a float64 copy and its centred twin)
#: stay a few times that in each thread. The ``fne`` recipe on 3k Fashion-MNIST images (5 folds,
#: two threads) peaked 9-13 MiB lower than with 256 rows (about 0.5x its 24 MiB ``X``), in the
#: same time (16.4-17.9 s against 16.8-17.3 s; 46.3-46.8 s against 43.7-50.4 s at 12k).
CHUNK_ROWS = 128


def learns_nothing_from_rows(step) -> bool:
    return isinstance(step, (LayerSelector, LayerL2Normalizer, FNEDiscretizer))


def _streams(step) -> bool:
    return step == "passthrough" or learns_nothing_from_rows(step) or hasattr(step, "partial_fit")


def streams(preprocess: Pipeline) -> bool:
    """Whether every step of ``preprocess`` can be fitted and applied a block of rows at a
    time (PCA and UMAP cannot: their output is small, compute it once instead)."""
    return all(_streams(step) for _, step in preprocess.steps)


def _blocks(X, rows: np.ndarray, preprocess: Pipeline | None) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), CHUNK_ROWS):
        block = X[rows[start : start + CHUNK_ROWS]]
        yield block if preprocess is None else preprocess.transform(block)


def fit_rows(preprocess: Pipeline, X, y, rows: np.ndarray) -> Pipeline:
    """Fit ``preprocess`` (in place) on ``X[rows]``, ``y[rows]``; returns it.

    Streams the rows when every step streams (see the module notes); the result equals
    ``preprocess.fit(X[rows], y[rows])`` up to float rounding of the merged statistics.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from featpipe.classical.transformers import FNEDiscretizer, Standardizer
    >>> X = np.arange(12, dtype=np.float32).reshape(6, 2)
    >>> pre = fit_rows(make_pipeline(Standardizer(), FNEDiscretizer()), X, None,
    ...                np.array([0, 2, 4]))
    >>> pre[0].mean_.tolist()
    [4.0, 5.0]
    """
    rows = np.asarray(rows)
    if is_tensor(X) or not streams(preprocess):
        return preprocess.fit(take_rows(X, rows), None if y is None else y[rows])
    for i, (_, step) in enumerate(preprocess.steps):
        if step == "passthrough":
            continue
        before = preprocess[:i] if i else None
        blocks = _blocks(X, rows, before)
        step.fit(next(blocks))
        if not learns_nothing_from_rows(step):
            for block in blocks:
                step.partial_fit(block)
    return preprocess


def transform_rows(preprocess: Pipeline | None, X, rows: np.ndarray,
                   dtype=np.float32) -> np.ndarray:
    """``preprocess.transform(X[rows])`` (``X[rows]`` when None) as a C-contiguous ``dtype``
    array, computed :data:`CHUNK_ROWS` rows at a time.

    Examples
    --------
    >>> X = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> transform_rows(None, X, np.array([2, 0])).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """
    rows = np.asarray(rows)
    if is_tensor(X):  # on a device: the rows at once (blocks would only add kernel launches)
        block = take_rows(X, rows)
        return block if preprocess is None else preprocess.transform(block)
    out = None
    for start, block in zip(range(0, len(rows), CHUNK_ROWS), _blocks(X, rows, preprocess)):
        if out is None:
            out = np.empty((len(rows), block.shape[1]), dtype=dtype)
        out[start : start + len(block)] = block
    if out is None:  # no rows
        width = X.shape[1] if preprocess is None else preprocess.transform(X[:1]).shape[1]
        out = np.empty((0, width), dtype=dtype)
    return out


def take_rows(X, rows: np.ndarray):
    """``X[rows]``; a tensor is indexed with an index on its own device."""
    if not is_tensor(X):
        return X[rows]
    import torch

    return X[torch.as_tensor(rows, device=X.device)]


def predict_rows(estimator, X, method: str = "predict") -> np.ndarray:
    """``getattr(estimator, method)(X)`` computed :data:`CHUNK_ROWS` rows at a time, so that a
    pipeline's intermediate copies stay the size of a block.

    Examples
    --------
    >>> from sklearn.dummy import DummyClassifier
    >>> X = np.zeros((5, 2), dtype=np.float32)
    >>> predict_rows(DummyClassifier().fit(X, [0, 1, 1, 1, 0]), X).tolist()
    [1, 1, 1, 1, 1]
    """
    if len(X) <= CHUNK_ROWS:
        return np.asarray(getattr(estimator, method)(X))
    return np.concatenate([np.asarray(getattr(estimator, method)(X[start : start + CHUNK_ROWS]))
                           for start in range(0, len(X), CHUNK_ROWS)])
