"""Weights files: strict, code-free loading (``weights_only``, safetensors), sha256 digests, and
deterministic random initialisation.
"""

from __future__ import annotations

import functools
import hashlib
import os
import urllib.error
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from featpipe.errors import FeatpipeError
from featpipe.models.heads import fit_classifier_to

RANDOM_INIT_SEED = 0


def seeded_create(factory, *args, **kwargs) -> torch.nn.Module:
    """Call ``factory`` with a fixed seed, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return factory(*args, **kwargs)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, cached per (path, size, mtime) for the life of the process."""
    stat = os.stat(path)
    return _cached_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FeatpipeError(f"weights file {path} does not exist; pass the path of a .pth/.pt/.safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files raise many different types
        raise FeatpipeError(
            f"cannot read weights file {path} ({type(exc).__name__}); expected a state_dict saved "
            "with torch.save or safetensors"
        ) from None
    return _unwrap_state_dict(state, path)


def _unwrap_state_dict(state: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise FeatpipeError(f"weights file {path} does not hold a state_dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return dict(state)


def load_weights_file(model: torch.nn.Module, path: Path) -> str:
    """Strictly load a state_dict file into ``model``; return the file's sha256.

    A file whose classifier has another number of classes (a ``featpipe finetune`` run's
    weights) gets a classifier of that size first; every other tensor must match.
    """
    state = _read_state_dict(path)
    fit_classifier_to(model, state)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise FeatpipeError(
            f"weights file {path} does not match the model: missing keys {missing[:3]}, "
            f"unexpected keys {unexpected[:3]} ({len(missing)} missing, {len(unexpected)} unexpected)"
        )
    mismatched = [k for k, v in state.items() if v.shape != expected[k].shape]
    if mismatched:
        k = mismatched[0]
        raise FeatpipeError(
            f"weights file {path} does not match the model: {k!r} has shape {tuple(state[k].shape)}, "
            f"expected {tuple(expected[k].shape)} ({len(mismatched)} tensors differ)"
        )
    model.load_state_dict(state, strict=True)
    return file_sha256(path)


#: What a failed download of pretrained weights raises (offline, proxy, corrupt cache).
DOWNLOAD_ERRORS = (urllib.error.URLError, OSError, RuntimeError)


def build_model(backbone_name: str, pretrained: bool, download: Callable[[], torch.nn.Module],
                random_init: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``download()`` the pretrained model, or ``random_init()`` it with the fixed seed.

    A failed download becomes one line that says what to do offline.
    """
    if not pretrained:
        return seeded_create(random_init)
    try:
        return download()
    except DOWNLOAD_ERRORS as exc:
        raise FeatpipeError(
            f"could not download pretrained weights for {backbone_name} (no internet?); pass "
            f"`weights=PATH` or use random init `pretrained=False` ({type(exc).__name__})"
        ) from None
