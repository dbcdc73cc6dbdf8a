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
>>> pipe, grid = make_pipeline("fne", layer_slices={"a": (0, 32), "b": (32, 64)})
>>> [name for name, _ in pipe.steps]
['normalize', 'discretize', 'clf']
>>> sorted(grid)
['clf__C']
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from sklearn.base import clone
from sklearn.pipeline import Pipeline

from featpipe.classical.classifiers import CLASSIFIERS, KORNBLITH_C_GRID, _logspace, make_classifier
from featpipe.classical.transformers.layers import (
    LayerL2Normalizer,
    LayerSelector,
    select_layer_slices,
)
from featpipe.classical.transformers.reduction import ClippedPCA, ClippedUMAP
from featpipe.classical.transformers.scaling import FNEDiscretizer, Standardizer, feature_statistics
from featpipe.errors import FeatpipeError

NORMALIZERS = ("l2", "layer-l2", "standard", "none")
REDUCERS = ("pca", "umap")
DEFAULT_REDUCE_COMPONENTS = {"pca": 256, "umap": 32}
CLASSIFIER_GRIDS: dict[str, dict[str, list]] = {
    "linearsvc": {"clf__C": _logspace(-3, 1)},
    "svc": {"clf__C": _logspace(-1, 2), "clf__gamma": ["scale"]},
    "logistic": {"clf__C": _logspace(-3, 3)},
    "knn": {"clf__n_neighbors": [1, 5, 10, 20]},
    "ridge": {"clf__alpha": _logspace(-2, 3)},
}


class ReduceSpec(NamedTuple):
    """A dimensionality reduction: ``kind`` ("pca" or "umap") and ``n_components``."""

    kind: str
    n_components: int


@dataclass(frozen=True)
class Recipe:
    """A named pipeline with its default grid.

    Attributes
    ----------
    name, summary : str
    normalize : {"l2", "layer-l2", "standard", "none"}
    discretize : bool
    reduce : str
        ``"pca:N"``, ``"umap:N"`` or ``"none"``.
    classifier : str
        One of :data:`CLASSIFIERS`.
    default_grid : dict
        Parameter grid for ``GridSearchCV`` (step names as in the pipeline).
    """

    name: str
    summary: str
    normalize: str
    discretize: bool
    reduce: str
    classifier: str
    default_grid: Mapping[str, list] = field(default_factory=dict)

    def build(self, *, layer_slices=None, layers=None, random_state=0, memory=None) -> Pipeline:
        """The recipe's pipeline (see :func:`make_pipeline` for the parameters)."""
        return _build_pipeline(
            normalize=self.normalize,
            discretize=self.discretize,
            reduce=parse_reduce(self.reduce),
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
            reduce="none",
            classifier="linearsvc",
            default_grid={"clf__C": _logspace(-3, 1)},
        ),
        Recipe(
            "l2",
            "Per-layer L2 normalization (Razavian et al. 2014; the FNE authors' baseline), "
            "linear SVM.",
            normalize="layer-l2",
            discretize=False,
            reduce="none",
            classifier="linearsvc",
            default_grid={"clf__C": _logspace(-2, 3)},
        ),
        Recipe(
            "linear-probe",
            "Linear probe (Kornblith et al. 2019): standardization, multinomial logistic "
            "regression (L-BFGS), C from 45 log-spaced values.",
            normalize="standard",
            discretize=False,
            reduce="none",
            classifier="logistic",
            default_grid={"clf__C": KORNBLITH_C_GRID},
        ),
        Recipe(
            "pca-svm",
            "PCA to 256 components, linear SVM (the seed tutorial's notebook pipeline).",
            normalize="none",
            discretize=False,
            reduce="pca:256",
            classifier="linearsvc",
            default_grid={"clf__C": _logspace(-3, 1)},
        ),
        Recipe(
            "umap-knn",
            "UMAP to 32 dimensions, k-nearest neighbours.",
            normalize="none",
            discretize=False,
            reduce="umap:32",
            classifier="knn",
            default_grid={"clf__n_neighbors": [1, 5, 10, 20]},
        ),
    )
}


def make_pipeline(
    recipe: str | None = None,
    *,
    layer_slices=None,
    layers=None,
    normalize: str | None = None,
    discretize: bool | None = None,
    reduce: str | None = None,
    classifier: str | None = None,
    random_state: int | None = 0,
    memory=None,
) -> tuple[Pipeline, dict]:
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
    layers : sequence of str, default=None
        Layers to use (a ``select`` step is added); None uses all.
    normalize : {"l2", "layer-l2", "standard", "none"}, default=None
    discretize : bool, default=None
        Add the FNE discretizer (thresholds tunable as ``discretize__high``/``__low``).
    reduce : str, default=None
        ``"pca:N"``, ``"umap:N"`` or ``"none"``.
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
    >>> pipe, grid = make_pipeline(normalize="l2", reduce="pca:16", classifier="knn")
    >>> [name for name, _ in pipe.steps], grid
    (['normalize', 'reduce', 'clf'], {'clf__n_neighbors': [1, 5, 10, 20]})
    """
    if recipe is not None and recipe not in RECIPES:
        raise FeatpipeError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    base = RECIPES[recipe] if recipe is not None else None
    chosen_classifier = classifier or (base.classifier if base else "linearsvc")
    if chosen_classifier not in CLASSIFIERS:
        raise FeatpipeError(
            f"unknown classifier {chosen_classifier!r}; choose one of {', '.join(CLASSIFIERS)}"
        )
    pipeline = _build_pipeline(
        normalize=normalize or (base.normalize if base else "standard"),
        discretize=discretize if discretize is not None else (base.discretize if base else False),
        reduce=parse_reduce(reduce if reduce is not None else (base.reduce if base else "none")),
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
    if normalize not in NORMALIZERS:
        raise FeatpipeError(
            f"unknown normalization {normalize!r}; choose one of {', '.join(NORMALIZERS)}"
        )
    return {
        "l2": lambda: LayerL2Normalizer(),
        "layer-l2": lambda: LayerL2Normalizer(layer_slices=layer_slices),
        "standard": lambda: Standardizer(),
        "none": lambda: None,
    }[normalize]()


def _make_reducer(reduce: ReduceSpec, random_state):
    if reduce.kind == "pca":
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
    >>> pipe, _ = make_pipeline("fne")
    >>> pool = np.array([[0.0, 2.0], [2.0, 2.0]], dtype=np.float32)
    >>> use_pool_statistics(pipe, pool).named_steps["normalize"].statistics[0].tolist()
    [1.0, 2.0]
    """
    normalizer = pipeline.named_steps.get("normalize")
    if not isinstance(normalizer, Standardizer):
        raise FeatpipeError(
            "statistics from a pool need a standardizing pipeline (normalize=standard, e.g. the "
            "fne or linear-probe recipes); this one has no standardization statistics"
        )
    steps = [name for name, _ in pipeline.steps]
    before = pipeline[: steps.index("normalize")]
    if len(before):
        pool = clone(before).fit_transform(pool)
    normalizer.set_params(statistics=feature_statistics(pool))
    return pipeline


def parse_reduce(spec: str | None) -> ReduceSpec | None:
    """Parse ``'pca:256'``, ``'umap:32'``, ``'pca'`` (default size) or ``'none'``.

    Parameters
    ----------
    spec : str or None

    Returns
    -------
    ReduceSpec or None
        None means no reduction.

    Examples
    --------
    >>> parse_reduce("pca:64")
    ReduceSpec(kind='pca', n_components=64)
    >>> parse_reduce("none") is None
    True
    """
    if spec is None or str(spec).strip().lower() in ("", "none"):
        return None
    kind, _, size = str(spec).strip().lower().partition(":")
    if kind not in REDUCERS:
        raise FeatpipeError(f"unknown reduction {spec!r}; use pca:N, umap:N or none")
    if not size:
        return ReduceSpec(kind, DEFAULT_REDUCE_COMPONENTS[kind])
    if not size.isdigit() or int(size) < 1:
        raise FeatpipeError(f"reduction {spec!r} needs a positive integer size, e.g. {kind}:64")
    return ReduceSpec(kind, int(size))


def _parse_value(text: str):
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()
    return (
        value if isinstance(value, (int, float)) and not isinstance(value, bool) else text.strip()
    )


def parse_grid_overrides(items: Sequence[str]) -> dict[str, list]:
    """Parse ``name=v1,v2,...`` grid overrides into a parameter grid.

    Values become int, float, bool (``true``/``false``), None (``none``) or str.

    Parameters
    ----------
    items : sequence of str
        E.g. ``["clf__C=0.1,1,10", "reduce__n_components=64,128"]``.

    Returns
    -------
    dict of str to list

    Examples
    --------
    >>> parse_grid_overrides(["clf__C=0.1,1e2", "clf__class_weight=none,balanced"])
    {'clf__C': [0.1, 100.0], 'clf__class_weight': [None, 'balanced']}
    """
    grid: dict[str, list] = {}
    for item in items:
        name, sep, values = str(item).partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise FeatpipeError(
                f"grid override {item!r} is not of the form step__param=v1,v2 "
                "(e.g. clf__C=0.1,1,10)"
            )
        if "__" not in name or name.startswith("__") or name.endswith("__"):
            raise FeatpipeError(
                f"grid parameter {name!r} must name a step and a parameter, e.g. clf__C"
            )
        parsed = [_parse_value(v) for v in values.split(",")]
        if any(v == "" for v in parsed):
            raise FeatpipeError(
                f"grid override {item!r} has an empty value; remove the extra comma"
            )
        grid[name] = parsed
    return grid

