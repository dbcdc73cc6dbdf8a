"""`featpipe fit`'s out-of-core path: choose it when the selected features would not fit the
memory budget, pick the training and held-out rows from the store's metadata only, train the
streaming recipe (:mod:`featpipe.classical.streaming`) and score the held-out rows a batch at a
time. Nothing ever holds the whole feature matrix.
"""

from __future__ import annotations

import re
import time

import numpy as np

from featpipe.classical.search import SearchResult
from featpipe.classical.streaming import StreamingSpec, fit_streaming, process_memory
from featpipe.errors import FeatpipeError, UsageError
from featpipe.provenance import check_same_features, model_provenance
from featpipe.store.reader import FeatureStore
from featpipe.workflows.data import (
    check_known_classes,
    check_trainable,
    fraction_of,
    stratified_positions,
)

#: float32 copies of the training matrix the in-memory search holds at its peak (the loaded X,
#: the selected/standardized copies, liblinear's float64 and sparse copies: ~6x, GUIDE s.7).
IN_MEMORY_COPIES = 6
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``'2GB'`` -> bytes (K, M, G, T are powers of 1024).

    Examples
    --------
    >>> parse_size("2GB"), parse_size("512M"), parse_size("1.5g")
    (2147483648, 536870912, 1610612736)
    """
    match = _SIZE.match(str(text))
    if match is None:
        raise UsageError(f"`memory_budget` {text!r} is not a size like 2GB, 512MB or 1.5G")
    power = "KMGT".find(match[2].upper()) + 1 if match[2] else 0
    return int(float(match[1]) * 1024 ** power)


def in_memory_bytes(store: FeatureStore, layers: list[str], n_rows: int) -> int:
    """What the in-memory search needs for ``n_rows`` of ``layers``, on top of the process."""
    width = sum(store.layers[name] for name in layers)
    return IN_MEMORY_COPIES * 4 * width * n_rows


def needs_streaming(store: FeatureStore, layers: list[str], budget: int | None) -> str | None:
    """Why the selected features must be streamed under ``budget`` (None: they fit)."""
    if budget is None:
        return None
    need = in_memory_bytes(store, layers, len(store.ok_rows)) + process_memory()
    if need <= budget:
        return None
    width = sum(store.layers[name] for name in layers)
    return (f"the selected features ({len(store.ok_rows)} rows x {width}) need ~"
            f"{need / 2**20:.0f} MB in memory, over the budget of {budget / 2**20:.0f} MB: "
            "fitting out of core (streaming SGD, batches from the store)")


def training_rows(store: FeatureStore, *, test=None, test_split=None, train_split=None,
                  seed: int = 0):
    """(train, held-out) input indices, chosen like the in-memory path chooses rows, from the
    store's labels and splits alone (held-out None when there is none, or when ``test``, another
    store, holds it)."""
    check_trainable(store)
    ok = store.ok_rows
    if test is not None:
        return store.index[store.select_rows(split=train_split)], None
    fraction = fraction_of(test_split)
    if fraction is not None:
        train = store.select_rows(split=train_split)
        kept, held = stratified_positions(store.labels[train], fraction, seed)
        return store.index[train[kept]], store.index[train[held]]
    split_name = test_split
    if split_name is None and store.splits is not None and "test" in set(store.splits):
        split_name = "test"
    if split_name is None:
        return store.index[store.select_rows(split=train_split)], None
    held = store.select_rows(split=split_name)
    train = (store.select_rows(split=train_split) if train_split is not None
             else ok[store.splits[ok] != split_name])
    return store.index[train], store.index[held]


def fit_store_streaming(store: FeatureStore, layers: list[str], spec, *, test=None,
                        test_split=None, train_split=None):
    """Train the streaming recipe on ``store`` and score the held-out rows (a Scored-like pair:
    a :class:`~featpipe.classical.search.SearchResult` and the evaluation or None)."""
    from featpipe.report.metrics import score_predictions

    streaming = StreamingSpec(memory_budget=spec.memory_budget, seed=spec.seed,
                              **({"max_epochs": spec.max_iter} if spec.max_iter else {}))
    test_store = FeatureStore.open(test) if test is not None else None
    train_rows, held_rows = training_rows(store, test=test, test_split=test_split,
                                          train_split=train_split, seed=spec.seed)
    if test_store is not None:  # refused now, not after the out-of-core training
        _check_test_store(test_store, store, layers)
    result = fit_streaming(store, train_rows, layers, streaming)
    search = SearchResult(
        best_estimator=result.pipeline, best_params={"clf__alpha": result.best_alpha},
        best_score=result.best_score, fit_seconds=result.fit_seconds, n_splits=1,
        cv_table=[{"params": {"clf__alpha": a}, "mean_test_score": max(s),
                   "std_test_score": 0.0, "mean_fit_time": 0.0,
                   "rank": 1 + sum(max(t) > max(s) for t in result.validation_scores.values())}
                  for a, s in result.validation_scores.items()],
        extra={"search": result.describe()})
    if test_store is not None:
        held_store, held_rows = test_store, test_store.index[test_store.ok_rows]
    else:
        held_store = store
    evaluation = None
    if held_rows is not None:
        evaluation = _score(result.pipeline, held_store, held_rows, layers,
                            store.class_names, result.batch_rows, score_predictions)
    return search, evaluation


def _check_test_store(test_store: FeatureStore, store: FeatureStore, layers) -> None:
    expected = model_provenance(store.provenance, store.layer_slices(layers))
    check_same_features(expected, test_store.provenance, test_store.path.name)
    if not test_store.has_labels:
        raise FeatpipeError("the evaluation store has no labels")
    labels = test_store.labels[test_store.ok_rows]
    check_known_classes((test_store.class_names[i] for i in np.unique(labels[labels >= 0])),
                        store.class_names)


def _score(pipeline, store: FeatureStore, rows, layers, class_names, batch_rows, score):
    if not len(rows):
        raise FeatpipeError("no held-out rows to evaluate")
    position = {name: i for i, name in enumerate(class_names)}
    mapping = np.array([position.get(name, -1) for name in store.class_names] + [-1])
    truth, predicted, seconds = [], [], 0.0
    for _, X, y in store.iter_batches(rows=rows, batch_size=batch_rows, layers=layers):
        started = time.perf_counter()
        predicted.append(pipeline.predict(X))
        seconds += time.perf_counter() - started
        truth.append(mapping[y])
    return score(np.concatenate(truth), np.concatenate(predicted), class_names, seconds)
