"""The ``torchvision:<name>`` scheme: any torchvision classifier with its weight enum's transforms."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from featpipe.errors import FeatpipeError
from featpipe.models.backbone import Backbone
from featpipe.models.preprocessing import Preprocessing
from featpipe.models.registry import register_backbone
from featpipe.models.weights import build_model, file_sha256


@functools.cache
def _torchvision_names() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


@register_backbone("torchvision", summary="any torchvision.models classifier",
                   architectures=_torchvision_names)
def _create_torchvision(name: str, pretrained: bool, image_size: int | None) -> Backbone:
    import torchvision

    default_weights = _torchvision_default_weights(name)
    kwargs = {}
    if image_size is not None and name.startswith(("vit_", "swin_", "maxvit_")):
        kwargs["image_size"] = int(image_size)  # fixed-size architectures build for one size
    if pretrained and default_weights is None:
        raise FeatpipeError(
            f"torchvision has no pretrained weights for {name}; pass `pretrained=False` or `weights=PATH`"
        )
    try:
        model = build_model(
            f"torchvision:{name}", pretrained,
            lambda: torchvision.models.get_model(name, weights=default_weights, **kwargs),
            lambda: torchvision.models.get_model(name, weights=None, **kwargs))
    except (TypeError, ValueError) as exc:
        raise FeatpipeError(f"cannot build torchvision:{name} with {kwargs}: {exc}") from None
    return Backbone(
        name=f"torchvision:{name}",
        model=model,
        preprocessing=_torchvision_preprocessing(default_weights),
        weights=f"torchvision:{default_weights}" if pretrained else "random-init",
        weights_sha256=_torchvision_cached_sha256(default_weights) if pretrained else None,
        family="torchvision",
    )


def _torchvision_default_weights(name: str):
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _torchvision_preprocessing(weights) -> Preprocessing:
    """Preprocessing from the weight enum's transforms (ImageNet defaults when there is none)."""
    transform = weights.transforms() if weights is not None else None
    if transform is None or not hasattr(transform, "crop_size"):
        return Preprocessing(224, 256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")
    return Preprocessing(
        image_size=int(transform.crop_size[0]),
        resize_size=int(transform.resize_size[0]),
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        interpolation=transform.interpolation.value,
    )


def _torchvision_cached_sha256(weights) -> str | None:
    filename = os.path.basename(weights.url)
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return file_sha256(path) if path.is_file() else None

