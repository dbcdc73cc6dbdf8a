"""Orderings of the training examples: curriculum (easy first), anti-curriculum (hard first) and
random — the controls the literature requires — optionally class-balanced in every prefix.

Scores are *easiness*: higher is easier (a probability of the true class, say). Equal scores are
broken by a seeded shuffle, never by input order (folder sources list images class by class).

Examples
--------
>>> import numpy as np
>>> scores = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3])
>>> labels = np.array([0, 0, 0, 1, 1, 1])
>>> order_examples(scores, labels, ordering="curriculum", balanced=False).tolist()
[0, 2, 4, 5, 3, 1]
>>> order_examples(scores, labels, ordering="curriculum").tolist()   # classes alternate
[0, 4, 2, 5, 3, 1]
>>> order_examples(scores, labels, ordering="anti").tolist()
[1, 3, 5, 2, 4, 0]
"""

from __future__ import annotations

import numpy as np

from featpipe.errors import FeatpipeError
from featpipe.params import Options, validate

__all__ = ["ORDERINGS", "balance_classes", "order_examples"]

ORDERINGS = ("curriculum", "anti", "random")


def order_examples(scores, labels=None, *, ordering: str = "curriculum", balanced: bool = True,
                   seed: int = 0) -> np.ndarray:
    """Positions of the examples, in the order a curriculum introduces them.

    Parameters
    ----------
    scores : array-like of shape (n,)
        Easiness of each example (higher is easier); finite. Ignored by ``"random"``.
    labels : array-like of shape (n,) of int, default=None
        Class of each example; needed when ``balanced``.
    ordering : {"curriculum", "anti", "random"}, default="curriculum"
        Easiest first, hardest first, or a seeded random permutation.
    balanced : bool, default=True
        Interleave the classes so that every prefix keeps each class's share of the data
        (:func:`balance_classes`); within a class the order is kept.
    seed : int, default=0
        Breaks ties between equal scores (and draws the random ordering).

    Returns
    -------
    ndarray of shape (n,), int64
        A permutation of ``range(n)``.
    """
    validate({"ordering": ordering, "balanced": balanced, "seed": seed},
             {"ordering": [Options(ORDERINGS)], "balanced": ["boolean"], "seed": [int]})
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or not len(scores):
        raise FeatpipeError(f"`scores` must be a non-empty 1-d array, got shape {scores.shape}")
    if ordering != "random" and not np.all(np.isfinite(scores)):
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise FeatpipeError(f"`scores` must be finite to order examples; position {bad} is "
                            f"{scores[bad]}")
    shuffled = np.random.default_rng(seed).permutation(len(scores))
    if ordering == "random":
        order = shuffled
    else:
        keys = -scores[shuffled] if ordering == "curriculum" else scores[shuffled]
        order = shuffled[np.argsort(keys, kind="stable")]
    if not balanced:
        return order.astype(np.int64)
    if labels is None:
        raise FeatpipeError("a class-balanced ordering needs the examples' `labels`")
    labels = np.asarray(labels)
    if labels.shape != scores.shape:
        raise FeatpipeError(f"`labels` has shape {labels.shape}, `scores` {scores.shape}")
    return balance_classes(order, labels)


def balance_classes(order, labels) -> np.ndarray:
    """Interleave the classes of ``order`` so that every prefix holds each class in proportion.

    Tijdeman's solution of the chairman assignment problem (1980): at each position, among the
    classes at least ``1 / (2 (C - 1))`` examples below their share of the prefix so far
    (``k * n_c / n``), the one whose next example is due first contributes it (ties: the class
    whose next example comes first in ``order``). Within a class the order is kept. Every
    prefix of size ``k`` then holds each class ``c`` within ``1 - 1 / (2 (C - 1))`` examples of
    ``k * n_c / n`` — under one example.

    Examples
    --------
    >>> import numpy as np
    >>> balance_classes(np.arange(6), np.array([0, 0, 0, 0, 1, 1])).tolist()
    [0, 4, 1, 2, 5, 3]
    """
    order, labels = np.asarray(order, dtype=np.int64), np.asarray(labels)
    class_of = np.unique(labels[order], return_inverse=True)[1].ravel()
    n_classes = int(class_of.max()) + 1
    queues = [order[class_of == c] for c in range(n_classes)]
    sizes = np.array([len(q) for q in queues], dtype=np.float64)
    share = sizes / len(order)
    slack = 1 / (2 * (n_classes - 1)) if n_classes > 1 else 0.0
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    taken = np.zeros(n_classes, dtype=np.int64)
    balanced = np.empty(len(order), dtype=np.int64)
    for k in range(len(order)):
        eligible = ((k + 1) * share - taken >= slack - 1e-12) & (taken < sizes)
        due = np.where(eligible, (taken + 1 - slack) / share, np.inf)
        tied = np.flatnonzero(due == due.min())
        chosen = min(tied, key=lambda c: rank[queues[c][taken[c]]])
        balanced[k] = queues[chosen][taken[chosen]]
        taken[chosen] += 1
    return balanced
