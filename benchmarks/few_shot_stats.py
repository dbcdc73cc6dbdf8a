"""Few-shot-safe normalization: standardization statistics from the k labelled images vs from
the unlabelled pool (``--stats-from``), for the last-layer baseline and the FNE recipe.

For k = 1, 2, 5, 10 labelled images per class and 5 seeded balanced draws from the training
split, each configuration is trained twice: with statistics from the k-shot training rows
(``--stats-from train``, the default) and with statistics from the whole training split
without its labels (the unlabelled pool; the test split is never in it). C is chosen by the
default fast search with stratified ``min(5, k)``-fold CV on the draw; with k = 1 no CV is
possible and C = 1 is used. Every model is scored once on the whole test split.

    python -m benchmarks.few_shot_stats [--datasets tuxpaint,openclipart,fashion-mnist] [--quick]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from benchmarks import common, harness
from benchmarks.datasets import few_shot_splits
from featpipe.workflows.fit import TrainingSpec, fit_features

NAME = "few_shot_stats"
MODULE = "benchmarks.few_shot_stats"
SHOTS, QUICK_SHOTS = (1, 2, 5, 10), (1, 2)
SEEDS, QUICK_SEEDS = 5, 2
ONE_SHOT_C = 1.0
STATS = ("train", "pool")
SUMMARY_KEYS = ("dataset", "configuration", "stats", "shots")  # + n_seeds, mean, std
COLUMNS = ["dataset", "configuration", "stats", "shots", "seed", "cv", "n_train", "n_pool",
           "best_C", "accuracy"]


@dataclass(frozen=True)
class Configuration:
    label: str
    recipe: str
    last_layer_only: bool
    normalize: str | None = None
    classifier: str | None = None


CONFIGURATIONS = (
    Configuration("last layer (bn2), standardize, LinearSVC", None, True, "standard",
                  "linearsvc"),
    Configuration("FNE, full network", "fne", False),
)


def make_spec(config: Configuration, cv: int, seed: int, grid=None) -> TrainingSpec:
    return TrainingSpec(recipe=config.recipe, normalize=config.normalize,
                        classifier=config.classifier, cv=cv, seed=seed, grid=dict(grid or {}))


def fit_and_score(train, test, pool, config: Configuration, seed: int) -> dict:
    """Tune C by CV when every class has >= 2 images (else C = 1); score the test split."""
    folds = common.few_shot_cv(train.y)
    spec = make_spec(config, folds or 2, seed, None if folds else {"clf__C": [ONE_SHOT_C]})
    if folds is None:  # one image per class: a one-value grid, fitted without CV
        from featpipe.classical.recipes import build_recipe, use_pool_statistics

        model, _ = build_recipe(spec.recipe, layer_slices=train.layer_slices,
                                normalize=spec.normalize, classifier=spec.classifier,
                                random_state=seed)
        if pool is not None:
            use_pool_statistics(model, pool)
        model.set_params(clf__C=ONE_SHOT_C).fit(train.X, train.y)
        best_C = ONE_SHOT_C
    else:
        search = fit_features(train, spec, statistics_pool=pool)
        model, best_C = search.best_estimator, search.best_params["clf__C"]
    accuracy = float(np.mean(model.predict(test.X) == test.y))
    return {"cv": folds or "fixed", "best_C": float(best_C), "accuracy": accuracy}


def score_dataset(split: common.Split, args) -> list[dict]:
    rows = []
    shots = [k for k in (QUICK_SHOTS if args.quick else SHOTS)
             if k <= common.smallest_class(split.train.y)]
    seeds = [args.seed + s for s in range(QUICK_SEEDS if args.quick else SEEDS)]
    for config in CONFIGURATIONS:
        layers = [common.LAST_LAYER] if config.last_layer_only else split.layers
        train_all, test = split.only(layers)
        pool = train_all.X  # the training split without its labels
        for k in shots:
            for seed, picked in zip(seeds, few_shot_splits(train_all.y, k, seeds)):
                draw = train_all.subset(picked)
                for stats in STATS:
                    row = fit_and_score(draw, test, pool if stats == "pool" else None, config,
                                        seed)
                    rows.append({"configuration": config.label, "stats": stats, "shots": k,
                                 "seed": seed, "n_train": len(draw.y),
                                 "n_pool": len(pool) if stats == "pool" else len(draw.y),
                                 **row})
            for stats in STATS:
                mean = np.mean([r["accuracy"] for r in rows if r["shots"] == k
                                and r["stats"] == stats and r["configuration"] == config.label])
                harness.log(f"[{split.dataset}] {config.label}, {k} shots, {stats}: {mean:.3f}")
    return rows


def pivot(summary: list[dict], dataset: str) -> str:
    """Rows: configuration x statistics; columns: shots; cells ``mean ± std``."""
    mine = [r for r in summary if r["dataset"] == dataset]
    shots = sorted({r["shots"] for r in mine})
    lines = ["| configuration | statistics from | " + " | ".join(f"{k} / class" for k in shots)
             + " |", "|---|---|" + "---|" * len(shots)]
    for config in dict.fromkeys(r["configuration"] for r in mine):
        for stats in STATS:
            cells = {r["shots"]: r for r in mine
                     if r["configuration"] == config and r["stats"] == stats}
            lines.append(f"| {config} | {STATS_LABELS[stats]} | " + " | ".join(
                f"{cells[k]['mean']:.3f} ± {cells[k]['std']:.3f}" if k in cells else "—"
                for k in shots) + " |")
    return "\n".join(lines)


STATS_LABELS = {"train": "k labelled images (train)", "pool": "unlabelled pool"}


def plot(summary: list[dict], path) -> None:
    datasets = list(dict.fromkeys(r["dataset"] for r in summary))
    fig, axes = harness.figure(len(datasets), width=4.6, height=3.8)
    for ax, dataset in zip(axes, datasets):
        mine = [r for r in summary if r["dataset"] == dataset]
        shots = sorted({r["shots"] for r in mine})
        for i, config in enumerate(dict.fromkeys(r["configuration"] for r in mine)):
            for stats, style in zip(STATS, ("--", "-")):
                line = [r for k in shots for r in mine if r["shots"] == k
                        and r["configuration"] == config and r["stats"] == stats]
                ax.errorbar([str(r["shots"]) for r in line], [r["mean"] for r in line],
                            yerr=[r["std"] for r in line], linestyle=style, marker="o",
                            capsize=3, color=f"C{i}", label=f"{config}: {STATS_LABELS[stats]}")
        ax.set_xlabel("labelled images per class")
    harness.finish_panels(fig, axes, datasets, "test accuracy (mean ± std over seeds)", path,
                          legend_size=6)


def main(argv: Sequence[str] | None = None) -> int:
    args = harness.parse_args(harness.parser(__doc__.splitlines()[0]), argv)
    rows, out = common.run_comparison(args, score_dataset, NAME, COLUMNS)
    summary = common.summarize_seeds(rows, SUMMARY_KEYS, out, NAME)
    plot(summary, out.png)
    n_seeds = QUICK_SEEDS if args.quick else SEEDS
    notes = (f"Test accuracy, mean ± std over {n_seeds} seeded balanced draws (population std). "
             "'k labelled images' = statistics from the draw itself (per CV fold, then the "
             "draw; `--stats-from train`); 'unlabelled pool' = statistics from the whole "
             "training split with its labels unread (`--stats-from FILE.h5` / "
             "`use_pool_statistics`); the test split is never in the pool. C: fast search "
             f"with `min(5, k)`-fold CV for k >= 2, C = {ONE_SHOT_C:g} for k = 1.")
    tables = [f"## {d}\n\n" + pivot(summary, d)
              for d in dict.fromkeys(r["dataset"] for r in summary)]
    return common.finish(out, "Few-shot: statistics from the labelled images vs an "
                         "unlabelled pool",
                         [notes, *tables, f"![few-shot stats]({out.png.name})"], args, MODULE)


if __name__ == "__main__":
    sys.exit(main())
