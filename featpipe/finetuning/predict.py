"""Classify images with a fine-tuned network: a finished RUN_DIR, or a model in memory.

A run directory is a model for `featpipe predict` and `featpipe evaluate`: its summary names the
backbone, the preprocessing and the classes; its weights load through the ordinary weights-file
path (safetensors, strict, sha256-checked against the summary).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from featpipe.data.imageset import ImageSet
from featpipe.data.loading import DecodedImages, collate_decoded
from featpipe.errors import FeatpipeError
from featpipe.finetuning.outputs import WEIGHTS, read_summary
from featpipe.models import Backbone, create_backbone
from featpipe.models.device import resolve_device
from featpipe.models.preprocessing import Preprocessing


@dataclass
class Classified:
    """Class probabilities of the inputs that decoded, and the failures of the others."""

    positions: np.ndarray
    proba: np.ndarray
    failures: list
    seconds: float

    @property
    def predicted(self) -> np.ndarray:
        return self.proba.argmax(axis=1) if len(self.proba) else np.empty(0, np.int64)


def is_run_dir(path) -> bool:
    """True for a directory holding a finished fine-tuning run."""
    return Path(path).is_dir() and read_summary(Path(path)) is not None


def load_run(run_dir) -> tuple[Backbone, dict]:
    """The fine-tuned network of a finished run (eval mode) and its summary."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if summary is None:
        raise FeatpipeError(f"{run_dir} is not a finished fine-tuning run (no summary.json)")
    settings = summary["settings"]
    backbone = create_backbone(settings["model"], weights=run_dir / WEIGHTS,
                               image_size=summary["preprocessing"]["image_size"])
    if backbone.weights_sha256 != summary["weights_sha256"]:
        raise FeatpipeError(f"{run_dir / WEIGHTS} is not the file this run wrote (sha256 differs)")
    backbone.preprocessing = Preprocessing.from_dict(summary["preprocessing"])
    return backbone, summary


def classify(model: torch.nn.Module, preprocessing: Preprocessing, image_set: ImageSet, *,
             batch_size: int = 32, device: str = "auto", workers: int = 0) -> Classified:
    """Softmax probabilities of ``model`` for every input of ``image_set`` that decodes."""
    dev = resolve_device(device)
    model = model.to(dev).eval()
    loader = DataLoader(DecodedImages(image_set, preprocessing.resize_crop,
                                      size_hint=preprocessing.resize_size),
                        batch_size=batch_size, num_workers=workers, collate_fn=collate_decoded)
    positions, proba, failures = [], [], []
    started = time.perf_counter()
    with torch.inference_mode():
        for ok, images, failed in loader:
            failures += failed
            if images is not None:
                logits = model(preprocessing.normalize_batch(images, device=dev)).float()
                proba.append(torch.softmax(logits, dim=1).cpu().numpy())
                positions.append(ok)
    seconds = time.perf_counter() - started
    n_classes = int(proba[0].shape[1]) if proba else 0
    return Classified(np.concatenate(positions) if positions else np.empty(0, np.int64),
                      np.concatenate(proba) if proba else np.empty((0, n_classes), np.float32),
                      failures, seconds)


def predict_run(run_dir, image_set: ImageSet, *, batch_size: int = 32,
                device: str = "auto") -> dict:
    """`featpipe predict` with a run directory: rows like the classical models' predictions."""
    backbone, summary = load_run(run_dir)
    classes = list(summary["class_names"])
    result = classify(backbone.model, backbone.preprocessing, image_set,
                      batch_size=batch_size, device=device)
    rows = {}
    for position, p in zip(result.positions.tolist(), result.proba):
        rows[position] = {"id": image_set.ids[position], "prediction": classes[int(p.argmax())],
                          **{f"p_{c}": f"{v:.6f}" for c, v in zip(classes, p)}}
    for position, reason in result.failures:
        rows[position] = {"id": image_set.ids[position], "prediction": "", "error": reason}
    return {"rows": [rows[i] for i in sorted(rows)], "proba_classes": classes,
            "predict_seconds": result.seconds}


def evaluate_run(run_dir, image_set: ImageSet, *, batch_size: int = 32,
                 device: str = "auto") -> dict:
    """`featpipe evaluate` with a run directory: metrics on labelled images."""
    from featpipe.finetuning.data import labels_of
    from featpipe.report.metrics import score_predictions

    if image_set.labels is None:
        raise FeatpipeError("the images to evaluate have no labels")
    backbone, summary = load_run(run_dir)
    classes = list(summary["class_names"])
    unknown = sorted(set(image_set.labels) - set(classes))
    if unknown:
        raise FeatpipeError(f"classes {', '.join(unknown)} are not among the model's classes "
                            f"({', '.join(classes)})")
    result = classify(backbone.model, backbone.preprocessing, image_set,
                      batch_size=batch_size, device=device)
    if not len(result.positions):
        raise FeatpipeError("none of the images to evaluate could be decoded")
    y = labels_of(image_set, classes)[result.positions]
    evaluation = score_predictions(y, result.predicted, classes, result.seconds)
    evaluation["n_samples"] = int(len(y))
    evaluation["n_failed"] = len(result.failures)
    return evaluation
