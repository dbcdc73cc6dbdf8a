"""Layer-aware scikit-learn transformers for multi-layer activations.

Features arrive as one float matrix ``X (n_samples, n_features)`` whose columns are the
concatenated, pooled activations of several layers, plus an ordered mapping
``layer_slices: {layer name: (start, stop)}`` naming the columns of each layer (as the
feature store returns it). The transformers here take that mapping as a constructor
parameter, so a pipeline can select layers or normalize each layer's block without the
user retyping column ranges.

All transformers keep float32 input float32 and are array-API compatible: under
``sklearn.config_context(array_api_dispatch=True)`` (with ``SCIPY_ARRAY_API=1``) they run
on torch tensors, on the tensors' device, alongside scikit-learn's ``StandardScaler``,
``PCA(svd_solver="full")`` and ``LogisticRegression(solver="lbfgs")``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils._array_api import (
    _max_precision_float_dtype,
    get_namespace_and_device,
    supported_float_dtypes,
)
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
    validate_data,
)

from featpipe.errors import FeatpipeError

__all__ = [
    "ClippedPCA",
    "ClippedUMAP",
    "FNEDiscretizer",
    "LayerL2Normalizer",
    "LayerSelector",
    "Standardizer",
    "feature_statistics",
    "select_layer_slices",
]

LayerSlices = Mapping[str, tuple[int, int]]

# Rows per chunk when computing statistics, so a large store is never copied to float64 whole.
_STATISTICS_CHUNK_ROWS = 4096


# --------------------------------------------------------------------------- helpers


def _check_layer_slices(layer_slices: LayerSlices, n_features: int | None = None) -> None:
    """Check that ``layer_slices`` tiles ``[0, n_features)`` with contiguous blocks, in order."""
    if not isinstance(layer_slices, Mapping) or not layer_slices:
        raise FeatpipeError(
            "layer_slices must be a non-empty mapping {layer: (start, stop)}; "
            "pass the one the feature store returns"
        )
    expected_start = 0
    for name, bounds in layer_slices.items():
        start, stop = (int(b) for b in bounds)
        if start != expected_start or stop <= start:
            raise FeatpipeError(
                f"layer_slices for layer {name!r} is ({start}, {stop}) but must start at "
                f"column {expected_start} and be non-empty; pass the store's layer_slices unchanged"
            )
        expected_start = stop
    if n_features is not None and expected_start != n_features:
        raise FeatpipeError(
            f"layer_slices cover {expected_start} columns but X has {n_features}; "
            "pass the layer_slices of the store X came from"
        )


def select_layer_slices(
    layer_slices: LayerSlices, layers: Sequence[str] | None
) -> dict[str, tuple[int, int]]:
    """Layer slices of the selected layers, re-based to the columns they occupy after selection.

    Layers keep the store's order whatever the order of ``layers``.

    Parameters
    ----------
    layer_slices : mapping of str to (int, int)
        Columns ``[start, stop)`` of each layer in the full feature matrix.
    layers : sequence of str or None
        Layers to keep; None keeps all.

    Returns
    -------
    dict of str to (int, int)
        Columns of each kept layer in the selected matrix.

    Examples
    --------
    >>> select_layer_slices({"a": (0, 2), "b": (2, 5), "c": (5, 6)}, ["c", "a"])
    {'a': (0, 2), 'c': (2, 3)}
    """
    _check_layer_slices(layer_slices)
    if layers is None:
        return {name: (int(a), int(b)) for name, (a, b) in layer_slices.items()}
    if isinstance(layers, str):
        layers = [layers]
    wanted = list(layers)
    if not wanted:
        raise FeatpipeError("no layers selected; name at least one layer or pass layers=None")
    unknown = [name for name in wanted if name not in layer_slices]
    if unknown:
        raise FeatpipeError(
            f"unknown layer(s) {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(layer_slices)}"
        )
    if len(set(wanted)) != len(wanted):
        raise FeatpipeError(f"layers {wanted} name a layer twice; list each layer once")
    selected, start = {}, 0
    for name, (a, b) in layer_slices.items():
        if name in wanted:
            selected[name] = (start, start + int(b) - int(a))
            start += int(b) - int(a)
    return selected


def _float_input(estimator, X, *, reset: bool):
    """Validate X as a 2-D finite float array of its own namespace (float32 stays float32)."""
    xp, _, device = get_namespace_and_device(X)
    X = validate_data(estimator, X, reset=reset, dtype=supported_float_dtypes(xp, device))
    return X, xp, device


def _accumulation_dtype(xp, device):
    return _max_precision_float_dtype(xp, device)


def _is_constant(var, mean, n_samples: int, xp):
    """Features whose variance is within float rounding of zero (same bound as scikit-learn)."""
    eps = xp.finfo(var.dtype).eps
    upper_bound = n_samples * eps * var + (n_samples * mean * eps) ** 2
    return var <= upper_bound


def feature_statistics(X) -> tuple:
    """Featurewise mean and standard deviation, computed in chunks at the highest precision.

    Zero-variance features (within rounding) get a standard deviation of exactly 0. Use the
    result as ``Standardizer(statistics=...)`` to standardize with statistics from another
    array, e.g. a whole unlabelled store.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Finite float features (NumPy, or any array-API namespace under array API dispatch).

    Returns
    -------
    mean, scale : arrays of shape (n_features,)
        In X's namespace and device, in the highest float precision the device supports.

    Examples
    --------
    >>> import numpy as np
    >>> mean, scale = feature_statistics(np.array([[0.0, 1.0], [2.0, 1.0]], dtype=np.float32))
    >>> mean.tolist(), scale.tolist()
    ([1.0, 1.0], [1.0, 0.0])
    """
    xp, _, device = get_namespace_and_device(X)
    n_samples = X.shape[0]
    if n_samples == 0:
        raise FeatpipeError("cannot compute feature statistics of an empty array; pass some rows")
    dtype = _accumulation_dtype(xp, device)
    chunks = range(0, n_samples, _STATISTICS_CHUNK_ROWS)

    total = xp.zeros(X.shape[1], dtype=dtype, device=device)
    for start in chunks:
        total += xp.sum(xp.astype(X[start : start + _STATISTICS_CHUNK_ROWS, ...], dtype), axis=0)
    mean = total / n_samples

    squares = xp.zeros(X.shape[1], dtype=dtype, device=device)
    for start in chunks:
        centred = xp.astype(X[start : start + _STATISTICS_CHUNK_ROWS, ...], dtype) - mean
        squares += xp.sum(centred * centred, axis=0)
    var = squares / n_samples

    var = xp.where(_is_constant(var, mean, n_samples, xp), xp.zeros_like(var), var)
    return mean, xp.sqrt(var)


class _FloatTransformerMixin:
    """Shared tags: float32 and float64 are preserved; array API is supported."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.array_api_support = True
        return tags


# --------------------------------------------------------------------------- transformers


class LayerSelector(_FloatTransformerMixin, TransformerMixin, BaseEstimator):
    """Keep the columns of some layers.

    Parameters
    ----------
    layers : sequence of str, default=None
        Layers to keep (kept in the store's order). None keeps every column.
    layer_slices : mapping of str to (int, int), default=None
        Columns ``[start, stop)`` of each layer, as the feature store returns them.
        Required when ``layers`` is given.

    Attributes
    ----------
    layer_slices_ : dict of str to (int, int) or None
        Columns of each kept layer in the output.
    n_features_in_ : int
        Number of input columns.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(12, dtype=np.float32).reshape(2, 6)
    >>> sel = LayerSelector(["b"], {"a": (0, 2), "b": (2, 5), "c": (5, 6)}).fit(X)
    >>> sel.transform(X).tolist()
    [[2.0, 3.0, 4.0], [8.0, 9.0, 10.0]]
    >>> sel.layer_slices_
    {'b': (0, 3)}
    """

    def __init__(self, layers=None, layer_slices=None):
        self.layers = layers
        self.layer_slices = layer_slices

    def fit(self, X, y=None):
        """Check the layers against ``layer_slices`` and X's width.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : LayerSelector
        """
        X, _, _ = _float_input(self, X, reset=True)
        if self.layer_slices is None:
            if self.layers is not None:
                raise FeatpipeError(
                    "selecting layers needs layer_slices; load the features from a store"
                )
            self.layer_slices_ = None
            return self
        _check_layer_slices(self.layer_slices, X.shape[1])
        self.layer_slices_ = select_layer_slices(self.layer_slices, self.layers)
        return self

    def transform(self, X):
        """Return the selected layers' columns, concatenated in the store's order.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        X_selected : array of shape (n_samples, n_selected_features)
        """
        check_is_fitted(self, "n_features_in_")
        X, xp, _ = _float_input(self, X, reset=False)
        if self.layer_slices_ is None or self.layers is None:
            return X
        blocks = [
            X[:, a:b] for name, (a, b) in self.layer_slices.items() if name in self.layer_slices_
        ]
        return blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=1)

    def get_feature_names_out(self, input_features=None):
        """Names ``<layer>:<index>`` of the output columns (input names when no layers are set)."""
        check_is_fitted(self, "n_features_in_")
        input_features = _check_feature_names_in(self, input_features)
        if self.layer_slices_ is None:
            return input_features
        return np.asarray(
            [f"{name}:{j}" for name, (a, b) in self.layer_slices_.items() for j in range(b - a)],
            dtype=object,
        )


class LayerL2Normalizer(
    _FloatTransformerMixin, OneToOneFeatureMixin, TransformerMixin, BaseEstimator
):
    """L2-normalize each layer's block of columns separately (Razavian et al. 2014).

    Rows whose block is all zero stay zero. With ``layer_slices=None`` the whole row is one
    block (plain row-wise L2 normalization).

    Parameters
    ----------
    layer_slices : mapping of str to (int, int), default=None
        Columns of each layer; they must tile ``[0, n_features)`` in order.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[3.0, 4.0, 0.0, 2.0]], dtype=np.float32)
    >>> LayerL2Normalizer({"a": (0, 2), "b": (2, 4)}).fit_transform(X).tolist()
    [[0.6000000238418579, 0.800000011920929, 0.0, 1.0]]
    """

    def __init__(self, layer_slices=None):
        self.layer_slices = layer_slices

    def fit(self, X, y=None):
        """Check ``layer_slices`` against X's width; nothing is learned.

        Returns
        -------
        self : LayerL2Normalizer
        """
        X, _, _ = _float_input(self, X, reset=True)
        if self.layer_slices is not None:
            _check_layer_slices(self.layer_slices, X.shape[1])
        return self

    def transform(self, X):
        """Divide each layer's block by its L2 norm, row by row.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        X_normalized : array of shape (n_samples, n_features), same dtype as X
        """
        check_is_fitted(self, "n_features_in_")
        X, xp, _ = _float_input(self, X, reset=False)
        bounds = (
            [(0, X.shape[1])] if self.layer_slices is None else list(self.layer_slices.values())
        )
        blocks = [_l2_rows(X[:, int(a) : int(b)], xp) for a, b in bounds]
        return blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=1)


def _l2_rows(block, xp):
    norms = xp.sqrt(xp.sum(block * block, axis=1, keepdims=True))
    return block / xp.where(norms > 0, norms, xp.ones_like(norms))


class Standardizer(_FloatTransformerMixin, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Featurewise standardization; zero-variance features become exactly 0.

    Statistics come from the data passed to ``fit`` (the training fold inside a
    cross-validation) unless ``statistics`` supplies them, e.g. computed with
    :func:`feature_statistics` on a larger unlabelled pool.

    Parameters
    ----------
    statistics : tuple (mean, scale) of array-likes of shape (n_features,), default=None
        Precomputed statistics. A feature whose ``scale`` is 0 maps to 0.

    Attributes
    ----------
    mean_ : array of shape (n_features,)
    scale_ : array of shape (n_features,)
        Standard deviations; 0 marks a zero-variance feature.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    >>> Standardizer().fit(X).transform(np.array([[2.0, 7.0]], dtype=np.float32)).tolist()
    [[0.0, 0.0]]
    """

    def __init__(self, statistics=None):
        self.statistics = statistics

    def fit(self, X, y=None):
        """Compute (or take) the featurewise mean and standard deviation.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : Standardizer
        """
        X, xp, device = _float_input(self, X, reset=True)
        if self.statistics is None:
            self.mean_, self.scale_ = feature_statistics(X)
        else:
            self.mean_, self.scale_ = self._given_statistics(X.shape[1], xp, device)
        return self

    def _given_statistics(self, n_features: int, xp, device):
        try:
            mean, scale = self.statistics
        except (TypeError, ValueError):
            raise FeatpipeError(
                "statistics must be a (mean, scale) pair; compute it with feature_statistics(X)"
            ) from None
        dtype = _accumulation_dtype(xp, device)
        mean = xp.astype(xp.asarray(mean, device=device), dtype)
        scale = xp.astype(xp.asarray(scale, device=device), dtype)
        if mean.shape != (n_features,) or scale.shape != (n_features,):
            raise FeatpipeError(
                f"statistics have shapes {tuple(mean.shape)} and {tuple(scale.shape)} "
                f"but X has {n_features} features; compute them on the same layers"
            )
        if not bool(xp.all(xp.isfinite(mean))) or not bool(
            xp.all(xp.isfinite(scale) & (scale >= 0))
        ):
            raise FeatpipeError("statistics contain NaN, inf or negative scales; recompute them")
        return mean, scale

    def transform(self, X):
        """Standardize X with the fitted statistics.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        X_std : array of shape (n_samples, n_features), same dtype as X
        """
        check_is_fitted(self, "mean_")
        X, xp, _ = _float_input(self, X, reset=False)
        mean = xp.astype(self.mean_, X.dtype)
        safe_scale = xp.where(self.scale_ > 0, self.scale_, xp.ones_like(self.scale_))
        inverse_scale = xp.astype(
            xp.where(self.scale_ > 0, 1.0 / safe_scale, xp.zeros_like(safe_scale)), X.dtype
        )
        return (X - mean) * inverse_scale


class FNEDiscretizer(_FloatTransformerMixin, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Full-Network Embedding discretization to {-1, 0, 1} (Garcia-Gasulla et al. 2018).

    ``x > high`` becomes 1, ``x < low`` becomes -1, everything else 0. Apply it to
    standardized features. The output keeps X's float dtype.

    Parameters
    ----------
    high : float, default=0.15
    low : float, default=-0.25
        Must not exceed ``high``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.16, 0.15, -0.25, -0.26]], dtype=np.float32)
    >>> FNEDiscretizer().fit_transform(X).tolist()
    [[1.0, 0.0, 0.0, -1.0]]
    """

    def __init__(self, high=0.15, low=-0.25):
        self.high = high
        self.low = low

    def fit(self, X, y=None):
        """Check the thresholds and X; nothing is learned.

        Returns
        -------
        self : FNEDiscretizer
        """
        for name in ("high", "low"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise FeatpipeError(f"FNEDiscretizer {name}={value!r} must be a finite number")
        if self.low > self.high:
            raise FeatpipeError(
                f"FNEDiscretizer low={self.low} exceeds high={self.high}; choose low <= high"
            )
        _float_input(self, X, reset=True)
        return self

    def transform(self, X):
        """Map X to {-1, 0, 1}.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        X_discrete : array of shape (n_samples, n_features), same dtype as X
        """
        check_is_fitted(self, "n_features_in_")
        X, xp, device = _float_input(self, X, reset=False)
        # Compare in X's dtype so float32 data is thresholded exactly as stored.
        high = xp.asarray(self.high, dtype=X.dtype, device=device)
        low = xp.asarray(self.low, dtype=X.dtype, device=device)
        return xp.astype(X > high, X.dtype) - xp.astype(X < low, X.dtype)


class ClippedPCA(_FloatTransformerMixin, TransformerMixin, BaseEstimator):
    """PCA whose ``n_components`` is clipped to what the data allows at fit time.

    ``min(n_components, n_samples, n_features)`` components are kept, so a recipe built for
    large data (``pca:256``) still runs on a small training fold.

    Parameters
    ----------
    n_components : int, default=256
    whiten : bool, default=False
    svd_solver : {"auto", "full", "covariance_eigh", "arpack", "randomized"}, default="auto"
        Use ``"full"`` or ``"covariance_eigh"`` for array-API (torch/GPU) inputs.
    random_state : int or None, default=None

    Attributes
    ----------
    pca_ : sklearn.decomposition.PCA
        The fitted PCA.
    n_components_ : int
        Components actually kept.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32)
    >>> ClippedPCA(256).fit(X).n_components_
    5
    """

    def __init__(self, n_components=256, whiten=False, svd_solver="auto", random_state=None):
        self.n_components = n_components
        self.whiten = whiten
        self.svd_solver = svd_solver
        self.random_state = random_state

    def fit(self, X, y=None):
        """Fit PCA with the clipped number of components.

        Returns
        -------
        self : ClippedPCA
        """
        from sklearn.decomposition import PCA

        _check_positive_int(self.n_components, "ClippedPCA n_components")
        X, _, _ = _float_input(self, X, reset=True)
        self.n_components_ = min(self.n_components, X.shape[0], X.shape[1])
        self.pca_ = PCA(
            n_components=self.n_components_,
            whiten=self.whiten,
            svd_solver=self.svd_solver,
            random_state=self.random_state,
        ).fit(X)
        return self

    def transform(self, X):
        """Project X on the principal components.

        Returns
        -------
        X_reduced : array of shape (n_samples, n_components_)
        """
        check_is_fitted(self, "pca_")
        X, _, _ = _float_input(self, X, reset=False)
        return self.pca_.transform(X)

    def get_feature_names_out(self, input_features=None):
        """Names ``pca0, pca1, ...``."""
        check_is_fitted(self, "pca_")
        return np.asarray([f"pca{i}" for i in range(self.n_components_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = self.svd_solver not in ("arpack", "randomized")
        return tags


class ClippedUMAP(TransformerMixin, BaseEstimator):
    """UMAP (umap-learn) with ``n_neighbors`` and ``n_components`` clipped to the data.

    ``n_neighbors <= n_samples - 1`` and ``n_components <= n_samples - 2`` (at least 1), so
    small folds do not crash. Output is float32 (UMAP's embedding dtype). NumPy only.
    UMAP embeds new samples jointly, so a sample's embedding depends on the batch it comes
    in (fitted pipelines with UMAP cannot be saved with skops either: umap-learn keeps
    numba functions that skops refuses to serialize).

    Parameters
    ----------
    n_components : int, default=32
    n_neighbors : int, default=15
    min_dist : float, default=0.1
    metric : str, default="euclidean"
    random_state : int or None, default=None
        An int makes the embedding reproducible (and UMAP single-threaded).

    Attributes
    ----------
    umap_ : umap.UMAP
        The fitted UMAP.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    >>> ClippedUMAP(n_components=2, random_state=0).fit_transform(X).shape
    (30, 2)
    """

    def __init__(
        self, n_components=32, n_neighbors=15, min_dist=0.1, metric="euclidean", random_state=None
    ):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.random_state = random_state

    def fit(self, X, y=None):
        """Fit UMAP on X (unsupervised; y is ignored).

        Returns
        -------
        self : ClippedUMAP
        """
        self._fit_embedding(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit UMAP and return the training embedding."""
        return self._fit_embedding(X)

    def _fit_embedding(self, X):
        import umap  # slow import (numba); only when UMAP is used

        _check_positive_int(self.n_components, "ClippedUMAP n_components")
        _check_positive_int(self.n_neighbors, "ClippedUMAP n_neighbors")
        X = validate_data(self, X, reset=True, dtype=np.float32, ensure_min_samples=3)
        n_samples = X.shape[0]
        self.n_neighbors_ = max(2, min(self.n_neighbors, n_samples - 1))
        self.n_components_ = max(1, min(self.n_components, n_samples - 2))
        self.umap_ = umap.UMAP(
            n_components=self.n_components_,
            n_neighbors=self.n_neighbors_,
            min_dist=self.min_dist,
            metric=self.metric,
            random_state=self.random_state,
            n_jobs=1 if self.random_state is not None else -1,
        )
        return np.asarray(self.umap_.fit_transform(X), dtype=np.float32)

    def transform(self, X):
        """Embed new samples.

        Returns
        -------
        X_embedded : float32 array of shape (n_samples, n_components_)
        """
        check_is_fitted(self, "umap_")
        X = validate_data(self, X, reset=False, dtype=np.float32)
        return np.asarray(self.umap_.transform(X), dtype=np.float32)

    def get_feature_names_out(self, input_features=None):
        """Names ``umap0, umap1, ...``."""
        check_is_fitted(self, "umap_")
        return np.asarray([f"umap{i}" for i in range(self.n_components_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.non_deterministic = self.random_state is None
        return tags


def _check_positive_int(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise FeatpipeError(f"{what}={value!r} must be a positive integer")
