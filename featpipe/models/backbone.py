"""The :class:`Backbone` record: a network, the preprocessing of its weights, and their origin."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import torch

from featpipe.models.preprocessing import Preprocessing


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

    def trainable_copy(self) -> Backbone:
        """A deep copy whose parameters require gradients, for training.

        The frozen original (and every :class:`~featpipe.models.capture.FeatureCapture` built
        on it) is left untouched: fine-tuning never changes a shared model in place. The copy
        keeps the original's mode (eval); call ``.train()`` on it to train.

        Examples
        --------
        >>> from featpipe.models import create_backbone
        >>> frozen = create_backbone("efficientnet_lite0")
        >>> copy = frozen.trainable_copy()
        >>> copy.model is frozen.model, copy.name == frozen.name
        (False, True)
        >>> all(p.requires_grad for p in copy.model.parameters())
        True
        >>> any(p.requires_grad for p in frozen.model.parameters())
        False
        """
        model = copy.deepcopy(self.model).requires_grad_(True)
        return replace(self, model=model)
