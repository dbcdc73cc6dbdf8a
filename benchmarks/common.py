"""Shared helpers of the comparison scripts: cached feature stores, fitting a spec and scoring
it once on the test split, few-shot CV rules, and the comparison page's header.

Every comparison script (``compare_layers``, ``compare_recipes``, ``few_shot``,
``compare_classifiers``, ``cost``) is a thin ``main(argv) -> int`` over these helpers and the
harness (:mod:`benchmarks.harness`: options, measurements, output pages, result cache):

    python -m benchmarks.<name> [--datasets tuxpaint,openclipart] [--quick]
        [--out benchmarks/results] [--manifest NAME=PATH] [--image-size 128]

Features are extracted ONCE per (dataset, model, image size, layers) into
``benchmarks/data/features/<dataset>-<model>-<size>.h5`` (``--features-dir``) and reused by
every script. Hyperparameters are chosen by stratified k-fold CV on the training split only;
the test split is scored once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from benchmarks import harness
from featpipe.store.reader import FeatureSet, FeatureStore

LAYER_PRESET = "full"
LAST_LAYER = "bn2"  # mean-pooled bn2 = Lite0's 1280-d pre-logits
SECOND_TO_LAST_LAYER = "blocks.6.0"
FULL_CV, QUICK_CV = 5, 3
QUICK_PER_CLASS = {"train": 8, "test": 6}  # --quick: at most this many images per class
FEW_SHOT_DEFAULT_C = 1.0  # LinearSVC-based recipes when a class has < 2 training images
SIMILARITY = {"tuxpaint": "high", "openclipart": "low", "fashion-mnist": "low",
              "clipart-mini": "low"}


def cv_folds(args) -> int:
    return QUICK_CV if args.quick else FULL_CV


def similarity(dataset: str) -> str:
    return SIMILARITY.get(dataset, "?")


# --------------------------------------------------------------------------- feature stores


def store_path(dataset: str, args, resize: str = "crop") -> Path:
    """``<features-dir>/<dataset>-<model>-<size>.h5`` (``...-<size>-<resize>.h5`` for the
    resize modes other than crop)."""
    suffix = "" if resize == "crop" else f"-{resize}"
    return Path(args.features_dir) / f"{dataset}-{args.model}-{args.image_size}{suffix}.h5"


def ensure_store(dataset: str, args, batch_size: int = 32, resize: str = "crop") -> FeatureStore:
    """The dataset's cached `full` store, extracted on first use (timing kept in a sidecar)."""
    out = store_path(dataset, args, resize)
    if not out.exists():
        from featpipe.extract.run import extract

        manifest = Path(args.manifests[dataset])
        if not manifest.exists():
            raise SystemExit(f"{manifest} is missing; run "
                             f"`python -m benchmarks.datasets prepare {dataset}` first")
        out.parent.mkdir(parents=True, exist_ok=True)
        result = extract(manifest, out, model=args.model, layers=LAYER_PRESET, allow_outside=True,
                         image_size=args.image_size, resize=resize, batch_size=batch_size,
                         progress=False)
        timing = {"n_images": result.n_computed, "seconds": result.seconds,
                  "images_per_second": result.images_per_second, "machine": harness.machine(),
                  "date": harness.today()}
        harness.write_json(out.with_suffix(".timing.json"), timing, indent=2)
    return FeatureStore.open(out)


def extraction_timing(dataset: str, args) -> dict | None:
    """The sidecar written when the dataset's store was extracted (None if unknown)."""
    return harness.read_json(store_path(dataset, args).with_suffix(".timing.json"))


@dataclass
class Split:
    """The train and test rows of one dataset (all layers loaded)."""

    dataset: str
    train: FeatureSet
    test: FeatureSet

    @property
    def layers(self) -> list[str]:
        return list(self.train.layer_slices)

    def only(self, layers: Sequence[str]) -> tuple[FeatureSet, FeatureSet]:
        """``(train, test)`` restricted to the columns of ``layers``."""
        return only_layers(self.train, layers), only_layers(self.test, layers)


def load_split(dataset: str, args) -> Split:
    """Train/test features of ``dataset``; ``--quick`` keeps a few images per class."""
    store = ensure_store(dataset, args)
    train, test = store.load(split="train"), store.load(split="test")
    if args.quick:
        train = per_class_subset(train, QUICK_PER_CLASS["train"], args.seed)
        test = per_class_subset(test, QUICK_PER_CLASS["test"], args.seed)
    return Split(dataset, train, test)


def per_class_subset(data: FeatureSet, per_class: int, seed: int = 0) -> FeatureSet:
    """At most ``per_class`` seeded rows of each class, in store order."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(data.y == c))[:per_class] for c in np.unique(data.y)]
    return data.subset(np.sort(np.concatenate(keep)))


def only_layers(data: FeatureSet, layers: Sequence[str]) -> FeatureSet:
    """The columns of ``layers``, in store order (whatever the order asked)."""
    return data.select_layers([name for name in data.layer_slices if name in set(layers)])


# --------------------------------------------------------------------------- fit and score


def run_spec(train: FeatureSet, test: FeatureSet, spec, args=None) -> dict:
    """Tune ``spec`` by CV on ``train``, score ``test`` once; one result row (no names).

    With ``args`` the row is memoized under ``<features-dir>/results-memo/``, keyed by the
    store, the exact rows and columns, and the effective search (pipeline options, grid, folds,
    seed): the same search asked for by two scripts runs once (timings are those of that run).
    """
    if args is not None:
        spec.n_jobs = args.jobs
    memo = _memo_path(train, test, spec, args) if args is not None else None
    return harness.cached(memo, lambda: _search_and_score(train, test, spec))


def _search_and_score(train: FeatureSet, test: FeatureSet, spec) -> dict:
    from featpipe.workflows.fit import fit_and_score

    scored = fit_and_score(train, spec, test)
    search, evaluation = scored.search, scored.evaluation
    return {"accuracy": evaluation["accuracy"],
            "balanced_accuracy": evaluation["balanced_accuracy"],
            "cv_accuracy": search.best_score, "best_params": params_text(search.best_params),
            "fit_seconds": search.fit_seconds, "refit_seconds": search.refit_seconds,
            "predict_seconds": evaluation["predict_seconds"],
            "n_train": int(len(train.y)), "n_test": int(len(test.y)),
            "n_features": int(train.X.shape[1])}


def _memo_path(train: FeatureSet, test: FeatureSet, spec, args) -> Path:
    from featpipe.classical.recipes import build_recipe

    _, grid = build_recipe(spec.recipe, normalize=spec.normalize, discretize=spec.discretize,
                           reduce=spec.reduce, classifier=spec.classifier)
    grid.update(spec.grid)
    from featpipe.provenance import FEATURE_KEYS, with_defaults

    provenance = with_defaults(train.provenance)
    key = {"store": train.provenance.get("input_fingerprint"), "model": args.model,
           "features": {k: provenance.get(k) for k in FEATURE_KEYS if k != "weights_sha256"},
           "size": args.image_size, "layers": list(train.layer_slices),
           "train": train.index.tolist(), "test": test.index.tolist(),
           "search": [spec.recipe, spec.normalize, spec.discretize, spec.describe()["reduce"],
                      spec.classifier, spec.cv, spec.seed, spec.scoring, spec.n_jobs],
           "grid": {k: [repr(v) for v in values] for k, values in sorted(grid.items())}}
    return harness.cache_file(Path(args.features_dir) / "results-memo", key)


def fit_fixed(train: FeatureSet, test: FeatureSet, spec, params: Mapping) -> dict:
    """Fit ``spec``'s pipeline with fixed ``params`` (no CV possible), score ``test`` once."""
    from featpipe.classical.recipes import build_recipe
    from featpipe.report.metrics import evaluate

    pipeline, _ = build_recipe(spec.recipe, layer_slices=train.layer_slices,
                               normalize=spec.normalize, discretize=spec.discretize,
                               reduce=spec.reduce, classifier=spec.classifier,
                               random_state=spec.seed)
    pipeline.set_params(**params)
    seconds = harness.measure(pipeline.fit, train.X, train.y).seconds
    evaluation = evaluate(pipeline, test.X, test.y, train.class_names)
    return {"accuracy": evaluation["accuracy"],
            "balanced_accuracy": evaluation["balanced_accuracy"], "cv_accuracy": float("nan"),
            "best_params": params_text(params) + " (fixed)", "fit_seconds": seconds,
            "refit_seconds": seconds, "predict_seconds": evaluation["predict_seconds"],
            "n_train": int(len(train.y)), "n_test": int(len(test.y)),
            "n_features": int(train.X.shape[1])}


def params_text(params: Mapping) -> str:
    return " ".join(f"{k.split('__')[-1]}={_short(v)}" for k, v in sorted(params.items()))


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def smallest_class(y: np.ndarray) -> int:
    return int(np.bincount(y)[np.unique(y)].min())


def few_shot_cv(y: np.ndarray, folds: int = FULL_CV) -> int | None:
    """CV folds for a (possibly tiny) training set: ``min(folds, smallest class)``, or None
    when some class has a single image (then a fixed default is used instead of CV)."""
    smallest = smallest_class(y)
    return None if smallest < 2 else min(folds, smallest)


def summarize_seeds(rows: Sequence[Mapping], keys: Sequence[str], out: harness.Outputs,
                    name: str) -> list[dict]:
    """Mean and (population) std of ``accuracy`` over seeds, per group of ``keys`` values;
    also written to ``<out>/<name>_summary.csv`` (columns: keys, n_seeds, mean, std)."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row["accuracy"])
    summary = [{**dict(zip(keys, key)), "n_seeds": len(values), "mean": float(np.mean(values)),
                "std": float(np.std(values))} for key, values in groups.items()]
    harness.write_csv(out.csv.with_name(f"{name}_summary.csv"), summary,
                      [*keys, "n_seeds", "mean", "std"])
    return summary


def fixed_default(spec) -> dict:
    """The documented parameters used when CV is impossible (a class with one image):
    C=1 for LinearSVC-based pipelines (the grid's largest C when the grid stops below 1),
    otherwise the middle of the default sweep (for the linear probe the Kornblith sweep's
    middle, C=10**0.5)."""
    from featpipe.classical.recipes import build_recipe

    pipeline, grid = build_recipe(spec.recipe, normalize=spec.normalize,
                                  discretize=spec.discretize, reduce=spec.reduce,
                                  classifier=spec.classifier)
    if type(pipeline.named_steps["clf"]).__name__ == "LinearSVC":
        searched = spec.grid.get("clf__C", [FEW_SHOT_DEFAULT_C])
        return {"clf__C": min(FEW_SHOT_DEFAULT_C, max(searched))}
    return {name: values[len(values) // 2] for name, values in grid.items()}


def thin_grid(grid: Mapping[str, list], keep: int = 3) -> dict[str, list]:
    """Each parameter's list thinned to ``keep`` evenly spaced values (ends kept)."""
    thinned = {}
    for name, values in grid.items():
        picks = np.unique(np.linspace(0, len(values) - 1, keep).round().astype(int))
        thinned[name] = [values[i] for i in picks]
    return thinned


def grid_overrides(grid: Mapping[str, list]) -> list[str]:
    """A grid as TrainingSpec overrides (``name=v1,v2``)."""
    return [f"{name}=" + ",".join(_grid_value(v) for v in values) for name, values in grid.items()]


def quick_grid(grid: Mapping[str, list], quick: bool) -> list[str]:
    """``--quick``: the grid thinned to 3 values per parameter; otherwise no override."""
    return grid_overrides(thin_grid(grid)) if quick else []


def _grid_value(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def recipe_grid(recipe: str | None, classifier: str | None = None, reduce=None) -> dict:
    """The default grid build_recipe would use for this recipe/classifier."""
    from featpipe.classical.recipes import build_recipe

    return build_recipe(recipe, classifier=classifier, reduce=reduce)[1]


# --------------------------------------------------------------------------- output


def write_markdown(path: Path, title: str, sections: Iterable[str], args, module: str) -> Path:
    """The result page: title, how it was made (command, machine, date, commit), sections."""
    header = [*harness.provenance(module, args.argv),
              f"- Backbone: {args.model} at {args.image_size} px, layers `{LAYER_PRESET}`, "
              f"mean-pooled; CV folds on the training split: {cv_folds(args)}"
              + ("; **--quick subset**" if args.quick else "")]
    return harness.write_page(path, title, header, sections)


def run_comparison(args, score: Callable[[Split, Any], list[dict]], name: str,
                   columns: Sequence[str]) -> tuple[list[dict], harness.Outputs]:
    """``score(split, args)`` on every dataset; the rows, also written to ``<out>/<name>.csv``,
    and the page's files."""
    rows = for_each_dataset(args, lambda split: score(split, args))
    out = harness.outputs(args, name)
    harness.write_csv(out.csv, rows, columns)
    return rows, out


def finish(out: harness.Outputs, title: str, sections: Iterable[str], args, module: str) -> int:
    """Write the comparison's Markdown page and name the files written; exit status 0."""
    write_markdown(out.md, title, sections, args, module)
    print(f"wrote {out.csv}, {out.md}, {out.png}")
    return 0


def for_each_dataset(args, work: Callable[[Split], list[dict]]) -> list[dict]:
    """Run ``work`` on each dataset's split; rows get ``dataset`` and ``similarity``."""
    rows = []
    for dataset in args.manifests:
        split = load_split(dataset, args)
        harness.log(f"[{dataset}] {len(split.train.y)} train / {len(split.test.y)} test images")
        for row in work(split):
            rows.append({"dataset": dataset, "similarity": similarity(dataset), **row})
    return rows
