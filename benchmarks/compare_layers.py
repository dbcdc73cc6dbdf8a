"""Comparison 1, layer by layer: a linear classifier on each captured layer alone.

The Yosinski / Razavian curve: where along the network does transfer peak, for a
high-similarity target (Tux Paint photos) and low-similarity ones (OpenClipart drawings,
Fashion-MNIST)? Each layer's mean-pooled activations are standardized (training statistics)
and fed to multinomial logistic regression; C is chosen by stratified CV on the training split
from a thinned Kornblith sweep, and the test split is scored once per layer.

    python -m benchmarks.compare_layers [--datasets tuxpaint,openclipart] [--quick]
"""

from __future__ import annotations

import sys
from typing import Sequence

from benchmarks import common, harness
from featpipe.workflows.fit import TrainingSpec

NAME = "compare_layers"
# 7 of the Kornblith sweep's decades (C = 1e-4 .. 1e2); --quick keeps 3 of them.
LAYER_C_GRID = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
COLUMNS = ["dataset", "similarity", "depth", "layer", "n_features", "accuracy",
           "balanced_accuracy", "cv_accuracy", "best_params", "fit_seconds", "n_train", "n_test"]


def layer_grid(args) -> list[float]:
    return LAYER_C_GRID if not args.quick else LAYER_C_GRID[1::3]


def layer_spec(args) -> TrainingSpec:
    return TrainingSpec(recipe="linear-probe",
                        grid={"clf__C": list(layer_grid(args))},
                        cv=common.cv_folds(args), seed=args.seed)


def score_layers(split: common.Split, args) -> list[dict]:
    """One row per layer, in forward order."""
    spec, rows = layer_spec(args), []
    for depth, layer in enumerate(split.layers):
        train, test = split.only([layer])
        row = {"depth": depth, "layer": layer, **common.run_spec(train, test, spec, args)}
        harness.log(f"[{split.dataset}] {layer}: test {row['accuracy']:.3f}")
        rows.append(row)
    return rows


def plot(rows: list[dict], path) -> None:
    fig, (ax,) = harness.figure(1, width=8, height=4)
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        ax.plot([r["depth"] for r in mine], [r["accuracy"] for r in mine], marker="o",
                label=f"{dataset} ({common.similarity(dataset)})")
    layers = [r["layer"] for r in rows if r["dataset"] == rows[0]["dataset"]]
    ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy (one layer alone)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Linear probe on each layer alone")
    harness.save_figure(fig, path)


def peak_summary(rows: list[dict]) -> str:
    lines = ["| dataset | similarity | best layer | accuracy | last layer (bn2) "
             "| first layer (bn1) |",
             "|---|---|---|---|---|---|"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = {r["layer"]: r for r in rows if r["dataset"] == dataset}
        best = max(mine.values(), key=lambda r: r["accuracy"])
        first, last = list(mine.values())[0], list(mine.values())[-1]
        lines.append(f"| {dataset} | {common.similarity(dataset)} | {best['layer']} | "
                     f"{best['accuracy']:.3f} | {last['accuracy']:.3f} | {first['accuracy']:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = harness.parse_args(harness.parser(__doc__.splitlines()[0]), argv)
    rows, out = common.run_comparison(args, score_layers, NAME, COLUMNS)
    plot(rows, out.png)
    notes = ("Each layer alone: standardize (training statistics) -> multinomial logistic "
             f"regression (L-BFGS), C from {{{', '.join(f'{c:g}' for c in layer_grid(args))}}} "
             "by stratified CV on the training split; test split scored once. "
             "`accuracy` is test accuracy, `cv_accuracy` the best mean CV accuracy.")
    table = harness.markdown_table(
        rows, ["dataset", "depth", "layer", "n_features", "accuracy", "cv_accuracy", "best_params"])
    return common.finish(out, "Comparison 1: accuracy of each layer alone",
                         [notes, "## Peak per dataset\n\n" + peak_summary(rows),
                          "## All layers\n\n" + table, f"![layers]({out.png.name})"],
                         args, f"benchmarks.{NAME}")


if __name__ == "__main__":
    sys.exit(main())
