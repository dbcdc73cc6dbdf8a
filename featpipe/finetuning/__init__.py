"""Fine-tuning: a trainable copy of a backbone with a new linear head, frozen or partly frozen
stages, per-stage learning rates, LP-FT head initialisation, resumable runs (`featpipe finetune`).
"""

from featpipe.finetuning.spec import FinetuneSpec

__all__ = ["FinetuneSpec", "finetune", "train"]


def __getattr__(name):
    """The training parts import torch; load them when used."""
    if name == "finetune":
        from featpipe.finetuning.run import finetune

        return finetune
    if name == "train":
        from featpipe.finetuning.loop import train

        return train
    raise AttributeError(f"module 'featpipe.finetuning' has no attribute {name!r}")
