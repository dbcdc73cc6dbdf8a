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

import contextlib
import json
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from featpipe.errors import FeatpipeError
from featpipe.spec import PRESETS
from featpipe.store.layout import FORMAT_VERSION, OK, PENDING, _read_str
from featpipe.store.layout import rows_per_chunk as chunk_rows


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

    Examples
    --------
    >>> data = FeatureSet(X=np.arange(12, dtype=np.float32).reshape(3, 4), y=np.array([0, 1, 0]),
    ...                   layer_slices={"a": (0, 1), "b": (1, 4)}, class_names=["cat", "dog"],
    ...                   ids=np.array(["x", "y", "z"], dtype=object), index=np.arange(3),
    ...                   splits=None, provenance={})
    >>> data.subset(data.y == 0).select_layers("a").X.tolist()
    [[0.0], [8.0]]
    """

    X: np.ndarray
    y: np.ndarray | None
    layer_slices: dict[str, tuple[int, int]]
    class_names: list[str]
    ids: np.ndarray
    index: np.ndarray
    splits: np.ndarray | None
    provenance: dict

    def subset(self, selection) -> FeatureSet:
        """The rows ``selection`` of this set: X, y, ids, index and splits stay aligned.

        Parameters
        ----------
        selection : boolean mask of shape (n_rows,), sequence of row positions, or slice
            Positions are taken in the order given (and may repeat).

        Returns
        -------
        FeatureSet
            A new set; ``X`` is a copy unless ``selection`` is a slice.

        Examples
        --------
        >>> data = FeatureSet(np.eye(3, dtype=np.float32), np.array([0, 1, 0]), {"a": (0, 3)},
        ...                   ["cat", "dog"], np.array(["x", "y", "z"]), np.arange(3), None, {})
        >>> data.subset(data.y == 0).ids.tolist(), data.subset([2, 1]).index.tolist()
        (['x', 'z'], [2, 1])
        """
        n_rows = self.X.shape[0]
        if not isinstance(selection, slice):
            selection = np.asarray(selection)
            if selection.dtype == bool:
                if selection.shape != (n_rows,):
                    raise FeatpipeError(f"`selection` mask has shape {selection.shape}, "
                                        f"expected ({n_rows},)")
            elif selection.size == 0:
                selection = selection.astype(np.int64)
            elif selection.ndim != 1 or not np.issubdtype(selection.dtype, np.integer):
                raise FeatpipeError("`selection` must be a boolean mask, row positions or a slice")
            elif selection.min() < -n_rows or selection.max() >= n_rows:
                raise FeatpipeError(f"`selection` holds positions outside the {n_rows} rows")
        return FeatureSet(
            X=self.X[selection], y=None if self.y is None else self.y[selection],
            layer_slices=dict(self.layer_slices), class_names=list(self.class_names),
            ids=self.ids[selection], index=self.index[selection],
            splits=None if self.splits is None else self.splits[selection],
            provenance=self.provenance)

    def select_layers(self, names: str | Sequence[str]) -> FeatureSet:
        """The columns of some layers, concatenated in the order given.

        Parameters
        ----------
        names : str or sequence of str
            Layer names (a str may list several, comma-separated).

        Returns
        -------
        FeatureSet
            A new set with its own ``X`` and ``layer_slices`` recomputed; rows are unchanged.

        Examples
        --------
        >>> data = FeatureSet(np.array([[0, 1, 2]], dtype=np.float32), None,
        ...                   {"a": (0, 1), "b": (1, 3)}, [], np.array(["x"]), np.arange(1),
        ...                   None, {})
        >>> picked = data.select_layers(["b", "a"])
        >>> picked.layer_slices, picked.X.tolist()
        ({'b': (0, 2), 'a': (2, 3)}, [[1.0, 2.0, 0.0]])
        """
        if isinstance(names, str):
            names = [name.strip() for name in names.split(",") if name.strip()]
        names = list(names)
        missing = [name for name in names if name not in self.layer_slices]
        if missing or not names or len(set(names)) != len(names):
            problem = (f"unknown layer(s) {', '.join(map(str, missing))}" if missing
                       else "no layers" if not names else "repeated layers")
            raise FeatpipeError(f"`names` has {problem}; this set holds: "
                                f"{', '.join(self.layer_slices)}")
        blocks, layer_slices, start = [], {}, 0
        for name in names:
            lo, hi = self.layer_slices[name]
            blocks.append(self.X[:, lo:hi])
            layer_slices[name] = (start, start + hi - lo)
            start += hi - lo
        return FeatureSet(
            X=np.concatenate(blocks, axis=1), y=self.y, layer_slices=layer_slices,
            class_names=list(self.class_names), ids=self.ids, index=self.index,
            splits=self.splits, provenance=self.provenance)


def _open_h5(path: Path, mode: str, **options) -> h5py.File:
    try:
        return h5py.File(path, mode, **options)
    except FileNotFoundError:
        raise FeatpipeError(f"feature store not found: {path}") from None
    except OSError as exc:
        raise FeatpipeError(f"cannot open {path} as an HDF5 feature store ({exc})") from None


#: What h5py, NumPy and json raise on a damaged file: a bad block (OSError), a missing
#: dataset or attribute (KeyError), unparsable metadata (ValueError), a wrong type or shape,
#: a broken group's links (RuntimeError: "Link iteration failed").
_DAMAGE = (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError)


@contextlib.contextmanager
def reading(path: Path, *, chunk_cache: bool = True) -> Iterator[h5py.File]:
    """Open ``path`` for reading; any HDF5 or metadata error inside becomes one line naming
    the file (every read path of a store goes through here). Without ``chunk_cache``, HDF5
    keeps no chunk in memory between reads (for reads of whole chunks, each once)."""
    with _open_h5(path, "r", **({} if chunk_cache else {"rdcc_nbytes": 0})) as f:
        try:
            yield f
        except FeatpipeError:
            raise
        except _DAMAGE as exc:
            raise damaged(path, exc) from None


def damaged(path: Path, exc: BaseException) -> FeatpipeError:
    """The one-line error of a store that cannot be read."""
    detail = (str(exc).splitlines() or [""])[0].strip(" '\"")
    return FeatpipeError(f"{path} is damaged ({type(exc).__name__}: {detail}); check it with "
                         f"'featpipe info --check {path}' and re-extract it")


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
        with reading(path) as f:
            if f.attrs.get("featpipe_format") != FORMAT_VERSION:
                raise FeatpipeError(f"{path} is not a featpipe feature store (format "
                                    f"{f.attrs.get('featpipe_format')!r})")
            complete = bool(f.attrs.get("complete", False))
            if not complete and not allow_partial:
                raise FeatpipeError(f"{path} is an unfinished extraction; re-run the same "
                                    "'featpipe extract' command to complete it")
            _check_virtual_sources(f, path)
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
        """Validate a layer selection against the store, in forward order.

        None or ``"all"``: every stored layer. A preset (``last``, ``stages``, ``full``) means
        the backbone's preset as recorded at extraction; ``last`` falls back to the deepest
        stored layer when the backbone's own is not stored (a ``full`` store holds the head,
        whose mean-pooled map is the pooled pre-logits).
        """
        available = list(self.layers)
        if layers is None or layers == "all":
            return available
        if isinstance(layers, str):
            layers = [name.strip() for name in layers.split(",") if name.strip()]
        layers = [name for item in layers for name in self._preset_layers(item)]
        missing = [name for name in layers if name not in self.layers]
        if missing:
            raise FeatpipeError(f"layer(s) {', '.join(missing)} not in {self.path.name}; "
                                f"it holds: {', '.join(available)}")
        return [name for name in available if name in set(layers)]

    def _preset_layers(self, name: str) -> list[str]:
        if name not in PRESETS or name in self.layers:
            return [name]
        recorded = (self.provenance.get("presets") or {}).get(name)
        if name == "last" and (recorded is None or not set(recorded) <= set(self.layers)):
            return [list(self.layers)[-1]]
        if recorded is None:
            raise FeatpipeError(f"{self.path.name} was extracted before presets were recorded; "
                                f"name its layers instead: {', '.join(self.layers)}")
        missing = [n for n in recorded if n not in self.layers]
        if missing:
            raise FeatpipeError(f"preset {name!r} needs layer(s) {', '.join(missing)} that "
                                f"{self.path.name} does not hold; extract with that preset")
        return list(recorded)

    def layer_slices(self, names: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Each layer's (start, stop) columns when ``names`` are concatenated in that order
        (as :meth:`load` and :meth:`iter_batches` do with resolved names)."""
        slices, start = {}, 0
        for name in names:
            slices[name] = (start, start + self.layers[name])
            start = slices[name][1]
        return slices

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
        layer_slices = self.layer_slices(names)
        X = np.empty((len(positions), sum(self.layers[n] for n in names)), dtype=np.float32)
        # _read_rows reads each chunk once: HDF5's cache would only leave ~1 MiB per layer
        # behind in the heap, where the arrays that follow cannot use it
        with reading(self.path, chunk_cache=False) as f:
            for name, (start, stop) in layer_slices.items():
                _read_rows(f["features"][name], positions, out=X[:, start:stop])
        self.refuse_non_finite(X, positions)
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

    def iter_batches(self, rows: Sequence[int] | None = None, batch_size: int = 4096,
                     layers: str | Sequence[str] | None = None, split: str | None = None,
                     shuffle: np.random.Generator | None = None,
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Read features a batch of rows at a time, never the whole matrix.

        Rows, layers and split are chosen as in :meth:`load`; only each batch's rows are read
        from the file (scattered rows a storage chunk at a time), so memory stays at about one
        batch. The file is open while the iteration runs.

        Parameters
        ----------
        rows : sequence of int, optional
            Input indices (default: every successfully extracted image).
        batch_size : int, default 4096
            Rows per batch (the last one may be smaller).
        layers : list of str, comma-separated str or None
            Layers to read (None: all), concatenated in forward order.
        split : str, optional
            Only rows of this split.
        shuffle : numpy Generator, optional
            Yield the batches in a random order and the rows of each batch shuffled (for
            stochastic training); each batch is still one run of the selected rows, so reads
            stay local. None: in store order.

        Yields
        ------
        positions : ndarray of int64, shape (n,)
            Row positions in the store, ascending across batches unless shuffled
            (``store.index[positions]`` are the input indices).
        X : ndarray of shape (n, n_features), float32
            Columns as in ``load(layers).X``.
        y : ndarray of shape (n,), int64, or None when the store has no labels

        Examples
        --------
        >>> import tempfile
        >>> from featpipe.store.writer import StoreWriter
        >>> path = Path(tempfile.mkdtemp()) / "tiny.h5"
        >>> writer = StoreWriter.create(
        ...     path, layer_dims={"a": 2}, ids=["x", "y", "z"], labels=np.array([0, 1, 0]),
        ...     class_names=["cat", "dog"], splits=None, index=np.arange(3),
        ...     provenance={"layers": ["a"], "layer_dims": {"a": 2}})
        >>> writer.write_batch(np.arange(3), {"a": np.ones((3, 2), np.float32)})
        >>> writer.finish()
        >>> store = FeatureStore.open(path)
        >>> [(p.tolist(), X.shape, y.tolist()) for p, X, y in store.iter_batches(batch_size=2)]
        [([0, 1], (2, 2), [0, 1]), ([2], (1, 2), [0])]
        >>> path.unlink(); path.parent.rmdir()
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or batch_size < 1:
            raise FeatpipeError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
        names = self.resolve_layers(layers)
        positions = self.select_rows(rows, split)
        dims = self.layers
        width = sum(dims[name] for name in names)
        labels = self.labels[positions].astype(np.int64) if self.has_labels else None
        starts = np.arange(0, len(positions), batch_size)
        if shuffle is not None:
            starts = shuffle.permutation(starts)
        with reading(self.path) as f:
            datasets = [f["features"][name] for name in names]
            for start in starts:
                block = positions[start:start + batch_size]
                X = np.empty((len(block), width), dtype=np.float32)
                column = 0
                for ds in datasets:
                    X[:, column:column + ds.shape[1]] = _read_rows(ds, block)
                    column += ds.shape[1]
                self.refuse_non_finite(X, block)
                y = None if labels is None else labels[start:start + batch_size]
                if shuffle is not None:
                    order = shuffle.permutation(len(block))
                    block, X, y = block[order], X[order], None if y is None else y[order]
                yield block, X, y

    def refuse_non_finite(self, X: np.ndarray, positions: np.ndarray) -> None:
        """Raise one line naming the file and the rows when ``X`` (rows ``positions``) holds
        NaN or inf: models cannot use them. Extraction records such rows as failed; an
        older store, or one damaged on disk, may still hold them."""
        finite = np.ones(len(X), dtype=bool)
        step = max(1, _MASK_BYTES // max(1, X.shape[1]))  # a block's mask at a time, not X's
        for start in range(0, len(X), step):
            finite[start:start + step] = np.isfinite(X[start:start + step]).all(axis=1)
        bad = positions[~finite]
        if len(bad):
            shown = ", ".join(f"{self.ids[p]} (input {self.index[p]})" for p in bad[:3])
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise FeatpipeError(
                f"{self.path} has {len(bad)} extracted row(s) with non-finite features "
                f"(NaN/inf): {shown}{more}; re-extract it, or check it with 'featpipe info "
                f"--check {self.path}'")

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


#: Bytes of one block's mask in :meth:`FeatureStore.refuse_non_finite`.
_MASK_BYTES = 1 << 18


def _check_virtual_sources(f: h5py.File, path: Path) -> None:
    """Refuse a merged store whose shard files are not where it maps them: HDF5 would read
    their rows as the fill value (NaN) without a word."""
    layers = list(f["features"].values())
    if not layers or not layers[0].is_virtual:
        return
    for source in layers[0].virtual_sources():
        shard = path.parent / source.file_name
        if not shard.is_file():
            raise FeatpipeError(
                f"{path} is a merged store whose shard {source.file_name} is missing (expected "
                f"at {shard}); keep the shards where they were relative to it, or merge again "
                "with `copy=True` for a self-contained file")


def _read_rows(ds: h5py.Dataset, positions: np.ndarray, out: np.ndarray | None = None,
               ) -> np.ndarray:
    """Read rows by position into ``out`` (a new float32 array when None), one HDF5 chunk of
    rows at a time through one buffer, so that no more than a chunk is ever held twice."""
    if out is None:
        out = np.empty((len(positions), ds.shape[1]), dtype=np.float32)
    if len(positions) == 0:
        return out
    # a virtual (merged) dataset has no chunks of its own: read ~1 MiB blocks
    rows_per_chunk = (ds.chunks[0] if ds.chunks
                      else chunk_rows(ds.shape[1], ds.dtype.itemsize, ds.shape[0]))
    order = np.argsort(positions, kind="stable")  # rows of one chunk become one run
    ordered = positions[order]
    _, firsts = np.unique(ordered // rows_per_chunk, return_index=True)
    buffer = np.empty((min(rows_per_chunk, ds.shape[0]), ds.shape[1]), dtype=ds.dtype)
    for a, b in zip(firsts, [*firsts[1:], len(ordered)]):
        start, stop = int(ordered[a]), int(ordered[b - 1]) + 1  # within one chunk
        ds.read_direct(buffer, np.s_[start:stop], np.s_[:stop - start])
        out[order[a:b]] = buffer[ordered[a:b] - start]
    return out

