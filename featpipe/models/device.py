"""Which device a computation runs on: the user's choice resolved, or where a model lives."""

from __future__ import annotations

import itertools
import os

import torch

from featpipe.errors import FeatpipeError, UsageError


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present; an explicit CUDA request without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FeatpipeError(f"device {device!r} requested but no CUDA GPU is available")
    return dev


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


#: Peak memory of a forward pass as a multiple of its float32 input batch: convolutional
#: backbones hold a few feature maps of up to ~8-25x the input's size at once (EfficientNet's
#: expanded early blocks); the bound refuses only what can never fit.
ACTIVATION_FACTOR = 16


def memory_bytes(device: torch.device) -> int:
    """Total memory of ``device``: the GPU's, or the machine's RAM for the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[1])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits_memory(image_size: int, batch: int, device: torch.device,
                      available: int | None = None) -> None:
    """Refuse, in one line, an image size and batch whose forward pass cannot fit in memory.

    Examples
    --------
    >>> check_fits_memory(224, 32, torch.device("cpu"), available=2**30)
    >>> check_fits_memory(200_000, 1, torch.device("cpu"), available=2**30)
    Traceback (most recent call last):
    ...
    featpipe.errors.UsageError: `image_size` 200000 with `batch_size` 1 needs about 7152.6 GiB \
for a forward pass; cpu has 1.0 GiB; lower them
    """
    available = memory_bytes(device) if available is None else available
    needed = batch * 3 * image_size * image_size * 4 * ACTIVATION_FACTOR
    if needed > available:
        raise UsageError(f"`image_size` {image_size} with `batch_size` {batch} needs about "
                         f"{needed / 2**30:.1f} GiB for a forward pass; {device} has "
                         f"{available / 2**30:.1f} GiB; lower them")
