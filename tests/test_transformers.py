"""featpipe.transformers: scikit-learn conformance, exact maths, zero variance, array API."""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from featpipe.errors import FeatpipeError
from featpipe.classical.transformers.reduction import ClippedPCA, ClippedUMAP
from featpipe.classical.transformers.scaling import FNEDiscretizer, Standardizer, feature_statistics
from featpipe.classical.transformers.layers import LayerL2Normalizer, LayerSelector, select_layer_slices

SLICES = {"conv1": (0, 3), "conv2": (3, 7), "fc": (7, 9)}


def _rng_X(n=40, d=9, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize(
    "estimator",
    [
        LayerSelector(),
        LayerL2Normalizer(),
        Standardizer(),
        FNEDiscretizer(),
        ClippedPCA(n_components=3),
    ],
    ids=lambda e: type(e).__name__,
)
def test_check_estimator(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped array-API namespaces (cupy, ...) warn
        check_estimator(estimator)


@pytest.mark.slow  # numba compiles UMAP on first use (~20 s on 2 cores, shared with test_recipes)
def test_check_estimator_umap():
    batch_dependent = "UMAP embeds new samples jointly, so a sample's embedding depends on its batch"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(
            ClippedUMAP(n_components=2, random_state=0),
            expected_failed_checks={
                "check_methods_sample_order_invariance": batch_dependent,
                "check_methods_subset_invariance": batch_dependent,
            },
        )


# --------------------------------------------------------------------------- FNE


def test_fne_thresholds_are_exact_and_strict():
    X = np.array([[0.15, 0.1500001, 0.2, -0.25, -0.2500001, -0.3, 0.0, -0.1]], dtype=np.float32)
    out = FNEDiscretizer().fit_transform(X)
    assert out.tolist() == [[0, 1, 1, 0, -1, -1, 0, 0]]
    assert out.dtype == np.float32


def test_fne_thresholds_are_parameters():
    X = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0]])
    out = FNEDiscretizer(high=1.0, low=-1.0).fit_transform(X)
    assert out.tolist() == [[-1, 0, 0, 0, 1]]
    assert out.dtype == np.float64
    assert FNEDiscretizer(high=0.0, low=0.0).fit_transform(X).tolist() == [[-1, -1, 0, 1, 1]]


def test_fne_refuses_low_above_high():
    with pytest.raises(FeatpipeError, match="low=0.5 exceeds high=0.1"):
        FNEDiscretizer(high=0.1, low=0.5).fit(_rng_X())


# --------------------------------------------------------------------------- standardizer


def test_standardizer_matches_sklearn_and_keeps_float32():
    X = _rng_X() * 3 + 1
    ours = Standardizer().fit(X)
    ref = StandardScaler().fit(X.astype(np.float64))
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-6)
    np.testing.assert_allclose(ours.scale_, ref.scale_, rtol=1e-6)
    out = ours.transform(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref.transform(X), atol=1e-5)


def test_zero_variance_features_become_zero_never_nan():
    train = _rng_X()
    train[:, 2] = 7.0  # constant
    train[:, 5] = 0.0  # constant zero (dead ReLU channel)
    test = _rng_X(seed=1) * 5  # the constant columns vary at test time
    scaler = Standardizer().fit(train)
    assert scaler.scale_[2] == 0 and scaler.scale_[5] == 0
    for X in (train, test):
        out = scaler.transform(X)
        assert np.isfinite(out).all()
        assert (out[:, [2, 5]] == 0).all()
    assert np.abs(scaler.transform(test)[:, [0, 1, 3]]).max() > 1  # other columns are not zeroed


def test_standardizer_uses_training_statistics_only():
    train, test = _rng_X(seed=0), _rng_X(seed=1) + 10.0  # the test set is shifted
    out = Standardizer().fit(train).transform(test)
    expected = (test - train.mean(axis=0)) / train.std(axis=0)
    np.testing.assert_allclose(out, expected, rtol=1e-4)
    assert out.mean() > 5  # a leaking (re-fitted) standardizer would centre the test set at 0


def test_standardizer_takes_precomputed_statistics_from_another_pool():
    pool, train = _rng_X(n=200, seed=3) * 2 + 1, _rng_X(seed=4)
    statistics = feature_statistics(pool)
    scaler = Standardizer(statistics=statistics).fit(train)
    np.testing.assert_allclose(scaler.mean_, pool.mean(axis=0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(
        scaler.transform(train), (train - pool.mean(0)) / pool.std(0), rtol=1e-4, atol=1e-5
    )
    from sklearn.base import clone

    assert (
        clone(scaler).get_params()["statistics"][0] is not statistics[0]
    )  # clone copies, no sharing


def test_standardizer_rejects_bad_statistics():
    with pytest.raises(FeatpipeError, match="but X has 9 features"):
        Standardizer(statistics=(np.zeros(3), np.ones(3))).fit(_rng_X())
    with pytest.raises(FeatpipeError, match=r"\(mean, scale\) pair"):
        Standardizer(statistics=np.zeros(9)).fit(_rng_X())
    with pytest.raises(FeatpipeError, match="negative"):
        Standardizer(statistics=(np.zeros(9), -np.ones(9))).fit(_rng_X())


def test_feature_statistics_is_chunked_and_exact(monkeypatch):
    import featpipe.classical.transformers.scaling as transformers

    monkeypatch.setattr(transformers, "_STATISTICS_CHUNK_ROWS", 7)  # several chunks
    X = _rng_X(n=50) * 1000 + 1e4
    mean, scale = feature_statistics(X)
    np.testing.assert_allclose(mean, X.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(scale, X.astype(np.float64).std(0), rtol=1e-9)


# --------------------------------------------------------------------------- layers


def test_layer_l2_normalizes_each_block_and_keeps_zero_blocks():
    X = _rng_X(n=5)
    X[0, 3:7] = 0.0
    out = LayerL2Normalizer(SLICES).fit_transform(X)
    assert out.dtype == np.float32
    for name, (a, b) in SLICES.items():
        norms = np.linalg.norm(out[:, a:b], axis=1)
        expected = np.ones(5)
        if name == "conv2":
            expected[0] = 0.0
        np.testing.assert_allclose(norms, expected, rtol=1e-6)
    np.testing.assert_allclose(out[1, :3], X[1, :3] / np.linalg.norm(X[1, :3]), rtol=1e-6)


def test_layer_l2_without_slices_normalizes_the_whole_row():
    out = LayerL2Normalizer().fit_transform(_rng_X(n=4))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "slices, message",
    [
        ({"a": (0, 3), "b": (4, 9)}, "must start at column 3"),
        ({"a": (0, 3), "b": (3, 8)}, "cover 8 columns but X has 9"),
        ({}, "non-empty mapping"),
    ],
)
def test_layer_slices_must_tile_the_columns(slices, message):
    with pytest.raises(FeatpipeError, match=message):
        LayerL2Normalizer(slices).fit(_rng_X())


def test_layer_selector_picks_layers_in_store_order():
    X = np.arange(18, dtype=np.float32).reshape(2, 9)
    selector = LayerSelector(["fc", "conv1"], SLICES).fit(X)
    assert selector.transform(X).tolist() == [[0, 1, 2, 7, 8], [9, 10, 11, 16, 17]]
    assert selector.layer_slices_ == {"conv1": (0, 3), "fc": (3, 5)}
    assert list(selector.get_feature_names_out())[-2:] == ["fc:0", "fc:1"]
    assert LayerSelector(None, SLICES).fit(X).transform(X) is not None


def test_layer_selector_errors_name_the_problem():
    X = _rng_X()
    with pytest.raises(
        FeatpipeError, match=r"unknown layer\(s\) 'fc2'; available: conv1, conv2, fc"
    ):
        LayerSelector(["fc2"], SLICES).fit(X)
    with pytest.raises(FeatpipeError, match="needs layer_slices"):
        LayerSelector(["fc"]).fit(X)
    with pytest.raises(FeatpipeError, match="twice"):
        select_layer_slices(SLICES, ["fc", "fc"])


def test_clipped_pca_clips_to_the_data():
    pca = ClippedPCA(n_components=256).fit(_rng_X(n=12, d=9))
    assert pca.n_components_ == 9
    assert pca.transform(_rng_X(n=3, d=9)).shape == (3, 9)
    assert ClippedPCA(n_components=256).fit(_rng_X(n=6, d=9)).n_components_ == 6
    with pytest.raises(FeatpipeError, match="positive integer"):
        ClippedPCA(n_components=0).fit(_rng_X())


def test_clipped_pca_full_solver_without_copy_overwrites_its_input_and_projects_alike():
    import tracemalloc

    from sklearn.decomposition import PCA

    X = _rng_X(n=2000, d=100) + 3.0
    expected = PCA(5, svd_solver="full", random_state=0).fit_transform(X)
    for copy in (True, False):
        own = X.copy()
        projected = ClippedPCA(5, svd_solver="full", random_state=0, copy=copy).fit_transform(own)
        np.testing.assert_allclose(projected, expected, rtol=1e-3, atol=1e-3)
        assert np.array_equal(own, X) == copy  # the default leaves its input alone


@pytest.mark.parametrize("shape", [(4000, 100), (60, 700)])  # both orientations of the range
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("whiten", [False, True])
def test_clipped_pca_randomized_equals_sklearn_without_copying_its_input(shape, dtype, whiten):
    import tracemalloc

    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    scales = np.r_[10.0, 8.0, 6.0, 4.0, 2.0, np.full(shape[1] - 5, 0.1)]  # a clear top 5
    X = (rng.normal(size=shape) * scales + 3.0).astype(dtype)
    reference = PCA(5, svd_solver="randomized", random_state=0, whiten=whiten)
    expected = reference.fit_transform(X.copy())
    for solver in ("randomized", "auto"):  # auto: randomized on both shapes
        own = X.copy()
        tracemalloc.start()
        pca = ClippedPCA(5, svd_solver=solver, random_state=0, whiten=whiten)
        projected = pca.fit_transform(own)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert np.array_equal(own, X)
        if shape == (4000, 100):
            assert peak < 0.5 * X.nbytes  # no centred copy
        rtol = 1e-3 if dtype == np.float32 else 1e-8
        np.testing.assert_allclose(projected, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
        np.testing.assert_allclose(pca.transform(X[:7]), reference.transform(X[:7]),
                                   rtol=rtol, atol=rtol * np.abs(expected).max())
        for name in ("components_", "mean_", "explained_variance_", "explained_variance_ratio_",
                     "singular_values_", "noise_variance_"):
            np.testing.assert_allclose(getattr(pca.pca_, name), getattr(reference, name),
                                       rtol=rtol, atol=rtol, err_msg=name)
        assert pca.pca_.components_.dtype == reference.components_.dtype


def test_clipped_pca_fit_transform_rows_reads_the_rows_in_place():
    import tracemalloc

    rng = np.random.default_rng(1)
    X = (rng.normal(size=(16000, 256)) * np.r_[9.0, 7.0, 5.0, np.full(253, 0.2)] + 1.0
         ).astype(np.float32)
    rows = np.sort(rng.choice(len(X), size=12000, replace=False))
    expected_pca = ClippedPCA(3, svd_solver="randomized", random_state=0)
    expected = expected_pca.fit_transform(X[rows])
    before = X.copy()
    tracemalloc.start()
    pca = ClippedPCA(3, svd_solver="randomized", random_state=0)
    projected = pca.fit_transform_rows(X, rows)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(X, before)
    assert peak < 0.5 * X[rows].nbytes  # blocks of rows and thin matrices, never the rows
    np.testing.assert_allclose(projected, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(pca.pca_.components_, expected_pca.pca_.components_, atol=1e-5)
    small = ClippedPCA(3, svd_solver="full").fit_transform_rows(X[:50], np.arange(0, 50, 2))
    np.testing.assert_allclose(small, ClippedPCA(3, svd_solver="full").fit_transform(X[:50:2]),
                               atol=1e-5)


# --------------------------------------------------------------------------- array API

ARRAY_API_SCRIPT = textwrap.dedent(
    """
    import numpy as np, torch, sklearn
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.utils.estimator_checks import check_array_api_input
    from featpipe.classical.transformers import *

    ten = {"a": (0, 4), "b": (4, 10)}  # sklearn's check uses 10 features
    for est in [LayerSelector(["b"], ten), LayerL2Normalizer(ten), Standardizer(),
                FNEDiscretizer(), ClippedPCA(5, svd_solver="full")]:
        for dtype in ("float32", "float64"):
            check_array_api_input(type(est).__name__, est, "torch", "cpu", dtype, check_values=True)

    slices = {"a": (0, 10), "b": (10, 24), "c": (24, 40)}

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    X = (rng.normal(size=(120, 40)) + y[:, None] * 0.3).astype(np.float32)
    pipelines = {
        "fne": lambda: make_pipeline(
            LayerSelector(["a", "c"], slices), Standardizer(), FNEDiscretizer(),
            PCA(8, svd_solver="full"), LogisticRegression(max_iter=300)),
        "l2": lambda: make_pipeline(
            LayerL2Normalizer(slices), StandardScaler(), LogisticRegression(max_iter=300)),
    }
    for name, build in pipelines.items():
        ref = build().fit(X, y)
        with sklearn.config_context(array_api_dispatch=True):
            Xt = torch.asarray(X)
            yt = torch.asarray(y)
            fitted = build().fit(Xt, yt)
            features = fitted[:-1].transform(Xt)
            proba = fitted.predict_proba(Xt)
        assert isinstance(features, torch.Tensor), (name, type(features))
        assert features.dtype == torch.float32, (name, features.dtype)
        np.testing.assert_allclose(features.numpy(), ref[:-1].transform(X), atol=2e-4)
        np.testing.assert_allclose(proba.numpy(), ref.predict_proba(X), atol=2e-3)
        print(name, "ok")
    """
)


def test_array_api_on_cpu_torch_matches_numpy():
    pytest.importorskip("torch")
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", ARRAY_API_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["fne", "ok", "l2", "ok"]


# --------------------------------------------------------------------------- partial_fit


@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_partial_fit_over_chunks_equals_fit(chunk):
    X = _rng_X(n=103, d=9, seed=5) * 1000 + 1e4  # a large offset: naive sums would drift
    X[:, 2] = 7.0  # constant everywhere
    X[:, 4] = np.repeat([1.0, 2.0], [51, 52])  # constant within early chunks, not overall
    whole = Standardizer().fit(X)
    scaler = Standardizer()
    for start in range(0, len(X), chunk):
        assert scaler.partial_fit(X[start:start + chunk]) is scaler
    assert scaler.n_samples_seen_ == whole.n_samples_seen_ == 103
    np.testing.assert_allclose(scaler.mean_, whole.mean_, rtol=1e-6)
    np.testing.assert_allclose(scaler.var_, whole.var_, rtol=1e-6)
    np.testing.assert_allclose(scaler.scale_, whole.scale_, rtol=1e-6)
    assert scaler.scale_[2] == 0 and scaler.scale_[4] > 0
    np.testing.assert_allclose(scaler.transform(X), whole.transform(X), atol=1e-6)
    reference = StandardScaler()
    for start in range(0, len(X), chunk):
        reference.partial_fit(X[start:start + chunk].astype(np.float64))
    np.testing.assert_allclose(scaler.var_, reference.var_, rtol=1e-6)


def test_fit_resets_what_partial_fit_learned():
    first, second = _rng_X(seed=1) + 5, _rng_X(n=20, seed=2)
    scaler = Standardizer().partial_fit(first).partial_fit(first)
    assert scaler.n_samples_seen_ == 80
    scaler.fit(second)
    assert scaler.n_samples_seen_ == 20
    np.testing.assert_allclose(scaler.mean_, second.mean(0, dtype=np.float64), rtol=1e-6)
    with pytest.raises(ValueError, match="X has 3 features"):
        scaler.partial_fit(second[:, :3])
    Standardizer().partial_fit(second[:, :3])  # a fresh one takes any width


def test_partial_fit_with_given_statistics_keeps_them():
    statistics = feature_statistics(_rng_X(n=200, seed=3) * 2 + 1)
    scaler = Standardizer(statistics=statistics).partial_fit(_rng_X(seed=4))
    scaler.partial_fit(_rng_X(n=5, seed=6))
    assert scaler.n_samples_seen_ == 45
    np.testing.assert_array_equal(scaler.mean_, statistics[0])
    np.testing.assert_array_equal(scaler.scale_, statistics[1])
    np.testing.assert_array_equal(scaler.var_, statistics[1] ** 2)


PARTIAL_FIT_ARRAY_API_SCRIPT = textwrap.dedent(
    """
    import numpy as np, sklearn, torch
    from featpipe.classical.transformers.scaling import Standardizer

    X = (np.random.default_rng(0).normal(size=(60, 10)) * 100 + 50).astype(np.float32)
    reference = Standardizer().fit(X)
    with sklearn.config_context(array_api_dispatch=True):
        Xt = torch.asarray(X)
        scaler = Standardizer()
        for start in range(0, 60, 16):
            scaler.partial_fit(Xt[start:start + 16])
        out = scaler.transform(Xt)
    assert isinstance(scaler.mean_, torch.Tensor) and scaler.mean_.dtype == torch.float64
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(scaler.scale_.numpy(), reference.scale_, rtol=1e-6)
    np.testing.assert_allclose(out.numpy(), reference.transform(X), atol=1e-5)
    print("ok")
    """
)


def test_partial_fit_on_cpu_torch_matches_numpy():
    pytest.importorskip("torch")
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", PARTIAL_FIT_ARRAY_API_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok"]
