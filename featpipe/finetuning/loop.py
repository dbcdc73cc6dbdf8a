"""The training loop: epochs over decoded images, validation, early stopping, checkpoints.

:func:`train` is the Python entry the command line, the benchmarks and other training schemes
(curricula) share: give it a :class:`~featpipe.finetuning.spec.FinetuneSpec`, a training and a
validation :class:`~featpipe.data.imageset.ImageSet`, optionally a ``train_sampler`` that
decides the order (and subset) of training images in each epoch, and a checkpoint path to make
the run resumable.

Determinism: each epoch reseeds torch's RNG from ``(seed, epoch)`` before shuffling and
augmenting, and a checkpoint restores every state at an epoch boundary, so on CPU a resumed
run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from featpipe.data.imageset import ImageSet
from featpipe.errors import FeatpipeError
from featpipe.finetuning.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from featpipe.finetuning.data import Crops, augment_batch, augmenter, decode_crops
from featpipe.finetuning.model import (TuningModel, WarmupCosine, apply_freezing,
                                     build_optimizer, build_tuning_model, describe_groups,
                                     set_train_mode, sync_optimizer)
from featpipe.finetuning.spec import FinetuneSpec
from featpipe.models.device import resolve_device

METRIC_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                  "trained_stages", "steps", "images_per_second", "seconds")
#: ``train_sampler``: a Sampler over training positions, or ``factory(labels, seed)``.
SamplerFactory = Callable[[np.ndarray, int], torch.utils.data.Sampler]


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes
    ----------
    tuning : TuningModel
        ``tuning.model`` holds the best epoch's weights (in eval mode, on ``device``).
    class_names : list of str
    history : list of dict
        One row per epoch (:data:`METRIC_COLUMNS`, plus the sampler's ``log_state()``); epoch 0
        is the initial head before any step.
    best_epoch : int
    best_val_accuracy : float
    param_groups : list of dict
        Name, peak learning rate, weight decay and size of each optimizer group at the end.
    probe : dict or None
        LP-FT's probe: feature source, chosen C, CV accuracy, and ``agreement``, the fraction
        of validation images the initial head and the probe classify alike (1.0 expected).
    failures : list of (str, str)
        Images that could not be decoded: (id, reason).
    stopped_early : bool
    resumed : bool
    device : str
    """

    tuning: TuningModel
    class_names: list
    history: list
    best_epoch: int
    best_val_accuracy: float
    param_groups: list
    probe: dict | None
    failures: list = field(default_factory=list)
    stopped_early: bool = False
    resumed: bool = False
    device: str = "cpu"


def train(spec: FinetuneSpec, train_set: ImageSet, val_set: ImageSet, *,
          class_names: list[str] | None = None, features=None,
          train_sampler: torch.utils.data.Sampler | SamplerFactory | None = None,
          checkpoint: str | Path | None = None, settings: dict | None = None,
          on_epoch: Callable[[list], None] | None = None, device: str = "auto",
          workers: int | None = None, progress: bool = False,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Fine-tune ``spec``'s backbone with a new head on ``train_set``, choosing the epoch by
    accuracy on ``val_set``.

    Parameters
    ----------
    spec : FinetuneSpec
    train_set, val_set : ImageSet
        Labelled images.
    class_names : list of str, optional
        The head's classes, in order (default: the sorted labels of both sets).
    features : path, optional
        A feature store to fit LP-FT's probe on (used when its provenance matches).
    train_sampler : Sampler or callable, optional
        The training order: a ``torch.utils.data.Sampler`` over positions ``0..n_train-1`` of
        the decoded training images, or ``factory(train_labels, seed) -> Sampler``. Default: a
        fresh random permutation each epoch. If it has ``set_epoch(epoch)``, that is called at
        the start of each epoch (1-based); if it has ``log_state() -> dict``, its values join
        that epoch's metrics row. An epoch takes ``ceil(len(sampler) / batch_size)`` steps.
    checkpoint : path, optional
        Written atomically after every epoch; when it exists, training resumes from it (its
        ``settings`` must equal ``settings``).
    settings : dict, optional
        What a checkpoint must have been made with to be resumed (default: ``spec.describe()``).
    on_epoch : callable, optional
        Called with the metrics history after each epoch (e.g. to write a CSV).
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    workers : int, optional
        Decoding processes (default: chosen from the cores).
    progress : bool
        A progress bar per epoch on stderr (loss, accuracy, images/s).
    log : callable, optional
        Receives one-line messages (the parameter groups, the probe).

    Returns
    -------
    TrainResult
    """
    log = log or (lambda message: None)
    class_names = class_names or sorted(set(train_set.labels or []) | set(val_set.labels or []))
    dev = resolve_device(device)
    tuning = build_tuning_model(spec, len(class_names))
    prep = tuning.backbone.preprocessing
    train_crops = decode_crops(train_set, prep, class_names, workers=workers)
    val_crops = decode_crops(val_set, prep, class_names, workers=workers)
    _check_crops(train_crops, val_crops, class_names)
    model = tuning.model.to(dev)
    if dev.type == "cuda" and spec.channels_last:
        model.to(memory_format=torch.channels_last)
    run = _Run(spec, tuning, dev, prep, val_crops)
    saved = _load_if_present(checkpoint, settings or spec.describe())
    probe = saved["probe"] if saved else _init_head(spec, tuning, run, train_crops, train_set,
                                                    features, class_names, log)
    optimizer = build_optimizer(tuning, spec)
    sampler = _sampler(train_sampler, train_crops, spec.seed)
    steps = math.ceil(len(sampler) / spec.batch_size)
    scheduler = WarmupCosine(optimizer, round(spec.warmup_epochs * steps), spec.epochs * steps)
    state = run.initial_state() if saved is None else run.restore(saved, optimizer, scheduler)
    log("parameter groups: " + "; ".join(f"{g['name']} lr={g['lr']:g} wd={g['weight_decay']:g} "
                                         f"({g['n_params']} params)"
                                         for g in describe_groups(optimizer)))
    for epoch in range(state["epoch"] + 1, spec.epochs + 1):
        if state["stopped"]:
            break
        frozen = tuning.frozen_at(epoch - 1, spec.unfreeze_every)
        apply_freezing(model, frozen)
        sync_optimizer(optimizer, tuning, spec, frozen)
        row = run.epoch(epoch, train_crops, sampler, optimizer, scheduler, frozen, progress)
        state = run.record(state, row, epoch)
        if checkpoint is not None:
            save_checkpoint(Path(checkpoint), run.checkpoint_state(
                state, optimizer, scheduler, settings or spec.describe(), probe))
        if on_epoch is not None:
            on_epoch(state["history"])
    model.load_state_dict(state["best_weights"])
    model.eval()
    return TrainResult(tuning, list(class_names), state["history"], state["best_epoch"],
                       state["best_accuracy"], describe_groups(optimizer), probe,
                       failures=[(train_set.ids[i], r) for i, r in train_crops.failures]
                       + [(val_set.ids[i], r) for i, r in val_crops.failures],
                       stopped_early=state["stopped"], resumed=saved is not None,
                       device=str(dev))


def _check_crops(train: Crops, val: Crops, class_names: list[str]) -> None:
    if not len(val):
        raise FeatpipeError("the validation split has no images that decode")
    counts = np.bincount(train.labels.numpy(), minlength=len(class_names))
    empty = [name for name, n in zip(class_names, counts) if n == 0]
    if empty:
        raise FeatpipeError(f"class {empty[0]!r} has no training image that decodes; every "
                            "class needs at least one")


def _load_if_present(checkpoint, settings: dict) -> dict | None:
    from featpipe.finetuning.checkpoint import settings_differences

    if checkpoint is None or not Path(checkpoint).exists():
        return None
    saved = load_checkpoint(Path(checkpoint))
    changed = settings_differences(saved["settings"], settings)
    if changed:
        raise FeatpipeError(f"{checkpoint} belongs to a run with other settings "
                            f"({', '.join(changed)}); re-run with the same settings to resume "
                            "or pass `overwrite=True`")
    return saved


def _sampler(train_sampler, crops: Crops, seed: int):
    if train_sampler is None:
        return _Shuffle(len(crops), seed)
    if isinstance(train_sampler, torch.utils.data.Sampler):
        return train_sampler
    return train_sampler(crops.labels.numpy().copy(), seed)


class _Shuffle(torch.utils.data.Sampler):
    """A new random permutation each epoch, from ``(seed, epoch)`` only."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=generator).tolist())


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2 ** 63)


def _init_head(spec, tuning, run, crops, train_set, features, class_names, log) -> dict | None:
    if spec.head_init != "probe":
        return None
    from featpipe.finetuning.head import (classifier_inputs, fit_probe, probe_as_linear,
                                        store_features)

    model, head = tuning.model, tuning.classifier
    X, source = None, "extracted"
    if features is not None:
        try:
            X = store_features(features, run.feature_provenance(),
                               [train_set.ids[i] for i in crops.positions])
            source = str(features)
        except FeatpipeError as exc:  # another kind of features: compute the right ones
            log(f"not using {features} for the probe ({exc}); computing the features")
    if X is None:
        X = classifier_inputs(model, head, crops.images, run.normalize)
    probe = fit_probe(X, crops.labels.numpy(), class_names, spec.seed, source)
    probe_as_linear(probe, model.get_submodule(head))
    val_features = classifier_inputs(model, head, run.val.images, run.normalize)
    predicted = torch.from_numpy(np.asarray(probe.pipeline.predict(val_features)))
    agreement = float((run.predict(run.val.images) == predicted).float().mean())
    log(f"probe head from {source} features: C={probe.best_params.get('clf__C'):g}, "
        f"head agrees with the probe on {agreement:.1%} of the validation images")
    return {"source": source, "best_params": probe.best_params,
            "cv_accuracy": probe.cv_accuracy, "agreement": agreement}


class _Run:
    """The per-run state of :func:`train` that its epochs share."""

    def __init__(self, spec: FinetuneSpec, tuning: TuningModel, dev, prep, val: Crops):
        self.spec, self.tuning, self.dev, self.prep, self.val = spec, tuning, dev, prep, val
        self.model = tuning.model
        self.loss = nn.CrossEntropyLoss(label_smoothing=spec.label_smoothing)
        self.amp = _amp_dtype(spec.amp, dev)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        self.augment = augmenter(prep.image_size, spec.augment)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        x = self.prep.normalize_batch(images, device=self.dev)
        if self.dev.type == "cuda" and self.spec.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.dev.type, dtype=self.amp)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.model(self.normalize(images)).float()

    def evaluate(self, crops: Crops) -> tuple[float, float]:
        """Loss and accuracy on ``crops`` in eval mode."""
        was_training = self.model.training
        self.model.eval()
        total, correct, n = 0.0, 0, 0
        with torch.inference_mode():
            for images, labels in zip(crops.images.split(64), crops.labels.split(64)):
                logits, labels = self.logits(images), labels.to(self.dev)
                total += float(self.loss(logits, labels)) * len(labels)
                correct += int((logits.argmax(1) == labels).sum())
                n += len(labels)
        self.model.train(was_training)
        return total / n, correct / n

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        with torch.inference_mode():
            return torch.cat([self.logits(chunk).argmax(1).cpu() for chunk in images.split(64)])

    def feature_provenance(self) -> dict:
        backbone, name = self.tuning.backbone, self.tuning.classifier
        last = self.tuning.plan.last
        dim = self.model.get_submodule(name).in_features
        return {"model": backbone.name, "pool": "mean", "token_pool": "cls",
                "resize": self.spec.resize, "weights_sha256": backbone.weights_sha256,
                "preprocessing": self.prep.to_dict(), "layers": [last],
                "layer_dims": {last: dim}}

    def initial_state(self) -> dict:
        val_loss, val_accuracy = self.evaluate(self.val)
        row = {"epoch": 0, "train_loss": float("nan"), "train_accuracy": float("nan"),
               "val_loss": val_loss, "val_accuracy": val_accuracy, "lr": 0.0,
               "trained_stages": "", "steps": 0, "images_per_second": float("nan"),
               "seconds": 0.0}
        return {"epoch": 0, "history": [row], "best_epoch": 0, "best_accuracy": val_accuracy,
                "best_weights": _copy_state(self.model), "bad_epochs": 0, "stopped": False}

    def restore(self, saved: dict, optimizer, scheduler) -> dict:
        self.model.load_state_dict(saved["model"])
        last_epoch = saved["epoch"]
        sync_optimizer(optimizer, self.tuning, self.spec,
                       self.tuning.frozen_at(max(0, last_epoch - 1), self.spec.unfreeze_every))
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if self.scaler is not None and saved.get("grad_scaler"):
            self.scaler.load_state_dict(saved["grad_scaler"])
        restore_rng(saved["rng"])
        return {key: saved[key] for key in ("epoch", "history", "best_epoch", "best_accuracy",
                                            "best_weights", "bad_epochs", "stopped")}

    def epoch(self, epoch, crops: Crops, sampler, optimizer, scheduler, frozen,
              progress: bool) -> dict:
        from tqdm.auto import tqdm

        set_train_mode(self.model, frozen)
        torch.manual_seed(_epoch_seed(self.spec.seed, epoch))
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        order = torch.as_tensor(list(sampler), dtype=torch.int64)
        started, total, correct, n, steps = time.perf_counter(), 0.0, 0, 0, 0
        with tqdm(total=len(order), unit="img", disable=not progress, dynamic_ncols=True,
                  desc=f"epoch {epoch}/{self.spec.epochs}") as bar:
            for batch in order.split(self.spec.batch_size):
                loss, hits = self._step(crops.images[batch], crops.labels[batch], optimizer,
                                        scheduler)
                total, correct, n = total + loss * len(batch), correct + hits, n + len(batch)
                steps += 1
                rate = n / max(time.perf_counter() - started, 1e-9)
                bar.update(len(batch))
                bar.set_postfix(loss=f"{total / n:.3f}", acc=f"{correct / n:.3f}",
                                img_s=f"{rate:.1f}")
        seconds = time.perf_counter() - started
        val_loss, val_accuracy = self.evaluate(self.val)
        trained = [k for k, stage in enumerate(self.tuning.plan.stages) if set(stage) - frozen]
        row = {"epoch": epoch, "train_loss": total / max(n, 1),
               "train_accuracy": correct / max(n, 1), "val_loss": val_loss,
               "val_accuracy": val_accuracy, "lr": optimizer.param_groups[0]["lr"],
               "trained_stages": " ".join(map(str, trained)), "steps": steps,
               "images_per_second": n / max(seconds, 1e-9), "seconds": seconds}
        if hasattr(sampler, "log_state"):
            row.update({k: float(v) for k, v in sampler.log_state().items()})
        return row

    def _step(self, images, labels, optimizer, scheduler) -> tuple[float, int]:
        images = augment_batch(images, self.augment)
        labels = labels.to(self.dev)
        scheduler.apply()
        optimizer.zero_grad(set_to_none=True)
        logits = self.logits(images)
        loss = self.loss(logits, labels)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        return float(loss.detach()), int((logits.argmax(1) == labels).sum())

    def record(self, state: dict, row: dict, epoch: int) -> dict:
        state = {**state, "epoch": epoch, "history": [*state["history"], row]}
        if row["val_accuracy"] > state["best_accuracy"]:
            state.update(best_epoch=epoch, best_accuracy=row["val_accuracy"],
                         best_weights=_copy_state(self.model), bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        patience = self.spec.patience
        state["stopped"] = patience is not None and state["bad_epochs"] >= patience
        return state

    def checkpoint_state(self, state, optimizer, scheduler, settings, probe) -> dict:
        return {**state, "settings": settings, "model": self.model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "probe": probe}


def _copy_state(model: nn.Module) -> dict:
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}


def _amp_dtype(amp: str, dev: torch.device):
    """Autocast dtype on CUDA (auto: bf16 where supported, else fp16); None on CPU."""
    if dev.type != "cuda" or amp == "none":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
