"""Extraction end to end: store content, provenance, failures, locking, resume after kill -9."""

import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from featpipe.models import create_backbone
from featpipe.models.preprocessing import Preprocessing
from featpipe.models.capture import FeatureCapture
from featpipe.models.layers import resolve_layers
from featpipe.errors import FeatpipeError
from featpipe.fileio import exclusive_lock
from featpipe.extract import extract
from featpipe.extract.run import aligned_batches
from featpipe.data.sources import from_folder
from featpipe.data.decode import load_rgb
from featpipe.store.reader import FeatureStore

from conftest import write_shapes
from faults import assert_same_store


def test_store_matches_a_direct_forward_pass(lite0_store, shapes_folder):
    store = FeatureStore.open(lite0_store)
    assert len(store.layers) == 18 and sum(store.layers.values()) == 3120
    data = store.load()
    image_set = from_folder(shapes_folder)
    assert data.ids.tolist() == image_set.ids
    assert [store.class_names[i] for i in data.y] == image_set.labels
    backbone = create_backbone("efficientnet_lite0", image_size=64)
    capture = FeatureCapture(backbone, resolve_layers(backbone, "full"))
    preprocessing = Preprocessing.from_dict(store.provenance["preprocessing"])  # as recorded
    assert preprocessing.resize_mode == "pad"  # the default
    batch = np.stack([preprocessing(load_rgb(item)).numpy()
                      for item in image_set.items[:3]])
    import torch

    direct = capture(torch.from_numpy(batch))
    for name, (start, stop) in data.layer_slices.items():
        np.testing.assert_allclose(data.X[:3, start:stop], direct[name].numpy(), rtol=1e-4,
                                   atol=1e-5)


def test_provenance_records_how_features_were_made(lite0_store, shapes_folder):
    prov = FeatureStore.open(lite0_store).provenance
    assert prov["model"] == "efficientnet_lite0"
    assert prov["weights_sha256"] == (
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")
    assert prov["image_size"] == 64 and prov["pool"] == "mean" and prov["dtype"] == "float32"
    assert prov["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert prov["input_fingerprint"] == from_folder(shapes_folder).fingerprint()
    for key in ("featpipe_version", "torch_version", "timm_version", "created"):
        assert prov[key]


def test_bad_images_are_recorded_and_rows_stay_aligned(tmp_path):
    root = write_shapes(tmp_path / "imgs", per_class=3, size=64)
    (root / "circle" / "empty.png").write_bytes(b"")
    (root / "square" / "notes.jpg").write_text("not an image")
    good = (root / "triangle" / "triangle000.png").read_bytes()
    (root / "triangle" / "cut.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "f.h5"
    result = extract(root, out, layers="last", image_size=64, batch_size=4, workers=2,
                     progress=False)
    assert (result.n_images, result.n_failed) == (9, 3)
    store = FeatureStore.open(out)
    reasons = {store.ids[i]: r for i, r in store.failures}
    assert reasons["circle/empty.png"] == "zero-byte file"
    assert "not an image" in reasons["square/notes.jpg"]
    assert "truncated" in reasons["triangle/cut.png"]
    data = store.load()
    assert not np.isnan(data.X).any()
    assert all(name.split("/")[0] == store.class_names[label]
               for name, label in zip(data.ids, data.y))


def test_pool_and_dtype_options(tmp_path, shapes_folder):
    out = tmp_path / "f.h5"
    extract(shapes_folder, out, layers="bn1,bn2", pool="meanmax", dtype="float16",
            image_size=64, compression="lzf", progress=False)
    store = FeatureStore.open(out)
    assert store.layers == {"bn1": 64, "bn2": 2560}
    with h5py.File(out) as f:
        assert f["features/bn2"].dtype == np.float16
        assert f["features/bn2"].compression == "lzf"


def test_refuses_to_overwrite_and_second_writer(tmp_path, lite0_store, shapes_folder):
    with pytest.raises(FeatpipeError, match="already exists; pass `overwrite=True`"):
        extract(shapes_folder, lite0_store, layers="last", progress=False)
    out = tmp_path / "locked.h5"
    with exclusive_lock(out):
        with pytest.raises(FeatpipeError, match="another featpipe process is writing"):
            extract(shapes_folder, out, layers="last", progress=False)


def test_user_errors_are_one_line(tmp_path, shapes_folder):
    with pytest.raises(FeatpipeError, match="does not exist"):
        extract(shapes_folder, tmp_path / "missing" / "f.h5", progress=False)
    with pytest.raises(FeatpipeError, match="unknown layer|not a layer|blocks.99"):
        extract(shapes_folder, tmp_path / "f.h5", layers="blocks.99", progress=False)
    with pytest.raises(FeatpipeError, match="`batch_size` must be an int >= 1 or auto"):
        extract(shapes_folder, tmp_path / "f.h5", batch_size=0, progress=False)


def test_shard_keeps_global_indices(tmp_path, shapes_folder):
    out = tmp_path / "shard.h5"
    extract(shapes_folder, out, layers="last", image_size=64, shard=(1, 3), progress=False)
    store = FeatureStore.open(out)
    assert store.index.tolist() == list(range(10, 20))
    assert store.ids.tolist() == from_folder(shapes_folder).ids[10:20]


def test_batches_are_aligned_to_input_positions():
    assert aligned_batches(np.array([0, 1, 2, 5, 6, 9]), 4) == [[0, 1, 2], [5, 6], [9]]
    assert aligned_batches(np.array([], dtype=int), 4) == []


def _extract_cmd(source, out):
    return [sys.executable, "-m", "featpipe.cli", "extract", str(source), "--out", str(out),
            "--layers", "full", "--image-size", "160", "--batch-size", "4", "--workers", "0"]


def _kill_after_progress(cmd, at_least: int, total: int) -> None:
    """Start ``cmd`` and SIGKILL it once tqdm reports >= at_least (and < total) images."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    seen, deadline = b"", time.time() + 120
    try:
        while time.time() < deadline:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            counts = [int(n) for n in re.findall(rb"\| *(\d+)/%d" % total, seen)]
            if counts and at_least <= counts[-1] < total:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, seen.decode(errors="replace")[-500:]


def test_resume_after_kill_gives_identical_content(tmp_path):
    root = write_shapes(tmp_path / "imgs", per_class=16, size=160)  # 48 images
    (root / "circle" / "broken.png").write_bytes(b"\x89PNG junk")
    total = 49
    killed, clean = tmp_path / "killed.h5", tmp_path / "clean.h5"
    _kill_after_progress(_extract_cmd(root, killed), at_least=12, total=total)
    partial = tmp_path / "killed.h5.partial"
    assert partial.exists() and not killed.exists()
    pending = FeatureStore.open(partial, allow_partial=True).summary()["n_pending"]
    assert 0 < pending < total
    resumed = subprocess.run(_extract_cmd(root, killed), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "(resumed)" in resumed.stdout
    subprocess.run(_extract_cmd(root, clean), check=True, capture_output=True)
    assert_same_store(killed, clean)  # tests/test_faults.py kills at random moments too
    assert not partial.exists()


def test_partial_with_other_settings_is_not_mixed(tmp_path):
    root = write_shapes(tmp_path / "imgs", per_class=16, size=160)
    out = tmp_path / "f.h5"
    _kill_after_progress(_extract_cmd(root, out), at_least=8, total=48)
    with pytest.raises(FeatpipeError, match="different settings .*pool"):
        extract(root, out, layers="full", image_size=160, batch_size=4, pool="max",
                progress=False)
