"""Evaluation of a fitted pipeline and reports as JSON, Markdown and PNG.

``write_report`` writes ``report.json`` (everything, machine-readable), ``report.md``
(best parameters, the CV table sorted by score, test metrics, per-class accuracy) and
``confusion.png``. ``comparison_table`` / ``comparison_plot`` put several runs side by side.

Example
-------
>>> from sklearn.datasets import load_iris
>>> from sklearn.linear_model import LogisticRegression
>>> X, y = load_iris(return_X_y=True)
>>> model = LogisticRegression(max_iter=500).fit(X, y)
>>> ev = evaluate(model, X, y, ["setosa", "versicolor", "virginica"])
>>> round(ev["accuracy"], 2), ev["per_class"][0]["class"]
(0.97, 'setosa')
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

from featpipe.errors import FeatpipeError

__all__ = ["build_report", "comparison_plot", "comparison_table", "evaluate", "write_report"]


def evaluate(estimator, X_test, y_test, class_names: Sequence[str] | None = None) -> dict:
    """Test-set metrics of a fitted classifier.

    Parameters
    ----------
    estimator : fitted classifier or pipeline
    X_test : array of shape (n_samples, n_features)
    y_test : array of shape (n_samples,)
        Integer labels indexing ``class_names``.
    class_names : sequence of str, default=None
        Names of labels 0..k-1; None uses the labels themselves.

    Returns
    -------
    dict
        ``n_test``, ``accuracy``, ``balanced_accuracy``, ``per_class`` (list of
        ``{"class", "n", "accuracy"}``; accuracy is None for a class absent from the test
        set), ``labels``, ``confusion_matrix`` (rows true, columns predicted) and
        ``predict_seconds``.
    """
    if X_test is None or np.ndim(X_test) != 2 or X_test.shape[0] == 0:
        raise FeatpipeError("no test samples to evaluate; use a test split with at least one image")
    if y_test is None or len(y_test) != X_test.shape[0]:
        raise FeatpipeError(
            "test labels are missing or do not match the test features; use a labelled store"
        )
    y_test = np.asarray(y_test)
    start = time.perf_counter()
    y_pred = np.asarray(estimator.predict(X_test))
    predict_seconds = time.perf_counter() - start

    labels = (
        np.arange(len(class_names))
        if class_names is not None
        else np.unique(np.concatenate([y_test, y_pred]))
    )
    names = list(class_names) if class_names is not None else [str(label) for label in labels]
    matrix = confusion_matrix(y_test, y_pred, labels=labels)
    support = matrix.sum(axis=1)
    per_class = [
        {"class": name, "n": int(n), "accuracy": float(matrix[i, i] / n) if n else None}
        for i, (name, n) in enumerate(zip(names, support, strict=True))
    ]
    return {
        "n_test": int(len(y_test)),
        "accuracy": float(accuracy_score(y_test, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_test, y_pred)),
        "per_class": per_class,
        "labels": names,
        "confusion_matrix": matrix.tolist(),
        "predict_seconds": predict_seconds,
    }


def build_report(
    *, search=None, evaluation: Mapping | None = None, meta: Mapping | None = None
) -> dict:
    """The JSON-serializable report: ``meta``, ``search`` (no estimator), ``evaluation``."""
    report: dict = {"meta": dict(meta or {})}
    if search is not None:
        report["search"] = {
            "best_params": search.best_params,
            "best_score": search.best_score,
            "scoring": search.scoring,
            "n_splits": search.n_splits,
            "fit_seconds": search.fit_seconds,
            "refit_seconds": search.refit_seconds,
            "cv_table": search.cv_table,
            **({"extra": search.extra} if search.extra else {}),
        }
    if evaluation is not None:
        report["evaluation"] = dict(evaluation)
    return report


def write_report(
    out_dir, *, search=None, evaluation: Mapping | None = None, meta: Mapping | None = None
) -> list[Path]:
    """Write ``report.json``, ``report.md`` and (with an evaluation) ``confusion.png``.

    Each file is written under a temporary name and renamed, so a failure leaves no
    partial file.

    Parameters
    ----------
    out_dir : str or Path
        Created if missing.
    search : SearchResult, default=None
    evaluation : dict, default=None
        From :func:`evaluate`.
    meta : dict, default=None
        Run description (recipe, store, backbone, layers...), shown first.

    Returns
    -------
    list of Path
        The files written.
    """
    report = build_report(search=search, evaluation=evaluation, meta=meta)
    text_json = json.dumps(report, indent=2, default=_json_default)
    text_md = render_markdown(report)
    figure = _confusion_figure(evaluation) if evaluation is not None else None

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        _write_atomic(out_dir / "report.json", lambda f: f.write(text_json.encode())),
        _write_atomic(out_dir / "report.md", lambda f: f.write(text_md.encode())),
    ]
    if figure is not None:
        written.append(
            _write_atomic(
                out_dir / "confusion.png", lambda f: figure.savefig(f, format="png", dpi=100)
            )
        )
    return written


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _write_atomic(path: Path, write: Callable) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------- Markdown


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return (
            f"{value:.{digits}g}"
            if abs(value) < 1e-3 or abs(value) >= 1e4
            else f"{value:.{digits}f}"
        )
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return lines


def _params_text(params: Mapping) -> str:
    return (
        ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        or "(defaults)"
    )


def render_markdown(report: Mapping) -> str:
    """Markdown rendering of a :func:`build_report` dict."""
    lines = ["# featpipe report", ""]
    meta = report.get("meta") or {}
    if meta:
        lines += _table(
            ["", ""],
            [
                (k, json.dumps(v, default=_json_default) if isinstance(v, (dict, list)) else v)
                for k, v in meta.items()
            ],
        )
        lines.append("")
    search = report.get("search")
    if search:
        lines += [
            "## Model selection",
            "",
            f"- best parameters: {_params_text(search['best_params'])}",
            f"- cross-validated {search['scoring']}: {_fmt(search['best_score'])} "
            f"({search['n_splits']} folds)",
            f"- search time: {search['fit_seconds']:.2f} s (refit {search['refit_seconds']:.2f} s)",
            "",
        ]
        rows = sorted(search["cv_table"], key=lambda r: (-r["mean_test_score"], r["rank"]))
        lines += _table(
            ["rank", "parameters", f"mean {search['scoring']}", "std", "fit s"],
            [
                (
                    r["rank"],
                    _params_text(r["params"]),
                    r["mean_test_score"],
                    r["std_test_score"],
                    r["mean_fit_time"],
                )
                for r in rows
            ],
        )
        lines.append("")
    evaluation = report.get("evaluation")
    if evaluation:
        lines += [
            "## Test set",
            "",
            f"- samples: {evaluation['n_test']}",
            f"- accuracy: {_fmt(evaluation['accuracy'])}",
            f"- balanced accuracy: {_fmt(evaluation['balanced_accuracy'])}",
            f"- predict time: {evaluation['predict_seconds']:.3f} s",
            "",
        ]
        lines += _table(
            ["class", "n", "accuracy"],
            [(c["class"], c["n"], c["accuracy"]) for c in evaluation["per_class"]],
        )
        lines += ["", "![confusion matrix](confusion.png)", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures


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
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(len(names))
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
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if count > threshold else "black",
            )
    figure.tight_layout()
    return figure


# --------------------------------------------------------------------------- comparisons


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
    return _write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=100))
