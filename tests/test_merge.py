"""Merging shard stores: rows in input order like one extraction (virtual or copied), moved
folders, missing shards, gaps, overlaps, other settings, unfinished shards, and every reader."""

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from featpipe.errors import FeatpipeError
from featpipe.extract import extract
from featpipe.store.merge import merge_shards
from featpipe.store.reader import FeatureStore

SETTINGS = dict(model="torchvision:resnet18", pretrained=False, layers="stages", image_size=32,
                batch_size=4, progress=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory, shapes_folder):
    """The shapes folder plus one broken image (a failure row in shard 0)."""
    root = tmp_path_factory.mktemp("merge-src") / "images"
    shutil.copytree(shapes_folder, root)
    (root / "circle" / "broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture(scope="module")
def whole(tmp_path_factory, source):
    out = tmp_path_factory.mktemp("whole") / "whole.h5"
    extract(source, out, **SETTINGS)
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory, source):
    folder = tmp_path_factory.mktemp("shards")
    paths = [folder / f"part-{k}.h5" for k in range(3)]
    for k, path in enumerate(paths):
        extract(source, path, shard=(k, 3), **SETTINGS)
    return paths


def _assert_same_store(merged_path, whole_path):
    merged, whole = FeatureStore.open(merged_path), FeatureStore.open(whole_path)
    for name in ("status", "index", "ids", "labels"):
        assert np.array_equal(getattr(merged, name), getattr(whole, name)), name
    assert merged.failures == whole.failures and merged.class_names == whole.class_names
    a, b = merged.load(), whole.load()
    np.testing.assert_array_equal(a.X, b.X)
    assert a.ids.tolist() == b.ids.tolist()
    streamed = np.concatenate([X for _, X, _ in merged.iter_batches(batch_size=7)])
    np.testing.assert_array_equal(streamed, b.X)


@pytest.mark.parametrize("copy", [False, True])
def test_merged_shards_equal_one_extraction_row_for_row(tmp_path, shards, whole, copy):
    out = merge_shards(list(reversed(shards)), tmp_path / "merged.h5", copy=copy)
    _assert_same_store(out, whole)
    with h5py.File(out) as f:
        assert all(ds.is_virtual != copy for ds in f["features"].values())
    provenance = FeatureStore.open(out).provenance
    assert provenance["index_range"] == [0, provenance["n_inputs"]]
    assert provenance["merged_from"]["layout"] == ("copy" if copy else "virtual")


def test_virtual_store_moves_with_its_shards_and_refuses_a_missing_one(tmp_path, shards, whole):
    folder = tmp_path / "run"
    folder.mkdir()
    copies = [shutil.copy(path, folder) for path in shards]
    merge_shards(copies, folder / "merged.h5")
    moved = shutil.move(folder, tmp_path / "elsewhere")
    _assert_same_store(f"{moved}/merged.h5", whole)  # relative paths: still readable
    (tmp_path / "elsewhere" / "part-1.h5").unlink()
    with pytest.raises(FeatpipeError, match="shard part-1.h5 is missing"):
        FeatureStore.open(tmp_path / "elsewhere" / "merged.h5")
    from featpipe.store.check import check_store

    problems = check_store(tmp_path / "elsewhere" / "merged.h5").problems
    assert len(problems) == 1 and "shard part-1.h5 is missing" in problems[0]


def test_copied_store_is_self_contained(tmp_path, shards, whole):
    copies = [shutil.copy(path, tmp_path) for path in shards]
    merge_shards(copies, tmp_path / "merged.h5", copy=True)
    for path in copies:
        Path(path).unlink()
    _assert_same_store(tmp_path / "merged.h5", whole)


def test_merge_refuses_gaps_overlaps_and_other_settings(tmp_path, source, shards):
    with pytest.raises(FeatpipeError, match=r"gap: inputs 10\.\.19 are in no shard"):
        merge_shards([shards[0], shards[2]], tmp_path / "m.h5")
    with pytest.raises(FeatpipeError, match=r"gap: inputs 20\.\.30 of 31"):
        merge_shards(shards[:2], tmp_path / "m.h5")
    half = tmp_path / "half.h5"
    extract(source, half, shard=(0, 2), **SETTINGS)  # inputs 0..14 overlap part-1 (10..20)
    with pytest.raises(FeatpipeError, match=r"overlap: inputs 10\.\.14"):
        merge_shards([half, shards[1], shards[2]], tmp_path / "m.h5")
    other = tmp_path / "other.h5"
    extract(source, other, shard=(1, 3), **{**SETTINGS, "pool": "max"})
    with pytest.raises(FeatpipeError, match="not a shard of the same extraction.*pool"):
        merge_shards([shards[0], other, shards[2]], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_merge_refuses_an_unfinished_shard(tmp_path, shards):
    unfinished = tmp_path / "part-1.h5"
    shutil.copy(shards[1], unfinished)
    with h5py.File(unfinished, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(FeatpipeError, match="cannot merge shard .*part-1.h5: .*unfinished"):
        merge_shards([shards[0], unfinished, shards[2]], tmp_path / "m.h5")


def test_merge_command_line_and_info(tmp_path, shards):
    out = tmp_path / "merged.h5"
    run = [sys.executable, "-m", "featpipe", "merge", *map(str, shards), "--out", str(out)]
    done = subprocess.run(run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "30 images from 3 shards, 1 failed" in done.stdout
    info = subprocess.run([sys.executable, "-m", "featpipe", "info", str(out)],
                          capture_output=True, text=True)
    assert "30 images" in info.stdout and "1 failed" in info.stdout
    gap = subprocess.run(run[:5] + ["--out", str(tmp_path / "gap.h5")],
                         capture_output=True, text=True)
    assert gap.returncode == 1 and gap.stderr.count("\n") == 1
    assert gap.stderr.startswith("featpipe: error: gap: inputs 10..30")
