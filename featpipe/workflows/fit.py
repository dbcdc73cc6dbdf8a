"""`featpipe fit`'s workflow: tune on a store, score the held-out part once, save model and report."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from featpipe.classical.recipes import RECIPE_CONSTRAINTS, Reduction
from featpipe.classical.search import SEARCH_CONSTRAINTS, SearchConfig, SearchResult
from featpipe.errors import FeatpipeError
from featpipe.fileio import checked_output
from featpipe.params import InstanceOf, Interval, Pattern, SequenceOf, validate
from featpipe.provenance import model_provenance
from featpipe.store.reader import FeatureSet, FeatureStore
from featpipe.workflows.data import load_compatible, split_train_test

#: Declared constraints of :class:`TrainingSpec` (those it shares with the recipes and the
#: search are declared there once).
TRAINING_CONSTRAINTS = {
    **{k: RECIPE_CONSTRAINTS[k] for k in ("recipe", "normalize", "discretize", "reduce",
                                          "classifier")},
    **{k: SEARCH_CONSTRAINTS[k] for k in ("cv", "scoring", "n_jobs", "cache_dir")},
    "layers": [SequenceOf(str), str, None],
    "grid": [InstanceOf(Mapping, "a dict of parameter names to values")],
    "search": SEARCH_CONSTRAINTS["method"],
    "seed": [int],
    "stats_from": [str],
    "max_iter": [Interval(int, 1, None), None],
    "progress": ["boolean"],
    "memory_budget": [Interval(int, 1, None), None],
    "streaming": ["boolean", None],
    "dask": [str, None],
    "device": [Pattern(r"cpu|auto|cuda(:[0-9]+)?", "cpu, auto, cuda or cuda:N")],
}


@dataclass
class TrainingSpec:
    """How to build and tune the classical stage (the typed form of `featpipe fit`'s options).

    Parameters
    ----------
    recipe : str or None, default="fne"
        A key of :data:`featpipe.classical.recipes.RECIPES`; None builds a free combination.
    layers : list of str, str or None, default=None
        Layers to train on: names, a preset of the store (``"all"``) or None (every layer).
    normalize, discretize, reduce, classifier :
        Overrides of the recipe's steps (see :func:`~featpipe.classical.recipes.build_recipe`);
        ``reduce`` is a :class:`~featpipe.classical.recipes.Reduction`, False (none) or None.
    grid : dict of str to list, default={}
        Grid overrides, e.g. ``{"clf__C": [0.1, 1]}``, merged over the recipe's default grid.
    cv, scoring, n_jobs, cache_dir :
        The search options (see :class:`~featpipe.classical.search.SearchConfig`);
        ``cache_dir`` None caches in a private temporary folder for the search only
        (joblib's cache is pickles: nothing that runs code is kept on disk by default).
    search : {"fast", "grid", "halving"}, default="fast"
        The search method.
    seed : int, default=0
        Seeds the folds, the estimators and a fractional train/test split.
    stats_from : str, default="train"
        Standardization statistics from each training fold (``"train"``), every row of the
        store (``"all"``) or another store (a path).
    max_iter : int or None, default=None
        The classifier's iteration limit (None: the recipe's).
    progress : bool, default=False
        A progress bar over the candidate fits on stderr.
    memory_budget : int or None, default=None
        Peak memory in bytes. When the selected features would not fit it in memory,
        :func:`fit_store` trains the out-of-core recipe instead
        (:mod:`featpipe.workflows.streaming`) and says so.
    streaming : bool or None, default=None
        True: always the out-of-core recipe; False: never; None: as ``memory_budget`` decides.
    dask : str or None, default=None
        Run the cross-validated search on this Dask cluster (a scheduler address or
        ``local:N``, :mod:`featpipe.scale.search`).
    device : str, default="cpu"
        ``cpu``: the NumPy path. ``cuda``/``cuda:N``: the search runs on torch tensors of that
        GPU (:mod:`featpipe.classical.device`; the saved model is NumPy all the same).
        ``auto``: the GPU when there is one.
    """

    recipe: str | None = "fne"
    layers: list[str] | str | None = None
    normalize: str | None = None
    discretize: bool | None = None
    reduce: Reduction | Literal[False] | None = None
    classifier: str | None = None
    grid: dict[str, list] = field(default_factory=dict)
    cv: int = 5
    scoring: str = "accuracy"
    n_jobs: int | None = None
    search: Literal["fast", "grid", "halving"] = "fast"
    seed: int = 0
    cache_dir: str | None = None
    stats_from: str = "train"
    max_iter: int | None = None
    progress: bool = False
    memory_budget: int | None = None
    streaming: bool | None = None
    dask: str | None = None
    device: str = "cpu"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check every option against its declared constraints (one line on the first bad one)."""
        validate(self.__dict__, TRAINING_CONSTRAINTS)

    def search_config(self) -> SearchConfig:
        """The search options as a :class:`~featpipe.classical.search.SearchConfig`."""
        return SearchConfig(method=self.search, cv=self.cv, scoring=self.scoring,
                            n_jobs=self.n_jobs, random_state=self.seed,
                            cache_dir=self.cache_dir,
                            progress=self.progress)

    def describe(self) -> dict:
        """The options as JSON-ready values (recorded in the model file and the report)."""
        described = {k: (list(v) if isinstance(v, (list, tuple)) else v)
                     for k, v in self.__dict__.items()}
        described["grid"] = {k: _json_values(v) for k, v in self.grid.items()}
        if self.reduce is not None:
            described["reduce"] = (f"{self.reduce.method}:{self.reduce.n_components}"
                                   if self.reduce else "none")
        return described


def _json_values(values) -> list:
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        return [values]
    return [v.item() if hasattr(v, "item") else v for v in values]


@dataclass
class Scored:
    """A tuned pipeline (``search.best_estimator``) and its one score on held-out rows."""

    search: SearchResult
    evaluation: dict | None


@dataclass
class FitOutcome(Scored):
    """What :func:`fit_store` did: :class:`Scored`, plus the files it wrote."""

    model_path: Path = None
    report_files: list = field(default_factory=list)
    stats_from: dict = field(default_factory=dict)
    streamed: str | None = None  # why the out-of-core recipe was used

    def summary_line(self) -> str:
        line = (f"wrote {self.model_path}: best CV {self.search.best_score:.4f} with "
                f"{self.search.best_params}")
        extended = self.search.extra.get("grid_extended")
        if extended:
            line += (f" (grid extended {extended['direction']} its edge: "
                     f"{', '.join(f'{v:g}' for v in extended['added'])})")
        if self.evaluation is not None:
            line += (f"; test accuracy {self.evaluation['accuracy']:.4f}, balanced "
                     f"{self.evaluation['balanced_accuracy']:.4f}")
        return line


STATS_SOURCES = ("train", "all")  # or the path of another store


def fit_features(train: FeatureSet, spec: TrainingSpec, *, statistics_pool=None,
                 copy_X: bool = True):
    """Build the spec's pipeline for ``train``'s layers and tune it by cross-validation.

    ``statistics_pool`` (features with ``train``'s columns, labels never needed) fixes the
    standardization statistics to the pool's instead of each training fold's. Without
    ``copy_X`` the search may overwrite ``train.X`` (:func:`~featpipe.classical.search.search`):
    for a caller that owns ``train`` and will not read its features again.
    """
    from featpipe.classical.recipes import build_recipe, use_pool_statistics
    from featpipe.classical.search import search
    from featpipe.classical.validation import validate_training_data

    spec.validate()
    config = spec.search_config()
    validate_training_data(train.X, train.y, config.cv, class_names=train.class_names)
    pipeline, grid = build_recipe(
        spec.recipe, layer_slices=train.layer_slices, normalize=spec.normalize,
        discretize=spec.discretize, reduce=spec.reduce, classifier=spec.classifier,
        random_state=spec.seed)
    if spec.max_iter is not None:
        if "clf__max_iter" not in pipeline.get_params():
            raise FeatpipeError(f"`max_iter` does not apply to "
                                f"{type(pipeline.named_steps['clf']).__name__}")
        pipeline.set_params(clf__max_iter=spec.max_iter)
    if statistics_pool is not None:
        use_pool_statistics(pipeline, statistics_pool)
    grid = {**grid, **spec.grid}
    device = _device(spec)
    if device is not None:
        from featpipe.classical.device import search_on_device

        return search_on_device(pipeline, grid, train.X, train.y, config, device,
                                class_names=train.class_names)
    return search(pipeline, grid, train.X, train.y, config, class_names=train.class_names,
                  copy_X=copy_X)


def _device(spec: TrainingSpec):
    """The torch device of ``spec.device`` (None: NumPy); refused with the options that run
    elsewhere."""
    from featpipe.classical.device import fit_device

    device = fit_device(spec.device)
    if device is not None and spec.dask:
        raise FeatpipeError("`device` runs the search on this machine's GPU; `dask` on a "
                            "cluster (drop one of them)")
    return device


def fit_and_score(train: FeatureSet, spec: TrainingSpec,
                  held_out: FeatureSet | Callable[[], FeatureSet] | None = None,
                  *, statistics_pool=None, copy_X: bool = True) -> Scored:
    """Tune ``spec`` on ``train`` by cross-validation, then score ``held_out`` once.

    The one place where search and evaluation meet: :func:`fit_store` (the CLI), the demo and
    the benchmarks all go through it. ``copy_X``: as :func:`fit_features`.
    """
    from featpipe.report.metrics import evaluate

    search = fit_features(train, spec, statistics_pool=statistics_pool, copy_X=copy_X)
    evaluation = None
    if held_out is not None:
        held_out = held_out() if callable(held_out) else held_out  # loaded after the search
        evaluation = evaluate(search.best_estimator, held_out.X, held_out.y, train.class_names)
    return Scored(search, evaluation)


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
        raise FeatpipeError(f"`stats_from` {source!r} must be train, all or an existing .h5 "
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
    from featpipe.report.writer import write_report

    out = checked_output(out)
    store = FeatureStore.open(store_path)
    layers = store.resolve_layers(spec.layers)
    streamed = _streaming_reason(store, layers, spec)
    if streamed:
        search, evaluation, layer_slices, n_train = _fit_streaming(
            store, layers, spec, test=test, test_split=test_split, train_split=train_split)
        stats_from = {"source": "train", "transductive": False}
    else:
        train, held_out = split_train_test(store, layers, test=test, test_split=test_split,
                                           train_split=train_split, seed=spec.seed,
                                           defer_held_out=True)
        pool, stats_from = statistics_pool(store, spec, train, test=test, held_out=held_out)
        scored = _fit_and_score_on(spec.dask, train, spec, held_out, statistics_pool=pool)
        search, evaluation = scored.search, scored.evaluation
        layer_slices, n_train = train.layer_slices, len(train.y)
    provenance = model_provenance(store.provenance, layer_slices)
    training = {
        "spec": spec.describe(), "best_params": search.best_params,
        "best_score": search.best_score, "class_names": list(store.class_names),
        "n_train": int(n_train), "store": str(store.path),
        "store_fingerprint": store.provenance.get("input_fingerprint"),
        "fit_seconds": search.fit_seconds, "search": search.extra.get("search"),
        "stats_from": stats_from,
    }
    save_model(out, search.best_estimator, provenance=provenance, training=training)
    report_files = []
    if report_dir is not None:
        report_files = write_report(report_dir, search=search, evaluation=evaluation,
                                    meta={"store": str(store.path), **training})
    return FitOutcome(search, evaluation, out, report_files, stats_from, streamed)


def _streaming_reason(store: FeatureStore, layers: list[str], spec: TrainingSpec) -> str | None:
    from featpipe.workflows.streaming import needs_streaming

    if spec.streaming is False:
        return None
    if spec.streaming:
        return "asked for the out-of-core recipe (streaming SGD)"
    return needs_streaming(store, layers, spec.memory_budget)


def _fit_streaming(store: FeatureStore, layers: list[str], spec: TrainingSpec, **rows):
    """The out-of-core fit: search, evaluation, the layers' columns and the training rows."""
    from featpipe.classical.device import fit_device
    from featpipe.workflows.streaming import fit_store_streaming

    on_gpu = spec.device != "cpu" and (spec.device != "auto" or fit_device("auto") is not None)
    if spec.dask or on_gpu:  # `auto` without a GPU is the CPU
        raise FeatpipeError(f"`{'dask' if spec.dask else 'device'}` applies to the in-memory "
                            "search; the out-of-core recipe runs on NumPy in this process "
                            "(drop one of them)")
    if spec.stats_from != "train":
        raise FeatpipeError("the out-of-core recipe standardizes with its training rows' "
                            "statistics; drop `stats_from` or raise `memory_budget`")
    search, evaluation = fit_store_streaming(store, layers, spec, **rows)
    described = search.extra["search"]
    return (search, evaluation, store.layer_slices(layers),
            described["n_train"] + described["n_validation"])


def _fit_and_score_on(dask: str | None, train: FeatureSet, spec: TrainingSpec, held_out,
                      **options) -> Scored:
    """:func:`fit_and_score`, locally or with the search on a Dask cluster."""
    if dask is None:  # ``train`` is fit_store's own: the search may overwrite its features
        return fit_and_score(train, spec, held_out, copy_X=False, **options)
    import dataclasses

    from featpipe.scale.search import on_dask

    with on_dask(dask, train.X, train.y):  # every worker takes tasks: n_jobs -1
        return fit_and_score(train, dataclasses.replace(spec, n_jobs=-1), held_out, **options)


