"""Pretrained backbones: a registry that builds them by name with their weights and preprocessing,
their layers and presets, and the one-pass capture of many layers' pooled activations."""

# The families register themselves on import, in this order (the order `list_backbones` shows).
from featpipe.models import embedded  # noqa: F401  # isort: skip
from featpipe.models import torchvision_zoo  # noqa: F401  # isort: skip
from featpipe.models import timm_zoo  # noqa: F401  # isort: skip
from featpipe.models.backbone import Backbone
from featpipe.models.registry import (
    DEFAULT_BACKBONE,
    create_backbone,
    list_backbones,
    register_backbone,
)

__all__ = ["DEFAULT_BACKBONE", "Backbone", "create_backbone", "list_backbones",
           "register_backbone"]
