"""featpipe.workflows: hold-outs and splits, fit/predict/evaluate over stores and model files."""

import numpy as np
import pytest

from featpipe.classical.persist import load_model
from featpipe.errors import FeatpipeError
from featpipe.provenance import MODEL_KEYS
from featpipe.store import FeatureStore
from featpipe.workflows.data import align_labels, split_train_test
from featpipe.workflows.evaluate import evaluate_store
from featpipe.workflows.fit import TrainingSpec, fit_store
from featpipe.workflows.predict import predict_source


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, lite0_store):
    """An FNE model fitted on 70 % of the shapes store, scored on the rest."""
    out = tmp_path_factory.mktemp("model") / "fne.skops"
    outcome = fit_store(lite0_store, TrainingSpec(recipe="fne", layers=["bn2"], cv=3), out=out,
                        test_split="0.3")
    return outcome


def test_stratified_holdout_is_seeded_and_disjoint(lite0_store):
    store = FeatureStore.open(lite0_store)
    train, test = split_train_test(store, ["bn2"], test_split="0.3", seed=1)
    again, _ = split_train_test(store, ["bn2"], test_split="0.3", seed=1)
    assert set(train.index) & set(test.index) == set()
    assert len(train.y) + len(test.y) == len(store.ok_rows)
    assert np.bincount(test.y).tolist() == [3, 3, 3]
    assert train.index.tolist() == again.index.tolist()


def test_no_test_set_without_split_or_fraction(lite0_store):
    train, held_out = split_train_test(FeatureStore.open(lite0_store), ["bn2"])
    assert held_out is None and len(train.y) == 30


def test_fraction_outside_zero_one_is_refused(lite0_store):
    with pytest.raises(FeatpipeError, match="`test_split` fraction must be between 0 and 1"):
        split_train_test(FeatureStore.open(lite0_store), ["bn2"], test_split="1.5")


def test_fit_store_saves_a_model_that_keeps_the_provenance(fitted, lite0_store):
    pipeline, provenance, training = load_model(fitted.model_path)
    assert set(provenance) == set(MODEL_KEYS)
    assert provenance["layers"] == ["bn2"] and provenance["layer_dims"] == {"bn2": 1280}
    assert training["n_train"] == 21 and training["class_names"] == ["circle", "square",
                                                                      "triangle"]
    assert fitted.evaluation["n_test"] == 9 and [r["n"] for r in fitted.evaluation["per_class"]] == [3] * 3


def test_predict_store_and_reextracted_images_agree(fitted, lite0_store, shapes_folder):
    from_store = predict_source(fitted.model_path, lite0_store)
    from_images = predict_source(fitted.model_path, shapes_folder)
    assert [r["prediction"] for r in from_store["rows"]] == \
        [r["prediction"] for r in from_images["rows"]]
    assert [r["id"] for r in from_store["rows"]] == [r["id"] for r in from_images["rows"]]


def test_evaluate_aligns_labels_by_name(fitted, lite0_store):
    store = FeatureStore.open(lite0_store)
    data = store.load(["bn2"])
    renamed = align_labels(data, list(reversed(data.class_names)))
    assert [renamed.class_names[i] for i in renamed.y] == [data.class_names[i] for i in data.y]
    evaluation = evaluate_store(fitted.model_path, lite0_store)
    assert evaluation["n_samples"] == 30


def test_align_labels_refuses_unknown_classes(lite0_store):
    data = FeatureStore.open(lite0_store).load(["bn2"])
    with pytest.raises(FeatpipeError, match="not among the model's classes"):
        align_labels(data, ["circle", "square"])


def test_fit_layers_accepts_presets(lite0_store, tmp_path, capsys):
    from pathlib import Path

    from featpipe.cli import main

    store = FeatureStore.open(lite0_store)
    assert store.resolve_layers("full") == list(store.layers)
    assert store.resolve_layers(["last"]) == ["bn2"]  # the head of a `full` store
    stages = store.resolve_layers("stages")
    assert 3 <= len(stages) < len(store.layers) and stages[-1] == "bn2"
    legacy = FeatureStore.open(Path(__file__).parent / "data" / "legacy" / "legacy-store.h5")
    assert legacy.resolve_layers("last") == ["global_pool"]
    with pytest.raises(FeatpipeError, match="before presets were recorded"):
        legacy.resolve_layers("stages")
    assert main(["fit", str(lite0_store), "--layers", "last", "--cv", "2", "--grid",
                 "clf__C=0.01", "--out", str(tmp_path / "m.skops")]) == 0
    assert load_model(tmp_path / "m.skops")[1]["layers"] == ["bn2"]


def test_held_out_split_can_load_after_the_search(lite0_store, tmp_path):
    import shutil

    import h5py

    path = shutil.copy(lite0_store, tmp_path / "split.h5")
    with h5py.File(path, "r+") as f:
        n = len(f["index"])
        f.create_dataset("split", data=np.array(["train", "test"] * (n // 2) + ["train"] * (n % 2),
                                                dtype=h5py.string_dtype()))
    store = FeatureStore.open(path)
    eager_train, eager_test = split_train_test(store, ["bn2"])
    train, later = split_train_test(store, ["bn2"], defer_held_out=True)
    assert callable(later) and (eager_test.splits == "test").all()
    np.testing.assert_array_equal(later().X, eager_test.X)
    np.testing.assert_array_equal(train.X, eager_train.X)
    assert set(train.splits) == {"train"}
    with pytest.raises(FeatpipeError, match="no rows in split 'valid'"):
        split_train_test(store, ["bn2"], test_split="valid", defer_held_out=True)
