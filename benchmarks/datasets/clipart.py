"""OpenClipart drawings: the ``openclipart`` dataset and the bundled ``data/clipart-mini``."""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from benchmarks.datasets.debian import _debian_version, ensure_debian_package
from benchmarks.datasets.images import (HUGE_IMAGE_PIXELS, MIN_INK_FRACTION, PROBE_SIDE,
                                        THUMBNAIL_SIDE, existing, fit_longer_side, ink_fraction,
                                        is_missing_link_placeholder, load_flat_thumbnail,
                                        materialize, reset_output, safe_name)
from benchmarks.datasets.splits import MANIFEST_NAME, Item, split_unassigned, write_manifest
from featpipe.errors import FeatpipeError
from featpipe.fileio import atomic_write

OPENCLIPART_ROOT = Path("/usr/share/openclipart/png")
OPENCLIPART_PACKAGE = "openclipart-png"
OPENCLIPART_CLASSES = (
    "animals/mammals", "food/fruit", "food/desserts", "people/clothing", "animals/birds",
    "food/beverages", "animals/bugs", "recreation/sports", "buildings/homes",
    "transportation/vehicles", "plants/flowers",
)
# transportation/vehicles was left out: only 21 usable drawings, several of them road signs
CLIPART_MINI_CLASSES = (
    "animals/mammals", "animals/birds", "animals/bugs", "food/fruit", "people/clothing",
    "plants/flowers",
)
CLIPART_MINI_SIDE = 160
CLIPART_MINI_PER_CLASS = 30


def regular_pngs(folder: Path) -> list[Path]:
    """Regular (non-symlink) PNG files under ``folder``, recursively, sorted."""
    found = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if name.lower().endswith(".png") and path.is_file() and not path.is_symlink():
                found.append(path)
    return sorted(found)


def _name_stem(path: Path) -> str:
    """Name without trailing numbers/separators: ``cat_01``, ``cat-2`` and ``cat`` collide."""
    stem = path.stem.lower()
    return re.sub(r"[\W\d_]+$", "", stem) or stem


def _average_hash(image: Image.Image) -> bytes:
    small = np.asarray(image.convert("L").resize((16, 16), Image.Resampling.BOX))
    return np.packbits(small > small.mean()).tobytes()


def select_clipart(files: Sequence[Path], limit: int | None, seed: int,
                   max_side: int) -> list[tuple[Path, Image.Image]]:
    """Pick drawings in a seeded order, skipping blanks and near-duplicates.

    Parameters
    ----------
    files : sequence of Path
        Candidate PNGs (sorted by the caller).
    limit : int or None
        Stop after this many picks; None keeps all usable files.
    seed : int
        Seed of the visiting order.
    max_side : int
        Longer side of the returned images (trimmed to their content, then resized).

    Returns
    -------
    list of (Path, PIL.Image.Image)
        Source file and its RGB thumbnail on white.
    """
    order = np.random.default_rng(seed).permutation(len(files))
    seen_stems: set[str] = set()
    seen_hashes: set[bytes] = set()
    picked = []
    for index in order:
        if limit is not None and len(picked) >= limit:
            break
        path = files[index]
        if _name_stem(path) in seen_stems:
            continue
        thumbnail = _load_clipart(path, max_side)
        if thumbnail is None:
            continue
        fingerprint = _average_hash(thumbnail)
        if fingerprint in seen_hashes:
            continue
        seen_stems.add(_name_stem(path))
        seen_hashes.add(fingerprint)
        picked.append((path, thumbnail))
    return picked


def _load_clipart(path: Path, max_side: int) -> Image.Image | None:
    """Trimmed thumbnail of a usable drawing; None for unreadable, blank or broken renders."""
    try:
        image = load_flat_thumbnail(path, max(max_side, PROBE_SIDE), trim=True,
                                    max_pixels=HUGE_IMAGE_PIXELS)
    except FeatpipeError as error:
        warnings.warn(f"skipping unreadable {error}")
        return None
    if ink_fraction(image) < MIN_INK_FRACTION or is_missing_link_placeholder(image):
        return None
    return fit_longer_side(image, max_side)


def _clipart_items(root: Path, classes: Sequence[str], limit: int | None,
                   seed: int, max_side: int) -> list[tuple[Item, Image.Image]]:
    """Thumbnails of the chosen OpenClipart classes; label = last folder name."""
    chosen = []
    for class_folder in classes:
        label = Path(class_folder).name
        files = regular_pngs(root / class_folder)
        for path, image in select_clipart(files, limit, seed, max_side):
            name = safe_name("_".join(path.relative_to(root / class_folder).with_suffix("").parts))
            chosen.append((Item(Path(name), label), image))
    return chosen


def _openclipart_source(source: Path | None) -> Path:
    if source is not None:
        return existing(Path(source))
    ensure_debian_package(OPENCLIPART_PACKAGE, OPENCLIPART_ROOT)
    return OPENCLIPART_ROOT


def prepare_openclipart(dest: Path, seed: int = 0, *, source: Path | None = None,
                        limit_per_class: int | None = None) -> Path:
    """Thumbnail eleven OpenClipart classes to 256 px and write a seeded 70/30 manifest."""
    root = _openclipart_source(source)
    chosen = _clipart_items(root, OPENCLIPART_CLASSES, limit_per_class, seed, THUMBNAIL_SIDE)
    reset_output(dest)
    saved = materialize(chosen, dest)
    return write_manifest(dest / MANIFEST_NAME, split_unassigned(saved, seed))


def build_clipart_mini(out: Path, seed: int = 0, per_class: int = CLIPART_MINI_PER_CLASS,
                       source: Path | None = None) -> Path:
    """Build the bundled public-domain demo set ``data/clipart-mini``.

    Parameters
    ----------
    out : Path
        Output folder; receives ``<class>/<name>.png``, ``manifest.csv``, ``ATTRIBUTION.md``.
    seed : int
        Seed of the per-class pick and of the 70/30 split.
    per_class : int
        Images per class (fewer when a class runs out of usable drawings).
    source : Path, optional
        OpenClipart PNG root; default the Debian ``openclipart-png`` folder.

    Returns
    -------
    Path
        The manifest.
    """
    out = Path(out)
    root = _openclipart_source(source)
    chosen = _clipart_items(root, CLIPART_MINI_CLASSES, per_class, seed, CLIPART_MINI_SIDE)
    reset_output(out)
    saved = materialize(chosen, out)
    sources = [root / cls for cls in CLIPART_MINI_CLASSES]
    _write_attribution(out, saved, sources, seed, per_class)
    return write_manifest(out / MANIFEST_NAME, split_unassigned(saved, seed))


def _write_attribution(out: Path, saved: list[Item], sources: list[Path], seed: int,
                       per_class: int) -> None:
    counts = Counter(item.label for item in saved)
    shown_out = os.path.relpath(out) if not os.path.relpath(out).startswith("..") else out
    lines = [
        "# clipart-mini: attribution",
        "",
        f"Source: Debian package `{OPENCLIPART_PACKAGE}` version "
        f"`{_debian_version(OPENCLIPART_PACKAGE)}` (drawings from openclipart.org).",
        "",
        "Licence: public domain. Every drawing was released into the public domain by its",
        "author under the Creative Commons Public Domain Dedication (the terms of this package,",
        "see `/usr/share/doc/openclipart-png/copyright`; openclipart.org now states CC0 1.0).",
        "Authors are named in each drawing's metadata upstream; no attribution is required.",
        "",
        "Processing: regular files only (symlinked duplicates skipped), blank renders",
        f"(< {MIN_INK_FRACTION:.0%} non-white pixels) and same-stem or identical-looking variants",
        "skipped, as are broken \"Linked Image Not Found\" renders; flattened onto white, white",
        f"margins trimmed, resized so that the longer side is {CLIPART_MINI_SIDE} px, saved as",
        "optimized RGB PNG. `manifest.csv` holds a seeded stratified 70/30 train/test split.",
        "",
        "Built with (from the repository root):",
        "",
        f"    python -m benchmarks.datasets clipart-mini --out {shown_out} "
        f"--seed {seed} --per-class {per_class}",
        "",
        "| class | images | source folder |",
        "|---|---|---|",
        *(f"| {Path(src).name} | {counts[Path(src).name]} | `{src}` |" for src in sources),
        "",
    ]
    atomic_write(out / "ATTRIBUTION.md", "\n".join(lines))
