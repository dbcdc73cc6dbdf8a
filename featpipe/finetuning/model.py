"""The network being fine-tuned: a trainable copy of the backbone with a new linear head, what
is frozen when, the optimizer's parameter groups and the learning-rate schedule.

BatchNorm: a frozen module is kept in eval mode during training, so BatchNorm layers inside
frozen stages normalize with their stored running statistics and never update them (nor their
affine parameters). BatchNorm layers in trained stages run in train mode: they normalize with
the batch's statistics and update their running statistics (momentum as set by the backbone)
and their affine parameters learn, as in ordinary training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from featpipe.errors import FeatpipeError
from featpipe.finetuning.spec import FinetuneSpec
from featpipe.models import Backbone, create_backbone
from featpipe.models.heads import replace_classifier
from featpipe.models.stages import StagePlan, stage_plan

HEAD = "head"


@dataclass
class TuningModel:
    """A backbone's trainable copy with a ``n_classes`` head, and its stage plan.

    Attributes
    ----------
    backbone : Backbone
        ``backbone.model`` is the network that trains (its own copy; logits out).
    plan : StagePlan
    classifier : str
        Module path of the new head.
    initially_frozen : frozenset of str
        Modules frozen at epoch 0.
    """

    backbone: Backbone
    plan: StagePlan
    classifier: str
    initially_frozen: frozenset

    @property
    def model(self) -> nn.Module:
        return self.backbone.model

    def frozen_at(self, epoch: int, unfreeze_every: int | None) -> frozenset:
        """Modules frozen during ``epoch`` (0-based): every ``unfreeze_every`` epochs the
        top-most stage still (partly) frozen joins training."""
        if not unfreeze_every:
            return self.initially_frozen
        partly = [k for k, stage in enumerate(self.plan.stages)
                  if set(stage) & self.initially_frozen]
        released = sorted(partly, reverse=True)[:epoch // unfreeze_every]
        thawed = {m for k in released for m in self.plan.stages[k]}
        return frozenset(self.initially_frozen - thawed)


def build_tuning_model(spec: FinetuneSpec, n_classes: int) -> TuningModel:
    """The backbone of ``spec`` (a trainable copy) with a fresh ``n_classes`` linear head.

    An unknown ``freeze_until`` layer or a ``freeze`` beyond the stage count is one line.
    """
    frozen_backbone = create_backbone(spec.model, weights=spec.weights,
                                      pretrained=spec.pretrained, image_size=spec.image_size)
    frozen_backbone.preprocessing = frozen_backbone.preprocessing.with_resize(
        spec.resize, crop_pct=spec.crop_pct, fill=spec.pad_color)
    plan = stage_plan(frozen_backbone)
    frozen = _initially_frozen(spec, plan, frozen_backbone)
    backbone = frozen_backbone.trainable_copy()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        classifier = replace_classifier(backbone.model, n_classes)
    return TuningModel(backbone, plan, classifier, frozen)


def _initially_frozen(spec: FinetuneSpec, plan: StagePlan, backbone: Backbone) -> frozenset:
    if spec.freeze_until is not None:
        return frozenset(plan.modules_until(backbone, spec.freeze_until))
    n_stages = len(plan.stages)
    count = {"none": 0, "all": n_stages}.get(spec.freeze, spec.freeze)
    if count > n_stages:
        raise FeatpipeError(f"`freeze` {count} exceeds the {n_stages} stages of {backbone.name} "
                            f"(ending at {', '.join(plan.ends)}); use 0..{n_stages} or all")
    return frozenset(m for stage in plan.stages[:count] for m in stage)


def apply_freezing(model: nn.Module, frozen: frozenset) -> None:
    """``requires_grad`` False exactly for the parameters of ``frozen`` modules."""
    for name, module in model.named_modules():
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad_(name not in frozen)


def set_train_mode(model: nn.Module, frozen: frozenset) -> None:
    """Train mode, except frozen modules: eval mode keeps their BatchNorm statistics."""
    model.train()
    for name in frozen:
        model.get_submodule(name).eval()


def _group_of(tuning: TuningModel, spec: FinetuneSpec) -> dict[str, tuple[str, float]]:
    """Module -> (group name, learning rate): the head, then stages top first."""
    n = len(tuning.plan.stages)
    decay = spec.layer_decay or 1.0
    groups = {m: (HEAD, spec.head_learning_rate) for m in tuning.plan.head}
    for k in reversed(range(n)):
        rate = spec.lr * decay ** (n - 1 - k)
        groups.update({m: (f"stage{k}", rate) for m in tuning.plan.stages[k]})
    return groups


def sync_optimizer(optimizer: torch.optim.Optimizer, tuning: TuningModel, spec: FinetuneSpec,
                   frozen: frozenset) -> None:
    """Add every trainable parameter not yet in ``optimizer`` to its group (created when
    missing). Groups come in a fixed order (head, then stages top first; weight-decayed then
    not), so replaying the same freezing history rebuilds the same optimizer on resume."""
    known = {id(p) for group in optimizer.param_groups for p in group["params"]}
    by_name = {group["name"]: group for group in optimizer.param_groups}
    groups = _group_of(tuning, spec)
    pending: dict[str, dict] = {}
    for module_name, (group_name, rate) in groups.items():
        if module_name in frozen:
            continue
        module = tuning.model.get_submodule(module_name)
        for parameter in module.parameters(recurse=False):
            if id(parameter) in known:
                continue
            no_decay = parameter.ndim <= 1  # biases and normalization weights
            name = f"{group_name}/no_decay" if no_decay else group_name
            entry = pending.setdefault(name, {
                "name": name, "params": [], "lr": rate, "initial_lr": rate,
                "weight_decay": 0.0 if no_decay else spec.weight_decay})
            entry["params"].append(parameter)
    for name, entry in pending.items():
        if name in by_name:
            by_name[name]["params"].extend(entry["params"])
        else:
            optimizer.add_param_group(entry)


def build_optimizer(tuning: TuningModel, spec: FinetuneSpec) -> torch.optim.Optimizer:
    """AdamW or SGD with momentum over the parameters trainable at epoch 0."""
    dummy = [{"name": "_", "params": [torch.zeros(1, requires_grad=True)]}]
    if spec.optimizer == "sgd":
        optimizer = torch.optim.SGD(dummy, lr=spec.lr, momentum=spec.momentum)
    else:
        optimizer = torch.optim.AdamW(dummy, lr=spec.lr)
    optimizer.param_groups.clear()
    sync_optimizer(optimizer, tuning, spec, tuning.initially_frozen)
    if not optimizer.param_groups:
        raise FeatpipeError("nothing to train: every parameter is frozen")
    return optimizer


def describe_groups(optimizer: torch.optim.Optimizer) -> list[dict]:
    """Name, peak learning rate, weight decay and parameter count of each group."""
    return [{"name": g["name"], "lr": g["initial_lr"], "weight_decay": g["weight_decay"],
             "n_params": int(sum(p.numel() for p in g["params"]))}
            for g in optimizer.param_groups]


class WarmupCosine:
    """Linear warm-up over ``warmup_steps`` then cosine decay to 0 at ``total_steps``; each
    group's rate is its ``initial_lr`` times the factor. Stepped once per optimizer step.

    Examples
    --------
    >>> [round(WarmupCosine(None, 2, 6).factor(s), 2) for s in range(6)]
    [0.5, 1.0, 1.0, 0.85, 0.5, 0.15]
    """

    def __init__(self, optimizer, warmup_steps: int, total_steps: int):
        self.optimizer = optimizer
        self.warmup_steps, self.total_steps = int(warmup_steps), max(1, int(total_steps))
        self.step_count = 0

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.warmup_steps) / span)))

    def apply(self) -> None:
        """Set every group's rate for the next optimizer step."""
        factor = self.factor(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def step(self) -> None:
        self.step_count += 1

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
