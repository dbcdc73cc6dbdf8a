"""Training and held-out rows of a store: splits, stratified hold-outs, label alignment, and
loading only features compatible with a model's provenance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from featpipe.errors import FeatpipeError, UsageError
from featpipe.provenance import check_same_features
from featpipe.store.reader import FeatureSet, FeatureStore


def check_trainable(store: FeatureStore) -> None:
    """Refuse, in one line, a store with no extracted rows or no labels to train on."""
    if not len(store.ok_rows):
        raise FeatpipeError(f"{store.path.name} holds no successfully extracted images "
                            f"({len(store.failures)} failed); see 'featpipe info {store.path}'")
    if not store.has_labels:
        raise FeatpipeError(f"{store.path.name} has no labels; extract from a class-per-folder "
                            "directory or a manifest with a label column to train")


def check_known_classes(present, class_names: list[str]) -> None:
    """Refuse labels (``present``: class names) that are not among the model's classes."""
    unknown = sorted(set(present) - set(class_names))
    if unknown:
        raise FeatpipeError(f"classes {', '.join(unknown)} are not among the model's classes "
                            f"({', '.join(class_names)})")


def split_train_test(store: FeatureStore, layers: list[str], *, test=None, test_split=None,
                     train_split=None, seed: int = 0, defer_held_out: bool = False,
                     ) -> tuple[FeatureSet, FeatureSet | Callable[[], FeatureSet] | None]:
    """Resolve the training rows and the held-out rows (None when there is no test set).

    ``test`` is another store; ``test_split`` a fraction to hold out (stratified, seeded) or a
    split name of this store. Without either, a store with a 'test' split uses it.
    ``defer_held_out`` returns a split's held-out rows as a function that loads them (the split
    is checked now), so that they are not in memory while the model is tuned.
    """
    check_trainable(store)
    if test is not None:
        held_out = load_compatible(FeatureStore.open(test), store.provenance, layers)
        train = store.load(layers, split=train_split)
        return train, align_labels(held_out, train.class_names)
    fraction = fraction_of(test_split)
    if fraction is not None:
        data = store.load(layers, split=train_split)
        return _stratified_holdout(data, fraction, seed)
    split_name = test_split
    if split_name is None and store.splits is not None and "test" in set(store.splits):
        split_name = "test"
    if split_name is None:
        return store.load(layers, split=train_split), None
    store.select_rows(split=split_name)  # a missing split fails now, not after the search
    held_out = partial(store.load, layers, split=split_name)
    if not defer_held_out:
        held_out = held_out()
    if train_split is not None:
        return store.load(layers, split=train_split), held_out
    others = store.ok_rows[store.splits[store.ok_rows] != split_name]
    return store.load(layers, rows=store.index[others]), held_out  # never the whole store


def fraction_of(test_split) -> float | None:
    """``test_split`` as a fraction to hold out, or None when it names a split."""
    if test_split is None:
        return None
    try:
        value = float(test_split)
    except (TypeError, ValueError):
        return None
    if not 0 < value < 1:
        raise UsageError(f"`test_split` fraction must be between 0 and 1, got {test_split}")
    return value


def _stratified_holdout(data: FeatureSet, fraction: float, seed: int):
    train_pos, test_pos = stratified_positions(data.y, fraction, seed)
    return data.subset(train_pos), data.subset(test_pos)


def stratified_positions(y: np.ndarray, fraction: float, seed: int):
    """Sorted (kept, held-out) positions of ``y``, holding out ``fraction`` of each class."""
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(y))
    try:
        train_pos, test_pos = train_test_split(positions, test_size=fraction, stratify=y,
                                               random_state=seed)
    except ValueError as exc:
        raise FeatpipeError(f"cannot hold out {fraction:g} of the images per class: {exc}") from None
    return np.sort(train_pos), np.sort(test_pos)


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
    check_known_classes((data.class_names[i] for i in np.unique(data.y)), class_names)
    mapping = np.array([class_names.index(n) if n in class_names else -1
                        for n in data.class_names])
    aligned = data.subset(slice(None))
    aligned.y = mapping[data.y]
    aligned.class_names = list(class_names)
    return aligned

