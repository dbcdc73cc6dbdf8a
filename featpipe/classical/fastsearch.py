"""Fast cross-validated search of one classifier parameter: the default search of the recipes.

:func:`run_fast_search` returns the same :class:`~featpipe.classical.search.SearchResult` as
:func:`~featpipe.classical.search.run_search` and scores a candidate exactly as ``GridSearchCV`` does
(mean test score over the same stratified shuffled folds; on ties the first best, i.e. the
smallest C, wins), but it

1. fits each fold's preprocessing (select, standardize, discretize, L2, PCA ...) once, not
   once per C, streaming the fold's rows where the steps allow
   (:mod:`featpipe.classical.chunked`), and recomputes the fold's preprocessed rows, a block
   at a time, whenever a C is fitted: only the folds being fitted (one per thread) hold a
   copy of their rows, never all folds at once (recomputing costs a few percent of a fit).
   A prefix that cannot stream (PCA, UMAP) is fitted and applied once per fold instead: its
   output is small, and UMAP embeds its own training rows by ``fit_transform`` only. A lone
   PCA reads the fold's rows of ``X`` in place, a block at a time
   (:meth:`~featpipe.classical.transformers.ClippedPCA.fit_transform_rows`): ``pca-svm`` on
   12k Fashion-MNIST images then peaked at 2.17x ``X`` beyond the imports instead of 3.27x;
2. walks C in increasing order, warm-starting ``LogisticRegression`` and featpipe's L-BFGS
   SVM (:class:`~featpipe.classical.linear.LBFGSLinearSVC`, the recipes' default) from the
   previous C's coefficients (liblinear, behind scikit-learn's ``LinearSVC``, has no warm
   start; its dual/primal choice is ``dual="auto"``: dual when features outnumber samples);
3. stops the walk when ``patience`` successive C values have not beaten the best mean score,
   or at once when every fold scores a value below the best one (large C values are the slow
   ones and rarely help once the score has peaked; a drop that all folds agree on is no
   noise: on 12k Fashion-MNIST images, ``--normalize standard`` scored 0.897 at C = 1e-3 and
   0.887 at 1e-2 with a fold spread of 0.003, and C = 0.1, the slowest fit, scored 0.876);
4. searches long grids coarse-to-fine: every ``coarse_step``-th value first, then the values
   between the best coarse value's neighbours (the linear probe's 45 values cost ~12 fits);
5. runs the folds in parallel threads (``n_jobs``; liblinear, BLAS and torch release the
   GIL, so no data is copied to worker processes), each single-threaded in torch and BLAS (so
   that the scores do not depend on ``n_jobs``), and does not wait for the slowest fold at
   every C: a thread with no fold of the decided values left starts a fold of the next C,
   cancelled should the walk stop before it (:mod:`featpipe.classical.foldwalk`; each fold
   warm-starts from its own solution at the nearest smaller C, so the schedule changes no
   score);
6. fits the folds of the L-BFGS classifiers to a relative gradient tolerance of at most
   :data:`SEARCH_TOL` (``1e-4``); the refit uses the estimator's own ``tol``. On 1,600 x 3,120
   per-layer-L2 Fashion-MNIST features (C from 0.01 to 100, warm-started, one thread) ``1e-4``
   took 6.3 s against 18.3 s for the default ``1e-6``, and every held-out fold accuracy stayed
   within 0.25 points (one image in 400); the chosen C is what matters in a search, not the
   last digits of the objective.

7. lets the folds of featpipe's L-BFGS classifiers (on the CPU) read their rows of one shared
   matrix in place when the preprocessing is steps that learn nothing from rows (layer
   selection, per-layer L2) optionally followed by a Standardizer: those steps are applied
   once, to all rows, written fold by fold (each fold's training rows are then two runs of
   the matrix; without such steps the matrix is ``X`` itself and the training rows are
   gathered a block at a time), and each fold's standardization is folded into the
   classifier's objective (:meth:`~featpipe.classical.linear.LBFGSLinearSVC.fit_rows`). The
   ``l2`` recipe then holds ``X`` and one transformed copy instead of ``X`` plus a copy of the
   training rows per thread (12k Fashion-MNIST images, peak beyond the imports: 2.81x instead
   of 3.28x ``X``; ``--normalize standard``: 2.09x instead of 3.32x). Gathering scattered rows
   costs ~10 % of a fit's time (``--normalize standard`` at 12k: 236 s, 208 s with a copy of
   ``X`` in fold order), so ``X`` is not copied for it. ``extra["fold_rows"]`` says which way
   the folds held their rows. With ``copy_X=False`` (`featpipe fit` passes it: its training
   rows are its own) the transformed rows are written over ``X`` itself, which then holds
   no copy beside it (``l2`` on 3k Fashion-MNIST images: 73-76 MiB beyond the imports
   before, 53-59 MiB after, for a 23.8 MiB ``X``).

A grid over one other parameter of the classifier (the ``umap-knn`` recipe's
``clf__n_neighbors``) gets steps 1 and 5 only: every value is evaluated, in the grid's order,
and the first best wins, as in ``GridSearchCV``. With a prefix that cannot stream, each fold is
then embedded once instead of once per value (``GridSearchCV`` caches the fitted prefix, but
transforms the held-out rows again for every value: for UMAP, a layout optimisation each time).

Steps 3, 4 and 6 are heuristics: 3 and 4 skip candidates, so they can miss a better C that a
full grid would find after a dip of the CV score, and 6 can move a fold's score by an image.
``patience=None, coarse_step=1, search_tol=None`` evaluates every candidate exactly as
``GridSearchCV`` does. Grids over more than one parameter or over a preprocessing step, a
``clf__C`` grid of classifiers without warm-startable or liblinear solvers, and inputs that
are neither NumPy arrays nor torch tensors (a tensor's folds are preprocessed whole, on its
device: :mod:`featpipe.classical.device`) are searched by
:func:`~featpipe.classical.search.run_search` instead; ``SearchResult.extra["search"]`` says
which search ran.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from joblib.parallel import SequentialBackend, ThreadingBackend, get_active_backend
from sklearn import config_context, get_config
from sklearn.utils.parallel import Parallel, delayed  # threads inherit sklearn's config
from scipy.stats import rankdata
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from featpipe.classical.chunked import (
    fit_rows,
    learns_nothing_from_rows,
    streams,
    take_rows,
    transform_rows,
)
from featpipe.classical.device import is_tensor
from featpipe.classical.foldwalk import walk_folds
from featpipe.classical.transformers import Standardizer
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
from featpipe.classical.sharedrows import SharedRows, affine, fold_ordered
from featpipe.params import validate
from featpipe.resources import available_cores

PARAM = "clf__C"
#: Loosest relative gradient tolerance of the L-BFGS classifiers' fold fits (module notes, 6).
SEARCH_TOL = 1e-4


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
    >>> fast_search_applies(*build_recipe("umap-knn")) is None
    True
    >>> fast_search_applies(pipe, {"clf__C": [1.0], "clf__tol": [1e-4]})
    'the grid tunes clf__C, clf__tol, not one parameter of the classifier'
    """
    names = list(param_grid)
    if len(names) != 1 or not _is_classifier_parameter(names[0]):
        return (f"the grid tunes {', '.join(names) or 'nothing'}, not one parameter of the "
                "classifier")
    clf = pipeline.steps[-1][1]
    if names[0] == PARAM and not isinstance(clf, (LinearSVC, LogisticRegression,
                                                  *_warm_startable())):
        return f"{type(clf).__name__} is not a linear SVM or logistic regression"
    if X is not None and not (isinstance(X, np.ndarray) or is_tensor(X)):
        return f"the features are a {type(X).__name__}, not a NumPy array or torch tensor"
    return None


def _is_classifier_parameter(name: str) -> bool:
    return name.startswith("clf__") and "__" not in name[len("clf__"):]


@dataclass
class _Fold:
    """One fold: its rows of the shared ``X``, its fitted preprocessing and its classifier (kept
    for warm starts). The preprocessed rows exist only while a value is fitted and scored."""

    X: np.ndarray
    y: np.ndarray
    train: np.ndarray
    test: np.ndarray
    preprocess: Pipeline | None
    clf: object
    solutions: dict = field(default_factory=dict)  # C -> (coef_, intercept_) of warm starters
    #: (train rows, test rows) preprocessed once, for a prefix that cannot stream (PCA, UMAP)
    fixed: tuple | None = None
    param: str = PARAM  #: the searched parameter
    #: ``X`` is a :class:`SharedRows` matrix: the classifier reads its training rows in place
    #: (``preprocess`` is then the fold's fitted Standardizer alone, or None)
    shared: bool = False

    def rows(self, which: np.ndarray) -> np.ndarray:
        if self.fixed is not None:
            return self.fixed[0] if which is self.train else self.fixed[1]
        return transform_rows(self.preprocess, self.X, which,
                              _rows_dtype(self.preprocess, self.clf))

    def score(self, value, scorer: Callable, cancel=None) -> tuple[float, float] | None:
        """Fit the classifier at ``value`` of its parameter; return (test score, fit seconds),
        or None when ``cancel`` (a ``threading.Event``) stopped the fit."""
        self.clf.set_params(**{self.param[len("clf__"):]: value})
        warm = self.param == PARAM and _warm_starts(self.clf)
        if warm:
            self._start_from(value)
        if self.shared:
            fit = partial(self.clf.fit_rows, self.X, self.y, self.train, affine(self.preprocess))
        else:
            fit = partial(self.clf.fit, self.rows(self.train), self.y[self.train])
        started = time.perf_counter()
        try:
            with _cancelled_by(cancel):
                fit()
        except _fit_cancelled():
            return None
        seconds = time.perf_counter() - started
        del fit  # the training rows, if copied
        if warm:
            self.solutions[value] = (self.clf.coef_.copy(), self.clf.intercept_.copy())
        return float(scorer(self.clf, self.rows(self.test), self.y[self.test])), seconds

    def _start_from(self, value) -> None:
        """Warm-start from the solution of the nearest C below ``value`` (the walk's last C),
        else the nearest above, else from zero: the same start whatever the folds' schedule."""
        below = [C for C in self.solutions if C < value]
        above = [C for C in self.solutions if C > value]
        start = max(below) if below else min(above) if above else None
        if start is None:
            if getattr(self.clf, "coef_", None) is not None:
                self.clf.coef_ = None
            return
        self.clf.coef_, self.clf.intercept_ = (a.copy() for a in self.solutions[start])

    def forget(self, keep) -> None:
        """Drop the solutions of values not in ``keep`` (fits the walk did not need)."""
        for value in [C for C in self.solutions if C not in keep]:
            del self.solutions[value]


def _input_dtype(clf) -> type:
    """liblinear copies anything but float64 to float64 on every fit; the rest take float32."""
    return np.float64 if isinstance(clf, LinearSVC) else np.float32


def _rows_dtype(preprocess: Pipeline | None, clf) -> type:
    """The dtype of ``preprocess``'s rows for ``clf``: int8 for featpipe's L-BFGS classifiers
    when the prefix's output fits it exactly (FNE's {-1, 0, 1}: a quarter of the memory)."""
    exact = None if preprocess is None else getattr(preprocess.steps[-1][1], "exact_dtype", None)
    if exact is np.int8 and isinstance(clf, _warm_startable()):
        return np.int8
    return _input_dtype(clf)


def _warm_starts(clf) -> bool:
    return isinstance(clf, (LogisticRegression, *_warm_startable()))


def _refit(pipeline: Pipeline, param: str, value, X, y, folds: Sequence[_Fold],
           shared: SharedRows | None) -> Pipeline:
    """``pipeline`` at ``param=value`` fitted on all of ``X``; a warm-startable classifier
    starts from the folds' mean solution at that C (the same convex problem on 25 % more rows,
    so it needs fewer iterations) and is saved with the pipeline's own ``warm_start``."""
    best = clone(pipeline).set_params(**{param: value})
    clf = best.steps[-1][1]
    fit = _refit_call(best, X, y, shared)
    starts = [fold.solutions[value] for fold in folds if value in fold.solutions]
    if not starts or len(starts) != len(folds) or not _warm_starts(clf):
        fit()
        return best
    warm_start = clf.warm_start
    clf.set_params(warm_start=True)
    clf.coef_ = np.mean([coef for coef, _ in starts], axis=0)
    clf.intercept_ = np.mean([intercept for _, intercept in starts], axis=0)
    fit()
    clf.set_params(warm_start=warm_start)
    return best


def _refit_call(best: Pipeline, X, y, shared: SharedRows | None) -> Callable[[], object]:
    """Fit ``best``'s preprocessing on all rows; return the call that fits its classifier."""
    clf = best.steps[-1][1]
    rows = np.arange(len(X))
    if shared is not None:
        return partial(clf.fit_rows, shared.X, shared.y, None, shared.fit_prefix(best))
    Xt = X
    if len(best.steps) > 1 and not streams(best[:-1]):  # as Pipeline.fit (UMAP: embedding_)
        Xt = _as_input(best[:-1].fit_transform(X, y), clf)
    elif len(best.steps) > 1:
        Xt = transform_rows(fit_rows(best[:-1], X, y, rows), X, rows,
                            _rows_dtype(best[:-1], clf))
    return partial(clf.fit, Xt, y)


def _shared_rows(pipeline: Pipeline, param: str, X, y, splits, copy_X: bool = True,
                 ) -> SharedRows | None:
    """The folds' rows of one shared matrix, or None when the folds must copy theirs (another
    classifier than featpipe's L-BFGS ones on the CPU, a tensor, a prefix with other steps).
    ``copy_X``: as :func:`~featpipe.classical.sharedrows.fold_ordered`."""
    clf = pipeline.steps[-1][1]
    if param != PARAM or not isinstance(X, np.ndarray) \
            or not isinstance(clf, _warm_startable()) or clf.device != "cpu":
        return None
    steps = [step for _, step in pipeline.steps[:-1]]
    n_head = 0
    while n_head < len(steps) and (steps[n_head] == "passthrough"
                                   or learns_nothing_from_rows(steps[n_head])):
        n_head += 1
    rest = [step for step in steps[n_head:] if step != "passthrough"]
    if len(rest) > 1 or (rest and not isinstance(rest[0], Standardizer)):
        return None
    scaler = Pipeline([("normalize", clone(rest[0]))]) if rest else None
    head = clone(pipeline[:n_head]) if any(step != "passthrough" for step in steps[:n_head]) \
        else None
    return fold_ordered(X, y, splits, head, scaler, _rows_dtype(head, clf), copy_X)


def _linear():
    """featpipe's L-BFGS module, None when it is not imported: then no classifier can be one
    of its own."""
    return sys.modules.get("featpipe.classical.linear")


@contextmanager
def _cancelled_by(cancel):
    """Let ``cancel`` stop featpipe's L-BFGS fits in this thread (others run to the end)."""
    linear = _linear()
    if cancel is None or linear is None:
        yield
        return
    with linear.cancel_when(cancel):
        yield


def _fit_cancelled() -> tuple[type, ...]:
    linear = _linear()
    return () if linear is None else (linear.FitCancelled,)


def _warm_startable() -> tuple[type, ...]:
    """featpipe's L-BFGS classifiers (none when their module is not imported)."""
    linear = _linear()
    return () if linear is None else (linear.LBFGSLinearSVC, linear.LBFGSLogisticRegression)


def _prepare_fold(pipeline: Pipeline, param: str, X, y, train, test,
                  search_tol: float | None, shared: SharedRows | None) -> _Fold:
    clf = clone(pipeline.steps[-1][1])
    if param == PARAM and _warm_starts(clf):
        clf.set_params(warm_start=True)
    if isinstance(clf, _warm_startable()) and search_tol is not None:
        clf.set_params(tol=max(clf.tol, search_tol))
    if shared is not None:
        scaler = None if shared.scaler is None else \
            fit_rows(clone(shared.scaler), shared.X, shared.y, train)
        return _Fold(shared.X, shared.y, train, test, scaler, clf, param=param, shared=True)
    if len(pipeline.steps) == 1:
        return _Fold(X, y, train, test, None, clf, param=param)
    preprocess = clone(pipeline[:-1])
    if streams(preprocess):
        return _Fold(X, y, train, test, fit_rows(preprocess, X, y, train), clf, param=param)
    fixed = _embed_fold(preprocess, X, y, train, test)
    # the fitted prefix is not kept: UMAP holds its training rows
    return _Fold(X, y, train, test, None, clf, fixed=tuple(_as_input(Xt, clf) for Xt in fixed),
                 param=param)


def _embed_fold(preprocess: Pipeline, X, y, train, test) -> tuple:
    """The fold's (training, held-out) rows through ``preprocess``, fitted on the training rows.
    A lone step that reads its rows in place
    (:meth:`~featpipe.classical.transformers.ClippedPCA.fit_transform_rows`) copies none."""
    _work_in_place(preprocess)  # what it copies from X is the fold's own
    steps = [step for _, step in preprocess.steps if step != "passthrough"]
    if isinstance(X, np.ndarray) and len(steps) == 1 and hasattr(steps[0], "fit_transform_rows"):
        return (steps[0].fit_transform_rows(X, train),
                transform_rows(preprocess, X, test, X.dtype))
    return (preprocess.fit_transform(take_rows(X, train), y[train]),
            preprocess.transform(take_rows(X, test)))


def _work_in_place(preprocess: Pipeline) -> None:
    """Let the steps that can (PCA's centring) overwrite their input instead of copying it."""
    for name, step in preprocess.steps:
        if step != "passthrough" and "copy" in step.get_params(deep=False):
            preprocess.set_params(**{f"{name}__copy": False})


def _as_input(Xt, clf):
    """``Xt`` as the classifier takes it (NumPy: C-contiguous in its dtype; tensors as are)."""
    return np.ascontiguousarray(Xt, dtype=_input_dtype(clf)) if isinstance(Xt, np.ndarray) \
        else Xt


class _Path:
    """Mean CV scores of the values of ``param`` evaluated so far; ``order`` is the candidates'
    order (ascending C, else the grid's), in which the first best wins.

    With joblib's threads the folds are fitted by :func:`~featpipe.classical.foldwalk.walk_folds`
    (no wait at every value); on another joblib backend (a Dask cluster) the folds of one value
    are sent together and the walk waits for them."""

    def __init__(self, param, order, folds, scorer, n_threads, verbose, on_fit=None):
        self.param, self.order, self.folds, self.scorer = param, order, folds, scorer
        self.n_threads, self.verbose = n_threads, verbose
        self.on_fit = on_fit or (lambda n: None)
        self.rows: dict = {}
        self.fold_scores: dict = {}  # value -> the folds' test scores

    def walk(self, values: Sequence, patience: int | None) -> None:
        """Evaluate ``values`` in order until ``patience`` successive ones do not improve, or
        one scores lower than the best in every fold (module notes, 3)."""
        best, since_best = None, 0

        def go_on(value, results) -> bool:
            nonlocal best, since_best
            if results is not None:
                self._record(value, results)
            if best is None or self.rows[value]["mean_test_score"] > \
                    self.rows[best]["mean_test_score"]:
                best, since_best = value, 0
                return True
            since_best += 1
            return patience is None or (since_best < patience and not np.all(
                self.fold_scores[value] < self.fold_scores[best]))

        if _joblib_runs_threads():
            config = get_config()

            def fit(fold, value, cancel):
                with config_context(**config):
                    return self.folds[fold].score(value, self.scorer, cancel)

            walk_folds(values, len(self.folds), fit, go_on, self.n_threads, done=set(self.rows),
                       ahead=1 if patience is not None else None)
            for fold in self.folds:
                fold.forget(self.rows)
            return
        with Parallel(n_jobs=self.n_threads, prefer="threads") as parallel:
            for value in values:
                results = None if value in self.rows else parallel(
                    delayed(fold.score)(value, self.scorer) for fold in self.folds)
                if not go_on(value, results):
                    return

    def _record(self, value, results: list[tuple[float, float]]) -> None:
        scores = np.array([score for score, _ in results])
        self.fold_scores[value] = scores
        self.rows[value] = {
            "params": {self.param: value},
            "mean_test_score": float(np.mean(scores)),
            "std_test_score": float(np.std(scores)),
            "mean_fit_time": float(np.mean([seconds for _, seconds in results])),
        }
        self.on_fit(len(self.folds))
        if self.verbose:
            print(f"[fast search] {self.param}={value!r}: "
                  f"{self.rows[value]['mean_test_score']:.4f}")

    def _evaluated(self) -> list:
        return [value for value in self.order if value in self.rows]

    def best(self):
        """The value of the highest mean score; the first in ``order`` on ties (as
        GridSearchCV: the smallest C)."""
        evaluated = self._evaluated()
        return evaluated[int(np.argmax([self.rows[v]["mean_test_score"] for v in evaluated]))]

    def table(self) -> list[dict]:
        evaluated = self._evaluated()
        ranks = rankdata([-self.rows[v]["mean_test_score"] for v in evaluated], method="min")
        return [{**self.rows[v], "rank": int(r)} for v, r in zip(evaluated, ranks)]


def _joblib_runs_threads() -> bool:
    """Whether joblib's active backend runs here (threads), not on a cluster."""
    backend, _ = get_active_backend(prefer="threads")
    return isinstance(backend, (ThreadingBackend, SequentialBackend))


@contextmanager
def _torch_threads(n: int):
    """Run torch on ``n`` threads inside the block (torch not imported: nothing to do).

    Folds fitted in parallel Python threads share torch's one intra-op pool; single-threaded
    ops keep them from oversubscribing the cores (see :mod:`featpipe.classical.linear`).
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _fold_rows(folds: Sequence[_Fold]) -> str:
    """How the folds held their rows: "shared" (read in place), "embedded" (a prefix's small
    output computed once) or "copied" (preprocessed anew for every fit)."""
    fold = folds[0]
    return "shared" if fold.shared else "embedded" if fold.fixed is not None else "copied"


def _candidates(grid: Mapping[str, list]) -> tuple[str, list]:
    """The grid's parameter and its distinct values: C ascending, others in the grid's order."""
    (param, values), = grid.items()
    if param == PARAM:
        return param, sorted({float(C) for C in values})
    return param, list(dict.fromkeys(values))


def _search_path(path: _Path, values: list, patience, coarse_step: int) -> None:
    if path.param != PARAM:  # the heuristics are C's: evaluate every value
        path.walk(values, None)
        return
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
    n_jobs: int | None = None,
    random_state: int | None = 0,
    patience: int | None = DEFAULT_PATIENCE,
    coarse_step: int = DEFAULT_COARSE_STEP,
    search_tol: float | None = SEARCH_TOL,
    verbose: int = 0,
    class_names: Sequence[str] | None = None,
    on_fit: Callable[[int], object] | None = None,
    copy_X: bool = True,
    reuse: dict | None = None,
    **grid_options,
) -> SearchResult:
    """Cross-validated search of one classifier parameter with preprocessing once per fold
    (see module notes).

    Parameters
    ----------
    pipeline : Pipeline
        Ending in a ``clf`` step; it is cloned, not modified.
    param_grid : dict
        ``{"clf__C": [...]}`` or one other ``clf__`` parameter; any other grid is handed to
        :func:`run_search`.
    X : ndarray or torch tensor of shape (n_samples, n_features)
    y : array of shape (n_samples,)
    cv : int or CV splitter, default=5
        Number of stratified folds (shuffled with ``random_state``), as :func:`run_search`.
    scoring : {"accuracy", "balanced_accuracy"}, default="accuracy"
    n_jobs : int or None, default=None
        Threads running the folds of one value; None: one per core (at most one per fold).
    random_state : int or None, default=0
    patience : int or None, default=2
        Stop the walk up the C grid after this many values without improvement, or after one
        that every fold scores lower than the best; None never stops.
    coarse_step : int, default=4
        Grids longer than 10 values are first evaluated on every ``coarse_step``-th value.
    search_tol : float or None, default=1e-4
        Loosest ``tol`` of the L-BFGS classifiers' fold fits (module notes, 6); None keeps the
        estimator's.
    verbose : int, default=0
    class_names : sequence of str, default=None
        Names used in error messages.
    on_fit : callable, optional
        Called with the number of fits done after each evaluated value (progress).
    copy_X : bool, default=True
        False lets the folds' shared matrix (module notes, 7) be ``X`` itself: the leading
        steps that learn nothing from rows (per-layer L2) overwrite ``X``'s rows, put in fold
        order, instead of a transformed copy beside ``X`` (one copy of the data less). ``X``
        must not be used afterwards, except by later calls given the same ``reuse``.
    reuse : dict, optional
        Calls with the same pipeline, ``X``, ``y``, ``cv`` and ``random_state`` (a grid
        extended at its edge) that pass the same dict share the folds' shared matrix: the
        first call makes it and keeps it there.
    **grid_options
        Passed to :func:`run_search` when the fast search does not apply (``halving``,
        ``cache_dir``, ``cache``).

    Returns
    -------
    SearchResult
        ``extra`` records the search (``"fast"``), the evaluated values in order and the
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
    validate({"patience": patience, "coarse_step": coarse_step, "search_tol": search_tol,
              "n_jobs": n_jobs, "random_state": random_state, "verbose": verbose,
              "copy_X": copy_X}, SEARCH_CONSTRAINTS)
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
    param, values = _candidates(grid)
    started = time.perf_counter()
    n_threads = min(len(splits), available_cores()) if n_jobs is None else n_jobs
    with invalid_grid_values(), _torch_threads(1):  # results then do not depend on n_jobs
        if reuse is not None and "shared" in reuse:
            shared = reuse["shared"]
        else:
            shared = _shared_rows(pipeline, param, X, y, splits, copy_X)
        if reuse is not None:
            reuse["shared"] = shared
        fold_splits = splits if shared is None else shared.splits
        # One fold at a time: fitting a preprocessing may copy the fold's rows.
        folds = [_prepare_fold(pipeline, param, X, y, tr, te, search_tol, shared)
                 for tr, te in fold_splits]
        path = _Path(param, values, folds, get_scorer(scoring), n_threads, verbose, on_fit)
        with threadpool_limits(1, user_api="blas"):  # the folds' threads are the parallelism
            _search_path(path, values, patience, coarse_step)
        best_value = path.best()
    refit_started = time.perf_counter()
    with invalid_grid_values():  # one fit on every row: on all of BLAS's and torch's threads
        best = _refit(pipeline, param, best_value, X, y, folds, shared)
    finished = time.perf_counter()
    return SearchResult(
        best_estimator=best,
        best_params={param: best_value},
        best_score=path.rows[best_value]["mean_test_score"],
        cv_table=path.table(),
        fit_seconds=finished - started,
        refit_seconds=finished - refit_started,
        scoring=scoring,
        n_splits=len(splits),
        extra={"search": "fast", "evaluated": list(path.rows), "n_candidates": len(values),
               "fold_rows": _fold_rows(folds),
               "patience": patience, "coarse_step": coarse_step,
               "search_tol": search_tol},
    )

