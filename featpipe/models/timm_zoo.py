"""The ``timm:<name>`` scheme: any timm model with its pretrained config's preprocessing."""

from __future__ import annotations

import functools

import torch

from featpipe.models.backbone import Backbone
from featpipe.models.preprocessing import INTERPOLATIONS, Preprocessing, _resize_for
from featpipe.models.registry import register_backbone
from featpipe.models.weights import build_model


@functools.cache
def _timm_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


@register_backbone("timm", summary="any timm model", architectures=_timm_names)
def _create_timm(name: str, pretrained: bool, image_size: int | None) -> Backbone:
    kwargs = {}
    if image_size is not None and _timm_fixed_input_size(name):
        kwargs["img_size"] = int(image_size)
    model = build_model(f"timm:{name}", pretrained,
                        lambda: _timm_create(name, pretrained=True, **kwargs),
                        lambda: _timm_create(name, pretrained=False, **kwargs))
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    tag = cfg.get("hf_hub_id") or cfg.get("tag") or name
    return Backbone(
        name=f"timm:{name}",
        model=model,
        preprocessing=_timm_preprocessing(model),
        weights=f"timm:{tag}" if pretrained else "random-init",
        weights_sha256=None,
        family="timm",
    )


def _timm_create(name: str, pretrained: bool, **kwargs) -> torch.nn.Module:
    import timm

    return timm.create_model(name, pretrained=pretrained, **kwargs)


def _timm_fixed_input_size(name: str) -> bool:
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    return bool(cfg is not None and cfg.fixed_input_size)


def _timm_preprocessing(model: torch.nn.Module) -> Preprocessing:
    import timm.data

    cfg = timm.data.resolve_model_data_config(model)
    image_size = int(cfg["input_size"][-1])
    interpolation = cfg["interpolation"] if cfg["interpolation"] in INTERPOLATIONS else "bicubic"
    return Preprocessing(
        image_size=image_size,
        resize_size=_resize_for(image_size, float(cfg["crop_pct"])),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        interpolation=interpolation,
    )

