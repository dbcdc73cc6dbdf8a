"""Scoring functions: how easy each training image is (higher is easier), by name.

- ``transfer``: the probability that a featpipe pipeline over pretrained features gives each
  image's true class, out of fold (Hacohen & Weinshall 2019's transfer scoring);
- ``self-taught``: the same, from a network trained briefly on the images themselves;
- ``random``: seeded uniform scores (the control);
- ``column:NAME``: a user's own numeric column of the manifest (higher is easier).

Out of fold means ``cross_val_predict`` style: the images are split into stratified folds and
each fold is scored by a model fitted (and tuned) on the other folds only, so no image's label
ever enters its own score.

Scorers live in a registry, as timm's models do: ``create_scorer("transfer", cv=5)``,
``list_scorers()``, and ``@register_scorer("name")`` for a new one.

Examples
--------
>>> list_scorers()
['column', 'random', 'self-taught', 'transfer']
>>> from featpipe.data import from_arrays
>>> images = from_arrays(np.zeros((4, 8, 8), np.uint8), labels=[0, 1, 0, 1])
>>> create_scorer("random").score(images, seed=0).round(2).tolist()
[0.64, 0.27, 0.04, 0.02]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from featpipe.data.imageset import ImageSet
from featpipe.errors import FeatpipeError
from featpipe.params import Interval, validate

__all__ = ["ColumnScorer", "RandomScorer", "SCORERS", "Scorer", "SelfTaughtScorer",
           "create_scorer", "list_scorers", "out_of_fold_proba", "register_scorer",
           "true_class_scores"]

SCORERS: dict[str, type] = {}
_FOLDS = [Interval(int, 2, None)]


def register_scorer(name: str):
    """Class decorator adding a :class:`Scorer` to :data:`SCORERS` under ``name``."""
    def add(cls):
        if name in SCORERS:
            raise ValueError(f"scorer {name!r} is already registered")
        SCORERS[name] = cls
        return cls
    return add


def list_scorers() -> list[str]:
    """The registered scorers' names (``column`` is used as ``column:NAME``)."""
    _register_transfer()
    return sorted(SCORERS)


def create_scorer(name: str, **options) -> Scorer:
    """The scorer called ``name`` (``"column:NAME"`` reads the manifest column NAME), built with
    ``options``.

    Examples
    --------
    >>> create_scorer("column:difficulty").column
    'difficulty'
    >>> create_scorer("confidence")
    Traceback (most recent call last):
    ...
    featpipe.errors.FeatpipeError: unknown curriculum scoring 'confidence'; use column:NAME, random, self-taught or transfer
    """
    _register_transfer()
    kind, colon, column = str(name).partition(":")
    if kind == "column":
        if not colon or not column:
            raise FeatpipeError("column scoring needs a column name: column:NAME")
        return ColumnScorer(column, **options)
    if kind not in SCORERS or colon:
        known = ["column:NAME", *(n for n in sorted(SCORERS) if n != "column")]
        raise FeatpipeError(f"unknown curriculum scoring {name!r}; use "
                            f"{', '.join(known[:-1])} or {known[-1]}")
    return SCORERS[kind](**options)


def _register_transfer() -> None:
    """The transfer scorer's module registers itself on import (it pulls in the classical
    stage, so only when a scorer is asked for)."""
    import featpipe.curriculum.transfer  # noqa: F401


class Scorer:
    """Base class: ``score(images, seed=...)`` -> easiness of each image (higher is easier)."""

    def score(self, images: ImageSet, *, seed: int = 0) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


@register_scorer("random")
class RandomScorer(Scorer):
    """Uniform random scores from ``seed``: a curriculum in random order (the control)."""

    def score(self, images: ImageSet, *, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).random(len(images))


@register_scorer("column")
class ColumnScorer(Scorer):
    """A numeric column of the manifest, higher meaning easier (negate a difficulty).

    Parameters
    ----------
    column : str
        The column's name in the manifest header.

    Examples
    --------
    >>> from featpipe.data import ImageSet
    >>> images = ImageSet(["a", "b"], ["a", "b"], None, None, None, "manifest",
    ...                   columns={"easy": ["0.5", ""]})
    >>> ColumnScorer("easy").score(images)
    Traceback (most recent call last):
    ...
    featpipe.errors.FeatpipeError: manifest column 'easy' is empty for 'b'; give every image a number
    """

    def __init__(self, column: str):
        self.column = column

    def score(self, images: ImageSet, *, seed: int = 0) -> np.ndarray:
        if self.column not in images.columns:
            have = ", ".join(images.columns) or "none besides path, label, split"
            raise FeatpipeError(f"the source has no manifest column '{self.column}' (other "
                                f"columns: {have}); give a CSV manifest with that column")
        scores = np.empty(len(images), dtype=np.float64)
        for position, (image_id, text) in enumerate(zip(images.ids,
                                                        images.columns[self.column])):
            scores[position] = _number(text, self.column, image_id)
        return scores


def _number(text: str, column: str, image_id: str) -> float:
    if not text.strip():
        raise FeatpipeError(f"manifest column '{column}' is empty for '{image_id}'; give every "
                            "image a number")
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise FeatpipeError(f"manifest column '{column}' holds {text!r} for '{image_id}', not "
                            "a finite number")
    return value


@register_scorer("self-taught")
class SelfTaughtScorer(Scorer):
    """Scores from a network trained briefly on the images themselves, out of fold.

    Parameters
    ----------
    train_and_predict : callable, default=None
        ``train_and_predict(train, held_out, seed)`` trains a network on the ImageSet ``train``
        and returns its class probabilities for the ImageSet ``held_out``, shape
        ``(len(held_out), len(train.class_names))``. The fine-tuning workflow provides one
        (:func:`featpipe.workflows.curriculum.self_taught_trainer`); None is refused when
        scoring.
    cv : int, default=3
        Folds: each fold is scored by a network that never saw it.
    """

    def __init__(self, train_and_predict: Callable | None = None, cv: int = 3):
        self.train_and_predict = train_and_predict
        self.cv = cv

    def score(self, images: ImageSet, *, seed: int = 0) -> np.ndarray:
        validate({"cv": self.cv}, {"cv": _FOLDS})
        if self.train_and_predict is None:
            raise FeatpipeError("self-taught scoring needs a short training run to score with "
                                "(train_and_predict); featpipe.workflows.curriculum gives one")
        labels = _labels_of(images, "self-taught")

        def fit_predict(train, held_out):
            train_set, held_set = images.subset(train), images.subset(held_out)
            proba = np.asarray(self.train_and_predict(train_set, held_set, seed))
            columns = [images.class_names.index(c) for c in train_set.class_names]
            full = np.zeros((len(held_out), len(images.class_names)))
            full[:, columns] = proba
            return full

        proba = out_of_fold_proba(fit_predict, labels, len(images.class_names), cv=self.cv,
                                  seed=seed)
        return true_class_scores(proba, labels)


def _labels_of(images: ImageSet, scoring: str) -> np.ndarray:
    if images.labels is None:
        raise FeatpipeError(f"{scoring} scoring needs labelled images (a class-per-folder "
                            "directory or a manifest with labels)")
    return images.label_indices()


def out_of_fold_proba(fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], labels,
                      n_classes: int, *, cv=5, seed: int = 0) -> np.ndarray:
    """Class probabilities of every example from models that never saw it.

    Parameters
    ----------
    fit_predict : callable
        ``fit_predict(train_positions, held_out_positions)`` fits on the first and returns the
        probabilities of the second, shape ``(len(held_out), n_classes)``.
    labels : array-like of shape (n,) of int in ``0..n_classes-1``
    n_classes : int
    cv : int or CV splitter, default=5
        An int: ``StratifiedKFold(cv, shuffle=True, random_state=seed)``.
    seed : int, default=0

    Returns
    -------
    ndarray of shape (n, n_classes)

    Examples
    --------
    >>> labels = np.array([0, 1] * 3)
    >>> def fit_predict(train, held_out):  # predicts the training majority class
    ...     share = np.bincount(labels[train], minlength=2) / len(train)
    ...     return np.tile(share, (len(held_out), 1))
    >>> out_of_fold_proba(fit_predict, labels, 2, cv=3).tolist()[0]
    [0.5, 0.5]
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    splitter = (StratifiedKFold(cv, shuffle=True, random_state=seed) if isinstance(cv, int)
                else cv)
    proba = np.full((len(labels), n_classes), np.nan)
    for train, held_out in splitter.split(np.zeros((len(labels), 1)), labels):
        proba[held_out] = fit_predict(train, held_out)
    if np.isnan(proba).any():
        raise FeatpipeError("the cross-validation folds left some examples unscored; use a "
                            "splitter whose test folds cover every example")
    return proba


def true_class_scores(proba: np.ndarray, labels) -> np.ndarray:
    """Each row's probability of its own label: the easiness score.

    >>> true_class_scores(np.array([[0.9, 0.1], [0.3, 0.7]]), [0, 0]).tolist()
    [0.9, 0.3]
    """
    labels = np.asarray(labels)
    return proba[np.arange(len(labels)), labels]
