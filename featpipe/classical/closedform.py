"""Search for pipelines whose classifier tunes itself in closed form (the ridge probe).

Such a classifier scores every regularisation value of every fold from one decomposition per
fold, so cross-validating it from outside (a grid search of one candidate) would repeat that
work k times. Instead the pipeline is fitted once: its preprocessing on every training row,
then the classifier's exact k-fold search over its own ``alphas`` (a preprocessing that is one
Standardizer is folded into that search, ``fit_rows``: no standardized copy of ``X``). (The preprocessing's
statistics therefore include each inner fold's validation rows; the test set is never seen.)
When the chosen alpha is at an edge of the grid, the grid grows a decade there and the fit is
repeated (at most :data:`~featpipe.classical.tuning.MAX_EXTENSIONS` times), as for every search.
"""

from __future__ import annotations

import numbers
import time

import numpy as np
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from featpipe.classical.chunked import fit_rows
from featpipe.classical.transformers import Standardizer
from featpipe.classical.tuning import MAX_EXTENSIONS

STEPS_PER_DECADE = 4


def tunes_itself(pipeline: Pipeline) -> bool:
    """True when the pipeline's classifier searches its own ``alphas`` by cross-validation."""
    params = pipeline.named_steps["clf"].get_params()
    return "alphas" in params and "cv" in params


def closed_form_search(pipeline: Pipeline, X, y, config, result_type):
    """Fit ``pipeline`` once with the classifier's own search, extending its grid at an edge;
    a ``result_type`` (:class:`~featpipe.classical.search.SearchResult`)."""
    pipeline = clone(pipeline)
    if isinstance(config.cv, numbers.Integral):
        pipeline.set_params(clf__cv=int(config.cv), clf__random_state=config.random_state)
    pipeline.set_params(clf__scoring=config.scoring)
    started = time.perf_counter()
    best = scored = _fit(pipeline, X, y)  # scored: the last fit, whose table has every alpha
    added, direction, failed = [], None, set()
    for _ in range(MAX_EXTENSIONS if config.extend_grid else 0):
        clf = best.named_steps["clf"]
        direction = _direction(clf, failed)
        if direction is None:
            break
        new = _decade_beyond(clf.alphas_, direction)
        added += new.tolist()
        scored = _fit(clone(best).set_params(clf__alphas=sorted([*clf.alphas_, *new])), X, y)
        if scored.named_steps["clf"].best_score_ > clf.best_score_:
            best = scored
        else:
            failed.add(direction)
    extra = {"search": "closed-form"}
    if added:
        extra["grid_extended"] = {"parameter": "clf__alphas", "added": added,
                                  "direction": direction,
                                  "reason": "the best value was at the edge of the grid"}
    clf = best.named_steps["clf"]
    return result_type(best_estimator=best, best_params={"clf__alpha": clf.alpha_},
                       best_score=clf.best_score_, cv_table=_table(scored.named_steps["clf"]),
                       fit_seconds=time.perf_counter() - started, refit_seconds=0.0,
                       scoring=config.scoring, n_splits=clf.cv_scores_.shape[1], extra=extra)


def _fit(pipeline: Pipeline, X, y) -> Pipeline:
    """``pipeline.fit(X, y)``; a prefix that is one Standardizer is folded into the classifier's
    fit (``fit_rows``: no standardized copy of ``X``)."""
    steps = [step for _, step in pipeline.steps[:-1] if step != "passthrough"]
    clf = pipeline.steps[-1][1]
    if not (isinstance(X, np.ndarray) and len(steps) == 1 and isinstance(steps[0], Standardizer)
            and hasattr(clf, "fit_rows")):
        return pipeline.fit(X, y)
    rows = np.arange(len(X))
    fit_rows(pipeline[:-1], X, y, rows)
    clf.fit_rows(X, y, None, steps[0].affine())
    return pipeline


def _direction(clf, failed: set) -> str | None:
    """The edge of ``clf.alphas_`` where its best score sits (the ridge probe breaks ties
    towards large alphas, so a plateau reaching both edges is tried upwards, then down)."""
    means = clf.cv_scores_.mean(axis=1)
    for direction, edge in (("above", -1), ("below", 0)):
        if means[edge] == clf.best_score_ and direction not in failed:
            return direction
    return None


def _decade_beyond(alphas: np.ndarray, direction: str) -> np.ndarray:
    """One more decade of alphas below the smallest or above the largest, as spaced as
    the default grid."""
    steps = (10.0 ** (1 / STEPS_PER_DECADE)) ** np.arange(1, STEPS_PER_DECADE + 1)
    return alphas[0] / steps[::-1] if direction == "below" else alphas[-1] * steps


def _table(clf) -> list[dict]:
    table = [{"params": {"clf__alpha": float(a)}, "mean_test_score": float(s.mean()),
              "std_test_score": float(s.std()), "mean_fit_time": None}
             for a, s in zip(clf.alphas_, clf.cv_scores_)]
    ranks = rankdata([-row["mean_test_score"] for row in table], method="min")
    for row, rank in zip(table, ranks):
        row["rank"] = int(rank)
    return table
