"""Preprocessing fitted and applied a block of rows at a time (featpipe.classical.chunked)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline

from featpipe.classical import chunked
from featpipe.classical.chunked import fit_rows, predict_rows, transform_rows
from featpipe.classical.recipes import build_recipe

SLICES = {"a": (0, 5), "b": (5, 12)}


@pytest.fixture
def data(monkeypatch):
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 7)  # several blocks and a ragged last one
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(60, 12)) * rng.uniform(0.1, 50, size=12)).astype(np.float32)
    return X, rng.integers(0, 3, size=60), rng.permutation(60)[:45]


@pytest.mark.parametrize("recipe", ["fne", "l2", "linear-probe"])
def test_streamed_fit_and_blockwise_transform_equal_the_plain_pipeline(data, recipe):
    X, y, rows = data
    pipeline, _ = build_recipe(recipe, layer_slices=SLICES)
    plain = clone(pipeline[:-1]).fit(X[rows], y[rows])
    streamed = fit_rows(clone(pipeline[:-1]), X, y, rows)
    expected = plain.transform(X)
    got = transform_rows(streamed, X, np.arange(len(X)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]


def test_steps_that_cannot_stream_are_fitted_on_the_rows(data):
    X, y, rows = data
    pre = fit_rows(make_pipeline(PCA(3, random_state=0)), X, y, rows)
    reference = PCA(3, random_state=0).fit(X[rows])
    np.testing.assert_allclose(np.abs(pre[0].components_), np.abs(reference.components_),
                               rtol=1e-4, atol=1e-5)


def test_transform_rows_keeps_the_order_asked_for_and_handles_no_rows(data):
    X, _, _ = data
    order = np.array([59, 0, 30, 7, 8, 6])
    np.testing.assert_array_equal(transform_rows(None, X, order), X[order])
    assert transform_rows(None, X, np.array([], dtype=int)).shape == (0, 12)
    assert transform_rows(None, X, order, np.float64).dtype == np.float64


def test_predict_rows_equals_predict_over_blocks(data):
    X, y, _ = data
    pipeline, _ = build_recipe("linear-probe", layer_slices=SLICES)
    model = pipeline.fit(X, y)
    np.testing.assert_array_equal(predict_rows(model, X), model.predict(X))
    np.testing.assert_allclose(predict_rows(model, X, "predict_proba"), model.predict_proba(X),
                               rtol=1e-6)
