"""Out-of-core learning: a linear classifier trained a batch at a time from a feature store, so
peak memory is set by the batch size, not by the store's size.

The recipe (:func:`fit_streaming`):

1. a held-out validation slice of the training rows (``validation_fraction``, seeded);
2. standardization statistics in one pass over the other rows
   (:meth:`~featpipe.classical.transformers.Standardizer.partial_fit` over
   :meth:`~featpipe.store.FeatureStore.iter_batches`);
3. optionally :class:`~sklearn.decomposition.IncrementalPCA`, in a second pass;
4. one :class:`~sklearn.linear_model.SGDClassifier` per ``alpha`` (hinge: a linear SVM; or log
   loss; averaged SGD, whose mean iterate settles in a few passes where plain SGD's last
   iterate stays noisy: 0.45 vs 0.57 test accuracy against 0.58 in memory on the blobs of
   tests/test_streaming.py), all trained in the same passes with ``partial_fit``: each epoch reads the batches in
   a new shuffled order (rows shuffled within each batch too), then scores every alpha on the
   validation slice; each alpha keeps its best epoch, and training stops when no alpha has
   improved for ``patience`` epochs (early stopping) or after ``max_epochs``;
5. the alpha with the best validation accuracy, at its best epoch, is the model.

The batch size comes from ``memory_budget`` (:func:`batch_rows_for_budget`): the process's
memory before fitting plus a few copies of one batch plus the models stay under the budget.

Examples
--------
>>> batch_rows_for_budget(2 * 2**30, n_features=3120, n_classes=10, baseline=200 * 2**20)
15107
"""

from __future__ import annotations

import copy
import numbers
import os
import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.decomposition import IncrementalPCA
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline

from featpipe.classical.transformers.scaling import Standardizer
from featpipe.errors import FeatpipeError
from featpipe.params import Interval, Options, SequenceOf, validate
from featpipe.store.reader import FeatureStore

#: Float32-sized copies of one batch alive at once, with a margin: the read, the shuffled and
#: standardized copies, and the statistics pass's float64 work arrays (measured: peak RSS rose
#: by ~7.6 batches over the process's baseline on 72,000 x 1,024 features, 2 shared cores).
BATCH_COPIES = 10
#: Memory the fit needs beyond the batches and models, kept free of the budget: the model file
#: writer's imports, the held-out predictions, allocator slack (measured peak ~5% above the
#: budget without it).
RESERVE = 48 * 2**20
#: Bounds of the batch size chosen from a budget (rows).
MIN_BATCH_ROWS, MAX_BATCH_ROWS = 64, 65_536

STREAMING_CONSTRAINTS = {
    "loss": [Options(("hinge", "log_loss"))],
    "alphas": [SequenceOf(float)],
    "max_epochs": [Interval(int, 1, None)],
    "patience": [Interval(int, 1, None)],
    "validation_fraction": [Interval(float, 0, 1, closed="neither")],
    "pca_components": [Interval(int, 1, None), None],
    "batch_rows": [Interval(int, 1, None), None],
    "memory_budget": [Interval(int, 1, None), None],
    "seed": [int],
}


@dataclass(frozen=True)
class StreamingSpec:
    """The out-of-core recipe's settings.

    Parameters
    ----------
    loss : {"hinge", "log_loss"}, default "hinge"
    alphas : tuple of float
        SGD regularization strengths tried (``alpha`` ~ 1 / (C * n_samples)).
    max_epochs, patience : int
        Passes over the data at most; stop after ``patience`` passes without a better
        validation score for any alpha.
    validation_fraction : float, default 0.1
        Training rows held out to choose alpha and the epoch.
    pca_components : int or None
        Reduce with IncrementalPCA to this many components (None: no reduction).
    batch_rows : int or None
        Rows per batch; None: from ``memory_budget`` (4096 without a budget).
    memory_budget : int or None
        Peak memory of the process to stay under, in bytes.
    seed : int
    """

    loss: str = "hinge"
    alphas: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2)
    max_epochs: int = 10
    patience: int = 2
    validation_fraction: float = 0.1
    pca_components: int | None = None
    batch_rows: int | None = None
    memory_budget: int | None = None
    seed: int = 0

    def __post_init__(self):
        validate({"alphas": self.alphas}, {"alphas": [SequenceOf(numbers.Real, "a list of "
                                                                "numbers")]})
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        validate(self.__dict__, STREAMING_CONSTRAINTS)
        if not self.alphas:
            raise FeatpipeError("`alphas` must list at least one value")


@dataclass
class StreamingResult:
    """What :func:`fit_streaming` learned: the pipeline and how it was chosen."""

    pipeline: Pipeline
    best_alpha: float
    best_score: float
    validation_scores: dict[float, list[float]] = field(default_factory=dict)
    epochs: int = 0
    batch_rows: int = 0
    n_train: int = 0
    n_validation: int = 0
    fit_seconds: float = 0.0

    def describe(self) -> dict:
        """JSON-ready summary (kept in the model file and the report)."""
        return {"method": "streaming", "best_alpha": self.best_alpha,
                "best_validation_accuracy": self.best_score, "epochs": self.epochs,
                "batch_rows": self.batch_rows, "n_train": self.n_train,
                "n_validation": self.n_validation,
                "validation_scores": {f"{a:g}": s for a, s in self.validation_scores.items()}}


def process_memory() -> int:
    """Resident memory of this process now, in bytes (Linux; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def batch_rows_for_budget(budget: int, *, n_features: int, n_classes: int, n_alphas: int = 4,
                          pca_components: int | None = None, baseline: int | None = None) -> int:
    """Rows per batch that keep the process under ``budget`` bytes.

    ``baseline`` is what the process holds already (default: measured now); :data:`RESERVE`,
    the models (two per alpha: the training one and its best epoch) and IncrementalPCA's
    matrices are fixed costs; the rest is shared by :data:`BATCH_COPIES` float32 copies of one
    batch.
    """
    baseline = process_memory() if baseline is None else baseline
    width = pca_components or n_features
    fixed = 8 * (2 * n_alphas * max(n_classes, 1) * width
                 + (3 * pca_components * n_features if pca_components else 0))
    per_row = 4 * BATCH_COPIES * (n_features + (pca_components or 0))
    rows = (budget - baseline - RESERVE - fixed) // per_row
    if rows < MIN_BATCH_ROWS:
        need = baseline + RESERVE + fixed + MIN_BATCH_ROWS * per_row
        raise FeatpipeError(f"`memory_budget` {_mb(budget)} is too small: this process holds "
                            f"{_mb(baseline)} already and a batch of {MIN_BATCH_ROWS} rows of "
                            f"{n_features} features needs {_mb(need)} in all")
    return int(min(rows, MAX_BATCH_ROWS))


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.0f} MB"


def fit_streaming(store: FeatureStore, rows: np.ndarray, layers: list[str],
                  spec: StreamingSpec = StreamingSpec()) -> StreamingResult:
    """Train the out-of-core recipe on the store rows with input indices ``rows``.

    Parameters
    ----------
    store : FeatureStore
    rows : array of int
        Input indices of the training rows (labelled).
    layers : list of str
        Layers whose columns, concatenated in forward order, are the features.
    spec : StreamingSpec
    """
    started = time.perf_counter()
    rows = np.asarray(rows, dtype=np.int64)
    fit_rows, val_rows = _validation_split(rows, spec)
    n_features = sum(store.layers[name] for name in layers)
    classes = np.unique(store.labels[np.searchsorted(store.index, rows)])
    batch_rows = spec.batch_rows or (
        batch_rows_for_budget(spec.memory_budget, n_features=n_features,
                              n_classes=len(classes), n_alphas=len(spec.alphas),
                              pca_components=spec.pca_components)
        if spec.memory_budget else 4096)
    if spec.pca_components and batch_rows < spec.pca_components:
        raise FeatpipeError(f"`pca_components` {spec.pca_components} exceeds the batch of "
                            f"{batch_rows} rows; raise `memory_budget` or reduce less")

    def batches(selected, shuffle=None):
        return store.iter_batches(rows=selected, batch_size=batch_rows, layers=layers,
                                  shuffle=shuffle)

    steps = [("scale", Standardizer())]
    for _, X, _ in batches(fit_rows):
        steps[0][1].partial_fit(X)
    if spec.pca_components:
        pca = IncrementalPCA(n_components=spec.pca_components)
        for _, X, _ in batches(fit_rows):
            if len(X) >= spec.pca_components:  # a short last batch cannot update the PCA
                pca.partial_fit(steps[0][1].transform(X))
        steps.append(("reduce", pca))
    prefix = Pipeline(steps)
    models, best, scores, epochs = _train(prefix, batches, fit_rows, val_rows, classes, spec)
    alpha = max(best, key=lambda a: best[a][0])
    pipeline = Pipeline([*steps, ("clf", best[alpha][1])])
    return StreamingResult(pipeline, alpha, best[alpha][0], scores, epochs, batch_rows,
                           len(fit_rows), len(val_rows), time.perf_counter() - started)


def _validation_split(rows: np.ndarray, spec: StreamingSpec):
    rng = np.random.default_rng(spec.seed)
    n_val = max(1, int(round(spec.validation_fraction * len(rows))))
    if len(rows) - n_val < 2:
        raise FeatpipeError(f"{len(rows)} training rows are too few for a validation slice")
    picked = np.zeros(len(rows), dtype=bool)
    picked[rng.choice(len(rows), n_val, replace=False)] = True
    return np.sort(rows[~picked]), np.sort(rows[picked])


def _train(prefix: Pipeline, batches, fit_rows, val_rows, classes, spec: StreamingSpec):
    """Epochs of partial_fit for every alpha at once, with early stopping on validation."""
    models = {a: SGDClassifier(loss=spec.loss, alpha=a, average=True, random_state=spec.seed)
              for a in spec.alphas}
    best = {a: (-1.0, None) for a in spec.alphas}
    scores: dict[float, list[float]] = {a: [] for a in spec.alphas}
    rng = np.random.default_rng(spec.seed)
    stale, epoch = 0, 0
    for epoch in range(1, spec.max_epochs + 1):
        for _, X, y in batches(fit_rows, shuffle=rng):
            Xt = prefix.transform(X)
            for model in models.values():
                model.partial_fit(Xt, y, classes=classes)
        accuracy = _validation_accuracy(prefix, models, batches(val_rows))
        improved = False
        for a, value in accuracy.items():
            scores[a].append(value)
            if value > best[a][0] + 1e-9:
                best[a], improved = (value, copy.deepcopy(models[a])), True
        stale = 0 if improved else stale + 1
        if stale >= spec.patience:
            break
    return models, best, scores, epoch


def _validation_accuracy(prefix: Pipeline, models: dict, batches) -> dict[float, float]:
    correct = dict.fromkeys(models, 0)
    total = 0
    for _, X, y in batches:
        Xt = prefix.transform(X)
        for a, model in models.items():
            correct[a] += int(np.sum(model.predict(Xt) == y))
        total += len(y)
    return {a: c / total for a, c in correct.items()}
