"""The torch side: a Dataset that decodes and preprocesses in DataLoader workers, and a collate
function that turns broken inputs into recorded failures instead of crashing the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from featpipe.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, load_rgb
from featpipe.data.imageset import ImageSet


class DecodedImages(torch.utils.data.Dataset):
    """Dataset that decodes inputs of an :class:`ImageSet` and applies a transform.

    Items are ``(input_index, tensor_or_None, failure_reason_or_None)``: decoding and transform
    errors become a reason instead of an exception, so a DataLoader never stops on a bad file.
    The dataset holds only the ImageSet and the transform and is picklable for worker processes.

    Parameters
    ----------
    image_set : ImageSet
        The inputs.
    transform : callable
        ``PIL.Image -> torch.Tensor`` (e.g. a backbone's preprocessing).
    indices : sequence of int, optional
        Which inputs to serve (default: all, in order).
    max_pixels : int, default=DEFAULT_MAX_PIXELS
        Passed to :func:`load_rgb`.
    size_hint : int, optional
        Passed to :func:`load_rgb`.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from featpipe.data import from_arrays
    >>> images = from_arrays([np.zeros((4, 4), np.uint8)] * 3)
    >>> to_tensor = lambda im: torch.from_numpy(np.array(im)).permute(2, 0, 1)
    >>> loader = torch.utils.data.DataLoader(DecodedImages(images, to_tensor), batch_size=2,
    ...                                      collate_fn=collate_decoded)
    >>> [(ok.tolist(), tuple(x.shape)) for ok, x, _ in loader]
    [([0, 1], (2, 3, 4, 4)), ([2], (1, 3, 4, 4))]
    """

    def __init__(self, image_set: ImageSet, transform: Callable[[Image.Image], torch.Tensor],
                 indices: Sequence[int] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 size_hint: int | None = None):
        self.image_set = image_set
        self.transform = transform
        self.indices = indices
        self.max_pixels = max_pixels
        self.size_hint = size_hint

    def __len__(self) -> int:
        return len(self.image_set) if self.indices is None else len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        index = int(i if self.indices is None else self.indices[i])
        try:
            image = load_rgb(self.image_set.items[index], self.max_pixels, self.size_hint)
        except ImageDecodeError as exc:
            return index, None, exc.reason
        try:
            tensor = self.transform(image)
        except Exception as exc:  # noqa: BLE001 - a failing transform is a per-input failure
            return index, None, f"transform failed: {type(exc).__name__}: {exc}"
        if not isinstance(tensor, torch.Tensor):
            return index, None, f"transform failed: returned {type(tensor).__name__}, not a tensor"
        return index, tensor, None


def collate_decoded(
    batch: Sequence[tuple[int, torch.Tensor | None, str | None]],
) -> tuple[np.ndarray, torch.Tensor | None, list[tuple[int, str]]]:
    """Collate :class:`DecodedImages` items, separating successes from failures.

    Returns
    -------
    indices_ok : numpy.ndarray of int64
        Input indices of the decoded images, in batch order.
    stacked : torch.Tensor or None
        ``(N, C, H, W)`` tensors for ``indices_ok`` (None when every item failed).
    failures : list of (int, str)
        ``(input_index, reason)`` for each failed item.

    Examples
    --------
    >>> import torch
    >>> ok, x, failed = collate_decoded([(0, torch.zeros(3, 2, 2), None), (1, None, "file not found")])
    >>> ok.tolist(), tuple(x.shape), failed
    ([0], (1, 3, 2, 2), [(1, 'file not found')])
    """
    ok = [(index, tensor) for index, tensor, reason in batch if reason is None]
    failures = [(index, reason) for index, _, reason in batch if reason is not None]
    indices_ok = np.array([index for index, _ in ok], dtype=np.int64)
    if not ok:
        return indices_ok, None, failures
    shapes = {tuple(tensor.shape) for _, tensor in ok}
    if len(shapes) > 1:
        raise RuntimeError(
            f"transform returned tensors of different shapes {sorted(shapes)}; it must "
            "produce a fixed size (resize/crop) so a batch can be stacked"
        )
    return indices_ok, torch.stack([tensor for _, tensor in ok]), failures

