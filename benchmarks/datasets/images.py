"""Image helpers of the converters: flat thumbnails on white, trimming, blank and broken-render
checks, and the PNG files written next to a manifest."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageChops

from benchmarks.datasets.splits import MANIFEST_NAME, Item
from featpipe.errors import FeatpipeError
from featpipe.fileio import atomic_write

THUMBNAIL_SIDE = 256
PROBE_SIDE = 256  # resolution at which drawings are checked for broken renders
INK_LEVEL = 240  # a pixel with any channel below this is drawn, not background
MIN_INK_FRACTION = 0.01  # below this share of non-white pixels a render counts as blank
HUGE_IMAGE_PIXELS = 400_000_000  # some OpenClipart PNGs have ~170 Mpixel; allow them


def ink_fraction(image: Image.Image) -> float:
    """Share of pixels that are not (near-)white in an RGB image."""
    pixels = np.asarray(image.convert("RGB"))
    return float((pixels.min(axis=2) < INK_LEVEL).mean())


def load_flat_thumbnail(path: Path, max_side: int, trim: bool = False,
                        max_pixels: int | None = None) -> Image.Image:
    """Decode ``path`` with featpipe's decoder (transparency composited on white, JPEGs
    decoded at reduced size), shrink so the longer side is <= ``max_side``.

    With ``trim``, white margins are cut first (keeping a small border), so that a small
    drawing on a large page fills the thumbnail. An undecodable file (or one over
    ``max_pixels``, default featpipe's limit) raises :class:`FeatpipeError`.
    """
    from featpipe.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, load_rgb  # torch

    try:
        flat = load_rgb(path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS, size_hint=max_side)
    except ImageDecodeError as error:
        raise FeatpipeError(f"{path}: {error.reason}") from None
    if trim:
        flat = trim_white(flat)
    flat.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return flat


def fit_longer_side(image: Image.Image, side: int) -> Image.Image:
    """Resize (up or down, keeping the aspect ratio) so that the longer side is ``side``."""
    scale = side / max(image.size)
    size = tuple(max(1, round(n * scale)) for n in image.size)
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def trim_white(image: Image.Image, border: float = 0.04) -> Image.Image:
    """Crop an RGB image to its non-white content plus ``border`` x the content's longer side."""
    difference = ImageChops.difference(image, Image.new("RGB", image.size, "white"))
    # ignore faint resampling halos: only channels darker than INK_LEVEL count as content
    box = difference.point(lambda value: 255 if value > 255 - INK_LEVEL else 0).getbbox()
    if box is None:
        return image
    pad = int(border * max(box[2] - box[0], box[3] - box[1]))
    left, top = max(box[0] - pad, 0), max(box[1] - pad, 0)
    return image.crop((left, top, min(box[2] + pad, image.width), min(box[3] + pad, image.height)))


def is_missing_link_placeholder(image: Image.Image) -> bool:
    """True for renders of the red-framed "Linked Image Not Found" box (a broken SVG link)."""
    probe = trim_white(image.convert("RGB"), border=0)
    probe.thumbnail((PROBE_SIDE, PROBE_SIDE))
    pixels = np.asarray(probe).astype(int)
    red = pixels[..., 0] - pixels[..., 1:].max(axis=2) > 60
    band = 3  # the frame is a few pixels wide at PROBE_SIDE; antialiasing blurs its outer row
    edges = (red[:band].any(0), red[-band:].any(0), red[:, :band].any(1), red[:, -band:].any(1))
    return min(edge.mean() for edge in edges) > 0.8


def _save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: image.save(handle, format="PNG", optimize=True))


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def reset_output(dest: Path) -> None:
    """Empty a folder this module wrote before (it has a manifest); refuse foreign folders."""
    if dest.exists() and any(dest.iterdir()):
        if not (dest / MANIFEST_NAME).exists():
            raise FeatpipeError(f"{dest} is not empty and has no {MANIFEST_NAME}; "
                                "choose another --out")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)


def _free_path(folder: Path, name: str) -> Path:
    """``folder/name.png``, or ``name-2.png`` ... when sanitized names collide."""
    target, copy = folder / f"{name}.png", 1
    while target.exists():
        copy += 1
        target = folder / f"{name}-{copy}.png"
    return target


def materialize(items: Iterable[tuple[Item, Image.Image]], dest: Path) -> list[Item]:
    """Save each image as ``dest/<label>/<name>.png`` (``item.path`` is the bare name)."""
    saved = []
    for item, image in items:
        target = _free_path(dest / item.label, safe_name(Path(item.path).name))
        _save_png(image, target)
        saved.append(Item(target, item.label, item.split))
    return saved


def existing(path: Path) -> Path:
    if not path.exists():
        raise FeatpipeError(f"{path} not found")
    return path
