"""Shared fixtures: small labelled image folders written with Pillow, and the bundled data."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
CLIPART = REPO / "data" / "clipart-mini"
SHAPES = ("circle", "square", "triangle")


def draw_shape(shape: str, rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A coloured shape of random size and place on a textured background."""
    background = rng.integers(120, 256, size=(size, size, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    lo = int(rng.integers(5, size // 3))
    hi = int(rng.integers(2 * size // 3, size - 5))
    colour = tuple(int(c) for c in rng.integers(0, 110, size=3))
    if shape == "circle":
        draw.ellipse([lo, lo, hi, hi], fill=colour)
    elif shape == "square":
        draw.rectangle([lo, lo, hi, hi], fill=colour)
    else:
        draw.polygon([(lo, hi), (hi, hi), ((lo + hi) // 2, lo)], fill=colour)
    return image


def write_shapes(root: Path, per_class: int, size: int = 96, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        (root / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_shape(shape, rng, size).save(root / shape / f"{shape}{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory) -> Path:
    """3 classes x 10 PNG images."""
    return write_shapes(tmp_path_factory.mktemp("shapes"), per_class=10)


@pytest.fixture(scope="session")
def lite0_store(tmp_path_factory, shapes_folder) -> Path:
    """The shapes folder extracted with the real Lite0 weights, `full` layers, at 64 px."""
    from featpipe.extract import extract

    out = tmp_path_factory.mktemp("stores") / "shapes.h5"
    extract(shapes_folder, out, layers="full", image_size=64, batch_size=8, progress=False)
    return out
