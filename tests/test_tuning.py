"""Grid extension at the edges, the convergence summary and progress of every search."""

import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning

from featpipe.classical.recipes import build_recipe
from featpipe.classical.search import SearchConfig, search
from featpipe.classical.tuning import counting_convergence, extend_at_edges


@dataclass
class Result:
    best_params: dict
    best_score: float
    cv_table: list = field(default_factory=list)
    fit_seconds: float = 1.0
    extra: dict = field(default_factory=dict)


def fake_search(score_of):
    """A search whose mean CV score of C is ``score_of(C)``; records what it was asked."""
    asked = []

    def run(grid):
        asked.append(list(grid["clf__C"]))
        best = max(grid["clf__C"], key=lambda c: (score_of(c), -c))
        table = [{"params": {"clf__C": c}, "mean_test_score": score_of(c)}
                 for c in grid["clf__C"]]
        return Result({"clf__C": best}, score_of(best), table)

    return run, asked


GRID = {"clf__C": [0.01, 0.1, 1.0]}


def test_no_extension_when_the_optimum_is_inside():
    run, asked = fake_search(lambda c: -abs(np.log10(c) + 1))  # peak at 0.1
    result = extend_at_edges(run(GRID), GRID, run)
    assert asked == [[0.01, 0.1, 1.0]] and "grid_extended" not in result.extra


def test_extends_below_while_better_and_stops_after_the_peak():
    run, asked = fake_search(lambda c: -abs(np.log10(c) + 3))  # peak at 1e-3
    result = extend_at_edges(run(GRID), GRID, run)
    assert asked[1:] == [[pytest.approx(1e-3)], [pytest.approx(1e-4)]]
    assert result.best_params["clf__C"] == pytest.approx(1e-3)
    assert result.extra["grid_extended"]["direction"] == "below"
    assert len(result.cv_table) == 5 and result.fit_seconds == 3.0


def test_extends_above_and_is_bounded():
    run, asked = fake_search(np.log10)  # always better further up
    result = extend_at_edges(run(GRID), GRID, run)
    assert len(asked) == 4 and result.best_params["clf__C"] == pytest.approx(1000.0)
    assert result.extra["grid_extended"]["added"] == pytest.approx([10.0, 100.0, 1000.0])


def test_other_grids_are_not_extended():
    run, asked = fake_search(np.log10)
    grid = {"clf__n_neighbors": [1, 5]}
    assert extend_at_edges(Result({"clf__n_neighbors": 5}, 1.0), grid, run).extra == {}
    assert asked == []


def test_real_search_extends_and_says_so():
    X, y = load_digits(return_X_y=True)
    X, y = X[:300].astype(np.float32), y[:300]
    pipe, _ = build_recipe("linear-probe")
    grid = {"clf__C": [1e-6, 1e-5]}
    plain = search(pipe, grid, X, y, SearchConfig(method="grid", cv=3, extend_grid=False))
    assert "grid_extended" not in plain.extra
    extended = search(pipe, grid, X, y, SearchConfig(method="grid", cv=3))
    added = extended.extra["grid_extended"]
    scores = {row["params"]["clf__C"]: row["mean_test_score"] for row in plain.cv_table}
    edge = "above" if scores[1e-5] >= scores[1e-6] else "below"  # a plateau goes up first
    assert added["direction"] == edge and added["added"][0] == pytest.approx(
        1e-7 if edge == "below" else 1e-4)
    assert extended.best_score >= plain.best_score
    assert len(extended.cv_table) == 2 + len(added["added"])


def test_convergence_warnings_are_counted_not_printed():
    with warnings.catch_warnings(record=True) as outer:
        warnings.simplefilter("always")
        with counting_convergence() as counts:
            warnings.warn("slow", ConvergenceWarning)
            warnings.warn("slow", ConvergenceWarning)
            warnings.warn("other", UserWarning)
    assert counts["n"] == 2
    assert [w.category for w in outer] == [UserWarning]


def test_search_reports_fits_at_the_iteration_limit():
    X, y = load_digits(return_X_y=True)
    pipe, _ = build_recipe("linear-probe")
    pipe.set_params(clf__max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # none may escape
        result = search(pipe, {"clf__C": [1.0, 10.0]}, X[:200], y[:200],
                        SearchConfig(method="grid", cv=2, extend_grid=False))
    convergence = result.extra["convergence"]
    assert convergence["fits_at_iteration_limit"] >= 4
    assert "raise `max_iter`" in convergence["note"]


def test_ridge_recipe_tunes_itself_in_one_fit_and_extends_its_grid():
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    pipe, grid = build_recipe("ridge")
    assert grid == {}
    result = search(pipe, grid, X[:600], y[:600], SearchConfig(cv=3))
    assert result.extra["search"] == "closed-form" and len(result.cv_table) == 45
    assert result.best_score == pytest.approx(
        max(row["mean_test_score"] for row in result.cv_table))
    assert result.best_estimator.score(X[600:], y[600:]) > 0.85
    # a grid whose best alpha sits at its bottom edge grows downwards, a decade at a time
    pipe.set_params(clf__alphas=[1e6, 1e7])
    before = search(pipe, {}, X[:600], y[:600], SearchConfig(cv=3, extend_grid=False))
    grown = search(pipe, {}, X[:600], y[:600], SearchConfig(cv=3))
    assert "grid_extended" not in before.extra
    assert grown.extra["grid_extended"]["direction"] == "below"
    assert grown.best_params["clf__alpha"] < 1e6 and grown.best_score > before.best_score
    assert len(grown.cv_table) > 2
