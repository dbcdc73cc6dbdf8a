"""Pacing functions: how many of the easiest-first training examples are in use at iteration t.

Each function maps an iteration (one optimizer step, from 0) and the training-set size ``n`` to
the size of the prefix of the curriculum order that mini-batches are drawn from (Bengio et al.
2009; Hacohen & Weinshall, ICML 2019; the ``log`` form is Wu, Dyer & Neyshabur, ICLR 2021).
The size is ``ceil(fraction * n)``, at least 1 and at most ``n``; a ``start`` of 1.0 makes every
function the constant one (ordinary training), and once a function reaches its last step the
prefix is the whole set.

=============  ==========================  =================================================
name           parameters                  fraction of the data at iteration t
=============  ==========================  =================================================
constant       —                           1
linear         start, ramp                 start + (1 - start) * min(1, t / ramp)
log            start, ramp                 start + (1 - start) * (1 + 0.1 ln(t/ramp + e^-10))
ladder         start, step_length, rungs   start + (1 - start) * min(1, floor(t/step_length)
                                           / rungs)
exponential    start, inc, step_length     start * inc ** floor(t / step_length)
=============  ==========================  =================================================

(every fraction is clipped to at most 1.) The schedule of each on 100 examples:

>>> pacings = [Pacing("constant"), Pacing("linear", start=0.2, ramp=8),
...            Pacing("log", start=0.2, ramp=8),
...            Pacing("ladder", start=0.2, step_length=3, rungs=2),
...            Pacing("exponential", start=0.2, inc=1.9, step_length=3)]
>>> print(schedule_table(pacings, n=100, iterations=range(10)))
iteration                                    0    1    2    3    4    5    6    7    8    9
constant                                   100  100  100  100  100  100  100  100  100  100
linear(start=0.2, ramp=8)                   20   30   40   50   60   70   80   90  100  100
log(start=0.2, ramp=8)                      20   84   89   93   95   97   98   99  100  100
ladder(start=0.2, step_length=3, rungs=2)   20   20   20   60   60   60  100  100  100  100
exponential(start=0.2, inc=1.9, ...)        20   20   20   38   38   38   73   73   73  100
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from featpipe.errors import FeatpipeError
from featpipe.params import Interval, Options, validate

__all__ = ["PACING_FUNCTIONS", "Pacing", "constant", "exponential", "ladder", "linear", "log",
           "prefix_size", "schedule_table"]

_START = Interval(float, 0, 1, closed="right")
_STEPS = Interval(int, 1, None)
#: Each parameter's declared constraints (shared by every function that takes it).
PACING_CONSTRAINTS = {
    "iteration": [Interval(int, 0, None)],
    "n": [Interval(int, 1, None)],
    "start": [_START],
    "ramp": [_STEPS],
    "step_length": [_STEPS],
    "rungs": [_STEPS],
    "inc": [Interval(float, 1, None, closed="neither")],
}


def prefix_size(fraction: float, n: int) -> int:
    """``ceil(fraction * n)`` clipped to ``[1, n]`` (a hair of float error never adds a row).

    Examples
    --------
    >>> prefix_size(0.2, 100), prefix_size(0.0, 100), prefix_size(0.2 * 1.9 ** 3, 100)
    (20, 1, 100)
    """
    return min(n, max(1, math.ceil(fraction * n - 1e-9)))


def constant(iteration: int, n: int) -> int:
    """Every example from the start: ordinary training.

    >>> [constant(t, 10) for t in range(3)]
    [10, 10, 10]
    """
    validate({"iteration": iteration, "n": n}, PACING_CONSTRAINTS)
    return n


def linear(iteration: int, n: int, *, start: float, ramp: int) -> int:
    """A fraction ``start`` at iteration 0 growing linearly to all of the data at ``ramp``.

    >>> [linear(t, 10, start=0.2, ramp=4) for t in range(6)]
    [2, 4, 6, 8, 10, 10]
    """
    validate(dict(iteration=iteration, n=n, start=start, ramp=ramp), PACING_CONSTRAINTS)
    return prefix_size(start + (1 - start) * min(1.0, iteration / ramp), n)


def log(iteration: int, n: int, *, start: float, ramp: int) -> int:
    """Fast growth first, slow later: ``start`` at 0, all of the data at ``ramp`` (Wu et al.).

    >>> [log(t, 10, start=0.2, ramp=4) for t in range(6)]
    [2, 9, 10, 10, 10, 10]
    """
    validate(dict(iteration=iteration, n=n, start=start, ramp=ramp), PACING_CONSTRAINTS)
    if iteration >= ramp:
        return n
    grown = 1 + 0.1 * math.log(iteration / ramp + math.exp(-10))
    return prefix_size(start + (1 - start) * min(1.0, grown), n)


def ladder(iteration: int, n: int, *, start: float, step_length: int, rungs: int) -> int:
    """``rungs`` equal steps every ``step_length`` iterations from ``start`` to all of the data
    (``rungs=1``: Hacohen & Weinshall's single-step pacing).

    >>> [ladder(t, 10, start=0.4, step_length=2, rungs=3) for t in range(8)]
    [4, 4, 6, 6, 8, 8, 10, 10]
    """
    validate(dict(iteration=iteration, n=n, start=start, step_length=step_length, rungs=rungs),
             PACING_CONSTRAINTS)
    climbed = min(1.0, (iteration // step_length) / rungs)
    return prefix_size(start + (1 - start) * climbed, n)


def exponential(iteration: int, n: int, *, start: float, inc: float, step_length: int) -> int:
    """Hacohen & Weinshall's fixed exponential pacing: ``start``, times ``inc`` every
    ``step_length`` iterations, until all of the data is used.

    >>> [exponential(t, 10, start=0.25, inc=2, step_length=2) for t in range(7)]
    [3, 3, 5, 5, 10, 10, 10]
    """
    validate(dict(iteration=iteration, n=n, start=start, inc=inc, step_length=step_length),
             PACING_CONSTRAINTS)
    steps = iteration // step_length
    # start * inc**steps >= 1 once steps >= log(1/start)/log(inc): no overflow for long runs
    if steps >= math.log(1 / start) / math.log(inc):
        return n
    return prefix_size(start * inc ** steps, n)


#: The pacing functions by name, with the parameters each takes.
PACING_FUNCTIONS = {
    "constant": (constant, ()),
    "linear": (linear, ("start", "ramp")),
    "log": (log, ("start", "ramp")),
    "ladder": (ladder, ("start", "step_length", "rungs")),
    "exponential": (exponential, ("start", "inc", "step_length")),
}


@dataclass(frozen=True)
class Pacing:
    """A named pacing function with its parameters: ``pacing(iteration, n)`` is the prefix size.

    Parameters
    ----------
    name : {"constant", "linear", "log", "ladder", "exponential"}, default="constant"
    **params
        The function's parameters (see the module table); a missing or foreign one is refused
        with one line.

    Examples
    --------
    >>> pacing = Pacing("exponential", start=0.2, inc=1.9, step_length=50)
    >>> pacing(0, 500), pacing(50, 500), pacing(150, 500)
    (100, 190, 500)
    >>> Pacing("linear", start=0.2)
    Traceback (most recent call last):
    ...
    featpipe.errors.FeatpipeError: linear pacing needs `ramp` (it takes start, ramp)
    """

    name: str = "constant"
    params: Mapping[str, float] = field(default_factory=dict)

    def __init__(self, name: str = "constant", **params):
        validate({"pacing": name}, {"pacing": [Options(tuple(PACING_FUNCTIONS))]})
        takes = PACING_FUNCTIONS[name][1]
        spelled = ", ".join(takes) or "no parameters"
        foreign = sorted(set(params) - set(takes))
        if foreign:
            raise FeatpipeError(f"`{foreign[0]}` does not apply to {name} pacing "
                                f"(it takes {spelled})")
        missing = [p for p in takes if p not in params]
        if missing:
            raise FeatpipeError(f"{name} pacing needs `{missing[0]}` (it takes {spelled})")
        validate(params, PACING_CONSTRAINTS)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", dict(params))

    def __call__(self, iteration: int, n: int) -> int:
        return PACING_FUNCTIONS[self.name][0](iteration, n, **self.params)

    def describe(self, limit: int = 44) -> str:
        """``'ladder(start=0.2, step_length=3, rungs=2)'``, shortened to ``limit`` characters."""
        inside = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        text = f"{self.name}({inside})" if inside else self.name
        return text if len(text) <= limit else text[: text.rfind(",", 0, limit - 5)] + ", ...)"


def schedule_table(pacings: Iterable[Pacing], n: int, iterations: Iterable[int]) -> str:
    """A plain-text table of each pacing's prefix size at ``iterations`` (for docs and logs)."""
    pacings, iterations = list(pacings), list(iterations)
    rows = [("iteration", *iterations)]
    rows += [(p.describe(), *(p(t, n) for t in iterations)) for p in pacings]
    width = max(len(str(row[0])) for row in rows)
    cell = max(len(str(v)) for row in rows for v in row[1:])
    return "\n".join(f"{row[0]:<{width}}" + "".join(f"  {v:>{cell}}" for v in row[1:])
                     for row in rows)
