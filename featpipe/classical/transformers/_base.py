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

import numbers
from collections.abc import Mapping

from sklearn.utils._array_api import (
    _max_precision_float_dtype,
    get_namespace_and_device,
    supported_float_dtypes,
)
from sklearn.utils.validation import (
    validate_data,
)

from featpipe.errors import FeatpipeError

LayerSlices = Mapping[str, tuple[int, int]]


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


class _FloatTransformerMixin:
    """Shared tags: float32 and float64 are preserved; array API is supported."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.array_api_support = True
        return tags


def _check_positive_int(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise FeatpipeError(f"{what}={value!r} must be a positive integer")

