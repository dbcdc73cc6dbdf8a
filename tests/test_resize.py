"""Resize modes (crop, pad, squash), recorded in provenance and checked at predict and resume."""

import numpy as np
import PIL.Image
import pytest
import torch

from featpipe.cli import main
from featpipe.errors import FeatpipeError
from featpipe.extract import extract
from featpipe.models.preprocessing import Preprocessing
from featpipe.provenance import check_same_features, model_provenance, resume_differences
from featpipe.spec import ExtractionSpec
from featpipe.store import FeatureStore

RED, BLUE, GREEN, WHITE = (200, 0, 0), (0, 0, 200), (0, 200, 0), (255, 255, 255)


def banded(width: int, height: int) -> PIL.Image.Image:
    """Red, with a blue band along the left/top edge and a green one along the right/bottom."""
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = RED
    if width >= height:
        pixels[:, : width // 10], pixels[:, -(width // 10):] = BLUE, GREEN
    else:
        pixels[: height // 10], pixels[-(height // 10):] = BLUE, GREEN
    return PIL.Image.fromarray(pixels)


def prep(mode: str, **kwargs) -> Preprocessing:
    base = Preprocessing(64, 73, (0.5,) * 3, (0.5,) * 3, "bilinear")
    return base.with_resize(mode, **kwargs)


def colour_count(crop: torch.Tensor, colour) -> int:
    return int((crop.permute(1, 2, 0) == torch.tensor(colour, dtype=torch.uint8)).all(-1).sum())


@pytest.mark.parametrize("size", [(200, 50), (50, 200), (120, 120)])
def test_every_mode_gives_the_exact_square(size):
    for mode in ("crop", "pad", "squash"):
        assert prep(mode).resize_crop(banded(*size)).shape == (3, 64, 64)


@pytest.mark.parametrize("size", [(200, 50), (50, 200)])
def test_pad_keeps_the_whole_image_and_crop_cuts_its_ends(size):
    padded = prep("pad", fill=WHITE).resize_crop(banded(*size))
    assert colour_count(padded, BLUE) > 0 and colour_count(padded, GREEN) > 0
    # the 4:1 image becomes 64 x 16, centred, on white
    assert colour_count(padded, WHITE) == 64 * 64 - 64 * 16
    lines = padded[:, 24:40] if size[0] > size[1] else padded[:, :, 24:40]
    assert colour_count(lines, WHITE) == 0
    cropped = prep("crop").resize_crop(banded(*size))
    assert colour_count(cropped, BLUE) == colour_count(cropped, GREEN) == 0
    squashed = prep("squash").resize_crop(banded(*size))
    assert colour_count(squashed, BLUE) > 0 and colour_count(squashed, WHITE) == 0


def test_pad_colour_and_crop_pct():
    black = prep("pad", fill=(0, 0, 0)).resize_crop(banded(200, 50))
    assert colour_count(black, (0, 0, 0)) == 64 * 64 - 64 * 16
    assert prep("crop", crop_pct=1.0).resize_size == 64
    with pytest.raises(FeatpipeError, match="`crop_pct` must be in"):
        prep("crop", crop_pct=1.5)


@pytest.mark.parametrize("mode", ["pad", "squash"])
def test_tensor_path_is_close_to_the_pil_path(mode):
    image = banded(200, 50)
    from_pil = prep(mode).resize_crop(image).to(torch.int16)
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
    from_tensor = prep(mode).resize_crop(tensor).to(torch.int16)
    assert from_tensor.shape == from_pil.shape
    assert (from_tensor - from_pil).abs().float().mean() < 3


def test_crop_description_is_that_of_older_stores():
    old = {"image_size": 64, "resize_size": 73, "mean": [0.5] * 3, "std": [0.5] * 3,
           "interpolation": "bilinear"}
    assert prep("crop").to_dict() == old
    assert Preprocessing.from_dict(old).resize_mode == "crop"
    assert Preprocessing.from_dict(prep("pad").to_dict()) == prep("pad")


def test_mode_is_recorded_and_checked_at_resume_and_predict(tmp_path, shapes_folder):
    spec = ExtractionSpec(layers="last", image_size=32, resize="pad", pad_color=(0, 0, 0))
    extract(shapes_folder, tmp_path / "pad.h5", spec, progress=False)
    padded = FeatureStore.open(tmp_path / "pad.h5").provenance
    assert padded["resize"] == "pad" and padded["preprocessing"]["resize_mode"] == "pad"
    assert ExtractionSpec.from_provenance(padded) == spec.replace(layers=("global_pool",))
    extract(shapes_folder, tmp_path / "crop.h5", spec.replace(resize="crop"), progress=False)
    cropped = FeatureStore.open(tmp_path / "crop.h5").provenance
    assert "resize" in resume_differences(cropped, padded)
    model = model_provenance(padded, {"global_pool": (0, 1280)})
    with pytest.raises(FeatpipeError, match="resize"):
        check_same_features(model, cropped, "crop.h5")
    # a store written before resize modes existed means crop
    legacy = {k: v for k, v in cropped.items() if k not in ("resize", "crop_pct", "pad_color")}
    assert resume_differences(legacy, cropped) == []


def test_info_shows_the_resize_mode(tmp_path, shapes_folder, capsys):
    assert main(["extract", str(shapes_folder), "--out", str(tmp_path / "s.h5"), "--layers",
                 "last", "--image-size", "32", "--resize", "squash", "--quiet"]) == 0
    assert main(["info", str(tmp_path / "s.h5")]) == 0
    assert "preprocessing: squash: 32x32 px" in capsys.readouterr().out
    assert main(["extract", str(shapes_folder), "--out", str(tmp_path / "x.h5"),
                 "--pad-color", "purple"]) == 2
