"""The images of a fine-tuning run: the validation split, images decoded once, augmentation.

Every image is decoded and brought to the network's square (``Preprocessing.resize_crop``, the
extraction's own resize) once and kept in memory as uint8 (3 x S x S bytes: 27 KB at 96 px);
epochs then only augment and normalize. Augmentation (torchvision transforms v2) works on that
square: a random resized crop (scale 0.25-1, aspect 3/4-4/3) back to S and a horizontal flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from featpipe.data.imageset import ImageSet
from featpipe.data.loading import DecodedImages, collate_decoded
from featpipe.errors import FeatpipeError
from featpipe.extract.run import default_workers
from featpipe.models.preprocessing import Preprocessing

CROP_SCALE = (0.25, 1.0)
TEST_SPLIT = "test"


@dataclass
class Crops:
    """Decoded images of an :class:`ImageSet` at the network's size.

    Attributes
    ----------
    images : uint8 tensor of shape (n, 3, S, S)
        The images that decoded, in input order.
    labels : int64 tensor of shape (n,)
        Index into the run's class names (-1 when unlabelled).
    positions : ndarray of int64
        Position of each image in the ImageSet it came from.
    failures : list of (int, str)
        ``(position, reason)`` of the inputs that could not be decoded.
    """

    images: torch.Tensor
    labels: torch.Tensor
    positions: np.ndarray
    failures: list

    def __len__(self) -> int:
        return len(self.positions)


def decode_crops(image_set: ImageSet, preprocessing: Preprocessing, class_names: list[str],
                 *, batch_size: int = 64, workers: int | None = None) -> Crops:
    """Decode and resize every input of ``image_set`` once (failures are recorded, not fatal)."""
    dataset = DecodedImages(image_set, transform=preprocessing.resize_crop,
                            size_hint=preprocessing.resize_size)
    n_batches = -(-len(image_set) // batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_decoded,
                        num_workers=default_workers(n_batches) if workers is None else workers)
    size = preprocessing.image_size
    parts, positions, failures = [torch.empty(0, 3, size, size, dtype=torch.uint8)], [], []
    for ok, images, failed in loader:
        if images is not None:
            parts.append(images)
        positions.append(ok)
        failures += failed
    positions = np.concatenate(positions) if positions else np.empty(0, np.int64)
    labels = labels_of(image_set, class_names)[positions]
    return Crops(torch.cat(parts), torch.from_numpy(labels), positions, failures)


def labels_of(image_set: ImageSet, class_names: list[str]) -> np.ndarray:
    """Index of each input's label in ``class_names`` (-1 when unlabelled or unknown)."""
    if image_set.labels is None:
        return np.full(len(image_set), -1, dtype=np.int64)
    position = {name: i for i, name in enumerate(class_names)}
    return np.array([position.get(label, -1) for label in image_set.labels], dtype=np.int64)


def split_train_val(image_set: ImageSet, val_split: float | str,
                    seed: int) -> tuple[ImageSet, ImageSet]:
    """Training and validation images: a stratified fraction per class, or a split by name.

    With a fraction, each class gives ``max(1, round(fraction * n))`` images to validation and
    needs at least one left for training. Rows of a ``test`` split never train or validate.
    """
    if image_set.labels is None:
        raise FeatpipeError("the source has no labels; fine-tuning needs a class per image "
                            "(a class-per-folder directory or a manifest with a label column)")
    splits = np.array(image_set.splits if image_set.splits is not None else [""] * len(image_set))
    usable = splits != TEST_SPLIT
    if isinstance(val_split, str):
        if image_set.splits is None or val_split not in set(splits):
            raise FeatpipeError(f"the source has no split named {val_split!r} for `val_split`; "
                                "give a fraction such as 0.1")
        val = splits == val_split
        return image_set.subset(usable & ~val), image_set.subset(val)
    labels = np.array(image_set.labels, dtype=object)
    rng = np.random.default_rng(seed)
    val = np.zeros(len(image_set), dtype=bool)
    for name in sorted(set(labels[usable])):
        members = np.flatnonzero(usable & (labels == name))
        n_val = max(1, round(val_split * len(members)))
        if len(members) - n_val < 1:
            raise FeatpipeError(
                f"class {name!r} has {len(members)} image(s); a validation split of "
                f"{val_split:g} needs at least {n_val + 1} (one to train); add images or use "
                "a split column")
        val[rng.choice(members, n_val, replace=False)] = True
    return image_set.subset(usable & ~val), image_set.subset(val)


def augmenter(image_size: int, augment: str):
    """The training augmentation on one uint8 (3, S, S) square (None for ``augment='none'``)."""
    if augment == "none":
        return None
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop(image_size, scale=CROP_SCALE, antialias=True),
                       v2.RandomHorizontalFlip()])


def augment_batch(images: torch.Tensor, transform) -> torch.Tensor:
    """Each image of a uint8 batch through ``transform`` (its own random draw)."""
    if transform is None:
        return images
    return torch.stack([transform(image) for image in images])
