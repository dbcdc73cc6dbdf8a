"""The typed settings of `featpipe finetune`: :class:`FinetuneSpec`, constraints declared once.

Examples
--------
>>> spec = FinetuneSpec(freeze=2, lr=1e-3, layer_decay=0.7)
>>> spec.head_learning_rate, spec.freeze
(0.001, 2)
>>> FinetuneSpec(freeze="some")
Traceback (most recent call last):
...
featpipe.params.InvalidParameterError: `freeze` must be one of none, all or an int >= 0, got 'some'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from featpipe.errors import UsageError
from featpipe.params import Interval, Options, validate
from featpipe.spec import DEFAULT_BACKBONE, RESIZE, WHITE, checked_replace

FREEZE_WORDS = ("none", "all")
OPTIMIZERS = ("adamw", "sgd")
HEAD_INITS = ("probe", "random")
AUGMENTATIONS = ("standard", "none")
AMP_MODES = ("auto", "bf16", "fp16", "none")
_POSITIVE = Interval(float, 0, None, closed="neither")

#: Declared constraints of :class:`FinetuneSpec`.
FINETUNE_CONSTRAINTS = {
    "model": [str],
    "weights": [str, None],
    "pretrained": ["boolean"],
    "image_size": [Interval(int, 8, None), None],
    "resize": [Options(RESIZE)],
    "freeze": [Options(FREEZE_WORDS), Interval(int, 0, None)],
    "freeze_until": [str, None],
    "unfreeze_every": [Interval(int, 1, None), None],
    "epochs": [Interval(int, 1, None)],
    "batch_size": [Interval(int, 1, None)],
    "optimizer": [Options(OPTIMIZERS)],
    "lr": [_POSITIVE],
    "head_lr": [_POSITIVE, None],
    "layer_decay": [Interval(float, 0, 1, closed="right"), None],
    "weight_decay": [Interval(float, 0, None)],
    "momentum": [Interval(float, 0, 1, closed="left")],
    "warmup_epochs": [Interval(float, 0, None)],
    "label_smoothing": [Interval(float, 0, 1, closed="left")],
    "head_init": [Options(HEAD_INITS)],
    "augment": [Options(AUGMENTATIONS)],
    "val_split": [Interval(float, 0, 1, closed="neither"), str],
    "patience": [Interval(int, 1, None), None],
    "seed": [int],
    "amp": [Options(AMP_MODES)],
    "channels_last": ["boolean"],
}


@dataclass(frozen=True)
class FinetuneSpec:
    """How to fine-tune a backbone with a new linear head (the typed form of the CLI's options).

    Parameters
    ----------
    model : str, default "efficientnet_lite0"
        Backbone name (:func:`featpipe.models.list_backbones`).
    weights : str or None
        A local ``.pth``/``.safetensors`` state_dict to start from.
    pretrained : bool, default True
        False: deterministic random initialisation.
    image_size : int or None
        Side of the network input; None: the weights' native size.
    resize : {"pad", "crop", "squash"}, default "pad"
        How an image becomes the square input (as for extraction).
    crop_pct : float or None
        The kept fraction in ``crop`` mode; None: the weights' own.
    pad_color : tuple of 3 ints
        Padding colour in ``pad`` mode.
    freeze : "none", "all" or int, default "none"
        Stages (``featpipe layers``' ``stages`` preset, bottom first) whose parameters do not
        train: none, all (only the head trains) or the first N.
    freeze_until : str or None
        Freeze every module that runs up to and including this layer instead.
    unfreeze_every : int or None
        Gradual unfreezing: every k epochs the top-most frozen stage starts training.
    epochs, batch_size : int
    optimizer : {"adamw", "sgd"}
        SGD uses Nesterov-free momentum ``momentum``.
    lr : float, default 1e-3
        Learning rate of the top stage of the backbone.
    head_lr : float or None
        Learning rate of the head (None: ``lr``).
    layer_decay : float or None
        Layer-wise decay: each stage down gets this factor times the rate of the one above.
    weight_decay : float, default 0.05
        Not applied to biases and normalization parameters (any parameter with ndim <= 1).
    warmup_epochs : float, default 1
        Linear warm-up from 0, then cosine decay to 0 (per optimizer step).
    label_smoothing : float, default 0
    head_init : {"probe", "random"}
        ``probe`` (LP-FT): the head starts as featpipe's linear probe fitted on the training
        images' last-layer features; ``random``: a fresh linear layer.
    augment : {"standard", "none"}
        Random resized crop (scale 0.25-1) and horizontal flip of the preprocessed image.
    val_split : float or str, default 0.1
        A stratified fraction of each class, or the name of a split of the source.
    patience : int or None, default 5
        Stop after this many epochs without a better validation accuracy (None: never).
    seed : int
    amp : {"auto", "bf16", "fp16", "none"}
        Autocast on CUDA only (auto: bf16 where supported); CPU runs in float32.
    channels_last : bool, default True
        Channels-last memory format, on CUDA only.
    """

    model: str = DEFAULT_BACKBONE
    weights: str | None = None
    pretrained: bool = True
    image_size: int | None = None
    resize: str = "pad"
    crop_pct: float | None = None
    pad_color: tuple[int, int, int] = WHITE
    freeze: str | int = "none"
    freeze_until: str | None = None
    unfreeze_every: int | None = None
    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3
    head_lr: float | None = None
    layer_decay: float | None = None
    weight_decay: float = 0.05
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    head_init: str = "random"
    augment: str = "standard"
    val_split: float | str = 0.1
    patience: int | None = 5
    seed: int = 0
    amp: str = "auto"
    channels_last: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "pad_color", tuple(self.pad_color))
        validate(self.__dict__, FINETUNE_CONSTRAINTS)
        if self.freeze_until is not None and self.freeze != "none":
            raise UsageError("give `freeze` or `freeze_until`, not both")
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise UsageError(f"`crop_pct` must be in (0, 1], got {self.crop_pct}")

    @property
    def head_learning_rate(self) -> float:
        return self.lr if self.head_lr is None else self.head_lr

    def replace(self, **changes) -> FinetuneSpec:
        """A copy with ``changes`` (validated again); an unknown setting is a one-line error."""
        return checked_replace(self, changes, "fine-tuning")

    def describe(self) -> dict:
        """The settings as JSON values: recorded in the summary, compared on resume."""
        described = dataclasses.asdict(self)
        described["pad_color"] = list(self.pad_color)
        return described
