"""What every search does around its fits: extend the grid when the optimum sits at its edge,
count the fits that stopped at the iteration limit (one summary instead of a warning per fit),
and show progress.

Grid extension: when the best value of the regularisation parameter (``clf__C`` or
``clf__alpha``) is the smallest or the largest of its grid, the optimum may lie beyond it. The
search then evaluates one more value a decade further out on the same folds, and keeps going
(at most :data:`MAX_EXTENSIONS` decades) while each new value is strictly better and again at
the edge; on a plateau that reaches both edges it tries upwards first, then downwards.
``SearchResult.extra["grid_extended"]`` records what was added and why.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from collections.abc import Callable, Iterator, Mapping

from scipy.stats import rankdata
from sklearn.exceptions import ConvergenceWarning

EXTENDABLE = ("clf__C", "clf__alpha")
MAX_EXTENSIONS = 3


def extendable_parameter(grid: Mapping[str, list]) -> str | None:
    """The grid's regularisation parameter, when it has at least two positive numeric values."""
    for name in EXTENDABLE:
        values = grid.get(name, [])
        if len(values) >= 2 and all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                    and v > 0 for v in values):
            return name
    return None


def extend_at_edges(result, grid: Mapping[str, list], rerun: Callable[[dict], object]):
    """``result`` of a search over ``grid``, extended a decade at a time past a best edge.

    ``rerun(grid)`` searches another grid on the same folds and returns its result.
    """
    name = extendable_parameter(grid)
    if name is None:
        return result
    values, added, failed = sorted(float(v) for v in grid[name]), [], set()
    for _ in range(MAX_EXTENSIONS):
        direction = _direction(result, name, values, failed)
        if direction is None:
            break
        new = values[0] / 10 if direction == "below" else values[-1] * 10
        others = {k: [v] for k, v in result.best_params.items() if k != name}
        trial = rerun({**others, name: [new]})
        added.append(new)
        values = sorted([*values, new])
        table = _merge_tables(result.cv_table, trial.cv_table)
        seconds = result.fit_seconds + trial.fit_seconds
        if trial.best_score > result.best_score:
            trial.extra = {**result.extra, **{k: v for k, v in trial.extra.items()
                                              if k not in result.extra}}
            result = trial
        else:
            failed.add(direction)
        result.cv_table, result.fit_seconds = table, seconds
        result.extra["grid_extended"] = {
            "parameter": name, "added": list(added), "direction": direction,
            "reason": "the best value was at the edge of the grid"}
    return result


def _direction(result, name: str, values: list[float], failed: set) -> str | None:
    """Which edge to extend past: one where the best score sits (upwards first when a
    plateau reaches both), unless extending there did not help already."""
    top, bottom = (_score_at(result, name, edge) for edge in (values[-1], values[0]))
    for direction, score in (("above", top), ("below", bottom)):
        if score == result.best_score and direction not in failed:
            return direction
    return None


def _score_at(result, name: str, value: float) -> float | None:
    """The best mean CV score of the candidates with ``name == value``."""
    scores = [row["mean_test_score"] for row in result.cv_table
              if float(row["params"][name]) == value]
    return max(scores) if scores else None


def _merge_tables(first: list[dict], second: list[dict]) -> list[dict]:
    rows = [dict(row) for row in first + second]
    ranks = rankdata([-row["mean_test_score"] for row in rows], method="min")
    for row, rank in zip(rows, ranks):
        row["rank"] = int(rank)
    return rows


@contextlib.contextmanager
def counting_convergence() -> Iterator[dict]:
    """Count ``ConvergenceWarning`` s raised in this process (all threads) instead of printing
    them; other warnings pass through. Yields a dict whose ``"n"`` is filled in at exit."""
    counts = {"n": 0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        try:
            yield counts
        finally:
            counts["n"] = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
            others = [w for w in caught if not issubclass(w.category, ConvergenceWarning)]
    for w in others:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def convergence_note(n_at_limit: int, n_fits: int, max_iter) -> str | None:
    """One line on fits that stopped at the iteration limit, with what to do (None if none)."""
    if not n_at_limit:
        return None
    limit = f" (`max_iter={max_iter}`)" if max_iter is not None else ""
    return (f"{n_at_limit} of at most {n_fits} fits stopped at the iteration limit{limit}; the "
            "scores of those candidates may be slightly off: raise `max_iter`, or prefer "
            "smaller C values")


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, description: str = "fit") -> Iterator:
    """A tqdm bar on stderr over ``total`` fits, ticked by the yielded ``tick(n)``."""
    if not enabled:
        yield lambda n=1: None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=description, unit="fit", leave=False) as bar:
        yield bar.update
