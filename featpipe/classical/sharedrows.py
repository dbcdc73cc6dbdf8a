"""The one matrix whose rows the folds of the fast search read in place
(:mod:`featpipe.classical.fastsearch`, module notes 7): its rows in fold order, the
preprocessing's leading steps applied once (to a copy, or over ``X`` itself), and the refit's
preprocessing fitted from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from featpipe.classical.chunked import CHUNK_ROWS, fit_rows, transform_rows


def affine(preprocess: Pipeline | None):
    """``(multiplier, shift)`` in float32 of a fitted prefix ending in a Standardizer."""
    if preprocess is None:
        return None
    last = [step for _, step in preprocess.steps if step != "passthrough"][-1]
    return last.affine(np.float32)


@dataclass(frozen=True)
class SharedRows:
    """One matrix whose rows the classifier of every fold reads in place
    (:mod:`~featpipe.classical.fastsearch` notes, 7).

    ``X`` is the input after the preprocessing's leading steps that learn nothing from rows
    (layer selection, per-layer L2), written once in fold order: each fold's held-out rows are
    contiguous, so its training rows are two runs; without such steps ``X`` is the input
    itself (the training rows are then gathered, a block at a time). ``scaler`` is the
    remaining step, a :class:`~featpipe.classical.transformers.Standardizer` (unfitted, in a
    pipeline) folded into the classifier's objective, or None."""

    X: np.ndarray
    y: np.ndarray
    splits: list  # (train, test) rows of X
    scaler: Pipeline | None
    head: Pipeline | None = None  #: the leading steps, fitted (they learn nothing from rows)

    def fit_prefix(self, best: Pipeline):
        """Fit ``best``'s preprocessing as the refit on all rows: its leading steps are
        :attr:`head`'s, its Standardizer is fitted on every row of :attr:`X` (so ``best``'s
        input is not read again: it may be :attr:`X` itself). Returns the Standardizer's
        affine map, or None."""
        steps = best.steps[:-1]
        head = [] if self.head is None else self.head.steps
        for (name, _), (_, fitted) in zip(steps, head):
            best.set_params(**{name: fitted})
        if self.scaler is None:
            return None
        scaler = fit_rows(clone(self.scaler), self.X, self.y, np.arange(len(self.X)))
        name = [name for name, step in steps[len(head):] if step != "passthrough"][0]
        best.set_params(**{name: scaler.steps[0][1]})
        return affine(scaler)


def fold_ordered(X, y, splits, head: Pipeline | None, scaler: Pipeline | None, dtype,
                 copy_X: bool = True) -> SharedRows:
    """The :class:`SharedRows` of ``X`` for ``splits`` (each fold's held-out rows made one run)
    through the unfitted leading steps ``head`` (None: ``X`` itself, when it can be read as
    it is). Without ``copy_X``, a ``head`` that keeps ``X``'s width and dtype is applied to
    ``X`` itself (its rows put in fold order first), not to a copy."""
    splits = [(np.sort(train), np.sort(test)) for train, test in splits]
    if head is None and X.dtype in (np.float32, np.int8) and X.flags.c_contiguous:
        return SharedRows(X, y, splits, scaler)
    order = np.concatenate([test for _, test in splits])
    if len(order) == len(X) and np.array_equal(np.sort(order), np.arange(len(X))):
        bounds = np.cumsum([0, *(len(test) for _, test in splits)])
        positions = np.arange(len(X))
        splits = [(np.concatenate([positions[:start], positions[stop:]]), positions[start:stop])
                  for start, stop in zip(bounds[:-1], bounds[1:])]
    else:  # the test rows do not partition X (a custom splitter): gather in X's order
        order = np.arange(len(X))
    if head is None:
        return SharedRows(transform_rows(None, X, order, dtype), y[order], splits, scaler)
    head = fit_rows(head, X, y, order)
    rows = None if copy_X else _transform_in_place(head, X, order, dtype)
    if rows is None:
        rows = transform_rows(head, X, order, dtype)
    return SharedRows(rows, y[order], splits, scaler, head)


def _transform_in_place(head: Pipeline, X: np.ndarray, order: np.ndarray, dtype):
    """``transform_rows(head, X, order, dtype)`` written over ``X`` itself (returned), or None
    (``X`` untouched) when the rows would change width or dtype."""
    if not (X.flags.c_contiguous and X.flags.writeable and X.dtype == dtype and len(X)) \
            or head.transform(X[:1]).shape[1] != X.shape[1]:
        return None
    _permute_rows(X, order)
    for start in range(0, len(X), CHUNK_ROWS):  # the steps are row-wise: a block needs itself
        block = np.arange(start, min(start + CHUNK_ROWS, len(X)))
        X[block] = transform_rows(head, X, block, dtype)
    return X


def _permute_rows(X: np.ndarray, order: np.ndarray) -> None:
    """``X[:] = X[order]`` with one row of scratch memory (along the permutation's cycles)."""
    saved = np.empty_like(X[0])
    done = np.zeros(len(order), dtype=bool)
    for start in np.flatnonzero(order != np.arange(len(order))):
        if done[start]:
            continue
        saved[:] = X[start]
        here = start
        while (source := int(order[here])) != start:
            X[here] = X[source]
            done[here] = True
            here = source
        X[here] = saved
        done[here] = True
