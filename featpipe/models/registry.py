"""The backbone registry: families register a factory under a name, ``create_backbone`` builds by name.

A name is either a registered backbone (``efficientnet_lite0``) or ``<scheme>:<architecture>``
for a registered scheme (``torchvision:resnet50``, ``timm:convnext_tiny``). Families live in
their own modules and register themselves with :func:`register_backbone`, as timm's model
modules do; importing :mod:`featpipe.models` loads them all.

Examples
--------
>>> from featpipe.models import create_backbone
>>> backbone = create_backbone("efficientnet_lite0", image_size=128)
>>> backbone.preprocessing.image_size, backbone.preprocessing.resize_size
(128, 146)
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from featpipe.errors import FeatpipeError
from featpipe.models.backbone import Backbone
from featpipe.models.weights import load_weights_file
from featpipe.spec import DEFAULT_BACKBONE

#: ``factory(architecture, pretrained, image_size) -> Backbone``
Factory = Callable[[str, bool, "int | None"], Backbone]


@dataclass(frozen=True)
class RegisteredBackbone:
    """One registry entry: a single backbone, or a scheme of many architectures."""

    name: str
    factory: Factory
    summary: str
    architectures: Callable[[], tuple[str, ...]] | None = None  # set for schemes

    @property
    def is_scheme(self) -> bool:
        return self.architectures is not None


_REGISTRY: dict[str, RegisteredBackbone] = {}


def register_backbone(name: str, *, summary: str,
                      architectures: Callable[[], tuple[str, ...]] | None = None):
    """Decorator registering ``factory(architecture, pretrained, image_size) -> Backbone``.

    With ``architectures`` (a function listing valid names), ``name`` is a scheme and the
    backbones are called ``<name>:<architecture>``; without it, ``name`` is one backbone and
    the factory receives ``name`` as its architecture.
    """
    def decorator(factory: Factory) -> Factory:
        _REGISTRY[name] = RegisteredBackbone(name, factory, summary, architectures)
        return factory

    return decorator


def registered() -> list[RegisteredBackbone]:
    """Every entry, single backbones first, in registration order."""
    return sorted(_REGISTRY.values(), key=lambda entry: entry.is_scheme)


def list_backbones(filter: str | None = None) -> list[str]:
    """Backbone names; with ``filter`` (a glob such as ``'*resnet*'``) the matching names.

    Without a filter, schemes appear as patterns (``'torchvision:<...>'``); with one, every
    architecture of every scheme is matched against it.

    Examples
    --------
    >>> list_backbones()[0]
    'efficientnet_lite0'
    >>> list_backbones("torchvision:resnet1*")
    ['torchvision:resnet101', 'torchvision:resnet152', 'torchvision:resnet18']
    """
    if filter is None:
        return [f"{e.name}:<{e.summary}>" if e.is_scheme else e.name for e in registered()]
    return [name for name in _all_names() if fnmatch.fnmatchcase(name, filter)]


def _all_names() -> list[str]:
    names = []
    for entry in registered():
        if entry.is_scheme:
            names += [f"{entry.name}:{arch}" for arch in entry.architectures()]
        else:
            names.append(entry.name)
    return names


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
        ``'timm:<name>'``; :func:`list_backbones` lists them.
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
    entry, arch = _lookup(name)
    backbone = entry.factory(arch, pretrained and weights is None, image_size)
    if weights is not None:
        path = Path(weights).expanduser().resolve()
        backbone.weights_sha256 = load_weights_file(backbone.model, path)
        backbone.weights = f"file:{path}"
    if image_size is not None and image_size != backbone.preprocessing.image_size:
        backbone.preprocessing = backbone.preprocessing.with_image_size(int(image_size))
    backbone.model.eval().requires_grad_(False)
    return backbone


def _lookup(name: str) -> tuple[RegisteredBackbone, str]:
    prefix, sep, arch = str(name).strip().partition(":")
    if not sep:
        canonical = prefix.replace("-", "_").lower()
        entry = _REGISTRY.get(canonical)
        if entry is not None and not entry.is_scheme:
            return entry, canonical
        raise _unknown_name(prefix)
    entry = _REGISTRY.get(prefix)
    if entry is not None and entry.is_scheme and arch in entry.architectures():
        return entry, arch
    raise _unknown_name(name)


def _unknown_name(name: str) -> FeatpipeError:
    candidates = _all_names()
    # match bare architecture names against prefixed candidates too
    bare = {c.partition(":")[2] or c: c for c in reversed(candidates)}
    query = name.partition(":")[2] or name
    close = difflib.get_close_matches(query, list(bare), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(repr(bare[c]) for c in close)}? " if close else ""
    schemes = ", ".join(f"'{e.name}:<name>'" for e in registered() if e.is_scheme)
    return FeatpipeError(
        f"unknown backbone {name!r}; {hint}use '{DEFAULT_BACKBONE}', {schemes} "
        "(run 'featpipe backbones' to list them)"
    )
