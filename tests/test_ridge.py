"""RidgeProbeClassifier: a scikit-learn estimator whose closed-form CV scores and fits equal
scikit-learn's Ridge/RidgeClassifier fitted alpha by alpha and fold by fold."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import Ridge, RidgeClassifier
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.estimator_checks import parametrize_with_checks

from featpipe.classical import ridge
from featpipe.classical.ridge import DEFAULT_ALPHAS, RidgeProbeClassifier, _RidgePath

ALPHAS = np.logspace(-3, 4, 8)


def make_data(n, p, n_classes, seed=0, dtype=np.float64):
    """Unstandardized features with offsets (the intercept matters) and some class signal."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    X = rng.standard_normal((n, p)) * rng.uniform(0.5, 3.0, p) + rng.uniform(-2.0, 5.0, p)
    X[:, : min(p, 3)] += 0.8 * y[:, None]
    return X.astype(dtype), y


def one_vs_rest(y):
    classes = np.unique(y)
    Y = np.where(y[:, None] == classes[None, :], 1.0, -1.0)
    return Y[:, 1:] if len(classes) == 2 else Y


@parametrize_with_checks([RidgeProbeClassifier(), RidgeProbeClassifier(cv=3)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# (n, p): rows > features (covariance path) and rows < features (Gram path), 2 and 3 classes.
# normal matrices of even and odd order, primal and dual (the refit's packed Cholesky)
SHAPES = [(90, 12, 3), (60, 150, 3), (50, 20, 2), (40, 120, 2), (91, 13, 3), (61, 151, 2)]


@pytest.mark.parametrize("test_rows", [256, 4])  # held-out rows scored at once, or in parts
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("n,p,n_classes", SHAPES)
def test_kfold_equals_ridgeclassifier_per_alpha_and_fold(n, p, n_classes, fit_intercept,
                                                         test_rows, monkeypatch):
    monkeypatch.setattr(ridge, "TEST_ROWS", test_rows)
    X, y = make_data(n, p, n_classes, seed=n + p)
    clf = RidgeProbeClassifier(ALPHAS, cv=4, random_state=3, fit_intercept=fit_intercept)
    clf.fit(X, y)
    folds = list(StratifiedKFold(4, shuffle=True, random_state=3).split(X, y))
    assert clf.cv_scores_.shape == (len(ALPHAS), 4)
    Y = one_vs_rest(y)
    for j, (train, test) in enumerate(folds):
        path = _RidgePath(X, Y, train, fit_intercept, "tridiagonal")
        refs = [RidgeClassifier(alpha=alpha, fit_intercept=fit_intercept, solver="svd")
                .fit(X[train], y[train]) for alpha in ALPHAS]
        scored = np.zeros(len(ALPHAS), dtype=int)
        for i, part, decision in path.decisions(test, ALPHAS):
            rows = test[part]
            expected = refs[i].decision_function(X[rows]).reshape(decision.shape)
            np.testing.assert_allclose(decision, expected, rtol=1e-7, atol=1e-9)
            scored[i] += len(rows)
        assert (scored == len(test)).all()
        for i, ref in enumerate(refs):
            assert clf.cv_scores_[i, j] == np.mean(ref.predict(X[test]) == y[test])
    # Refit on all rows with the chosen alpha.
    ref = RidgeClassifier(alpha=clf.alpha_, fit_intercept=fit_intercept, solver="svd").fit(X, y)
    np.testing.assert_allclose(clf.coef_, ref.coef_.reshape(clf.coef_.shape), rtol=1e-7, atol=1e-10)
    intercept = np.broadcast_to(ref.intercept_, clf.intercept_.shape)
    np.testing.assert_allclose(clf.intercept_, intercept, atol=1e-9)
    np.testing.assert_allclose(clf.decision_function(X), ref.decision_function(X), atol=1e-8)


@pytest.mark.parametrize("m", [1, 2, 3, 6, 7])
def test_packed_diagonal_is_lapacks_layout(m):
    from scipy.linalg.lapack import dtrttf

    packed, info = dtrttf(np.asfortranarray(np.diag(np.arange(1.0, m + 1))), transr="N",
                          uplo="L")
    assert info == 0
    np.testing.assert_array_equal(packed[ridge._packed_diagonal(m)], np.arange(1.0, m + 1))


def test_balanced_accuracy_scores_each_fold():
    X, y = make_data(80, 10, 3, seed=5)
    y[y == 2] = np.where(np.arange((y == 2).sum()) % 3 == 0, 2, 0)  # imbalanced classes
    clf = RidgeProbeClassifier(ALPHAS, cv=3, random_state=0, scoring="balanced_accuracy")
    clf.fit(X, y)
    for j, (train, test) in enumerate(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y)):
        for i, alpha in enumerate(ALPHAS):
            ref = RidgeClassifier(alpha=alpha, solver="svd").fit(X[train], y[train])
            pred = ref.predict(X[test])
            assert clf.cv_scores_[i, j] == pytest.approx(balanced_accuracy_score(y[test], pred))


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("n,p,n_classes", [(24, 6, 3), (20, 40, 3), (18, 5, 2), (16, 30, 2)])
def test_leave_one_out_equals_brute_force(n, p, n_classes, fit_intercept):
    X, y = make_data(n, p, n_classes, seed=7 * n + p)
    Y = one_vs_rest(y)
    brute = np.empty((len(ALPHAS), n, Y.shape[1]))
    for k in range(n):
        keep = np.arange(n) != k
        for i, alpha in enumerate(ALPHAS):
            ridge = Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd")
            brute[i, k] = ridge.fit(X[keep], Y[keep]).predict(X[k : k + 1])
    path = _RidgePath(X, Y, np.arange(n), fit_intercept, "eigen")
    loo = np.empty_like(brute)
    for i, rows, decision in path.loo_decisions(ALPHAS):
        loo[i, rows] = decision
    np.testing.assert_allclose(loo, brute, rtol=1e-7, atol=1e-8)
    clf = RidgeProbeClassifier(ALPHAS, fit_intercept=fit_intercept).fit(X, y)
    labels = brute[..., 0] > 0 if Y.shape[1] == 1 else brute.argmax(axis=2)
    np.testing.assert_array_equal(clf.cv_scores_[:, 0], (labels == y).mean(axis=1))
    ref = RidgeClassifier(alpha=clf.alpha_, fit_intercept=fit_intercept, solver="svd").fit(X, y)
    np.testing.assert_allclose(clf.decision_function(X), ref.decision_function(X), atol=1e-8)


def test_alpha_selection_ties_and_edges():
    rng = np.random.default_rng(0)
    y = np.arange(80) % 2
    X = rng.standard_normal((80, 6))
    X[:, 0] = (2 * y - 1) * 1e-3 + 1e-4 * rng.standard_normal(80)  # tiny-scale, informative
    low = RidgeProbeClassifier(np.logspace(-4, 4, 9), cv=4).fit(X, y)
    assert low.alpha_ == 1e-4 and low.alpha_at_edge_  # any shrinkage drowns column 0
    assert low.best_score_ == low.cv_scores_[0].mean() > low.cv_scores_[1:].mean(axis=1).max()
    # Extending the grid below the edge: the plateau of best scores ends inside it; ties go
    # to the largest alpha, so the choice is interior.
    wide = RidgeProbeClassifier(np.logspace(-8, 4, 13), cv=4).fit(X, y)
    means = wide.cv_scores_.mean(axis=1)
    best = np.flatnonzero(means == means.max())
    assert wide.alpha_ == wide.alphas_[best[-1]] and not wide.alpha_at_edge_
    # Pure noise, 80/20 classes: only heavy shrinkage (predict the majority class) is best.
    noise = rng.standard_normal((50, 100))
    y_noise = (np.arange(50) % 5 == 0).astype(int)
    high = RidgeProbeClassifier(np.logspace(-4, 4, 9), cv=5).fit(noise, y_noise)
    assert high.alpha_ == 1e4 and high.alpha_at_edge_ and high.best_score_ == pytest.approx(0.8)


def test_alphas_are_sorted_and_deduplicated():
    X, y = make_data(40, 5, 2)
    clf = RidgeProbeClassifier([10.0, 0.1, 1.0, 0.1], cv=2).fit(X, y)
    np.testing.assert_array_equal(clf.alphas_, [0.1, 1.0, 10.0])
    assert clf.cv_scores_.shape == (3, 2)
    assert RidgeProbeClassifier(5.0).fit(X, y).alpha_ == 5.0  # one alpha: a plain ridge fit
    assert len(DEFAULT_ALPHAS) == 45
    assert RidgeProbeClassifier().fit(X, y).cv_scores_.shape == (45, 1)


def test_binary_with_string_labels():
    X, y = make_data(60, 8, 2)
    labels = np.array(["cat", "dog"])[y]
    clf = RidgeProbeClassifier(cv=3).fit(X, labels)
    assert clf.coef_.shape == (1, 8) and clf.intercept_.shape == (1,)
    decision = clf.decision_function(X)
    assert decision.shape == (60,)
    np.testing.assert_array_equal(clf.predict(X), np.where(decision > 0, "dog", "cat"))
    assert set(clf.classes_) == {"cat", "dog"}


def test_multiclass_digits():
    X, y = load_digits(return_X_y=True)
    clf = RidgeProbeClassifier(cv=5).fit(X[:1000], y[:1000])
    assert clf.coef_.shape == (10, 64) and clf.decision_function(X).shape == (len(y), 10)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[clf.decision_function(X).argmax(1)])
    assert clf.score(X[1000:], y[1000:]) > 0.85


@pytest.mark.parametrize("cv", [None, 3])
def test_float32_input_is_kept_and_agrees_with_float64(cv):
    X, y = make_data(60, 100, 3, seed=2, dtype=np.float32)
    clf32 = RidgeProbeClassifier(ALPHAS, cv=cv).fit(X, y)
    clf64 = RidgeProbeClassifier(ALPHAS, cv=cv).fit(X.astype(np.float64), y)
    assert clf32.coef_.dtype == np.float32 and clf32.intercept_.dtype == np.float32
    np.testing.assert_array_equal(clf32.cv_scores_, clf64.cv_scores_)
    np.testing.assert_allclose(clf32.coef_, clf64.coef_, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"alphas": [1.0, -1.0]}, "positive"),
        ({"alphas": [0.0, 1.0]}, "positive"),
        ({"alphas": []}, "positive"),
        ({"alphas": [1.0, np.inf]}, "positive"),
        ({"alphas": -1.0}, "alphas"),
        ({"scoring": "f1"}, "scoring"),
        ({"cv": 1}, "cv"),
        ({"fit_intercept": "yes"}, "fit_intercept"),
    ],
)
def test_bad_parameters_raise(params, message):
    X, y = make_data(30, 4, 2)
    with pytest.raises(ValueError, match=message):
        RidgeProbeClassifier(**params).fit(X, y)


def test_one_class_raises():
    X, _ = make_data(10, 3, 2)
    with pytest.raises(ValueError, match="2 classes"):
        RidgeProbeClassifier().fit(X, np.zeros(10))


def test_leave_one_out_splitter_agrees_with_closed_form_loo():
    from sklearn.model_selection import LeaveOneOut

    X, y = make_data(21, 30, 3, seed=11)
    closed = RidgeProbeClassifier(ALPHAS).fit(X, y)
    folds = RidgeProbeClassifier(ALPHAS, cv=LeaveOneOut()).fit(X, y)  # one "tridiagonal" per row
    assert folds.cv_scores_.shape == (len(ALPHAS), 21)
    np.testing.assert_allclose(folds.cv_scores_.mean(axis=1), closed.cv_scores_[:, 0])
    assert folds.alpha_ == closed.alpha_
    np.testing.assert_allclose(folds.coef_, closed.coef_, rtol=1e-7, atol=1e-10)


def test_fit_rows_equals_fit_on_the_standardized_rows():
    from featpipe.classical.transformers import Standardizer

    X, y = make_data(120, 15, 3, seed=5, dtype=np.float32)
    rows = np.sort(np.random.default_rng(0).choice(120, 90, replace=False))
    scaler = Standardizer().fit(X[rows])
    in_place = RidgeProbeClassifier(ALPHAS, cv=3).fit_rows(X, y, rows, scaler.affine())
    copied = RidgeProbeClassifier(ALPHAS, cv=3).fit(scaler.transform(X[rows]), y[rows])
    np.testing.assert_array_equal(in_place.cv_scores_, copied.cv_scores_)
    assert in_place.alpha_ == copied.alpha_ and in_place.coef_.dtype == np.float32
    np.testing.assert_allclose(in_place.coef_, copied.coef_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(in_place.intercept_, copied.intercept_, rtol=1e-4, atol=1e-6)


def test_closed_form_search_folds_the_standardizer_into_the_fit(monkeypatch):
    from featpipe.classical.recipes import build_recipe
    from featpipe.classical.search import SearchConfig, search
    from featpipe.classical.transformers import Standardizer

    X, y = make_data(150, 20, 3, seed=9, dtype=np.float32)
    pipe, grid = build_recipe("ridge")
    expected = pipe.set_params(clf__cv=5, clf__random_state=0).fit(X, y)  # the search's folds
    transformed = []
    real = Standardizer.transform
    monkeypatch.setattr(Standardizer, "transform",
                        lambda self, Z: transformed.append(len(Z)) or real(self, Z))
    result = search(build_recipe("ridge")[0], grid, X, y, SearchConfig(extend_grid=False))
    assert transformed == []  # no standardized copy of X
    clf = result.best_estimator.named_steps["clf"]
    np.testing.assert_array_equal(clf.cv_scores_, expected.named_steps["clf"].cv_scores_)
    assert clf.alpha_ == expected.named_steps["clf"].alpha_
    np.testing.assert_allclose(clf.coef_, expected.named_steps["clf"].coef_, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_array_equal(result.best_estimator.predict(X), expected.predict(X))
