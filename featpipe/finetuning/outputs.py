"""What a finished fine-tuning run leaves in RUN_DIR, each file written atomically.

``model.safetensors``
    The best epoch's weights: the whole network, backbone and new classifier, as a state_dict
    (no pickle). It loads wherever a weights file does (``featpipe extract --weights``):
    :func:`featpipe.models.heads.fit_classifier_to` sizes the classifier to its classes.
``metrics.csv``
    One row per epoch (epoch 0: the initial head), rewritten after every epoch.
``curves.png``
    Loss and accuracy per epoch, training and validation.
``summary.json``
    Provenance and results; written last, so its presence marks a finished run.
``checkpoint.pt``
    Only while the run is unfinished (see :mod:`featpipe.finetuning.checkpoint`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from featpipe.fileio import atomic_write, json_default

WEIGHTS = "model.safetensors"
METRICS = "metrics.csv"
CURVES = "curves.png"
SUMMARY = "summary.json"
KIND = "featpipe-finetune"


def write_weights(path: Path, model: torch.nn.Module, metadata: dict[str, str]) -> Path:
    """The model's state_dict as safetensors (contiguous CPU copies), ``metadata`` in its header."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, save(state, metadata=metadata))


def write_metrics(path: Path, history: list[dict]) -> Path:
    """``history`` as CSV; columns in first-seen order (a sampler's extra values last)."""
    columns = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _cell(row.get(k, "")) for k in columns})
    return atomic_write(path, buffer.getvalue())


def _cell(value):
    return f"{value:.6g}" if isinstance(value, float) else value


def write_summary(path: Path, summary: dict) -> Path:
    return atomic_write(path, json.dumps(summary, indent=2, default=json_default) + "\n")


def read_summary(run_dir: Path) -> dict | None:
    """The summary of a finished run in ``run_dir`` (None when there is none)."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("kind") == KIND else None
