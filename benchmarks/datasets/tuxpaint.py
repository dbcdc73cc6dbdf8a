"""Tux Paint photo stamps (GPL-2, used at run time only)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.datasets.clipart import regular_pngs
from benchmarks.datasets.debian import extract_debian_pngs
from benchmarks.datasets.images import (THUMBNAIL_SIDE, existing, load_flat_thumbnail,
                                        materialize, reset_output)
from benchmarks.datasets.splits import (MANIFEST_NAME, Item, cap_per_class,
                                        split_unassigned, write_manifest)
from featpipe.errors import FeatpipeError

TUXPAINT_PACKAGE = "tuxpaint-stamps-default"
TUXPAINT_STAMPS = Path("usr/share/tuxpaint/stamps")
TUXPAINT_PHOTO_GROUPS = ("animals", "food", "plants")
TUXPAINT_DRAWING_FOLDERS = frozenset({"cartoon", "toys", "plastic"})
TUXPAINT_MIN_PER_CLASS = 15


def _tuxpaint_stamps(dest: Path, source: Path | None) -> Path:
    if source is not None:
        return existing(Path(source))
    installed = Path("/") / TUXPAINT_STAMPS
    if installed.is_dir():
        return installed
    return extract_debian_pngs(TUXPAINT_PACKAGE, dest.parent / "_downloads" / TUXPAINT_PACKAGE) \
        / TUXPAINT_STAMPS


def tuxpaint_photo_items(stamps: Path, min_per_class: int = TUXPAINT_MIN_PER_CLASS) -> list[Item]:
    """Photo stamps of each category with at least ``min_per_class`` of them.

    Categories are the folders ``<group>/<category>`` of the photo groups (animals, food,
    plants); folders named cartoon, toys or plastic (drawings) are left out.
    """
    items = []
    for group in TUXPAINT_PHOTO_GROUPS:
        for category in sorted(p for p in (stamps / group).glob("*") if p.is_dir()):
            photos = [path for path in regular_pngs(category)
                      if not TUXPAINT_DRAWING_FOLDERS & set(path.relative_to(category).parts)]
            if len(photos) >= min_per_class:
                items.extend(Item(path, category.name) for path in photos)
    return items


def prepare_tuxpaint(dest: Path, seed: int = 0, *, source: Path | None = None,
                     limit_per_class: int | None = None,
                     min_per_class: int = TUXPAINT_MIN_PER_CLASS) -> Path:
    """Tux Paint photo stamps (GPL-2, run time only) flattened on white, seeded 70/30."""
    stamps = _tuxpaint_stamps(dest, source)
    items = cap_per_class(tuxpaint_photo_items(stamps, min_per_class), limit_per_class, seed)
    if not items:
        raise FeatpipeError(f"no Tux Paint photo category with >= {min_per_class} images "
                            f"in {stamps}")
    reset_output(dest)
    images = ((_renamed(item, stamps), load_flat_thumbnail(item.path, THUMBNAIL_SIDE))
              for item in items)
    saved = materialize(images, dest)
    return write_manifest(dest / MANIFEST_NAME, split_unassigned(saved, seed))


def _renamed(item: Item, stamps: Path) -> Item:
    """Name a stamp after its path below the category, so sub-folder files cannot collide."""
    parts = item.path.relative_to(stamps).with_suffix("").parts[2:]
    return Item(Path("_".join(parts)), item.label, item.split)
