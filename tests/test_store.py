"""The HDF5 feature store: layout, round trip, failures, partial reads, resume bookkeeping."""

import json

import h5py
import numpy as np
import pytest

from featpipe.errors import FeatpipeError
from featpipe.store.layout import FAILED, OK, PENDING, rows_per_chunk
from featpipe.store.reader import FeatureStore
from featpipe.store.writer import StoreWriter

LAYERS = {"stem": 3, "head": 5}


def _provenance():
    return {"model": "m", "layers": list(LAYERS), "layer_dims": LAYERS, "pool": "mean"}


def _create(path, n=10, splits=True, dtype="float32"):
    ids = [f"img{i}.png" for i in range(n)]
    labels = np.arange(n) % 2
    return StoreWriter.create(
        path, layer_dims=LAYERS, ids=ids, labels=labels, class_names=["cat", "dog"],
        splits=["train" if i < n - 3 else "test" for i in range(n)] if splits else None,
        index=np.arange(n), provenance=_provenance(), dtype=dtype)


def _features(positions):
    positions = np.asarray(positions)
    return {name: np.stack([np.full(dim, p + 0.1 * k, dtype=np.float32)
                            for p in positions]) if len(positions) else
            np.empty((0, dim), np.float32)
            for k, (name, dim) in enumerate(LAYERS.items())}


def _write_all(writer, n=10, failed=(4,)):
    ok = [p for p in range(n) if p not in failed]
    writer.write_batch(np.array(ok), _features(ok), [(p, "truncated image") for p in failed])


def test_round_trip_keeps_rows_labels_and_layer_slices_aligned(tmp_path):
    path = tmp_path / "s.h5"
    writer = _create(path)
    _write_all(writer)
    writer.finish()
    store = FeatureStore.open(path)
    assert store.layers == LAYERS
    data = store.load()
    assert data.X.dtype == np.float32 and data.X.shape == (9, 8)
    assert data.layer_slices == {"stem": (0, 3), "head": (3, 8)}
    assert data.index.tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    # column block of each layer holds that row's value, so rows and labels stay aligned
    np.testing.assert_allclose(data.X[:, 0], data.index)
    np.testing.assert_allclose(data.X[:, 3], data.index + 0.1)
    assert data.y.tolist() == [i % 2 for i in data.index]
    assert data.ids.tolist() == [f"img{i}.png" for i in data.index]
    assert store.failures == [(4, "truncated image")]


def test_load_by_layer_split_and_rows(tmp_path):
    path = tmp_path / "s.h5"
    writer = _create(path)
    _write_all(writer)
    writer.finish()
    store = FeatureStore.open(path)
    head = store.load(layers=["head"], split="test")
    assert head.X.shape == (3, 5) and head.layer_slices == {"head": (0, 5)}
    assert head.index.tolist() == [7, 8, 9]
    picked = store.load(layers="stem", rows=[9, 1])
    assert picked.index.tolist() == [1, 9]
    with pytest.raises(FeatpipeError, match="not successfully extracted"):
        store.load(rows=[4])
    with pytest.raises(FeatpipeError, match="not in s.h5"):
        store.load(layers=["blocks.9"])
    with pytest.raises(FeatpipeError, match="no rows in split 'val'"):
        store.load(split="val")


def test_layout_is_plain_hdf5(tmp_path):
    path = tmp_path / "s.h5"
    writer = _create(path, dtype="float16")
    _write_all(writer)
    writer.finish()
    with h5py.File(path, "r") as f:
        assert f.attrs["featpipe_format"] == 1 and bool(f.attrs["complete"])
        assert json.loads(f.attrs["provenance"])["model"] == "m"
        assert f["features/head"].dtype == np.float16
        assert f["status"][()].tolist() == [OK] * 4 + [FAILED] + [OK] * 5
        assert np.isnan(f["features/head"][4]).all()  # failed rows are NaN, never zeros
        assert f["failures/reason"].asstr()[0] == "truncated image"
    assert FeatureStore.open(path).load().X.dtype == np.float32


def test_unfinished_store_is_refused_unless_allowed(tmp_path):
    path = tmp_path / "s.h5"
    writer = _create(path)
    writer.write_batch(np.arange(3), _features(range(3)))
    writer.close()
    with pytest.raises(FeatpipeError, match="unfinished extraction"):
        FeatureStore.open(path)
    store = FeatureStore.open(path, allow_partial=True)
    assert (store.status == PENDING).sum() == 7
    assert store.summary()["n_pending"] == 7


def test_reopen_forgets_failures_of_batches_without_status(tmp_path):
    """A crash between appending failures and writing status must not duplicate failures."""
    path = tmp_path / "s.h5"
    writer = _create(path)
    writer._append_failures(np.array([4]), ["truncated image"])  # status never written
    writer.close()
    writer = StoreWriter.reopen(path)
    _write_all(writer)
    writer.finish()
    assert FeatureStore.open(path).failures == [(4, "truncated image")]


def test_not_a_store_and_missing_file(tmp_path):
    with pytest.raises(FeatpipeError, match="not found"):
        FeatureStore.open(tmp_path / "missing.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(FeatpipeError, match="not a featpipe feature store"):
        FeatureStore.open(other)
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(FeatpipeError, match="cannot open"):
        FeatureStore.open(text)


def test_chunks_are_about_one_mebibyte():
    assert rows_per_chunk(1280, 4, 100_000) == 204
    assert rows_per_chunk(1280, 4, 50) == 50
    assert rows_per_chunk(10_000_000, 4, 100) == 1


def test_summary_counts_classes_and_splits(tmp_path):
    path = tmp_path / "s.h5"
    writer = _create(path)
    _write_all(writer)
    writer.finish()
    summary = FeatureStore.open(path).summary()
    assert summary["n_images"] == 9 and summary["n_failed"] == 1
    assert summary["classes"] == {"cat": 4, "dog": 5}  # row 4 (a cat) failed
    assert summary["splits"] == {"test": 3, "train": 6}
    assert summary["failures"] == [{"index": 4, "id": "img4.png", "reason": "truncated image"}]


# --- scale-out seams: FeatureSet.subset / select_layers, FeatureStore.iter_batches ----------


def _finished_store(path, n=10, failed=(4,)):
    writer = _create(path, n=n)
    _write_all(writer, n=n, failed=failed)
    writer.finish()
    return FeatureStore.open(path)


def test_subset_keeps_rows_aligned(tmp_path):
    data = _finished_store(tmp_path / "s.h5").load()
    for selection in (data.splits == "test", [5, 0, 5], np.array([], dtype=np.int64),
                      slice(2, 4), []):
        part = data.subset(selection)
        expected = np.arange(len(data.index))[selection]
        assert part.index.tolist() == data.index[expected].tolist()
        assert part.y.tolist() == data.y[expected].tolist()
        assert part.ids.tolist() == data.ids[expected].tolist()
        assert part.splits.tolist() == data.splits[expected].tolist()
        np.testing.assert_array_equal(part.X, data.X[expected])
        assert part.layer_slices == data.layer_slices and part.class_names == data.class_names
    with pytest.raises(FeatpipeError, match=r"`selection` mask has shape \(3,\), expected \(9,\)"):
        data.subset(np.ones(3, dtype=bool))
    with pytest.raises(FeatpipeError, match="outside the 9 rows"):
        data.subset([9])
    with pytest.raises(FeatpipeError, match="`selection` must be"):
        data.subset([0.5])


def test_select_layers_recomputes_slices_in_the_given_order(tmp_path):
    store = _finished_store(tmp_path / "s.h5")
    data = store.load()
    swapped = data.select_layers(["head", "stem"])
    assert swapped.layer_slices == {"head": (0, 5), "stem": (5, 8)}
    np.testing.assert_array_equal(swapped.X[:, :5], store.load(layers="head").X)
    np.testing.assert_array_equal(swapped.X[:, 5:], store.load(layers="stem").X)
    assert swapped.index.tolist() == data.index.tolist()
    stem = data.select_layers("stem")
    assert stem.layer_slices == {"stem": (0, 3)} and stem.X.flags.c_contiguous
    np.testing.assert_array_equal(stem.X, store.load(layers="stem").X)
    for names, message in ((["blocks.9"], "unknown layer"), ([], "no layers"),
                           (["stem", "stem"], "repeated layers")):
        with pytest.raises(FeatpipeError, match=f"`names` has {message}.*holds: stem, head"):
            data.select_layers(names)


@pytest.mark.parametrize("kwargs", [{}, {"layers": ["head"]}, {"split": "train"},
                                    {"rows": [9, 0, 3, 7], "layers": "stem"}])
@pytest.mark.parametrize("batch_size", [1, 3, 100])
def test_iter_batches_equals_load(tmp_path, kwargs, batch_size):
    store = _finished_store(tmp_path / "s.h5")
    data = store.load(**kwargs)
    batches = list(store.iter_batches(batch_size=batch_size, **kwargs))
    assert all(0 < len(p) <= batch_size for p, _, _ in batches)
    positions = np.concatenate([p for p, _, _ in batches])
    assert store.index[positions].tolist() == data.index.tolist()
    X = np.concatenate([X for _, X, _ in batches])
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, data.X)
    np.testing.assert_array_equal(np.concatenate([y for _, _, y in batches]), data.y)


def test_iter_batches_without_labels_and_bad_batch_size(tmp_path):
    path = tmp_path / "s.h5"
    writer = StoreWriter.create(path, layer_dims=LAYERS, ids=["a", "b", "c"],
                                labels=np.full(3, -1), class_names=[], splits=None,
                                index=np.arange(3), provenance=_provenance())
    writer.write_batch(np.arange(3), _features(range(3)))
    writer.finish()
    store = FeatureStore.open(path)
    assert [y for _, _, y in store.iter_batches(batch_size=2)] == [None, None]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(FeatpipeError, match="`batch_size` must be an integer >= 1"):
            next(store.iter_batches(batch_size=bad))


@pytest.mark.parametrize("rows", [None, "scattered"])
def test_iter_batches_never_reads_more_than_a_batch(tmp_path, monkeypatch, rows):
    import featpipe.store.layout as layout

    monkeypatch.setattr(layout, "CHUNK_BYTES", 64)  # chunks of 5 (stem) and 3 (head) rows
    n, batch_size = 500, 16
    store = _finished_store(tmp_path / "big.h5", n=n, failed=())
    chunk_rows = {"stem": 5, "head": 3}
    with h5py.File(store.path, "r") as f:
        assert {name: f["features"][name].chunks[0] for name in LAYERS} == chunk_rows
    if rows == "scattered":
        rows = np.random.default_rng(0).choice(n, 100, replace=False)
    reads = []
    getitem = h5py.Dataset.__getitem__

    def spy(ds, key):
        out = getitem(ds, key)
        if ds.name.startswith("/features/"):
            reads.append((ds.name.split("/")[-1], out.shape[0]))
        return out

    read_direct = h5py.Dataset.read_direct

    def spy_direct(ds, dest, source_sel=None, dest_sel=None):
        read_direct(ds, dest, source_sel, dest_sel)
        if ds.name.startswith("/features/"):
            reads.append((ds.name.split("/")[-1], source_sel.stop - source_sel.start))

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    monkeypatch.setattr(h5py.Dataset, "read_direct", spy_direct)
    total = sum(len(p) for p, _, _ in store.iter_batches(rows=rows, batch_size=batch_size))
    assert total == (n if rows is None else 100)
    assert reads and all(size <= max(batch_size, chunk_rows[name]) for name, size in reads)
    if rows is None:
        reads.clear()
        store.load()  # the spy sees every row, read an HDF5 chunk at a time (never all at once)
        assert sum(size for name, size in reads if name == "stem") == n
        assert all(size <= chunk_rows[name] for name, size in reads)
