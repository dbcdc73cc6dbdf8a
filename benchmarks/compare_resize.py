"""Comparison 7, resize modes: crop (timm's centre crop), pad (letterbox) and squash.

Which way of bringing an image to the network's square input transfers best? The same images
are extracted three times (Lite0, `full` layers), then every mode is scored on the SAME seeded
stratified re-splits of the whole dataset (70/30, ``--splits`` of them): differences of a few
points on ~50 test images are noise, so each mode's accuracy is a mean over splits, and the
paired difference to ``crop`` (same split) comes with its standard deviation. Recipes: ``fne``
on the full network and the linear probe on the last layer, each with a thinned grid (C by
stratified CV on the training part only).

    python -m benchmarks.compare_resize [--datasets tuxpaint,openclipart,fashion-mnist]
        [--splits 5] [--quick]
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from benchmarks import common, harness
from featpipe.workflows.fit import TrainingSpec

NAME = "compare_resize"
MODES = ("crop", "pad", "squash")
TEST_FRACTION = 0.3
RECIPES = {  # name -> (layers, spec options)
    "fne": (None, dict(recipe="fne", grid={"clf__C": [1e-4, 1e-3, 1e-2]})),
    "last layer: linear probe": ([common.LAST_LAYER],
                                 dict(recipe="linear-probe",
                                      grid={"clf__C": [1e-3, 1e-2, 1e-1, 1.0]})),
}
COLUMNS = ["dataset", "similarity", "split", "mode", "recipe", "accuracy", "balanced_accuracy",
           "cv_accuracy", "best_params", "n_train", "n_test"]


def resplits(y: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded stratified 70/30 re-splits of all rows (the same for every mode)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    splitter = StratifiedShuffleSplit(n_splits, test_size=TEST_FRACTION, random_state=seed)
    return [(np.sort(a), np.sort(b)) for a, b in splitter.split(np.zeros(len(y)), y)]


def score_dataset(dataset: str, args) -> list[dict]:
    stores = {mode: common.ensure_store(dataset, args, resize=mode).load() for mode in MODES}
    reference = stores["crop"]
    for mode, data in stores.items():  # same images in the same rows, whatever the mode
        assert data.ids.tolist() == reference.ids.tolist(), mode
    if args.quick:
        keep = common.per_class_subset(reference, 10, args.seed).index
        stores = {m: d.subset(np.isin(d.index, keep)) for m, d in stores.items()}
    rows = []
    for k, (train_rows, test_rows) in enumerate(resplits(stores["crop"].y, args.splits,
                                                         args.seed)):
        for mode, data in stores.items():
            for recipe, (layers, options) in RECIPES.items():
                spec = TrainingSpec(**options, cv=common.cv_folds(args), seed=args.seed)
                train, test = data.subset(train_rows), data.subset(test_rows)
                if layers is not None:
                    train, test = common.only_layers(train, layers), common.only_layers(test,
                                                                                         layers)
                row = common.run_spec(train, test, spec, args)
                harness.log(f"[{dataset}] split {k} {mode:<6} {recipe}: {row['accuracy']:.3f}")
                rows.append({"dataset": dataset, "similarity": common.similarity(dataset),
                             "split": k, "mode": mode, "recipe": recipe, **row})
    return rows


def summary(rows: list[dict]) -> str:
    """Mean accuracy per mode over the splits, and the paired difference to crop."""
    lines = ["| dataset | recipe | crop | pad | squash | pad − crop | squash − crop |",
             "|---|---|---|---|---|---|---|"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for recipe in RECIPES:
            acc = {m: np.array([r["accuracy"] for r in rows if r["dataset"] == dataset and
                                r["recipe"] == recipe and r["mode"] == m]) for m in MODES}
            cells = [f"{acc[m].mean():.3f} ± {acc[m].std(ddof=1):.3f}" if len(acc[m]) > 1
                     else f"{acc[m].mean():.3f}" for m in MODES]
            diffs = []
            for mode in ("pad", "squash"):
                d = acc[mode] - acc["crop"]
                diffs.append(f"{d.mean():+.3f} ± {d.std(ddof=1):.3f}" if len(d) > 1
                             else f"{d.mean():+.3f}")
            lines.append(f"| {dataset} | {recipe} | {' | '.join(cells)} | {' | '.join(diffs)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--splits", type=int, default=5, help="seeded stratified re-splits")
    args = harness.parse_args(p, argv)
    if args.quick:
        args.splits = min(args.splits, 2)
    out = harness.outputs(args, NAME)
    rows = [row for dataset in args.manifests for row in score_dataset(dataset, args)]
    harness.write_csv(out.csv, rows, COLUMNS)
    notes = (f"Each dataset extracted three times (Lite0 {args.image_size} px, `full` layers), "
             f"once per resize mode; {args.splits} seeded stratified 70/30 re-splits of all "
             "images, identical for every mode; C by stratified CV on the training part "
             f"({common.cv_folds(args)} folds); mean ± standard deviation over the splits. "
             "Differences are paired (same split).")
    return common.finish(out, "Comparison 7: resize modes (crop, pad, squash)",
                         [notes, "## Test accuracy\n\n" + summary(rows)], args,
                         f"benchmarks.{NAME}")


if __name__ == "__main__":
    sys.exit(main())
