"""Literature datasets unpacked at ``--from ROOT``: their official lists become a manifest; images
stay in place."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

from benchmarks.datasets.images import existing
from benchmarks.datasets.splits import (MANIFEST_NAME, Item, cap_per_class,
                                        split_unassigned, write_manifest)
from featpipe.errors import FeatpipeError, UsageError

def _lines(path: Path) -> list[str]:
    """Non-empty, non-comment lines of an official list file."""
    text = existing(path).read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _present(items: Iterable[Item]) -> list[Item]:
    """Drop (with one warning) listed images that are not on disk."""
    items = list(items)
    kept = [item for item in items if item.path.is_file()]
    if len(kept) < len(items):
        warnings.warn(f"{len(items) - len(kept)} listed images are missing and were skipped")
    return kept


def _class_folder_items(images: Path) -> list[Item]:
    return [Item(path, folder.name)
            for folder in sorted(p for p in existing(images).iterdir() if p.is_dir())
            for path in sorted(folder.iterdir()) if path.is_file()]


def caltech101_items(root: Path) -> list[Item]:
    """Caltech-101: ``101_ObjectCategories/<class>/*.jpg``; no official split."""
    images = root / "101_ObjectCategories" if (root / "101_ObjectCategories").is_dir() else root
    return [item for item in _class_folder_items(images)
            if item.label != "BACKGROUND_Google" and item.path.suffix.lower() == ".jpg"]


def flowers102_items(root: Path) -> list[Item]:
    """Flowers-102: ``jpg/``, ``imagelabels.mat``, ``setid.mat``; train+val vs test."""
    from scipy.io import loadmat

    labels = loadmat(existing(root / "imagelabels.mat"))["labels"].ravel()
    setid = loadmat(existing(root / "setid.mat"))
    split_of = {int(i): "train" for key in ("trnid", "valid") for i in setid[key].ravel()}
    split_of.update({int(i): "test" for i in setid["tstid"].ravel()})
    return [Item(root / "jpg" / f"image_{number:05d}.jpg", f"class_{int(labels[number - 1]):03d}",
                 split)
            for number, split in sorted(split_of.items())]


def _listed_items(images: Path, lists: dict[str, Sequence[Path]], suffix: str = "") -> list[Item]:
    """Items from ``<class>/<file>`` lines of official list files, label = the class folder."""
    items = []
    for split, files in lists.items():
        for list_file in files:
            for line in _lines(list_file):
                relative = Path(line + suffix)
                items.append(Item(images / relative, relative.parts[0], split))
    return items


def dtd_items(root: Path) -> list[Item]:
    """DTD: ``images/<class>/``, ``labels/train1.txt`` (+ ``val1.txt``), ``labels/test1.txt``."""
    labels = root / "labels"
    train = [labels / name for name in ("train1.txt", "val1.txt")
             if name == "train1.txt" or (labels / name).exists()]
    return _listed_items(root / "images", {"train": train, "test": [labels / "test1.txt"]})


def food101_items(root: Path) -> list[Item]:
    """Food-101: ``images/<class>/<id>.jpg``, ``meta/train.txt``, ``meta/test.txt``."""
    meta = root / "meta"
    return _listed_items(root / "images", {"train": [meta / "train.txt"],
                                           "test": [meta / "test.txt"]}, suffix=".jpg")


def mit67_items(root: Path) -> list[Item]:
    """MIT-67: ``Images/<class>/``, ``TrainImages.txt``, ``TestImages.txt``."""
    return _listed_items(root / "Images", {"train": [root / "TrainImages.txt"],
                                           "test": [root / "TestImages.txt"]})


def pets_items(root: Path) -> list[Item]:
    """Oxford-IIIT Pets: ``images/``, ``annotations/trainval.txt`` and ``test.txt``."""
    items = []
    for split, name in (("train", "trainval.txt"), ("test", "test.txt")):
        for line in _lines(root / "annotations" / name):
            stem = line.split()[0]
            items.append(Item(root / "images" / f"{stem}.jpg", stem.rsplit("_", 1)[0], split))
    return items


def cub200_items(root: Path) -> list[Item]:
    """CUB-200-2011: ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``."""
    paths = dict(line.split(maxsplit=1) for line in _lines(root / "images.txt"))
    class_ids = dict(line.split()[:2] for line in _lines(root / "image_class_labels.txt"))
    is_train = dict(line.split()[:2] for line in _lines(root / "train_test_split.txt"))
    names = (dict(line.split(maxsplit=1) for line in _lines(root / "classes.txt"))
             if (root / "classes.txt").exists() else {})
    return [Item(root / "images" / relative,
                 names.get(class_ids[image_id], Path(relative).parent.name),
                 "train" if is_train[image_id] == "1" else "test")
            for image_id, relative in paths.items()]


def prepare_reference(items_of: Callable[[Path], list[Item]], dest: Path, seed: int = 0, *,
                      source: Path | None = None, limit_per_class: int | None = None) -> Path:
    """Manifest for a literature dataset unpacked at ``source``; images stay in place."""
    if source is None:
        raise UsageError(f"{dest.name} needs --from PATH "
                         "(the dataset as distributed by its authors)")
    root = existing(Path(source)).resolve()
    items = _present(items_of(root))
    if not items:
        raise FeatpipeError(f"no images found under {root}; "
                            "see the layouts in benchmarks/datasets/__init__.py")
    items = cap_per_class(items, limit_per_class, seed)
    return write_manifest(dest / MANIFEST_NAME, split_unassigned(items, seed))
