"""Transfer scoring: how confidently a classical pipeline over pretrained features recognises
each image's true class, out of fold (features from a store of the same images, or extracted).

Examples
--------
>>> scorer = TransferScorer(store="clip.h5", layers="last", recipe="ridge")   # doctest: +SKIP
>>> scorer.score(open_source("data/clipart-mini/manifest.csv"))               # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from featpipe.curriculum.scoring import (Scorer, _labels_of, out_of_fold_proba, register_scorer,
                                         true_class_scores)
from featpipe.data.imageset import ImageSet
from featpipe.errors import FeatpipeError
from featpipe.params import InstanceOf, validate
from featpipe.spec import ExtractionSpec
from featpipe.store.reader import FeatureSet, FeatureStore

__all__ = ["TransferScorer", "class_probabilities", "features_for"]

#: What the transfer scorer extracts when it is given no store: the pooled last layer.
DEFAULT_EXTRACTION = ExtractionSpec(layers="last")


@register_scorer("transfer")
class TransferScorer(Scorer):
    """Out-of-fold probability of the true class from a tuned featpipe pipeline.

    Each of ``cv`` stratified folds is scored by the pipeline ``recipe`` (or the free
    combination ``classifier``) tuned by cross-validation on the other folds only
    (:func:`featpipe.classical.search.search`), so neither the fit nor the choice of its
    regularisation ever sees the scored image's label. Pipelines without ``predict_proba``
    (linear SVM, ridge) score by the softmax of their decision values: it orders images as
    their margins do, which is all a curriculum uses.

    Parameters
    ----------
    store : path, default=None
        A feature store holding every image to score (matched by id; its labels must agree).
        None: extract ``extraction`` into a temporary store.
    extraction : ExtractionSpec, default=None
        What to extract without a store (None: Lite0's pooled last layer).
    layers : str or list of str, default=None
        Stored layers to use (None: all; presets such as ``"last"`` work).
    recipe : str or None, default="ridge"
        A key of :data:`featpipe.classical.recipes.RECIPES`. The closed-form ridge probe tunes
        itself in one decomposition per fold (~10x faster than ``"linear-probe"``, whose
        logistic regression gives calibrated probabilities; the order is what counts).
    normalize, classifier : str, default=None
        Override the recipe's steps (see :func:`~featpipe.classical.recipes.build_recipe`).
    grid : dict, default=None
        Grid overrides merged over the recipe's default grid.
    cv : int or CV splitter, default=5
        Outer folds (the inner tuning uses as many, fewer if a class is too small).
    batch_size, device : extraction options.
    """

    def __init__(self, *, store=None, extraction: ExtractionSpec | None = None, layers=None,
                 recipe: str | None = "ridge", normalize: str | None = None,
                 classifier: str | None = None, grid: Mapping | None = None, cv=5,
                 batch_size: int = 32, device: str = "auto"):
        self.store = store
        self.extraction = extraction
        self.layers = layers
        self.recipe = recipe
        self.normalize = normalize
        self.classifier = classifier
        self.grid = grid
        self.cv = cv
        self.batch_size = batch_size
        self.device = device

    def score(self, images: ImageSet, *, seed: int = 0) -> np.ndarray:
        validate({"extraction": self.extraction, "grid": self.grid},
                 {"extraction": [ExtractionSpec, None], "grid": [InstanceOf(Mapping), None]})
        _labels_of(images, "transfer")
        if self.store is not None:
            return self.score_features(features_for(images, self.store, self.layers), seed=seed)
        folder = Path(tempfile.mkdtemp(prefix="featpipe-transfer-"))
        try:
            from featpipe.extract import extract

            extract(images, folder / "features.h5", self.extraction or DEFAULT_EXTRACTION,
                    batch_size=self.batch_size, device=self.device, progress=False)
            return self.score_features(features_for(images, folder / "features.h5",
                                                    self.layers), seed=seed)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def pipeline_for(self, features: FeatureSet, seed: int = 0):
        """The untuned pipeline and the grid it is tuned over, for ``features``' layers."""
        from featpipe.classical.recipes import build_recipe

        pipeline, grid = build_recipe(self.recipe, layer_slices=features.layer_slices,
                                      normalize=self.normalize, classifier=self.classifier,
                                      random_state=seed)
        return pipeline, {**grid, **(self.grid or {})}

    def score_features(self, features: FeatureSet, *, seed: int = 0) -> np.ndarray:
        """The scores of already loaded, labelled features (one per row)."""
        from featpipe.classical.search import SearchConfig, search
        from featpipe.classical.validation import validate_training_data

        X, y = features.X, features.y
        validate_training_data(X, y, self.cv, class_names=features.class_names)
        n_classes = len(features.class_names)

        def fit_predict(train, held_out):
            pipeline, grid = self.pipeline_for(features, seed)
            inner = int(min(np.bincount(y[train])[np.unique(y[train])].min(), _n_folds(self.cv)))
            if inner < 2:
                raise FeatpipeError("a class has fewer than 2 images in a training fold; lower "
                                    "`cv` or add images of that class")
            tuned = search(pipeline, grid, X[train], y[train],
                           SearchConfig(cv=inner, random_state=seed),
                           class_names=features.class_names).best_estimator
            return class_probabilities(tuned, X[held_out], n_classes)

        proba = out_of_fold_proba(fit_predict, y, n_classes, cv=self.cv, seed=seed)
        return true_class_scores(proba, y)


def _n_folds(cv) -> int:
    return cv if isinstance(cv, int) else cv.get_n_splits()


def class_probabilities(model, X, n_classes: int) -> np.ndarray:
    """``model``'s probabilities of classes ``0..n_classes-1`` for ``X`` (softmax of its decision
    values when it has no ``predict_proba``; 0 for classes it never saw).

    Examples
    --------
    >>> from sklearn.svm import LinearSVC
    >>> model = LinearSVC().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    >>> class_probabilities(model, [[0.0], [3.0]], 2).argmax(axis=1).tolist()
    [0, 1]
    """
    if hasattr(model, "predict_proba"):
        values = model.predict_proba(X)
    else:
        decision = np.asarray(model.decision_function(X), dtype=np.float64)
        if decision.ndim == 1:
            decision = np.column_stack([np.zeros_like(decision), decision])
        shifted = np.exp(decision - decision.max(axis=1, keepdims=True))
        values = shifted / shifted.sum(axis=1, keepdims=True)
    proba = np.zeros((len(values), n_classes))
    proba[:, np.asarray(model.classes_, dtype=np.int64)] = values
    return proba


def features_for(images: ImageSet, store: str | os.PathLike, layers=None) -> FeatureSet:
    """The rows of ``store`` for ``images``, in their order, refusing anything but the same
    images with the same labels.

    Parameters
    ----------
    images : ImageSet
    store : path
        A complete feature store holding every image of ``images`` (by id), extracted
        successfully.
    layers : str or list of str, default=None
        Layers to load (None: all).
    """
    opened = FeatureStore.open(store)
    data = opened.load(layers)
    position = {image_id: p for p, image_id in enumerate(data.ids.tolist())}
    missing = [image_id for image_id in images.ids if image_id not in position]
    if missing:
        raise FeatpipeError(f"{len(missing)} of the {len(images)} images have no features in "
                            f"{opened.path.name} (e.g. '{missing[0]}': not extracted from this "
                            "source, or failed); extract the source into the store first")
    rows = data.subset(np.array([position[i] for i in images.ids], dtype=np.int64))
    if images.labels is not None:
        stored = [rows.class_names[k] if k >= 0 else "" for k in
                  (rows.y if rows.y is not None else np.full(len(rows.ids), -1))]
        differ = [(i, a, b) for i, a, b in zip(images.ids, images.labels, stored) if a != b]
        if differ:
            image_id, wanted, found = differ[0]
            raise FeatpipeError(f"{opened.path.name} labels '{image_id}' {found!r}, the source "
                                f"{wanted!r} ({len(differ)} images differ); use a store "
                                "extracted from this source")
        rows.y, rows.class_names = images.label_indices(), images.class_names
    return rows
