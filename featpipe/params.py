"""Parameter checks declared once, as data (modelled on scikit-learn's ``_param_validation``).

A module declares the constraints of its parameters in one dict and calls :func:`validate` with
the values; a value that satisfies none of its parameter's constraints is refused with one line
that names the parameter in backticks (the command line rewrites `name` to its ``--name`` flag)::

    CONSTRAINTS = {"cv": [Interval(int, 2, None)], "method": [Options({"fast", "grid"})]}
    validate({"cv": cv, "method": method}, CONSTRAINTS)

A constraint is a :class:`Constraint` (:class:`Interval`, :class:`Options`, :class:`InstanceOf`,
:class:`HasMethods`, :class:`SequenceOf`), a class (an instance of it), ``None`` (the value
None) or ``"boolean"`` (True or False).

Examples
--------
>>> validate({"cv": 1}, {"cv": [Interval(int, 2, None)]})
Traceback (most recent call last):
...
featpipe.params.InvalidParameterError: `cv` must be an int >= 2, got 1
>>> validate({"method": "slow"}, {"method": [Options(("fast", "grid")), None]})
Traceback (most recent call last):
...
featpipe.params.InvalidParameterError: `method` must be one of fast, grid or None, got 'slow'
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from featpipe.errors import FeatpipeError

__all__ = ["Constraint", "HasMethods", "InstanceOf", "Interval", "InvalidParameterError",
           "Options", "Pattern", "SequenceOf", "describe", "validate"]


class InvalidParameterError(FeatpipeError):
    """A parameter value outside its declared constraints (one line, parameter in backticks).

    A :class:`~featpipe.errors.FeatpipeError` (exit code 1 on the command line, as for every
    other input the library refuses); a ``ValueError`` as scikit-learn raises for bad values.
    """


class Constraint:
    """One acceptable kind of value: ``satisfied_by(value)`` and a description for messages."""

    def satisfied_by(self, value) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def __str__(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


class Interval(Constraint):
    """A number of ``kind`` (``int`` or ``float``; bools never count) in ``[left, right]``.

    ``None`` leaves a side open; ``closed`` is ``"both"``, ``"left"``, ``"right"`` or
    ``"neither"``. A float interval accepts ints too.

    Examples
    --------
    >>> str(Interval(int, 1, None)), str(Interval(float, 0, 1, closed="right"))
    ('an int >= 1', 'a float in (0, 1]')
    """

    def __init__(self, kind: type, left=None, right=None, *, closed: str = "both"):
        if kind not in (int, float):
            raise TypeError(f"Interval kind must be int or float, not {kind!r}")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed={closed!r} must be both, left, right or neither")
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def satisfied_by(self, value) -> bool:
        if not (_is_int(value) if self.kind is int else _is_real(value)):
            return False
        if self.kind is float and np.isnan(value):
            return False
        left_closed = self.closed in ("both", "left")
        right_closed = self.closed in ("both", "right")
        if self.left is not None and (value < self.left or (value == self.left
                                                            and not left_closed)):
            return False
        return self.right is None or not (value > self.right
                                          or (value == self.right and not right_closed))

    def __str__(self) -> str:
        name = "an int" if self.kind is int else "a float"
        if self.left is not None and self.right is not None:
            opening = "[" if self.closed in ("both", "left") else "("
            closing = "]" if self.closed in ("both", "right") else ")"
            return f"{name} in {opening}{self.left}, {self.right}{closing}"
        if self.left is not None:
            return f"{name} {'>=' if self.closed in ('both', 'left') else '>'} {self.left}"
        if self.right is not None:
            return f"{name} {'<=' if self.closed in ('both', 'right') else '<'} {self.right}"
        return name


class Options(Constraint):
    """One of ``values``, compared by type and value (``0`` is not ``False``).

    Examples
    --------
    >>> str(Options(("fast", "grid")))
    'one of fast, grid'
    """

    def __init__(self, values: Iterable):
        self.values = tuple(values)

    def satisfied_by(self, value) -> bool:
        return any(type(value) is type(option) and value == option for option in self.values)

    def __str__(self) -> str:
        if len(self.values) == 1:
            return _show(self.values[0])
        return "one of " + ", ".join(_show(option) for option in self.values)


class Pattern(Constraint):
    """A string matching the regular expression ``regex`` entirely, described as
    ``description``.

    Examples
    --------
    >>> device = Pattern(r"cpu|auto|cuda(:[0-9]+)?", "cpu, auto, cuda or cuda:N")
    >>> device.satisfied_by("cuda:1"), device.satisfied_by("gpu"), str(device)
    (True, False, 'cpu, auto, cuda or cuda:N')
    """

    def __init__(self, regex: str, description: str):
        import re

        self.regex, self.description = re.compile(regex), description

    def satisfied_by(self, value) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None

    def __str__(self) -> str:
        return self.description


class InstanceOf(Constraint):
    """An instance of ``kind``, described as ``description`` (default: "a <class name>")."""

    def __init__(self, kind: type | tuple, description: str | None = None):
        self.kind = kind
        names = kind if isinstance(kind, tuple) else (kind,)
        self.description = description or " or ".join(_article(k.__name__) for k in names)

    def satisfied_by(self, value) -> bool:
        return isinstance(value, self.kind)

    def __str__(self) -> str:
        return self.description


class HasMethods(Constraint):
    """An object with all of ``methods`` (e.g. a CV splitter's ``get_n_splits``)."""

    def __init__(self, methods: str | Sequence[str], description: str | None = None):
        self.methods = (methods,) if isinstance(methods, str) else tuple(methods)
        self.description = description or ("an object with " + ", ".join(self.methods))

    def satisfied_by(self, value) -> bool:
        return all(callable(getattr(value, method, None)) for method in self.methods)

    def __str__(self) -> str:
        return self.description


class SequenceOf(Constraint):
    """A list or tuple (not a string) whose items are all instances of ``kind``.

    Examples
    --------
    >>> SequenceOf(str).satisfied_by(["a", "b"]), SequenceOf(str).satisfied_by("ab")
    (True, False)
    """

    def __init__(self, kind: type, description: str | None = None):
        self.kind = kind
        self.description = description or f"a list of {kind.__name__}"

    def satisfied_by(self, value) -> bool:
        return isinstance(value, (list, tuple)) and all(isinstance(v, self.kind) for v in value)

    def __str__(self) -> str:
        return self.description


class _Boolean(Constraint):
    def satisfied_by(self, value) -> bool:
        return isinstance(value, (bool, np.bool_))

    def __str__(self) -> str:
        return "a bool"


class _NoneConstraint(Constraint):
    def satisfied_by(self, value) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


def _article(name: str) -> str:
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def _show(option) -> str:
    return option if isinstance(option, str) else repr(option)


def _as_constraint(constraint) -> Constraint:
    if isinstance(constraint, Constraint):
        return constraint
    if constraint is None:
        return _NoneConstraint()
    if constraint == "boolean":
        return _Boolean()
    if isinstance(constraint, type):
        if constraint is int:
            return Interval(int)
        if constraint is float:
            return Interval(float)
        return InstanceOf(constraint)
    raise TypeError(f"unknown constraint {constraint!r}")


def describe(constraints: Sequence) -> str:
    """The constraints as words: ``'an int >= 2 or a CV splitter'``.

    Examples
    --------
    >>> describe([Interval(int, 1, None), None])
    'an int >= 1 or None'
    """
    words = [str(_as_constraint(c)) for c in constraints]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def validate(params: Mapping[str, object], constraints: Mapping[str, Sequence]) -> None:
    """Check each of ``params`` that has constraints; raise on the first value meeting none.

    Parameters
    ----------
    params : mapping of str to object
        Parameter names (as the Python API spells them) and their values.
    constraints : mapping of str to list
        Each parameter's acceptable kinds of value (see the module notes).

    Raises
    ------
    InvalidParameterError
        One line: "`name` must be <constraints>, got <value>".

    Examples
    --------
    >>> validate({"n_jobs": 2, "other": "unchecked"}, {"n_jobs": [Interval(int, 1, None), None]})
    """
    for name, value in params.items():
        if name not in constraints:
            continue
        kinds = [_as_constraint(c) for c in constraints[name]]
        if not any(kind.satisfied_by(value) for kind in kinds):
            raise InvalidParameterError(f"`{name}` must be {describe(kinds)}, got {_repr(value)}")


def _repr(value, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
