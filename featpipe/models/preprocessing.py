"""The :class:`Preprocessing` that matches a backbone's weights: resize, crop, scale, normalize."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import PIL.Image
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from featpipe.errors import FeatpipeError

INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


@dataclass(frozen=True)
class Preprocessing:
    """Turn an RGB PIL image into the normalized tensor a backbone expects.

    Resize the shorter side to ``resize_size``, center-crop ``image_size``, scale to [0, 1]
    and normalize with ``mean``/``std``. Deterministic and picklable (safe in DataLoader
    workers).

    Parameters
    ----------
    image_size : int
        Side of the square crop fed to the network.
    resize_size : int
        Shorter side after resizing, before the crop (``image_size / crop_pct``).
    mean, std : tuple of 3 floats
        Per-channel normalization, applied to values in [0, 1].
    interpolation : {'bicubic', 'bilinear', 'nearest'}
        Resampling filter of the resize.

    Examples
    --------
    >>> import PIL.Image
    >>> prep = Preprocessing(224, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")
    >>> prep(PIL.Image.new("RGB", (320, 240))).shape
    torch.Size([3, 224, 224])
    """

    image_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise FeatpipeError(
                f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}"
            )
        if not 0 < self.image_size <= self.resize_size:
            raise FeatpipeError(
                f"image_size {self.image_size} must be positive and at most resize_size {self.resize_size}"
            )
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def __call__(self, img: PIL.Image.Image) -> torch.Tensor:
        if img.mode != "RGB":
            img = img.convert("RGB")
        img = TF.resize(img, self.resize_size, interpolation=InterpolationMode(self.interpolation))
        img = TF.center_crop(img, self.image_size)
        x = TF.pil_to_tensor(img).to(torch.float32).div_(255.0)
        return TF.normalize(x, self.mean, self.std)

    @property
    def crop_pct(self) -> float:
        """Fraction of the resized image kept by the center crop."""
        return self.image_size / self.resize_size

    def with_image_size(self, image_size: int) -> Preprocessing:
        """Same preprocessing at another crop size, keeping the crop fraction."""
        return dataclasses.replace(
            self, image_size=image_size, resize_size=_resize_for(image_size, self.crop_pct)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, inverse of :meth:`from_dict`."""
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            image_size=int(d["image_size"]),
            resize_size=int(d["resize_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            interpolation=str(d["interpolation"]),
        )


def _resize_for(image_size: int, crop_pct: float) -> int:
    # timm's rule (transforms_factory): scale_size = floor(img_size / crop_pct)
    return max(image_size, math.floor(image_size / crop_pct + 1e-6))

