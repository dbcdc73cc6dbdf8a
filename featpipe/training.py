"""Workflows over stores and model files: fit a store, predict images or a store, evaluate.

This is where the two wings meet for the command line: the store's provenance travels into the
model file, and every later use of the model checks that its features come from the same
backbone, weights, preprocessing, pooling and layers.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from featpipe.errors import FeatpipeError, UsageError
from featpipe.store import FeatureSet, FeatureStore

# Provenance fields that decide whether two sets of features are the same kind of features.
FEATURE_KEYS = ("model", "weights_sha256", "preprocessing", "pool", "token_pool")
MODEL_PROVENANCE_KEYS = FEATURE_KEYS + ("weights", "family", "image_size", "dtype")
DEFAULT_CACHE_DIR = "cache"


@dataclass
class TrainingSpec:
    """How to build and tune the classical stage (mirrors `featpipe fit`'s options)."""

    recipe: str | None = "fne"
    layers: str | Sequence[str] | None = None
    normalize: str | None = None
    discretize: bool | None = None
    reduce: str | None = None
    classifier: str | None = None
    grid: Sequence[str] = field(default_factory=list)
    cv: int = 5
    scoring: str = "accuracy"
    n_jobs: int = 1
    halving: bool = False
    seed: int = 0
    cache_dir: str | None = None
    search: str = "fast"
    stats_from: str = "train"

    def describe(self) -> dict:
        return {k: (list(v) if isinstance(v, (list, tuple)) else v)
                for k, v in self.__dict__.items()}


@dataclass
class FitOutcome:
    model_path: Path
    search: object
    evaluation: dict | None
    report_files: list
    stats_from: dict = field(default_factory=dict)

    def summary_line(self) -> str:
        line = (f"wrote {self.model_path}: best CV {self.search.best_score:.4f} with "
                f"{self.search.best_params}")
        if self.evaluation is not None:
            line += (f"; test accuracy {self.evaluation['accuracy']:.4f}, balanced "
                     f"{self.evaluation['balanced_accuracy']:.4f}")
        return line


SEARCHES = ("fast", "grid")
STATS_SOURCES = ("train", "all")  # or the path of another store


def fit_features(train: FeatureSet, spec: TrainingSpec, *, statistics_pool=None):
    """Build the spec's pipeline for ``train``'s layers and tune it by cross-validation.

    ``statistics_pool`` (features with ``train``'s columns, labels never needed) fixes the
    standardization statistics to the pool's instead of each training fold's.
    """
    from featpipe.fastsearch import run_fast_search
    from featpipe.recipes import make_pipeline, parse_grid_overrides, use_pool_statistics
    from featpipe.search import run_search, validate_training_data

    if spec.search not in SEARCHES:
        raise FeatpipeError(f"unknown search {spec.search!r}; choose one of {', '.join(SEARCHES)}")
    validate_training_data(train.X, train.y, spec.cv, class_names=train.class_names)
    pipeline, grid = make_pipeline(
        spec.recipe, layer_slices=train.layer_slices, normalize=spec.normalize,
        discretize=spec.discretize, reduce=spec.reduce, classifier=spec.classifier,
        random_state=spec.seed)
    if statistics_pool is not None:
        use_pool_statistics(pipeline, statistics_pool)
    grid = {**grid, **parse_grid_overrides(list(spec.grid))}
    options = dict(cv=spec.cv, scoring=spec.scoring, n_jobs=spec.n_jobs, random_state=spec.seed,
                   class_names=train.class_names, halving=spec.halving,
                   cache_dir=spec.cache_dir or DEFAULT_CACHE_DIR)
    if spec.search == "fast" and not spec.halving:
        return run_fast_search(pipeline, grid, train.X, train.y, **options)
    return run_search(pipeline, grid, train.X, train.y, **options)


def statistics_pool(store: FeatureStore, spec: TrainingSpec, train: FeatureSet, *,
                    test=None, held_out: FeatureSet | None = None):
    """The unlabelled features whose statistics standardize (None for ``stats_from="train"``)
    and the record of that choice kept in the model's provenance and the report.

    ``"all"`` is every row of ``store`` (test rows included: transductive when the held-out
    rows come from this store); a path is another store with the same features. Only the
    features are used, never the labels.
    """
    source = spec.stats_from
    if source == "train":
        return None, {"source": "train", "transductive": False}
    if source == "all":
        pool = store.load(list(train.layer_slices)).X
        transductive = held_out is not None and test is None
        return pool, {"source": "all", "n_rows": int(len(pool)), "transductive": transductive,
                      "store_fingerprint": store.provenance.get("input_fingerprint")}
    path = Path(source)
    if path.suffix not in (".h5", ".hdf5") or not path.is_file():
        raise FeatpipeError(f"--stats-from {source!r} must be train, all or an existing .h5 "
                            "feature store")
    other = FeatureStore.open(path)
    expected = model_provenance(store.provenance, train.layer_slices)
    pool = load_compatible(other, expected, list(train.layer_slices)).X
    return pool, {"source": str(path), "n_rows": int(len(pool)), "transductive": False,
                  "store_fingerprint": other.provenance.get("input_fingerprint")}


def fit_store(store_path, spec: TrainingSpec, *, out, test=None, test_split=None,
              train_split=None, report_dir=None) -> FitOutcome:
    """`featpipe fit`: tune on a store, score the held-out part once, save model and report."""
    from featpipe.persist import save_model
    from featpipe.report import evaluate, write_report

    out = _checked_output(Path(out))
    store = FeatureStore.open(store_path)
    layers = store.resolve_layers(spec.layers)
    train, held_out = split_train_test(store, layers, test=test, test_split=test_split,
                                       train_split=train_split, seed=spec.seed)
    pool, stats_from = statistics_pool(store, spec, train, test=test, held_out=held_out)
    search = fit_features(train, spec, statistics_pool=pool)
    evaluation = None
    if held_out is not None:
        evaluation = evaluate(search.best_estimator, held_out.X, held_out.y, train.class_names)
    provenance = model_provenance(store.provenance, train.layer_slices)
    training = {
        "spec": spec.describe(), "best_params": search.best_params,
        "best_score": search.best_score, "class_names": train.class_names,
        "n_train": int(len(train.y)), "store": str(store.path),
        "store_fingerprint": store.provenance.get("input_fingerprint"),
        "fit_seconds": search.fit_seconds, "search": search.extra.get("search"),
        "stats_from": stats_from,
    }
    save_model(out, search.best_estimator, provenance=provenance, training=training)
    report_files = []
    if report_dir is not None:
        report_files = write_report(report_dir, search=search, evaluation=evaluation,
                                    meta={"store": str(store.path), **training})
    return FitOutcome(out, search, evaluation, report_files, stats_from)


def _checked_output(out: Path) -> Path:
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise FeatpipeError(f"output folder {parent} does not exist")
    return out


def split_train_test(store: FeatureStore, layers: list[str], *, test=None, test_split=None,
                     train_split=None, seed: int = 0) -> tuple[FeatureSet, FeatureSet | None]:
    """Resolve the training rows and the held-out rows (None when there is no test set).

    ``test`` is another store; ``test_split`` a fraction to hold out (stratified, seeded) or a
    split name of this store. Without either, a store with a 'test' split uses it.
    """
    if not len(store.ok_rows):
        raise FeatpipeError(f"{store.path.name} holds no successfully extracted images "
                            f"({len(store.failures)} failed); see 'featpipe info {store.path}'")
    if not store.has_labels:
        raise FeatpipeError(f"{store.path.name} has no labels; extract from a class-per-folder "
                            "directory or a manifest with a label column to train")
    if test is not None:
        held_out = load_compatible(FeatureStore.open(test), store.provenance, layers)
        train = store.load(layers, split=train_split)
        return train, align_labels(held_out, train.class_names)
    fraction = _fraction(test_split)
    if fraction is not None:
        data = store.load(layers, split=train_split)
        return _stratified_holdout(data, fraction, seed)
    split_name = test_split
    if split_name is None and store.splits is not None and "test" in set(store.splits):
        split_name = "test"
    if split_name is None:
        return store.load(layers, split=train_split), None
    held_out = store.load(layers, split=split_name)
    if train_split is not None:
        return store.load(layers, split=train_split), held_out
    data = store.load(layers)
    return subset(data, data.splits != split_name), held_out


def _fraction(test_split) -> float | None:
    if test_split is None:
        return None
    try:
        value = float(test_split)
    except (TypeError, ValueError):
        return None
    if not 0 < value < 1:
        raise UsageError(f"--test-split fraction must be between 0 and 1, got {test_split}")
    return value


def _stratified_holdout(data: FeatureSet, fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(data.y))
    try:
        train_pos, test_pos = train_test_split(positions, test_size=fraction, stratify=data.y,
                                               random_state=seed)
    except ValueError as exc:
        raise FeatpipeError(f"cannot hold out {fraction:g} of the images per class: {exc}") from None
    return subset(data, np.sort(train_pos)), subset(data, np.sort(test_pos))


def subset(data: FeatureSet, selection) -> FeatureSet:
    """The rows ``selection`` (boolean mask or positions) of ``data``."""
    return FeatureSet(
        X=data.X[selection], y=None if data.y is None else data.y[selection],
        layer_slices=data.layer_slices, class_names=data.class_names, ids=data.ids[selection],
        index=data.index[selection],
        splits=None if data.splits is None else data.splits[selection],
        provenance=data.provenance)


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


def load_compatible(store: FeatureStore, expected: dict, layers: Sequence[str],
                    split: str | None = None) -> FeatureSet:
    check_same_features({**expected, "layers": list(layers),
                         "layer_dims": {n: expected["layer_dims"][n] for n in layers}},
                        store.provenance, store.path.name)
    return store.load(list(layers), split=split)


def align_labels(data: FeatureSet, class_names: list[str]) -> FeatureSet:
    """Re-express ``data.y`` as indices into ``class_names`` (matching by name)."""
    if data.y is None:
        raise FeatpipeError("the evaluation store has no labels")
    if list(data.class_names) == list(class_names):
        return data
    unknown = sorted(set(data.class_names[i] for i in np.unique(data.y)) - set(class_names))
    if unknown:
        raise FeatpipeError(f"classes {', '.join(unknown)} are not among the model's classes "
                            f"({', '.join(class_names)})")
    mapping = np.array([class_names.index(n) if n in class_names else -1
                        for n in data.class_names])
    aligned = subset(data, slice(None))
    aligned.y = mapping[data.y]
    aligned.class_names = list(class_names)
    return aligned


def predict_source(model_path, source, *, trusted=False, batch_size: int = 32,
                   device: str = "auto") -> dict:
    """Predict every input of ``source`` (a store, or images re-extracted like the model's)."""
    from featpipe.persist import load_model

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


def _is_store(source) -> bool:
    path = Path(source)
    return path.is_file() and path.suffix in (".h5", ".hdf5")


def extract_like(provenance: dict, source, out: Path, *, batch_size: int = 32,
                 device: str = "auto") -> FeatureStore:
    """Extract ``source`` with exactly the backbone settings recorded in ``provenance``."""
    from featpipe.extract import extract

    weights = provenance.get("weights") or ""
    extract(source, out, model=provenance["model"],
            weights=weights[len("file:"):] if weights.startswith("file:") else None,
            pretrained=weights != "random-init", layers=provenance["layers"],
            pool=provenance["pool"], token_pool=provenance["token_pool"],
            image_size=provenance["image_size"], dtype=provenance.get("dtype") or "float32",
            batch_size=batch_size, device=device, progress=False)
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


def evaluate_store(model_path, store_path, *, split=None, trusted=False,
                   report_dir=None) -> dict:
    """`featpipe evaluate`: score a model on a labelled store with matching provenance."""
    from featpipe.persist import load_model
    from featpipe.report import evaluate, write_report

    pipeline, provenance, training = load_model(model_path, trusted=trusted)
    store = FeatureStore.open(store_path)
    data = load_compatible(store, provenance, provenance["layers"], split=split)
    data = align_labels(data, list(training["class_names"]))
    if len(data.y) == 0:
        raise FeatpipeError(f"{store.path.name} has no images to evaluate")
    evaluation = evaluate(pipeline, data.X, data.y, list(training["class_names"]))
    evaluation["n_samples"] = int(len(data.y))
    if report_dir is not None:
        write_report(report_dir, search=None, evaluation=evaluation,
                     meta={"model": str(model_path), "store": str(store.path)})
    return evaluation
