"""WebDataset-style ``.tar`` shards as an image source, read in place (never unpacked).

A sample is the group of members sharing a key (the member path up to the first ``.`` of its
file name, WebDataset's convention): one image (``key.jpg``, ``key.png``, ...) and optionally
its label in a sidecar ``key.cls`` (a class number or name), ``key.txt`` (the class name) or
``key.json`` (``{"label": ...}`` or ``{"cls": ...}``). ``shards-{000..009}.tar`` names ten
shards (brace ranges are expanded, zero padding kept).

Why the standard library's :mod:`tarfile` and not the ``webdataset`` package: featpipe's
extraction needs random access by input position (fixed batches ``[k*B, (k+1)*B)`` that make a
resumed run compute what an uninterrupted one would, ``--shard K/N`` slices, one failure row
per bad image), while ``webdataset`` is a streaming iterable with no length and no random
access, and would be one more dependency. Here one pass over the tar *headers* (data blocks
are skipped with a seek) records each member's data offset and size; an image is then read
as ``size`` bytes at its offset and decoded from memory. The archive is never unpacked.

Safety: member names are only ids and keys; nothing is ever written to or opened on the
filesystem under a member's name (no extraction, so no path traversal). Members that are not
regular files (links, devices, folders) are ignored. Compressed tars cannot be read by offset
and are refused (WebDataset shards are plain tars; compress the images, not the archive).

Examples
--------
>>> expand_braces("shards-{000..002}.tar")
['shards-000.tar', 'shards-001.tar', 'shards-002.tar']
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from featpipe.data.imageset import IMAGE_EXTENSIONS, ImageSet
from featpipe.errors import FeatpipeError

_PREFERRED = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm", "pgm")
#: A sample's image member: the first of these suffixes it has (every image extension)
_IMAGE_SUFFIXES = _PREFERRED + tuple(sorted({e[1:] for e in IMAGE_EXTENSIONS} - set(_PREFERRED)))
_LABEL_SUFFIXES = ("cls", "txt", "json")
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")
#: Largest label sidecar read (a label is a word, not a document).
_MAX_LABEL_BYTES = 4096


@dataclass(frozen=True)
class TarMember:
    """One image inside a tar shard: ``size`` bytes at ``offset`` of ``archive``.

    Small and picklable, so decoding workers get the reference, not the bytes. A sample with
    a label but no image member has ``size`` -1 (it fails to decode, as a row of the failure
    table).
    """

    archive: str
    offset: int
    size: int

    def read(self) -> bytes:
        if self.size < 0:
            raise OSError("the sample has no image member")
        with open(self.archive, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self.archive} ends inside a member (truncated shard)")
        return data


def expand_braces(pattern: str) -> list[str]:
    """``a-{00..11}.tar`` -> ``a-00.tar`` ... ``a-11.tar`` (several ranges multiply out)."""
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern]
    lo, hi = int(match[1]), int(match[2])
    if hi < lo:
        raise FeatpipeError(f"brace range {{{match[1]}..{match[2]}}} in '{pattern}' is empty")
    width = len(match[1]) if match[1].startswith("0") else 0
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [name for i in range(lo, hi + 1)
            for name in expand_braces(f"{head}{i:0{width}d}{tail}")]


def is_tar_source(spec: str) -> bool:
    """Whether ``spec`` names tar shards (one ``.tar`` file or a brace pattern of them)."""
    return spec.lower().endswith(".tar")


def from_tar_shards(pattern: str | os.PathLike):
    """Read the samples of one or more ``.tar`` shards into an ImageSet, in shard then member
    order; ids are ``<shard file name>/<key>``.

    Examples
    --------
    >>> images = from_tar_shards("shards-{000..009}.tar")   # doctest: +SKIP
    >>> images.kind, images.ids[0]                           # doctest: +SKIP
    ('tar', 'shards-000.tar/n01440764_10026')
    """
    paths = [Path(p) for p in expand_braces(str(pattern))]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FeatpipeError(f"tar shard {missing[0]} does not exist"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    samples = [sample for path in paths for sample in _samples(path)]
    if not samples:
        raise FeatpipeError(f"'{pattern}' holds no samples (image members like key.jpg)")
    labelled = [label is not None for _, _, label in samples]
    if any(labelled) and not all(labelled):
        key = samples[labelled.index(False)][0]
        raise FeatpipeError(f"sample {key} has no label (.cls/.txt/.json) while others do; "
                            "label every sample or none")
    _check_unique_ids([key for key, _, _ in samples], pattern)
    return ImageSet(items=[item for _, item, _ in samples], ids=[key for key, _, _ in samples],
                    labels=[label for _, _, label in samples] if all(labelled) else None,
                    splits=None, root=str(paths[0].resolve().parent), kind="tar")


def _samples(path: Path) -> list[tuple[str, TarMember, str | None]]:
    """(id, image member, label or None) per sample of one shard, in member order."""
    groups: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        with tarfile.open(path, mode="r:") as archive:
            for member in archive:  # headers only: data blocks are skipped by a seek
                if member.isfile():
                    key, _, suffix = member.name.rpartition("/")[2].partition(".")
                    folder = member.name.rpartition("/")[0]
                    groups.setdefault(f"{folder}/{key}" if folder else key, {})[
                        suffix.lower()] = member
            archive_path = str(path.resolve())
            samples = [_sample(path, archive_path, archive, key, members)
                       for key, members in groups.items()]
    except tarfile.ReadError as exc:
        raise FeatpipeError(f"{path} is not a plain (uncompressed) tar shard ({exc}); "
                            "tar shards are read by offset and cannot be compressed") from None
    return [s for s in samples if s is not None]


def _sample(path: Path, archive_path: str, archive: tarfile.TarFile, key: str, members: dict):
    image = next((members[s] for s in _IMAGE_SUFFIXES if s in members), None)
    label_suffix = next((s for s in _LABEL_SUFFIXES if s in members), None)
    if image is None and label_suffix is None:
        return None  # other members (e.g. key.npy) without an image: not a sample
    item = (TarMember(archive_path, -1, -1) if image is None else
            TarMember(archive_path, image.offset_data, image.size))
    label = None
    if label_suffix is not None:
        label = _read_label(archive, members[label_suffix], label_suffix, f"{path.name}/{key}")
    return f"{path.name}/{key}", item, label


def _read_label(archive: tarfile.TarFile, member: tarfile.TarInfo, suffix: str, where: str):
    if member.size > _MAX_LABEL_BYTES:
        raise FeatpipeError(f"label member {where}.{suffix} is {member.size} bytes; a label "
                            f"sidecar holds at most {_MAX_LABEL_BYTES}")
    text = archive.extractfile(member).read().decode("utf-8", errors="replace").strip()
    if suffix == "json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise FeatpipeError(f"label member {where}.json is not valid JSON") from None
        if not isinstance(value, dict) or not ({"label", "cls"} & set(value)):
            raise FeatpipeError(f"label member {where}.json has no 'label' or 'cls' field")
        text = str(value.get("label", value.get("cls")))
    if not text:
        raise FeatpipeError(f"label member {where}.{suffix} is empty")
    return text


def _check_unique_ids(ids: list[str], pattern) -> None:
    seen = set()
    for key in ids:
        if key in seen:
            raise FeatpipeError(f"sample {key} appears twice in '{pattern}'")
        seen.add(key)
