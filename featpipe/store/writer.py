"""Write a feature store: create it with its metadata, then whole batches of rows and failures.

Disk full: the HDF5 library cannot close a file after a failed write (it crashes, at the latest
when the interpreter exits), so the writer checks the free space before the store is created
and before every batch, and stops with one line while the file is still intact: what is
written stays readable and a re-run resumes. A write that fails anyway (another process took
the space, a file size limit) cannot be trusted to have left a consistent file: the handle is
abandoned, never closed, and the file removed (a re-run starts it over); the command line then
ends the process without the library's exit handlers (:func:`handles_abandoned`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np

from featpipe.errors import FeatpipeError
from featpipe.store.layout import (
    CHUNK_BYTES,
    FAILED,
    FORMAT_VERSION,
    OK,
    PENDING,
    STR,
    _read_str,
    checksummed_names,
    dataset_digest,
    rows_per_chunk,
)

#: Free space kept in reserve beyond a batch's own bytes and a new chunk per layer: room for
#: the failure table and HDF5's metadata.
RESERVE_BYTES = 4 * CHUNK_BYTES
_ABANDONED: list = []


def handles_abandoned() -> bool:
    """True once a write failed and a store's HDF5 handle was left open (see module notes)."""
    return bool(_ABANDONED)


def free_bytes(folder: Path) -> int:
    """Free space (bytes) of the file system holding ``folder``."""
    return shutil.disk_usage(folder).free


def check_space(path: Path, needed: int) -> None:
    """Refuse to write ``needed`` bytes (plus the reserve) into ``path`` on a fuller disk."""
    free = free_bytes(path.parent)
    if free < needed + RESERVE_BYTES:
        raise FeatpipeError(
            f"not enough disk space for {path}: about {_mib(needed + RESERVE_BYTES)} MiB "
            f"needed, {_mib(free)} MiB free in {path.parent}; free some space and re-run "
            "(an unfinished store resumes where it stopped)")


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f}"


def write_error(path: Path, exc: BaseException) -> FeatpipeError:
    """One line naming the file and the operating system's cause of a failed write."""
    cause = re.search(r"error message = '([^']*)'", str(exc))
    reason = cause.group(1) if cause else (str(exc).splitlines() or [""])[0]
    return FeatpipeError(f"cannot write {path}: {reason}; the unfinished file was removed "
                         "(a failed HDF5 write leaves it inconsistent); fix the cause and re-run")


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
        self._broken = False
        # Handles held for the writer's life: releasing a dataset makes HDF5 write its cached
        # chunks then, where a failure can only be printed, not raised (flush() raises it).
        self._features = {name: file["features"][name] for name in file["features"]}
        self._status, self._index = file["status"], file["index"]
        self._failed_index, self._failed_reason = file["failures/index"], file["failures/reason"]
        self._chunk_bytes = sum(int(np.prod(ds.chunks)) * ds.dtype.itemsize
                                for ds in self._features.values())

    @classmethod
    def create(cls, path, *, layer_dims: Mapping[str, int], ids: Sequence[str],
               labels: np.ndarray, class_names: Sequence[str], splits: Sequence[str] | None,
               index: np.ndarray, provenance: dict, dtype: str = "float32",
               compression: str | None = None) -> "StoreWriter":
        path = Path(path)
        n = len(ids)
        row_bytes = sum(layer_dims.values()) * np.dtype(dtype).itemsize
        check_space(path, 0 if compression else n * row_bytes)
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
        except (OSError, RuntimeError) as exc:  # a failed write: never close (module notes)
            _ABANDONED.append(exc)
            path.unlink(missing_ok=True)
            raise write_error(path, exc) from None
        except BaseException:
            f.close()
            raise
        return cls(path, f)

    @classmethod
    def reopen(cls, path) -> "StoreWriter":
        """Reopen an unfinished store to resume it."""
        writer = cls(Path(path), h5py.File(path, "r+"))
        try:
            compressed = any(ds.compression for ds in writer._features.values())
            n_pending = len(writer.pending_positions())
            check_space(writer.path, 0 if compressed else n_pending * writer.row_bytes)
            writer._drop_unconfirmed_failures()
        except BaseException:
            writer.close()
            raise
        return writer

    def _drop_unconfirmed_failures(self) -> None:
        """Forget failures whose batch never got its status written (the batch is redone)."""
        index_ds, reason_ds = self._failed_index, self._failed_reason
        confirmed = set(self._index[()][self._status[()] == FAILED].tolist())
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
        return np.flatnonzero(self._status[()] == PENDING)

    def write_batch(self, positions: np.ndarray, features: Mapping[str, np.ndarray],
                    failures: Sequence[tuple[int, str]] = ()) -> None:
        """Write the rows of one batch, then mark them done.

        ``positions`` are the row positions of ``features`` (sorted ascending); ``failures``
        holds (row position, reason) of the batch's images that could not be decoded. Status
        is flushed only after the features are, so a crash never marks a row done whose
        features did not reach the disk.
        """
        positions = np.asarray(positions, dtype=np.int64)
        check_space(self.path, len(positions) * self.row_bytes + self._chunk_bytes)
        try:
            self._write(positions, features, failures)
        except (OSError, RuntimeError) as exc:
            raise self._abandon(exc) from None

    def _abandon(self, exc: BaseException) -> FeatpipeError:
        """After a failed write: keep every HDF5 object alive (the traceback holds them;
        releasing one makes the library retry the write), remove the file, word the error."""
        self._broken = True
        _ABANDONED.append(exc)
        self.path.unlink(missing_ok=True)
        return write_error(self.path, exc)

    @property
    def row_bytes(self) -> int:
        """Bytes of one row of features (all layers, uncompressed)."""
        return sum(ds.shape[1] * ds.dtype.itemsize for ds in self._features.values())

    def _write(self, positions, features, failures) -> None:
        if len(positions):
            lo, hi = int(positions[0]), int(positions[-1]) + 1
            contiguous = hi - lo == len(positions)
            for name, values in features.items():
                ds = self._features[name]
                if contiguous:
                    ds[lo:hi] = values
                else:
                    ds[positions] = values
        failed = np.asarray([p for p, _ in failures], dtype=np.int64)
        if len(failed):
            self._append_failures(failed, [reason for _, reason in failures])
        self._file.flush()
        status = self._status
        if len(positions):
            status[positions] = OK
        if len(failed):
            status[np.sort(failed)] = FAILED
        self._file.flush()

    def _append_failures(self, positions: np.ndarray, reasons: Sequence[str]) -> None:
        index_ds, reason_ds = self._failed_index, self._failed_reason
        n = index_ds.shape[0]
        index_ds.resize((n + len(positions),))
        reason_ds.resize((n + len(positions),))
        index_ds[n:] = self._index[()][positions]
        reason_ds[n:] = list(reasons)

    def finish(self) -> None:
        try:
            self._file.flush()
            self._file.attrs["checksums"] = json.dumps(
                {name: dataset_digest(self._file[name]) for name in checksummed_names(self._file)},
                sort_keys=True)
            self._file.attrs["complete"] = True
            self._file.flush()
        except (OSError, RuntimeError) as exc:
            raise self._abandon(exc) from None
        finally:
            self.close()

    def close(self) -> None:
        if self._broken:  # closing would crash the HDF5 library (module notes)
            _ABANDONED.append(self)
        elif self._file.id.valid:
            self._file.close()

