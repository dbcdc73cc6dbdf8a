"""Comparison 3, few-shot: 1, 2, 5, 10, 20 and all training images per class.

Every configuration of comparison 2 (last / second-to-last layer baselines, full network with
per-layer L2, standardization, FNE, and the linear-probe protocol) is trained on balanced
k-shot draws from the training split (5 seeds; ``benchmarks.datasets.few_shot_splits``) and
scored on the whole test split. Mean ± std over the seeds.

CV on tiny training sets: with k >= 2 images per class, C is chosen by stratified
``cv = min(5, k)``-fold CV on the k-shot set; with k = 1 no CV is possible and a fixed default
is used (C = 1 for LinearSVC pipelines, the middle of the Kornblith sweep, C = 10**0.5, for the
linear probe). "all" uses the whole training split once (the draw does not depend on the seed).

    python -m benchmarks.few_shot [--datasets tuxpaint,openclipart] [--quick]
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from benchmarks import common, harness
from benchmarks.compare_recipes import CONFIGURATIONS, layer_names, make_spec
from benchmarks.datasets import few_shot_splits

NAME = "few_shot"
SHOTS, QUICK_SHOTS = (1, 2, 5, 10, 20), (1, 2, 5)
SEEDS, QUICK_SEEDS = 5, 2
ALL = "all"
COLUMNS = ["dataset", "similarity", "configuration", "shots", "seed", "cv", "n_train",
           "accuracy", "balanced_accuracy", "best_params", "fit_seconds"]
SUMMARY_KEYS = ("dataset", "similarity", "configuration", "shots")  # + n_seeds, mean, std


def shot_levels(train_y: np.ndarray, args) -> list:
    """The k values the training split can supply (every class needs k images), then "all"."""
    smallest = common.smallest_class(train_y)
    levels = [k for k in (QUICK_SHOTS if args.quick else SHOTS) if k <= smallest]
    skipped = [k for k in (QUICK_SHOTS if args.quick else SHOTS) if k > smallest]
    if skipped:
        harness.log(f"skipping shots {skipped}: the smallest class has {smallest} training images")
    return levels + [ALL]


def draws(train_y: np.ndarray, shots, args) -> list[tuple[int, np.ndarray]]:
    """``(seed, training rows)`` per seed; a single draw for "all"."""
    if shots == ALL:
        return [(args.seed, np.arange(len(train_y)))]
    seeds = [args.seed + s for s in range(QUICK_SEEDS if args.quick else SEEDS)]
    return list(zip(seeds, few_shot_splits(train_y, shots, seeds)))


def fit_one(train, test, config, args) -> dict:
    """CV on the draw when every class has >= 2 images, else the documented fixed default."""
    folds = common.few_shot_cv(train.y, common.cv_folds(args))
    spec = make_spec(config, args, cv=folds or 2)
    if folds is None:
        return {"cv": "fixed", **common.fit_fixed(train, test, spec, common.fixed_default(spec))}
    return {"cv": folds, **common.run_spec(train, test, spec, args)}


def score_few_shot(split: common.Split, args) -> list[dict]:
    rows = []
    for config in CONFIGURATIONS:
        layers = layer_names(config.layers, split.layers)
        train_all, test = split.only(layers)
        for shots in shot_levels(train_all.y, args):
            for seed, picked in draws(train_all.y, shots, args):
                row = fit_one(train_all.subset(picked), test, config, args)
                rows.append({"configuration": config.label, "shots": shots, "seed": seed, **row})
            mean = np.mean([r["accuracy"] for r in rows if r["shots"] == shots and
                            r["configuration"] == config.label])
            harness.log(f"[{split.dataset}] {config.label}, {shots} shots: {mean:.3f}")
    return rows


def pivot(summary: list[dict], dataset: str) -> str:
    """Configurations as rows, shots as columns, cells ``mean ± std``."""
    mine = [r for r in summary if r["dataset"] == dataset]
    shots = list(dict.fromkeys(r["shots"] for r in mine))
    lines = ["| configuration | " + " | ".join(f"{k} / class" if k != ALL else "all"
                                               for k in shots) + " |",
             "|---|" + "---|" * len(shots)]
    for config in dict.fromkeys(r["configuration"] for r in mine):
        cells = {r["shots"]: r for r in mine if r["configuration"] == config}
        lines.append(f"| {config} | " + " | ".join(
            _mean_std(cells[k]) if k in cells else "—" for k in shots) + " |")
    return "\n".join(lines)


def _mean_std(row: dict) -> str:
    if row["n_seeds"] == 1:
        return f"{row['mean']:.3f}"
    return f"{row['mean']:.3f} ± {row['std']:.3f}"


def plot(summary: list[dict], path) -> None:
    datasets = list(dict.fromkeys(r["dataset"] for r in summary))
    fig, axes = harness.figure(len(datasets), width=4.6, height=3.8)
    for ax, dataset in zip(axes, datasets):
        mine = [r for r in summary if r["dataset"] == dataset]
        shots = list(dict.fromkeys(r["shots"] for r in mine))
        for config in dict.fromkeys(r["configuration"] for r in mine):
            line = [next(r for r in mine if r["configuration"] == config and r["shots"] == k)
                    for k in shots]
            ax.errorbar(range(len(shots)), [r["mean"] for r in line],
                        yerr=[r["std"] for r in line], marker="o", capsize=3, label=config)
        ax.set_xticks(range(len(shots)), [str(k) for k in shots])
        ax.set_xlabel("training images per class")
    harness.finish_panels(fig, axes, [f"{d} ({common.similarity(d)})" for d in datasets],
                          "test accuracy (mean ± std)", path)


def main(argv: Sequence[str] | None = None) -> int:
    args = harness.parse_args(harness.parser(__doc__.splitlines()[0]), argv)
    rows, out = common.run_comparison(args, score_few_shot, NAME, COLUMNS)
    summary = common.summarize_seeds(rows, SUMMARY_KEYS, out, NAME)
    plot(summary, out.png)
    n_seeds = QUICK_SEEDS if args.quick else SEEDS
    notes = (f"Test accuracy, mean ± std over {n_seeds} seeded balanced draws from the training "
             "split (population std). With k >= 2 images per class C is chosen by stratified "
             "`min(5, k)`-fold CV on the draw (`min(3, k)` with --quick); with k = 1 no CV is "
             "possible and the fixed default is used: C = 1 for LinearSVC pipelines, "
             "C = 10**0.5 (the middle of the Kornblith sweep) for the linear probe. `all` = "
             "the whole training split, one run. Shot counts above the smallest class's "
             "training images are left out.")
    tables = [f"## {d} ({common.similarity(d)} similarity)\n\n" + pivot(summary, d)
              for d in dict.fromkeys(r["dataset"] for r in summary)]
    return common.finish(out, "Comparison 3: few-shot",
                         [notes, *tables, f"![few-shot]({out.png.name})"], args,
                         f"benchmarks.{NAME}")


if __name__ == "__main__":
    sys.exit(main())
