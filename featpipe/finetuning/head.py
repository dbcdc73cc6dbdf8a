"""LP-FT's first step: fit featpipe's linear probe on the training images' last-layer features
and turn it into the new head's weights (Kumar et al., ICLR 2022).

The probe is the ``linear-probe`` recipe (standardization, then multinomial logistic regression
by L-BFGS, C chosen by ``min(5, smallest class)``-fold CV from the Kornblith sweep; a fixed
C = 10**0.5, the sweep's middle, when a class has one image). Standardization is affine, so
it folds into the linear layer exactly: ``W' = W / scale``, ``b' = b - W' @ mean``. The features
come from a given store when its provenance matches the run's backbone and it holds every
training image, otherwise from one pass of the (unchanged) backbone over the training images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from featpipe.errors import FeatpipeError
from featpipe.provenance import check_same_features

PROBE_FOLDS = 5


@dataclass
class Probe:
    """A fitted linear probe: the pipeline, its features' source and its chosen C."""

    pipeline: object
    source: str
    best_params: dict
    cv_accuracy: float | None


def classifier_inputs(model: nn.Module, classifier: str, images, normalize,
                      batch_size: int = 64) -> np.ndarray:
    """The features entering ``model``'s classifier (eval mode, no gradients) for uint8 images."""
    head = model.get_submodule(classifier)
    captured = []
    handle = head.register_forward_pre_hook(lambda module, args: captured.append(
        args[0].detach().float().cpu()))
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            for chunk in images.split(batch_size):
                model(normalize(chunk))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured).numpy() if captured else np.empty((0, head.in_features), np.float32)


def store_features(store_path, expected: dict, ids: list[str]) -> np.ndarray:
    """Rows of ``ids`` (in that order) from a store whose provenance matches ``expected``."""
    from featpipe.store.reader import FeatureStore

    store = FeatureStore.open(store_path)
    check_same_features(expected, store.provenance, store.path.name)
    index_of = dict(zip(store.ids.tolist(), store.index.tolist()))
    missing = [i for i in ids if i not in index_of]
    if missing:
        raise FeatpipeError(f"{store.path.name} lacks {len(missing)} of the training images "
                            f"(e.g. {missing[0]!r}); extract the same source or omit `features`")
    data = store.load(expected["layers"], rows=[index_of[i] for i in ids])
    order = {image_id: k for k, image_id in enumerate(data.ids.tolist())}
    return data.X[[order[i] for i in ids]]


def fit_probe(X: np.ndarray, y: np.ndarray, class_names: list[str], seed: int,
              source: str) -> Probe:
    """The ``linear-probe`` recipe tuned by CV on ``X`` (a fixed C when CV is impossible)."""
    from featpipe.classical.recipes import build_recipe
    from featpipe.classical.search import SearchConfig, search

    pipeline, grid = build_recipe("linear-probe", random_state=seed)
    smallest = int(np.bincount(y, minlength=len(class_names)).min())
    if smallest < 2:
        values = grid["clf__C"]
        pipeline.set_params(clf__C=values[len(values) // 2]).fit(X, y)
        return Probe(pipeline, source, {"clf__C": pipeline.get_params()["clf__C"]}, None)
    config = SearchConfig(method="fast", cv=min(PROBE_FOLDS, smallest), random_state=seed)
    result = search(pipeline, grid, X, y, config, class_names=class_names)
    return Probe(result.best_estimator, source, dict(result.best_params),
                 float(result.best_score))


def probe_as_linear(probe: Probe, head: nn.Linear) -> None:
    """Set ``head`` to compute the probe's decision function (same predictions, same
    probabilities: two-class probes give logits ``(-s/2, s/2)``)."""
    scaler, clf = probe.pipeline.named_steps["normalize"], probe.pipeline.named_steps["clf"]
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    inverse = np.where(scale > 0, 1.0 / np.where(scale > 0, scale, 1.0), 0.0)
    coef = np.asarray(clf.coef_, dtype=np.float64) * inverse
    intercept = np.asarray(clf.intercept_, dtype=np.float64) - coef @ np.asarray(scaler.mean_)
    if coef.shape[0] == 1:  # binary: one score s for the positive class
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-1, 1]) * intercept / 2
    if coef.shape != tuple(head.weight.shape):
        raise FeatpipeError(f"the probe has {coef.shape[0]} classes but the head has "
                            f"{head.out_features}; every class needs a training image")
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(coef, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(intercept, dtype=head.bias.dtype))
