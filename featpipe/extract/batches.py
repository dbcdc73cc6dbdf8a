"""Batches of uint8 crops for extraction, decoded on the CPU or (JPEGs) on the GPU.

``decode="cpu"``: DataLoader workers decode and resize (:class:`~featpipe.data.loading.
DecodedImages`); the uint8 batch is pinned on CUDA and copied without blocking.
``decode="gpu"``: the workers only read files and the batch is decoded and resized on the device
(:mod:`featpipe.extract.gpu_decode`). ``"auto"`` is ``gpu`` on a CUDA device, else ``cpu``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from featpipe.data.imageset import ImageSet
from featpipe.data.loading import DecodedImages, collate_decoded
from featpipe.errors import UsageError
from featpipe.extract.gpu_decode import (
    EncodedImages,
    collate_encoded,
    decode_batch,
    device_decoder,
)
from featpipe.models.preprocessing import Preprocessing
from featpipe.spec import DECODE


def resolve_decode(decode: str, device: torch.device) -> str:
    """``cpu`` or ``gpu``: ``auto`` decodes on the GPU when extracting on one.

    Examples
    --------
    >>> resolve_decode("auto", torch.device("cpu"))
    'cpu'
    >>> resolve_decode("gpu", torch.device("cpu"))
    Traceback (most recent call last):
    ...
    featpipe.errors.UsageError: `decode` gpu needs a CUDA device (got cpu); use --decode cpu or auto
    """
    if decode not in DECODE:
        raise UsageError(f"`decode` must be one of {', '.join(DECODE)}, got {decode!r}")
    if decode == "auto":
        return "gpu" if device.type == "cuda" else "cpu"
    if decode == "gpu" and device.type != "cuda":
        raise UsageError(f"`decode` gpu needs a CUDA device (got {device}); use --decode cpu "
                         "or auto")
    return decode


def image_batches(image_set: ImageSet, preprocessing: Preprocessing, batches: list[list[int]],
                  *, decode: str, device: torch.device, workers: int,
                  max_pixels: int) -> Iterator[tuple[np.ndarray, torch.Tensor | None, list]]:
    """Yield ``(positions, uint8 crops on device or None, failures)`` per batch.

    The DataLoader's workers start in this call: open the HDF5 file after it (no handle may
    cross a fork).
    """
    if decode == "gpu":
        dataset = EncodedImages(image_set, preprocessing, max_pixels)
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                            collate_fn=collate_encoded)
        decoder = device_decoder(device)  # once, in this thread
        return prefetched(decode_batch(items, preprocessing, device, decoder)
                          for items in loader)
    dataset = DecodedImages(image_set, transform=preprocessing.resize_crop,
                            max_pixels=max_pixels, size_hint=preprocessing.resize_size)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                        collate_fn=collate_decoded, pin_memory=device.type == "cuda")
    return ((positions, None if images is None else images.to(device, non_blocking=True),
             failures) for positions, images, failures in loader)


def prefetched(batches: Iterable, depth: int = 2) -> Iterator:
    """``batches``, produced by a thread ``depth`` ahead: the next batch is decoded and resized
    on the GPU (Python-bound: a few kernels per image) while this one's forward pass runs.

    Examples
    --------
    >>> list(prefetched(iter(range(5))))
    [0, 1, 2, 3, 4]
    """
    done, stop = object(), threading.Event()
    slots: queue.Queue = queue.Queue(maxsize=depth)

    def produce():
        try:
            for batch in batches:
                slots.put((batch, None))
                if stop.is_set():
                    return
        except BaseException as exc:  # re-raised in the consumer
            slots.put((None, exc))
        slots.put((done, None))

    threading.Thread(target=produce, daemon=True).start()
    try:
        while True:
            batch, error = slots.get()
            if error is not None:
                raise error
            if batch is done:
                return
            yield batch
    finally:  # the consumer stopped early: let the producer finish its last put and stop
        stop.set()
        while not slots.empty():
            slots.get_nowait()
