"""Provenance: which settings decide that two sets of features are the same kind of features."""

from __future__ import annotations

from featpipe.errors import FeatpipeError

FEATURE_KEYS = ("model", "weights_sha256", "preprocessing", "pool", "token_pool")
MODEL_PROVENANCE_KEYS = FEATURE_KEYS + ("weights", "family", "image_size", "dtype")


def model_provenance(store_provenance: dict, layer_slices: dict) -> dict:
    """The store provenance a model keeps: enough to re-extract and to refuse other features."""
    provenance = {k: store_provenance.get(k) for k in MODEL_PROVENANCE_KEYS}
    provenance["layers"] = list(layer_slices)
    provenance["layer_dims"] = {name: stop - start for name, (start, stop) in layer_slices.items()}
    return provenance


def check_same_features(expected: dict, actual: dict, where: str) -> None:
    """Refuse features from another backbone, weights, preprocessing, pooling or layer sizes."""
    different = [k for k in FEATURE_KEYS if expected.get(k) != actual.get(k)]
    actual_dims = actual.get("layer_dims", {})
    missing = [n for n in expected["layers"] if n not in actual_dims]
    if missing:
        raise FeatpipeError(f"{where} lacks layer(s) {', '.join(missing)} that the model uses")
    if any(actual_dims[n] != d for n, d in expected["layer_dims"].items()):
        different.append("layer_dims")
    if different:
        detail = "; ".join(f"{k}: model {expected.get(k)!r} vs {actual.get(k)!r}"
                           for k in different[:2])
        raise FeatpipeError(f"{where} was extracted with other settings than the model "
                            f"({', '.join(different)} differ: {detail})")

