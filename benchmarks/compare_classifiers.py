"""Comparison 4, classifiers and reducers: accuracy and fit time of LinearSVC, SVC-RBF,
logistic regression (Kornblith sweep), PCA-256 + LinearSVC (the tutorial notebook) and
UMAP-32 + kNN, on the last layer (``bn2``, 1280-d; ``--features last,all`` adds all layers).

LinearSVC, SVC-RBF and logistic see standardized features (training statistics); the
``pca-svm`` and ``umap-knn`` recipes run on the raw pooled features as the tutorial does.
Each grid is searched by stratified CV on the training split; the test split is scored once.
``fit_seconds`` is the whole search (every fold and grid point, plus the refit).

    python -m benchmarks.compare_classifiers [--datasets tuxpaint,openclipart] [--quick]
        [--features last,all]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

from benchmarks import common, harness
from benchmarks.compare_recipes import STANDARDIZED_C, layer_names
from featpipe.workflows.fit import TrainingSpec

NAME = "compare_classifiers"
COLUMNS = ["dataset", "similarity", "features", "classifier", "n_features", "accuracy",
           "balanced_accuracy", "cv_accuracy", "best_params", "fit_seconds", "refit_seconds",
           "predict_seconds", "n_train", "n_test"]


@dataclass(frozen=True)
class Classifier:
    label: str
    recipe: str | None
    classifier: str | None = None
    normalize: str | None = None
    grid: tuple = ()  # (name, values) pairs replacing the default grid

    @property
    def uses_umap(self) -> bool:
        return self.recipe == "umap-knn"

    def spec(self, args, n_train: int) -> TrainingSpec:
        grid = common.recipe_grid(self.recipe, classifier=self.classifier)
        grid.update({name: list(values) for name, values in self.grid})
        grid = {name: _feasible(name, values, n_train, common.cv_folds(args))
                for name, values in grid.items()}
        grid = common.thin_grid(grid) if args.quick else grid
        return TrainingSpec(recipe=self.recipe, classifier=self.classifier,
                            normalize=self.normalize, grid=grid,
                            cv=common.cv_folds(args), seed=args.seed,
                            cache_dir=str(args.features_dir / "sklearn-cache"))


CLASSIFIERS = (
    Classifier("LinearSVC", None, "linearsvc", "standard", grid=(("clf__C", STANDARDIZED_C),)),
    Classifier("SVC-RBF", None, "svc", "standard"),
    Classifier("logistic (Kornblith sweep)", "linear-probe"),
    Classifier("PCA-256 + LinearSVC", "pca-svm"),
    Classifier("UMAP-32 + kNN", "umap-knn"),
)


def _feasible(name: str, values: list, n_train: int, folds: int) -> list:
    """kNN cannot use more neighbours than a CV fold's training rows."""
    if name != "clf__n_neighbors":
        return values
    fold_rows = n_train - -(-n_train // folds)
    return [v for v in values if v <= fold_rows] or [1]


def chosen_classifiers(args) -> list[Classifier]:
    return [c for c in CLASSIFIERS if not (args.no_umap and c.uses_umap)]


def feature_sets(args) -> list[str]:
    return [f.strip() for f in args.features.split(",") if f.strip()]


def score_classifiers(split: common.Split, args) -> list[dict]:
    rows = []
    for features in feature_sets(args):
        layers = layer_names(features, split.layers)
        train, test = split.only(layers)
        for clf in chosen_classifiers(args):
            row = {"features": features, "classifier": clf.label,
                   **common.run_spec(train, test, clf.spec(args, len(train.y)), args)}
            harness.log(f"[{split.dataset}] {features} / {clf.label}: test {row['accuracy']:.3f}"
                       f" in {row['fit_seconds']:.1f} s")
            rows.append(row)
    return rows


def plot(rows: list[dict], path) -> None:
    """Accuracy against search time (log x), one marker per classifier, one panel per dataset."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = harness.figure(len(datasets), width=4.6, height=3.8)
    colours = dict(zip((c.label for c in CLASSIFIERS), plt_colours()))
    markers = {"last": "o", "all": "s"}
    for ax, dataset in zip(axes, datasets):
        for r in (r for r in rows if r["dataset"] == dataset):
            ax.scatter(r["fit_seconds"], r["accuracy"], s=50, color=colours[r["classifier"]],
                       marker=markers.get(r["features"], "x"),
                       label=f"{r['classifier']} [{r['features']}]")
        ax.set_xscale("log")
        ax.set_xlabel("search + refit seconds (log)")
    harness.finish_panels(fig, axes, [f"{d} ({common.similarity(d)})" for d in datasets],
                          "test accuracy", path, legend_size=6)


def plt_colours() -> list[str]:
    return ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]


def main(argv: Sequence[str] | None = None) -> int:
    p = harness.parser(__doc__.splitlines()[0])
    p.add_argument("--features", default=None,
                   help="comma-separated: last (bn2), all (every layer); default last")
    harness.add_no_umap(p)
    args = harness.parse_args(p, argv)
    args.features = args.features or "last"
    rows, out = common.run_comparison(args, score_classifiers, NAME, COLUMNS)
    plot(rows, out.png)
    notes = ("`features`: `last` = bn2 (1280-d pre-logits), `all` = the 18 layers (3,120-d). "
             "Grids: LinearSVC (standardized) C in {0.0001..0.1} as in comparison 2, "
             "SVC-RBF C in {0.1..100} with gamma=scale, "
             "logistic over the 45-value Kornblith sweep, PCA-256 + LinearSVC C in "
             "{0.001..10}, UMAP-32 + kNN k in {1, 5, 10, 20} (PCA/UMAP fits cached per fold). "
             "`fit_seconds` = the whole CV search plus refit on this shared 2-core CPU; "
             "compare ratios, not absolute values.")
    table = harness.markdown_table(rows, ["dataset", "features", "classifier", "accuracy",
                                         "balanced_accuracy", "cv_accuracy", "best_params",
                                         "fit_seconds", "predict_seconds"])
    return common.finish(out, "Comparison 4: classifiers and reducers",
                         [notes, "## Results\n\n" + table, f"![classifiers]({out.png.name})"],
                         args, f"benchmarks.{NAME}")


if __name__ == "__main__":
    sys.exit(main())
