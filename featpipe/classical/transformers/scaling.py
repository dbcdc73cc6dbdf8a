"""Featurewise standardization (train-only or pool statistics) and the Full-Network Embedding's
discretization to {-1, 0, 1}.
"""

from __future__ import annotations

import math
import numbers

from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils._array_api import (
    get_namespace_and_device,
)
from sklearn.utils.validation import (
    check_is_fitted,
)

from featpipe.classical.transformers._base import (
    _accumulation_dtype,
    _float_input,
    _FloatTransformerMixin,
    _is_constant,
)
from featpipe.errors import FeatpipeError

# Rows per chunk when computing statistics, so a large store is never copied to float64 whole.
_STATISTICS_CHUNK_ROWS = 4096


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

