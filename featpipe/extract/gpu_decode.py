"""JPEG decoding on the GPU, a batch at a time, with a per-image CPU fallback.

The decode workers only read files (:class:`EncodedImages`): an upright RGB or greyscale JPEG
within the pixel limit travels as its encoded bytes; anything else (PNG, CMYK JPEG, a JPEG with
an EXIF rotation, which nvJPEG does not apply, a file Pillow cannot identify) is decoded and
resized there by the CPU path (:func:`~featpipe.data.decode.load_rgb` then
:meth:`~featpipe.models.preprocessing.Preprocessing.resize_crop`), exactly as
``decode="cpu"`` does. In the main process :func:`decode_batch` hands the whole batch of bytes
to ``torchvision.io.decode_jpeg(list, device=...)`` (nvJPEG on CUDA) and resizes each image on
the device. One bad file fails such a batched call as a whole (torchvision returns no partial
results), so on any error the batch is retried image by image, and an image the device decoder
refuses goes through the CPU path; one that fails there too is a recorded failure, never a
failed batch. When the device decoder is unavailable altogether (no CUDA, no nvJPEG, a
torchvision without ``decode_jpeg``), every image takes the CPU path: the features are then
exactly those of ``decode="cpu"``.

The GPU path resizes decoded pixels with torch (antialiased), the CPU path with Pillow: the two
agree within a grey level or so, not bit for bit (see
:meth:`~featpipe.models.preprocessing.Preprocessing.resize_crop`); the store records which ran.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from featpipe.data.decode import ImageDecodeError, load_rgb
from featpipe.data.imageset import ImageSet
from featpipe.data.tarshards import TarMember
from featpipe.models.preprocessing import Preprocessing

#: Pillow modes of JPEGs that the device decoder turns into RGB as Pillow does.
DEVICE_MODES = ("RGB", "L")
#: The EXIF orientation tag: nvJPEG does not apply it (torchvision applies it on the CPU only).
EXIF_ORIENTATION = 0x0112
_JPEG_MAGIC = b"\xff\xd8\xff"


class EncodedImages(torch.utils.data.Dataset):
    """Items ``(input_index, kind, payload)`` for :func:`decode_batch`.

    ``kind`` is ``"jpeg"`` (payload: the file's bytes as a 1-D uint8 tensor), ``"crop"``
    (payload: the CPU path's uint8 crop) or ``"failed"`` (payload: the reason).

    Parameters
    ----------
    image_set : ImageSet
    preprocessing : Preprocessing
        Its ``resize_crop`` is the CPU path's resize.
    max_pixels : int
    """

    def __init__(self, image_set: ImageSet, preprocessing: Preprocessing, max_pixels: int):
        self.image_set = image_set
        self.preprocessing = preprocessing
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.image_set)

    def __getitem__(self, index: int) -> tuple[int, str, object]:
        item = self.image_set.items[index]
        data = _read_bytes(item)
        if data is not None and _device_decodable(data, self.max_pixels):
            return index, "jpeg", torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return (index, *cpu_crop(item if data is None else data, self.preprocessing,
                                 self.max_pixels))


def _read_bytes(item) -> bytes | None:
    """A file's bytes (None for an in-memory image or an unreadable file: the CPU path says why)."""
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, TarMember):
        try:
            return item.read()
        except OSError:
            return None
    if isinstance(item, (str, os.PathLike)):
        try:
            with open(item, "rb") as f:
                return f.read()
        except OSError:
            return None
    return None


def _device_decodable(data: bytes, max_pixels: int) -> bool:
    """A JPEG the device decoder handles like the CPU path: RGB/greyscale, upright (no EXIF
    rotation to apply), within the pixel limit."""
    if not data.startswith(_JPEG_MAGIC):
        return False
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
            return (image.mode in DEVICE_MODES and width * height <= max_pixels
                    and image.getexif().get(EXIF_ORIENTATION, 1) == 1)
    except Exception:  # noqa: BLE001 - the CPU path records why
        return False


def cpu_crop(item, preprocessing: Preprocessing, max_pixels: int) -> tuple[str, object]:
    """``("crop", uint8 tensor)`` by the CPU path (as ``decode="cpu"``: JPEGs decoded at a
    reduced scale no smaller than the resize), or ``("failed", reason)``."""
    try:
        image = load_rgb(item, max_pixels, size_hint=preprocessing.resize_size)
        return "crop", preprocessing.resize_crop(image)
    except ImageDecodeError as exc:
        return "failed", exc.reason
    except Exception as exc:  # noqa: BLE001 - a failing resize is a per-input failure
        return "failed", f"transform failed: {type(exc).__name__}: {exc}"


def collate_encoded(batch: Sequence[tuple[int, str, object]]):
    """A batch of :class:`EncodedImages` items as ``(items, packed)``: the JPEGs' bytes are
    concatenated into one uint8 tensor (one transfer from a decode worker instead of one per
    image) and each JPEG's payload becomes its ``(offset, length)`` in it.

    Examples
    --------
    >>> items, packed = collate_encoded([(0, "jpeg", torch.tensor([1, 2], dtype=torch.uint8)),
    ...                                  (1, "failed", "zero-byte file"),
    ...                                  (2, "jpeg", torch.tensor([3], dtype=torch.uint8))])
    >>> items, packed.tolist()
    ([(0, 'jpeg', (0, 2)), (1, 'failed', 'zero-byte file'), (2, 'jpeg', (2, 1))], [1, 2, 3])
    """
    jpegs = [payload for _, kind, payload in batch if kind == "jpeg"]
    packed = torch.cat(jpegs) if jpegs else torch.empty(0, dtype=torch.uint8)
    items, offset = [], 0
    for index, kind, payload in batch:
        if kind == "jpeg":
            payload, offset = (offset, len(payload)), offset + len(payload)
        items.append((index, kind, payload))
    return items, packed


#: The start of torchvision's deprecation warning for its image decoders.
_TORCHVISION_DEPRECATION = "The image decoding and encoding capabilities of TorchVision"


def device_decoder(device: torch.device) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    """``decode_jpeg(list, device=device)`` as RGB with EXIF orientation, as the CPU path.

    Build it once per run, in the main thread: it silences torchvision's deprecation of its
    decoders (in favour of TorchCodec, 0.29) by one process-wide filter on that message, since
    ``warnings.catch_warnings`` around each call is not thread-safe (batches are decoded in a
    prefetch thread)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    warnings.filterwarnings("ignore", message=_TORCHVISION_DEPRECATION,
                            category=DeprecationWarning)

    def decode(encoded: list[torch.Tensor]) -> list[torch.Tensor]:
        return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device,
                           apply_exif_orientation=True)

    return decode


def decode_batch(batch, preprocessing: Preprocessing, device: torch.device,
                 decoder: Callable | None = None):
    """Decode and resize one batch on ``device``; failures never stop the batch.

    Parameters
    ----------
    batch : (items, packed)
        :class:`EncodedImages` items collated by :func:`collate_encoded`.
    preprocessing : Preprocessing
    device : torch.device
        Where the crops are made and returned.
    decoder : callable, optional
        ``list of encoded uint8 tensors -> list of (3, H, W) uint8 tensors`` (default:
        :func:`device_decoder`); raising sends images to the CPU path.

    Returns
    -------
    positions : ndarray of int64
        Input indices of the decoded images, in batch order.
    crops : uint8 tensor (N, 3, S, S) on ``device``, or None when every image failed
    failures : list of (int, str)
    """
    decoder = decoder or device_decoder(device)
    items, packed = batch
    jpegs = [(i, packed[start:start + length]) for i, kind, (start, length) in
             (item for item in items if item[1] == "jpeg")]
    encoded = dict(jpegs)
    decoded = dict(zip((i for i, _ in jpegs), _decode_all(decoder, [p for _, p in jpegs])))
    resized = _resize_by_size({i: image for i, image in decoded.items() if image is not None},
                              preprocessing)
    crops, failures = {}, []
    for index, kind, payload in items:
        if kind == "jpeg":
            kind, payload = (("crop", resized[index]) if index in resized
                             else cpu_crop(encoded[index].numpy().tobytes(), preprocessing,
                                           max_pixels=_NO_LIMIT))  # checked in the worker
        if kind == "failed":
            failures.append((index, payload))
        else:
            crops[index] = payload.to(device, non_blocking=True)
    positions = np.array(list(crops), dtype=np.int64)
    stacked = torch.stack(list(crops.values())) if crops else None
    return positions, stacked, failures


_NO_LIMIT = 2**62


def _resize_by_size(images: dict, preprocessing: Preprocessing) -> dict:
    """``{index: crop}``: images of one size are resized in one call (a few kernels for the
    group instead of per image: the Python overhead per image bounds GPU decoding)."""
    groups: dict[tuple, list] = {}
    for index, image in images.items():
        groups.setdefault(tuple(image.shape), []).append(index)
    crops = {}
    for indices in groups.values():
        batch = torch.stack([images[i] for i in indices])
        crops.update(zip(indices, preprocessing.resize_crop(batch)))
    return crops


def _decode_all(decoder: Callable, encoded: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """The batch in one call; after an error image by image (None: the device cannot)."""
    if not encoded:
        return []
    try:
        return list(decoder(encoded))
    except Exception:  # noqa: BLE001 - one bad file fails the whole batched call
        pass
    out = []
    for one in encoded:
        try:
            out.append(decoder([one])[0])
        except Exception:  # noqa: BLE001 - this image takes the CPU path
            out.append(None)
    return out
