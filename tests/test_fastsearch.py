"""Fast C search (featpipe.fastsearch) and statistics from an unlabelled pool (--stats-from)."""

from __future__ import annotations

import shutil
import warnings

import h5py
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline

from featpipe.errors import FeatpipeError
from featpipe.classical.fastsearch import fast_search_applies, run_fast_search
from featpipe.classical.persist import load_model
from featpipe.classical.recipes import build_recipe, use_pool_statistics
from featpipe.classical.search import SearchConfig, run_search, search
from featpipe.store.reader import FeatureSet, FeatureStore
from featpipe.workflows.fit import TrainingSpec, fit_features, fit_store
from featpipe.classical.transformers.scaling import feature_statistics

SLICES = {"a": (0, 32), "b": (32, 64)}


@pytest.fixture(scope="module")
def digits():
    """A small fixed dataset: 400 digits, 64 float32 features in two 'layers'."""
    X, y = load_digits(return_X_y=True)
    return X[:400].astype(np.float32), y[:400]


@pytest.fixture(autouse=True)
def _quiet_convergence():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _scores(result) -> dict[float, float]:
    return {float(r["params"]["clf__C"]): r["mean_test_score"] for r in result.cv_table}


@pytest.mark.parametrize("recipe", ["fne", "l2"])
def test_full_walk_matches_grid_search_scores_and_choice(digits, recipe):
    X, y = digits
    pipe, grid = build_recipe(recipe, layer_slices=SLICES)
    plain = run_search(pipe, grid, X, y, cv=3)
    fast = run_fast_search(pipe, grid, X, y, cv=3, patience=None, coarse_step=1,
                           search_tol=None)
    assert fast.best_params == {"clf__C": pytest.approx(plain.best_params["clf__C"])}
    assert fast.best_score == plain.best_score
    assert _scores(fast) == pytest.approx(_scores(plain), abs=0)
    assert [r["rank"] for r in fast.cv_table] == [r["rank"] for r in plain.cv_table]


def test_fne_folds_keep_their_rows_in_int8_with_unchanged_scores(digits, monkeypatch):
    from featpipe.classical import fastsearch
    from featpipe.classical.linear import LBFGSLinearSVC

    X, y = digits
    pipe, grid = build_recipe("fne", layer_slices=SLICES)
    assert isinstance(pipe.steps[-1][1], LBFGSLinearSVC)
    fitted_on = []
    real_fit = LBFGSLinearSVC.fit
    monkeypatch.setattr(LBFGSLinearSVC, "fit",
                        lambda self, X, y: fitted_on.append(X.dtype) or real_fit(self, X, y))
    kwargs = dict(cv=3, patience=None, coarse_step=1, n_jobs=1)
    int8 = run_fast_search(pipe, grid, X, y, **kwargs)
    assert set(fitted_on) == {np.dtype(np.int8)}  # every fold fit and the refit
    monkeypatch.setattr(fastsearch, "_rows_dtype", lambda preprocess, clf: np.float32)
    fitted_on.clear()
    float32 = run_fast_search(pipe, grid, X, y, **kwargs)
    assert set(fitted_on) == {np.dtype(np.float32)}
    assert _scores(int8) == _scores(float32)
    np.testing.assert_array_equal(int8.best_estimator[-1].coef_,
                                  float32.best_estimator[-1].coef_)


def test_a_prefix_that_cannot_stream_is_computed_once_per_fold(digits, monkeypatch):
    from featpipe.classical.recipes import Reduction
    from featpipe.classical.transformers import ClippedPCA

    X, y = digits
    pipe, _ = build_recipe(normalize="none", reduce=Reduction("pca", 8), classifier="liblinear")
    grid = {"clf__C": [0.01, 0.1, 1.0, 10.0]}
    plain = run_search(pipe, grid, X, y, cv=3)
    calls = []
    real = ClippedPCA.transform
    monkeypatch.setattr(ClippedPCA, "transform",
                        lambda self, Z: calls.append(len(Z)) or real(self, Z))
    before = X.copy()
    fast = run_fast_search(pipe, grid, X, y, cv=3, patience=None, coarse_step=1)
    np.testing.assert_array_equal(X, before)  # the folds' PCA centres copies, never X
    assert _scores(fast) == pytest.approx(_scores(plain), abs=1e-12)
    assert len(calls) <= 3 * 2 + 2  # each fold's train and test rows once, not once per C
    np.testing.assert_array_equal(fast.best_estimator.predict(X), plain.best_estimator.predict(X))


@pytest.mark.parametrize("recipe", ["fne", "l2"])
def test_default_fast_search_picks_the_grid_search_C_and_accuracy(digits, recipe):
    X, y = digits
    train, test = slice(0, 300), slice(300, 400)
    pipe, grid = build_recipe(recipe, layer_slices=SLICES)
    plain = run_search(pipe, grid, X[train], y[train], cv=3)
    fast = run_fast_search(pipe, grid, X[train], y[train], cv=3)
    assert fast.best_params["clf__C"] == pytest.approx(plain.best_params["clf__C"])
    assert fast.best_estimator.score(X[test], y[test]) == plain.best_estimator.score(
        X[test], y[test])
    assert fast.extra["search"] == "fast" and plain.extra["search"] == "grid"


def test_linear_probe_warm_start_and_coarse_grid_keep_accuracy(digits):
    X, y = digits
    train, test = slice(0, 300), slice(300, 400)
    pipe, _ = build_recipe("linear-probe")
    grid = {"clf__C": np.logspace(-4, 2, 13).tolist()}
    plain = run_search(pipe, grid, X[train], y[train], cv=3)
    fast = run_fast_search(pipe, grid, X[train], y[train], cv=3)
    assert len(fast.cv_table) < 13  # coarse-to-fine skipped some candidates
    assert abs(fast.best_score - plain.best_score) <= 0.02
    assert abs(fast.best_estimator.score(X[test], y[test])
               - plain.best_estimator.score(X[test], y[test])) <= 0.02
    assert fast.best_estimator.named_steps["clf"].warm_start is False  # an ordinary model


def test_ties_pick_the_smallest_C_like_grid_search():
    X = np.array([[0.0, 1.0], [0.1, 1.0], [5.0, 1.0], [5.1, 1.0]] * 3, dtype=np.float32)
    y = np.array([0, 0, 1, 1] * 3)
    pipe, _ = build_recipe(normalize="none", classifier="linearsvc")
    grid = {"clf__C": [10.0, 1.0, 0.1]}  # every C separates perfectly
    fast = run_fast_search(pipe, grid, X, y, cv=2)
    assert fast.best_params == {"clf__C": 0.1}
    assert run_search(pipe, {"clf__C": [0.1, 1.0, 10.0]}, X, y, cv=2).best_params == {
        "clf__C": 0.1}


def test_patience_stops_the_walk_and_is_recorded(digits):
    X, y = digits
    pipe, _ = build_recipe("fne", layer_slices=SLICES)
    grid = {"clf__C": np.logspace(-4, 4, 9).tolist()}
    full = run_fast_search(pipe, grid, X, y, cv=3, patience=None)
    short = run_fast_search(pipe, grid, X, y, cv=3, patience=1)
    assert len(full.cv_table) == 9 and len(short.cv_table) < 9
    assert short.extra["evaluated"] == sorted(short.extra["evaluated"])
    assert short.extra["n_candidates"] == 9 and short.extra["patience"] == 1


class _ScriptedFold:
    """A fold whose test score at each C is given."""

    def __init__(self, fold, scores):
        self.fold, self.scores = fold, scores

    def score(self, value, scorer, cancel=None):
        return self.scores[value][self.fold], 0.0

    def forget(self, keep):
        pass


@pytest.mark.parametrize("patience", [2, None])
def test_a_drop_in_every_fold_ends_the_walk_before_patience_runs_out(patience):
    from featpipe.classical.fastsearch import _Path

    values = [0.01, 0.1, 1.0, 10.0]
    agree = {0.01: [.7, .7, .7], 0.1: [.8, .8, .8], 1.0: [.79, .75, .78], 10.0: [.9, .9, .9]}
    disagree = {**agree, 1.0: [.81, .75, .7]}  # a lower mean, but one fold scores higher
    for scores, stops in ((agree, patience is not None), (disagree, False)):
        path = _Path("clf__C", values, [_ScriptedFold(k, scores) for k in range(3)], None, 1, 0)
        path.walk(values, patience)
        assert sorted(path.rows) == (values[:3] if stops else values)
        assert path.best() == (0.1 if stops else 10.0)


def test_refit_is_an_ordinary_pipeline_and_threads_give_the_same_result(digits):
    X, y = digits
    pipe, grid = build_recipe("fne", layer_slices=SLICES)
    one = run_fast_search(pipe, grid, X, y, cv=3, n_jobs=1)
    two = run_fast_search(pipe, grid, X, y, cv=3, n_jobs=2)
    assert _scores(one) == _scores(two)
    best = one.best_estimator
    assert type(best) is Pipeline
    assert [n for n, _ in best.steps] == ["normalize", "discretize", "clf"]
    assert best.named_steps["clf"].C == one.best_params["clf__C"]
    assert one.refit_seconds <= one.fit_seconds


def test_other_grids_fall_back_to_grid_search(digits):
    X, y = digits
    pipe, _ = build_recipe(normalize="standard", classifier="knn")
    result = run_fast_search(pipe, {"clf__n_neighbors": [1, 3], "clf__weights": ["uniform"]},
                             X, y, cv=3)
    assert result.extra["search"] == "grid"
    assert "not one parameter of the classifier" in result.extra["fast_search_skipped"]
    pipe, _ = build_recipe("fne")
    assert "discretize__high" in fast_search_applies(pipe, {"discretize__high": [0.1, 0.2]})


def test_a_grid_over_another_classifier_parameter_matches_grid_search(digits, monkeypatch):
    """k of the nearest neighbours after PCA: every value is scored as GridSearchCV scores it
    (the first best of the grid's order wins), with the prefix fitted and applied once per
    fold; the grid is not sorted, so the tie-break follows its order."""
    from featpipe.classical.recipes import Reduction
    from featpipe.classical.transformers import ClippedPCA

    X, y = digits
    pipe, _ = build_recipe(normalize="standard", reduce=Reduction("pca", 8), classifier="knn")
    grid = {"clf__n_neighbors": [9, 1, 3, 5, 7]}
    plain = run_search(pipe, grid, X, y, cv=3)
    calls = {"transform": 0}
    transform = ClippedPCA.transform

    def counted(self, X):
        calls["transform"] += 1
        return transform(self, X)

    monkeypatch.setattr(ClippedPCA, "transform", counted)
    run_fast_search(pipe, {"clf__n_neighbors": [1]}, X, y, cv=3)
    per_search = calls["transform"]
    calls["transform"] = 0
    fast = run_fast_search(pipe, grid, X, y, cv=3)
    assert fast.extra["search"] == "fast" and fast.extra["evaluated"] == [9, 1, 3, 5, 7]
    assert fast.best_params == plain.best_params
    assert fast.best_score == plain.best_score

    def scores(result):
        return [(r["params"], r["mean_test_score"], r["rank"]) for r in result.cv_table]

    assert sorted(scores(fast), key=str) == sorted(scores(plain), key=str)
    assert calls["transform"] == per_search  # each fold once, not once per value
    assert fast.best_estimator.named_steps["clf"].n_neighbors == plain.best_params[
        "clf__n_neighbors"]


@pytest.mark.parametrize("kwargs, match", [
    ({"patience": 0}, "patience"), ({"coarse_step": 0}, "coarse_step"),
    ({"scoring": "f1"}, "`scoring` must be one of"), ({"copy_X": "no"}, "copy_X")])
def test_bad_options_are_one_line_errors(digits, kwargs, match):
    X, y = digits
    pipe, grid = build_recipe("fne")
    with pytest.raises(FeatpipeError, match=match):
        run_fast_search(pipe, grid, X, y, cv=3, **kwargs)


def test_invalid_C_is_a_featpipe_error(digits):
    X, y = digits
    pipe, _ = build_recipe("fne")
    with pytest.raises(FeatpipeError, match="invalid grid value"):
        run_fast_search(pipe, {"clf__C": [-1.0, 1.0]}, X, y, cv=3)


# --------------------------------------------------------------------------- one dispatcher


def test_search_dispatches_as_configured(digits, monkeypatch):
    import featpipe.classical.fastsearch as fastsearch
    import featpipe.classical.search as plain

    X, y = digits
    pipe, _ = build_recipe("fne", layer_slices=SLICES)
    grid = {"clf__C": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]}
    calls = []
    for module, name in ((fastsearch, "run_fast_search"), (plain, "run_search")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **k: (
            calls.append((_n, k.get("halving"))) or _f(*a, **k)))

    fast = search(pipe, grid, X, y, SearchConfig(cv=3, extend_grid=False))
    assert fast.extra["search"] == "fast" and calls == [("run_fast_search", None)]
    calls.clear()
    full = search(pipe, grid, X, y, SearchConfig(method="grid", cv=3, extend_grid=False))
    assert full.extra["search"] == "grid" and calls == [("run_search", False)]
    assert "iter" not in full.cv_table[0] and len(full.cv_table) == 6
    calls.clear()
    halving = search(pipe, grid, X, y, SearchConfig(method="halving", cv=3, extend_grid=False))
    assert calls == [("run_search", True)] and {"iter", "n_resources"} <= set(halving.cv_table[0])
    assert search(pipe, grid, X, y, SearchConfig(cv=3)).best_params == fast.best_params


def test_search_config_options_reach_the_search(digits):
    X, y = digits
    pipe, _ = build_recipe(normalize="standard", classifier="knn")
    result = search(pipe, {"clf__n_neighbors": [1, 3], "clf__weights": ["distance"]}, X, y,
                    SearchConfig(cv=4, scoring="balanced_accuracy"))
    assert result.extra["search"] == "grid" and "fast_search_skipped" in result.extra
    assert (result.n_splits, result.scoring) == (4, "balanced_accuracy")
    with pytest.raises(FeatpipeError, match="`config` must be a SearchConfig"):
        search(pipe, {}, X, y, {"cv": 3})


def test_fit_features_searches_with_the_spec_method(digits):
    X, y = digits
    train = _feature_set(X[:200], y[:200])
    grid = {"clf__C": [0.01, 0.1, 1.0, 10.0]}
    halving = fit_features(train, TrainingSpec(recipe="fne", cv=3, search="halving", grid=grid))
    assert "iter" in halving.cv_table[0]
    fast = fit_features(train, TrainingSpec(recipe="fne", cv=3, grid=grid))
    assert fast.extra["search"] == "fast"


# --------------------------------------------------------------------------- pool statistics


def _feature_set(X, y):
    return FeatureSet(X=X, y=y, layer_slices=SLICES, class_names=[str(i) for i in range(10)],
                      ids=np.arange(len(y)).astype(str), index=np.arange(len(y)), splits=None,
                      provenance={})


@pytest.mark.parametrize("search", ["fast", "grid"])
def test_pool_statistics_change_only_the_statistics(digits, search):
    X, y = digits
    train, pool = _feature_set(X[:200], y[:200]), X
    spec = TrainingSpec(recipe="fne", cv=3, search=search, grid={"clf__C": [0.01, 0.1]})
    own = fit_features(train, spec)
    pooled = fit_features(train, spec, statistics_pool=pool)
    normalize = pooled.best_estimator.named_steps["normalize"]
    mean, scale = feature_statistics(pool)
    np.testing.assert_array_equal(normalize.mean_, mean)
    np.testing.assert_array_equal(normalize.scale_, scale)
    assert not np.allclose(own.best_estimator.named_steps["normalize"].mean_, mean)
    params = {k: v for k, v in pooled.best_estimator.get_params().items()
              if "statistics" not in k and "__" in k and not hasattr(v, "fit")}
    assert params == {k: v for k, v in own.best_estimator.get_params().items() if k in params}


def test_pool_statistics_need_a_standardizer():
    pipe, _ = build_recipe("l2")
    with pytest.raises(FeatpipeError, match="standardizing pipeline"):
        use_pool_statistics(pipe, np.zeros((3, 4), dtype=np.float32))


def test_pool_statistics_follow_a_layer_selection():
    X = np.arange(12, dtype=np.float32).reshape(3, 4)
    pipe, _ = build_recipe("fne", layer_slices={"a": (0, 1), "b": (1, 4)}, layers=["b"])
    mean, _ = use_pool_statistics(pipe, X).named_steps["normalize"].statistics
    np.testing.assert_allclose(mean, X[:, 1:].mean(axis=0))


def _garbage_label_copy(store_path, out):
    """The same features with every label replaced by nonsense (-1 and out-of-range)."""
    shutil.copy(store_path, out)
    with h5py.File(out, "r+") as f:
        labels = f["labels"][()]
        f["labels"][...] = np.where(np.arange(len(labels)) % 2 == 0, -1, 999)
    return out


def _fit(store, tmp_path, name, **spec):
    out = tmp_path / f"{name}.skops"
    outcome = fit_store(store, TrainingSpec(recipe="fne", cv=3, grid={"clf__C": [0.01, 1]}, **spec),
                        out=out, test_split=0.3)
    pipeline, _, training = load_model(out)
    return outcome, pipeline, training


def test_stats_from_pool_never_reads_labels_and_is_recorded(lite0_store, tmp_path):
    garbage = _garbage_label_copy(lite0_store, tmp_path / "garbage.h5")
    data = FeatureStore.open(lite0_store).load()
    train_only, own, own_training = _fit(lite0_store, tmp_path, "train")
    everything, pooled, all_training = _fit(lite0_store, tmp_path, "all", stats_from="all")
    _, from_file, file_training = _fit(lite0_store, tmp_path, "file", stats_from=str(garbage))

    # Same rows in the pool -> identical model whether or not its labels are garbage.
    np.testing.assert_array_equal(pooled.predict(data.X), from_file.predict(data.X))
    np.testing.assert_array_equal(pooled.named_steps["clf"].coef_,
                                  from_file.named_steps["clf"].coef_)
    np.testing.assert_array_equal(pooled.named_steps["normalize"].mean_,
                                  feature_statistics(data.X)[0])
    assert not np.array_equal(own.named_steps["normalize"].mean_,
                              pooled.named_steps["normalize"].mean_)

    assert own_training["stats_from"] == {"source": "train", "transductive": False}
    assert all_training["stats_from"]["source"] == "all"
    assert all_training["stats_from"]["transductive"] is True  # test rows were in the pool
    assert all_training["stats_from"]["n_rows"] == len(data.y)
    assert file_training["stats_from"]["source"] == str(garbage)
    assert file_training["stats_from"]["transductive"] is False
    assert all_training["spec"]["stats_from"] == "all" and own_training["search"] == "fast"
    assert everything.stats_from["transductive"] and not train_only.stats_from["transductive"]


def test_stats_from_refuses_other_features_and_bad_values(lite0_store, tmp_path):
    other = tmp_path / "other.h5"
    shutil.copy(lite0_store, other)
    with h5py.File(other, "r+") as f:
        f.attrs["provenance"] = f.attrs["provenance"].replace('"pool": "mean"', '"pool": "max"')
    with pytest.raises(FeatpipeError, match="other settings"):
        _fit(lite0_store, tmp_path, "other", stats_from=str(other))
    with pytest.raises(FeatpipeError, match="train, all or an existing"):
        _fit(lite0_store, tmp_path, "bad", stats_from="everything")
    with pytest.raises(FeatpipeError, match="`search` must be one of fast, grid, halving"):
        _fit(lite0_store, tmp_path, "bad", search="quick")


@pytest.mark.parametrize("recipe, fold_rows", [("l2", "shared"), ("fne", "copied"),
                                               ("linear-probe", "shared")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_folds_read_one_shared_matrix_where_the_preprocessing_allows(digits, recipe, fold_rows,
                                                                     dtype):
    X, y = digits
    X = X.astype(dtype)
    pipe, _ = build_recipe(recipe, layer_slices=SLICES)
    grid = {"clf__C": [0.01, 0.1, 1.0]}
    plain = run_search(pipe, grid, X, y, cv=3)
    fast = run_fast_search(pipe, grid, X, y, cv=3, patience=None, coarse_step=1,
                           search_tol=None)
    assert fast.extra["fold_rows"] == fold_rows
    assert fast.best_params == {"clf__C": pytest.approx(plain.best_params["clf__C"])}
    # the same fits up to float rounding (summation order): at most one image of a fold
    assert _scores(fast) == pytest.approx(_scores(plain), abs=1 / 133)
    assert np.mean(fast.best_estimator.predict(X) == plain.best_estimator.predict(X)) >= 0.99


def test_shared_rows_follow_a_splitter_whose_test_rows_overlap(digits):
    from sklearn.model_selection import ShuffleSplit

    X, y = digits
    pipe, grid = build_recipe(normalize="standard", classifier="linearsvc")
    cv = ShuffleSplit(3, test_size=0.3, random_state=0)  # test rows repeat and miss some
    plain = run_search(pipe, grid, X, y, cv=cv)
    fast = run_fast_search(pipe, grid, X, y, cv=cv, patience=None, coarse_step=1,
                           search_tol=None)
    assert fast.extra["fold_rows"] == "shared"
    assert _scores(fast) == pytest.approx(_scores(plain), abs=1 / 120)


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [1, 2, 3, 4, 0],
                                   [2, 0, 1, 4, 3]])
def test_rows_are_permuted_in_place(order):
    from featpipe.classical.sharedrows import _permute_rows

    X = np.arange(15, dtype=np.float32).reshape(5, 3)
    expected = X[order]
    _permute_rows(X, np.asarray(order))
    np.testing.assert_array_equal(X, expected)


# the grid is extended at the best edge, and the extension's runs must find the rows that the
# first run wrote over X
@pytest.mark.parametrize("grid", [{"clf__C": [0.01, 0.1, 1.0]}, {"clf__C": [1e-6, 1e-5]}])
def test_a_search_that_may_overwrite_X_gives_the_same_result(digits, grid):
    X, y = digits
    pipe, _ = build_recipe("l2", layer_slices=SLICES)
    config = SearchConfig(cv=3)
    kept = search(pipe, grid, X.copy(), y, config)
    own = X.copy()
    overwritten = search(pipe, grid, own, y, config, copy_X=False)
    assert overwritten.extra["fold_rows"] == "shared"
    assert not np.array_equal(own, X)  # the folds' shared matrix was X itself
    assert "grid_extended" in overwritten.extra
    assert overwritten.extra.get("grid_extended") == kept.extra.get("grid_extended")
    assert overwritten.best_params == kept.best_params
    assert _scores(overwritten) == _scores(kept)
    np.testing.assert_allclose(overwritten.best_estimator.decision_function(X),
                               kept.best_estimator.decision_function(X), rtol=1e-4, atol=1e-5)


def test_only_row_steps_that_keep_width_and_dtype_overwrite_X(digits):
    X, y = digits
    for recipe in ("fne", "linear-probe"):  # FNE's rows are int8; the probe has no such step
        pipe, grid = build_recipe(recipe, layer_slices=SLICES)
        own = X.copy()
        run_fast_search(pipe, {"clf__C": [0.1]}, own, y, cv=3, copy_X=False)
        np.testing.assert_array_equal(own, X)
