"""The :class:`ImageSet`: an ordered list of inputs with stable ids, optional labels and splits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from featpipe.errors import FeatpipeError

#: File extensions (lower case) that folder sources and tar shards treat as images.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff",
     ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)


def readable(text: str) -> str:
    """``text`` as valid UTF-8: a file name's undecodable bytes (which Python keeps as lone
    surrogates) become ``\\xNN`` escapes, so ids and labels can be stored and printed.

    Examples
    --------
    >>> readable("caf\\udce9.png"), readable("café.png")
    ('caf\\\\xe9.png', 'café.png')
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate that did not come from a file name's byte
            return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class ImageSet:
    """An ordered list of inputs with stable ids and optional labels / splits.

    Parameters
    ----------
    items : list
        Per input: a filesystem path (``str``) or an in-memory image (``PIL.Image``,
        ``numpy`` array, ``torch`` tensor).
    ids : list of str
        Stable, unique id per input (relative path, absolute path, ``'idx:<file>#<i>'`` or
        ``'array:<i>'``).
    labels : list of str or None
        Class name per input, or None for an unlabelled source.
    splits : list of str or None
        Split name (e.g. ``'train'``) per input, or None when the source has none.
    root : str or None
        Folder the source lives in, kept for provenance.
    kind : str
        ``'folder'``, ``'manifest'``, ``'list'``, ``'idx'``, ``'tar'`` or ``'arrays'``.
    columns : dict of str to list of str, default={}
        A manifest's other columns (e.g. a user's score), as text, one value per input.

    Examples
    --------
    >>> import numpy as np
    >>> from featpipe.data import from_arrays
    >>> s = from_arrays([np.zeros((2, 2), np.uint8)] * 3, labels=["b", "a", "b"])
    >>> s.class_names, s.label_indices().tolist()
    (['a', 'b'], [1, 0, 1])
    """

    items: list
    ids: list[str]
    labels: list[str] | None
    splits: list[str] | None
    root: str | None
    kind: str
    columns: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        self.ids = [readable(i) for i in self.ids]
        if self.labels is not None:
            self.labels = [readable(label) for label in self.labels]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def class_names(self) -> list[str]:
        """Sorted unique labels (``[]`` when unlabelled)."""
        return sorted(set(self.labels)) if self.labels is not None else []

    def label_indices(self) -> np.ndarray:
        """Index of each input's label in :attr:`class_names` (int64; -1 when unlabelled)."""
        if self.labels is None:
            return np.full(len(self), -1, dtype=np.int64)
        position = {name: i for i, name in enumerate(self.class_names)}
        return np.array([position[label] for label in self.labels], dtype=np.int64)

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the ordered ids, labels and splits."""
        payload = json.dumps([self.ids, self.labels, self.splits], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """Return a new ImageSet with the inputs at ``indices`` (ints or a boolean mask), in that order."""
        picked = np.asarray(indices)
        if picked.dtype == bool:
            if picked.shape != (len(self),):
                raise FeatpipeError(
                    f"boolean subset mask has shape {picked.shape}, expected ({len(self)},)"
                )
            picked = np.flatnonzero(picked)
        picked = picked.astype(np.int64).ravel()
        if picked.size and (picked.min() < -len(self) or picked.max() >= len(self)):
            raise FeatpipeError(
                f"subset index out of range for an image set of {len(self)} inputs"
            )

        def take(values):
            return None if values is None else [values[i] for i in picked]

        return ImageSet(
            items=take(self.items), ids=take(self.ids), labels=take(self.labels),
            splits=take(self.splits), root=self.root, kind=self.kind,
            columns={name: take(values) for name, values in self.columns.items()},
        )

