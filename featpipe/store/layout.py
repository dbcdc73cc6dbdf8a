"""The feature store's on-disk layout: the single source of truth for its names and constants.

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

A finished store also holds ``checksums`` (root attribute, JSON): the SHA-256 of each dataset
:func:`checksummed_names` lists, as :func:`dataset_digest` computes it, verified by
``featpipe info --check``.
A merged store (``featpipe merge``, :mod:`featpipe.store.merge`) has the same layout. Its
provenance is its shards' with ``index_range`` covering every input and ``merged_from``
(``{"layout": "virtual" | "copy", "shards": [paths relative to the merged file]}``). In the
virtual layout each ``/features/<layer>`` is an HDF5 virtual dataset mapping row blocks of the
shards' ``/features/<layer>`` by those relative paths (HDF5 resolves them against the merged
file's folder); the other datasets are always copied. Readers refuse a virtual store whose
shard file is missing rather than read its rows as NaN.

The order of layers is the ``layers`` list inside the provenance (HDF5 groups list their
members alphabetically, not in forward order).
"""

from __future__ import annotations

import hashlib

import h5py
import numpy as np

FORMAT_VERSION = 1


PENDING, OK, FAILED = 0, 1, 2


CHUNK_BYTES = 1 << 20
STR = h5py.string_dtype("utf-8")


def _read_str(ds) -> np.ndarray:
    return np.asarray(ds.asstr()[()], dtype=object)


def rows_per_chunk(dim: int, itemsize: int, n_rows: int) -> int:
    """Rows in a ~1 MiB chunk of a (n_rows, dim) dataset."""
    return max(1, min(n_rows, CHUNK_BYTES // max(1, dim * itemsize)))



def checksummed_names(f: h5py.File) -> list[str]:
    """The datasets whose digests a finished store records: every layer, status, index, labels."""
    return [f"features/{name}" for name in f["features"]] + ["status", "index", "labels"]


def dataset_digest(ds: h5py.Dataset) -> str:
    """SHA-256 of a numeric dataset's values (native byte order), read ~1 MiB at a time."""
    digest = hashlib.sha256()
    width = ds.shape[1] if ds.ndim == 2 else 1
    step = rows_per_chunk(width, ds.dtype.itemsize, max(1, ds.shape[0]))
    for start in range(0, ds.shape[0], step):
        digest.update(np.ascontiguousarray(ds[start:start + step]).tobytes())
    return digest.hexdigest()
