"""featpipe.search and featpipe.report: input checks, grid search, fold-only statistics,
preprocessing cache (counted fits), reports."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from featpipe.errors import FeatpipeError
from featpipe.classical.recipes import build_recipe
from featpipe.report.writer import build_report, write_report
from featpipe.report.plots import comparison_plot, comparison_table
from featpipe.report.metrics import evaluate
from featpipe.classical.search import run_search
from featpipe.classical.validation import validate_training_data
from featpipe.classical.transformers.reduction import ClippedPCA
from featpipe.classical.transformers.scaling import FNEDiscretizer, Standardizer


@pytest.fixture(scope="module")
def small_digits():
    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, [0, 1, 2, 3])
    return X[keep][:300].astype(np.float32), y[keep][:300]


# --------------------------------------------------------------------------- bad input


def _ok_data():
    return np.ones((6, 2), dtype=np.float32), np.array([0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize(
    "X, y, cv, message",
    [
        (np.zeros((0, 4)), np.array([]), 2, r"no features to learn from \(X has shape \(0, 4\)\)"),
        (np.zeros((4, 0)), np.array([0, 0, 1, 1]), 2, "no features to learn from"),
        (None, np.array([0, 1]), 2, "no features"),
        (np.zeros((4, 2)), None, 2, "have no labels"),
        (np.zeros((4, 2)), np.full(4, -1), 2, r"no labels \(all -1\)"),
        (np.zeros((4, 2)), np.array([0, -1, 1, 1]), 2, "1 samples have no label"),
        (np.zeros((4, 2)), np.array([3, 3, 3, 3]), 2, r"only one class \('d'\)"),
        (np.zeros((5, 2)), np.array([0, 0, 0, 1, 1]), 3, "class 'b' has 2 sample"),
        (np.zeros((4, 2)), np.array([0, 0, 1]), 2, "labels of shape"),
        (
            np.array([[0.0, np.nan], [1, 1], [2, 2], [3, np.inf]]),
            np.array([0, 0, 1, 1]),
            2,
            "2 feature rows contain NaN or inf",
        ),
        (np.zeros((4, 2)), np.array([0, 0, 1, 1]), 1, "`cv` must be an int >= 2 or a CV splitter"),
    ],
)
def test_validate_training_data_refuses_with_one_line(X, y, cv, message):
    with pytest.raises(FeatpipeError, match=message) as info:
        validate_training_data(X, y, cv, class_names=["a", "b", "c", "d"])
    assert "\n" not in str(info.value)


def test_validate_training_data_accepts_good_data():
    validate_training_data(*_ok_data(), cv=3)


def test_failed_search_writes_nothing(tmp_path):
    X, y = _ok_data()
    pipeline, grid = build_recipe("pca-svm")
    with pytest.raises(FeatpipeError):
        run_search(pipeline, grid, X, y, cv=5, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "kwargs, grid, message",
    [
        ({"scoring": "f1"}, {}, "`scoring` must be one of accuracy, balanced_accuracy, got 'f1'"),
        (
            {},
            {"clf__gamma": [1]},
            r"grid parameter 'clf__gamma' does not exist .*steps: normalize, clf",
        ),
        ({}, {"clf__C": []}, "has no values"),
        ({}, {"clf__C": [-1.0]}, "invalid grid value: The 'C' parameter of LBFGSLinearSVC"),
    ],
)
def test_search_argument_errors(small_digits, kwargs, grid, message):
    pipeline, _ = build_recipe("l2")
    with pytest.raises(FeatpipeError, match=message):
        run_search(pipeline, grid, *small_digits, cv=2, **kwargs)


# --------------------------------------------------------------------------- search


def test_run_search_reports_the_grid(small_digits):
    pipeline, _ = build_recipe("fne")
    grid = {"clf__C": [0.001, 0.1], "discretize__high": [0.15, 0.5]}
    result = run_search(pipeline, grid, *small_digits, cv=3, scoring="balanced_accuracy")
    assert len(result.cv_table) == 4
    assert result.best_score == max(row["mean_test_score"] for row in result.cv_table) > 0.9
    best_row = next(row for row in result.cv_table if row["rank"] == 1)
    assert best_row["params"] == result.best_params
    assert result.scoring == "balanced_accuracy" and result.n_splits == 3 and result.fit_seconds > 0
    assert result.best_estimator.memory is None
    json.dumps(result.cv_table)  # JSON-ready
    assert pipeline["clf"].C == 1.0  # the caller's pipeline is not modified


def test_halving_search(small_digits):
    pipeline, _ = build_recipe("l2")
    result = run_search(
        pipeline, {"clf__C": [0.01, 0.1, 1, 10, 100, 1000]}, *small_digits, cv=3, halving=True
    )
    assert {"iter", "n_resources"} <= set(result.cv_table[0])
    assert max(row["iter"] for row in result.cv_table) >= 1
    assert result.best_score > 0.9


class RecordingStandardizer(Standardizer):
    """Standardizer that records the rows it is fitted on (class-level: fits happen in clones)."""

    fitted_means: list = []

    def fit(self, X, y=None):
        RecordingStandardizer.fitted_means.append(
            (len(X), np.asarray(X, dtype=np.float64).mean(axis=0))
        )
        return super().fit(X, y)


def test_statistics_come_from_training_folds_only(small_digits):
    X, y = small_digits
    RecordingStandardizer.fitted_means = []
    pipeline = Pipeline(
        [
            ("normalize", RecordingStandardizer()),
            ("discretize", FNEDiscretizer()),
            ("clf", LinearSVC()),
        ]
    )
    run_search(pipeline, {}, X, y, cv=3, random_state=7)
    folds = StratifiedKFold(3, shuffle=True, random_state=7).split(X, y)
    expected = [(len(train), X[train].astype(np.float64).mean(axis=0)) for train, _ in folds]
    expected.append(
        (len(X), X.astype(np.float64).mean(axis=0))
    )  # the final refit on all training data
    assert [n for n, _ in RecordingStandardizer.fitted_means] == [n for n, _ in expected]
    for (_, got), (_, want) in zip(RecordingStandardizer.fitted_means, expected, strict=True):
        np.testing.assert_allclose(got, want)


# --------------------------------------------------------------------------- cache


class CountingStandardizer(Standardizer):
    fits = 0

    def fit(self, X, y=None):
        CountingStandardizer.fits += 1
        return super().fit(X, y)


class CountingPCA(ClippedPCA):
    fits = 0

    def fit(self, X, y=None):
        CountingPCA.fits += 1
        return super().fit(X, y)

    def fit_transform(self, X, y=None):  # a pipeline's fit (not through fit)
        CountingPCA.fits += 1
        return super().fit_transform(X, y)


GRID = {"clf__C": [0.01, 0.1, 1.0]}


def _counting_pipeline():
    return Pipeline(
        [
            ("normalize", CountingStandardizer()),
            ("discretize", FNEDiscretizer()),
            ("clf", LinearSVC()),
        ]
    )


def test_cache_fits_preprocessing_once_per_fold(small_digits, tmp_path):
    CountingStandardizer.fits = 0
    run_search(_counting_pipeline(), GRID, *small_digits, cv=3)
    assert CountingStandardizer.fits == 3 * 3 + 1  # every grid point x fold, plus the refit

    CountingStandardizer.fits = 0
    cold = run_search(
        _counting_pipeline(), GRID, *small_digits, cv=3, cache_dir=tmp_path, cache=True
    )
    assert CountingStandardizer.fits == 3 + 1  # once per fold, plus the refit
    assert cold.extra["cache"] == str(tmp_path)

    CountingStandardizer.fits = 0
    warm = run_search(
        _counting_pipeline(), GRID, *small_digits, cv=3, cache_dir=tmp_path, cache=True
    )
    assert CountingStandardizer.fits == 0
    assert warm.best_params == cold.best_params and warm.best_score == cold.best_score


def test_auto_cache_only_for_expensive_steps(small_digits, tmp_path):
    CountingStandardizer.fits = 0
    cheap = run_search(_counting_pipeline(), GRID, *small_digits, cv=3, cache_dir=tmp_path / "a")
    assert cheap.extra["cache"] is None and CountingStandardizer.fits == 10
    assert not (tmp_path / "a").exists()

    CountingPCA.fits = 0
    pipeline = Pipeline([("reduce", CountingPCA(16, random_state=0)), ("clf", LinearSVC())])
    result = run_search(pipeline, GRID, *small_digits, cv=3, cache_dir=tmp_path / "b")
    assert result.extra["cache"] == str(tmp_path / "b") and CountingPCA.fits == 4
    assert result.best_estimator.predict(small_digits[0][:5]).shape == (5,)


# --------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def fitted(small_digits):
    X, y = small_digits
    pipeline, _ = build_recipe("l2")
    return run_search(pipeline, {"clf__C": [0.1, 1.0, 10.0]}, X[:200], y[:200], cv=3)


def test_evaluate_metrics(fitted, small_digits):
    X, y = small_digits
    X_test, y_test = X[200:], y[200:].copy()
    evaluation = evaluate(
        fitted.best_estimator, X_test, y_test, ["zero", "one", "two", "three", "four"]
    )
    predicted = fitted.best_estimator.predict(X_test)
    assert evaluation["accuracy"] == pytest.approx(np.mean(predicted == y_test))
    matrix = np.array(evaluation["confusion_matrix"])
    assert matrix.shape == (5, 5) and matrix.sum() == len(y_test) == evaluation["n_test"]
    per_class = {row["class"]: row for row in evaluation["per_class"]}
    assert per_class["four"] == {
        "class": "four",
        "n": 0,
        "accuracy": None,
    }  # absent from the test set
    ones = y_test == 1
    assert per_class["one"]["accuracy"] == pytest.approx(np.mean(predicted[ones] == 1))
    recalls = [row["accuracy"] for row in evaluation["per_class"] if row["n"]]
    assert evaluation["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    with pytest.raises(FeatpipeError, match="no test samples"):
        evaluate(fitted.best_estimator, X_test[:0], y_test[:0], None)


def test_write_report(fitted, small_digits, tmp_path):
    X, y = small_digits
    evaluation = evaluate(fitted.best_estimator, X[200:], y[200:], ["zero", "one", "two", "three"])
    files = write_report(
        tmp_path / "rep",
        search=fitted,
        evaluation=evaluation,
        meta={"recipe": "l2", "layers": ["a"]},
    )
    names = ["confusion.png", "cv_curve.png", "report.json", "report.md"]
    assert sorted(p.name for p in files) == names
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == names
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["search"]["best_params"] == fitted.best_params
    assert report["evaluation"]["accuracy"] == evaluation["accuracy"]
    markdown = (tmp_path / "rep" / "report.md").read_text()
    scores = [
        row["mean_test_score"]
        for row in sorted(fitted.cv_table, key=lambda r: -r["mean_test_score"])
    ]
    table_lines = [
        line for line in markdown.splitlines() if line.startswith("| ") and "clf__C=" in line
    ]
    assert [float(line.split("|")[3]) for line in table_lines] == pytest.approx(scores, abs=1e-4)
    assert "| three |" in markdown and "balanced accuracy" in markdown
    assert (tmp_path / "rep" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "rep" / "cv_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "![CV curve](cv_curve.png)" in markdown


def test_report_says_when_the_grid_was_extended_and_fits_did_not_converge(fitted, tmp_path):
    from dataclasses import replace

    noted = replace(fitted, extra={
        **fitted.extra,
        "grid_extended": {"parameter": "clf__C", "added": [1e-4], "direction": "below",
                          "reason": "the best value was at the edge of the grid"},
        "convergence": {"fits_at_iteration_limit": 3, "fits": 20,
                        "note": "3 of about 20 fits stopped at the iteration limit"}})
    write_report(tmp_path / "rep", search=noted)
    markdown = (tmp_path / "rep" / "report.md").read_text()
    assert "- grid extended below: clf__C = 0.0001 added" in markdown
    assert "- convergence: 3 of about 20 fits stopped" in markdown


def test_comparison_table_and_plot(fitted, tmp_path):
    full = build_report(
        search=fitted,
        evaluation={"accuracy": 0.91, "balanced_accuracy": 0.9, "predict_seconds": 0.01},
    )
    runs = {"fne all layers": full, "last layer": {"test_accuracy": 0.8, "features": 1280}}
    table = comparison_table(runs).splitlines()
    assert table[0].startswith("| run | cv score | test accuracy | balanced accuracy |")
    assert table[2].startswith("| fne all layers |") and "0.9100" in table[2]
    assert table[3].startswith("| last layer |") and "1280" in table[3]
    path = comparison_plot(runs, tmp_path / "cmp.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FeatpipeError):
        comparison_table({})
