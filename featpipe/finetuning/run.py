"""`featpipe finetune`: a source and a RUN_DIR in, fine-tuned weights, metrics and a summary out.

Everything that can be refused (bad settings, an unlabelled source, a class too small for the
validation split, an unknown freeze layer, a RUN_DIR that is not a resumable run of the same
settings) is refused before anything is written. Re-running the same call after a crash
resumes from the last finished epoch.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
from dataclasses import dataclass
from pathlib import Path

from featpipe import __version__
from featpipe.data.imageset import ImageSet
from featpipe.data.sources import open_source
from featpipe.errors import FeatpipeError
from featpipe.fileio import exclusive_lock
from featpipe.finetuning.checkpoint import CHECKPOINT
from featpipe.finetuning.data import split_train_val
from featpipe.finetuning.loop import TrainResult, train
from featpipe.finetuning.outputs import (CURVES, KIND, METRICS, SUMMARY, WEIGHTS, read_summary,
                                       write_metrics, write_summary, write_weights)
from featpipe.finetuning.spec import FinetuneSpec
from featpipe.models.weights import file_sha256

RUN_FILES = (CHECKPOINT, WEIGHTS, METRICS, CURVES, SUMMARY)


@dataclass
class FinetuneOutcome:
    """What :func:`finetune` did: the run directory, its summary and the training result."""

    run_dir: Path
    summary: dict
    result: TrainResult

    def summary_line(self) -> str:
        s = self.summary
        resumed = " (resumed)" if s["resumed"] else ""
        return (f"wrote {self.run_dir}: best epoch {s['best_epoch']} of {s['epochs_run']}, "
                f"validation accuracy {s['best_val_accuracy']:.4f}{resumed}")


def finetune(source: str | os.PathLike | ImageSet, out: str | os.PathLike,
             spec: FinetuneSpec | None = None, *, features=None, overwrite: bool = False,
             train_sampler=None, sampler_settings: dict | None = None, device: str = "auto",
             workers: int | None = None, progress: bool = False, log=None,
             follow_links: bool = False, allow_outside: bool = False,
             **settings) -> FinetuneOutcome:
    """Fine-tune a backbone with a new head on a labelled source; write the run to ``out``.

    Parameters
    ----------
    source : path or ImageSet
        Labelled images: a class-per-folder directory, a CSV manifest (rows of a ``test`` split
        are left out), an IDX file, or an ImageSet.
    out : path
        RUN_DIR: created; an unfinished run with the same settings is resumed.
    spec : FinetuneSpec, optional
    **settings
        Changes to ``spec`` by field name, e.g. ``freeze=3, epochs=5``.
    features : path, optional
        A feature store for LP-FT's probe (``head_init="probe"``).
    overwrite : bool
        Replace the featpipe files of an existing RUN_DIR.
    train_sampler, device, workers, progress, log
        See :func:`featpipe.finetuning.loop.train`.
    follow_links, allow_outside : bool
        How a path ``source`` is opened (:func:`featpipe.data.sources.open_source`).
    sampler_settings : dict, optional
        JSON values that define ``train_sampler`` (e.g. a curriculum's scoring and pacing);
        recorded with the run's settings, so that a resumed run must use the same sampler.

    Examples
    --------
    >>> import featpipe
    >>> outcome = featpipe.finetuning("data/clipart-mini", "run/", freeze="all",
    ...                             epochs=3, image_size=96)              # doctest: +SKIP
    """
    spec = (spec or FinetuneSpec()).replace(**settings)
    image_set = source if isinstance(source, ImageSet) else open_source(
        source, follow_links=follow_links, allow_outside=allow_outside)
    train_set, val_set = split_train_val(image_set, spec.val_split, spec.seed)
    class_names = sorted(set(train_set.labels) | set(val_set.labels))
    run_dir = _prepare_run_dir(Path(out), overwrite)
    settings_record = {"spec": spec.describe(), "data_fingerprint": image_set.fingerprint(),
                       "class_names": class_names, "sampler": sampler_settings or {}}
    started = time.perf_counter()
    with exclusive_lock(run_dir), _removed_if_empty_on_error(run_dir):
        result = train(spec, train_set, val_set, class_names=class_names, features=features,
                       train_sampler=train_sampler, checkpoint=run_dir / CHECKPOINT,
                       settings=settings_record, device=device, workers=workers,
                       progress=progress, log=log,
                       on_epoch=lambda history: write_metrics(run_dir / METRICS, history))
        summary = _finish(run_dir, spec, result, image_set, train_set, val_set,
                          time.perf_counter() - started)
    return FinetuneOutcome(run_dir, summary, result)


def _prepare_run_dir(run_dir: Path, overwrite: bool) -> Path:
    """Refuse a RUN_DIR that is neither new, nor an unfinished run, nor to be overwritten."""
    if run_dir.exists() and not run_dir.is_dir():
        raise FeatpipeError(f"{run_dir} is a file; give a directory for the run")
    if not run_dir.parent.is_dir():
        raise FeatpipeError(f"output folder {run_dir.parent} does not exist")
    if run_dir.is_dir() and overwrite:
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    elif run_dir.is_dir():
        if read_summary(run_dir) is not None:
            raise FeatpipeError(f"{run_dir} holds a finished fine-tuning run; pass "
                                "`overwrite=True` to replace it")
        if not (run_dir / CHECKPOINT).exists() and any(run_dir.iterdir()):
            raise FeatpipeError(f"{run_dir} exists and is not a fine-tuning run; choose a new "
                                "directory or pass `overwrite=True`")
    return run_dir


@contextlib.contextmanager
def _removed_if_empty_on_error(run_dir: Path):
    """Create ``run_dir``; if the run fails before writing anything, leave no trace of it."""
    created = not run_dir.exists()
    run_dir.mkdir(exist_ok=True)
    try:
        yield
    except BaseException:
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise


def _finish(run_dir: Path, spec: FinetuneSpec, result: TrainResult, image_set: ImageSet,
            train_set: ImageSet, val_set: ImageSet, seconds: float) -> dict:
    from featpipe.report.plots import training_curves

    backbone = result.tuning.backbone
    write_metrics(run_dir / METRICS, result.history)
    training_curves(result.history, run_dir / CURVES)
    weights = write_weights(run_dir / WEIGHTS, result.tuning.model, {
        "format": KIND, "backbone": backbone.name, "classifier": result.tuning.classifier,
        "n_classes": str(len(result.class_names))})
    summary = {
        "kind": KIND, "featpipe_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "base": {"model": backbone.name, "weights": backbone.weights,
                 "weights_sha256": backbone.weights_sha256},
        "weights_file": WEIGHTS, "weights_sha256": file_sha256(weights),
        "settings": spec.describe(), "preprocessing": backbone.preprocessing.to_dict(),
        "classifier": result.tuning.classifier, "class_names": result.class_names,
        "stages": {"ends": list(result.tuning.plan.ends),
                   "sizes": [len(s) for s in result.tuning.plan.stages]},
        "data": {"source": {"kind": image_set.kind, "root": image_set.root},
                 "fingerprint": image_set.fingerprint(), "n_train": len(train_set),
                 "n_val": len(val_set), "train_fingerprint": train_set.fingerprint(),
                 "val_fingerprint": val_set.fingerprint(),
                 "failures": [list(f) for f in result.failures]},
        "param_groups": result.param_groups, "probe": result.probe,
        "best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy,
        "epochs_run": result.history[-1]["epoch"], "stopped_early": result.stopped_early,
        "resumed": result.resumed, "device": result.device, "seconds": seconds,
    }
    write_summary(run_dir / SUMMARY, summary)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    return summary
