"""A network's classifier head: find it, and replace it by a linear layer with other classes.

Fine-tuning swaps the pretrained classifier for one with the target's classes; a fine-tuned
weights file then holds a classifier of that size, which :func:`fit_classifier_to` prepares the
freshly built network for before a strict load.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from featpipe.errors import FeatpipeError


def classifier_name(model: nn.Module) -> str:
    """Module path of the final linear classifier (timm's ``get_classifier()``, else the last
    ``nn.Linear``).

    Examples
    --------
    >>> import torchvision
    >>> classifier_name(torchvision.models.resnet18())
    'fc'
    """
    getter = getattr(model, "get_classifier", None)
    head = getter() if callable(getter) else None
    names = {id(m): n for n, m in model.named_modules()}
    if isinstance(head, nn.Linear) and id(head) in names:
        return names[id(head)]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise FeatpipeError(f"{type(model).__name__} has no linear classifier to fine-tune")
    return linears[-1]


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the path ``name`` of ``model`` (``'head.fc'``, ``'classifier.1'``)."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def replace_classifier(model: nn.Module, n_classes: int) -> str:
    """Replace the classifier of ``model`` by a fresh ``nn.Linear`` with ``n_classes`` outputs
    (same inputs, same device and dtype); return its module path.

    Examples
    --------
    >>> import torchvision
    >>> model = torchvision.models.resnet18()
    >>> replace_classifier(model, 3), model.fc.out_features
    ('fc', 3)
    """
    name = classifier_name(model)
    old = model.get_submodule(name)
    new = nn.Linear(old.in_features, int(n_classes), bias=old.bias is not None)
    set_module(model, name, new.to(device=old.weight.device, dtype=old.weight.dtype))
    return name


def fit_classifier_to(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Resize ``model``'s classifier to the class count of ``state`` (a fine-tuned state_dict)
    when only its number of outputs differs; anything else is left to the strict load."""
    try:
        name = classifier_name(model)
    except FeatpipeError:
        return
    weight = state.get(f"{name}.weight")
    head = model.get_submodule(name)
    if weight is not None and weight.ndim == 2 and weight.shape[1] == head.in_features \
            and weight.shape[0] != head.out_features:
        replace_classifier(model, weight.shape[0])
