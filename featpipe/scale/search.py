"""The cross-validated search on a Dask cluster, through joblib's Dask backend.

featpipe's searches (fast, grid, halving: :mod:`featpipe.classical.search`) parallelize with
joblib; inside :func:`on_dask` joblib sends their tasks to the cluster's workers instead of
local processes or threads. The candidates, folds and seeds are the same, so the best
parameters and scores are the local run's. The training matrix ``X`` and labels ``y`` are
scattered to every worker once (``scatter=[X, y]``), not shipped with each task; other large
arguments (the fast search's prepared folds) are scattered by joblib once per parallel call.

The same joblib mechanism runs the search on Ray (``ray.util.joblib.register_ray()``, then
``joblib.parallel_config(backend="ray")``) or Spark (``joblibspark.register_spark()``, then
``backend="spark"``); see the README.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from featpipe.scale.cluster import connect


@contextlib.contextmanager
def on_dask(address: str, X=None, y=None) -> Iterator:
    """Run joblib's parallel calls inside this block on the Dask cluster ``address``.

    Parameters
    ----------
    address : str
        A scheduler address or ``local:N``.
    X, y : arrays, optional
        Scattered to every worker once; tasks that take these very objects get the
        workers' copies.

    Examples
    --------
    >>> with on_dask("local:2", X, y):                          # doctest: +SKIP
    ...     result = search(pipeline, grid, X, y, config)
    """
    from joblib import parallel_config

    scatter = [a for a in (X, y) if a is not None]
    with connect(address) as client, \
            parallel_config(backend="dask", n_jobs=-1, scatter=scatter or None):
        yield client
