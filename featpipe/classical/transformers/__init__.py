"""scikit-learn transformers for multi-layer features (layer selection, per-layer L2,
standardization, FNE discretization, clipped PCA/UMAP); NumPy or torch through the array API."""

from featpipe.classical.transformers.layers import (
    LayerL2Normalizer,
    LayerSelector,
    select_layer_slices,
)
from featpipe.classical.transformers.reduction import ClippedPCA, ClippedUMAP
from featpipe.classical.transformers.scaling import (
    FNEDiscretizer,
    Standardizer,
    feature_statistics,
)

__all__ = ["ClippedPCA", "ClippedUMAP", "FNEDiscretizer", "LayerL2Normalizer", "LayerSelector",
           "Standardizer", "feature_statistics", "select_layer_slices"]
