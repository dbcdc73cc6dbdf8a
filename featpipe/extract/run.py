"""Stage 1: images -> backbone -> pooled activations of many layers -> HDF5 feature store.

One forward pass per batch captures every requested layer; a background thread writes whole
batches while the next one is computed. The store is written under ``OUT.partial`` and renamed
to ``OUT`` only when complete, so a finished store is never half-written. Re-running the same
call after a crash resumes: batches are aligned to input positions (``[k*B, (k+1)*B)``), so a
resumed run computes exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import numbers
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from featpipe import __version__
from featpipe.data.imageset import ImageSet
from featpipe.data.sources import open_source
from featpipe.errors import FeatpipeError, UsageError
from featpipe.extract.background import _BackgroundWriter, _progress_bar
from featpipe.extract.batches import image_batches, resolve_decode
from featpipe.extract.batchsize import auto_batch_size
from featpipe.fileio import checked_output, exclusive_lock
from featpipe.models import Backbone, create_backbone
from featpipe.models.capture import FeatureCapture
from featpipe.models.device import check_fits_memory, resolve_device
from featpipe.models.layers import resolve_layers
from featpipe.provenance import resume_differences
from featpipe.resources import available_cores
from featpipe.spec import PRESETS, ExtractionSpec
from featpipe.store.reader import FeatureStore
from featpipe.store.writer import StoreWriter

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
STORED_DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass
class ExtractionResult:
    """What one :func:`extract` call did."""

    path: Path
    n_images: int
    n_failed: int
    n_computed: int
    seconds: float
    resumed: bool

    @property
    def images_per_second(self) -> float:
        return self.n_computed / self.seconds if self.seconds > 0 else float("nan")


def extract(source: str | os.PathLike | ImageSet, out: str | os.PathLike,
            spec: ExtractionSpec | None = None, *, batch_size: int | str = 32,
            workers: int | None = None, device: str = "auto",
            shard: tuple[int, int] | None = None, align_shard: bool = False,
            overwrite: bool = False, progress: bool = True, follow_links: bool = False,
            allow_outside: bool = False, **settings) -> ExtractionResult:
    """Extract the features ``spec`` describes for every image of ``source`` into ``out``.

    Parameters
    ----------
    source : path or ImageSet
        A class-per-folder directory, a CSV manifest, a file list, an IDX file, or an ImageSet.
    out : path
        The HDF5 store to write. An unfinished ``OUT.partial`` from an earlier run with the same
        settings is resumed.
    spec : ExtractionSpec, optional
        Backbone, weights, layers, pooling, image size, stored dtype... (default: the defaults).
    **settings
        Changes to ``spec`` by field name, e.g. ``layers="last", image_size=128``.
    batch_size, workers, device
        How to run: images per forward pass (``"auto"``: the largest that fits the GPU, probed
        and recorded in the provenance, :mod:`featpipe.extract.batchsize`), decoding processes
        (None: chosen from the cores), ``auto``/``cpu``/``cuda``/``cuda:N``.
    shard : (k, n), optional
        Extract only the k-th of n contiguous slices of the inputs (rows keep global indices).
    align_shard : bool, default False
        Cut the slices at multiples of ``batch_size``: every batch of the shard is then a batch
        an unsharded run computes, so merged shards hold bit-identical features (batch
        composition changes some kernels' float rounding).
    overwrite : bool
        Replace an existing store (and discard an unfinished one).
    follow_links, allow_outside : bool
        Source options (:func:`~featpipe.data.sources.open_source`): follow symbolic links
        leaving their class folder; read manifest paths outside the manifest's folder.

    Examples
    --------
    >>> from featpipe.extract import extract
    >>> result = extract("data/clipart-mini", "clipart.h5", layers="full")   # doctest: +SKIP
    """
    spec = (spec or ExtractionSpec()).replace(**settings)
    _validate_run_options(batch_size=batch_size, workers=workers)
    image_set = source if isinstance(source, ImageSet) else open_source(
        source, follow_links=follow_links, allow_outside=allow_outside)
    index = np.arange(len(image_set), dtype=np.int64)
    whole_set = image_set
    if shard is not None:
        if align_shard and batch_size == "auto":
            raise UsageError("shards aligned to batches need a fixed `batch_size`, not auto")
        image_set, index = _shard(image_set, index, shard, batch_size if align_shard else 1)
    out = checked_output(out, overwrite=overwrite)
    partial = out.with_name(out.name + ".partial")
    with exclusive_lock(out):
        dev = resolve_device(device)
        spec = spec.replace(decode=resolve_decode(spec.decode, dev))
        batch = 1 if batch_size == "auto" else min(batch_size, max(1, len(index)))
        if spec.image_size is not None:  # before the backbone: it may run a pass at this size
            check_fits_memory(spec.image_size, batch, dev)
        backbone = create_backbone(spec.model, weights=spec.weights, pretrained=spec.pretrained,
                                   image_size=spec.image_size)
        image_size = backbone.preprocessing.image_size
        check_fits_memory(image_size, batch, dev)
        backbone.preprocessing = backbone.preprocessing.with_resize(
            spec.resize, crop_pct=spec.crop_pct, fill=spec.pad_color)
        capture = FeatureCapture(backbone, resolve_layers(backbone, spec.layers), pool=spec.pool,
                                 token_pool=spec.token_pool, force=spec.force,
                                 amp=AMP_DTYPES.get(spec.amp), channels_last=spec.channels_last,
                                 compile=spec.compile).to(dev)
        existing = None if overwrite else _partial_provenance(partial)
        if batch_size == "auto":  # a resumed run keeps its batches (aligned_batches)
            batch_size = (existing or {}).get("batch_size") or auto_batch_size(
                capture, image_size, dev, len(index))
        provenance = build_provenance(backbone, capture, spec, whole_set, index, dev)
        provenance["batch_size"] = batch_size
        resumed = _prepare_partial(partial, existing, provenance, image_set, index,
                                   capture.layer_dims, spec)
        started = time.perf_counter()
        n_computed = _run(partial, image_set, backbone, capture, dev, spec,
                          batch_size=batch_size, workers=workers, progress=progress)
        seconds = time.perf_counter() - started
        os.replace(partial, out)
    store = FeatureStore.open(out)
    return ExtractionResult(path=out, n_images=len(store.ok_rows), n_failed=len(store.failures),
                            n_computed=n_computed, seconds=seconds, resumed=resumed)


def _validate_run_options(*, batch_size, workers) -> None:
    if batch_size != "auto" and not _is_int_at_least(batch_size, 1):
        raise UsageError(f"`batch_size` must be an int >= 1 or auto, got {batch_size!r}")
    if workers is not None and not _is_int_at_least(workers, 0):
        raise UsageError(f"`workers` must be an int >= 0 or None, got {workers!r}")


def _is_int_at_least(value, low: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low


def _shard(image_set: ImageSet, index: np.ndarray, shard: tuple[int, int], unit: int = 1):
    """The k-th of n contiguous slices, its boundaries at multiples of ``unit`` rows."""
    k, n = shard
    if not (n >= 1 and 0 <= k < n):
        raise UsageError(f"`shard` must be K/N with 0 <= K < N, got {k}/{n}")
    units = -(-len(index) // unit)
    lo, hi = (min(len(index), unit * (units * j // n)) for j in (k, k + 1))
    if lo == hi:
        raise FeatpipeError(f"shard {k}/{n} of {len(index)} images is empty")
    return image_set.subset(range(lo, hi)), index[lo:hi]


def build_provenance(backbone: Backbone, capture: FeatureCapture, spec: ExtractionSpec,
                     image_set: ImageSet, index: np.ndarray, device: torch.device) -> dict:
    """Everything needed to reproduce (or refuse to mix) these features: the spec's recorded
    settings as resolved (backbone name, layers, image size) plus the derived values
    (:data:`featpipe.provenance.DERIVED`).

    ``image_set`` is the whole input, also for a shard: its fingerprint and size are the whole
    input's, and ``index`` (the shard's input indices) gives the shard's ``index_range``, so
    the shards of one extraction agree on everything but their range (what merging checks).
    """
    import timm
    import torchvision

    resolved = spec.replace(model=backbone.name, layers=tuple(capture.layer_dims),
                            image_size=backbone.preprocessing.image_size)
    return {
        **resolved.provenance_fields(),
        "weights": backbone.weights,
        "weights_sha256": backbone.weights_sha256,
        "preprocessing": backbone.preprocessing.to_dict(),
        "family": backbone.family,
        "layer_dims": dict(capture.layer_dims),
        "presets": {name: resolve_layers(backbone, name) for name in PRESETS},
        "input_fingerprint": image_set.fingerprint(),
        "index_range": [int(index[0]), int(index[-1]) + 1] if len(index) else [0, 0],
        "n_inputs": len(image_set),
        "source": {"kind": image_set.kind, "root": image_set.root},
        "device": str(device),
        "featpipe_version": __version__,
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "timm_version": timm.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _partial_provenance(partial: Path) -> dict | None:
    """The provenance of an unfinished store to resume; None when there is none to resume
    (absent, or unreadable because killed mid-write: starting over gives the same result)."""
    if not partial.exists():
        return None
    try:
        return FeatureStore.open(partial, allow_partial=True).provenance
    except FeatpipeError:
        return None


def _prepare_partial(partial: Path, existing: dict | None, provenance: dict,
                     image_set: ImageSet, index: np.ndarray, layer_dims: dict,
                     spec: ExtractionSpec) -> bool:
    """Create ``partial``, or keep it for resuming (``existing``: its provenance). Returns
    True when resuming."""
    if existing is not None:
        changed = resume_differences(existing, provenance)
        if changed:
            raise FeatpipeError(
                f"{partial} holds an unfinished extraction with different settings "
                f"({', '.join(changed)}); re-run with the same settings to resume it or "
                "pass `overwrite=True` to discard it")
        return True
    StoreWriter.create(
        partial, layer_dims=layer_dims, ids=image_set.ids, labels=image_set.label_indices(),
        class_names=image_set.class_names, splits=image_set.splits, index=index,
        provenance=provenance, dtype=spec.dtype, compression=spec.compression).close()
    return False


def aligned_batches(pending: np.ndarray, batch_size: int) -> list[list[int]]:
    """Group pending row positions by their fixed batch ``position // batch_size``."""
    if not len(pending):
        return []
    groups = pending // batch_size
    cuts = np.flatnonzero(np.diff(groups)) + 1
    return [chunk.tolist() for chunk in np.split(pending, cuts)]


#: Below this many cores, decoding runs in the main process: the forward pass already uses
#: every core, and a worker process only adds start-up, pickling and contention (measured on
#: 2 cores: extract ÷ bare forward 0.86-0.87 with no worker, 0.66-0.76 with one; a decoding
#: thread did no better, benchmarks/results/extract.md).
MIN_CORES_FOR_WORKERS = 4


def default_workers(n_batches: int, cores: int | None = None) -> int:
    """Decode processes for a job of ``n_batches``: none on a machine of few cores or for a job
    too small to repay their start-up; else one per spare core, at most 4.

    Examples
    --------
    >>> default_workers(100, cores=2), default_workers(100, cores=8), default_workers(2, cores=8)
    (0, 4, 0)
    """
    cores = cores or available_cores()
    if n_batches < 3 or cores < MIN_CORES_FOR_WORKERS:
        return 0
    return min(4, cores // 2)


def _run(partial: Path, image_set: ImageSet, backbone: Backbone, capture: FeatureCapture,
         dev: torch.device, spec: ExtractionSpec, *, batch_size: int, workers: int | None,
         progress: bool) -> int:
    """Decode and resize (uint8: in workers, or JPEGs batched on the GPU), normalise per batch
    on the device, capture, pool and down-cast there, copy to the host, write."""
    with contextlib.closing(StoreWriter.reopen(partial)) as writer:
        batches = aligned_batches(writer.pending_positions(), batch_size)
    n_workers = default_workers(len(batches)) if workers is None else workers
    preprocessing = backbone.preprocessing
    # The decoding workers start here, before the HDF5 file is opened: no handle crosses a fork.
    batch_iter = image_batches(image_set, preprocessing, batches, decode=spec.decode, device=dev,
                               workers=n_workers, max_pixels=spec.max_pixels)
    writer = StoreWriter.reopen(partial)
    n_computed = 0
    with _BackgroundWriter(writer) as background, _progress_bar(progress, batches) as bar:
        micro = [batch_size]
        for positions, images, failures in batch_iter:
            features = {}
            if images is not None:
                batch = preprocessing.normalize_batch(images)
                features = to_host(_forward_batch(capture, batch, micro),
                                   STORED_DTYPES[spec.dtype])
                positions, features, non_finite = drop_non_finite(positions, features,
                                                                  backbone.name)
                failures = list(failures) + non_finite
            background.put(positions, features, failures)
            n_computed += len(positions)
            bar.update(len(positions) + len(failures))
    writer.finish()
    return n_computed


def to_host(features: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, np.ndarray]:
    """Down-cast on the device, then copy to the host (from CUDA: into pinned memory, all layers
    queued without blocking, one wait at the end).

    Examples
    --------
    >>> to_host({"a": torch.ones(2, 3, dtype=torch.bfloat16)}, torch.float16)["a"].dtype
    dtype('float16')
    """
    cast = {name: values.to(dtype) for name, values in features.items()}
    if not any(values.is_cuda for values in cast.values()):
        return {name: values.numpy() for name, values in cast.items()}
    host = {name: torch.empty(values.shape, dtype=dtype, pin_memory=True)
            for name, values in cast.items()}
    for name, values in cast.items():
        host[name].copy_(values, non_blocking=True)
    # the stream of the features' own device (current_stream() alone is cuda:0's)
    torch.cuda.current_stream(next(iter(cast.values())).device).synchronize()
    return {name: values.numpy() for name, values in host.items()}


def drop_non_finite(positions: np.ndarray, features: dict, model: str):
    """Move the rows holding NaN or inf (in any layer, as stored) to the failures.

    Returns the finite rows' positions and features and ``(position, reason)`` failures. When
    every image of a batch of several is non-finite the backbone is at fault, not the images
    (weights holding a NaN, an overflow in float16), and the run stops.

    Examples
    --------
    >>> values = np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, np.inf]], dtype=np.float32)
    >>> kept, feats, failed = drop_non_finite(np.arange(3), {"bn2": values}, "m")
    >>> kept.tolist(), feats["bn2"].tolist(), failed
    ([0], [[1.0, 2.0]], [(1, 'non-finite activations (NaN/inf) in layer bn2'), (2, 'non-finite activations (NaN/inf) in layer bn2')])
    """
    first_bad_layer = np.full(len(positions), None, dtype=object)
    for name, values in reversed(list(features.items())):  # the earliest layer is named
        first_bad_layer[~np.isfinite(values).all(axis=1)] = name
    bad = first_bad_layer != None  # noqa: E711 (elementwise)
    if not bad.any():
        return positions, features, []
    if bad.all() and len(positions) > 1:
        raise FeatpipeError(
            f"backbone {model} produced non-finite activations (NaN/inf) for all "
            f"{len(positions)} images of a batch (first in layer {first_bad_layer[0]}); its "
            "weights are damaged or a float16 `dtype`/`amp` overflowed, not the images")
    failed = [(int(p), f"non-finite activations (NaN/inf) in layer {layer}")
              for p, layer in zip(positions[bad], first_bad_layer[bad])]
    return positions[~bad], {n: v[~bad] for n, v in features.items()}, failed


def _forward_batch(capture: FeatureCapture, images: torch.Tensor, micro: list[int]) -> dict:
    """Run ``capture`` on ``images``; on CUDA out-of-memory halve the micro-batch and retry.

    A compiled capture sees one batch shape only: a short chunk (the last batch) is padded with
    zeros to the micro-batch and its features trimmed (no recompilation for it).
    """
    while True:
        try:
            parts = [_static_forward(capture, chunk, micro[0])
                     for chunk in images.split(micro[0])]
            break
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if micro[0] == 1:
                raise FeatpipeError("out of GPU memory even with a batch of one image; use "
                                    "a smaller `image_size` or `device='cpu'`") from None
            micro[0] = max(1, micro[0] // 2)
    if len(parts) == 1:
        return parts[0]
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}



def _static_forward(capture: FeatureCapture, chunk: torch.Tensor, size: int) -> dict:
    n = len(chunk)
    if capture.compiled is None or n == size:
        return capture(chunk)
    padding = chunk.new_zeros((size - n, *chunk.shape[1:]))
    return {name: values[:n] for name, values in capture(torch.cat([chunk, padding])).items()}
