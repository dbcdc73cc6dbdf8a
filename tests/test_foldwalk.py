"""The fold walk's schedule (featpipe.classical.foldwalk) and its use by the fast search."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

from featpipe.classical.fastsearch import run_fast_search
from featpipe.classical.foldwalk import walk_folds
from featpipe.classical.linear import FitCancelled, LBFGSLinearSVC, cancel_when
from featpipe.classical.recipes import build_recipe


class Log:
    """What the walk did, in order, from every thread."""

    def __init__(self):
        self.events, self.lock = [], threading.Lock()

    def add(self, *event):
        with self.lock:
            self.events.append(event)


def test_a_free_thread_starts_the_next_value_and_decisions_stay_in_order():
    log = Log()

    def fit(fold, value, cancel):
        log.add("start", value, fold)
        time.sleep(0.3 if (fold, value) == (4, 1) else 0.01)  # fold 4 holds value 1 back
        log.add("end", value, fold)
        return value * 10 + fold

    decided = []
    walk_folds([1, 2, 3], 5, fit, lambda v, r: decided.append((v, r)) or True, 2)
    assert decided == [(v, [v * 10 + f for f in range(5)]) for v in (1, 2, 3)]
    assert log.events.index(("start", 2, 0)) < log.events.index(("end", 1, 4))  # no waiting
    started = [e[1:] for e in log.events if e[0] == "start"]
    for fold in range(5):  # every fold fits its values in order
        assert [v for v, f in started if f == fold] == [1, 2, 3]


def test_a_stop_cancels_the_fits_of_later_values_and_drops_their_results():
    log = Log()

    def fit(fold, value, cancel):
        if value == 2:  # speculative: waits until cancelled
            log.add("cancelled" if cancel.wait(10) else "finished", fold)
            return "dropped"
        time.sleep(0.2 if fold == 2 else 0.01)
        return value

    decided = []
    started = time.perf_counter()
    walk_folds([1, 2, 3], 3, fit, lambda v, r: decided.append((v, r)) or False, 2)
    assert time.perf_counter() - started < 5
    assert decided == [(1, [1, 1, 1])]
    assert log.events and all(e[0] == "cancelled" for e in log.events)


def test_a_failed_fit_cancels_the_others_and_raises():
    def fit(fold, value, cancel):
        if fold == 0:
            raise RuntimeError("boom")
        cancel.wait(10)
        return value

    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="boom"):
        walk_folds([1, 2], 2, fit, lambda v, r: True, 2)
    assert time.perf_counter() - started < 5


def test_values_done_before_are_decided_without_fits():
    fits = []
    decided = []
    walk_folds([1, 2, 3], 2, lambda f, v, c: fits.append((f, v)) or v,
               lambda v, r: decided.append((v, r)) or True, 2, done={2}, ahead=None)
    assert decided == [(1, [1, 1]), (2, None), (3, [3, 3])]
    assert sorted(fits) == [(0, 1), (0, 3), (1, 1), (1, 3)]


def test_a_cancelled_lbfgs_fit_keeps_the_previous_solution():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    clf = LBFGSLinearSVC(C=0.1).fit(X, y)
    before = clf.coef_.copy()
    event = threading.Event()
    event.set()
    with cancel_when(event), pytest.raises(FitCancelled):
        clf.set_params(C=10.0, warm_start=True).fit(X, y)
    assert np.array_equal(clf.coef_, before)
    assert clf.fit(X, y).C == 10.0  # outside the block fits run


@pytest.mark.parametrize("recipe", ["l2", "linear-probe"])
def test_the_fast_search_scores_do_not_depend_on_the_schedule(recipe):
    """5 folds on 3 threads start later values early (and cancel them at the patience stop);
    one thread never does: the same values, the same scores."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:500].astype(np.float32), y[:500]
    pipe, grid = build_recipe(recipe)
    one = run_fast_search(pipe, grid, X, y, cv=5, n_jobs=1, patience=1)
    three = run_fast_search(pipe, grid, X, y, cv=5, n_jobs=3, patience=1)
    assert one.extra["evaluated"] == three.extra["evaluated"]
    assert len(one.extra["evaluated"]) < len(grid["clf__C"])  # the walk stopped early
    assert [r["mean_test_score"] for r in one.cv_table] == [
        r["mean_test_score"] for r in three.cv_table]
