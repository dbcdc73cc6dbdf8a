"""Manifests (``path,label,split``) and seeded splits: stratified train/test, a per-class
limit, balanced k-shot draws."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from featpipe.errors import FeatpipeError
from featpipe.fileio import atomic_write

MANIFEST_NAME = "manifest.csv"
MANIFEST_HEADER = ("path", "label", "split")
SPLITS = ("train", "test")
TEST_FRACTION = 0.3


@dataclass(frozen=True)
class Item:
    """One image of a dataset: where it is, its class, and its split (None: not yet split)."""

    path: Path
    label: str
    split: str | None = None


# --------------------------------------------------------------------------- manifests


def stratified_split(labels: Sequence[str], test_fraction: float = TEST_FRACTION,
                     seed: int = 0) -> np.ndarray:
    """Assign ``'train'``/``'test'`` to each label, stratified by class and seeded.

    Parameters
    ----------
    labels : sequence of str
        Class label of each sample, in a fixed order (the result depends on it).
    test_fraction : float
        Share of each class sent to ``'test'`` (rounded half up); every class with at least
        two samples keeps at least one training sample.
    seed : int
        Seed of the random permutation.

    Returns
    -------
    numpy.ndarray of str
        ``'train'`` or ``'test'`` per sample.
    """
    labels = np.asarray(labels, dtype=str)
    rng = np.random.default_rng(seed)
    splits = np.full(len(labels), "train", dtype=object)
    for label in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == label)
        n_test = min(int(np.floor(len(members) * test_fraction + 0.5)), len(members) - 1)
        splits[rng.permutation(members)[:max(n_test, 0)]] = "test"
    return splits.astype(str)


def write_manifest(manifest: Path, items: Iterable[Item]) -> Path:
    """Write ``path,label,split`` rows, paths relative to the manifest's folder, sorted.

    Parameters
    ----------
    manifest : Path
        File to write; its folder is created if needed.
    items : iterable of Item
        Images with their split set.

    Returns
    -------
    Path
        ``manifest``.
    """
    manifest = Path(manifest)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    base = manifest.parent.resolve()
    rows = sorted(_manifest_row(item, base) for item in items)
    if not rows:
        raise FeatpipeError(f"no images to write into {manifest}")
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(MANIFEST_HEADER)
    writer.writerows(rows)
    return atomic_write(manifest, text.getvalue())


def _manifest_row(item: Item, base: Path) -> tuple[str, str, str]:
    if item.split not in SPLITS:
        raise FeatpipeError(f"{item.path}: split must be one of {SPLITS}, got {item.split!r}")
    relative = os.path.relpath(Path(item.path).resolve(), base)
    return Path(relative).as_posix(), item.label, item.split


def read_manifest(manifest: Path) -> list[Item]:
    """Read a manifest written by :func:`write_manifest` (featpipe's own manifest reader);
    paths become absolute.

    Parameters
    ----------
    manifest : Path
        A ``path,label,split`` CSV file.

    Returns
    -------
    list of Item
    """
    from featpipe.data.sources import from_manifest  # imports torch

    images = from_manifest(manifest, allow_outside=True)  # ours: images live elsewhere
    if images.labels is None or images.splits is None:
        raise FeatpipeError(f"{manifest}: header must be {','.join(MANIFEST_HEADER)}")
    return [Item(Path(path), label, split)
            for path, label, split in zip(images.items, images.labels, images.splits)]


def split_unassigned(items: list[Item], seed: int) -> list[Item]:
    """Give a seeded stratified split to items that have none (official splits are kept)."""
    pending = sorted((item for item in items if item.split is None), key=lambda i: str(i.path))
    splits = stratified_split([item.label for item in pending], seed=seed)
    assigned = [Item(item.path, item.label, split) for item, split in zip(pending, splits)]
    return [item for item in items if item.split is not None] + assigned


def cap_per_class(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """Keep at most ``limit`` items per (label, split) group, drawn seeded."""
    if limit is None:
        return items
    if limit < 1:
        raise FeatpipeError(f"--limit-per-class must be >= 1, got {limit}")
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str | None], list[Item]] = {}
    for item in sorted(items, key=lambda i: str(i.path)):
        groups.setdefault((item.label, item.split), []).append(item)
    kept = []
    for key in sorted(groups, key=str):
        group = groups[key]
        picks = rng.permutation(len(group))[:limit]
        kept.extend(group[i] for i in sorted(picks))
    return kept


def few_shot_splits(labels: Sequence[str], shots: int, seeds: Iterable[int] | int,
                    candidates: Sequence[int] | None = None) -> list[np.ndarray]:
    """Draw balanced k-shot training sets: ``shots`` indices per class for each seed.

    Parameters
    ----------
    labels : sequence
        Label of every sample.
    shots : int
        Images per class in each training set.
    seeds : iterable of int or int
        One training set per seed; an int ``n`` means seeds ``0 .. n-1``.
    candidates : sequence of int, optional
        Indices the draws may use (e.g. the training split); default all samples. Every
        class present among the candidates must have at least ``shots`` of them.

    Returns
    -------
    list of numpy.ndarray
        Sorted sample indices, ``shots * n_classes`` per seed.
    """
    labels = np.asarray(labels)
    pool = np.arange(len(labels)) if candidates is None else np.asarray(candidates, dtype=int)
    if shots < 1:
        raise FeatpipeError(f"shots must be >= 1, got {shots}")
    classes, counts = np.unique(labels[pool], return_counts=True)
    if counts.size and counts.min() < shots:
        short = classes[counts.argmin()]
        raise FeatpipeError(f"class {short!r} has {counts.min()} candidates, "
                            f"fewer than {shots} shots")
    seeds = range(seeds) if isinstance(seeds, int) else seeds
    return [_draw_shots(labels, pool, classes, shots, seed) for seed in seeds]


def _draw_shots(labels, pool, classes, shots, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = [rng.choice(pool[labels[pool] == label], shots, replace=False) for label in classes]
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=int)
