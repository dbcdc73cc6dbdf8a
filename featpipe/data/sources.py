"""Image sources -> :class:`~featpipe.data.imageset.ImageSet`: a class-per-folder directory, a CSV
manifest, a plain file list, an MNIST-style IDX file, or in-memory arrays.

Examples
--------
>>> from featpipe.data import open_source
>>> images = open_source("data/clipart-mini/manifest.csv")
>>> images.kind, len(images), images.class_names[:2]
('manifest', 175, ['birds', 'bugs'])
"""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featpipe.data.idx import _IDX_MAGIC, _find_idx_labels, _read_idx_magic, idx_row_items, read_idx
from featpipe.data.imageset import IMAGE_EXTENSIONS, ImageSet
from featpipe.data.tarshards import from_tar_shards, is_tar_source
from featpipe.errors import FeatpipeError, FeatpipeWarning



_MANIFEST_COLUMNS = ("path", "label", "split")
_LIST_SUFFIXES = (".txt", ".lst", ".list")


def open_source(spec: str | os.PathLike, *, follow_links: bool = False,
                allow_outside: bool = False) -> ImageSet:
    """Open an image source, choosing the reader from what ``spec`` points to.

    A folder -> :func:`from_folder` (``follow_links``); ``*.csv`` -> :func:`from_manifest`
    (``allow_outside``); ``*.txt``, ``*.lst``, ``*.list`` -> :func:`from_file_list`; an IDX
    image file (``*idx3*`` name or IDX magic number, optionally gzipped) -> :func:`from_idx`;
    ``*.tar`` (or ``shards-{000..009}.tar``) -> :func:`~featpipe.data.tarshards.from_tar_shards`.

    Examples
    --------
    >>> images = open_source("data/fashion-mnist/t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.kind, len(images)                                               # doctest: +SKIP
    ('idx', 10000)

    A trailing ``[start:stop]`` or ``[start:stop:step]`` keeps those rows of any source (ids
    keep their row numbers in the full source):

    >>> len(open_source("data/clipart-mini/manifest.csv[10:20]"))
    10
    """
    path, rows = _split_row_selector(str(spec))
    image_set = _open_path(path, spec, follow_links=follow_links, allow_outside=allow_outside)
    if rows is None:
        return image_set
    selected = range(len(image_set))[rows]
    if not len(selected):
        raise FeatpipeError(f"'{spec}' selects no rows of its {len(image_set)} inputs")
    return image_set.subset(list(selected))


_ROW_SELECTOR = re.compile(r"^(?P<path>.+)\[(?P<start>-?\d*):(?P<stop>-?\d*)(?::(?P<step>-?\d+))?\]$")


def _split_row_selector(spec: str) -> tuple[Path, slice | None]:
    """``'file.gz[0:2000]'`` -> (Path('file.gz'), slice(0, 2000)); a path that exists as
    written is never split."""
    match = _ROW_SELECTOR.match(spec)
    if match is None or Path(spec).exists():
        return Path(spec), None
    bounds = [int(match[k]) if match[k] else None for k in ("start", "stop", "step")]
    if bounds[2] == 0:
        raise FeatpipeError(f"row selector of '{spec}' has a step of 0")
    return Path(match["path"]), slice(*bounds)


def _open_path(path: Path, spec, *, follow_links: bool, allow_outside: bool) -> ImageSet:
    if is_tar_source(str(path)):
        return from_tar_shards(str(path))
    if not path.exists():
        raise FeatpipeError(
            f"image source '{spec}' does not exist; give an image folder, a .csv manifest, "
            "a .txt list of paths or an IDX file"
        )
    if path.is_dir():
        return from_folder(path, follow_links=follow_links)
    name = path.name.lower()
    if name.endswith(".csv"):
        return from_manifest(path, allow_outside=allow_outside)
    if name.endswith(_LIST_SUFFIXES):
        return from_file_list(path)
    if "idx3" in name or _read_idx_magic(path) == _IDX_MAGIC[3]:
        return from_idx(path)
    raise FeatpipeError(
        f"unknown image source format '{spec}'; give an image folder, a .csv manifest "
        "(path,label[,split]), a .txt list of paths or an IDX images file"
    )


def from_folder(path: str | os.PathLike, *, follow_links: bool = False) -> ImageSet:
    """Read a folder of images, one sub-folder per class (or a flat, unlabelled folder).

    Image files are found recursively inside each class folder; hidden files/folders and
    files without an image extension (:data:`IMAGE_EXTENSIONS`) are ignored. Inputs are
    ordered by class, then by relative path; ids are the relative paths with ``/``
    separators (undecodable bytes of a name escaped as ``\\xNN``). A folder holding images
    directly and no class sub-folders is unlabelled.

    A symbolic link is used only when it stays inside its own class folder (or, unlabelled,
    inside ``path``): a link pointing up the tree would import another class's images under
    this class's label. Links skipped are counted in a :class:`~featpipe.errors.FeatpipeWarning`.
    ``follow_links=True`` follows every link (loops are cut).

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
    skipped = [] if follow_links else (  # a linked class folder would relabel what it holds
        [name for name in class_dirs if (root / name).is_symlink()]
        + [name for name in top_files if not _link_stays_inside(root / name, root)])
    loose_images = [f for f in top_files if _is_image_name(f) and f not in skipped]
    labelled = []
    for class_dir in class_dirs:
        if class_dir in skipped:
            continue
        relpaths, outside = _images_below(root / class_dir, root, follow_links)
        labelled.extend((class_dir, rel) for rel in relpaths)
        skipped += outside
    if skipped:
        warnings.warn(f"skipped {len(skipped)} symbolic link(s) pointing outside their class "
                      f"folder in '{path}' (e.g. {skipped[0]}); pass `follow_links=True` to "
                      "follow them", FeatpipeWarning, stacklevel=2)
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


def from_manifest(csv_path: str | os.PathLike, *, allow_outside: bool = False) -> ImageSet:
    """Read a CSV manifest with header ``path,label[,split]`` and any other named columns.

    Other columns (e.g. a user's curriculum score) are kept as text in ``ImageSet.columns``.
    Relative paths are resolved against the manifest's folder and also serve as ids. A path
    that leaves that folder (absolute, or climbing out with ``..``) is refused unless
    ``allow_outside=True``: a manifest that came with a dataset must not read other files
    of the user's (the check is on the written path; links inside the folder are the
    folder owner's choice). ``label`` must be filled on every row or left empty on every row
    (unlabelled). When a ``split`` column is present every row needs a split. A path
    ``FILE#ROW`` where ``FILE`` is an IDX images file names one of its images (row numbers
    from 0): a manifest of indices selects rows, labels and splits of an IDX file without
    writing PNGs first.

    Examples
    --------
    >>> images = from_manifest("data/pets.csv")  # doctest: +SKIP
    >>> images.splits[:2]                         # doctest: +SKIP
    ['train', 'train']
    """
    csv_path = Path(csv_path)
    rows = _read_manifest_rows(csv_path)
    has_label = [bool(label) for _, _, label, _, _ in rows]
    if any(has_label) and not all(has_label):
        line = rows[has_label.index(not has_label[0])][0]
        raise FeatpipeError(
            f"{csv_path}:{line}: some rows have a label and others do not; "
            "fill the label column on every row or leave it empty on every row"
        )
    root = csv_path.resolve().parent
    ids = _check_unique([(line, _normalise_path(p)) for line, p, *_ in rows], csv_path)
    if not allow_outside:
        _refuse_outside(zip([line for line, *_ in rows], ids), csv_path, root)
    splits = [split for _, _, _, split, _ in rows]
    return ImageSet(
        items=idx_row_items(root, ids), ids=ids,
        labels=[label for _, _, label, _, _ in rows] if all(has_label) else None,
        splits=splits if splits[0] is not None else None,
        root=str(root), kind="manifest",
        columns={name: [other[name] for *_, other in rows] for name in rows[0][4]},
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
    pixels = read_idx(images_path, ndim=3)
    if labels_path is None:
        labels_path = _find_idx_labels(images_path)
    labels = None
    if labels_path is not None:
        values = read_idx(Path(labels_path), ndim=1)
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


def _images_below(folder: Path, root: Path, follow_links: bool) -> tuple[list[str], list[str]]:
    """Relative (posix) paths of the image files below ``folder``, and those of the links
    skipped because they lead outside ``folder`` (all followed with ``follow_links``)."""
    found, skipped, seen = [], [], set()
    for current, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:  # symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        rel_dir = Path(current).relative_to(root)
        names = {"dir": [d for d in dirnames if not d.startswith(".")],
                 "file": [f for f in filenames if _is_image_name(f)]}
        for kind, entries in names.items():
            outside = [] if follow_links else [
                e for e in entries if not _link_stays_inside(Path(current) / e, folder)]
            skipped.extend((rel_dir / e).as_posix() for e in outside)
            names[kind] = [e for e in entries if e not in outside]
        dirnames[:] = names["dir"]
        found.extend((rel_dir / name).as_posix() for name in names["file"])
    return found, skipped


def _link_stays_inside(path: Path, folder: Path) -> bool:
    """True unless ``path`` is a symbolic link whose target lies outside ``folder``."""
    if not path.is_symlink():
        return True
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def _refuse_outside(entries, csv_path: Path, root: Path) -> None:
    """Refuse manifest paths (``(line, normalised path)``) that leave the manifest's folder."""
    for line, path in entries:
        if Path(path).is_absolute() and not Path(path).is_relative_to(root) \
                or path == ".." or path.startswith("../"):
            raise FeatpipeError(
                f"{csv_path}:{line}: '{path}' is outside the manifest's folder {root}; pass "
                "`allow_outside=True` to read files outside it")


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _open_user_text(path: Path) -> io.StringIO:
    """A user's text file (UTF-8, BOM tolerated), or a one-line FeatpipeError."""
    if not path.is_file():
        raise FeatpipeError(f"file '{path}' does not exist")
    data = path.read_bytes()
    try:
        return io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise FeatpipeError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                            "save the file as UTF-8") from None


def _read_manifest_rows(csv_path: Path) -> list[tuple[int, str, str, str | None, dict]]:
    """Parse a manifest into ``(line, path, label, split_or_None, other_columns)`` tuples,
    validating as it goes."""
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
            other = {k: v for k, v in record.items() if k not in _MANIFEST_COLUMNS}
            rows.append((line, record["path"], record["label"], record.get("split"), other))
    if not rows:
        raise FeatpipeError(f"manifest '{csv_path}' has a header but no rows")
    return rows


def _check_manifest_header(header: list[str], csv_path: Path) -> None:
    missing = [name for name in ("path", "label") if name not in header]
    if missing or "" in header or len(set(header)) != len(header):
        found = ",".join(header) if header else "nothing"
        raise FeatpipeError(
            f"{csv_path}:1: bad manifest header '{found}'; expected 'path,label' or "
            "'path,label,split' (other named columns are kept), each once"
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

