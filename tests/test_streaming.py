"""Out-of-core learning: batches in shuffled order, the batch size from a budget, accuracy close
to the in-memory recipe, and a store larger than its budget fitted under that budget (peak RSS
measured in a subprocess); `featpipe fit` says when it streams."""

import json
import subprocess
import sys

import numpy as np
import pytest

from featpipe.classical.persist import load_model
from featpipe.classical.streaming import StreamingSpec, batch_rows_for_budget, fit_streaming
from featpipe.errors import FeatpipeError
from featpipe.store.reader import FeatureStore
from featpipe.store.writer import StoreWriter
from featpipe.workflows.fit import TrainingSpec, fit_store
from featpipe.workflows.streaming import parse_size


def write_blobs(path, n_rows: int, n_features: int, n_classes: int = 4, seed: int = 0,
                block: int = 8192):
    """A store of Gaussian class blobs (overlapping: accuracy well below 1), written a block
    of rows at a time so that writing it needs little memory either."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, n_features)).astype(np.float32) * 0.12
    labels = rng.integers(0, n_classes, n_rows)
    split = np.where(rng.random(n_rows) < 0.2, "test", "train")
    half = n_features // 2
    writer = StoreWriter.create(
        path, layer_dims={"a": half, "b": n_features - half}, ids=[f"r{i}" for i in range(n_rows)],
        labels=labels, class_names=[f"c{k}" for k in range(n_classes)], splits=list(split),
        index=np.arange(n_rows), provenance={"layers": ["a", "b"], "layer_dims": {
            "a": half, "b": n_features - half}, "model": "synthetic"})
    for lo in range(0, n_rows, block):
        hi = min(n_rows, lo + block)
        X = centres[labels[lo:hi]] + rng.normal(size=(hi - lo, n_features)).astype(np.float32)
        writer.write_batch(np.arange(lo, hi), {"a": X[:, :half], "b": X[:, half:]})
    writer.finish()
    return path


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return write_blobs(tmp_path_factory.mktemp("blobs") / "blobs.h5", 3000, 64)


def test_shuffled_batches_cover_every_row_once(blobs):
    store = FeatureStore.open(blobs)
    rng = np.random.default_rng(0)
    batches = list(store.iter_batches(batch_size=700, shuffle=rng))
    positions = np.concatenate([p for p, _, _ in batches])
    assert sorted(positions.tolist()) == list(range(3000))
    assert positions.tolist() != sorted(positions.tolist())  # order shuffled
    full = store.load()
    for p, X, y in batches:
        np.testing.assert_array_equal(X, full.X[p])
        assert y.tolist() == full.y[p].tolist()


def test_budget_sets_the_batch_and_refuses_too_small_a_budget():
    small = batch_rows_for_budget(300 * 2**20, n_features=1000, n_classes=4, baseline=2**27)
    large = batch_rows_for_budget(600 * 2**20, n_features=1000, n_classes=4, baseline=2**27)
    assert 64 <= small < large
    with pytest.raises(FeatpipeError, match="`memory_budget` 100 MB is too small"):
        batch_rows_for_budget(100 * 2**20, n_features=1000, n_classes=4, baseline=2**27)
    assert parse_size("2GB") == 2**31 and parse_size("300 MiB") == 300 * 2**20


def test_streaming_accuracy_is_close_to_the_in_memory_recipe(tmp_path, blobs):
    common = dict(test_split="test", train_split=None)
    options = dict(recipe=None, normalize="standard", classifier="linearsvc", cv=3,
                   grid={"clf__C": [0.001, 0.01, 0.1, 1]}, cache_dir=str(tmp_path / "c"))
    streamed = fit_store(blobs, TrainingSpec(streaming=True, **options),
                         out=tmp_path / "s.skops", **common)
    in_memory = fit_store(blobs, TrainingSpec(streaming=False, **options),
                          out=tmp_path / "m.skops", **common)
    assert streamed.streamed and not in_memory.streamed
    a, b = streamed.evaluation["accuracy"], in_memory.evaluation["accuracy"]
    assert 0.5 < b < 0.99 and abs(a - b) < 0.03, (a, b)
    pipeline, _, training = load_model(tmp_path / "s.skops")  # a loadable model
    assert type(pipeline.named_steps["clf"]).__name__ == "SGDClassifier"
    assert training["search"]["method"] == "streaming"


def test_pca_and_log_loss_variant(blobs):
    store = FeatureStore.open(blobs)
    rows = store.index[store.select_rows(split="train")]
    result = fit_streaming(store, rows, ["a", "b"], StreamingSpec(
        loss="log_loss", alphas=[1e-3, 1e-2], pca_components=16, batch_rows=500, max_epochs=3))
    assert result.pipeline.named_steps["reduce"].n_components_ == 16
    assert set(result.validation_scores) == {1e-3, 1e-2} and 1 <= result.epochs <= 3
    test = store.load(split="test")
    assert (result.pipeline.predict(test.X) == test.y).mean() > 0.5


# VmHWM is this process's own peak RSS; ru_maxrss would also count the forking parent's pages
# (Linux keeps the high-water mark across exec).
_MEASURE = """
import json, sys
from featpipe.workflows.fit import TrainingSpec, fit_store
spec = TrainingSpec(memory_budget=int(sys.argv[3]), max_iter=2, cache_dir=sys.argv[4])
outcome = fit_store(sys.argv[1], spec, out=sys.argv[2], test_split="test")
peak = [int(line.split()[1]) * 1024 for line in open("/proc/self/status")
        if line.startswith("VmHWM:")][0]
print(json.dumps({"peak": peak,
                  "streamed": outcome.streamed, "accuracy": outcome.evaluation["accuracy"],
                  "batch_rows": outcome.search.extra["search"]["batch_rows"]}))
"""


def test_a_store_larger_than_the_budget_is_fitted_under_it(tmp_path):
    store = write_blobs(tmp_path / "big.h5", 72_000, 1024)  # 281 MiB of float32 features
    budget = 256 * 2**20
    assert store.stat().st_size > budget
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(store), str(tmp_path / "m.skops"),
                           str(budget), str(tmp_path / "cache")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)
    assert measured["streamed"] and "over the budget of 256 MB" in measured["streamed"]
    assert measured["peak"] < budget, measured
    assert measured["accuracy"] > 0.5


def test_command_line_says_when_it_streams(tmp_path, blobs):
    base = [sys.executable, "-m", "featpipe", "fit", str(blobs), "--out", str(tmp_path / "s.skops"),
            "--test-split", "test", "--cache-dir", str(tmp_path / "c")]
    done = subprocess.run(base + ["--streaming", "--max-iter", "2"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert "note: asked for the out-of-core recipe" in done.stderr
    assert "best CV" in done.stdout and "clf__alpha" in done.stdout
    refused = subprocess.run(base + ["--streaming", "--stats-from", "all"], capture_output=True,
                             text=True)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "drop --stats-from or raise --memory-budget" in refused.stderr
    bad = subprocess.run(base + ["--memory-budget", "lots"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--memory-budget 'lots' is not a size" in bad.stderr


def test_a_test_store_leaves_every_training_row_in_and_is_checked_before_training(
        tmp_path, blobs, monkeypatch):
    import featpipe.workflows.streaming as streaming

    store = FeatureStore.open(blobs)
    train, held = streaming.training_rows(store, test=str(blobs))
    assert held is None and sorted(train.tolist()) == store.index[store.ok_rows].tolist()
    other = write_blobs(tmp_path / "other.h5", 200, 64, n_classes=5)  # class c4 is unknown

    def never(*args, **kwargs):
        raise AssertionError("the test store must be refused before the out-of-core training")

    monkeypatch.setattr(streaming, "fit_streaming", never)
    with pytest.raises(FeatpipeError, match="classes c4 are not among the model's classes"):
        fit_store(blobs, TrainingSpec(streaming=True, max_iter=1), out=tmp_path / "m.skops",
                  test=other)
