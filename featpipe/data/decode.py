"""Decode one input to an 8-bit RGB ``PIL.Image`` by fixed rules: EXIF orientation, greyscale,
palette, RGBA composited on white, CMYK, 16-bit; a pixel limit against decompression bombs.

Examples
--------
>>> import numpy as np
>>> load_rgb(np.zeros((4, 6), np.uint8)).mode, load_rgb(np.zeros((4, 6), np.uint8)).size
('RGB', (6, 4))
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from featpipe.data.tarshards import TarMember
from featpipe.spec import DEFAULT_MAX_PIXELS
from featpipe.spec import WHITE as _WHITE


class ImageDecodeError(Exception):
    """An input that could not be decoded (a data problem recorded per input, not a user error).

    Parameters
    ----------
    reason : str
        Short reason, e.g. ``'truncated image'`` or ``'file not found'``.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self):
        return type(self), (self.reason,)


# Pillow's pixel limit is a module global; it is lifted only while this module decodes one
# image (under this lock, restored in ``finally``) and replaced by the per-call ``max_pixels``.
_PIXEL_LIMIT_LOCK = threading.RLock()


def load_rgb(item: Any, max_pixels: int = DEFAULT_MAX_PIXELS,
             size_hint: int | None = None) -> Image.Image:
    """Decode one input to an 8-bit RGB image, deterministically.

    Rules: EXIF orientation is applied; transparency (RGBA, LA, palette) is composited on
    white; 16-bit data (Pillow modes ``I;16*`` and ``I``, ``uint16`` arrays) is scaled by
    1/257; Pillow ``F`` images are clipped to [0, 255]; float arrays/tensors must lie in
    [0, 1] and are scaled by 255; other integer arrays must lie in [0, 255]. The image is
    fully decoded, so a truncated file fails here and not later.

    Parameters
    ----------
    item : str, os.PathLike, bytes, TarMember, PIL.Image.Image, numpy.ndarray or torch.Tensor
        A file path, encoded file bytes, a member of a tar shard, or an in-memory image (arrays: HxW or HxWxC with C in
        1, 3, 4; tensors also CxHxW, which wins when the layout is ambiguous).
    max_pixels : int, default=DEFAULT_MAX_PIXELS
        Refuse images with more than this many pixels (decompression-bomb guard). It
        replaces Pillow's global ``MAX_IMAGE_PIXELS`` for this call only.
    size_hint : int, optional
        Target size of the following resize. JPEG files are then decoded at a reduced scale
        (``Image.draft``) that stays at least this large on both sides.

    Returns
    -------
    PIL.Image.Image
        An RGB image independent of any open file.

    Raises
    ------
    ImageDecodeError
        With a short ``reason`` when the input cannot be decoded.

    Examples
    --------
    >>> import numpy as np
    >>> load_rgb(np.ones((2, 3), dtype=np.float32)).getpixel((0, 0))
    (255, 255, 255)
    """
    if isinstance(item, (str, os.PathLike)):
        return _load_path(os.fspath(item), max_pixels, size_hint)
    if isinstance(item, TarMember):
        item = _read_member(item)
    if isinstance(item, (bytes, bytearray)):
        if not item:
            raise ImageDecodeError("zero-byte file")
        return _decode_file(io.BytesIO(item), max_pixels, size_hint)
    if isinstance(item, Image.Image):
        _check_pixels(item.size, max_pixels)
        return _guarded(_decode_opened, item, None)  # never draft() a caller's image
    if isinstance(item, torch.Tensor):
        return _array_to_rgb(_tensor_to_hwc(item), max_pixels)
    if isinstance(item, np.ndarray):
        return _array_to_rgb(item, max_pixels)
    raise ImageDecodeError(f"unreadable: unsupported input type {type(item).__name__}")


def _read_member(member: TarMember) -> bytes:
    try:
        return member.read()
    except OSError as exc:
        raise ImageDecodeError(f"unreadable: {exc}") from None


def _load_path(path: str, max_pixels: int, size_hint: int | None) -> Image.Image:
    try:
        if os.path.getsize(path) == 0:
            raise ImageDecodeError("zero-byte file")
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    except OSError as exc:
        raise ImageDecodeError(f"unreadable: {exc}") from None
    return _decode_file(path, max_pixels, size_hint)


def _decode_file(source, max_pixels: int, size_hint: int | None) -> Image.Image:
    """Open, guard, fully decode and convert an encoded image (path or file object)."""

    def open_and_decode():
        with Image.open(source) as image:
            _check_pixels(image.size, max_pixels)
            return _decode_opened(image, size_hint)

    with _PIXEL_LIMIT_LOCK:
        saved_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return _guarded(open_and_decode)
        finally:
            Image.MAX_IMAGE_PIXELS = saved_limit


def _guarded(decode: Callable[..., Image.Image], *args) -> Image.Image:
    """Run a Pillow decode step, turning any failure into an :class:`ImageDecodeError`."""
    try:
        return decode(*args)
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image (cannot identify)") from None
    except Exception as exc:  # noqa: BLE001 - every decoder failure becomes a reason
        message = str(exc) or type(exc).__name__
        if "truncated" in message.lower() or "broken data stream" in message.lower():
            raise ImageDecodeError("truncated image") from None
        raise ImageDecodeError(f"unreadable: {message}") from None


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    pixels = size[0] * size[1]
    if pixels > max_pixels:
        raise ImageDecodeError(f"decompression bomb: {pixels} pixels > limit {max_pixels} "
                              "(raise it with --max-pixels, or max_pixels= in Python)")


def _decode_opened(image: Image.Image, size_hint: int | None) -> Image.Image:
    """Fully decode an opened image, apply EXIF orientation and convert to RGB."""
    if size_hint and image.format == "JPEG":
        image.draft("RGB", (size_hint, size_hint))
    image.load()
    rgb = _to_rgb(_apply_exif_orientation(image))
    return rgb.copy() if rgb is image else rgb


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - malformed EXIF: keep the stored orientation
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited on white)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I"):  # I;16, I;16B, ... and I: 16-bit range, see load_rgb
        return _grey_to_rgb(_scale_16bit(np.asarray(image)))
    if mode == "P" and "transparency" not in image.info:
        return image.convert("RGB")
    if mode in ("P", "PA", "LA", "La", "RGBa", "RGBA"):
        return composite_on_white(image)
    return image.convert("RGB")  # L, 1, F (clipped), CMYK, YCbCr, ...


def composite_on_white(image: Image.Image) -> Image.Image:
    """``image`` as RGB with its transparency (alpha channel or palette transparency)
    composited on white; an image without transparency is only converted.

    Examples
    --------
    >>> composite_on_white(Image.new("RGBA", (1, 1), (0, 0, 255, 0))).getpixel((0, 0))
    (255, 255, 255)
    """
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, _WHITE + (255,))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(grey)).convert("RGB")


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(values.astype(np.float64), 0, 65535) / 257.0).astype(np.uint8)


def _tensor_to_hwc(tensor: torch.Tensor) -> np.ndarray:
    """CxHxW or HxWxC (or HxW) tensor -> HxW / HxWxC numpy array; CxHxW wins when ambiguous."""
    values = tensor.detach().cpu()
    if values.dtype in (torch.float16, torch.bfloat16):
        values = values.float()
    array = values.numpy()
    if array.ndim == 3 and array.shape[0] in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    return array


def _array_to_rgb(array: np.ndarray, max_pixels: int) -> Image.Image:
    """HxW / HxWxC (C in 1, 3, 4) array of any numeric dtype -> RGB image."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageDecodeError(
            f"unreadable: array of shape {array.shape}; expected HxW or HxWxC with C in 1, 3, 4"
        )
    _check_pixels((array.shape[1], array.shape[0]), max_pixels)
    image = Image.fromarray(np.ascontiguousarray(_to_uint8(array)))
    return _to_rgb(image)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Pixel values -> uint8: bool 0/255, uint16 /257, floats in [0, 1] *255, ints in [0, 255]."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return _scale_16bit(array)
    if np.issubdtype(array.dtype, np.floating):
        if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
            raise ImageDecodeError("unreadable: float pixel values outside [0, 1]")
        return np.rint(array * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ImageDecodeError(
                "unreadable: integer pixel values outside [0, 255]; use uint8, uint16 or floats"
            )
        return array.astype(np.uint8)
    raise ImageDecodeError(f"unreadable: unsupported pixel dtype {array.dtype}")

