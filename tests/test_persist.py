"""featpipe.persist: skops round trip with provenance, refusal of untrusted types, atomic writes."""

import io
import json
import zipfile

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_digits
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from featpipe.errors import FeatpipeError
from featpipe import __version__
from featpipe.classical.persist import (
    MODEL_FORMAT,
    load_model,
    save_model,
    skops_io,
    untrusted_types,
)
from featpipe.classical.recipes import Reduction, build_recipe

SLICES = {"a": (0, 24), "b": (24, 64)}
PROVENANCE = {
    "backbone": "tf_efficientnet_lite0",
    "weights_sha256": "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    "layers": ["a", "b"],
    "pooling": "avg",
    "preprocessing": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    "image_size": 128,
}
TRAINING = {
    "recipe": "fne",
    "best_params": {"clf__C": 0.1},
    "class_names": ["zero", "one"],
    "cv_score": 0.97,
}


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(n_class=4, return_X_y=True)
    return X.astype(np.float32), y


class Shift(TransformerMixin, BaseEstimator):
    """A transformer featpipe does not know: loading it must be refused by default."""

    def fit(self, X, y=None):
        self.offset_ = 1.0
        return self

    def transform(self, X):
        return X + self.offset_


class Leaky(Shift):
    """Holds something skops cannot serialize."""

    def fit(self, X, y=None):
        self.stream_ = (i for i in range(3))
        return super().fit(X, y)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    "recipe, layers", [("fne", ["b"]), ("l2", None), ("linear-probe", None), ("pca-svm", None)]
)
def test_round_trip(data, tmp_path, recipe, layers):
    X, y = data
    pipeline = build_recipe(
        recipe,
        layer_slices=SLICES,
        layers=layers,
        reduce=Reduction("pca", 8) if recipe == "pca-svm" else None,
    )[0]
    pipeline.fit(X, y)
    path = save_model(
        tmp_path / "models" / "m.skops", pipeline, provenance=PROVENANCE, training=TRAINING
    )
    assert _files(tmp_path / "models") == ["m.skops"]  # no temporary leftovers
    assert untrusted_types(path) == []  # featpipe's own transformers are trusted by default
    loaded, provenance, training = load_model(path)
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))
    np.testing.assert_array_equal(loaded[:-1].transform(X), pipeline[:-1].transform(X))
    assert provenance == PROVENANCE and training == TRAINING
    assert [name for name, _ in loaded.steps] == [name for name, _ in pipeline.steps]
    # written as it is made, the archive holds what skops's own (in-memory) dump holds
    payload = {"format": MODEL_FORMAT, "featpipe_version": __version__, "pipeline": pipeline,
               "provenance": PROVENANCE, "training": TRAINING}
    with zipfile.ZipFile(path) as ours, \
            zipfile.ZipFile(io.BytesIO(skops_io().dumps(payload))) as theirs:
        assert _archive(ours) == _archive(theirs)


def _archive(zip_file) -> tuple:
    """An archive's schema and arrays, without the ``id()`` of the objects that skops names
    them by (short-lived objects get other ids in each dump)."""
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("__id__", "file")}
        return [strip(v) for v in node] if isinstance(node, list) else node

    arrays = sorted(zip_file.read(name) for name in zip_file.namelist() if name.endswith(".npy"))
    return strip(json.loads(zip_file.read("schema.json"))), arrays


def test_round_trip_of_a_pca_fitted_without_copies(data, tmp_path):
    from featpipe.classical.transformers import ClippedPCA

    X, y = data
    pca = ClippedPCA(8, svd_solver="randomized", random_state=0)  # centred implicitly
    pipeline = Pipeline([("reduce", pca), ("clf", LinearSVC())]).fit(X, y)
    path = save_model(tmp_path / "m.skops", pipeline, provenance=PROVENANCE, training=TRAINING)
    assert untrusted_types(path) == []
    loaded = load_model(path)[0]
    np.testing.assert_array_equal(loaded[:-1].transform(X), pipeline[:-1].transform(X))
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))


def test_untrusted_types_are_refused_unless_trusted(data, tmp_path):
    X, y = data
    pipeline = Pipeline([("normalize", Shift()), ("clf", LinearSVC())]).fit(X, y)
    path = save_model(tmp_path / "m.skops", pipeline, provenance={}, training={})
    name = f"{Shift.__module__}.Shift"
    assert untrusted_types(path) == [name]
    with pytest.raises(
        FeatpipeError, match=rf"types featpipe does not trust: {name}; .*`trusted=NAMES`"
    ) as info:
        load_model(path)
    assert "\n" not in str(info.value)
    with pytest.raises(FeatpipeError, match="does not trust"):
        load_model(path, trusted=["some.other.Type"])
    for trusted in ([name], True):
        loaded, _, _ = load_model(path, trusted=trusted)
        np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))


def test_unfitted_or_unserializable_pipelines_write_nothing(data, tmp_path):
    X, y = data
    with pytest.raises(FeatpipeError, match="not fitted"):
        save_model(
            tmp_path / "out" / "m.skops", build_recipe("fne")[0], provenance={}, training={}
        )
    leaky = Pipeline([("reduce", Leaky()), ("clf", LinearSVC())]).fit(X, y)
    with pytest.raises(
        FeatpipeError, match=r"cannot save this model safely with skops: step 'reduce' \(Leaky\)"
    ):
        save_model(tmp_path / "out" / "m.skops", leaky, provenance={}, training={})
    assert not (tmp_path / "out").exists()


def test_overwrite_is_atomic(data, tmp_path):
    X, y = data
    path = tmp_path / "m.skops"
    first = build_recipe("l2")[0].fit(X, y)
    save_model(path, first, provenance={"run": 1}, training={})
    save_model(path, build_recipe("fne")[0].fit(X, y), provenance={"run": 2}, training={})
    assert load_model(path)[1] == {"run": 2} and _files(tmp_path) == ["m.skops"]


def test_bad_model_files(tmp_path):
    with pytest.raises(FeatpipeError, match="does not exist"):
        load_model(tmp_path / "missing.skops")
    junk = tmp_path / "junk.skops"
    junk.write_bytes(b"not a zip archive")
    with pytest.raises(FeatpipeError, match="not a featpipe model file"):
        load_model(junk)
    foreign = tmp_path / "foreign.skops"
    sio.dump({"some": "dict"}, foreign)
    with pytest.raises(FeatpipeError, match="not a featpipe model"):
        load_model(foreign)


@pytest.mark.slow  # numba (UMAP)
def test_umap_training_rows_are_saved_in_blocks_and_load_whole(data, tmp_path, monkeypatch):
    from featpipe.classical.transformers import reduction

    monkeypatch.setattr(reduction, "_SAVED_BLOCK_BYTES", 1000)  # 1000 B: 3 rows of 64 float32
    X, y = data
    pipeline = build_recipe("umap-knn", reduce=Reduction("umap", 2))[0].fit(X, y)
    path = save_model(tmp_path / "m.skops", pipeline, provenance=PROVENANCE, training=TRAINING)
    with zipfile.ZipFile(path) as archive:
        shapes = [np.load(io.BytesIO(archive.read(name))).shape
                  for name in archive.namelist() if name.endswith(".npy")]
    assert shapes.count((3, X.shape[1])) == len(X) // 3  # no array of all the rows
    assert (len(X), X.shape[1]) not in shapes
    loaded, _, _ = load_model(path)
    reduce = loaded.named_steps["reduce"]
    assert isinstance(reduce.X_fit_, np.ndarray)
    np.testing.assert_array_equal(reduce.X_fit_, pipeline.named_steps["reduce"].X_fit_)
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))
    assert isinstance(pipeline.named_steps["reduce"].X_fit_, np.ndarray)  # saving changed nothing
