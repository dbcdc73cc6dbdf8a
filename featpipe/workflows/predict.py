"""`featpipe predict`'s workflow: predict a store, or images re-extracted exactly like the model's."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from featpipe.errors import FeatpipeError
from featpipe.provenance import check_same_features
from featpipe.spec import ExtractionSpec
from featpipe.store.reader import FeatureStore
from featpipe.workflows.data import load_compatible


def predict_source(model_path, source, *, trusted=False, batch_size: int = 32,
                   device: str = "auto") -> dict:
    """Predict every input of ``source`` (a store, or images re-extracted like the model's).

    ``model_path`` may also be a fine-tuning run directory: its network classifies the images.
    """
    from featpipe.classical.persist import load_model
    from featpipe.finetuning.predict import is_run_dir, predict_run

    if is_run_dir(model_path):
        return predict_run(model_path, images_for_run(source), batch_size=batch_size,
                           device=device)
    pipeline, provenance, training = load_model(model_path, trusted=trusted)
    if _is_store(source):
        return _predict_store(pipeline, provenance, training, FeatureStore.open(source))
    tmp = Path(tempfile.mkdtemp(prefix="featpipe-predict-"))
    try:
        store = extract_like(provenance, source, tmp / "features.h5", batch_size=batch_size,
                             device=device)
        return _predict_store(pipeline, provenance, training, store)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def images_for_run(source, split: str | None = None):
    """The images a fine-tuning run classifies: any image source (not a feature store),
    optionally only the rows of one split."""
    from featpipe.data.sources import open_source

    if _is_store(source):
        raise FeatpipeError(f"{source} is a feature store; a fine-tuning run classifies images "
                            "(give a folder, manifest, file list or IDX file)")
    image_set = open_source(source)
    if split is None:
        return image_set
    if image_set.splits is None or split not in image_set.splits:
        raise FeatpipeError(f"{source} has no rows in split {split!r}")
    return image_set.subset([s == split for s in image_set.splits])


def _is_store(source) -> bool:
    path = Path(source)
    return path.is_file() and path.suffix in (".h5", ".hdf5")


def extract_like(provenance: dict, source, out: Path, *, batch_size: int = 32,
                 device: str = "auto") -> FeatureStore:
    """Extract ``source`` with exactly the backbone settings recorded in ``provenance``."""
    from featpipe.extract import extract

    extract(source, out, ExtractionSpec.from_provenance(provenance), batch_size=batch_size,
            device=device, progress=False)
    store = FeatureStore.open(out)
    check_same_features(provenance, store.provenance, "the re-extracted images")
    return store


def _predict_store(pipeline, provenance: dict, training: dict, store: FeatureStore) -> dict:
    data = load_compatible(store, provenance, provenance["layers"])
    class_names = list(training["class_names"])
    started = time.perf_counter()
    predicted = pipeline.predict(data.X) if len(data.X) else np.empty(0, dtype=np.int64)
    proba = pipeline.predict_proba(data.X) if hasattr(pipeline, "predict_proba") and len(
        data.X) else None
    seconds = time.perf_counter() - started
    rows = {}
    for k, (input_index, image_id) in enumerate(zip(data.index.tolist(), data.ids.tolist())):
        row = {"id": image_id, "prediction": class_names[int(predicted[k])]}
        if proba is not None:
            row.update({f"p_{c}": f"{p:.6f}" for c, p in zip(class_names, proba[k])})
        rows[input_index] = row
    for input_index, reason in store.failures:
        position = int(np.flatnonzero(store.index == input_index)[0])
        rows[input_index] = {"id": str(store.ids[position]), "prediction": "", "error": reason}
    return {"rows": [rows[i] for i in sorted(rows)],
            "proba_classes": class_names if proba is not None else [],
            "predict_seconds": seconds}

