"""Read a feature store: :class:`FeatureStore` (metadata, status, provenance) and
:class:`FeatureSet` (float32 X, labels, ids and each layer's columns).

Examples
--------
>>> store = FeatureStore.open("features.h5")               # doctest: +SKIP
>>> data = store.load(layers=["bn2"], split="train")        # doctest: +SKIP
>>> data.X.shape, data.layer_slices                         # doctest: +SKIP
((140, 1280), {'bn2': (0, 1280)})
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from featpipe.errors import FeatpipeError
from featpipe.store.layout import FORMAT_VERSION, OK, PENDING, _read_str


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
                                    "manifest with a 'split' column or use `test_split`")
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

