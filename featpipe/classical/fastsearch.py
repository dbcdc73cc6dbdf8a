"""Fast cross-validated search of ``clf__C``: the default search of the linear recipes.

:func:`run_fast_search` returns the same :class:`~featpipe.classical.search.SearchResult` as
:func:`~featpipe.classical.search.run_search` and scores a candidate exactly as ``GridSearchCV`` does
(mean test score over the same stratified shuffled folds; on ties the first best, i.e. the
smallest C, wins), but it

1. fits and applies each fold's preprocessing (select, standardize, discretize, L2, PCA ...)
   once, not once per C;
2. walks C in increasing order, warm-starting ``LogisticRegression`` and featpipe's L-BFGS
   SVM (:class:`~featpipe.classical.linear.LBFGSLinearSVC`, the recipes' default) from the
   previous C's coefficients (liblinear, behind scikit-learn's ``LinearSVC``, has no warm
   start; its dual/primal choice is ``dual="auto"``: dual when features outnumber samples);
3. stops the walk when ``patience`` successive C values have not beaten the best mean score
   (large C values are the slow ones and rarely help once the score has peaked);
4. searches long grids coarse-to-fine: every ``coarse_step``-th value first, then the values
   between the best coarse value's neighbours (the linear probe's 45 values cost ~12 fits);
5. runs the folds of one C in parallel threads (``n_jobs``; liblinear and BLAS release the GIL,
   so no data is copied to worker processes).

Steps 3 and 4 are heuristics: they skip candidates, so they can miss a better C that a full
grid would find after a dip of the CV score. ``patience=None, coarse_step=1`` evaluates every
candidate. Grids over anything but ``clf__C``, classifiers without warm-startable or liblinear
solvers, and non-NumPy inputs are searched by :func:`~featpipe.classical.search.run_search` instead;
``SearchResult.extra["search"]`` says which search ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from featpipe.classical.search import (
    DEFAULT_COARSE_STEP,
    DEFAULT_PATIENCE,
    SEARCH_CONSTRAINTS,
    SearchResult,
    check_search_inputs,
    invalid_grid_values,
    make_splitter,
    run_search,
)
from featpipe.params import validate

PARAM = "clf__C"


# Grids up to this long are walked value by value; longer ones coarse-to-fine.
MAX_FINE_GRID = 10


def fast_search_applies(pipeline: Pipeline, param_grid: Mapping[str, Sequence], X=None):
    """Why :func:`run_fast_search` cannot search this pipeline, or None when it can.

    Parameters
    ----------
    pipeline : Pipeline
    param_grid : dict of str to list
    X : array, default=None
        Training features (fast search needs a NumPy array).

    Returns
    -------
    str or None

    Examples
    --------
    >>> from featpipe.classical.recipes import build_recipe
    >>> pipe, grid = build_recipe("fne")
    >>> fast_search_applies(pipe, grid) is None
    True
    >>> fast_search_applies(*build_recipe("umap-knn"))
    'the grid tunes clf__n_neighbors, not only clf__C'
    """
    if set(param_grid) != {PARAM}:
        return f"the grid tunes {', '.join(param_grid) or 'nothing'}, not only {PARAM}"
    clf = pipeline.steps[-1][1]
    if not isinstance(clf, (LinearSVC, LogisticRegression, *_warm_startable())):
        return f"{type(clf).__name__} is not a linear SVM or logistic regression"
    if X is not None and not isinstance(X, np.ndarray):
        return f"the features are a {type(X).__name__}, not a NumPy array"
    return None


@dataclass
class _Fold:
    """One fold's preprocessed data and its classifier (kept for warm starts)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    clf: object

    def score(self, C: float, scorer: Callable) -> tuple[float, float]:
        """Fit the classifier at ``C``; return (test score, fit seconds)."""
        self.clf.set_params(C=C)
        started = time.perf_counter()
        self.clf.fit(self.X_train, self.y_train)
        seconds = time.perf_counter() - started
        return float(scorer(self.clf, self.X_test, self.y_test)), seconds


def _warm_startable() -> tuple[type, ...]:
    from featpipe.classical.linear import LBFGSLinearSVC, LBFGSLogisticRegression

    return LBFGSLinearSVC, LBFGSLogisticRegression


def _prepare_fold(pipeline: Pipeline, X, y, train, test) -> _Fold:
    clf = clone(pipeline.steps[-1][1])
    if isinstance(clf, (LogisticRegression, *_warm_startable())):
        clf.set_params(warm_start=True)
    X_train, X_test = X[train], X[test]
    if len(pipeline.steps) > 1:
        preprocess = clone(pipeline[:-1])
        X_train = preprocess.fit_transform(X_train, y[train])
        X_test = preprocess.transform(X_test)
    if isinstance(clf, LinearSVC):  # liblinear copies anything else to float64 on every fit
        X_train = np.ascontiguousarray(X_train, dtype=np.float64)
    return _Fold(X_train, y[train], X_test, y[test], clf)


class _Path:
    """Mean CV scores of the C values evaluated so far, in evaluation order."""

    def __init__(self, folds, scorer, parallel, verbose, on_fit=None):
        self.folds, self.scorer, self.parallel, self.verbose = folds, scorer, parallel, verbose
        self.on_fit = on_fit or (lambda n: None)
        self.rows: dict[float, dict] = {}

    def mean(self, C: float) -> float:
        if C not in self.rows:
            results = self.parallel(delayed(fold.score)(C, self.scorer) for fold in self.folds)
            scores = np.array([score for score, _ in results])
            self.rows[C] = {
                "params": {PARAM: C},
                "mean_test_score": float(np.mean(scores)),
                "std_test_score": float(np.std(scores)),
                "mean_fit_time": float(np.mean([seconds for _, seconds in results])),
            }
            self.on_fit(len(self.folds))
            if self.verbose:
                print(f"[fast search] C={C:.4g}: {self.rows[C]['mean_test_score']:.4f}")
        return self.rows[C]["mean_test_score"]

    def walk(self, values: Sequence[float], patience: int | None) -> None:
        """Evaluate ``values`` in order until ``patience`` successive ones do not improve."""
        best, since_best = -math.inf, 0
        for C in values:
            score = self.mean(C)
            best, since_best = (score, 0) if score > best else (best, since_best + 1)
            if patience is not None and since_best >= patience:
                return

    def best(self) -> float:
        """The C of the highest mean score; the smallest such C on ties (as GridSearchCV)."""
        evaluated = sorted(self.rows)
        return evaluated[int(np.argmax([self.rows[C]["mean_test_score"] for C in evaluated]))]

    def table(self) -> list[dict]:
        evaluated = sorted(self.rows)
        ranks = rankdata([-self.rows[C]["mean_test_score"] for C in evaluated], method="min")
        return [{**self.rows[C], "rank": int(r)} for C, r in zip(evaluated, ranks)]


def _c_values(grid: Mapping[str, list]) -> list[float]:
    return sorted({float(C) for C in grid[PARAM]})


def _search_path(path: _Path, values: list[float], patience, coarse_step: int) -> None:
    if len(values) <= MAX_FINE_GRID or coarse_step <= 1:
        path.walk(values, patience)
        return
    path.walk(values[::coarse_step], patience)
    i = values.index(path.best())
    path.walk(values[max(0, i - coarse_step + 1) : i + coarse_step], None)


def run_fast_search(
    pipeline: Pipeline,
    param_grid: Mapping[str, Sequence],
    X,
    y,
    *,
    cv: int = 5,
    scoring: str = "accuracy",
    n_jobs: int | None = 1,
    random_state: int | None = 0,
    patience: int | None = DEFAULT_PATIENCE,
    coarse_step: int = DEFAULT_COARSE_STEP,
    verbose: int = 0,
    class_names: Sequence[str] | None = None,
    on_fit: Callable[[int], object] | None = None,
    **grid_options,
) -> SearchResult:
    """Cross-validated search of ``clf__C`` with preprocessing once per fold (see module notes).

    Parameters
    ----------
    pipeline : Pipeline
        Ending in a ``clf`` step; it is cloned, not modified.
    param_grid : dict
        ``{"clf__C": [...]}``; any other grid is handed to :func:`run_search`.
    X : ndarray of shape (n_samples, n_features)
    y : array of shape (n_samples,)
    cv : int or CV splitter, default=5
        Number of stratified folds (shuffled with ``random_state``), as :func:`run_search`.
    scoring : {"accuracy", "balanced_accuracy"}, default="accuracy"
    n_jobs : int or None, default=1
        Threads running the folds of one C.
    random_state : int or None, default=0
    patience : int or None, default=2
        Stop the walk up the C grid after this many values without improvement; None never
        stops.
    coarse_step : int, default=4
        Grids longer than 10 values are first evaluated on every ``coarse_step``-th value.
    verbose : int, default=0
    class_names : sequence of str, default=None
        Names used in error messages.
    on_fit : callable, optional
        Called with the number of fits done after each evaluated C (progress).
    **grid_options
        Passed to :func:`run_search` when the fast search does not apply (``halving``,
        ``cache_dir``, ``cache``).

    Returns
    -------
    SearchResult
        ``extra`` records the search (``"fast"``), the evaluated C values in order and the
        number of candidates.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from featpipe.classical.recipes import build_recipe
    >>> X, y = load_iris(return_X_y=True)
    >>> pipe, _ = build_recipe("linear-probe")
    >>> result = run_fast_search(pipe, {"clf__C": [0.1, 1.0, 10.0]}, X, y, cv=3)
    >>> result.extra["search"], result.best_score > 0.9
    ('fast', True)
    """
    validate(dict(patience=patience, coarse_step=coarse_step, n_jobs=n_jobs,
                  random_state=random_state, verbose=verbose), SEARCH_CONSTRAINTS)
    grid = check_search_inputs(pipeline, param_grid, X, y, cv, scoring, class_names)
    reason = fast_search_applies(pipeline, grid, X)
    if reason is not None:
        result = run_search(pipeline, grid, X, y, cv=cv, scoring=scoring, n_jobs=n_jobs,
                            random_state=random_state, verbose=verbose,
                            class_names=class_names, on_fit=on_fit, **grid_options)
        result.extra.update(search="grid", fast_search_skipped=reason)
        return result

    y = np.asarray(y)
    splits = list(make_splitter(cv, random_state).split(X, y))
    values = _c_values(grid)
    started = time.perf_counter()
    with Parallel(n_jobs=n_jobs, prefer="threads") as parallel, invalid_grid_values():
        folds = parallel(delayed(_prepare_fold)(pipeline, X, y, tr, te) for tr, te in splits)
        path = _Path(folds, get_scorer(scoring), parallel, verbose, on_fit)
        _search_path(path, values, patience, coarse_step)
        best_C = path.best()
        refit_started = time.perf_counter()
        best = clone(pipeline).set_params(**{PARAM: best_C}).fit(X, y)
    finished = time.perf_counter()
    return SearchResult(
        best_estimator=best,
        best_params={PARAM: best_C},
        best_score=path.rows[best_C]["mean_test_score"],
        cv_table=path.table(),
        fit_seconds=finished - started,
        refit_seconds=finished - refit_started,
        scoring=scoring,
        n_splits=len(splits),
        extra={"search": "fast", "evaluated": list(path.rows), "n_candidates": len(values),
               "patience": patience, "coarse_step": coarse_step},
    )

