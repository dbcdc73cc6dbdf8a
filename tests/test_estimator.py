"""FrozenFeatureClassifier: sklearn API over images, with the feature cache."""

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone

import featpipe.extract
from featpipe.errors import FeatpipeError
from featpipe.workflows.estimator import FrozenFeatureClassifier, content_digest
from featpipe.data.sources import from_arrays, from_folder


@pytest.fixture
def paths_and_labels(shapes_folder):
    image_set = from_folder(shapes_folder)
    return image_set.items, np.array(image_set.labels)


@pytest.fixture
def counted_extract(monkeypatch):
    calls = []
    real = featpipe.extract.extract

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(featpipe.extract, "extract", counting)
    return calls


def _classifier(tmp_path, **params):
    return FrozenFeatureClassifier(layers="stages", image_size=64, cv=3,
                                   cache_dir=str(tmp_path / "cache"), **params)


def test_fit_predict_score_on_paths_reuses_cached_features(tmp_path, paths_and_labels,
                                                           counted_extract):
    paths, labels = paths_and_labels
    train, test = np.arange(30) % 3 != 0, np.arange(30) % 3 == 0
    clf = _classifier(tmp_path, recipe="fne", grid={"clf__C": [0.01, 1]})
    clf.fit([paths[i] for i in np.flatnonzero(train)], labels[train])
    assert set(clf.classes_) == {"circle", "square", "triangle"}
    assert clf.best_params_["clf__C"] in (0.01, 1)
    test_paths = [paths[i] for i in np.flatnonzero(test)]
    assert clf.score(test_paths, labels[test]) >= 0.7
    assert len(counted_extract) == 2  # train and test images, once each

    other = clone(clf).set_params(recipe="linear-probe", grid={"clf__C": [0.1, 1]})
    other.fit([paths[i] for i in np.flatnonzero(train)], labels[train])
    proba = other.predict_proba(test_paths)
    assert proba.shape == (10, 3) and np.allclose(proba.sum(axis=1), 1)
    assert len(counted_extract) == 2  # another recipe re-used both cached stores


def test_in_memory_arrays_and_their_content_key(tmp_path, paths_and_labels):
    paths, labels = paths_and_labels
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    clf = _classifier(tmp_path, recipe="l2", grid={"clf__C": [1]}).fit(arrays, labels)
    assert clf.predict(arrays[:4]).tolist() == clf.predict(paths[:4]).tolist()
    changed = [a.copy() for a in arrays]
    changed[0][0, 0] = 255 - changed[0][0, 0]
    assert content_digest(from_arrays(changed)) != content_digest(from_arrays(arrays))


def test_errors_are_one_line_value_errors(tmp_path, paths_and_labels):
    paths, labels = paths_and_labels
    with pytest.raises(FeatpipeError, match="30 images but 29 labels"):
        _classifier(tmp_path).fit(paths, labels[:29])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    with pytest.raises(FeatpipeError, match="could not be read .*broken.png: zero-byte"):
        _classifier(tmp_path).fit(paths + [str(broken)], list(labels) + ["circle"])
    with pytest.raises(ValueError):
        _classifier(tmp_path).fit(paths, ["only-one-class"] * 30)
