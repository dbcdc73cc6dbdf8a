"""Stores and model files written by featpipe 0.1.0 (before the package layout) still work."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featpipe.classical.persist import load_model, untrusted_types
from featpipe.cli import main
from featpipe.extract import extract
from featpipe.spec import ExtractionSpec
from featpipe.store import FeatureStore
from featpipe.workflows.predict import predict_source

LEGACY = Path(__file__).parent / "data" / "legacy"


def _images(root: Path) -> Path:
    """The 16 images legacy-store.h5 was extracted from (same generator, same order)."""
    rng = np.random.default_rng(0)
    for name, color in [("red", (200, 30, 30)), ("blue", (30, 30, 200))]:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(8):
            pixels = np.full((40, 40, 3), color, np.uint8)
            pixels += rng.integers(0, 40, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}{i}.png")
    return root


def _expected(recipe: str) -> list[list[str]]:
    with open(LEGACY / f"expected-{recipe}-store.csv", newline="") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize("recipe", ["fne", "pca-svm"])
def test_legacy_model_predicts_legacy_store_as_before(tmp_path, recipe, capsys):
    assert untrusted_types(LEGACY / f"legacy-{recipe}.skops") == []
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(LEGACY / f"legacy-{recipe}.skops"),
                 str(LEGACY / "legacy-store.h5"), "--out", str(out)]) == 0
    with open(out, newline="") as f:
        assert list(csv.reader(f)) == _expected(recipe)


def test_legacy_model_file_is_not_rewritten_on_disk(tmp_path):
    copy = tmp_path / "model.skops"
    shutil.copy(LEGACY / "legacy-fne.skops", copy)
    before = copy.read_bytes()
    pipeline, provenance, _ = load_model(copy)
    assert type(pipeline.steps[0][1]).__module__.startswith("featpipe.classical.transformers")
    assert copy.read_bytes() == before


def test_legacy_provenance_rebuilds_the_same_extraction(tmp_path):
    legacy = FeatureStore.open(LEGACY / "legacy-store.h5")
    spec = ExtractionSpec.from_provenance(legacy.provenance)
    assert (spec.layers, spec.image_size, spec.amp, spec.compression) == (("global_pool",), 32,
                                                                           None, None)
    extract(_images(tmp_path / "images"), tmp_path / "new.h5", spec, progress=False)
    new = FeatureStore.open(tmp_path / "new.h5")
    assert new.ids.tolist() == legacy.ids.tolist()
    np.testing.assert_allclose(new.load().X, legacy.load().X, rtol=1e-4, atol=1e-5)


def test_legacy_model_predicts_reextracted_images(tmp_path):
    predictions = predict_source(LEGACY / "legacy-fne.skops", _images(tmp_path / "images"))
    expected = {row[0]: row[1] for row in _expected("fne")[1:]}
    assert {row["id"]: row["prediction"] for row in predictions["rows"]} == expected
