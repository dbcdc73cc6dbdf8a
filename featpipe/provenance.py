"""Provenance: the record a store (and a model) keeps of how its features were made, and the one
place that says which of its keys decide that two sets of features are the same kind.

A store's provenance holds every recorded :class:`~featpipe.spec.ExtractionSpec` field plus the
values derived while extracting (below). Each key has a role:

- ``feature``: features differ when it differs (models refuse stores that differ here);
- ``resume``: an unfinished store is resumed only when these match too;
- ``record``: kept for the record (versions, device, timings).
"""

from __future__ import annotations

from typing import Any, Mapping

from featpipe.errors import FeatpipeError
from featpipe.spec import FEATURE, RECORD, RESUME, ExtractionSpec

#: Keys derived while extracting, with their roles.
DERIVED = {
    "weights": RESUME,  # where the weights came from ('embedded:…', 'file:…', 'random-init')
    "weights_sha256": FEATURE,
    "preprocessing": FEATURE,
    "family": RECORD,
    "layer_dims": RESUME,
    "presets": RECORD,  # the backbone's presets ({name: layers}), for `fit --layers PRESET`
    "input_fingerprint": RESUME,
    "index_range": RESUME,
    "n_inputs": RECORD,
    "source": RECORD,
    "device": RECORD,
    "batch_size": RECORD,  # images per forward pass (the one chosen for batch_size="auto")
    "featpipe_version": RECORD,
    "torch_version": RECORD,
    "torchvision_version": RECORD,
    "timm_version": RECORD,
    "created": RECORD,
}
_SPEC_KEYS = tuple(k for k in ExtractionSpec.fields_with_role(FEATURE, RESUME, RECORD)
                   if k not in ("weights", "pretrained"))
#: Keys whose difference makes features of another kind.
FEATURE_KEYS = (*ExtractionSpec.fields_with_role(FEATURE),
                *(k for k, role in DERIVED.items() if role == FEATURE))
#: Keys that must match to resume an unfinished store.
RESUME_KEYS = (*FEATURE_KEYS,
               *(k for k in ExtractionSpec.fields_with_role(RESUME) if k in _SPEC_KEYS),
               *(k for k, role in DERIVED.items() if role == RESUME))
#: Keys a model file keeps: enough to re-extract images and to refuse other features.
MODEL_KEYS = (*_SPEC_KEYS, "weights", "weights_sha256", "preprocessing", "family", "layer_dims")
ALL_KEYS = (*_SPEC_KEYS, *DERIVED)


def with_defaults(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """``provenance`` with the spec's default for every setting an older file does not record."""
    absent = {k: list(v) if isinstance(v, tuple) else v
              for k, v in ExtractionSpec.absent_values().items()}
    return {**absent, **provenance}


def resume_differences(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The resume keys on which an unfinished store's provenance differs from the wanted one."""
    existing, wanted = with_defaults(existing), with_defaults(wanted)
    return [k for k in RESUME_KEYS if existing.get(k) != wanted.get(k)]


def model_provenance(store_provenance: Mapping[str, Any], layer_slices: Mapping) -> dict:
    """The store provenance a model keeps, for the layers it uses."""
    store_provenance = with_defaults(store_provenance)
    provenance = {k: store_provenance.get(k) for k in MODEL_KEYS}
    provenance["layers"] = list(layer_slices)
    provenance["layer_dims"] = {name: stop - start for name, (start, stop) in layer_slices.items()}
    return provenance


def check_same_features(expected: Mapping, actual: Mapping, where: str) -> None:
    """Refuse features from another backbone, weights, preprocessing, pooling or layer sizes."""
    expected, actual = with_defaults(expected), with_defaults(actual)
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
