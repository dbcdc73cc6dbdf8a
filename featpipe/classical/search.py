"""Hyper-parameter search over featpipe pipelines, with input checks and a preprocessing cache.

:func:`run_search` wraps :class:`~sklearn.model_selection.GridSearchCV` (or
``HalvingGridSearchCV``) with stratified, shuffled k-fold splits. With ``cache_dir`` the
pipeline's fitted transformers are cached by :class:`joblib.Memory`, so a grid that only
changes ``clf__*`` parameters fits each fold's preprocessing (standardization,
discretization, PCA, UMAP) once instead of once per grid point.

The cache is not free: joblib hashes every step's input and writes every step's output to
disk. Measured on 2000 x 3120 float32 (3 folds, 4 values of C, 2 CPU cores): standardize +
discretize cost ~40 ms per fit while hashing + storing a step's output costs ~70-100 ms, so
caching the ``fne`` recipe made the search ~35 % slower (14.9 s -> 20.3 s cold, 17.5 s
warm); caching PCA(256) made ``pca-svm`` ~2x faster (56.4 s -> 29.4 s cold, 11.7 s warm).
Hence ``cache="auto"`` caches only pipelines with a ``reduce`` step.

:func:`featpipe.classical.fastsearch.run_fast_search` is the faster default for grids over
``clf__C`` of LinearSVC / LogisticRegression pipelines; this module's :func:`run_search` is the
plain ``GridSearchCV`` (``method="grid"``) and the fallback for every other grid.

:func:`search` is the one entry point: a :class:`SearchConfig` says which of the three searches
(``"fast"``, ``"grid"``, ``"halving"``) runs and with which options.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from featpipe.classical.tuning import (
    convergence_note,
    counting_convergence,
    extend_at_edges,
    progress_bar,
)
from featpipe.classical.validation import (
    CV_CONSTRAINT,
    SCORINGS,
    _n_splits,
    validate_training_data,
)
from featpipe.errors import FeatpipeError
from featpipe.params import Interval, Options, validate

SEARCH_METHODS = ("fast", "grid", "halving")
DEFAULT_PATIENCE = 2
DEFAULT_COARSE_STEP = 4
#: Declared constraints of the search options (:class:`SearchConfig`, :func:`run_search`,
#: :func:`~featpipe.classical.fastsearch.run_fast_search`).
SEARCH_CONSTRAINTS = {
    "method": [Options(SEARCH_METHODS)],
    "cv": CV_CONSTRAINT,
    "scoring": [Options(SCORINGS)],
    "n_jobs": [int, None],
    "halving": ["boolean"],
    "random_state": [int, np.random.RandomState, None],
    "cache_dir": [str, Path, None],
    "cache": ["boolean", Options(("auto",))],
    "patience": [Interval(int, 1, None), None],
    "coarse_step": [Interval(int, 1, None)],
    "search_tol": [Interval(float, 0, None, closed="neither"), None],
    "verbose": [int, "boolean"],
    "extend_grid": ["boolean"],
    "progress": ["boolean"],
    "copy_X": ["boolean"],
}


@dataclass(frozen=True)
class SearchConfig:
    """How :func:`search` tunes a pipeline's grid by cross-validation.

    Parameters
    ----------
    method : {"fast", "grid", "halving"}, default="fast"
        ``"fast"``: :func:`~featpipe.classical.fastsearch.run_fast_search` (C path with the
        preprocessing once per fold; other grids fall back to a full grid search);
        ``"grid"``: ``GridSearchCV``; ``"halving"``: ``HalvingGridSearchCV`` (factor 3).
    cv : int or CV splitter, default=5
        Number of stratified shuffled folds (at least 2), or a scikit-learn splitter.
    scoring : {"accuracy", "balanced_accuracy"}, default="accuracy"
    n_jobs : int or None, default=None
        Parallel jobs. None: the fast search fits the folds in one thread per core (threads
        share ``X``: nothing is copied), the grid and halving searches run in this process.
    random_state : int or None, default=0
        Shuffles the folds (and seeds the halving search).
    cache_dir : str or Path, default=None
        Cache fitted transformers there with ``joblib.Memory`` (grid and halving searches);
        None: a private temporary folder serves the one search (see :func:`run_search`).
    cache : bool or "auto", default="auto"
        Whether to cache ("auto": only pipelines with a ``reduce`` step).
    patience, coarse_step : int
        The fast search's early stop and coarse-to-fine step (see its module notes).
    verbose : int, default=0
    extend_grid : bool, default=True
        When the best C (or alpha) is at an edge of its grid, evaluate values a decade further
        out (see :mod:`featpipe.classical.tuning`).
    progress : bool, default=False
        A progress bar over the candidate fits on stderr (ticks per fit with ``n_jobs=1``).

    Examples
    --------
    >>> SearchConfig(method="grid", cv=3).cv
    3
    >>> SearchConfig(cv=1)
    Traceback (most recent call last):
    ...
    featpipe.params.InvalidParameterError: `cv` must be an int >= 2 or a CV splitter, got 1
    """

    method: Literal["fast", "grid", "halving"] = "fast"
    cv: object = 5
    scoring: str = "accuracy"
    n_jobs: int | None = None
    random_state: int | None = 0
    cache_dir: str | Path | None = None
    cache: bool | Literal["auto"] = "auto"
    patience: int | None = DEFAULT_PATIENCE
    coarse_step: int = DEFAULT_COARSE_STEP
    verbose: int = 0
    extend_grid: bool = True
    progress: bool = False

    def __post_init__(self):
        validate({f.name: getattr(self, f.name) for f in fields(self)}, SEARCH_CONSTRAINTS)


@dataclass
class SearchResult:
    """Outcome of :func:`run_search`.

    Attributes
    ----------
    best_estimator : Pipeline
        Refit on all training data with the best parameters (without the cache).
    best_params : dict
    best_score : float
        Mean cross-validated score of the best parameters.
    cv_table : list of dict
        One row per candidate: ``params``, ``mean_test_score``, ``std_test_score``,
        ``mean_fit_time``, ``rank`` (plus ``iter`` and ``n_resources`` for halving search).
    fit_seconds : float
        Wall time of the whole search, refit included.
    refit_seconds : float
        Wall time of the final refit.
    scoring : str
    n_splits : int
    extra : dict
        Search-specific notes (e.g. what a specialised search decided), JSON-serializable.
    """

    best_estimator: Pipeline
    best_params: dict
    best_score: float
    cv_table: list[dict]
    fit_seconds: float
    refit_seconds: float = 0.0
    scoring: str = "accuracy"
    n_splits: int = 5
    extra: dict = field(default_factory=dict)


def _check_grid(pipeline: Pipeline, param_grid: Mapping[str, Sequence]) -> dict[str, list]:
    valid = pipeline.get_params(deep=True)
    grid = {}
    for name, values in param_grid.items():
        if name not in valid:
            steps = ", ".join(step for step, _ in pipeline.steps)
            raise FeatpipeError(
                f"grid parameter {name!r} does not exist in this pipeline (steps: {steps}); "
                "use step__param names, e.g. clf__C"
            )
        if isinstance(values, str) or not isinstance(values, (Sequence, np.ndarray)):
            values = [values]
        values = list(values)
        if not values:
            raise FeatpipeError(f"grid parameter {name!r} has no values; give at least one")
        grid[name] = values
    return grid


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)


def _cv_table(cv_results: Mapping) -> list[dict]:
    rows = []
    for i, params in enumerate(cv_results["params"]):
        row = {
            "params": {k: _jsonable(v) for k, v in params.items()},
            "mean_test_score": float(cv_results["mean_test_score"][i]),
            "std_test_score": float(cv_results["std_test_score"][i]),
            "mean_fit_time": float(cv_results["mean_fit_time"][i]),
            "rank": int(cv_results["rank_test_score"][i]),
        }
        for key in ("iter", "n_resources"):
            if key in cv_results:
                row[key] = int(cv_results[key][i])
        rows.append(row)
    return rows


@contextmanager
def invalid_grid_values():
    """Turn scikit-learn's ``InvalidParameterError`` (a bad grid value) into one line."""
    try:
        yield
    except ValueError as error:
        if isinstance(error, FeatpipeError) or type(error).__name__ != "InvalidParameterError":
            raise
        message = " ".join(str(error).split())
        raise FeatpipeError(f"invalid grid value: {message} Fix the `grid` values.") from None


def check_search_inputs(pipeline, param_grid, X, y, cv, scoring, class_names=None) -> dict:
    """Check scoring, data and grid of a search; return the grid with list values."""
    validate({"scoring": scoring}, SEARCH_CONSTRAINTS)
    validate_training_data(X, y, cv, class_names)
    return _check_grid(pipeline, param_grid)


def make_splitter(cv, random_state):
    """Stratified shuffled k-fold for an integer ``cv``, else ``cv`` itself (a splitter).

    Examples
    --------
    >>> make_splitter(3, random_state=0)
    StratifiedKFold(n_splits=3, random_state=0, shuffle=True)
    """
    n_splits = _n_splits(cv)
    if isinstance(cv, numbers.Integral):
        return StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
    return cv


def _make_search(pipeline, grid, *, cv, scoring, n_jobs, halving, random_state, verbose):
    common = dict(
        scoring=scoring, cv=cv, n_jobs=n_jobs, refit=True, verbose=verbose, error_score="raise"
    )
    if not halving:
        return GridSearchCV(pipeline, grid, **common)
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingGridSearchCV

    return HalvingGridSearchCV(pipeline, grid, factor=3, random_state=random_state, **common)


def run_search(
    pipeline: Pipeline,
    param_grid: Mapping[str, Sequence],
    X,
    y,
    *,
    cv: int = 5,
    scoring: str = "accuracy",
    n_jobs: int | None = 1,
    halving: bool = False,
    random_state: int | None = 0,
    cache_dir: str | Path | None = None,
    cache: bool | str = "auto",
    verbose: int = 0,
    class_names: Sequence[str] | None = None,
    on_fit: Callable[[int], object] | None = None,
) -> SearchResult:
    """Cross-validated grid search over a pipeline, with stratified shuffled folds.

    Parameters
    ----------
    pipeline : Pipeline
        E.g. from :func:`featpipe.classical.recipes.build_recipe`; it is cloned, not modified.
    param_grid : dict of str to list
        ``step__param`` names; an empty grid cross-validates the pipeline as is.
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,)
    cv : int, default=5
        Number of stratified folds (shuffled with ``random_state``).
    scoring : {"accuracy", "balanced_accuracy"}, default="accuracy"
    n_jobs : int or None, default=1
    halving : bool, default=False
        Use successive halving (``HalvingGridSearchCV``, factor 3) instead of a full grid.
    random_state : int or None, default=0
    cache_dir : str or Path, default=None
        Cache fitted transformers there with ``joblib.Memory`` (e.g. ``"cache/"``). joblib
        stores pickles, which run code when loaded, so the folder must be private
        (:func:`featpipe.fileio.private_folder`: the user's own, writable by nobody else)
        and must never receive files from elsewhere. None (the default): a private
        temporary folder serves this search only and is removed after it — nothing on disk
        outlives the run, at the price of recomputing in the next one.
    cache : bool or "auto", default="auto"
        Whether to cache: "auto" caches only pipelines with a ``reduce`` step, the only
        preprocessing expensive enough to beat the hashing cost (see module notes).
    verbose : int, default=0
    class_names : sequence of str, default=None
        Names used in error messages.
    on_fit : callable, optional
        Called with 1 after each scored fit (progress; only with ``n_jobs=1``, where the
        fits run in this process).

    Returns
    -------
    SearchResult

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from featpipe.classical.recipes import build_recipe
    >>> X, y = load_iris(return_X_y=True)
    >>> pipe, _ = build_recipe("linear-probe")
    >>> result = run_search(pipe, {"clf__C": [0.1, 1.0]}, X, y, cv=3)
    >>> result.best_score > 0.9
    True
    """
    validate(dict(n_jobs=n_jobs, halving=halving, random_state=random_state,
                  cache_dir=cache_dir, cache=cache, verbose=verbose), SEARCH_CONSTRAINTS)
    grid = check_search_inputs(pipeline, param_grid, X, y, cv, scoring, class_names)
    n_splits = _n_splits(cv)
    splitter = make_splitter(cv, random_state)

    pipeline = clone(pipeline)
    cached = _use_cache(pipeline, cache)
    with _cache_folder(cache_dir if cached else False) as location:
        if location is not None:
            from joblib import Memory

            pipeline.set_params(memory=Memory(location=str(location), verbose=0))
        search = _make_search(
            pipeline,
            grid,
            cv=splitter,
            scoring=_ticking(scoring, on_fit) if on_fit is not None and n_jobs in (None, 1)
            else scoring,
            n_jobs=n_jobs,
            halving=halving,
            random_state=random_state,
            verbose=verbose,
        )
        start = time.perf_counter()
        with invalid_grid_values():
            search.fit(X, y)
        fit_seconds = time.perf_counter() - start

    best = search.best_estimator_
    best.set_params(memory=None)  # fitted steps stay; a Memory object is not worth persisting
    return SearchResult(
        best_estimator=best,
        best_params={k: _jsonable(v) for k, v in search.best_params_.items()},
        best_score=float(search.best_score_),
        cv_table=_cv_table(search.cv_results_),
        fit_seconds=fit_seconds,
        refit_seconds=float(getattr(search, "refit_time_", 0.0)),
        scoring=scoring,
        n_splits=n_splits,
        extra={"search": "grid",
               "cache": None if not cached else str(cache_dir) if cache_dir else "temporary"},
    )


@contextmanager
def _cache_folder(cache_dir):
    """The verified private ``cache_dir``, a private temporary folder (``cache_dir`` None)
    removed afterwards, or None (``cache_dir`` False: no cache)."""
    if cache_dir is False:
        yield None
    elif cache_dir is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="featpipe-cache-") as folder:  # 0700
            yield Path(folder)
    else:
        from featpipe.fileio import private_folder

        yield private_folder(cache_dir)


def _ticking(scoring: str, tick: Callable[[int], object]):
    """The scorer ``scoring`` names, calling ``tick(1)`` after each use (one per fit)."""
    from sklearn.metrics import get_scorer

    scorer = get_scorer(scoring)

    def score(estimator, X, y):
        value = scorer(estimator, X, y)
        tick(1)
        return value

    return score


def _use_cache(pipeline: Pipeline, cache) -> bool:
    if cache is False:
        return False
    return cache is True or "reduce" in pipeline.named_steps


def search(
    pipeline: Pipeline,
    param_grid: Mapping[str, Sequence],
    X,
    y,
    config: SearchConfig | None = None,
    *,
    class_names: Sequence[str] | None = None,
    copy_X: bool = True,
) -> SearchResult:
    """Tune ``pipeline`` over ``param_grid`` with the search ``config`` names.

    The one dispatcher over the fast C search, ``GridSearchCV`` and ``HalvingGridSearchCV``;
    ``SearchResult.extra["search"]`` records which search ran (the fast search hands grids it
    cannot walk to the grid search).

    Parameters
    ----------
    pipeline : Pipeline
        E.g. from :func:`~featpipe.classical.recipes.build_recipe`; cloned, not modified.
    param_grid : dict of str to list
        ``step__param`` names and their candidate values.
    X : array of shape (n_samples, n_features)
    y : array of shape (n_samples,)
    config : SearchConfig, default=None
        None: ``SearchConfig()`` (fast search, 5 folds, accuracy).
    class_names : sequence of str, default=None
        Names used in error messages.
    copy_X : bool, default=True
        False lets the fast search overwrite ``X`` with its preprocessed rows instead of
        holding a copy beside it (:func:`~featpipe.classical.fastsearch.run_fast_search`):
        for a caller that will not use ``X`` again.

    Returns
    -------
    SearchResult

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from featpipe.classical.recipes import build_recipe
    >>> X, y = load_iris(return_X_y=True)
    >>> pipe, _ = build_recipe("linear-probe")
    >>> result = search(pipe, {"clf__C": [0.1, 1.0]}, X, y, SearchConfig(method="grid", cv=3))
    >>> result.extra["search"], result.best_score > 0.9
    ('grid', True)
    """
    config = SearchConfig() if config is None else config
    validate({"config": config}, {"config": [SearchConfig]})
    validate({"copy_X": copy_X}, SEARCH_CONSTRAINTS)
    grid = _check_grid(pipeline, param_grid)
    from featpipe.classical.closedform import closed_form_search, tunes_itself

    if not grid and tunes_itself(pipeline):
        validate_training_data(X, y, config.cv, class_names)
        return closed_form_search(pipeline, X, y, config, SearchResult)
    n_splits, n_fits = _n_splits(config.cv), 0
    n_candidates = int(np.prod([len(v) for v in grid.values()]))
    reuse = {}  # what the runs of an extended grid share
    with counting_convergence() as converged, \
            progress_bar(config.progress, n_candidates * n_splits) as tick:
        def run(candidates):
            nonlocal n_fits  # an upper bound: the fast search may skip candidates
            n_fits += int(np.prod([len(v) for v in candidates.values()])) * n_splits + 1
            return _dispatch(pipeline, candidates, X, y, config, class_names, tick,
                             copy_X=copy_X, reuse=reuse)

        result = run(grid)
        if config.extend_grid:
            result = extend_at_edges(result, grid, run)
    result.extra["convergence"] = {
        "fits_at_iteration_limit": converged["n"], "fits": n_fits,
        "note": convergence_note(converged["n"], n_fits,
                                 pipeline.get_params().get("clf__max_iter"))}
    return result


def _dispatch(pipeline, grid, X, y, config: SearchConfig, class_names, tick, **fast,
              ) -> SearchResult:
    options = dict(cv=config.cv, scoring=config.scoring, n_jobs=config.n_jobs,
                   random_state=config.random_state, cache_dir=config.cache_dir,
                   cache=config.cache, verbose=config.verbose, class_names=class_names,
                   on_fit=tick)
    if config.method == "fast":
        from featpipe.classical.fastsearch import run_fast_search

        return run_fast_search(pipeline, grid, X, y, patience=config.patience,
                               coarse_step=config.coarse_step, **fast, **options)
    return run_search(pipeline, grid, X, y, halving=config.method == "halving", **options)
