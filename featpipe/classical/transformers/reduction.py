"""Dimensionality reduction that never asks for more components than the data allows: PCA, UMAP."""

from __future__ import annotations

import contextlib
import functools
import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import (
    check_is_fitted,
    validate_data,
)

from featpipe.classical.transformers._base import (
    _check_positive_int,
    _float_input,
    _FloatTransformerMixin,
)
from featpipe.classical.transformers._centred_svd import (
    centred_randomized_svd,
    column_mean_and_total_variance,
)


class ClippedPCA(_FloatTransformerMixin, TransformerMixin, BaseEstimator):
    """PCA whose ``n_components`` is clipped to what the data allows at fit time.

    ``min(n_components, n_samples, n_features)`` components are kept, so a recipe built for
    large data (``pca:256``) still runs on a small training fold.

    Parameters
    ----------
    n_components : int, default=256
    whiten : bool, default=False
    svd_solver : {"auto", "full", "covariance_eigh", "arpack", "randomized"}, default="auto"
        Use ``"full"`` or ``"covariance_eigh"`` for array-API (torch/GPU) inputs.
    random_state : int or None, default=None
    copy : bool, default=True
        False lets the ``"full"`` solver centre the rows passed to ``fit``/``fit_transform``
        in place (they are overwritten: the fast search's folds, whose rows are copies of
        their own). The randomized solver (``"auto"``'s choice for large NumPy inputs) never
        copies nor modifies them: it multiplies by the centred matrix implicitly.

    Attributes
    ----------
    pca_ : sklearn.decomposition.PCA
        The fitted PCA.
    n_components_ : int
        Components actually kept.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32)
    >>> ClippedPCA(256).fit(X).n_components_
    5
    """

    def __init__(self, n_components=256, whiten=False, svd_solver="auto", random_state=None,
                 copy=True):
        self.n_components = n_components
        self.whiten = whiten
        self.svd_solver = svd_solver
        self.random_state = random_state
        self.copy = copy

    def fit(self, X, y=None):
        """Fit PCA with the clipped number of components.

        Returns
        -------
        self : ClippedPCA
        """
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit PCA and project X (from the decomposition: X may have been centred in place).

        Returns
        -------
        X_reduced : array of shape (n_samples, n_components_)
        """
        X, _, _ = _float_input(self, X, reset=True)
        pca = self._pca(X.shape)
        if isinstance(X, np.ndarray) and _resolved_solver(pca, X.shape) == "randomized":
            return _fit_randomized_without_copy(pca, X)
        return pca.fit_transform(X)

    def fit_transform_rows(self, X, rows):
        """``fit_transform(X[rows])``, without copying the rows where the randomized solver
        runs (it reads them a block at a time); ``X`` is never modified.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        rows : array of int
            The rows of ``X`` to fit on.

        Returns
        -------
        X_reduced : array of shape (len(rows), n_components_)
        """
        rows = np.asarray(rows)
        shape = (len(rows), X.shape[1])
        pca = self._pca(shape)
        if not (isinstance(X, np.ndarray) and X.dtype in (np.float32, np.float64)
                and _resolved_solver(pca, shape) == "randomized"):
            return self.fit_transform(X[rows])
        X, _, _ = _float_input(self, X, reset=True)  # checks every row of X, copies none
        return _fit_randomized_without_copy(pca, X, rows)

    def _pca(self, shape: tuple[int, int]):
        from sklearn.decomposition import PCA

        _check_positive_int(self.n_components, "ClippedPCA n_components")
        self.n_components_ = min(self.n_components, *shape)
        self.pca_ = PCA(
            n_components=self.n_components_,
            whiten=self.whiten,
            svd_solver=self.svd_solver,
            random_state=self.random_state,
            copy=self.copy,
        )
        return self.pca_

    def transform(self, X):
        """Project X on the principal components.

        Returns
        -------
        X_reduced : array of shape (n_samples, n_components_)
        """
        check_is_fitted(self, "pca_")
        X, _, _ = _float_input(self, X, reset=False)
        return self.pca_.transform(X)

    def get_feature_names_out(self, input_features=None):
        """Names ``pca0, pca1, ...``."""
        check_is_fitted(self, "pca_")
        return np.asarray([f"pca{i}" for i in range(self.n_components_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = self.svd_solver not in ("arpack", "randomized")
        return tags


def _resolved_solver(pca, shape: tuple[int, int]) -> str:
    """The solver ``PCA(svd_solver="auto")`` picks for data of ``shape`` (scikit-learn's rule)."""
    if pca.svd_solver != "auto":
        return pca.svd_solver
    n_samples, n_features = shape
    if n_features <= 1_000 and n_samples >= 10 * n_features:
        return "covariance_eigh"
    if max(shape) <= 500:
        return "full"
    return "randomized" if 1 <= pca.n_components < 0.8 * min(shape) else "full"


def _fit_randomized_without_copy(pca, X: np.ndarray, rows: np.ndarray | None = None
                                 ) -> np.ndarray:
    """Fit ``pca`` (``PCA``, set up for ``X[rows]``) as its randomized solver would, without the
    centred copy it makes (:mod:`._centred_svd`); returns ``pca.fit_transform(X[rows])``."""
    from sklearn.utils.extmath import svd_flip

    n_samples, n_features = (len(X) if rows is None else len(rows)), X.shape[1]
    k = pca.n_components
    mean, total_var = column_mean_and_total_variance(X, rows)
    U, S, Vt = centred_randomized_svd(X, mean, k, rows=rows, n_oversamples=pca.n_oversamples,
                                      n_iter=pca.iterated_power,
                                      random_state=check_random_state(pca.random_state))
    U, Vt = svd_flip(U, Vt, u_based_decision=False)
    explained_variance = S**2 / (n_samples - 1)
    # C order, as a loaded model has it: BLAS rounds differently on another layout
    pca.n_features_in_, pca.mean_, pca.n_samples_, pca.n_components_ = \
        n_features, mean, n_samples, k
    pca.components_ = np.ascontiguousarray(Vt)
    pca.explained_variance_ = explained_variance
    pca.explained_variance_ratio_ = explained_variance / total_var
    pca.singular_values_ = S.copy()
    rest = min(n_features, n_samples) - k
    pca.noise_variance_ = (total_var - explained_variance.sum()) / rest if rest else 0.0
    return U * (np.sqrt(n_samples - 1) if pca.whiten else S)


class ClippedUMAP(TransformerMixin, BaseEstimator):
    """UMAP (umap-learn) with ``n_neighbors`` and ``n_components`` clipped to the data.

    ``n_neighbors <= n_samples - 1`` and ``n_components <= n_samples - 2`` (at least 1), so
    small folds do not crash. Output is float32 (UMAP's embedding dtype). NumPy only.

    New samples are embedded as umap-learn's ``transform`` does it (exact nearest training
    samples, their fuzzy membership strengths, the weighted mean of their embeddings, then
    UMAP's layout optimisation with the training embedding held fixed), but from arrays the
    estimator keeps itself — the training samples and their embedding — instead of the fitted
    ``umap.UMAP``, whose numba objects skops refuses: a fitted pipeline with UMAP saves and
    loads like any other (the model is as large as the training features). As in umap-learn,
    a new sample's embedding depends a little on the batch it comes in (the optimisation's
    negative samples are drawn along the batch).

    Up to :data:`EXACT_NEIGHBORS_MAX` training samples, their exact nearest neighbours are
    computed by scikit-learn's brute-force search (BLAS, in blocks of bounded memory) and
    handed to umap-learn as ``precomputed_knn``: the same graph as umap-learn's exact path
    below 4,096 samples, which calls its numba metric once per pair of samples from Python.
    On 1,600 x 3,120 Fashion-MNIST features a fit took 7.1 s instead of 15.9 s in a new
    process and 1.4 s instead of 4.4 s after it; on 6,400 samples the exact search took 3.6 s
    where umap-learn's approximate NN-descent took 35-46 s in a new process (numba
    compilation) and 1.3 s after. Above the limit, umap-learn's NN-descent runs.

    Parameters
    ----------
    n_components : int, default=32
    n_neighbors : int, default=15
    min_dist : float, default=0.1
    metric : str, default="euclidean"
        Any metric of both umap-learn and :class:`sklearn.neighbors.NearestNeighbors`.
    n_epochs : int, default=200
        Epochs of the layout optimisation (a third of them to embed new samples). umap-learn
        takes 500 below 10,000 samples and 200 above; 200 everywhere took 0.64x the time of
        500 on 1,600 x 3,120 Fashion-MNIST features (one fit after numba's compilation).
    random_state : int or None, default=None
        An int makes the embedding reproducible (and UMAP single-threaded).

    Attributes
    ----------
    embedding_ : float32 array of shape (n_samples, n_components_)
        The training samples' embedding.
    X_fit_ : float32 array of shape (n_samples, n_features_in_)
        The training samples (new samples are placed among their nearest ones).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    >>> umap = ClippedUMAP(n_components=2, random_state=0).fit(X)
    >>> umap.embedding_.shape, umap.transform(X[:4]).shape
    ((30, 2), (4, 2))
    """

    def __init__(self, n_components=32, n_neighbors=15, min_dist=0.1, metric="euclidean",
                 n_epochs=200, random_state=None):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.n_epochs = n_epochs
        self.random_state = random_state

    def fit(self, X, y=None):
        """Fit UMAP on X (unsupervised; y is ignored).

        Returns
        -------
        self : ClippedUMAP
        """
        self._fit_embedding(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit UMAP and return the training embedding."""
        return self._fit_embedding(X).copy()

    def _fit_embedding(self, X):
        import umap  # slow import (numba); only when UMAP is used

        cache_umap_compilation()

        _check_positive_int(self.n_components, "ClippedUMAP n_components")
        _check_positive_int(self.n_neighbors, "ClippedUMAP n_neighbors")
        _check_positive_int(self.n_epochs, "ClippedUMAP n_epochs")
        X = validate_data(self, X, reset=True, dtype=np.float32, ensure_min_samples=3)
        n_samples = X.shape[0]
        self.n_neighbors_ = max(2, min(self.n_neighbors, n_samples - 1))
        self.n_components_ = max(1, min(self.n_components, n_samples - 2))
        self.X_fit_ = X
        knn = (None, None, None)
        if n_samples <= EXACT_NEIGHBORS_MAX:
            knn = training_neighbors(X, self.n_neighbors_, self.metric)
            if self.metric in umap.distances.named_distances:
                self.embedding_ = self._embed(X, *knn[:2])
                return self.embedding_
        fitted = umap.UMAP(
            n_components=self.n_components_,
            n_neighbors=self.n_neighbors_,
            min_dist=self.min_dist,
            metric=self.metric,
            n_epochs=self.n_epochs,
            random_state=self.random_state,
            n_jobs=1 if self.random_state is not None else -1,
            precomputed_knn=knn,
        )
        with warnings.catch_warnings():
            # umap-learn's own transform needs its search index; this estimator embeds new
            # samples itself (transform), so its warning about that is noise here
            warnings.filterwarnings("ignore", message=_NO_SEARCH_INDEX, category=UserWarning)
            self.embedding_ = np.asarray(fitted.fit_transform(X), dtype=np.float32)
        return self.embedding_

    def _embed(self, X, indices, distances):
        """What ``umap.UMAP(...).fit_transform(X)`` returns for these nearest neighbours
        (``precomputed_knn``), by the same two calls of umap-learn's functions, without the
        copies of ``X`` that ``UMAP.fit`` makes on the way (``X[index]`` for each step: on
        1,600 x 3,120 features, 19 MiB each)."""
        from umap.distances import named_distances, named_distances_with_gradients
        from umap.umap_ import (
            DISCONNECTION_DISTANCES,
            find_ab_params,
            fuzzy_simplicial_set,
            simplicial_set_embedding,
        )

        disconnected = distances >= DISCONNECTION_DISTANCES.get(self.metric, np.inf)
        indices, distances = indices.copy(), distances.copy()
        indices[disconnected], distances[disconnected] = -1, np.inf
        random_state = check_random_state(self.random_state)
        graph, _, _, _ = fuzzy_simplicial_set(
            X, self.n_neighbors_, random_state, self.metric, {}, indices, distances,
            angular=False, set_op_mix_ratio=1.0, local_connectivity=1.0,
            apply_set_operations=True, verbose=False, return_dists=False)
        a, b = find_ab_params(_UMAP_SPREAD, self.min_dist)
        embedding, _ = simplicial_set_embedding(
            X, graph, self.n_components_, _UMAP_LEARNING_RATE, a, b, _UMAP_REPULSION_STRENGTH,
            _UMAP_NEGATIVE_SAMPLE_RATE, self.n_epochs, "spectral", random_state,
            named_distances[self.metric], {}, False, {}, False,
            named_distances_with_gradients["euclidean"], {}, euclidean_output=True,
            parallel=self.random_state is None, verbose=False)
        embedding[np.asarray(graph.sum(axis=1)).ravel() == 0] = np.nan  # as umap-learn
        return np.asarray(embedding, dtype=np.float32)

    def transform(self, X):
        """Embed new samples into the training embedding (as ``umap.UMAP.transform``).

        Returns
        -------
        X_embedded : float32 array of shape (n_samples, n_components_)
        """
        from umap.umap_ import init_graph_transform

        cache_umap_compilation()  # a model loaded in a new process embeds without a fit
        check_is_fitted(self, "embedding_")
        X = validate_data(self, X, reset=False, dtype=np.float32)
        if X.shape == self.X_fit_.shape and np.array_equal(X, self.X_fit_):
            return self.embedding_.copy()  # the training samples themselves, as umap-learn
        graph = self._membership_graph(X)
        start = init_graph_transform(graph.tocsr(), self.embedding_)
        return _optimise_new_points(start, self.embedding_, graph, self.min_dist,
                                    max(1, self.n_epochs // 3))

    def _membership_graph(self, X):
        """Sparse (new sample, training sample) fuzzy membership strengths, as umap-learn's."""
        from scipy.sparse import coo_matrix
        from umap.umap_ import compute_membership_strengths, smooth_knn_dist

        distances, indices = exact_neighbors(self.X_fit_, X, self.n_neighbors_, self.metric)
        # umap-learn's transform: local connectivity one less than at fit time (the default 1)
        sigmas, rhos = smooth_knn_dist(distances, float(self.n_neighbors_),
                                       local_connectivity=0.0)
        rows, cols, strengths, _ = compute_membership_strengths(
            indices.astype(np.int32), distances, sigmas, rhos, bipartite=True)
        return coo_matrix((strengths, (rows, cols)), shape=(len(X), len(self.embedding_)))

    def __getstate__(self):
        # the training rows in blocks of ~1 MiB: a model file's writer (skops) buffers each
        # array whole in memory before it writes it (12k Fashion-MNIST images: 95 MiB more)
        state = dict(super().__getstate__())  # object's is the live __dict__
        X = state.get("X_fit_")
        if isinstance(X, np.ndarray) and X.ndim == 2 and len(X):
            step = max(1, _SAVED_BLOCK_BYTES // max(1, X[0].nbytes))
            state["X_fit_"] = [X[start:start + step] for start in range(0, len(X), step)]
        return state

    def __setstate__(self, state):
        if isinstance(state.get("X_fit_"), list):
            state = {**state, "X_fit_": np.concatenate(state["X_fit_"])}
        super().__setstate__(state)

    def get_feature_names_out(self, input_features=None):
        """Names ``umap0, umap1, ...``."""
        check_is_fitted(self, "embedding_")
        return np.asarray([f"umap{i}" for i in range(self.n_components_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.non_deterministic = self.random_state is None
        return tags


#: Bytes of one block of :attr:`ClippedUMAP.X_fit_` in its saved state.
_SAVED_BLOCK_BYTES = 1 << 20
#: Most training samples whose exact nearest neighbours :class:`ClippedUMAP` computes (the
#: search costs n^2 x n_features: 3.6 s for 6,400 x 3,120 here, ~10 s at 10,000).
EXACT_NEIGHBORS_MAX = 10_000
#: Memory of one block of the exact search's distances, in MiB (scikit-learn's default: 1 GiB).
NEIGHBORS_WORKING_MEMORY = 32
#: Rows of each side in one block of scikit-learn's float32 search, which copies a block of both
#: sides to float64 in each thread (its default: 256 rows, 2 x 6.4 MiB per thread at 3,120
#: features; 64 rows found the same neighbours of 1,600 x 3,120 Fashion-MNIST features as fast).
NEIGHBORS_CHUNK_ROWS = 64
_NO_SEARCH_INDEX = r"precomputed_knn\[2\] \(knn_search_index\) is not an NNDescent object"


_UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.spectral", "umap.utils", "umap.distances",
                 "umap.sparse")


@functools.cache
def cache_umap_compilation() -> None:
    """Let numba keep umap-learn's compiled functions on disk, as pynndescent keeps its own
    (``cache=True``): in umap-learn's ``__pycache__`` beside its ``.pyc`` files, or numba's
    per-user cache (``NUMBA_CACHE_DIR``) where that folder is read-only. A new process then
    loads the machine code instead of compiling it again: `featpipe fit --recipe umap-knn` on
    3k Fashion-MNIST images (5 folds) peaked 67 MiB beyond the imports in 15.7 s with the
    cache, 135 MiB in 21.3 s compiling. Numba checks each entry against its source file's
    timestamp and numba's version."""
    import importlib

    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    for name in _UMAP_MODULES:
        for function in vars(importlib.import_module(name)).values():
            if isinstance(function, Dispatcher) and isinstance(function._cache, NullCache):
                with contextlib.suppress(RuntimeError):  # no writable cache folder: compiles
                    function.enable_caching()


def exact_neighbors(reference, queries, n_neighbors: int, metric: str):
    """``(distances float32, indices int32)`` of each query's ``n_neighbors`` nearest
    reference samples, by brute force in blocks of :data:`NEIGHBORS_WORKING_MEMORY` MiB."""
    from sklearn import config_context
    from sklearn.neighbors import NearestNeighbors

    search = NearestNeighbors(n_neighbors=n_neighbors, algorithm="brute", metric=metric)
    with config_context(working_memory=NEIGHBORS_WORKING_MEMORY,
                        pairwise_dist_chunk_size=NEIGHBORS_CHUNK_ROWS):
        distances, indices = search.fit(reference).kneighbors(queries)
    return (np.ascontiguousarray(distances, dtype=np.float32),
            np.ascontiguousarray(indices, dtype=np.int32))


def training_neighbors(X, n_neighbors: int, metric: str) -> tuple:
    """umap-learn's ``precomputed_knn`` of ``X``: each sample's exact ``n_neighbors`` nearest
    samples, itself included at distance exactly 0 (umap-learn measures each sample's
    connectivity from its first non-zero distance, so float rounding must not make one)."""
    distances, indices = exact_neighbors(X, X, n_neighbors, metric)
    distances[indices == np.arange(len(X))[:, None]] = 0.0
    return indices, distances, None


#: umap-learn's defaults for what the estimator does not expose
_UMAP_SPREAD, _UMAP_LEARNING_RATE, _UMAP_REPULSION_STRENGTH = 1.0, 1.0, 1.0
_UMAP_NEGATIVE_SAMPLE_RATE, _UMAP_TRANSFORM_SEED = 5, 42


def _optimise_new_points(start, embedding, graph, min_dist: float, n_epochs: int) -> np.ndarray:
    """umap-learn's layout optimisation of ``start`` against the fixed training embedding."""
    from umap.layouts import optimize_layout_euclidean
    from umap.umap_ import find_ab_params, make_epochs_per_sample

    graph = graph.copy()
    graph.data[graph.data < graph.data.max() / n_epochs] = 0.0
    graph.eliminate_zeros()
    a, b = find_ab_params(_UMAP_SPREAD, min_dist)
    rng_state = np.random.RandomState(_UMAP_TRANSFORM_SEED).randint(
        np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1, 3).astype(np.int64)
    moved = optimize_layout_euclidean(
        np.ascontiguousarray(start), embedding.copy(), graph.row, graph.col, n_epochs,
        graph.shape[1], make_epochs_per_sample(graph.data, n_epochs), a, b, rng_state,
        _UMAP_REPULSION_STRENGTH, _UMAP_LEARNING_RATE / 4.0, _UMAP_NEGATIVE_SAMPLE_RATE)
    return np.asarray(moved, dtype=np.float32)
