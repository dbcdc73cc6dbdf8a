"""The per-epoch checkpoint of a fine-tuning run: written atomically, read without running code.

It holds the model, optimizer and scheduler states, the epoch, the RNG states, the metrics so
far, the best epoch's weights and the settings it was made with (so that a run with other
settings is refused instead of resumed). ``torch.load(weights_only=True)`` reads it: tensors,
numbers, strings, lists and dicts only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from featpipe.errors import FeatpipeError
from featpipe.fileio import atomic_write

CHECKPOINT = "checkpoint.pt"
FORMAT = 1


def rng_state() -> dict:
    """The torch RNG states (CPU, and every CUDA device when present)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> Path:
    """Write ``state`` (plus the format and RNG states) to ``path`` atomically."""
    payload = {"format": FORMAT, "rng": rng_state(), **state}
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (one line if it is not one)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign or damaged file raises many types
        raise FeatpipeError(f"{path} is not a readable fine-tuning checkpoint "
                            f"({type(exc).__name__}); pass `overwrite=True` to start over"
                            ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FeatpipeError(f"{path} is not a featpipe fine-tuning checkpoint; pass "
                            "`overwrite=True` to start over")
    return state


def settings_differences(saved: dict, wanted: dict) -> list[str]:
    """Names of the settings that differ between a checkpoint and this run."""
    return sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
