"""Write a feature store: create it with its metadata, then whole batches of rows and failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np

from featpipe.store.layout import (
    FAILED,
    FORMAT_VERSION,
    OK,
    PENDING,
    STR,
    _read_str,
    rows_per_chunk,
)


def write_metadata(f: h5py.File, *, ids: Sequence[str], labels: np.ndarray,
                   class_names: Sequence[str], splits: Sequence[str] | None, index: np.ndarray,
                   provenance: dict, status: np.ndarray | None = None,
                   failures: Sequence[tuple[int, str]] = ()) -> None:
    """Write everything of a store but its features (layout in :mod:`featpipe.store.layout`):
    the file is left unfinished (``complete`` False); ``status`` defaults to all pending and
    ``failures`` are (input index, reason) pairs."""
    f.attrs["featpipe_format"] = FORMAT_VERSION
    f.attrs["complete"] = False
    f.attrs["provenance"] = json.dumps(provenance, sort_keys=True)
    n = len(ids)
    f.create_dataset("status", data=np.zeros(n, dtype=np.uint8) if status is None else status)
    f.create_dataset("index", data=np.asarray(index, dtype=np.int64))
    f.create_dataset("ids", data=list(ids), dtype=STR)
    f.create_dataset("labels", data=np.asarray(labels, dtype=np.int64))
    f.create_dataset("class_names", data=list(class_names), dtype=STR)
    if splits is not None:
        f.create_dataset("split", data=list(splits), dtype=STR)
    group = f.create_group("failures")
    group.create_dataset("index", data=np.asarray([i for i, _ in failures], dtype=np.int64),
                         maxshape=(None,), chunks=(1024,))
    group.create_dataset("reason", data=[r for _, r in failures], shape=(len(failures),),
                         maxshape=(None,), dtype=STR, chunks=(1024,))


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
            write_metadata(f, ids=ids, labels=labels, class_names=class_names, splits=splits,
                           index=index, provenance=provenance)
            features = f.create_group("features")
            np_dtype = np.dtype(dtype)
            for name, dim in layer_dims.items():
                features.create_dataset(
                    name, shape=(n, dim), dtype=np_dtype, fillvalue=np.nan,
                    chunks=(rows_per_chunk(dim, np_dtype.itemsize, n), dim),
                    compression=compression)
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

