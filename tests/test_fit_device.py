"""Issue 15: the classical stage on torch tensors (``fit --device``), checked on torch CPU tensors
against the NumPy path (the array API needs SCIPY_ARRAY_API=1 before scipy is imported: the
comparison runs in a fresh interpreter)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from featpipe.classical.device import enable_array_api, for_device, to_numpy
from featpipe.classical.recipes import build_recipe
from featpipe.cli import main
from featpipe.errors import FeatpipeError
from featpipe.workflows.fit import TrainingSpec, fit_store

SCRIPT = textwrap.dedent(
    """
    import numpy as np, torch
    from sklearn.datasets import load_digits
    from featpipe.classical.device import for_device, search_on_device
    from featpipe.classical.recipes import Reduction, build_recipe
    from featpipe.classical.ridge import RidgeProbeClassifier
    from featpipe.classical.search import SearchConfig, search

    X, y = load_digits(return_X_y=True)
    X = (X + np.random.default_rng(0).normal(scale=2.0, size=X.shape)).astype(np.float32)
    X_train, y_train, X_test = X[:360], y[:360], X[1000:1400]
    cpu = torch.device("cpu")
    recipes = {"fne": {}, "linear-probe": {}, "ridge": {}, "pca": dict(recipe="pca-svm",
               reduce=Reduction("pca", 24))}
    for name, options in recipes.items():
        pipe, grid = build_recipe(options.pop("recipe", name), **options)
        config = SearchConfig(cv=3)
        numpy_result = search(for_device(pipe, cpu), grid, X_train, y_train, config)
        torch_result = search_on_device(pipe, grid, X_train, y_train, config, cpu)
        assert torch_result.extra["search"] == numpy_result.extra["search"], name
        assert torch_result.best_params == numpy_result.best_params, name
        scores = [[row["mean_test_score"] for row in r.cv_table]
                  for r in (numpy_result, torch_result)]
        # The L-BFGS classifiers stop within their tolerance of the optimum by featpipe's
        # L-BFGS on NumPy, torch's LBFGS on tensors: a fold's score may differ by an image
        # (1/120), by two for PCA, whose eigenvectors differ in the last bits between LAPACK
        # and torch; the closed-form ridge is the same arithmetic
        atol = {"ridge": 1e-12, "pca": 0.02}.get(name, 0.01)
        np.testing.assert_allclose(scores[0], scores[1], atol=atol, err_msg=name)
        best = torch_result.best_estimator
        assert not any(isinstance(v, torch.Tensor) for step in best.named_steps.values()
                       for v in vars(step).values()), name
        agree = best.predict(X_test) == numpy_result.best_estimator.predict(X_test)
        assert agree.all() if name == "ridge" else agree.mean() >= 0.99, name
        print(name, torch_result.best_params, torch_result.extra["device"])
    for cv in (None, 4):  # leave-one-out and k-fold on the device
        on_numpy = RidgeProbeClassifier(cv=cv).fit(X_train[:150], y_train[:150])
        on_torch = RidgeProbeClassifier(cv=cv).fit(torch.asarray(X_train[:150]), y_train[:150])
        assert on_torch.alpha_ == on_numpy.alpha_ and not on_numpy.alpha_at_edge_
        np.testing.assert_allclose(on_torch.cv_scores_, on_numpy.cv_scores_)
        np.testing.assert_allclose(on_torch.coef_, on_numpy.coef_, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(on_torch.predict(X_test), on_numpy.predict(X_test))
        print("ridge-probe", cv)
    """
)


def test_classical_stage_on_torch_cpu_tensors_predicts_as_numpy():
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["fne", "linear-probe", "ridge", "pca",
                                                   "ridge-probe", "ridge-probe"]
    assert all(line.endswith(" cpu") for line in lines[:4])


def test_device_pipeline_puts_the_solvers_on_the_device_and_refuses_numpy_only_steps():
    pipe = for_device(build_recipe("linear-probe")[0], torch.device("cuda"))
    assert type(pipe.named_steps["clf"]).__name__ == "LBFGSLogisticRegression"
    assert pipe.named_steps["clf"].device == "cuda"
    pca = for_device(build_recipe("pca-svm")[0], "cuda:1")
    assert pca.named_steps["reduce"].svd_solver == "covariance_eigh"
    assert pca.named_steps["clf"].device == "cuda:1"
    with pytest.raises(FeatpipeError, match="ClippedUMAP reduction runs on NumPy only"):
        for_device(build_recipe("umap-knn")[0], "cuda")
    with pytest.raises(FeatpipeError, match="KNeighborsClassifier runs on NumPy only"):
        for_device(build_recipe(classifier="knn")[0], "cuda")


def test_to_numpy_converts_fitted_tensors():
    from featpipe.classical.transformers import Standardizer

    scaler = Standardizer().fit(np.eye(3, dtype=np.float32))
    scaler.mean_ = torch.asarray(scaler.mean_)
    converted = to_numpy(scaler)
    assert isinstance(converted.mean_, np.ndarray) and isinstance(scaler.mean_, torch.Tensor)


def test_array_api_switch_too_late_is_one_line(monkeypatch):
    monkeypatch.delenv("SCIPY_ARRAY_API", raising=False)
    with pytest.raises(FeatpipeError, match="needs SCIPY_ARRAY_API=1 set before scipy"):
        enable_array_api()  # scipy is imported in this process


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the refusal without CUDA")
def test_device_cuda_without_cuda_is_one_line(lite0_store, tmp_path, capsys, monkeypatch):
    # the CLI sets SCIPY_ARRAY_API for --device; monkeypatch removes it after this test (set
    # in this process it would switch scikit-learn's array-API estimator checks on)
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    with pytest.raises(FeatpipeError, match="no CUDA GPU is available"):
        fit_store(lite0_store, TrainingSpec(recipe="fne", layers=["bn2"], cv=3,
                                            device="cuda"), out=tmp_path / "m.skops")
    code = main(["fit", str(lite0_store), "--out", str(tmp_path / "m.skops"), "--layers", "bn2",
                 "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "no CUDA GPU is available" in err[0]
    assert main(["fit", str(lite0_store), "--out", str(tmp_path / "m.skops"),
                 "--device", "gpu"]) != 0
    assert "--device must be cpu, auto, cuda or cuda:N, got 'gpu'" in capsys.readouterr().err
    with pytest.raises(FeatpipeError, match="`device` applies to the in-memory search"):
        fit_store(lite0_store, TrainingSpec(recipe="fne", layers=["bn2"], streaming=True,
                                            device="cuda"), out=tmp_path / "s.skops")
