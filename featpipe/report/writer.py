"""Evaluation of a fitted pipeline and reports as JSON, Markdown and PNG.

``write_report`` writes ``report.json`` (everything, machine-readable), ``report.md``
(best parameters, the CV table sorted by score, test metrics, per-class accuracy) and
``confusion.png``. ``comparison_table`` / ``comparison_plot`` put several runs side by side.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from featpipe.fileio import atomic_write, json_default
from featpipe.report.markdown import render_markdown
from featpipe.report.plots import _confusion_figure, cv_curve_figure, save_png


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
    """Write ``report.json``, ``report.md``, ``cv_curve.png`` (when the candidates vary in one
    numeric parameter) and (with an evaluation) ``confusion.png``.

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
    curve = cv_curve_figure(report["search"]) if "search" in report else None
    text_json = json.dumps(report, indent=2, default=json_default)
    text_md = render_markdown({**report, "cv_curve": curve is not None})
    figure = _confusion_figure(evaluation) if evaluation is not None else None

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        atomic_write(out_dir / "report.json", text_json),
        atomic_write(out_dir / "report.md", text_md),
    ]
    for name, png in (("cv_curve.png", curve), ("confusion.png", figure)):
        if png is not None:
            written.append(save_png(png, out_dir / name))
    return written


