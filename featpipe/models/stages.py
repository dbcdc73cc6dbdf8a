"""The stage list of a backbone as groups of parameters: what freezing and per-stage learning
rates act on.

A stage is the run of modules between two consecutive ``stages`` preset layers (the list
``featpipe layers`` shows): stage 0 holds everything up to the first listed layer, stage k
everything after layer k-1 up to layer k. The last stage reaches up to the ``last`` layer (the
classifier's input), so the modules after it (the classifier) are the head.
"""

from __future__ import annotations

from dataclasses import dataclass

from featpipe.models.backbone import Backbone
from featpipe.models.layers import _preset, _trace, resolve_layers


@dataclass(frozen=True)
class StagePlan:
    """The parameter-owning modules of a backbone, grouped into stages and the head.

    Attributes
    ----------
    ends : tuple of str
        The layer that ends each stage (the ``stages`` preset, the last one extended to the
        ``last`` layer), bottom first.
    last : str
        The ``last`` layer: the classifier's input (pre-logits features).
    stages : tuple of tuple of str
        Module paths (modules that own parameters or buffers directly) per stage, bottom first.
    head : tuple of str
        Modules after the last stage: the classifier.
    """

    ends: tuple[str, ...]
    last: str
    stages: tuple[tuple[str, ...], ...]
    head: tuple[str, ...]

    def modules_until(self, backbone: Backbone, layer: str) -> tuple[str, ...]:
        """Modules that run no later than ``layer`` (a layer name of ``featpipe layers``)."""
        trace = _trace(backbone)
        name = resolve_layers(backbone, [layer])[0]
        if name in self.head or name not in trace.end:
            raise _not_in_backbone(backbone, layer)
        limit = trace.end[name]
        return tuple(m for stage in self.stages for m in stage
                     if _end_event(trace, m) <= limit)


def stage_plan(backbone: Backbone) -> StagePlan:
    """Group ``backbone``'s modules into its stages and its head.

    Examples
    --------
    >>> from featpipe.models import create_backbone
    >>> plan = stage_plan(create_backbone("efficientnet_lite0"))
    >>> plan.ends, plan.head
    (('blocks.0.0', 'blocks.1.1', 'blocks.2.1', 'blocks.4.2', 'global_pool'), ('classifier',))
    >>> plan.stages[0][:2]
    ('conv_stem', 'bn1')
    """
    trace = _trace(backbone)
    ends = list(_preset(backbone, "stages"))
    last = _preset(backbone, "last")[0]
    if trace.end[last] > trace.end[ends[-1]]:
        ends[-1] = last
    limits = [trace.end[name] for name in ends]
    owners = [name for name, module in backbone.model.named_modules()
              if next(module.parameters(recurse=False), None) is not None
              or next(module.buffers(recurse=False), None) is not None]
    stages: list[list[str]] = [[] for _ in ends]
    head = []
    for name in owners:
        event = _end_event(trace, name)
        stage = next((k for k, limit in enumerate(limits) if event <= limit), None)
        (head if stage is None else stages[stage]).append(name)
    return StagePlan(tuple(ends), last, tuple(tuple(s) for s in stages), tuple(head))


def _end_event(trace, name: str) -> int:
    """When a module finished in the traced forward pass; parameters of the root or of modules
    that never ran alone (ViT position embeddings) count as the stem's."""
    while name and name not in trace.end:
        name = name.rpartition(".")[0]
    return trace.end.get(name, -1) if name else -1


def _not_in_backbone(backbone: Backbone, layer: str):
    from featpipe.errors import FeatpipeError

    return FeatpipeError(f"layer {layer!r} is not part of {backbone.name}'s stages (it is the "
                         f"classifier or does not run); run 'featpipe layers {backbone.name}'")
