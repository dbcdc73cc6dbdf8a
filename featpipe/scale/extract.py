"""Sharded extraction on a Dask cluster, merged into one store at the end.

``extract_on_dask(source, out, dask="local:2")`` cuts the input into contiguous shards
(``extract(..., shard=(k, n))``) and runs each as one Dask task that writes its own store
``OUT.shards/shard-K-of-N.h5``: never two writers on one file, and no h5py handle ever crosses
a process (they do not serialize). The shards are then merged into ``OUT``
(:func:`featpipe.store.merge.merge_shards`: HDF5 virtual datasets, or ``copy=True``).

What each task does, and why:

- it builds the backbone itself, on its worker, from the spec (names and settings are shipped,
  never a model or a CUDA tensor);
- on a worker with GPUs it uses ``cuda:<worker slot mod GPU count>`` (one GPU per worker of a
  ``LocalCluster``, whose workers are named 0..N-1; on a cluster started one worker per GPU
  with ``CUDA_VISIBLE_DEVICES`` set, e.g. dask-cuda, each worker sees its one GPU as cuda:0);
- it decodes images in the worker process itself (``workers=0``): Dask worker processes are
  daemonic by default, and a daemonic process cannot start DataLoader worker processes. Scale
  with more Dask workers instead (or set ``distributed.worker.daemon: False`` and pass
  ``decode_workers``);
- a worker that dies mid-shard (killed, out of memory) loses its task; the scheduler gives it to
  another worker (up to ``distributed.scheduler.allowed-failures`` times, 3 by default), which
  resumes the shard's ``.partial`` file instead of starting over.

Re-running the same call after the driver itself stopped keeps the finished shards and resumes
the unfinished ones. Progress is reported per finished shard, across all workers.

Sources are opened again on each worker: paths must be visible to the workers at the same
place (a shared filesystem); a relative path is made absolute first.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from featpipe.data.imageset import ImageSet
from featpipe.data.sources import open_source
from featpipe.errors import FeatpipeError, UsageError
from featpipe.extract.run import ExtractionResult, extract
from featpipe.fileio import atomic_write, checked_output
from featpipe.scale.cluster import connect, n_workers
from featpipe.spec import ExtractionSpec
from featpipe.store.merge import merge_shards
from featpipe.store.reader import FeatureStore

#: Shards per worker by default: a dead worker's redo is half its share, and a slow worker
#: holds up the end less.
SHARDS_PER_WORKER = 2
#: In ``OUT.shards``: what the shards were made of (settings, inputs, batch size), as JSON.
RUN_FILE = "run.json"


@dataclass
class DistributedExtraction:
    """What :func:`extract_on_dask` did: the merged store and each shard's run."""

    path: Path
    n_images: int
    n_failed: int
    seconds: float
    shards: list[ExtractionResult] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        computed = sum(s.n_computed for s in self.shards)
        return computed / self.seconds if self.seconds > 0 else float("nan")

    @property
    def resumed_shards(self) -> int:
        return sum(s.resumed for s in self.shards)


def extract_on_dask(source: str | os.PathLike | ImageSet, out: str | os.PathLike,
                    spec: ExtractionSpec | None = None, *, dask: str, n_shards: int | None = None,
                    batch_size: int = 32, device: str = "auto", decode_workers: int = 0,
                    copy: bool = False, overwrite: bool = False, progress: bool = True,
                    follow_links: bool = False, allow_outside: bool = False,
                    **settings) -> DistributedExtraction:
    """Extract ``source`` on the Dask cluster ``dask`` into shards, then merge them into ``out``.

    Parameters
    ----------
    source : path or ImageSet
        As for :func:`featpipe.extract.extract` (a path is re-opened by each worker).
    out : path
        The merged store; its shards go to the folder ``OUT.shards``.
    spec, **settings
        The features, as for :func:`featpipe.extract.extract`.
    dask : str
        A scheduler address (``tcp://host:8786``) or ``local:N``.
    n_shards : int, optional
        Shards to cut the input into (default: 2 per worker, at most one per batch). Shards
        are cut at multiples of ``batch_size``, so the merged store holds exactly the features
        one process computes with that batch size.
    batch_size, device
        As for :func:`~featpipe.extract.extract`; ``device="auto"`` pins one GPU per worker.
    decode_workers : int, default 0
        DataLoader processes per task; 0 decodes in the Dask worker (daemonic workers cannot
        start processes).
    copy : bool
        Merge into a self-contained file instead of virtual datasets over the shards.
    overwrite : bool
        Replace ``out`` and discard its shards. Without it, the shards of an earlier run of
        the same extraction (settings, inputs, batch size) are reused, and those of another
        extraction are refused.
    follow_links, allow_outside : bool
        As for :func:`~featpipe.extract.extract` (every worker opens the source with them).

    Examples
    --------
    >>> extract_on_dask("images/", "f.h5", dask="local:2", layers="last")   # doctest: +SKIP
    """
    spec = (spec or ExtractionSpec()).replace(**settings)
    check_options(shard=None, workers=None, batch_size=batch_size)
    if n_shards is not None and n_shards < 1:
        raise UsageError(f"`n_shards` must be >= 1, got {n_shards}")
    out = checked_output(out, overwrite=overwrite)
    source_options = {"follow_links": follow_links, "allow_outside": allow_outside}
    if not isinstance(source, ImageSet):
        source = str(Path(source).absolute())
    image_set = source if isinstance(source, ImageSet) else open_source(source, **source_options)
    n_inputs = len(image_set)
    folder = _shard_folder(out, overwrite, {"settings": spec.cache_key(), "batch_size": batch_size,
                                            "inputs": image_set.fingerprint()})
    started = time.perf_counter()
    with connect(dask) as client:
        n = min(-(-n_inputs // batch_size), n_shards or SHARDS_PER_WORKER * n_workers(client))
        paths = [folder / f"shard-{k:03d}-of-{n:03d}.h5" for k in range(n)]
        results = _run_shards(client, source, spec, paths, batch_size=batch_size,
                              device=device, decode_workers=decode_workers,
                              n_inputs=n_inputs, progress=progress,
                              source_options=source_options)
    merge_shards(paths, out, copy=copy, overwrite=overwrite)
    store = FeatureStore.open(out)
    return DistributedExtraction(path=out, n_images=len(store.ok_rows),
                                 n_failed=len(store.failures),
                                 seconds=time.perf_counter() - started, shards=results)


def _shard_folder(out: Path, overwrite: bool, run: dict) -> Path:
    """``OUT.shards``, holding only shards of the extraction ``run`` describes."""
    folder = out.with_name(out.name + ".shards")
    marker = folder / RUN_FILE
    if overwrite and folder.is_dir():
        for stale in [*folder.glob("shard-*"), marker]:
            stale.unlink(missing_ok=True)
    folder.mkdir(exist_ok=True)
    recorded = json.loads(marker.read_text()) if marker.is_file() else None
    if (recorded is None and any(folder.glob("shard-*"))) or recorded not in (None, run):
        raise FeatpipeError(f"{folder} holds the shards of an extraction with other settings, "
                            "inputs or batch size; pass `overwrite=True` to replace them")
    if recorded is None:
        atomic_write(marker, json.dumps(run, sort_keys=True))
    return folder


def _run_shards(client, source, spec: ExtractionSpec, paths: list[Path], *, batch_size: int,
                device: str, decode_workers: int, n_inputs: int, progress: bool,
                source_options: dict) -> list[ExtractionResult]:
    from distributed import as_completed
    from tqdm.auto import tqdm

    if isinstance(source, ImageSet):
        source = client.scatter(source, broadcast=False)
    n = len(paths)
    futures = {
        client.submit(extract_shard, source, str(path), spec, (k, n), batch_size, device,
                      decode_workers, source_options, key=f"featpipe-shard-{k}-of-{n}-{spec.cache_key()[:8]}"
                      ): k
        for k, path in enumerate(paths)}
    results: list[ExtractionResult | None] = [None] * n
    with tqdm(total=n_inputs, unit="img", desc=f"extract ({n} shards)", disable=not progress,
              dynamic_ncols=True) as bar:
        for future in as_completed(futures):
            result = future.result()  # a FeatpipeError on a worker is re-raised here
            results[futures[future]] = result
            bar.update(result.n_images + result.n_failed)
    return results


def extract_shard(source, path: str, spec: ExtractionSpec, shard: tuple[int, int],
                  batch_size: int, device: str, decode_workers: int,
                  source_options: dict | None = None) -> ExtractionResult:
    """One Dask task: extract shard ``shard`` of ``source`` into ``path`` on this worker.

    A finished shard is kept (re-running the driver does not redo it); an unfinished one
    (``path.partial``, from a worker that died) is resumed.
    """
    path = Path(path)
    if path.exists():
        store = FeatureStore.open(path)
        return ExtractionResult(path=path, n_images=len(store.ok_rows),
                                n_failed=len(store.failures), n_computed=0, seconds=0.0,
                                resumed=False)
    return extract(source, path, spec, batch_size=batch_size, workers=decode_workers,
                   device=worker_device(device), shard=shard, align_shard=True, progress=False,
                   **(source_options or {}))


def worker_device(requested: str) -> str:
    """``auto`` on a worker with GPUs: one GPU per worker, chosen by the worker's slot."""
    import torch

    if requested != "auto" or not torch.cuda.is_available():
        return requested
    return f"cuda:{_worker_slot() % torch.cuda.device_count()}"


def _worker_slot() -> int:
    from distributed import get_worker

    try:
        name = get_worker().name
    except ValueError:  # not on a worker
        return 0
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    return zlib.crc32(str(name).encode())


def check_options(*, shard, workers, batch_size=32) -> None:
    """Refuse the single-process options that a Dask run decides itself."""
    if batch_size == "auto":
        raise UsageError("`dask` cuts shards at multiples of the batch size; give "
                         "`batch_size` as a number (e.g. what a single-GPU auto run recorded)")
    if shard is not None:
        raise UsageError("`dask` cuts the input into shards itself; drop `shard`")
    if workers not in (None, 0):
        raise UsageError("`dask` workers decode images in their own process (Dask workers "
                         "are daemonic and cannot start decoding processes); drop `workers`")
