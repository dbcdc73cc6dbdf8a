"""The HDF5 feature store: where the extraction wing writes and the learning wing reads.

On-disk layout (format version 1), readable with plain h5py or ``h5ls -r``::

    /                      attrs: featpipe_format=1, complete (bool),
                                  provenance (JSON string: backbone, weights sha256,
                                  preprocessing, layers, pooling, dtype, versions, ...)
    /features/<layer>      (n_inputs, dim) float32 or float16, one dataset per layer, rows in
                           input order; chunks of ~1 MiB; optional lzf. Rows of inputs that
                           failed (or are not extracted yet) hold NaN.
    /status                (n_inputs,) uint8: 0 pending, 1 ok, 2 failed
    /index                 (n_inputs,) int64: input index of each row (global index for shards)
    /ids                   (n_inputs,) str: image path relative to the source, or an id
    /labels                (n_inputs,) int64: index into /class_names, -1 when unlabelled
    /class_names           (n_classes,) str
    /split                 (n_inputs,) str, only when the source gives splits
    /failures/index        (n_failed,) int64 input index of each failed image
    /failures/reason       (n_failed,) str why it failed

The order of layers is the ``layers`` list inside the provenance (HDF5 groups list their
members alphabetically, not in forward order).

Examples
--------
>>> store = FeatureStore.open("features.h5")               # doctest: +SKIP
>>> data = store.load(layers=["bn2"], split="train")        # doctest: +SKIP
>>> data.X.shape, data.layer_slices                         # doctest: +SKIP
((140, 1280), {'bn2': (0, 1280)})
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np

from featpipe.errors import FeatpipeError

FORMAT_VERSION = 1
PENDING, OK, FAILED = 0, 1, 2
CHUNK_BYTES = 1 << 20
STR = h5py.string_dtype("utf-8")


@dataclass
class FeatureSet:
    """Features loaded from a store, with everything needed to keep rows aligned.

    Attributes
    ----------
    X : ndarray of shape (n_rows, n_features), float32
    y : ndarray of shape (n_rows,), int64, or None when the store has no labels
    layer_slices : dict of layer name -> (start, stop) column range in X
    class_names : list of str
    ids : ndarray of str, the image id of each row
    index : ndarray of int64, the input index of each row
    splits : ndarray of str, or None
    provenance : dict
    """

    X: np.ndarray
    y: np.ndarray | None
    layer_slices: dict[str, tuple[int, int]]
    class_names: list[str]
    ids: np.ndarray
    index: np.ndarray
    splits: np.ndarray | None
    provenance: dict


def _read_str(ds) -> np.ndarray:
    return np.asarray(ds.asstr()[()], dtype=object)


def _open_h5(path: Path, mode: str) -> h5py.File:
    try:
        return h5py.File(path, mode)
    except FileNotFoundError:
        raise FeatpipeError(f"feature store not found: {path}") from None
    except OSError as exc:
        raise FeatpipeError(f"cannot open {path} as an HDF5 feature store ({exc})") from None


class FeatureStore:
    """Read access to a featpipe HDF5 feature store.

    Metadata (ids, labels, status, provenance) is read once at :meth:`open`; feature matrices
    are read on :meth:`load`. No file handle stays open between calls, so a store object is
    safe to pass to worker processes.
    """

    def __init__(self, path, provenance, complete, status, index, ids, labels, class_names,
                 splits, failures):
        self.path = Path(path)
        self.provenance = provenance
        self.complete = complete
        self.status = status
        self.index = index
        self.ids = ids
        self.labels = labels
        self.class_names = class_names
        self.splits = splits
        self.failures = failures

    @classmethod
    def open(cls, path, *, allow_partial: bool = False) -> "FeatureStore":
        """Open a store for reading; refuse unfinished stores unless ``allow_partial``."""
        path = Path(path)
        if not path.exists():
            raise FeatpipeError(f"feature store not found: {path}")
        with _open_h5(path, "r") as f:
            if f.attrs.get("featpipe_format") != FORMAT_VERSION:
                raise FeatpipeError(f"{path} is not a featpipe feature store (format "
                                    f"{f.attrs.get('featpipe_format')!r})")
            complete = bool(f.attrs.get("complete", False))
            if not complete and not allow_partial:
                raise FeatpipeError(f"{path} is an unfinished extraction; re-run the same "
                                    "'featpipe extract' command to complete it")
            failures = list(zip(f["failures/index"][()].tolist(),
                                _read_str(f["failures/reason"]).tolist()))
            return cls(
                path=path,
                provenance=json.loads(f.attrs["provenance"]),
                complete=complete,
                status=f["status"][()],
                index=f["index"][()],
                ids=_read_str(f["ids"]),
                labels=f["labels"][()],
                class_names=_read_str(f["class_names"]).tolist(),
                splits=_read_str(f["split"]) if "split" in f else None,
                failures=failures,
            )

    @property
    def layers(self) -> dict[str, int]:
        """Layer name -> feature dimension, in forward order."""
        dims = self.provenance["layer_dims"]
        return {name: int(dims[name]) for name in self.provenance["layers"]}

    @property
    def n_inputs(self) -> int:
        return int(self.status.shape[0])

    @property
    def ok_rows(self) -> np.ndarray:
        """Row positions of successfully extracted images."""
        return np.flatnonzero(self.status == OK)

    @property
    def has_labels(self) -> bool:
        return bool(len(self.class_names)) and bool(np.any(self.labels[self.ok_rows] >= 0))

    def resolve_layers(self, layers: str | Sequence[str] | None) -> list[str]:
        """Validate a layer selection against the store (None = all, in forward order)."""
        available = list(self.layers)
        if layers is None or layers == "all":
            return available
        if isinstance(layers, str):
            layers = [name.strip() for name in layers.split(",") if name.strip()]
        missing = [name for name in layers if name not in self.layers]
        if missing:
            raise FeatpipeError(f"layer(s) {', '.join(missing)} not in {self.path.name}; "
                                f"it holds: {', '.join(available)}")
        return [name for name in available if name in set(layers)]

    def select_rows(self, rows: Sequence[int] | None = None, split: str | None = None) -> np.ndarray:
        """Row positions to load: successful rows, optionally restricted by input index or split."""
        selected = self.ok_rows
        if split is not None:
            if self.splits is None:
                raise FeatpipeError(f"{self.path.name} has no split column; extract from a "
                                    "manifest with a 'split' column or use --test-split")
            selected = selected[self.splits[selected] == split]
            if not len(selected):
                raise FeatpipeError(f"{self.path.name} has no rows in split '{split}' "
                                    f"(splits: {', '.join(sorted(set(self.splits)))})")
        if rows is not None:
            position = {int(i): p for p, i in enumerate(self.index)}
            wanted = [position.get(int(i)) for i in rows]
            bad = [int(i) for i, p in zip(rows, wanted) if p is None or self.status[p] != OK]
            if bad:
                raise FeatpipeError(f"input indices {bad[:5]} are not successfully extracted rows "
                                    f"of {self.path.name}")
            selected = np.intersect1d(selected, np.asarray(wanted, dtype=np.int64))
        return selected

    def load(self, layers: str | Sequence[str] | None = None, rows: Sequence[int] | None = None,
             split: str | None = None) -> FeatureSet:
        """Load float32 features of the chosen layers, concatenated in forward order.

        Parameters
        ----------
        layers : list of str, comma-separated str or None
            Layers to load (None: all).
        rows : sequence of int, optional
            Input indices to load (default: every successfully extracted image).
        split : str, optional
            Only rows of this split (e.g. "train").
        """
        names = self.resolve_layers(layers)
        positions = self.select_rows(rows, split)
        dims = self.layers
        X = np.empty((len(positions), sum(dims[n] for n in names)), dtype=np.float32)
        layer_slices, start = {}, 0
        with _open_h5(self.path, "r") as f:
            for name in names:
                stop = start + dims[name]
                X[:, start:stop] = _read_rows(f["features"][name], positions)
                layer_slices[name] = (start, stop)
                start = stop
        labels = self.labels[positions]
        return FeatureSet(
            X=X,
            y=labels.astype(np.int64) if self.has_labels else None,
            layer_slices=layer_slices,
            class_names=list(self.class_names),
            ids=self.ids[positions],
            index=self.index[positions],
            splits=None if self.splits is None else self.splits[positions],
            provenance=self.provenance,
        )

    def summary(self) -> dict:
        """Everything `featpipe info --json` prints."""
        ok = self.ok_rows
        counts = np.bincount(self.labels[ok][self.labels[ok] >= 0],
                             minlength=len(self.class_names)) if len(self.class_names) else []
        summary = {
            "path": str(self.path),
            "complete": self.complete,
            "n_inputs": self.n_inputs,
            "n_images": int(len(ok)),
            "n_failed": len(self.failures),
            "n_pending": int(np.sum(self.status == PENDING)),
            "layers": self.layers,
            "n_features": int(sum(self.layers.values())),
            "classes": {name: int(c) for name, c in zip(self.class_names, counts)},
            "failures": [{"index": i, "id": str(self.ids[self._position(i)]), "reason": r}
                         for i, r in self.failures],
            "provenance": self.provenance,
        }
        if self.splits is not None:
            values, split_counts = np.unique(self.splits[ok].astype(str), return_counts=True)
            summary["splits"] = dict(zip(values.tolist(), split_counts.tolist()))
        return summary

    def _position(self, input_index: int) -> int:
        return int(np.flatnonzero(self.index == input_index)[0])


def _read_rows(ds: h5py.Dataset, positions: np.ndarray) -> np.ndarray:
    """Read rows by position: whole contiguous ranges are one read; scattered rows go per chunk."""
    if len(positions) == 0:
        return np.empty((0, ds.shape[1]), dtype=np.float32)
    lo, hi = int(positions[0]), int(positions[-1]) + 1
    if hi - lo == len(positions):
        return ds[lo:hi].astype(np.float32, copy=False)
    rows_per_chunk = ds.chunks[0] if ds.chunks else hi - lo
    out = np.empty((len(positions), ds.shape[1]), dtype=np.float32)
    chunk_of = positions // rows_per_chunk
    for chunk in np.unique(chunk_of):
        mask = chunk_of == chunk
        start = int(chunk) * rows_per_chunk
        block = ds[start:min(start + rows_per_chunk, ds.shape[0])]
        out[mask] = block[positions[mask] - start]
    return out


def rows_per_chunk(dim: int, itemsize: int, n_rows: int) -> int:
    """Rows in a ~1 MiB chunk of a (n_rows, dim) dataset."""
    return max(1, min(n_rows, CHUNK_BYTES // max(1, dim * itemsize)))


class StoreWriter:
    """Creates a store (or reopens an unfinished one) and writes whole batches of rows.

    Only one thread may use a writer. The extraction wing drives it; see
    :func:`featpipe.extract.extract`.
    """

    def __init__(self, path: Path, file: h5py.File):
        self.path = path
        self._file = file

    @classmethod
    def create(cls, path, *, layer_dims: Mapping[str, int], ids: Sequence[str],
               labels: np.ndarray, class_names: Sequence[str], splits: Sequence[str] | None,
               index: np.ndarray, provenance: dict, dtype: str = "float32",
               compression: str | None = None) -> "StoreWriter":
        path = Path(path)
        n = len(ids)
        f = h5py.File(path, "w")
        try:
            f.attrs["featpipe_format"] = FORMAT_VERSION
            f.attrs["complete"] = False
            f.attrs["provenance"] = json.dumps(provenance, sort_keys=True)
            features = f.create_group("features")
            np_dtype = np.dtype(dtype)
            for name, dim in layer_dims.items():
                features.create_dataset(
                    name, shape=(n, dim), dtype=np_dtype, fillvalue=np.nan,
                    chunks=(rows_per_chunk(dim, np_dtype.itemsize, n), dim),
                    compression=compression)
            f.create_dataset("status", data=np.zeros(n, dtype=np.uint8))
            f.create_dataset("index", data=np.asarray(index, dtype=np.int64))
            f.create_dataset("ids", data=list(ids), dtype=STR)
            f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
            f.create_dataset("class_names", data=list(class_names), dtype=STR)
            if splits is not None:
                f.create_dataset("split", data=list(splits), dtype=STR)
            failures = f.create_group("failures")
            failures.create_dataset("index", shape=(0,), maxshape=(None,), dtype=np.int64,
                                    chunks=(1024,))
            failures.create_dataset("reason", shape=(0,), maxshape=(None,), dtype=STR,
                                    chunks=(1024,))
            f.flush()
        except BaseException:
            f.close()
            raise
        return cls(path, f)

    @classmethod
    def reopen(cls, path) -> "StoreWriter":
        """Reopen an unfinished store to resume it."""
        writer = cls(Path(path), h5py.File(path, "r+"))
        writer._drop_unconfirmed_failures()
        return writer

    def _drop_unconfirmed_failures(self) -> None:
        """Forget failures whose batch never got its status written (the batch is redone)."""
        index_ds, reason_ds = self._file["failures/index"], self._file["failures/reason"]
        confirmed = set(self._file["index"][()][self._file["status"][()] == FAILED].tolist())
        keep = [k for k, i in enumerate(index_ds[()].tolist()) if i in confirmed]
        if len(keep) == index_ds.shape[0]:
            return
        indices, reasons = index_ds[()][keep], _read_str(reason_ds)[keep].tolist()
        index_ds.resize((len(keep),))
        reason_ds.resize((len(keep),))
        index_ds[:] = indices
        reason_ds[:] = reasons
        self._file.flush()

    @property
    def provenance(self) -> dict:
        return json.loads(self._file.attrs["provenance"])

    def pending_positions(self) -> np.ndarray:
        return np.flatnonzero(self._file["status"][()] == PENDING)

    def write_batch(self, positions: np.ndarray, features: Mapping[str, np.ndarray],
                    failures: Sequence[tuple[int, str]] = ()) -> None:
        """Write the rows of one batch, then mark them done.

        ``positions`` are the row positions of ``features`` (sorted ascending); ``failures``
        holds (row position, reason) of the batch's images that could not be decoded. Status
        is flushed only after the features are, so a crash never marks a row done whose
        features did not reach the disk.
        """
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions):
            lo, hi = int(positions[0]), int(positions[-1]) + 1
            contiguous = hi - lo == len(positions)
            for name, values in features.items():
                ds = self._file["features"][name]
                if contiguous:
                    ds[lo:hi] = values
                else:
                    ds[positions] = values
        failed = np.asarray([p for p, _ in failures], dtype=np.int64)
        if len(failed):
            self._append_failures(failed, [reason for _, reason in failures])
        self._file.flush()
        status = self._file["status"]
        if len(positions):
            status[positions] = OK
        if len(failed):
            status[np.sort(failed)] = FAILED
        self._file.flush()

    def _append_failures(self, positions: np.ndarray, reasons: Sequence[str]) -> None:
        index_ds, reason_ds = self._file["failures/index"], self._file["failures/reason"]
        n = index_ds.shape[0]
        index_ds.resize((n + len(positions),))
        reason_ds.resize((n + len(positions),))
        index_ds[n:] = self._file["index"][()][positions]
        reason_ds[n:] = list(reasons)

    def finish(self) -> None:
        self._file.attrs["complete"] = True
        self._file.flush()
        self.close()

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()
