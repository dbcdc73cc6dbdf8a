"""featpipe.classical.recipes: recipe structure, accuracy on a small real dataset, parsing of
the command-line strings (featpipe.cli.parsing), errors."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from featpipe.errors import FeatpipeError
from featpipe.classical.classifiers import CLASSIFIERS, KORNBLITH_C_GRID, make_classifier
from featpipe.classical.transformers import ClippedUMAP
from featpipe.classical.recipes import RECIPES, Reduction, build_recipe
from featpipe.cli.parsing import (
    format_grid,
    format_reduce,
    parse_grid_overrides,
    parse_layers,
    parse_reduce,
)
from featpipe.classical.search import run_search
from featpipe.classical.transformers.reduction import ClippedPCA
from featpipe.classical.transformers.scaling import FNEDiscretizer, Standardizer
from featpipe.classical.transformers.layers import LayerL2Normalizer

# digits' 64 pixels posing as three "layers"
SLICES = {"top": (0, 24), "middle": (24, 40), "bottom": (40, 64)}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X.astype(np.float32), y, test_size=0.3, random_state=0, stratify=y)


def _steps(pipeline):
    return [name for name, _ in pipeline.steps]


def test_every_recipe_is_documented_and_has_a_grid():
    assert set(RECIPES) == {"fne", "l2", "linear-probe", "ridge", "pca-svm", "umap-knn"}
    for name, recipe in RECIPES.items():
        assert recipe.name == name and len(recipe.summary) > 20
        # the ridge probe tunes its own alpha (closed form): it needs no grid
        assert bool(recipe.default_grid) == (recipe.classifier != "ridge-probe")
        assert all(k.startswith("clf__") for k in recipe.default_grid)
        pipeline, grid = build_recipe(name, layer_slices=SLICES)
        assert grid == recipe.default_grid
        assert set(grid) <= set(pipeline.get_params())


def test_recipe_structures():
    fne, _ = build_recipe("fne", layer_slices=SLICES)
    assert _steps(fne) == ["normalize", "discretize", "clf"]
    assert isinstance(fne["normalize"], Standardizer)
    assert (fne["discretize"].high, fne["discretize"].low) == (0.15, -0.25)
    assert type(fne["clf"]).__name__ == "LBFGSLinearSVC"  # LinearSVC's objective, float32

    l2, _ = build_recipe("l2", layer_slices=SLICES)
    assert _steps(l2) == ["normalize", "clf"] and l2["normalize"].layer_slices == SLICES

    probe, _ = build_recipe("linear-probe")
    assert type(probe["clf"]).__name__ == "LBFGSLogisticRegression"  # multinomial, float32

    pca_svm, _ = build_recipe("pca-svm")
    assert _steps(pca_svm) == ["reduce", "clf"] and pca_svm["reduce"].n_components == 256


def test_linear_probe_grid_is_the_kornblith_sweep():
    assert len(KORNBLITH_C_GRID) == 45
    np.testing.assert_allclose(
        [KORNBLITH_C_GRID[0], KORNBLITH_C_GRID[-1]], [1e-5, 1e6]
    )  # C = 1/lambda
    np.testing.assert_allclose(np.diff(np.log10(KORNBLITH_C_GRID)), 11 / 44)


@pytest.mark.parametrize(
    "recipe, grid, minimum",
    [
        ("fne", None, 0.9),
        ("l2", None, 0.9),
        (
            "linear-probe",
            {"clf__C": KORNBLITH_C_GRID[12:36:4]},
            0.9,
        ),  # a slice of the sweep, for time
        ("pca-svm", None, 0.9),
    ],
)
def test_recipes_learn_digits(digits, recipe, grid, minimum):
    X_train, X_test, y_train, y_test = digits
    pipeline, default_grid = build_recipe(recipe, layer_slices=SLICES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LinearSVC convergence on raw pixels (pca-svm)
        result = run_search(pipeline, grid or default_grid, X_train, y_train, cv=3)
    accuracy = result.best_estimator.score(X_test, y_test)
    assert accuracy > minimum, (recipe, accuracy)


@pytest.mark.slow  # numba compiles UMAP on first use: ~30 s on 2 cores
def test_umap_knn_recipe(digits):
    X_train, X_test, y_train, y_test = digits
    pipeline, _ = build_recipe("umap-knn", reduce=Reduction("umap", 8))
    pipeline.fit(X_train[:400], y_train[:400])
    assert pipeline.score(X_test[:200], y_test[:200]) > 0.8
    assert pipeline["reduce"].n_components_ == 8


@pytest.mark.slow  # numba (UMAP)
def test_a_fitted_umap_knn_pipeline_saves_and_loads_with_skops(digits, tmp_path):
    from featpipe.classical.persist import load_model, save_model

    X_train, X_test, y_train, _ = digits
    pipeline, _ = build_recipe("umap-knn", reduce=Reduction("umap", 8))
    pipeline.fit(X_train[:300], y_train[:300])
    save_model(tmp_path / "m.skops", pipeline, provenance={}, training={"recipe": "umap-knn"})
    loaded, _, _ = load_model(tmp_path / "m.skops")
    np.testing.assert_array_equal(loaded.predict(X_test[:100]), pipeline.predict(X_test[:100]))


@pytest.mark.slow  # numba (UMAP)
def test_umap_fits_on_umap_learns_graph_and_embeds_new_samples_through_its_membership_graph():
    import umap
    from sklearn.manifold import trustworthiness

    from featpipe.classical.transformers.reduction import training_neighbors

    from sklearn.datasets import make_blobs

    # offset: float rounding of the distances makes some samples' distance to themselves > 0
    X, _ = make_blobs(n_samples=240, n_features=64, centers=4, center_box=(25, 35),
                      random_state=0)
    X, new = X[:200].astype(np.float32), X[200:]
    ours = ClippedUMAP(n_components=2, n_neighbors=10, random_state=0).fit(X)
    # below 4,096 samples umap-learn computes every distance: the exact neighbours' graph
    theirs = umap.UMAP(n_components=2, n_neighbors=10, n_epochs=200, random_state=0,
                       n_jobs=1).fit(X)
    given = umap.UMAP(n_components=2, n_neighbors=10, n_epochs=200, random_state=0, n_jobs=1,
                      precomputed_knn=training_neighbors(X, 10, "euclidean")).fit(X)
    np.testing.assert_allclose(given.graph_.toarray(), theirs.graph_.toarray(), atol=1e-5)
    # the layout's SGD amplifies the graph's float rounding: compare quality, not coordinates
    assert trustworthiness(X, ours.embedding_, n_neighbors=10) > \
        trustworthiness(X, theirs.embedding_, n_neighbors=10) - 0.02
    theirs.transform_mode = "graph"
    np.testing.assert_allclose(ours._membership_graph(new.astype(np.float32)).toarray(),
                               theirs.transform(new).toarray(), atol=1e-5)
    embedded = ours.transform(new)
    assert embedded.shape == (40, 2) and np.isfinite(embedded).all()


def test_umap_is_clipped_on_tiny_data():
    X = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    pipeline, _ = build_recipe("umap-knn")
    pipeline.fit(X, np.arange(8) % 2)
    assert pipeline["reduce"].n_neighbors_ == 7 and pipeline["reduce"].n_components_ == 6


def test_free_combination_and_layer_selection():
    pipeline, grid = build_recipe(
        layer_slices=SLICES,
        layers=["bottom", "top"],
        normalize="layer-l2",
        discretize=True,
        reduce=Reduction("pca", 16),
        classifier="ridge",
    )
    assert _steps(pipeline) == ["select", "normalize", "discretize", "reduce", "clf"]
    assert pipeline["normalize"].layer_slices == {"top": (0, 24), "bottom": (24, 48)}
    assert isinstance(pipeline["discretize"], FNEDiscretizer)
    assert isinstance(pipeline["reduce"], ClippedPCA) and pipeline["reduce"].n_components == 16
    assert list(grid) == ["clf__alpha"]
    X = np.random.default_rng(0).normal(size=(30, 64)).astype(np.float32)
    pipeline.fit(X, np.arange(30) % 3)
    assert pipeline[:-1].transform(X).shape == (30, 16)


def test_recipe_options_can_be_overridden():
    pipeline, grid = build_recipe("fne", classifier="logistic", reduce=Reduction("pca", 8))
    assert _steps(pipeline) == ["normalize", "discretize", "reduce", "clf"]
    assert type(pipeline["clf"]).__name__ == "LBFGSLogisticRegression"
    assert list(grid) == ["clf__C"] and len(grid["clf__C"]) == 7  # the classifier's grid
    pipeline, _ = build_recipe("fne", normalize="none", discretize=False)
    assert _steps(pipeline) == ["clf"]
    pipeline, _ = build_recipe(normalize="l2")
    assert (
        isinstance(pipeline["normalize"], LayerL2Normalizer)
        and pipeline["normalize"].layer_slices is None
    )


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_classifier_fits(name):
    X = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    pipeline, grid = build_recipe(classifier=name)
    assert bool(grid) == (name != "ridge-probe") and all(k.startswith("clf__") for k in grid)
    assert pipeline.fit(X, y).score(X, y) > 0.8


def test_grid_overrides_are_typed():
    grid = parse_grid_overrides(
        [
            "clf__C=0.1,1,1e3",
            "reduce__n_components=64, 128",
            "clf__class_weight=none,balanced",
            "clf__fit_intercept=true,False",
            "discretize__low=-0.5",
        ]
    )
    assert grid == {
        "clf__C": [0.1, 1, 1000.0],
        "reduce__n_components": [64, 128],
        "clf__class_weight": [None, "balanced"],
        "clf__fit_intercept": [True, False],
        "discretize__low": [-0.5],
    }
    assert type(grid["reduce__n_components"][0]) is int


@pytest.mark.parametrize(
    "item, message",
    [
        ("clf__C", "not of the form"),
        ("=1,2", "not of the form"),
        ("clf__C=", "not of the form"),
        ("C=1", "must name a step and a parameter"),
        ("clf__C=1,,2", "empty value"),
    ],
)
def test_bad_grid_overrides(item, message):
    with pytest.raises(FeatpipeError, match=message):
        parse_grid_overrides([item])


def test_parse_reduce():
    assert parse_reduce("pca:64") == Reduction("pca", 64)
    assert parse_reduce("UMAP:2") == Reduction("umap", 2)
    assert parse_reduce("pca") == Reduction("pca", 256)
    assert parse_reduce("none") is None and parse_reduce(None) is None
    for bad in ("tsne:2", "pca:0", "pca:x"):
        with pytest.raises(FeatpipeError):
            parse_reduce(bad)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"recipe": "fnee"}, "^`recipe` must be one of fne, l2, .* or None, got 'fnee'$"),
        ({"classifier": "xgboost"}, "^`classifier` must be one of .*, got 'xgboost'$"),
        ({"normalize": "minmax"}, "^`normalize` must be one of l2, .*, got 'minmax'$"),
        ({"reduce": "pca:16"}, "^`reduce` must be a Reduction, False or None, got 'pca:16'$"),
        ({"discretize": "yes"}, "^`discretize` must be a bool or None, got 'yes'$"),
        ({"layers": "top", "layer_slices": SLICES}, "`layers` must be a list of str or None"),
        ({"layers": ["top"]}, "needs layer_slices"),
        ({"layers": ["nope"], "layer_slices": SLICES}, "unknown layer"),
    ],
)
def test_build_recipe_errors(kwargs, message):
    with pytest.raises(FeatpipeError, match=message):
        build_recipe(**kwargs)


def test_make_classifier_rejects_unknown_names():
    message = ("`classifier` must be one of linearsvc, liblinear, svc, logistic, knn, ridge, "
               "ridge-probe, "
               "got 'forest'")
    with pytest.raises(FeatpipeError, match=message):
        make_classifier("forest")


def test_reduction_is_a_validated_value_object():
    assert Reduction("pca") == Reduction("pca", 256) and Reduction("umap").n_components == 32
    assert RECIPES["pca-svm"].reduce == Reduction("pca", 256)
    assert RECIPES["fne"].reduce is None
    with pytest.raises(FeatpipeError, match="^`method` must be one of pca, umap, got 'tsne'$"):
        Reduction("tsne")
    with pytest.raises(FeatpipeError, match="^`n_components` must be an int >= 1, got 0$"):
        Reduction("pca", 0)
    with pytest.raises(AttributeError):
        Reduction("pca").n_components = 3  # frozen


def test_build_recipe_with_a_reduction_or_none():
    pipeline, grid = build_recipe("fne", reduce=Reduction("umap", 4))
    assert _steps(pipeline) == ["normalize", "discretize", "reduce", "clf"]
    assert pipeline["reduce"].n_components == 4 and list(grid) == ["clf__C"]
    pipeline, _ = build_recipe("pca-svm", reduce=False)  # removes the recipe's reduction
    assert _steps(pipeline) == ["clf"]
    pipeline, _ = build_recipe("pca-svm", reduce=None)  # keeps it
    assert _steps(pipeline) == ["reduce", "clf"]


def test_cli_strings_round_trip():
    for text in ("pca:64", "umap:8"):
        assert format_reduce(parse_reduce(text)) == text
    assert format_reduce(parse_reduce("none")) == "none"
    grid = {"clf__C": [0.001, 1, 100.0], "clf__class_weight": [None, "balanced"],
            "clf__fit_intercept": [True, False]}
    assert parse_grid_overrides(format_grid(grid)) == grid
    assert parse_layers("a, b,") == ["a", "b"] and parse_layers("all") == "all"
    assert parse_layers(None) is None


@pytest.mark.slow  # numba (UMAP)
# sqeuclidean is pynndescent's, not umap-learn's: that metric goes through umap.UMAP itself
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "sqeuclidean"])
def test_umap_embedding_is_umap_learns_for_the_same_neighbours(metric):
    import umap

    from featpipe.classical.transformers.reduction import training_neighbors

    # two far clusters: the graph has several components (the spectral layout reads X)
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(150, 20)), rng.normal(5, 1, size=(100, 20))])
    X = X.astype(np.float32)
    ours = ClippedUMAP(n_components=3, n_neighbors=10, metric=metric, random_state=0).fit(X)
    theirs = umap.UMAP(n_components=3, n_neighbors=10, metric=metric, n_epochs=200,
                       random_state=0, n_jobs=1,
                       precomputed_knn=training_neighbors(X, 10, metric)).fit_transform(X)
    np.testing.assert_array_equal(ours.embedding_, np.asarray(theirs, dtype=np.float32))
    assert ours.X_fit_ is X  # its training rows, not a copy
