"""Capture the activations of many layers in one forward pass, pooled on the device.

Layers and presets are resolved by :mod:`featpipe.models.layers`; pooling is
:mod:`featpipe.models.pooling`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from featpipe.errors import FeatpipeError
from featpipe.models.backbone import Backbone
from featpipe.models.device import model_device
from featpipe.models.layers import _check_choice, _trace, list_layers, resolve_layers
from featpipe.models.pooling import pool_features
from featpipe.spec import POOLING, TOKEN_POOLING

METHODS = ("hooks", "fx")


class _StopForward(Exception):
    """Raised by the hook of the last requested layer: the rest of the network is skipped."""


class FeatureCapture(nn.Module):
    """Run a backbone once per batch and return pooled features of several layers.

    Parameters
    ----------
    backbone : Backbone
    layers : str or sequence of str
        Layer names and/or presets, see :func:`resolve_layers`. Output order follows it.
    pool : {'mean', 'max', 'meanmax', 'none'}, default 'mean'
        Pooling of feature maps over H, W; 'none' flattens (refused above
        ``max_flat_features`` per layer unless ``force``).
    token_pool : {'cls', 'mean'}, default 'cls'
        Pooling of transformer tokens (N, T, D).
    max_flat_features : int, default 65536
    force : bool, default False
    amp : torch.dtype, optional
        Autocast dtype (e.g. ``torch.bfloat16``) on the input's device (CUDA or CPU; CPU
        autocast runs convolutions and matrix products in bfloat16/float16 too).
    channels_last : bool, default False
        Convert the model and inputs to channels-last memory format.
    method : {'hooks', 'fx'}, default 'hooks'
        'hooks' pools each map as soon as it is produced (lower peak memory) and stops the
        forward pass after the last requested layer; 'fx' uses FX feature extraction
        (timm's for timm models, torchvision's otherwise) and fails where it cannot trace.
    compile : bool, default False
        Run a ``torch.compile``-d module (static shapes: feed batches of one size, see
        :func:`featpipe.extract.run._forward_batch`) that returns the pooled features of an FX
        feature extractor (the hooks' early stop does not compile); refused with ``trainable``.
    trainable : bool, default False
        False: the backbone's shared, frozen model is used as is, always in eval mode and under
        ``torch.inference_mode``. True: the capture runs on its own
        :meth:`~featpipe.models.backbone.Backbone.trainable_copy` (the caller's model is never
        changed in place), starts in eval mode, honours :meth:`train` / :meth:`eval` (BatchNorm
        statistics update in train mode) and runs under autograd, so gradients reach the
        copy's parameters through the pooled features. Both stop the forward pass after the
        last requested layer.

    Attributes
    ----------
    layers : tuple of str
    layer_dims : dict of str to int
        Pooled feature size per layer at the backbone's image size.
    model : torch.nn.Module
        The network run: the backbone's own model, or its trainable copy.

    Examples
    --------
    >>> from featpipe.models import create_backbone
    >>> capture = FeatureCapture(create_backbone("efficientnet_lite0"), "full")
    >>> len(capture.layers), sum(capture.layer_dims.values())
    (18, 3120)

    A trainable capture backpropagates into its own copy of the network:

    >>> import torch
    >>> backbone = create_backbone("efficientnet_lite0", image_size=64)
    >>> tuner = FeatureCapture(backbone, ["bn2"], trainable=True).train()
    >>> tuner(torch.randn(2, 3, 64, 64))["bn2"].sum().backward()
    >>> tuner.model.conv_stem.weight.grad is not None, backbone.model.training
    (True, False)
    """

    def __init__(
        self,
        backbone: Backbone,
        layers: str | Sequence[str],
        pool: str = "mean",
        token_pool: str = "cls",
        max_flat_features: int = 65536,
        force: bool = False,
        amp: torch.dtype | None = None,
        channels_last: bool = False,
        method: str = "hooks",
        trainable: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        _check_choice("pool", pool, POOLING)
        _check_choice("token_pool", token_pool, TOKEN_POOLING)
        _check_choice("method", method, METHODS)
        self.backbone_name = backbone.name
        self.trainable = bool(trainable)
        if compile and trainable:
            raise FeatpipeError("`compile` applies to frozen feature extraction only")
        self.layers = tuple(resolve_layers(backbone, layers))
        self.pool, self.token_pool, self.amp = pool, token_pool, amp
        self.channels_last, self.method = channels_last, method
        shapes = {info.name: info for info in list_layers(backbone)}
        self.layer_dims = {name: shapes[name].pooled_dim(pool) for name in self.layers}
        self._check_flat_size(max_flat_features, force)
        self._stop_after = max(self.layers, key=_trace(backbone).end.__getitem__)
        # Layers are resolved on the shared model (its layer table is cached); a trainable
        # capture then runs on its own copy, which has the same module names.
        if self.trainable:
            backbone = backbone.trainable_copy()
        self.model = backbone.model.eval()
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if method == "fx" or compile:
            self.fx_model = _fx_extractor(backbone, self.layers)
        self.compiled = _compiled(self.fx_model, self._pool) if compile else None
        if self.trainable:
            self.eval()

    def _check_flat_size(self, max_flat_features: int, force: bool) -> None:
        too_big = {n: d for n, d in self.layer_dims.items() if d > max_flat_features}
        if too_big and not force:
            name, dim = next(iter(too_big.items()))
            raise FeatpipeError(
                f"layer {name!r} gives {dim} features per image with pool='none' (limit "
                f"{max_flat_features}); use `pool='mean'` or `force=True`"
            )

    def train(self, mode: bool = True) -> FeatureCapture:
        """Set train mode; a frozen capture's backbone stays in eval mode (frozen BatchNorm
        statistics, no dropout), a trainable capture's follows ``mode``."""
        super().train(mode)
        if not self.trainable:
            self.model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return model_device(self.model)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features ``{layer: (N, D) float32}`` on the model's device, in ``layers`` order."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = (torch.autocast(x.device.type, dtype=self.amp) if self.amp is not None
                    else contextlib.nullcontext())
        grad_mode = contextlib.nullcontext() if self.trainable else torch.inference_mode()
        with grad_mode, autocast:
            if self.compiled is not None:
                features = _run_compiled(self.compiled, x)
            else:
                features = self._run_fx(x) if self.method == "fx" else self._run_hooks(x)
        self._check_dims(features, x.shape)
        return {name: features[name] for name in self.layers}

    def _pool(self, activation: torch.Tensor) -> torch.Tensor:
        return pool_features(activation, self.pool, self.token_pool)

    def _run_hooks(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features: dict[str, torch.Tensor] = {}
        modules = dict(self.model.named_modules())

        def make_hook(name):
            def hook(module, args, output):
                features[name] = self._pool(output)
                if name == self._stop_after:
                    raise _StopForward

            return hook

        handles = [modules[name].register_forward_hook(make_hook(name)) for name in self.layers]
        try:
            self.model(x)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return features

    def _run_fx(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.trainable:
            self.fx_model.eval()
        return {name: self._pool(out) for name, out in self.fx_model(x).items()}

    def _check_dims(self, features: dict[str, torch.Tensor], input_shape) -> None:
        for name, expected in self.layer_dims.items():
            got = features[name].shape[1]
            if got != expected:
                raise FeatpipeError(
                    f"layer {name!r} gave {got} features for input {tuple(input_shape[2:])}, expected "
                    f"{expected}; with pool='none' feed images of the backbone's image_size"
                )


class _PooledFX(nn.Module):
    """An FX feature extractor followed by pooling: one graph for ``torch.compile``."""

    def __init__(self, fx_model: nn.Module, pool):
        super().__init__()
        self.fx_model, self.pool = fx_model.eval(), pool

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: self.pool(out) for name, out in self.fx_model(x).items()}


#: ``torch.compile``'s backend for ``compile=True`` (tests use a cheaper one).
COMPILE_BACKEND = "inductor"


def _compiled(fx_model: nn.Module, pool) -> nn.Module:
    return torch.compile(_PooledFX(fx_model, pool), dynamic=False, backend=COMPILE_BACKEND)


def _run_compiled(compiled: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run the compiled module; a compiler that cannot work here is one line, not a traceback
    (compilation happens at the first call of each input shape)."""
    from torch._dynamo.exc import BackendCompilerFailed

    try:
        return compiled(x)
    except BackendCompilerFailed as exc:
        reason = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
        raise FeatpipeError(f"torch.compile failed here ({reason}); drop `compile`") from None


def _fx_extractor(backbone: Backbone, layers: Sequence[str]) -> nn.Module:
    if backbone.family == "timm":
        from timm.models._features_fx import create_feature_extractor
    else:
        from torchvision.models.feature_extraction import create_feature_extractor
    try:
        return create_feature_extractor(backbone.model, {name: name for name in layers})
    except Exception as exc:  # FX tracing raises many error types
        raise FeatpipeError(
            f"FX cannot trace {backbone.name} ({type(exc).__name__}); use method='hooks'"
        ) from None


