"""Image sources and robust decoding to RGB.

A *source* (an image folder, a CSV manifest, a text list of paths, an MNIST-style IDX file or
in-memory arrays) becomes an :class:`ImageSet`: an ordered list of inputs with stable ids and
optional class labels and splits. :func:`load_rgb` decodes one input to an 8-bit RGB
``PIL.Image`` with fixed, documented rules, and :class:`DecodedImages` / :func:`collate_decoded`
feed a ``torch.utils.data.DataLoader`` so that a broken file becomes a recorded failure, never
a crash.

Examples
--------
>>> from featpipe.images import open_source, load_rgb
>>> images = open_source("data/flowers")            # doctest: +SKIP
>>> images.class_names[:2], len(images)              # doctest: +SKIP
(['daisy', 'dandelion'], 3670)
>>> load_rgb(images.items[0]).mode                   # doctest: +SKIP
'RGB'
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from featpipe.errors import FeatpipeError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "DecodedImages",
    "ImageDecodeError",
    "ImageSet",
    "collate_decoded",
    "from_arrays",
    "from_file_list",
    "from_folder",
    "from_idx",
    "from_manifest",
    "load_rgb",
    "open_source",
]

#: Largest image (width * height) that :func:`load_rgb` decodes by default. Pillow's own
#: default (~89 Mpixel, error above ~179 Mpixel) rejects real scanned/clip-art PNGs of
#: ~170 Mpixel (e.g. OpenClipart); 200 Mpixel admits them while still refusing absurd sizes
#: (a 200 Mpixel RGB image is ~600 MB once decoded).
DEFAULT_MAX_PIXELS = 200_000_000

#: File extensions (lower case) that folder sources treat as images.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff",
     ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)

_MANIFEST_COLUMNS = ("path", "label", "split")
_LIST_SUFFIXES = (".txt", ".lst", ".list")
_IDX_MAGIC = {3: 2051, 1: 2049}  # ndim -> magic number of uint8 IDX files
_WHITE = (255, 255, 255)


# --------------------------------------------------------------------------- ImageSet


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
        ``'folder'``, ``'manifest'``, ``'list'``, ``'idx'`` or ``'arrays'``.

    Examples
    --------
    >>> import numpy as np
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
        )


# --------------------------------------------------------------------------- sources


def open_source(spec: str | os.PathLike) -> ImageSet:
    """Open an image source, choosing the reader from what ``spec`` points to.

    A folder -> :func:`from_folder`; ``*.csv`` -> :func:`from_manifest`; ``*.txt``, ``*.lst``,
    ``*.list`` -> :func:`from_file_list`; an IDX image file (``*idx3*`` name or IDX magic
    number, optionally gzipped) -> :func:`from_idx`.

    Examples
    --------
    >>> images = open_source("data/fashion-mnist/t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.kind, len(images)                                               # doctest: +SKIP
    ('idx', 10000)
    """
    path = Path(spec)
    if not path.exists():
        raise FeatpipeError(
            f"image source '{spec}' does not exist; give an image folder, a .csv manifest, "
            "a .txt list of paths or an IDX file"
        )
    if path.is_dir():
        return from_folder(path)
    name = path.name.lower()
    if name.endswith(".csv"):
        return from_manifest(path)
    if name.endswith(_LIST_SUFFIXES):
        return from_file_list(path)
    if "idx3" in name or _read_idx_magic(path) == _IDX_MAGIC[3]:
        return from_idx(path)
    raise FeatpipeError(
        f"unknown image source format '{spec}'; give an image folder, a .csv manifest "
        "(path,label[,split]), a .txt list of paths or an IDX images file"
    )


def from_folder(path: str | os.PathLike) -> ImageSet:
    """Read a folder of images, one sub-folder per class (or a flat, unlabelled folder).

    Image files are found recursively inside each class folder (symlinks followed); hidden
    files/folders and files without an image extension (:data:`IMAGE_EXTENSIONS`) are
    ignored. Inputs are ordered by class, then by relative path; ids are the relative paths
    with ``/`` separators. A folder holding images directly and no class sub-folders is
    unlabelled.

    Examples
    --------
    >>> images = from_folder("data/flowers")   # data/flowers/<class>/<image>  # doctest: +SKIP
    >>> images.ids[0], images.labels[0]          # doctest: +SKIP
    ('daisy/100080576_f52e8ee070_n.jpg', 'daisy')
    """
    root = Path(path).resolve()
    if not root.is_dir():
        raise FeatpipeError(f"image folder '{path}' does not exist or is not a folder")
    top_files, class_dirs = _visible_entries(root)
    loose_images = [f for f in top_files if _is_image_name(f)]
    labelled = []
    for class_dir in class_dirs:
        relpaths = _images_below(root / class_dir, root)
        labelled.extend((class_dir, rel) for rel in relpaths)
    if loose_images and labelled:
        raise FeatpipeError(
            f"image folder '{path}' mixes images at its top level with class sub-folders; "
            "move the loose images into a class folder (or list inputs in a manifest)"
        )
    if not loose_images and not labelled:
        raise FeatpipeError(
            f"image folder '{path}' contains no images (extensions: "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    if loose_images:
        ids = sorted(loose_images)
        labels = None
    else:
        labelled.sort()
        ids = [rel for _, rel in labelled]
        labels = [label for label, _ in labelled]
    items = [str(root / rel) for rel in ids]
    return ImageSet(items=items, ids=ids, labels=labels, splits=None, root=str(root),
                    kind="folder")


def from_manifest(csv_path: str | os.PathLike) -> ImageSet:
    """Read a CSV manifest with header ``path,label[,split]``.

    Relative paths are resolved against the manifest's folder (absolute paths are kept) and
    also serve as ids. ``label`` must be filled on every row or left empty on every row
    (unlabelled). When a ``split`` column is present every row needs a split.

    Examples
    --------
    >>> images = from_manifest("data/pets.csv")  # doctest: +SKIP
    >>> images.splits[:2]                         # doctest: +SKIP
    ['train', 'train']
    """
    csv_path = Path(csv_path)
    rows = _read_manifest_rows(csv_path)
    has_label = [bool(label) for _, _, label, _ in rows]
    if any(has_label) and not all(has_label):
        line = rows[has_label.index(not has_label[0])][0]
        raise FeatpipeError(
            f"{csv_path}:{line}: some rows have a label and others do not; "
            "fill the label column on every row or leave it empty on every row"
        )
    root = csv_path.resolve().parent
    ids = _check_unique([(line, _normalise_path(p)) for line, p, _, _ in rows], csv_path)
    splits = [split for _, _, _, split in rows]
    return ImageSet(
        items=[str(root / i) for i in ids], ids=ids,
        labels=[label for _, _, label, _ in rows] if all(has_label) else None,
        splits=splits if splits[0] is not None else None,
        root=str(root), kind="manifest",
    )


def from_file_list(txt_path: str | os.PathLike) -> ImageSet:
    """Read a text file with one image path per line (unlabelled).

    Blank lines and lines starting with ``#`` are skipped; relative paths are resolved against
    the list file's folder. Ids are the resulting absolute paths.

    Examples
    --------
    >>> images = from_file_list("data/query.txt")  # doctest: +SKIP
    >>> images.labels is None                        # doctest: +SKIP
    True
    """
    txt_path = Path(txt_path)
    root = txt_path.resolve().parent
    entries = []
    with _open_user_text(txt_path) as lines:
        for line_no, line in enumerate(lines, start=1):
            text = line.strip()
            if text and not text.startswith("#"):
                entries.append((line_no, os.path.normpath(root / text)))
    if not entries:
        raise FeatpipeError(f"image list '{txt_path}' lists no images; put one path per line")
    ids = _check_unique(entries, txt_path)
    return ImageSet(items=list(ids), ids=ids, labels=None, splits=None, root=str(root),
                    kind="list")


def from_idx(images_path: str | os.PathLike,
             labels_path: str | os.PathLike | None = None) -> ImageSet:
    """Read MNIST-style IDX files (raw or gzipped) into in-memory uint8 arrays.

    When ``labels_path`` is None, a labels file next to the images is used if it exists
    (``...images-idx3...`` -> ``...labels-idx1...``); otherwise the set is unlabelled. Labels
    become strings (``'0'`` .. ``'9'``).

    Examples
    --------
    >>> images = from_idx("t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.items[0].shape, images.labels[0], images.ids[0]  # doctest: +SKIP
    ((28, 28), '9', 'idx:t10k-images-idx3-ubyte.gz#0')
    """
    images_path = Path(images_path)
    pixels = _read_idx(images_path, ndim=3)
    if labels_path is None:
        labels_path = _find_idx_labels(images_path)
    labels = None
    if labels_path is not None:
        values = _read_idx(Path(labels_path), ndim=1)
        if len(values) != len(pixels):
            raise FeatpipeError(
                f"IDX labels file '{labels_path}' has {len(values)} labels but "
                f"'{images_path}' has {len(pixels)} images; pass the matching labels file"
            )
        labels = [str(int(v)) for v in values]
    return ImageSet(
        items=list(pixels), ids=[f"idx:{images_path.name}#{i}" for i in range(len(pixels))],
        labels=labels, splits=None, root=str(images_path.resolve().parent), kind="idx",
    )


def from_arrays(images: Sequence[Any] | np.ndarray | torch.Tensor,
                labels: Sequence[Any] | None = None) -> ImageSet:
    """Wrap in-memory images (PIL images, numpy arrays, tensors) as an ImageSet.

    A stacked array/tensor is split along its first axis. Labels may be any hashable and are
    converted with ``str``. Ids are ``'array:<i>'``; entries that are paths (``str`` or
    ``os.PathLike``) are kept as paths with their absolute path as id.

    Examples
    --------
    >>> import numpy as np
    >>> s = from_arrays(np.zeros((2, 8, 8, 3), np.uint8), labels=[0, 1])
    >>> s.ids, s.labels
    (['array:0', 'array:1'], ['0', '1'])
    """
    items = list(images)
    if not items:
        raise FeatpipeError("from_arrays got no images; pass a non-empty list or array")
    if labels is not None:
        labels = [str(label) for label in labels]
        if len(labels) != len(items):
            raise FeatpipeError(
                f"from_arrays got {len(items)} images but {len(labels)} labels; "
                "pass one label per image"
            )
    ids, stored = [], []
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            item = os.path.abspath(item)
            ids.append(item)
        else:
            ids.append(f"array:{i}")
        stored.append(item)
    return ImageSet(items=stored, ids=ids, labels=labels, splits=None, root=None,
                    kind="arrays")


def _visible_entries(folder: Path) -> tuple[list[str], list[str]]:
    """Names of the non-hidden files and sub-folders directly in ``folder``."""
    files, dirs = [], []
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        (dirs if entry.is_dir() else files).append(entry.name)
    return files, dirs


def _images_below(folder: Path, root: Path) -> list[str]:
    """Relative (posix) paths of the image files below ``folder``, following symlinks once."""
    found, seen = [], set()
    for current, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:  # symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(current).relative_to(root)
        found.extend(
            (rel_dir / name).as_posix() for name in filenames
            if not name.startswith(".") and _is_image_name(name)
        )
    return found


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _open_user_text(path: Path):
    """Open a user's text file (UTF-8, BOM tolerated) or raise a one-line FeatpipeError."""
    if not path.is_file():
        raise FeatpipeError(f"file '{path}' does not exist")
    return open(path, encoding="utf-8-sig", newline="")


def _read_manifest_rows(csv_path: Path) -> list[tuple[int, str, str, str | None]]:
    """Parse a manifest into ``(line, path, label, split_or_None)`` tuples, validating as it goes."""
    with _open_user_text(csv_path) as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        _check_manifest_header(header, csv_path)
        has_split = "split" in header
        rows = []
        for fields in reader:
            line = reader.line_num
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                raise FeatpipeError(
                    f"{csv_path}:{line}: expected {len(header)} comma-separated fields "
                    f"({','.join(header)}), found {len(fields)}; quote paths that contain commas"
                )
            record = dict(zip(header, (field.strip() for field in fields)))
            if not record["path"]:
                raise FeatpipeError(f"{csv_path}:{line}: empty path; every row needs a path")
            if has_split and not record["split"]:
                raise FeatpipeError(
                    f"{csv_path}:{line}: empty split; give every row a split or drop the column"
                )
            rows.append((line, record["path"], record["label"], record.get("split")))
    if not rows:
        raise FeatpipeError(f"manifest '{csv_path}' has a header but no rows")
    return rows


def _check_manifest_header(header: list[str], csv_path: Path) -> None:
    unknown = [name for name in header if name not in _MANIFEST_COLUMNS]
    missing = [name for name in ("path", "label") if name not in header]
    if unknown or missing or len(set(header)) != len(header):
        found = ",".join(header) if header else "nothing"
        raise FeatpipeError(
            f"{csv_path}:1: bad manifest header '{found}'; expected 'path,label' or "
            "'path,label,split'"
        )


def _normalise_path(path: str) -> str:
    """Manifest path -> id: normalised, ``/``-separated, relative unless given absolute."""
    return Path(os.path.normpath(path)).as_posix()


def _check_unique(entries: list[tuple[int, str]], source: Path) -> list[str]:
    """Return the ids of ``(line, id)`` entries, refusing an id listed twice."""
    first_line: dict[str, int] = {}
    for line, key in entries:
        if key in first_line:
            raise FeatpipeError(
                f"{source}:{line}: '{key}' is already listed on line {first_line[key]}; "
                "list each image once"
            )
        first_line[key] = line
    return [key for _, key in entries]


# --------------------------------------------------------------------------- IDX


def _idx_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FeatpipeError(f"IDX file '{path}' does not exist")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise FeatpipeError(f"IDX file '{path}' is a damaged gzip file ({exc})") from None
    return data


def _read_idx_magic(path: Path) -> int | None:
    """The IDX magic number of a (possibly gzipped) file, or None if unreadable."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as handle:
            return int.from_bytes(handle.read(4), "big")
    except (OSError, EOFError):
        return None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read a uint8 IDX file with ``ndim`` dimensions, validating magic number and size."""
    data = _idx_bytes(path)
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != _IDX_MAGIC[ndim]:
        kind = "images (idx3)" if ndim == 3 else "labels (idx1)"
        raise FeatpipeError(
            f"'{path}' is not an IDX {kind} file of uint8 values (magic number {magic}, "
            f"expected {_IDX_MAGIC[ndim]})"
        )
    header_end = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    expected = header_end + int(np.prod(shape))
    if len(data) != expected:
        raise FeatpipeError(
            f"IDX file '{path}' holds {len(data) - header_end} data bytes but its header "
            f"{shape} needs {expected - header_end}; the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_end).reshape(shape)


def _find_idx_labels(images_path: Path) -> Path | None:
    """The labels file next to an images file, by the MNIST naming convention, if present."""
    name = images_path.name.replace("images", "labels").replace("idx3", "idx1")
    if name == images_path.name:
        return None
    stem = name[:-3] if name.endswith(".gz") else name
    for candidate in (name, stem, stem + ".gz"):
        if (images_path.parent / candidate).is_file():
            return images_path.parent / candidate
    return None


# --------------------------------------------------------------------------- decoding


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
    item : str, os.PathLike, bytes, PIL.Image.Image, numpy.ndarray or torch.Tensor
        A file path, encoded file bytes, or an in-memory image (arrays: HxW or HxWxC with C in
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
        raise ImageDecodeError(f"decompression bomb: {pixels} pixels > limit {max_pixels}")


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
        return _composite_on_white(image.convert("RGBA"))
    return image.convert("RGB")  # L, 1, F (clipped), CMYK, YCbCr, ...


def _composite_on_white(rgba: Image.Image) -> Image.Image:
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


# --------------------------------------------------------------------------- torch side


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
