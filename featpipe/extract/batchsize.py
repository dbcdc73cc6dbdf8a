"""``batch_size="auto"``: the largest batch whose forward pass fits the GPU, found by probing.

The probe runs the capture on zero images of the network's input size, doubling the batch until
the GPU runs out of memory (or :data:`MAX_PROBE` is reached), then bisects between the last size
that fitted and the first that did not, to within about 6 %. A quarter is kept free for what the probe does not see
(the decoded batch, the host copies, other processes), in multiples of 8. The extraction loop's
halving on out-of-memory (``_forward_batch``) stays the safety net. On a CPU memory is not the
limit and larger batches do not run faster: ``auto`` is :data:`CPU_BATCH` there.
"""

from __future__ import annotations

import torch

#: ``batch_size="auto"`` off the GPU.
CPU_BATCH = 32
#: Largest batch the probe tries (throughput flattens long before on current GPUs).
MAX_PROBE = 2048
#: Fraction of the largest fitting batch that is used.
HEADROOM = 0.75


def probe_batch_size(capture, image_size: int, device: torch.device, *,
                     start: int = 32, limit: int = MAX_PROBE) -> int:
    """The largest batch (at most ``limit``) of ``image_size`` images ``capture`` runs on
    ``device`` without running out of memory; 0 when not even one image fits.

    Examples
    --------
    >>> class Fake:  # runs out of memory above 100 images
    ...     def __call__(self, x):
    ...         if len(x) > 100:
    ...             raise torch.cuda.OutOfMemoryError("simulated")
    >>> probe_batch_size(Fake(), 8, torch.device("cpu"))
    100
    """
    fitted, failed = 0, limit + 1  # the largest size known to fit, the smallest known not to
    size = max(1, min(start, limit))
    while failed - fitted > max(1, fitted // 16):  # within ~6 %: a quarter is kept free anyway
        if _fits(capture, size, image_size, device):
            fitted = size
        else:
            failed = size
        size = min(2 * size, limit) if failed > limit else (fitted + failed) // 2
    return fitted


def _fits(capture, batch: int, image_size: int, device: torch.device) -> bool:
    images = torch.zeros(batch, 3, image_size, image_size, device=device)
    try:
        capture(images)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        del images
        if device.type == "cuda":
            torch.cuda.empty_cache()


def auto_batch_size(capture, image_size: int, device: torch.device, n_images: int) -> int:
    """The batch size ``batch_size="auto"`` means for ``n_images`` on ``device``."""
    if device.type != "cuda":
        return CPU_BATCH
    compiled, capture.compiled = capture.compiled, None  # eager probes: no compile per size
    try:
        largest = probe_batch_size(capture, image_size, device,
                                   limit=min(MAX_PROBE, max(1, n_images)))
    finally:
        capture.compiled = compiled
    if largest == 0:
        from featpipe.errors import FeatpipeError

        raise FeatpipeError(f"out of GPU memory even with a batch of one {image_size}-pixel "
                            "image; use a smaller `image_size` or `device='cpu'`")
    kept = int(largest * HEADROOM)
    return max(1, kept - kept % 8 if kept >= 8 else kept)
