"""Named pipelines ("recipes") and free combinations of featpipe steps.

Every pipeline uses the same step names so that grids are predictable: ``select``,
``normalize``, ``discretize``, ``reduce``, ``clf`` (unused steps are omitted).

- ``fne``: standardize -> FNE discretize -> LinearSVC; grid over ``clf__C``.
- ``l2``: per-layer L2 -> LinearSVC; grid over ``clf__C``.
- ``linear-probe``: standardize -> LogisticRegression (lbfgs, multinomial); 45 values of ``clf__C``.
- ``pca-svm``: PCA(256) -> LinearSVC (the seed tutorial's notebook); grid over ``clf__C``.
- ``umap-knn``: UMAP(32) -> k-nearest neighbours; grid over ``clf__n_neighbors``.

Example
-------
>>> pipe, grid = build_recipe("fne", layer_slices={"a": (0, 32), "b": (32, 64)})
>>> [name for name, _ in pipe.steps]
['normalize', 'discretize', 'clf']
>>> sorted(grid)
['clf__C']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from typing import TYPE_CHECKING

from featpipe.classical.classifiers import CLASSIFIERS, KORNBLITH_C_GRID, _logspace, make_classifier
from featpipe.errors import FeatpipeError

if TYPE_CHECKING:  # scikit-learn is imported when a pipeline is built: listing recipes is quick
    from sklearn.pipeline import Pipeline
from featpipe.params import Interval, Options, SequenceOf, validate

NORMALIZERS = ("l2", "layer-l2", "standard", "none")
REDUCERS = ("pca", "umap")
DEFAULT_REDUCE_COMPONENTS = {"pca": 256, "umap": 32}
# Re-chosen from benchmarks/results/classical-*.md: on 3k and 12k Fashion-MNIST stores FNE and
# standardized full-network features chose C = 1e-3 every time (the grid then started there, so
# each search also extended it to 1e-4, which lost), and the earlier real-data runs picked the
# smallest C in 15 of 16 fits; C = 10 was never chosen and is the slowest fit.
SMALL_C_GRID = _logspace(-4, 0)
CLASSIFIER_GRIDS: dict[str, dict[str, list]] = {
    "linearsvc": {"clf__C": SMALL_C_GRID},
    "liblinear": {"clf__C": _logspace(-3, 1)},
    "svc": {"clf__C": _logspace(-1, 2), "clf__gamma": ["scale"]},
    "logistic": {"clf__C": _logspace(-3, 3)},
    "knn": {"clf__n_neighbors": [1, 5, 10, 20]},
    "ridge": {"clf__alpha": _logspace(-2, 3)},
    "ridge-probe": {},  # tunes its own alpha
}


@dataclass(frozen=True)
class Reduction:
    """A dimensionality reduction step: PCA or UMAP to ``n_components`` dimensions.

    Parameters
    ----------
    method : {"pca", "umap"}
    n_components : int, default=None
        At least 1; None takes the method's default (256 for PCA, 32 for UMAP). Both
        reducers clip it to what the training data allows.

    Examples
    --------
    >>> Reduction("pca")
    Reduction(method='pca', n_components=256)
    >>> Reduction("umap", 8).n_components
    8
    """

    method: Literal["pca", "umap"]
    n_components: int | None = None

    def __post_init__(self):
        validate({"method": self.method}, {"method": [Options(REDUCERS)]})
        if self.n_components is None:
            object.__setattr__(self, "n_components", DEFAULT_REDUCE_COMPONENTS[self.method])
        validate({"n_components": self.n_components},
                 {"n_components": [Interval(int, 1, None)]})
        object.__setattr__(self, "n_components", int(self.n_components))


@dataclass(frozen=True)
class Recipe:
    """A named pipeline with its default grid.

    Attributes
    ----------
    name, summary : str
    normalize : {"l2", "layer-l2", "standard", "none"}
    discretize : bool
    reduce : Reduction or None
        None: no reduction.
    classifier : str
        One of :data:`CLASSIFIERS`.
    default_grid : dict
        Parameter grid for ``GridSearchCV`` (step names as in the pipeline).
    """

    name: str
    summary: str
    normalize: str
    discretize: bool
    reduce: Reduction | None
    classifier: str
    default_grid: Mapping[str, list] = field(default_factory=dict)

    def build(self, *, layer_slices=None, layers=None, random_state=0, memory=None) -> Pipeline:
        """The recipe's pipeline (see :func:`build_recipe` for the parameters)."""
        return _build_pipeline(
            normalize=self.normalize,
            discretize=self.discretize,
            reduce=self.reduce,
            classifier=self.classifier,
            layer_slices=layer_slices,
            layers=layers,
            random_state=random_state,
            memory=memory,
        )


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            "fne",
            "Full-Network Embedding (Garcia-Gasulla et al. 2018): featurewise standardization "
            "from the training data, discretization to {-1, 0, 1} "
            "(x > 0.15 -> 1, x < -0.25 -> -1), "
            "linear SVM.",
            normalize="standard",
            discretize=True,
            reduce=None,
            classifier="linearsvc",
            default_grid={"clf__C": SMALL_C_GRID},
        ),
        Recipe(
            "l2",
            "Per-layer L2 normalization (Razavian et al. 2014; the FNE authors' baseline), "
            "linear SVM.",
            normalize="layer-l2",
            discretize=False,
            reduce=None,
            classifier="linearsvc",
            default_grid={"clf__C": _logspace(-2, 3)},
        ),
        Recipe(
            "linear-probe",
            "Linear probe (Kornblith et al. 2019): standardization, multinomial logistic "
            "regression (L-BFGS), C from 45 log-spaced values.",
            normalize="standard",
            discretize=False,
            reduce=None,
            classifier="logistic",
            default_grid={"clf__C": KORNBLITH_C_GRID},
        ),
        Recipe(
            "ridge",
            "Closed-form ridge probe: standardization, ridge classifier whose alpha (45 values) "
            "is chosen by exact k-fold CV from one decomposition per fold.",
            normalize="standard",
            discretize=False,
            reduce=None,
            classifier="ridge-probe",
            default_grid={},
        ),
        Recipe(
            "pca-svm",
            "PCA to 256 components, linear SVM (the seed tutorial's notebook pipeline).",
            normalize="none",
            discretize=False,
            reduce=Reduction("pca", 256),
            classifier="linearsvc",
            default_grid={"clf__C": _logspace(-3, 1)},
        ),
        Recipe(
            "umap-knn",
            "UMAP to 32 dimensions, k-nearest neighbours.",
            normalize="none",
            discretize=False,
            reduce=Reduction("umap", 32),
            classifier="knn",
            default_grid={"clf__n_neighbors": [1, 5, 10, 20]},
        ),
    )
}


#: Declared constraints of :func:`build_recipe`'s options (see :func:`featpipe.params.validate`).
RECIPE_CONSTRAINTS = {
    "recipe": [Options(RECIPES), None],
    "classifier": [Options(CLASSIFIERS), None],
    "normalize": [Options(NORMALIZERS), None],
    "discretize": ["boolean", None],
    "reduce": [Reduction, Options((False,)), None],
    "layers": [SequenceOf(str), None],
    "layer_slices": [Mapping, None],
    "random_state": [int, np.random.RandomState, None],
}


def build_recipe(
    recipe: str | None = None,
    *,
    layer_slices: Mapping[str, tuple[int, int]] | None = None,
    layers: list[str] | None = None,
    normalize: str | None = None,
    discretize: bool | None = None,
    reduce: Reduction | Literal[False] | None = None,
    classifier: str | None = None,
    random_state: int | None = 0,
    memory=None,
) -> tuple[Pipeline, dict[str, list]]:
    """Build a recipe's pipeline, or a free combination, and its default parameter grid.

    Options given explicitly override the recipe's. Without a recipe the defaults are
    ``normalize="standard"``, no discretization, no reduction and ``classifier="linearsvc"``.
    The grid is the recipe's when its classifier is kept, otherwise the classifier's default.

    Parameters
    ----------
    recipe : str or None
        A key of :data:`RECIPES`.
    layer_slices : mapping of str to (int, int), default=None
        Columns of each layer, from the feature store. None treats the row as one block.
    layers : list of str, default=None
        Layers to use (a ``select`` step is added); None uses all.
    normalize : {"l2", "layer-l2", "standard", "none"}, default=None
    discretize : bool, default=None
        Add the FNE discretizer (thresholds tunable as ``discretize__high``/``__low``).
    reduce : Reduction, False or None, default=None
        A reduction step; False removes the recipe's; None keeps the recipe's.
    classifier : str, default=None
        One of :data:`CLASSIFIERS`.
    random_state : int or None, default=0
    memory : str, joblib.Memory or None, default=None
        Passed to :class:`~sklearn.pipeline.Pipeline` to cache fitted transformers.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline
    param_grid : dict of str to list

    Examples
    --------
    >>> pipe, grid = build_recipe(normalize="l2", reduce=Reduction("pca", 16), classifier="knn")
    >>> [name for name, _ in pipe.steps], grid
    (['normalize', 'reduce', 'clf'], {'clf__n_neighbors': [1, 5, 10, 20]})
    """
    validate(
        dict(recipe=recipe, classifier=classifier, normalize=normalize, discretize=discretize,
             reduce=reduce, layers=layers, layer_slices=layer_slices, random_state=random_state),
        RECIPE_CONSTRAINTS,
    )
    base = RECIPES[recipe] if recipe is not None else None
    chosen_classifier = classifier or (base.classifier if base else "linearsvc")
    if reduce is None:
        reduce = base.reduce if base else None
    pipeline = _build_pipeline(
        normalize=normalize or (base.normalize if base else "standard"),
        discretize=discretize if discretize is not None else (base.discretize if base else False),
        reduce=reduce or None,
        classifier=chosen_classifier,
        layer_slices=layer_slices,
        layers=layers,
        random_state=random_state,
        memory=memory,
    )
    if base is not None and chosen_classifier == base.classifier:
        grid = base.default_grid
    else:
        grid = CLASSIFIER_GRIDS[chosen_classifier]
    return pipeline, {name: list(values) for name, values in grid.items()}


def _build_pipeline(
    *, normalize, discretize, reduce, classifier, layer_slices, layers, random_state, memory
) -> Pipeline:
    from sklearn.pipeline import Pipeline

    from featpipe.classical.transformers import FNEDiscretizer, LayerSelector, select_layer_slices

    steps = []
    if layers is not None:
        if layer_slices is None:
            raise FeatpipeError(
                "selecting layers needs layer_slices; load the features from a store"
            )
        steps.append(
            ("select", LayerSelector(layers=list(layers), layer_slices=dict(layer_slices)))
        )
    kept_slices = None if layer_slices is None else select_layer_slices(layer_slices, layers)
    normalizer = _make_normalizer(normalize, kept_slices)
    if normalizer is not None:
        steps.append(("normalize", normalizer))
    if discretize:
        steps.append(("discretize", FNEDiscretizer()))
    if reduce is not None:
        steps.append(("reduce", _make_reducer(reduce, random_state)))
    steps.append(("clf", make_classifier(classifier, random_state)))
    return Pipeline(steps, memory=memory)


def _make_normalizer(normalize: str, layer_slices):
    from featpipe.classical.transformers import LayerL2Normalizer, Standardizer

    return {
        "l2": lambda: LayerL2Normalizer(),
        "layer-l2": lambda: LayerL2Normalizer(layer_slices=layer_slices),
        "standard": lambda: Standardizer(),
        "none": lambda: None,
    }[normalize]()


def _make_reducer(reduce: Reduction, random_state):
    from featpipe.classical.transformers import ClippedPCA, ClippedUMAP

    if reduce.method == "pca":
        return ClippedPCA(n_components=reduce.n_components, random_state=random_state)
    return ClippedUMAP(n_components=reduce.n_components, random_state=random_state)


def use_pool_statistics(pipeline: Pipeline, pool) -> Pipeline:
    """Fix the pipeline's standardization statistics to those of an unlabelled ``pool``.

    Cross-validation folds and the final fit then all standardize (and, for FNE, discretize)
    with the pool's mean and scale instead of their own training rows'. Only ``pool``'s
    features are used; it has no labels.

    Parameters
    ----------
    pipeline : Pipeline
        With a ``normalize`` step that is a :class:`Standardizer`; modified in place.
    pool : array of shape (n_pool, n_features)
        Features with the pipeline's input columns (e.g. every row of the store).

    Returns
    -------
    pipeline : Pipeline

    Examples
    --------
    >>> import numpy as np
    >>> pipe, _ = build_recipe("fne")
    >>> pool = np.array([[0.0, 2.0], [2.0, 2.0]], dtype=np.float32)
    >>> use_pool_statistics(pipe, pool).named_steps["normalize"].statistics[0].tolist()
    [1.0, 2.0]
    """
    from sklearn.base import clone

    from featpipe.classical.transformers import Standardizer, feature_statistics

    normalizer = pipeline.named_steps.get("normalize")
    if not isinstance(normalizer, Standardizer):
        raise FeatpipeError(
            "statistics from a pool need a standardizing pipeline (`normalize='standard'`, e.g. "
            "the fne or linear-probe recipes); this one has no standardization statistics"
        )
    steps = [name for name, _ in pipeline.steps]
    before = pipeline[: steps.index("normalize")]
    if len(before):
        pool = clone(before).fit_transform(pool)
    normalizer.set_params(statistics=feature_statistics(pool))
    return pipeline
