"""Command-line strings to the typed Python API's values.

``--reduce pca:256`` -> :class:`~featpipe.classical.recipes.Reduction`, ``--grid clf__C=0.1,1``
-> ``{"clf__C": [0.1, 1]}``, ``--layers a,b`` -> ``["a", "b"]``. The library never parses
these strings; only the command line (and scripts that take the same strings) does.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

from featpipe.errors import FeatpipeError, UsageError

__all__ = ["batch_size_option", "format_grid", "format_reduce", "parse_grid_overrides", "parse_color", "parse_layers", "parse_reduce", "parse_shard",
           "parse_value"]


def parse_reduce(spec: str | None):
    """Parse ``'pca:256'``, ``'umap:32'``, ``'pca'`` (default size) or ``'none'``.

    Parameters
    ----------
    spec : str or None

    Returns
    -------
    Reduction or None
        None means no reduction.

    Examples
    --------
    >>> parse_reduce("pca:64")
    Reduction(method='pca', n_components=64)
    >>> parse_reduce("umap")
    Reduction(method='umap', n_components=32)
    >>> parse_reduce("none") is None
    True
    """
    from featpipe.classical.recipes import REDUCERS, Reduction

    if spec is None or str(spec).strip().lower() in ("", "none"):
        return None
    method, _, size = str(spec).strip().lower().partition(":")
    if method not in REDUCERS:
        raise FeatpipeError(f"unknown reduction {spec!r}; use pca:N, umap:N or none")
    if not size:
        return Reduction(method)
    if not size.isdigit() or int(size) < 1:
        raise FeatpipeError(f"reduction {spec!r} needs a positive integer size, e.g. {method}:64")
    return Reduction(method, int(size))


def format_reduce(reduction) -> str:
    """The command-line spelling of a reduction (inverse of :func:`parse_reduce`).

    Examples
    --------
    >>> format_reduce(parse_reduce("umap:8")), format_reduce(None)
    ('umap:8', 'none')
    """
    if reduction is None or reduction is False:
        return "none"
    return f"{reduction.method}:{reduction.n_components}"


def parse_value(text: str):
    """One grid value: int, float, bool (``true``/``false``), None (``none``/``null``) or str.

    Examples
    --------
    >>> [parse_value(v) for v in ("3", "1e-2", "True", "none", "balanced")]
    [3, 0.01, True, None, 'balanced']
    """
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()
    return (
        value if isinstance(value, (int, float)) and not isinstance(value, bool) else text.strip()
    )


def parse_grid_overrides(items: Sequence[str]) -> dict[str, list]:
    """Parse ``name=v1,v2,...`` grid overrides into a parameter grid.

    Values become int, float, bool (``true``/``false``), None (``none``) or str.

    Parameters
    ----------
    items : sequence of str
        E.g. ``["clf__C=0.1,1,10", "reduce__n_components=64,128"]``.

    Returns
    -------
    dict of str to list

    Examples
    --------
    >>> parse_grid_overrides(["clf__C=0.1,1e2", "clf__class_weight=none,balanced"])
    {'clf__C': [0.1, 100.0], 'clf__class_weight': [None, 'balanced']}
    """
    grid: dict[str, list] = {}
    for item in items:
        name, sep, values = str(item).partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise FeatpipeError(
                f"grid override {item!r} is not of the form step__param=v1,v2 "
                "(e.g. clf__C=0.1,1,10)"
            )
        if "__" not in name or name.startswith("__") or name.endswith("__"):
            raise FeatpipeError(
                f"grid parameter {name!r} must name a step and a parameter, e.g. clf__C"
            )
        parsed = [parse_value(v) for v in values.split(",")]
        if any(v == "" for v in parsed):
            raise FeatpipeError(
                f"grid override {item!r} has an empty value; remove the extra comma"
            )
        grid[name] = parsed
    return grid


def format_grid(grid) -> list[str]:
    """A grid as ``--grid`` values (inverse of :func:`parse_grid_overrides` for plain values).

    Examples
    --------
    >>> format_grid({"clf__C": [0.1, 1], "clf__class_weight": [None, "balanced"]})
    ['clf__C=0.1,1', 'clf__class_weight=None,balanced']
    """
    return [f"{name}=" + ",".join(_format_value(v) for v in values)
            for name, values in grid.items()]


def _format_value(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def parse_layers(text: str | None) -> list[str] | str | None:
    """``--layers``: None (all stored layers), the preset ``all``, or comma-separated names.

    Examples
    --------
    >>> parse_layers("bn2, blocks.6.0"), parse_layers("all"), parse_layers(None)
    (['bn2', 'blocks.6.0'], 'all', None)
    """
    if text is None:
        return None
    if text.strip() == "all":
        return "all"
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``--shard K/N`` -> ``(K, N)``.

    Examples
    --------
    >>> parse_shard("1/4"), parse_shard(None)
    ((1, 4), None)
    """
    if spec is None:
        return None
    try:
        k, n = (int(part) for part in spec.split("/"))
    except ValueError:
        raise UsageError(f"`shard` must look like K/N (e.g. 0/4), got {spec!r}") from None
    return k, n


COLORS = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128),
          "gray": (128, 128, 128)}


def parse_color(text: str) -> tuple[int, int, int]:
    """``white`` / ``R,G,B`` / ``#RRGGBB`` -> an RGB triple.

    Examples
    --------
    >>> parse_color("white"), parse_color("0,128,255"), parse_color("#FF0000")
    ((255, 255, 255), (0, 128, 255), (255, 0, 0))
    """
    text = text.strip().lower()
    try:
        if text in COLORS:
            return COLORS[text]
        if text.startswith("#") and len(text) == 7:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
        values = tuple(int(v) for v in text.split(","))
        if len(values) == 3:
            return values
    except ValueError:
        pass
    raise UsageError(f"`pad_color` must be white, black, grey, R,G,B or #RRGGBB, got {text!r}")


def batch_size_option(text: str) -> int | str:
    """``--batch-size``: a positive int or ``auto`` (an argparse ``type``: a bad value exits 2).

    Examples
    --------
    >>> batch_size_option("64"), batch_size_option("auto")
    (64, 'auto')
    """
    import argparse

    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1 or auto, got {text!r}")
    return value
