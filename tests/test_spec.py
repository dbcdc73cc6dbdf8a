"""ExtractionSpec and featpipe.provenance: one typed spec, one owner of the provenance keys."""

import argparse
import dataclasses

import pytest

from featpipe import provenance
from featpipe.cli import build_parser
from featpipe.cli.extract import spec_from_args
from featpipe.errors import UsageError
from featpipe.extract import extract
from featpipe.spec import RUN, ExtractionSpec
from featpipe.store import FeatureStore


def test_invalid_settings_are_one_line_usage_errors():
    with pytest.raises(UsageError, match="`dtype` must be one of float32, float16"):
        ExtractionSpec(dtype="float64")
    with pytest.raises(UsageError, match="unknown extraction setting"):
        ExtractionSpec().replace(colour="red")
    with pytest.raises(UsageError, match="`image_size` 4 is too small"):
        ExtractionSpec(image_size=4)


def test_layers_given_as_a_list_become_a_tuple():
    assert ExtractionSpec(layers=["a", "b"]).layers == ("a", "b")


def test_store_provenance_round_trips_through_the_spec(tmp_path, shapes_folder):
    spec = ExtractionSpec(layers=("blocks.2.1", "bn2"), image_size=64, pool="meanmax",
                          dtype="float16", compression="lzf")
    extract(shapes_folder, tmp_path / "f.h5", spec, progress=False)
    stored = FeatureStore.open(tmp_path / "f.h5").provenance
    assert ExtractionSpec.from_provenance(stored) == spec
    # where images were decoded is recorded (auto resolved), not rebuilt: another machine
    # re-extracting decodes where it can
    assert stored["decode"] == "cpu"
    assert ExtractionSpec.from_provenance({**stored, "decode": "gpu", "compile": True}) == spec
    # every key the store records is declared once, in featpipe.provenance
    assert set(stored) == set(provenance.ALL_KEYS)


def test_random_init_and_weights_files_round_trip():
    random = ExtractionSpec.from_provenance({"weights": "random-init", "model": "x"})
    assert (random.pretrained, random.weights) == (False, None)
    local = ExtractionSpec.from_provenance({"weights": "file:/w/model.pth"})
    assert (local.pretrained, local.weights) == (True, "/w/model.pth")


def test_resume_keys_are_those_of_featpipe_0_1_plus_the_resize_mode():
    assert sorted(provenance.RESUME_KEYS) == sorted(
        ("model", "weights", "weights_sha256", "preprocessing", "layers", "layer_dims", "pool",
         "token_pool", "dtype", "compression", "input_fingerprint", "index_range", "resize"))
    assert set(provenance.FEATURE_KEYS) == {"model", "weights_sha256", "preprocessing", "pool",
                                            "token_pool", "resize"}


def test_missing_keys_of_older_files_read_as_defaults():
    old = {"model": "m", "pool": "mean", "layers": ["a"], "layer_dims": {"a": 3}}
    assert provenance.resume_differences(old, {**old, "compression": None, "amp": None}) == []
    assert provenance.resume_differences(old, {**old, "dtype": "float16"}) == ["dtype"]


def test_cli_adapter_sets_every_recorded_setting():
    """Adding a stage-1 setting to the spec fails here until the CLI adapter passes it on."""
    args = build_parser().parse_args(
        ["extract", "src", "--out", "o.h5", "--model", "timm:resnet18", "--weights", "w.pth",
         "--no-pretrained", "--layers", "a,b", "--pool", "max", "--token-pool", "mean",
         "--image-size", "96", "--dtype", "float16", "--compression", "lzf", "--amp", "bf16",
         "--channels-last", "--decode", "gpu", "--compile", "--force", "--resize", "squash", "--crop-pct", "0.5",
         "--pad-color", "#000000", "--max-pixels", "1000"])
    spec = spec_from_args(args)
    defaults = ExtractionSpec()
    for field in dataclasses.fields(ExtractionSpec):
        assert getattr(spec, field.name) != getattr(defaults, field.name), field.name
    assert spec.layers == ("a", "b")
    assert isinstance(args, argparse.Namespace)


def test_run_settings_are_not_recorded():
    assert "force" in ExtractionSpec.fields_with_role(RUN)
    assert "force" not in ExtractionSpec().provenance_fields()
