"""Merge shard stores (``extract(..., shard=(k, n))``, one file per worker) into one store.

The shards must be finished, hold the same kind of features (every key that must match to
resume an extraction, :data:`featpipe.provenance.RESUME_KEYS`, except the index range) and
their index ranges must tile the input ``[0, n_inputs)`` with no gap and no overlap. The merged
store has the rows in input order and is read like any other store.

Two layouts (see :mod:`featpipe.store.layout`):

- virtual (default): ``/features/<layer>`` are HDF5 virtual datasets that map each shard's rows;
  nothing is copied. The shards are named by their path *relative to the merged file's folder*,
  so the merged file and its shards may move together (e.g. a whole folder). A merged store
  whose shard is missing or moved alone is refused when opened (HDF5 itself would silently read
  NaN); re-merge or use the copy layout.
- copy (``copy=True``): a self-contained file, written a storage chunk at a time.

Examples
--------
>>> merge_shards(["a-0.h5", "a-1.h5"], "a.h5")            # doctest: +SKIP
PosixPath('a.h5')
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from featpipe.errors import FeatpipeError
from featpipe.fileio import checked_output, exclusive_lock
from featpipe.provenance import resume_differences
from featpipe.store.layout import rows_per_chunk
from featpipe.store.reader import FeatureStore
from featpipe.store.writer import write_metadata

#: Provenance keys two shards of one extraction share (all resume keys but their own range).
def open_shards(paths: Sequence[str | os.PathLike]) -> list[FeatureStore]:
    """Open ``paths`` as the shards of one extraction, in input order, or refuse in one line."""
    if not paths:
        raise FeatpipeError("no shard stores given to merge")
    shards = []
    for path in paths:
        try:
            shards.append(FeatureStore.open(path))
        except FeatpipeError as exc:
            raise FeatpipeError(f"cannot merge shard {path}: {exc}") from None
    shards.sort(key=lambda s: s.provenance.get("index_range", [0, 0])[0])
    _check_same_extraction(shards)
    _check_tiling(shards)
    return shards


def _check_same_extraction(shards: list[FeatureStore]) -> None:
    for shard in shards[1:]:
        differ = [k for k in resume_differences(shards[0].provenance, shard.provenance)
                  if k != "index_range"]  # each shard covers its own range
        if differ:
            raise FeatpipeError(
                f"{shard.path} is not a shard of the same extraction as {shards[0].path} "
                f"({', '.join(differ)} differ)")


def _check_tiling(shards: list[FeatureStore]) -> None:
    n_inputs = int(shards[0].provenance.get("n_inputs", 0))
    expected = 0
    for shard in shards:
        lo, hi = shard.provenance.get("index_range", [0, 0])
        if not np.array_equal(shard.index, np.arange(lo, hi)):
            raise FeatpipeError(f"{shard.path} does not hold the inputs {lo}..{hi - 1} of its "
                                "recorded range; it is not a featpipe shard")
        if lo > expected:
            raise FeatpipeError(f"gap: inputs {expected}..{lo - 1} are in no shard "
                                f"(next shard {shard.path} starts at {lo})")
        if lo < expected:
            raise FeatpipeError(f"overlap: inputs {lo}..{min(hi, expected) - 1} are in two "
                                f"shards (one is {shard.path})")
        expected = hi
    if expected != n_inputs:
        raise FeatpipeError(f"gap: inputs {expected}..{n_inputs - 1} of {n_inputs} are in no "
                            "shard")


def merge_shards(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                 copy: bool = False, overwrite: bool = False) -> Path:
    """Merge the shard stores ``paths`` into one store ``out`` (rows in input order).

    Parameters
    ----------
    paths : sequence of path
        Finished shard stores of one extraction, in any order.
    out : path
        The merged store; written under ``OUT.partial`` and renamed when complete.
    copy : bool, default False
        Copy the features into a self-contained file instead of mapping the shards with HDF5
        virtual datasets.
    overwrite : bool, default False
        Replace an existing ``out``.

    Returns
    -------
    Path
        ``out``.
    """
    shards = open_shards(paths)
    out = checked_output(out, overwrite=overwrite)
    if any(Path(s.path).resolve() == out.resolve() for s in shards):
        raise FeatpipeError(f"{out} is one of the shards; write the merged store elsewhere")
    partial = out.with_name(out.name + ".partial")
    with exclusive_lock(out):
        with h5py.File(partial, "w") as f:
            _write_merged_metadata(f, shards, layout="copy" if copy else "virtual", out=out)
            features = f.create_group("features")
            for name, dim in shards[0].layers.items():
                if copy:
                    _copy_layer(features, name, dim, shards)
                else:
                    _map_layer(features, name, dim, shards, out.parent)
            f.attrs["complete"] = True
        os.replace(partial, out)
    return out


def _write_merged_metadata(f: h5py.File, shards: list[FeatureStore], *, layout: str,
                           out: Path) -> None:
    provenance = dict(shards[0].provenance)
    provenance["index_range"] = [0, int(provenance.get("n_inputs", 0))]
    provenance["merged_from"] = {"layout": layout, "shards": [
        os.path.relpath(Path(s.path).resolve(), out.parent.resolve()) for s in shards]}
    splits = None if shards[0].splits is None else \
        [v for s in shards for v in s.splits.tolist()]
    class_names = sorted({name for s in shards for name in s.class_names})
    write_metadata(
        f, ids=[v for s in shards for v in s.ids.tolist()],
        labels=np.concatenate([_labels_among(s, class_names) for s in shards]),
        class_names=class_names, splits=splits,
        index=np.concatenate([s.index for s in shards]),
        provenance=provenance, status=np.concatenate([s.status for s in shards]),
        failures=[failure for s in shards for failure in s.failures])


def _labels_among(shard: FeatureStore, class_names: list[str]) -> np.ndarray:
    """The shard's labels as indices into ``class_names`` (a shard names only its own
    classes, so its label indices differ from the whole input's)."""
    position = np.array([class_names.index(name) for name in shard.class_names] + [-1])
    return position[shard.labels]  # -1 (unlabelled) picks the trailing -1


def _dtype_of(shard: FeatureStore, name: str):
    with h5py.File(shard.path, "r") as f:
        return f["features"][name].dtype


def _map_layer(features: h5py.Group, name: str, dim: int, shards: list[FeatureStore],
               folder: Path) -> None:
    dtype = _dtype_of(shards[0], name)
    n = sum(s.n_inputs for s in shards)
    layout = h5py.VirtualLayout(shape=(n, dim), dtype=dtype)
    start = 0
    for shard in shards:
        relative = os.path.relpath(Path(shard.path).resolve(), folder.resolve())
        layout[start:start + shard.n_inputs] = h5py.VirtualSource(
            relative, f"features/{name}", shape=(shard.n_inputs, dim), dtype=dtype)
        start += shard.n_inputs
    features.create_virtual_dataset(name, layout, fillvalue=np.nan)


def _copy_layer(features: h5py.Group, name: str, dim: int, shards: list[FeatureStore]) -> None:
    dtype = _dtype_of(shards[0], name)
    n = sum(s.n_inputs for s in shards)
    rows = rows_per_chunk(dim, dtype.itemsize, n)
    target = features.create_dataset(name, shape=(n, dim), dtype=dtype, fillvalue=np.nan,
                                     chunks=(rows, dim))
    start = 0
    for shard in shards:
        with h5py.File(shard.path, "r") as f:
            source = f["features"][name]
            for lo in range(0, shard.n_inputs, rows):
                hi = min(lo + rows, shard.n_inputs)
                target[start + lo:start + hi] = source[lo:hi]
        start += shard.n_inputs
