"""Figures (no display needed): the confusion matrix, and several runs compared side by side."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from featpipe.errors import FeatpipeError
from featpipe.fileio import atomic_write
from featpipe.report.markdown import _table


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)  # Agg canvas: no display, no global backend switch
    return figure


def _confusion_figure(evaluation: Mapping):
    matrix = np.asarray(evaluation["confusion_matrix"])
    names = evaluation["labels"]
    size = min(4 + 0.45 * len(names), 24)
    figure = _new_figure(size, size)
    ax = figure.add_subplot()
    # One quad per cell: imshow would resample the matrix to the output's pixels in float64
    # (~25 MiB for 10 classes, more than a 3,000-image fit's other fixed costs together)
    image = ax.pcolormesh(matrix, cmap="Blues")
    ax.set_aspect("equal")
    ax.invert_yaxis()  # row 0 on top, as a matrix is read
    figure.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(len(names)) + 0.5  # cell centres
    ax.set_xticks(ticks, names, rotation=90)
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        f"accuracy {evaluation['accuracy']:.3f}, balanced {evaluation['balanced_accuracy']:.3f}"
    )
    if len(names) <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(
                j + 0.5,
                i + 0.5,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if count > threshold else "black",
            )
    figure.tight_layout()
    return figure


def curve_parameter(cv_table: list[dict]) -> str | None:
    """The one numeric parameter that varies across the candidates (None if not exactly one)."""
    if len(cv_table) < 2:
        return None
    varying = [name for name in cv_table[0]["params"]
               if len({repr(row["params"][name]) for row in cv_table}) > 1]
    if len(varying) != 1 or not all(isinstance(row["params"][varying[0]], (int, float))
                                    for row in cv_table):
        return None
    return varying[0]


def cv_curve_figure(search: Mapping):
    """Mean CV score (± std over folds) against the one varying parameter; the chosen value
    marked. None when the candidates do not vary in exactly one numeric parameter."""
    name = curve_parameter(search["cv_table"])
    if name is None:
        return None
    rows = sorted(search["cv_table"], key=lambda r: r["params"][name])
    x = np.array([r["params"][name] for r in rows], dtype=float)
    mean = np.array([r["mean_test_score"] for r in rows])
    std = np.array([r.get("std_test_score", 0.0) for r in rows])
    figure = _new_figure(5.5, 3.5)
    ax = figure.add_subplot(1, 1, 1)
    ax.plot(x, mean, marker="o")
    ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    best = search["best_params"][name]
    ax.axvline(best, color="k", linestyle=":", label=f"chosen {name.split('__')[-1]}={best:g}")
    if x.min() > 0 and x.max() / x.min() > 10:
        ax.set_xscale("log")
    ax.set_xlabel(name)
    ax.set_ylabel(f"mean CV {search['scoring']}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _run_summary(run: Mapping) -> dict:
    """Headline numbers of a run: a report dict is summarised, a flat dict is used as is."""
    if "evaluation" not in run and "search" not in run:
        return {
            key: value
            for key, value in run.items()
            if value is None or isinstance(value, (str, int, float))
        }
    evaluation = run.get("evaluation") or {}
    search = run.get("search") or {}
    meta = run.get("meta") or {}
    return {
        "cv score": search.get("best_score"),
        "test accuracy": evaluation.get("accuracy"),
        "balanced accuracy": evaluation.get("balanced_accuracy"),
        "features": meta.get("n_features"),
        "fit s": search.get("fit_seconds"),
        "predict s": evaluation.get("predict_seconds"),
    }


def _summaries(runs: Mapping[str, Mapping]) -> tuple[dict[str, dict], list[str]]:
    if not runs:
        raise FeatpipeError("no runs to compare; give at least one")
    summaries = {name: _run_summary(run) for name, run in runs.items()}
    columns: list[str] = []
    for summary in summaries.values():
        columns += [
            key for key, value in summary.items() if key not in columns and value is not None
        ]
    return summaries, columns


def comparison_table(runs: Mapping[str, Mapping]) -> str:
    """Several runs side by side as one Markdown table.

    Parameters
    ----------
    runs : mapping of str to dict
        Run name -> a report dict (:func:`build_report`, or ``report.json`` loaded), or a
        flat dict of numbers (each key becomes a column).

    Returns
    -------
    str

    Examples
    --------
    >>> print(comparison_table({"fne": {"test_accuracy": 0.9, "features": 3120},
    ...                         "last layer": {"test_accuracy": 0.85, "features": 1280}}))
    | run | test_accuracy | features |
    |---|---|---|
    | fne | 0.9000 | 3120 |
    | last layer | 0.8500 | 1280 |
    """
    summaries, columns = _summaries(runs)
    rows = [
        [name] + [summary.get(column) for column in columns] for name, summary in summaries.items()
    ]
    return "\n".join(_table(["run"] + columns, rows))


def comparison_plot(runs: Mapping[str, Mapping], path) -> Path:
    """Bar chart PNG of each run's accuracy-like columns (names with "accuracy" or "score").

    Parameters
    ----------
    runs : mapping of str to dict
        As for :func:`comparison_table`.
    path : str or Path
        PNG to write (atomically).

    Returns
    -------
    Path
    """
    summaries, columns = _summaries(runs)
    metrics = [c for c in columns if "accuracy" in c or "score" in c]
    if not metrics:
        raise FeatpipeError("the runs have no accuracy or score values to plot")
    figure = _new_figure(max(4.0, 1.6 * len(summaries) + 2), 3.8)
    ax = figure.add_subplot()
    x = np.arange(len(summaries))
    width = 0.8 / len(metrics)
    for k, metric in enumerate(metrics):
        values = [float(s.get(metric) or 0.0) for s in summaries.values()]
        bars = ax.bar(
            x + (k - (len(metrics) - 1) / 2) * width, values, width, label=metric.replace("_", " ")
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, list(summaries), fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score")
    ax.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_png(figure, path)


def training_curves(history: list[Mapping], path) -> Path:
    """PNG of loss and accuracy per epoch, training and validation side by side.

    Parameters
    ----------
    history : list of dict
        Rows with ``epoch``, ``train_loss``, ``val_loss``, ``train_accuracy``, ``val_accuracy``
        (NaN where not measured, e.g. the training values of epoch 0). Rows of a curriculum
        run also carry ``pacing_fraction`` (and ``pacing_fraction_first``): a third panel
        shows the pacing.
    path : str or Path
        PNG to write (atomically).
    """
    paced = [row for row in history if _number(row.get("pacing_fraction")) is not None]
    figure = _new_figure(13.5 if paced else 9.0, 3.6)
    epochs = [row["epoch"] for row in history]
    for k, metric in enumerate(("loss", "accuracy")):
        ax = figure.add_subplot(1, 3 if paced else 2, k + 1)
        for split, style in (("train", "o-"), ("val", "s--")):
            ax.plot(epochs, [float(row[f"{split}_{metric}"]) for row in history], style,
                    label=split, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if paced:
        _pacing_panel(figure.add_subplot(1, 3, 3), paced)
    figure.tight_layout()
    return save_png(figure, path)


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN: not measured


def _pacing_panel(ax, rows: list[Mapping]) -> None:
    """A curriculum's pacing per epoch: the fraction of the training set in use."""
    epochs = [row["epoch"] for row in rows]
    ax.step(epochs, [_number(row["pacing_fraction"]) for row in rows], where="post",
            marker="o", markersize=3, label="at the epoch's last step")
    first = [_number(row.get("pacing_fraction_first")) for row in rows]
    if None not in first:
        ax.plot(epochs, first, "s--", markersize=3, label="at its first step")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("epoch")
    ax.set_ylabel("fraction of the training set in use")
    ax.set_title("curriculum pacing", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def save_png(figure, path) -> Path:
    """``figure`` as a PNG at ``path``, written atomically."""
    return atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=100))

