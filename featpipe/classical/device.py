"""The classical stage on a torch device (``featpipe fit --device cuda``).

The training features become one float32 torch tensor on the device and the whole search runs
on it under scikit-learn's array API (``array_api_dispatch``, which needs ``SCIPY_ARRAY_API=1``
before scipy and scikit-learn are imported): standardization, FNE discretization, per-layer L2
and PCA (``svd_solver="covariance_eigh"``) are featpipe's array-API transformers; the linear SVM
and the logistic regression are featpipe's L-BFGS solvers in torch
(:mod:`featpipe.classical.linear`, the recipes' classifiers on every device); the ridge probe decomposes each fold on
the device (:mod:`featpipe.classical.ridge_torch`). The fast C search walks the same folds and
values as on NumPy. The fitted pipeline is converted back to NumPy: the saved model is the same
kind of file whichever device fitted it. Labels stay NumPy (they are small).

Examples
--------
>>> fit_device("cpu") is None  # the NumPy path
True
"""

from __future__ import annotations

import os
import sys

import numpy as np

from featpipe.errors import FeatpipeError

#: Classifiers that run on a torch device.
DEVICE_CLASSIFIERS = ("LBFGSLinearSVC", "LBFGSLogisticRegression", "RidgeProbeClassifier",
                      "RidgeClassifier")


def fit_device(device: str):
    """The torch device of ``device`` (``auto``: CUDA when present), None for the NumPy path."""
    if device == "cpu":
        return None  # without importing torch: the NumPy recipes may not need it
    from featpipe.models.device import resolve_device

    dev = resolve_device(device)
    return None if dev.type == "cpu" else dev


def enable_array_api() -> None:
    """Set ``SCIPY_ARRAY_API=1``, or say in one line why it is too late (scipy imported)."""
    if os.environ.get("SCIPY_ARRAY_API") == "1":
        return
    if "scipy" in sys.modules:
        raise FeatpipeError("the classical stage on a torch device needs SCIPY_ARRAY_API=1 "
                            "set before scipy and scikit-learn are imported; run python with "
                            "SCIPY_ARRAY_API=1 in the environment (the command line sets it)")
    os.environ["SCIPY_ARRAY_API"] = "1"


def for_device(pipeline, device):
    """A copy of ``pipeline`` whose steps run on torch tensors of ``device``."""
    from sklearn.base import clone

    from featpipe.classical.transformers import ClippedPCA

    pipeline = clone(pipeline)
    for name, step in pipeline.steps:
        if name == "reduce" and not isinstance(step, ClippedPCA):
            raise FeatpipeError(f"`device` {device}: the {type(step).__name__} reduction runs "
                                "on NumPy only; use pca or drop `device`")
    if "reduce" in pipeline.named_steps:
        pipeline.set_params(reduce__svd_solver="covariance_eigh")
    clf = pipeline.steps[-1][1]
    if type(clf).__name__ not in DEVICE_CLASSIFIERS:
        raise FeatpipeError(f"`device` {device}: {type(clf).__name__} runs on NumPy only; use "
                            "the linearsvc, logistic, ridge or ridge-probe classifier or drop "
                            "`device`")
    if "device" in clf.get_params():
        clf.set_params(device=str(device))
    return pipeline


def to_numpy(estimator):
    """A copy of a fitted estimator (or pipeline) whose torch attributes are NumPy arrays."""
    import torch
    from sklearn.utils._array_api import _estimator_with_converted_arrays

    return _estimator_with_converted_arrays(
        estimator, lambda a: a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a)


def search_on_device(pipeline, grid, X, y, config, device, *, class_names=None):
    """:func:`~featpipe.classical.search.search` with ``X`` as a float32 tensor on ``device``;
    the best pipeline comes back as NumPy (``extra["device"]`` records where it ran)."""
    enable_array_api()
    import sklearn
    import torch

    from featpipe.classical.search import search

    pipeline = for_device(pipeline, device)
    X_device = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32), device=device)
    with sklearn.config_context(array_api_dispatch=True):
        result = search(pipeline, grid, X_device, np.asarray(y), config,
                        class_names=class_names)
    result.best_estimator = to_numpy(result.best_estimator)
    if "device" in result.best_estimator.steps[-1][1].get_params():
        result.best_estimator.set_params(clf__device="cpu")  # as a model fitted on NumPy
    result.extra["device"] = str(device)
    return result


def is_tensor(X) -> bool:
    """True for a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(X, torch.Tensor)


def tensor_input(estimator, X, y=None):
    """Check a 2-D torch ``X`` for ``estimator`` (``n_features_in_`` set when ``y`` is given,
    i.e. at fit; checked otherwise); ``X`` as float32 or float64, ``y`` as NumPy."""
    import torch

    if X.ndim != 2:
        raise ValueError(f"Expected a 2D tensor, got shape {tuple(X.shape)}")
    if y is None:
        if X.shape[1] != estimator.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(estimator).__name__} "
                             f"is expecting {estimator.n_features_in_} features as input.")
        return X if X.dtype in (torch.float32, torch.float64) else X.float()
    y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    if len(y) != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)}")
    estimator.n_features_in_ = int(X.shape[1])
    return (X if X.dtype in (torch.float32, torch.float64) else X.float()), y
