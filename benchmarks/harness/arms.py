"""Arms: the named configurations a benchmark runs and compares, back to back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from benchmarks.harness.cli import choose


@dataclass(frozen=True)
class Arm:
    """A named configuration to run.

    ``run`` does the work (its signature is the script's); ``description`` goes on the result
    page; ``imports`` are the modules its process loads before it starts, i.e. what a
    process measured as its memory baseline imports.
    """

    name: str
    description: str
    run: Callable
    imports: tuple[str, ...] = ()


def arm_table(arms: Iterable[Arm]) -> dict[str, Arm]:
    """``{arm.name: arm}``, refusing a name used twice."""
    table: dict[str, Arm] = {}
    for arm in arms:
        if arm.name in table:
            raise ValueError(f"two arms are named {arm.name!r}")
        table[arm.name] = arm
    return table


def choose_arms(text: str | None, arms: dict[str, Arm], default: Iterable[str]) -> list[str]:
    """The arm names asked for on the command line (comma-separated; ``default`` if none)."""
    return choose(text, arms, default, what="arm")
