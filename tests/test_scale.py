"""Scale-out on a Dask LocalCluster of 2 worker processes (CI, CPU): sharded extraction merged
equals one process row for row, also when a worker is killed mid-shard; the distributed search
finds the local search's best parameters and scores."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest
import torch

from featpipe.errors import FeatpipeError
from featpipe.extract import extract
from featpipe.scale.cluster import connect, parse_address
from featpipe.scale.extract import extract_on_dask
from featpipe.scale.search import on_dask
from featpipe.store.reader import FeatureSet, FeatureStore
from featpipe.workflows.fit import TrainingSpec, fit_features, fit_store

from conftest import write_shapes

distributed = pytest.importorskip("distributed", reason="CI installs it with the test extra")

# Lite0's kernels round differently with the batch's composition: equal rows need shards cut
# at batch boundaries (a random-init resnet18 would hide that)
SETTINGS = dict(model="efficientnet_lite0", layers="stages", image_size=32)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local:
        yield local


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """90 small images in 3 classes, and one broken file (a failure row)."""
    root = write_shapes(tmp_path_factory.mktemp("scale") / "images", per_class=30, size=40)
    (root / "circle" / "broken.png").write_bytes(b"not a png")
    return root


def _whole(folder, source, batch_size):
    """One-process extraction with one torch thread, as Dask workers run (oneDNN's rounding
    depends on the batch and on the thread count: equal settings give equal bits)."""
    out = folder / f"whole-{batch_size}.h5"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        extract(source, out, batch_size=batch_size, workers=0, progress=False, **SETTINGS)
    finally:
        torch.set_num_threads(threads)
    return FeatureStore.open(out)


@pytest.fixture(scope="module")
def whole(tmp_path_factory, source):
    return _whole(tmp_path_factory.mktemp("whole"), source, batch_size=8)


def _assert_rows_equal(path, whole):
    merged = FeatureStore.open(path)
    assert merged.ids.tolist() == whole.ids.tolist()
    assert merged.status.tolist() == whole.status.tolist()
    assert merged.failures == whole.failures
    np.testing.assert_array_equal(merged.load().X, whole.load().X)
    assert merged.load().y.tolist() == whole.load().y.tolist()


def test_sharded_extraction_and_merge_equal_one_process(tmp_path, cluster, source, whole):
    result = extract_on_dask(source, tmp_path / "d.h5", dask=cluster.scheduler_address,
                             n_shards=3, batch_size=8, progress=False, **SETTINGS)
    assert len(result.shards) == 3 and result.n_failed == 1 and result.n_images == 90
    _assert_rows_equal(result.path, whole)
    with h5py.File(result.path) as f:
        assert all(ds.is_virtual for ds in f["features"].values())
    result.path.unlink()  # as if the driver stopped before merging: finished shards are kept
    again = extract_on_dask(source, tmp_path / "d.h5", dask=cluster.scheduler_address,
                            n_shards=3, batch_size=8, progress=False, **SETTINGS)
    assert [s.n_computed for s in again.shards] == [0, 0, 0]
    _assert_rows_equal(again.path, whole)
    # `featpipe fit --dask` on the merged store: the local run's choice
    spec = TrainingSpec(recipe="fne", cv=3, grid={"clf__C": [0.1, 1]},
                        cache_dir=str(tmp_path / "cache"))
    local = fit_store(again.path, spec, out=tmp_path / "l.skops", test_split="0.3")
    on_cluster = fit_store(again.path, dataclasses.replace(spec, dask=cluster.scheduler_address),
                           out=tmp_path / "d.skops", test_split="0.3")
    assert on_cluster.search.best_params == local.search.best_params
    assert on_cluster.evaluation["accuracy"] == local.evaluation["accuracy"]
    again.path.unlink()  # the shards of another extraction are never merged into this one
    with pytest.raises(FeatpipeError, match="holds the shards of an extraction with other"):
        extract_on_dask(source, tmp_path / "d.h5", dask=cluster.scheduler_address, n_shards=3,
                        batch_size=8, progress=False, **{**SETTINGS, "pool": "max"})


def _kill_worker_running(client, key_part: str, partial, timeout: float = 60) -> None:
    """SIGKILL the worker process running the task ``key_part`` once it wrote some rows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with h5py.File(partial, "r", locking=False) as f:
                done = int((f["status"][()] != 0).sum())
        except (OSError, KeyError):
            done = 0
        if done:
            for address, keys in client.processing().items():
                if any(key_part in str(key) for key in keys):
                    pid = client.run(os.getpid, workers=[address])[address]
                    os.kill(pid, signal.SIGKILL)
                    return
        time.sleep(0.002)
    raise AssertionError("the shard never started writing")


def test_a_worker_killed_mid_shard_is_retried_and_the_result_is_the_same(
        tmp_path, cluster, source):
    whole = _whole(tmp_path, source, batch_size=1)  # same batches: bit-identical floats
    out = tmp_path / "k.h5"
    partial = tmp_path / "k.h5.shards" / "shard-000-of-002.h5.partial"
    with distributed.Client(cluster.scheduler_address) as client, ThreadPoolExecutor(1) as pool:
        job = pool.submit(extract_on_dask, source, out, dask=cluster.scheduler_address,
                          n_shards=2, batch_size=1, progress=False, **SETTINGS)
        _kill_worker_running(client, "featpipe-shard-0-of-2", partial)
        result = job.result(timeout=300)
    assert result.resumed_shards == 1  # the killed shard's partial file was resumed
    assert 0 < result.shards[0].n_computed < 45
    _assert_rows_equal(out, whole)


def test_command_line_dask_extract_on_an_existing_cluster(tmp_path, cluster, source, whole):
    out = tmp_path / "cli.h5"
    cmd = [sys.executable, "-m", "featpipe", "extract", str(source), "--out", str(out),
           "--model", "efficientnet_lite0", "--layers", "stages",
           "--image-size", "32", "--batch-size", "8", "--dask", cluster.scheduler_address,
           "--copy", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "90 images, 1 failed, 4 shards" in done.stdout
    _assert_rows_equal(out, whole)
    refused = subprocess.run(cmd[:-4] + ["--dask", "local:2", "--shard", "0/2"],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "drop --shard" in refused.stderr


@pytest.mark.parametrize("method", ["fast", "grid", "halving"])
def test_distributed_search_finds_the_local_best_parameters(cluster, method):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    X = (rng.normal(size=(120, 24)) + 0.6 * np.eye(3, 24)[y] * 3).astype(np.float32)
    train = FeatureSet(X, y, {"a": (0, 12), "b": (12, 24)}, ["x", "y", "z"],
                       np.array([f"r{i}" for i in range(120)]), np.arange(120), None, {})
    spec = TrainingSpec(recipe="l2", cv=3, search=method, grid={"clf__C": [0.01, 0.1, 1, 10]})
    local = fit_features(train, spec)
    with on_dask(cluster.scheduler_address, train.X, train.y) as client, \
            distributed.get_task_stream(client) as tasks:
        distributed_run = fit_features(train, dataclasses.replace(spec, n_jobs=-1))
    workers = {task["worker"] for task in tasks.data}
    assert len(workers) == 2  # the fits ran on both workers, not in this process
    assert distributed_run.best_params == local.best_params
    assert distributed_run.best_score == pytest.approx(local.best_score, abs=1e-12)
    assert [r["mean_test_score"] for r in distributed_run.cv_table] == pytest.approx(
        [r["mean_test_score"] for r in local.cv_table], abs=1e-12)


def test_cluster_addresses():
    assert parse_address(" local:3 ") == ("local", 3)
    with pytest.raises(FeatpipeError, match="local:N"):
        parse_address("local:x")
    with connect("local:1") as client:  # a LocalCluster of one single-threaded process
        assert list(client.nthreads().values()) == [1]
    with pytest.raises(FeatpipeError, match="cannot reach the Dask scheduler"):
        with connect("tcp://127.0.0.1:9"):
            pass
