"""Layer listing, tracing and presets: which layers a backbone has and which a preset picks.

Layers are named by module path (``blocks.3.1``, ``layer4``, ``bn2``, ``global_pool``). The
presets pick layers by the network's structure, not from per-model lists:

``last``
    the pooled pre-logits features a linear probe uses (the classifier's input; for ViTs the
    final norm, whose CLS token is that input).
``full``
    the Full-Network Embedding set: the post-activation stem, every block of every stage
    (children of ``nn.Sequential`` containers), and the head (the last post-activation
    feature map after the blocks, else the ``last`` layer).
``stages``
    one layer per resolution stage: the last ``full`` layer at each spatial size (for
    isotropic token models, four blocks evenly spread over the depth).
"""

from __future__ import annotations

import difflib
import itertools
import math
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from featpipe.errors import FeatpipeError
from featpipe.models.backbone import Backbone
from featpipe.models.device import model_device
from featpipe.spec import POOLING, PRESETS

_ACTIVATION_MODULES = (
    "torch.nn.modules.activation",
    "timm.layers.activations",
    "timm.layers.activations_me",
)


@dataclass(frozen=True)
class LayerInfo:
    """A capturable layer and its per-image output shape.

    Examples
    --------
    >>> LayerInfo("blocks.2.1", (24, 28, 28)).pooled_dim("meanmax")
    48
    """

    name: str
    shape: tuple[int, ...]

    def pooled_dim(self, pool: str = "mean") -> int:
        """Feature count per image after ``pool`` (tokens are pooled to one token)."""
        _check_choice("pool", pool, POOLING)
        if pool == "none" or len(self.shape) not in (2, 3):
            return math.prod(self.shape)
        channels = self.shape[0] if len(self.shape) == 3 else self.shape[-1]
        return 2 * channels if pool == "meanmax" and len(self.shape) == 3 else channels


@dataclass
class _Trace:
    """What one dummy forward pass tells about a network's modules."""

    modules: dict[str, nn.Module]
    start: dict[str, int] = field(default_factory=dict)  # pre-forward event index
    end: dict[str, int] = field(default_factory=dict)  # post-forward event index
    calls: Counter = field(default_factory=Counter)
    in_shape: dict[str, tuple[int, ...]] = field(default_factory=dict)
    out_shape: dict[str, tuple[int, ...] | None] = field(default_factory=dict)

    def capturable(self) -> list[str]:
        """Modules that run exactly once and return a tensor, in forward (completion) order."""
        names = [
            n
            for n in self.end
            if self.calls[n] == 1 and self.out_shape[n] is not None and not _is_noop(self.modules[n])
        ]
        return sorted(names, key=self.end.__getitem__)

    def forward_order(self, names) -> list[str]:
        return sorted(dict.fromkeys(names), key=self.end.__getitem__)


_TRACE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _trace(backbone: Backbone, image_size: int | None = None) -> _Trace:
    size = int(image_size or backbone.preprocessing.image_size)
    per_model = _TRACE_CACHE.setdefault(backbone.model, {})
    if size not in per_model:
        per_model[size] = _run_trace(backbone, size)
    return per_model[size]


def _run_trace(backbone: Backbone, size: int) -> _Trace:
    model = backbone.model
    trace = _Trace(modules=dict(model.named_modules()))
    trace.modules.pop("")
    events = itertools.count()

    def pre_hook(name):
        def hook(module, args):
            trace.calls[name] += 1
            trace.start.setdefault(name, next(events))
            if args and torch.is_tensor(args[0]):
                trace.in_shape.setdefault(name, tuple(args[0].shape[1:]))

        return hook

    def post_hook(name):
        def hook(module, args, output):
            trace.end[name] = next(events)
            trace.out_shape[name] = tuple(output.shape[1:]) if torch.is_tensor(output) else None

        return hook

    handles = [h for name, m in trace.modules.items() for h in (
        m.register_forward_pre_hook(pre_hook(name)), m.register_forward_hook(post_hook(name)))]
    dummy = torch.zeros(1, 3, size, size, device=model_device(model))
    try:
        with torch.inference_mode():
            model.eval()(dummy)
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise FeatpipeError(
            f"{backbone.name} cannot run on {size}x{size} images ({str(exc).splitlines()[0][:120]}); "
            "choose another image size"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
    return trace


def list_layers(backbone: Backbone, image_size: int | None = None) -> list[LayerInfo]:
    """Capturable layers of a backbone in forward order, with per-image output shapes.

    Runs one forward pass on a zeros batch of one (cached per model and image size).

    Parameters
    ----------
    backbone : Backbone
    image_size : int, optional
        Input side; defaults to ``backbone.preprocessing.image_size``.

    Examples
    --------
    >>> from featpipe.models import create_backbone
    >>> layers = list_layers(create_backbone("efficientnet_lite0"))
    >>> layers[-1]
    LayerInfo(name='classifier', shape=(1000,))
    """
    trace = _trace(backbone, image_size)
    return [LayerInfo(n, trace.out_shape[n]) for n in trace.capturable()]


def _is_noop(module: nn.Module) -> bool:
    """Modules that return their input in eval mode (their output is another layer's)."""
    return isinstance(module, (nn.Identity, nn.modules.dropout._DropoutNd)) or (
        type(module).__name__ in ("DropPath", "DropBlock2d")
    )


def _is_container(module: nn.Module) -> bool:
    return type(module) in (nn.Sequential, nn.ModuleList)


def _is_activation(module: nn.Module) -> bool:
    is_leaf = next(module.children(), None) is None
    return is_leaf and type(module).__module__ in _ACTIVATION_MODULES


def _is_norm(module: nn.Module) -> bool:
    return "Norm" in type(module).__name__


def _is_post_activation(trace: _Trace, name: str) -> bool:
    """True when the module ends with an activation (itself or its last-run descendant)."""
    if _is_activation(trace.modules[name]):
        return True
    inner = [n for n in trace.end if n.startswith(name + ".") and trace.end[n] < trace.end[name]]
    return bool(inner) and _is_activation(trace.modules[max(inner, key=trace.end.__getitem__)])


def _owns_stage(module: nn.Module) -> bool:
    """True when a descendant container holds only composite modules of one type (blocks)."""
    for inner in module.modules():
        children = list(inner.children())
        if inner is not module and _is_container(inner) and children:
            kinds = {type(c) for c in children}
            if len(kinds) == 1 and next(children[0].children(), None) is not None:
                return True
    return False


def _find_blocks(model: nn.Module, trace: _Trace) -> list[str]:
    """Children of ``nn.Sequential``/``nn.ModuleList`` stages: composite blocks, or
    activations for plain layer stacks (VGG)."""
    capturable = set(trace.capturable())
    blocks = []

    def visit(module: nn.Module, prefix: str, in_stage: bool) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            is_leaf = next(child.children(), None) is None
            if _is_container(child):
                visit(child, name, True)
            elif in_stage and not is_leaf and _owns_stage(child):
                visit(child, name, False)  # a stage module wrapping its own block list
            elif in_stage and (not is_leaf or _is_activation(child)):
                if name in capturable:
                    blocks.append(name)
            elif not is_leaf:
                visit(child, name, False)

    visit(model, "", _is_container(model))
    return trace.forward_order(blocks)


def _find_classifier(model: nn.Module, trace: _Trace) -> str | None:
    getter = getattr(model, "get_classifier", None)
    head = getter() if callable(getter) else None
    if isinstance(head, nn.Module):
        name = next((n for n, m in trace.modules.items() if m is head), None)
        return name if name in trace.end and not _is_noop(head) else None
    linears = [n for n in trace.capturable() if isinstance(trace.modules[n], nn.Linear)]
    return linears[-1] if linears else None


def _find_last(model: nn.Module, trace: _Trace) -> str:
    """The layer whose pooled output is the classifier's input (pre-logits features)."""
    order = trace.capturable()
    classifier = _find_classifier(model, trace)
    if classifier is None:
        candidates = [n for n in order if not _is_container(trace.modules[n])]
        return candidates[-1]
    dim = trace.in_shape[classifier][0 if len(trace.in_shape[classifier]) == 3 else -1]
    before = [
        n
        for n in order
        if trace.end[n] < trace.start[classifier] and not _is_container(trace.modules[n])
    ]
    rules = (
        lambda s: s in ((dim,), (dim, 1, 1)),  # a pooled vector
        None,  # the final norm of a token model (CLS token = pre-logits)
        lambda s: (len(s) == 3 and s[0] == dim) or (len(s) == 2 and s[-1] == dim),
    )
    for rule in rules:
        if rule is None:
            matches = [n for n in before if _is_norm(trace.modules[n]) and len(trace.out_shape[n]) == 2
                       and trace.out_shape[n][-1] == dim]
        else:
            matches = [n for n in before if rule(trace.out_shape[n])]
        if matches:
            return matches[-1]
    return before[-1] if before else order[-1]


def _backbone_sections(backbone: Backbone) -> tuple[list[str], list[str], list[str], str]:
    """(stem, blocks, spatial head, last) of the network, each in forward order."""
    model, trace = backbone.model, _trace(backbone)
    last = _find_last(model, trace)
    blocks = _find_blocks(model, trace)
    if not blocks:
        return [], [], [], last
    order = trace.capturable()
    first, final = blocks[0], blocks[-1]
    stem = []
    if len(trace.in_shape.get(first, ())) == 3:  # a conv net: blocks take feature maps
        stem = [n for n in order if trace.end[n] < trace.start[first] and _is_post_activation(trace, n)][-1:]
    head = [
        n
        for n in order
        if trace.end[n] > trace.end[final]
        and trace.end[n] <= trace.end[last]
        and len(trace.out_shape[n]) == 3
        and math.prod(trace.out_shape[n][1:]) > 1
        and _is_post_activation(trace, n)
    ][-1:]
    return stem, blocks, head, last


def _preset(backbone: Backbone, preset: str) -> list[str]:
    stem, blocks, head, last = _backbone_sections(backbone)
    trace = _trace(backbone)
    if preset == "last":
        return [last]
    if preset == "full":
        return trace.forward_order(stem + blocks + (head or [last]))
    maps = [n for n in stem + blocks + head if len(trace.out_shape[n]) in (2, 3)]
    return _stage_ends(trace, maps) or [last]


def _stage_ends(trace: _Trace, layers: list[str]) -> list[str]:
    """The last layer of each run of equal resolution; for token models, four spread blocks."""
    def resolution(name):
        shape = trace.out_shape[name]
        return shape[1:] if len(shape) == 3 else ("tokens", shape[0]) if len(shape) == 2 else shape

    groups = [list(g) for _, g in itertools.groupby(layers, key=resolution)]
    if len(groups) == 1 and len(trace.out_shape[layers[0]]) == 2:
        n = len(layers)
        return list(dict.fromkeys(layers[max(0, n * k // 4 - 1)] for k in range(1, 5)))
    return [group[-1] for group in groups]


def resolve_layers(backbone: Backbone, spec: str | Sequence[str]) -> list[str]:
    """Expand a layer specification into module paths.

    Parameters
    ----------
    backbone : Backbone
    spec : str or sequence of str
        A preset (``'last'``, ``'stages'``, ``'full'``), layer names, or a comma-separated
        mix of both. Presets expand in forward order; names keep the given order;
        duplicates are dropped.

    Returns
    -------
    list of str

    Examples
    --------
    >>> from featpipe.models import create_backbone
    >>> resolve_layers(create_backbone("efficientnet_lite0"), "stages")
    ['blocks.0.0', 'blocks.1.1', 'blocks.2.1', 'blocks.4.2', 'bn2']
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [str(item).strip() for item in items if str(item).strip()]
    if not items:
        raise FeatpipeError(f"no layers given; use a preset ({', '.join(PRESETS)}) or layer names")
    trace = _trace(backbone)
    capturable = set(trace.capturable())
    names = []
    for item in items:
        if item in PRESETS:
            names += _preset(backbone, item)
        elif item in capturable:
            names.append(item)
        else:
            raise _unknown_layer(backbone, trace, item)
    return list(dict.fromkeys(names))


def _unknown_layer(backbone: Backbone, trace: _Trace, name: str) -> FeatpipeError:
    listing = f"run 'featpipe layers {backbone.name}' to list layers"
    if name in trace.modules:
        reason = (
            "runs more than once per forward pass" if trace.calls[name] > 1
            else "does not run in the forward pass" if name not in trace.end
            else "returns its input unchanged" if _is_noop(trace.modules[name])
            else "does not return a single tensor"
        )
        return FeatpipeError(f"layer {name!r} of {backbone.name} {reason}; pick its parent block; {listing}")
    close = difflib.get_close_matches(name, [*PRESETS, *trace.capturable()], n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    return FeatpipeError(f"unknown layer {name!r} for {backbone.name}; {hint}{listing}")


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise FeatpipeError(f"unknown {what} {value!r}; use one of {', '.join(choices)}")

