"""The Markdown report: best parameters, the CV table, test metrics, per-class accuracy."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from featpipe.fileio import json_default


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


def _search_notes(extra: Mapping) -> list[str]:
    notes = []
    extended = extra.get("grid_extended")
    if extended:
        added = ", ".join(_fmt(v) for v in extended["added"])
        notes.append(f"- grid extended {extended['direction']}: {extended['parameter']} = "
                     f"{added} added ({extended['reason']})")
    note = (extra.get("convergence") or {}).get("note")
    if note:
        notes.append(f"- convergence: {note}")
    return notes


def render_markdown(report: Mapping) -> str:
    """Markdown rendering of a :func:`build_report` dict."""
    lines = ["# featpipe report", ""]
    meta = report.get("meta") or {}
    if meta:
        lines += _table(
            ["", ""],
            [
                (k, json.dumps(v, default=json_default) if isinstance(v, (dict, list)) else v)
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
            *_search_notes(search.get("extra") or {}),
            "",
        ]
        if report.get("cv_curve"):
            lines += ["![CV curve](cv_curve.png)", ""]
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

