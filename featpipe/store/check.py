"""Verify a feature store (`featpipe info --check`): shapes, status against the failure table,
provenance, finite features on every extracted row, and the checksums written at extraction.

Examples
--------
>>> import tempfile
>>> from featpipe.store.writer import StoreWriter
>>> path = Path(tempfile.mkdtemp()) / "tiny.h5"
>>> writer = StoreWriter.create(
...     path, layer_dims={"a": 2}, ids=["x", "y"], labels=np.array([0, 1]),
...     class_names=["cat", "dog"], splits=None, index=np.arange(2),
...     provenance={"layers": ["a"], "layer_dims": {"a": 2}})
>>> writer.write_batch(np.arange(2), {"a": np.ones((2, 2), np.float32)})
>>> writer.finish()
>>> check_store(path).problems
[]
>>> with h5py.File(path, "r+") as f:
...     f["features/a"][1, 0] = np.nan
>>> check_store(path).problems[0]
'features/a: 1 extracted row(s) hold NaN/inf (first: y)'
>>> path.unlink(); path.parent.rmdir()
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from featpipe.errors import FeatpipeError
from featpipe.store.layout import (
    FAILED,
    FORMAT_VERSION,
    OK,
    PENDING,
    _read_str,
    checksummed_names,
    dataset_digest,
)
from featpipe.store.reader import _DAMAGE, _check_virtual_sources, _open_h5

_ROWS_PER_READ = 4096


@dataclass
class StoreCheck:
    """What :func:`check_store` found: ``problems`` (empty when sound) and ``notes``."""

    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_store(path) -> StoreCheck:
    """Check every part of the store at ``path``; never raises for a damaged file."""
    check = StoreCheck(Path(path))
    try:
        with _open_h5(check.path, "r") as f:
            _check_file(f, check)
    except FeatpipeError as exc:
        check.problems.append(str(exc))
    except _DAMAGE as exc:
        detail = (str(exc).splitlines() or [""])[0]
        check.problems.append(f"unreadable ({type(exc).__name__}: {detail})")
    return check


def _check_file(f: h5py.File, check: StoreCheck) -> None:
    problems = check.problems
    if f.attrs.get("featpipe_format") != FORMAT_VERSION:
        problems.append(f"not a featpipe store (format {f.attrs.get('featpipe_format')!r})")
        return
    _check_virtual_sources(f, check.path)  # a missing shard reads as NaN: name it instead
    provenance = json.loads(f.attrs["provenance"])
    layers = provenance.get("layers") or []
    dims = provenance.get("layer_dims") or {}
    n = f["status"].shape[0]
    stored = set(f["features"])
    if set(layers) != stored or set(dims) != stored:
        problems.append(f"provenance lists layers {sorted(layers)} (dims {sorted(dims)}) but "
                        f"the file holds {sorted(stored)}")
    for name in sorted(stored):
        ds = f["features"][name]
        if ds.shape != (n, int(dims.get(name, ds.shape[1]))):
            problems.append(f"features/{name} has shape {ds.shape}, expected "
                            f"({n}, {dims.get(name)})")
    for name in ("index", "ids", "labels", "split"):
        if name in f and f[name].shape != (n,):
            problems.append(f"{name} has shape {f[name].shape}, expected ({n},)")
    status = f["status"][()]
    _check_status(f, status, check)
    if problems:
        return  # rows cannot be trusted to line up: the checks below would mislead
    ids = _read_str(f["ids"])
    digests = {f"features/{name}": _check_finite(f["features"][name], status, ids, check)
               for name in layers}
    _check_digests(f, check, digests)


def _check_status(f: h5py.File, status: np.ndarray, check: StoreCheck) -> None:
    unknown = np.setdiff1d(np.unique(status), [PENDING, OK, FAILED])
    if len(unknown):
        check.problems.append(f"status holds unknown values {unknown.tolist()}")
    n_pending = int(np.sum(status == PENDING))
    if bool(f.attrs.get("complete", False)) and n_pending:
        check.problems.append(f"marked complete but {n_pending} row(s) are pending")
    elif n_pending:
        check.notes.append(f"unfinished: {n_pending} row(s) pending")
    failed_index = f["failures/index"][()]
    if f["failures/reason"].shape != failed_index.shape:
        check.problems.append(f"failures/index has {len(failed_index)} entries but "
                              f"failures/reason {f['failures/reason'].shape[0]}")
    expected = f["index"][()][status == FAILED]
    if sorted(failed_index.tolist()) != sorted(expected.tolist()):
        check.problems.append(f"{len(expected)} row(s) have status failed but the failure "
                              f"table lists {len(failed_index)} (they must match)")
    labels, n_classes = f["labels"][()], f["class_names"].shape[0]
    if len(labels) and (labels.min() < -1 or labels.max() >= n_classes):
        check.problems.append(f"labels outside [-1, {n_classes})")


def _check_finite(ds: h5py.Dataset, status: np.ndarray, ids, check: StoreCheck) -> str:
    """Every extracted (ok) row of ``ds`` must be finite; read a block of rows at a time.
    Returns the dataset's :func:`~featpipe.store.layout.dataset_digest` from the same reads."""
    n_bad, first, digest = 0, None, hashlib.sha256()
    for start in range(0, ds.shape[0], _ROWS_PER_READ):
        block = ds[start:start + _ROWS_PER_READ]
        digest.update(np.ascontiguousarray(block).tobytes())
        bad = ~np.isfinite(block).all(axis=1) & (status[start:start + len(block)] == OK)
        if bad.any() and first is None:
            first = ids[start + int(np.flatnonzero(bad)[0])]
        n_bad += int(bad.sum())
    if n_bad:
        check.problems.append(f"{ds.name.lstrip('/')}: {n_bad} extracted row(s) hold NaN/inf "
                              f"(first: {first})")
    return digest.hexdigest()


def _check_digests(f: h5py.File, check: StoreCheck, known: dict[str, str]) -> None:
    """Compare the recorded checksums (``known``: digests already computed, by name)."""
    recorded = json.loads(f.attrs.get("checksums", "{}"))
    if not recorded:
        check.notes.append("no checksums recorded (an unfinished or older store: content "
                           "not verified)")
        return
    for name in sorted(recorded):
        if name not in f:
            check.problems.append(f"{name}: checksummed but missing")
        elif (known.get(name) or dataset_digest(f[name])) != recorded[name]:
            check.problems.append(f"{name}: content differs from its checksum (changed or "
                                  "damaged since extraction)")
    missing = [name for name in checksummed_names(f) if name not in recorded]
    if missing:
        check.problems.append(f"no checksum for {', '.join(missing)}")
