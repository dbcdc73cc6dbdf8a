"""FrozenFeatureClassifier: the whole two-stage method behind scikit-learn's fit/predict."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from featpipe.data.imageset import ImageSet
from featpipe.errors import FeatpipeError
from featpipe.spec import ExtractionSpec
from featpipe.store.reader import FeatureSet, FeatureStore
from featpipe.workflows.fit import TrainingSpec, fit_features


class FrozenFeatureClassifier(ClassifierMixin, BaseEstimator):
    """Pretrained-backbone features of many layers + a tuned classical classifier.

    ``fit`` extracts pooled activations of ``layers`` once (cached on disk under
    ``cache_dir``, keyed by image content and extraction settings), then tunes ``recipe`` by
    cross-validated grid search. Changing only the recipe or grid re-uses the cached features.

    Parameters
    ----------
    backbone : str, default="efficientnet_lite0"
    layers : str or list of str, default="full"
        Preset (``last``, ``stages``, ``full``) or node names.
    recipe : str, default="fne"
        ``fne``, ``l2``, ``linear-probe``, ``pca-svm`` or ``umap-knn``.
    pool : str, default="mean"
    image_size : int or None, default=None
        None: the backbone's native size.
    weights : str or None
        A local weights file.
    pretrained : bool, default=True
    grid : dict of str to list, or None
        Grid overrides merged over the recipe's grid, e.g. ``{"clf__C": [0.1, 1]}``.
    cv : int, default=5
    scoring : str, default="accuracy"
    n_jobs : int or None, default=None
        Parallel jobs of the search (see :class:`~featpipe.classical.search.SearchConfig`).
    batch_size : int, default=32
    device : str, default="auto"
    cache_dir : str, default="cache"
    random_state : int, default=0

    Attributes
    ----------
    classes_ : ndarray of the class labels seen in ``fit``
    pipeline_ : the fitted scikit-learn Pipeline on top of the features
    best_params_, best_score_ : the grid search's choice and its CV score
    provenance_ : dict describing the features (backbone, weights, layers, ...)

    Examples
    --------
    >>> from featpipe import FrozenFeatureClassifier
    >>> clf = FrozenFeatureClassifier(layers="full", recipe="fne", image_size=128)  # doctest: +SKIP
    >>> clf.fit(train_paths, train_labels).score(test_paths, test_labels)          # doctest: +SKIP
    """

    def __init__(self, backbone="efficientnet_lite0", layers="full", recipe="fne", pool="mean",
                 image_size=None, weights=None, pretrained=True, grid=None, cv=5,
                 scoring="accuracy", n_jobs=None, batch_size=32, device="auto", cache_dir="cache",
                 random_state=0):
        self.backbone = backbone
        self.layers = layers
        self.recipe = recipe
        self.pool = pool
        self.image_size = image_size
        self.weights = weights
        self.pretrained = pretrained
        self.grid = grid
        self.cv = cv
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir
        self.random_state = random_state

    def fit(self, X, y):
        """Extract (or reuse cached) features of images ``X`` and tune the recipe on ``y``."""
        y = np.asarray(y)
        features = self._features(X)
        if len(y) != len(X):
            raise FeatpipeError(f"got {len(X)} images but {len(y)} labels")
        self.classes_, y_encoded = np.unique(y, return_inverse=True)
        train = FeatureSet(X=features.X, y=y_encoded, layer_slices=features.layer_slices,
                           class_names=[str(c) for c in self.classes_], ids=features.ids,
                           index=features.index, splits=None, provenance=features.provenance)
        spec = TrainingSpec(recipe=self.recipe, grid={} if self.grid is None else self.grid,
                            cv=self.cv, scoring=self.scoring, n_jobs=self.n_jobs,
                            seed=self.random_state,
                            cache_dir=str(Path(self.cache_dir) / "joblib"))
        search = fit_features(train, spec)
        self.pipeline_ = search.best_estimator
        self.best_params_ = search.best_params
        self.best_score_ = search.best_score
        self.cv_table_ = search.cv_table
        self.provenance_ = features.provenance
        self.layer_slices_ = features.layer_slices
        return self

    def predict(self, X):
        check_is_fitted(self, "pipeline_")
        return self.classes_[self.pipeline_.predict(self._features(X).X)]

    def predict_proba(self, X):
        check_is_fitted(self, "pipeline_")
        if not hasattr(self.pipeline_, "predict_proba"):
            raise FeatpipeError(f"recipe {self.recipe!r} has no probabilities; use "
                                "recipe='linear-probe' for predict_proba")
        return self.pipeline_.predict_proba(self._features(X).X)

    def decision_function(self, X):
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.decision_function(self._features(X).X)

    def transform(self, X) -> np.ndarray:
        """The raw (pooled, concatenated) backbone features of images ``X``."""
        return self._features(X).X

    def _features(self, images) -> FeatureSet:
        image_set = as_image_set(images)
        store = self._cached_store(image_set)
        if store.failures:
            shown = "; ".join(f"{store.ids[i]}: {r}" for i, r in store.failures[:3])
            raise FeatpipeError(f"{len(store.failures)} image(s) could not be read ({shown}); "
                                "remove them and retry")
        return store.load()

    def extraction_spec(self) -> ExtractionSpec:
        """The stage-1 settings this estimator's parameters describe."""
        layers = self.layers if isinstance(self.layers, str) else tuple(self.layers)
        return ExtractionSpec(model=self.backbone, weights=self.weights,
                              pretrained=self.pretrained, layers=layers, pool=self.pool,
                              image_size=self.image_size)

    def _cached_store(self, image_set: ImageSet) -> FeatureStore:
        from featpipe.extract import extract

        spec = self.extraction_spec()
        key = hashlib.sha256((spec.cache_key() + content_digest(image_set)).encode())
        path = Path(self.cache_dir) / "features" / f"{key.hexdigest()[:32]}.h5"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            extract(image_set, path, spec, batch_size=self.batch_size, device=self.device,
                    progress=False)
        return FeatureStore.open(path)


def as_image_set(images) -> ImageSet:
    """Image paths, PIL images, arrays or tensors (or an ImageSet) as an unlabelled ImageSet."""
    from featpipe.data.sources import from_arrays

    return images if isinstance(images, ImageSet) else from_arrays(images)


def content_digest(image_set: ImageSet) -> str:
    """sha256 over the bytes of every input (file content or array data), in order."""
    digest = hashlib.sha256()
    for item in image_set.items:
        digest.update(_item_bytes(item))
    return digest.hexdigest()


def _item_bytes(item) -> bytes:
    if isinstance(item, (str, Path)):
        try:
            return hashlib.sha256(Path(item).read_bytes()).digest()
        except OSError:
            return b"unreadable:" + str(item).encode()
    if hasattr(item, "tobytes") and hasattr(item, "mode"):  # PIL image
        return hashlib.sha256(f"{item.mode}{item.size}".encode() + item.tobytes()).digest()
    array = np.asarray(item.detach().cpu() if hasattr(item, "detach") else item)
    return hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).digest()

