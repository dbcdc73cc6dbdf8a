"""The MNIST IDX format (optionally gzipped): magic numbers, arrays, the matching labels file."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

from featpipe.errors import FeatpipeError

_IDX_MAGIC = {3: 2051, 1: 2049}  # ndim -> magic number of uint8 IDX files


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


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read a uint8 IDX file with ``ndim`` dimensions (3: images, 1: labels), validating its
    magic number and size; raises :class:`FeatpipeError` naming the problem."""
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



_ROW_REFERENCE = re.compile(r"^(?P<file>.+)#(?P<row>\d+)$")


def idx_row_items(root: Path, paths: list[str]) -> list:
    """Manifest paths with IDX rows resolved: ``FILE#ROW`` (``FILE`` an IDX images file relative
    to ``root``) becomes that row's uint8 array; any other path stays a path under ``root``.

    Each IDX file is read once, however many of its rows are used.
    """
    files: dict[Path, np.ndarray] = {}
    items = []
    for path in paths:
        match = _ROW_REFERENCE.match(path)
        target = root / path
        if match is None or target.exists() or not (root / match["file"]).is_file():
            items.append(str(target))
            continue
        source = root / match["file"]
        if source not in files:
            files[source] = read_idx(source, ndim=3)
        rows, row = files[source], int(match["row"])
        if row >= len(rows):
            raise FeatpipeError(f"'{path}': row {row} is beyond the {len(rows)} images of "
                                f"{match['file']}")
        items.append(rows[row])
    return items
