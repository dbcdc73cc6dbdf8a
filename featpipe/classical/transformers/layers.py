"""Per-layer transformers: select some layers' columns, L2-normalize each layer's block."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_is_fitted,
)

from featpipe.classical.transformers._base import (
    LayerSlices,
    _check_layer_slices,
    _float_input,
    _FloatTransformerMixin,
)
from featpipe.errors import FeatpipeError


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
    # Scaled by each row's largest magnitude before squaring (as BLAS nrm2 does): squares of
    # float32 values above ~1.8e19 overflow to inf, which would zero the whole row.
    peak = xp.max(xp.abs(block), axis=1, keepdims=True)
    scaled = block / xp.where(peak > 0, peak, xp.ones_like(peak))
    norms = xp.sqrt(xp.sum(scaled * scaled, axis=1, keepdims=True))
    return scaled / xp.where(norms > 0, norms, xp.ones_like(norms))

