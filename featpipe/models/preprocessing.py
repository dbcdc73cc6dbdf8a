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
from featpipe.spec import WHITE

INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
RESIZE_MODES = ("crop", "pad", "squash")


@dataclass(frozen=True)
class Preprocessing:
    """Turn an RGB PIL image into the normalized tensor a backbone expects.

    Bring the image to a square of side ``image_size`` by ``resize_mode``, scale to [0, 1] and
    normalize with ``mean``/``std``. Deterministic and picklable (safe in DataLoader workers).

    ``crop`` (timm's convention) resizes the shorter side to ``resize_size`` and center-crops:
    a non-square image loses its sides. ``pad`` (letterbox) resizes the longer side to
    ``image_size`` and pads the rest with ``fill``: every pixel of the image is kept.
    ``squash`` resizes to the square, ignoring the aspect ratio.

    Calling it on a PIL image does everything per image. The tensor path splits the same work
    in two: :meth:`resize_crop` in the decode worker (PIL image -> uint8 tensor, 4x smaller to
    move than float32), then :meth:`normalize_batch` once per batch on any device. Both paths
    give identical values for a PIL input (``resize_crop`` resizes with PIL, as ``__call__``
    does); torch's resize of an already decoded uint8 tensor is close to PIL's, not equal.

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
    resize_mode : {'crop', 'pad', 'squash'}, default 'crop'
    fill : tuple of 3 ints, default white
        Colour of the padding in ``pad`` mode (transparent images are composited on white).

    Examples
    --------
    >>> import PIL.Image
    >>> prep = Preprocessing(224, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")
    >>> prep(PIL.Image.new("RGB", (320, 240))).shape
    torch.Size([3, 224, 224])

    The tensor path, batched:

    >>> crops = torch.stack([prep.resize_crop(PIL.Image.new("RGB", (320, 240)))] * 2)
    >>> crops.dtype, prep.normalize_batch(crops).shape
    (torch.uint8, torch.Size([2, 3, 224, 224]))
    """

    image_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    resize_mode: str = "crop"
    fill: tuple[int, int, int] = WHITE

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise FeatpipeError(
                f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}"
            )
        if not 0 < self.image_size <= self.resize_size:
            raise FeatpipeError(
                f"image_size {self.image_size} must be positive and at most resize_size {self.resize_size}"
            )
        if self.resize_mode not in RESIZE_MODES:
            raise FeatpipeError(f"`resize` must be one of {', '.join(RESIZE_MODES)}, got "
                                f"{self.resize_mode!r}")
        fill = tuple(int(v) for v in self.fill)
        if len(fill) != 3 or not all(0 <= v <= 255 for v in fill):
            raise FeatpipeError(f"`pad_color` must be 3 values in 0..255, got {self.fill}")
        object.__setattr__(self, "fill", fill)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if not all(v > 0 for v in self.std):
            raise FeatpipeError(f"`std` values must be positive, got {self.std}")

    def __call__(self, img: PIL.Image.Image) -> torch.Tensor:
        return self.normalize_batch(self.resize_crop(img).unsqueeze(0))[0]

    def resize_crop(self, img: PIL.Image.Image | torch.Tensor) -> torch.Tensor:
        """Bring an image to the ``image_size`` square by ``resize_mode``, as uint8.

        The per-image half of the tensor path, meant for decode workers; finish with
        :meth:`normalize_batch`.

        Parameters
        ----------
        img : PIL.Image.Image, or uint8 tensor of shape (3, H, W) or (N, 3, H, W)
            A PIL image (any mode, converted to RGB) is resized by PIL: the result is exactly
            what ``__call__`` normalizes. A uint8 tensor is resized by torch
            (``antialias=True``; 'nearest' uses torch's 'nearest-exact', PIL's convention), which
            is close to PIL but not equal: bilinear within 1 grey level, bicubic within a few
            levels (more on noise when upsampling).

        Returns
        -------
        crop : uint8 tensor of shape (3, image_size, image_size), or (N, 3, ...) for a batch
            On the input tensor's device (CPU for a PIL image).

        Examples
        --------
        >>> import PIL.Image
        >>> prep = Preprocessing(224, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
        >>> prep.resize_crop(PIL.Image.new("L", (320, 240))).shape
        torch.Size([3, 224, 224])
        >>> prep.resize_crop(torch.zeros(2, 3, 240, 320, dtype=torch.uint8)).shape
        torch.Size([2, 3, 224, 224])
        """
        if isinstance(img, PIL.Image.Image):
            if img.mode != "RGB":
                img = img.convert("RGB")
            mode = InterpolationMode(self.interpolation)
        else:
            _check_uint8_images(img, "img", (3, 4))
            mode = (InterpolationMode.NEAREST_EXACT if self.interpolation == "nearest"
                    else InterpolationMode(self.interpolation))
        if self.resize_mode == "squash":
            return _as_tensor(_resize(img, [self.image_size] * 2, mode))
        if self.resize_mode == "pad":
            return self._letterbox(img, mode)
        img = _resize(img, self.resize_size, mode)
        return _as_tensor(TF.center_crop(img, self.image_size))

    def _letterbox(self, img, mode) -> torch.Tensor:
        height, width = _height_width(img)
        scale = self.image_size / max(height, width)
        size = [max(1, round(height * scale)), max(1, round(width * scale))]
        resized = _as_tensor(_resize(img, size, mode))
        canvas = torch.tensor(self.fill, dtype=torch.uint8, device=resized.device)
        canvas = canvas.view(3, 1, 1).expand(*resized.shape[:-2], self.image_size,
                                             self.image_size).clone()
        top, left = (self.image_size - size[0]) // 2, (self.image_size - size[1]) // 2
        canvas[..., top:top + size[0], left:left + size[1]] = resized
        return canvas

    def normalize_batch(
        self, x: torch.Tensor, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Scale a batch of uint8 images to [0, 1] and normalize it with ``mean``/``std``.

        The batched half of the tensor path: one call per batch, on the batch's device (or
        ``device``, moved there while still uint8).

        Parameters
        ----------
        x : uint8 tensor of shape (N, 3, H, W)
            E.g. stacked :meth:`resize_crop` outputs.
        device : torch.device or str, optional
            Move ``x`` here before converting (default: stay on ``x``'s device).

        Returns
        -------
        batch : float32 tensor of shape (N, 3, H, W)

        Examples
        --------
        >>> prep = Preprocessing(2, 2, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
        >>> x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
        >>> prep.normalize_batch(x)[0, :, 0, 0].tolist()
        [1.0, 1.0, 1.0]
        """
        _check_uint8_images(x, "x", (4,))
        if device is not None:
            x = x.to(device, non_blocking=True)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        # the same operations, in the same order, as TF.normalize: identical values
        return x.to(torch.float32).div_(255.0).sub_(mean).div_(std)

    @property
    def crop_pct(self) -> float:
        """Fraction of the resized image kept by the center crop."""
        return self.image_size / self.resize_size

    def with_resize(self, mode: str, crop_pct: float | None = None,
                    fill: tuple[int, int, int] = WHITE) -> Preprocessing:
        """The same preprocessing with another resize mode, crop fraction or padding colour.

        Examples
        --------
        >>> prep = Preprocessing(128, 146, (0.5,) * 3, (0.5,) * 3, "bicubic")
        >>> prep.with_resize("crop", crop_pct=1.0).resize_size
        128
        >>> prep.with_resize("pad").to_dict()["resize_mode"]
        'pad'
        """
        if crop_pct is not None and not 0 < crop_pct <= 1:
            raise FeatpipeError(f"`crop_pct` must be in (0, 1], got {crop_pct}")
        resize_size = self.resize_size if crop_pct is None else _resize_for(self.image_size,
                                                                              crop_pct)
        return dataclasses.replace(self, resize_mode=mode, resize_size=resize_size, fill=fill)

    def with_image_size(self, image_size: int) -> Preprocessing:
        """Same preprocessing at another crop size, keeping the crop fraction."""
        return dataclasses.replace(
            self, image_size=image_size, resize_size=_resize_for(image_size, self.crop_pct)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, inverse of :meth:`from_dict`."""
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        # Stores written before resize modes existed hold no such keys: crop omits them, so
        # its description (which decides whether two stores hold the same features) is as then.
        if self.resize_mode == "crop":
            del d["resize_mode"], d["fill"]
        else:
            d["fill"] = list(self.fill)
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
            resize_mode=str(d.get("resize_mode", "crop")),
            fill=tuple(d.get("fill", WHITE)),
        )


def _check_uint8_images(x, name: str, ndims: tuple[int, ...]) -> None:
    shapes = " or ".join({3: "(3, H, W)", 4: "(N, 3, H, W)"}[n] for n in ndims)
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.ndim not in ndims \
            or x.shape[-3] != 3:
        got = (f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor)
               else type(x).__name__)
        raise FeatpipeError(f"`{name}` must be a uint8 RGB tensor of shape {shapes}, got {got}")


def _resize(img, size, mode):
    if isinstance(img, PIL.Image.Image):
        return TF.resize(img, size, interpolation=mode)
    return TF.resize(img, size, interpolation=mode, antialias=True)


def _as_tensor(img) -> torch.Tensor:
    return TF.pil_to_tensor(img) if isinstance(img, PIL.Image.Image) else img


def _height_width(img) -> tuple[int, int]:
    if isinstance(img, PIL.Image.Image):
        return img.height, img.width
    return int(img.shape[-2]), int(img.shape[-1])


def _resize_for(image_size: int, crop_pct: float) -> int:
    # timm's rule (transforms_factory): scale_size = floor(img_size / crop_pct)
    return max(image_size, math.floor(image_size / crop_pct + 1e-6))

