"""`featpipe fit`'s workflow: tune on a store, score the held-out part once, save model and report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from featpipe.errors import FeatpipeError
from featpipe.fileio import checked_output
from featpipe.provenance import model_provenance
from featpipe.store.reader import FeatureSet, FeatureStore
from featpipe.workflows.data import load_compatible, split_train_test

DEFAULT_CACHE_DIR = "cache"


@dataclass
class TrainingSpec:
    """How to build and tune the classical stage (mirrors `featpipe fit`'s options)."""

    recipe: str | None = "fne"
    layers: str | Sequence[str] | None = None
    normalize: str | None = None
    discretize: bool | None = None
    reduce: str | None = None
    classifier: str | None = None
    grid: Sequence[str] = field(default_factory=list)
    cv: int = 5
    scoring: str = "accuracy"
    n_jobs: int = 1
    halving: bool = False
    seed: int = 0
    cache_dir: str | None = None
    search: str = "fast"
    stats_from: str = "train"

    def describe(self) -> dict:
        return {k: (list(v) if isinstance(v, (list, tuple)) else v)
                for k, v in self.__dict__.items()}


@dataclass
class FitOutcome:
    model_path: Path
    search: object
    evaluation: dict | None
    report_files: list
    stats_from: dict = field(default_factory=dict)

    def summary_line(self) -> str:
        line = (f"wrote {self.model_path}: best CV {self.search.best_score:.4f} with "
                f"{self.search.best_params}")
        if self.evaluation is not None:
            line += (f"; test accuracy {self.evaluation['accuracy']:.4f}, balanced "
                     f"{self.evaluation['balanced_accuracy']:.4f}")
        return line


SEARCHES = ("fast", "grid")
STATS_SOURCES = ("train", "all")  # or the path of another store


def fit_features(train: FeatureSet, spec: TrainingSpec, *, statistics_pool=None):
    """Build the spec's pipeline for ``train``'s layers and tune it by cross-validation.

    ``statistics_pool`` (features with ``train``'s columns, labels never needed) fixes the
    standardization statistics to the pool's instead of each training fold's.
    """
    from featpipe.classical.fastsearch import run_fast_search
    from featpipe.classical.recipes import make_pipeline, parse_grid_overrides, use_pool_statistics
    from featpipe.classical.search import run_search
    from featpipe.classical.validation import validate_training_data

    if spec.search not in SEARCHES:
        raise FeatpipeError(f"unknown search {spec.search!r}; choose one of {', '.join(SEARCHES)}")
    validate_training_data(train.X, train.y, spec.cv, class_names=train.class_names)
    pipeline, grid = make_pipeline(
        spec.recipe, layer_slices=train.layer_slices, normalize=spec.normalize,
        discretize=spec.discretize, reduce=spec.reduce, classifier=spec.classifier,
        random_state=spec.seed)
    if statistics_pool is not None:
        use_pool_statistics(pipeline, statistics_pool)
    grid = {**grid, **parse_grid_overrides(list(spec.grid))}
    options = dict(cv=spec.cv, scoring=spec.scoring, n_jobs=spec.n_jobs, random_state=spec.seed,
                   class_names=train.class_names, halving=spec.halving,
                   cache_dir=spec.cache_dir or DEFAULT_CACHE_DIR)
    if spec.search == "fast" and not spec.halving:
        return run_fast_search(pipeline, grid, train.X, train.y, **options)
    return run_search(pipeline, grid, train.X, train.y, **options)


def statistics_pool(store: FeatureStore, spec: TrainingSpec, train: FeatureSet, *,
                    test=None, held_out: FeatureSet | None = None):
    """The unlabelled features whose statistics standardize (None for ``stats_from="train"``)
    and the record of that choice kept in the model's provenance and the report.

    ``"all"`` is every row of ``store`` (test rows included: transductive when the held-out
    rows come from this store); a path is another store with the same features. Only the
    features are used, never the labels.
    """
    source = spec.stats_from
    if source == "train":
        return None, {"source": "train", "transductive": False}
    if source == "all":
        pool = store.load(list(train.layer_slices)).X
        transductive = held_out is not None and test is None
        return pool, {"source": "all", "n_rows": int(len(pool)), "transductive": transductive,
                      "store_fingerprint": store.provenance.get("input_fingerprint")}
    path = Path(source)
    if path.suffix not in (".h5", ".hdf5") or not path.is_file():
        raise FeatpipeError(f"--stats-from {source!r} must be train, all or an existing .h5 "
                            "feature store")
    other = FeatureStore.open(path)
    expected = model_provenance(store.provenance, train.layer_slices)
    pool = load_compatible(other, expected, list(train.layer_slices)).X
    return pool, {"source": str(path), "n_rows": int(len(pool)), "transductive": False,
                  "store_fingerprint": other.provenance.get("input_fingerprint")}


def fit_store(store_path, spec: TrainingSpec, *, out, test=None, test_split=None,
              train_split=None, report_dir=None) -> FitOutcome:
    """`featpipe fit`: tune on a store, score the held-out part once, save model and report."""
    from featpipe.classical.persist import save_model
    from featpipe.report.metrics import evaluate
    from featpipe.report.writer import write_report

    out = checked_output(out)
    store = FeatureStore.open(store_path)
    layers = store.resolve_layers(spec.layers)
    train, held_out = split_train_test(store, layers, test=test, test_split=test_split,
                                       train_split=train_split, seed=spec.seed)
    pool, stats_from = statistics_pool(store, spec, train, test=test, held_out=held_out)
    search = fit_features(train, spec, statistics_pool=pool)
    evaluation = None
    if held_out is not None:
        evaluation = evaluate(search.best_estimator, held_out.X, held_out.y, train.class_names)
    provenance = model_provenance(store.provenance, train.layer_slices)
    training = {
        "spec": spec.describe(), "best_params": search.best_params,
        "best_score": search.best_score, "class_names": train.class_names,
        "n_train": int(len(train.y)), "store": str(store.path),
        "store_fingerprint": store.provenance.get("input_fingerprint"),
        "fit_seconds": search.fit_seconds, "search": search.extra.get("search"),
        "stats_from": stats_from,
    }
    save_model(out, search.best_estimator, provenance=provenance, training=training)
    report_files = []
    if report_dir is not None:
        report_files = write_report(report_dir, search=search, evaluation=evaluation,
                                    meta={"store": str(store.path), **training})
    return FitOutcome(out, search, evaluation, report_files, stats_from)


