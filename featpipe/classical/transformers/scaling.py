"""Featurewise standardization (train-only or pool statistics) and the Full-Network Embedding's
discretization to {-1, 0, 1}.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
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
    mean, var = _moments(X, xp, device)
    var = xp.where(_is_constant(var, mean, n_samples, xp), xp.zeros_like(var), var)
    return mean, xp.sqrt(var)


def _moments(X, xp, device) -> tuple:
    """Featurewise mean and (biased) variance of a non-empty X: two passes in chunks, at the
    highest precision the device supports; no zero-variance rule."""
    n_samples = X.shape[0]
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
    return mean, squares / n_samples


class Standardizer(_FloatTransformerMixin, OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Featurewise standardization; zero-variance features become exactly 0.

    Statistics come from the data passed to ``fit`` (the training fold inside a
    cross-validation) unless ``statistics`` supplies them, e.g. computed with
    :func:`feature_statistics` on a larger unlabelled pool. ``partial_fit`` accumulates them
    over batches (e.g. :meth:`~featpipe.store.FeatureStore.iter_batches`), giving what ``fit``
    gives on all the rows at once.

    Parameters
    ----------
    statistics : tuple (mean, scale) of array-likes of shape (n_features,), default=None
        Precomputed statistics. A feature whose ``scale`` is 0 maps to 0.

    Attributes
    ----------
    mean_ : array of shape (n_features,)
    var_ : array of shape (n_features,)
        Variances (``scale_ ** 2`` with given ``statistics``), kept to combine batches.
    scale_ : array of shape (n_features,)
        Standard deviations; 0 marks a zero-variance feature.
    n_samples_seen_ : int
        Rows seen since the last ``fit`` (or the first ``partial_fit``).

    Statistics are kept in the highest float precision of X's device (float64 on CPU).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    >>> Standardizer().fit(X).transform(np.array([[2.0, 7.0]], dtype=np.float32)).tolist()
    [[0.0, 0.0]]
    """

    def __init__(self, statistics=None):
        self.statistics = statistics

    def _reset(self) -> None:
        """Forget the statistics learned so far (``__init__`` parameters are kept)."""
        for name in ("mean_", "var_", "scale_", "n_samples_seen_"):
            if hasattr(self, name):
                delattr(self, name)

    def fit(self, X, y=None):
        """Compute (or take) the featurewise mean and standard deviation.

        Same as ``_reset()`` then ``partial_fit(X)``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : Standardizer
        """
        self._reset()
        return self.partial_fit(X, y)

    def partial_fit(self, X, y=None):
        """Update the mean and standard deviation with a batch of rows.

        Batch moments are computed like :func:`feature_statistics` and merged into the running
        ones with Chan et al.'s pairwise update, in the highest float precision of X's device;
        the zero-variance rule is applied to the running totals. With ``statistics`` given,
        they are taken as they are and only ``n_samples_seen_`` grows.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            Same namespace, device and number of features at every call.
        y : ignored

        Returns
        -------
        self : Standardizer

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]], dtype=np.float32)
        >>> scaler = Standardizer().partial_fit(X[:1]).partial_fit(X[1:])
        >>> scaler.n_samples_seen_, scaler.mean_.tolist(), scaler.var_.tolist()
        (3, [2.0, 1.0], [2.6666666666666665, 0.0])
        >>> scaler.scale_.tolist() == Standardizer().fit(X).scale_.tolist()
        True
        """
        first_call = not hasattr(self, "n_samples_seen_")
        X, xp, device = _float_input(self, X, reset=first_call)
        n_new = X.shape[0]
        n_total = n_new if first_call else self.n_samples_seen_ + n_new
        if self.statistics is not None:
            self.mean_, self.scale_ = self._given_statistics(X.shape[1], xp, device)
            self.var_ = self.scale_ * self.scale_
            self.n_samples_seen_ = n_total
            return self
        mean, var = _moments(X, xp, device)
        if not first_call:  # Chan, Golub & LeVeque (1979): merge two sets' moments
            n_old = self.n_samples_seen_
            delta = mean - self.mean_
            mean = self.mean_ + delta * (n_new / n_total)
            m2 = self.var_ * n_old + var * n_new + delta * delta * (n_old * n_new / n_total)
            var = m2 / n_total
        self.mean_, self.var_, self.n_samples_seen_ = mean, var, n_total
        constant = _is_constant(var, mean, n_total, xp)
        self.scale_ = xp.sqrt(xp.where(constant, xp.zeros_like(var), var))
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
        multiplier, shift = self.affine(X.dtype)
        # Scaled before the shift: X - mean can overflow float32 for huge finite features.
        return X * multiplier - shift

    def affine(self, dtype=None):
        """``(multiplier, shift)`` such that ``transform(X) == X * multiplier - shift``.

        A linear model on the standardized features can then be fitted or applied to ``X``
        itself (the fast search's L-BFGS folds: no standardized copy of the rows).

        Parameters
        ----------
        dtype : dtype of the fitted statistics' namespace, default=None
            None keeps the statistics' precision.

        Returns
        -------
        multiplier, shift : arrays of shape (n_features,)
            ``1 / scale_`` and ``mean_ / scale_``; both 0 for a zero-variance feature.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[1.0, 5.0], [3.0, 5.0]])
        >>> [a.tolist() for a in Standardizer().fit(X).affine()]
        [[1.0, 0.0], [2.0, 0.0]]
        """
        check_is_fitted(self, "mean_")
        xp, _, _ = get_namespace_and_device(self.scale_)
        safe_scale = xp.where(self.scale_ > 0, self.scale_, xp.ones_like(self.scale_))
        multiplier = xp.where(self.scale_ > 0, 1.0 / safe_scale, xp.zeros_like(safe_scale))
        shift = self.mean_ * multiplier
        if dtype is None:
            return multiplier, shift
        return xp.astype(multiplier, dtype), xp.astype(shift, dtype)


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

    #: a dtype that holds the output exactly: a copy kept for many fits (the folds of the fast
    #: search) takes a quarter of float32's memory
    exact_dtype = np.int8

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

