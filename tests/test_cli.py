"""The command line: exit codes, one-line errors, and fit -> predict -> evaluate end to end."""

import csv
import re
import json
import subprocess
import sys

import pytest

from featpipe.cli import main
from featpipe.store.reader import FeatureStore


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_layers_lists_nodes_and_presets(capsys):
    code, out, _ = run_cli(capsys, "layers", "efficientnet_lite0", "--image-size", "64")
    assert code == 0
    assert "preset full: 18 layers, 3120 features" in out
    assert "blocks.6.0" in out
    code, out, _ = run_cli(capsys, "layers", "--json")
    listing = json.loads(out)
    assert listing["presets"]["last"] and listing["layers"][0]["name"]


def test_info_json_reports_the_store(capsys, lite0_store):
    code, out, _ = run_cli(capsys, "info", lite0_store, "--json")
    info = json.loads(out)
    assert code == 0
    assert info["n_images"] == 30 and info["n_features"] == 3120
    assert info["classes"] == {"circle": 10, "square": 10, "triangle": 10}
    assert info["provenance"]["model"] == "efficientnet_lite0"
    code, out, _ = run_cli(capsys, "info", lite0_store)
    assert "30 images, 3120 features in 18 layers" in out


@pytest.mark.parametrize("argv, code, message", [
    (["extract", "/no/such/folder", "--out", "x.h5"], 1, "not found|does not exist"),
    (["extract", "{shapes}", "--out", "{tmp}/f.h5", "--model", "resnet5O"], 1, "unknown"),
    (["extract", "{shapes}", "--out", "{tmp}/f.h5", "--layers", "blocks.99"], 1, "blocks.99"),
    (["extract", "{shapes}", "--out", "{tmp}/nodir/f.h5"], 1, "does not exist"),
    (["extract", "{shapes}"], 2, "--out"),
    (["extract", "{shapes}", "--out", "{tmp}/f.h5", "--batch-size", "0"], 2, "batch-size"),
    (["info", "{tmp}/missing.h5"], 1, "not found"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_user_mistakes_give_one_line_and_exit_code(capsys, tmp_path, shapes_folder, argv, code,
                                                   message):
    argv = [a.format(shapes=shapes_folder, tmp=tmp_path) for a in argv]
    got, out, err = run_cli(capsys, *argv)
    assert got == code
    assert err.count("\n") == 1 and err.startswith("featpipe")
    assert "Traceback" not in err
    assert re.search(message, err), err


def test_console_script_exit_code_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "featpipe.cli", "info", str(tmp_path / "x.h5")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"featpipe: error: feature store not found: {tmp_path / 'x.h5'}"


def test_fit_predict_evaluate_end_to_end(capsys, tmp_path, lite0_store, shapes_folder):
    model = tmp_path / "model.skops"
    report = tmp_path / "report"
    code, out, err = run_cli(capsys, "fit", lite0_store, "--recipe", "fne", "--cv", "3",
                             "--test-split", "0.3", "--out", model, "--report", report,
                             "--grid", "clf__C=0.01,1")
    assert code == 0, err
    assert "test accuracy" in out and model.exists()
    assert (report / "report.json").exists() and (report / "confusion.png").exists()
    saved = json.loads((report / "report.json").read_text())
    assert saved["evaluation"]["accuracy"] > 0.6

    preds = tmp_path / "preds.csv"
    code, out, err = run_cli(capsys, "predict", model, shapes_folder, "--out", preds)
    assert code == 0, err
    rows = list(csv.DictReader(preds.open()))
    assert len(rows) == 30
    correct = sum(row["prediction"] == row["id"].split("/")[0] for row in rows)
    assert correct / len(rows) > 0.8

    code, out, err = run_cli(capsys, "evaluate", model, lite0_store, "--json")
    assert code == 0, err
    assert json.loads(out)["n_samples"] == 30


def test_fit_refuses_bad_training_data(capsys, tmp_path, lite0_store):
    code, _, err = run_cli(capsys, "fit", lite0_store, "--cv", "20", "--out", tmp_path / "m.skops")
    assert code == 1 and "fewer" in err and "Traceback" not in err
    assert not (tmp_path / "m.skops").exists()
    code, _, err = run_cli(capsys, "fit", lite0_store, "--layers", "blocks.99",
                           "--out", tmp_path / "m.skops")
    assert code == 1 and "blocks.99" in err


def test_predict_refuses_a_store_from_another_extraction(capsys, tmp_path, lite0_store,
                                                         shapes_folder):
    model = tmp_path / "model.skops"
    assert run_cli(capsys, "fit", lite0_store, "--layers", "bn2", "--recipe", "l2", "--cv", "3",
                   "--out", model)[0] == 0
    other = tmp_path / "other.h5"
    assert run_cli(capsys, "extract", shapes_folder, "--out", other, "--layers", "bn2",
                   "--pool", "max", "--image-size", "64", "--quiet")[0] == 0
    code, _, err = run_cli(capsys, "predict", model, other)
    assert code == 1 and "other settings" in err and "pool" in err
    assert FeatureStore.open(other).provenance["pool"] == "max"


def test_fit_refuses_unlabelled_and_empty_stores(capsys, tmp_path, shapes_folder):
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(p) for p in sorted(shapes_folder.glob("circle/*.png"))[:4]))
    unlabelled = tmp_path / "unlabelled.h5"
    assert run_cli(capsys, "extract", listing, "--out", unlabelled, "--layers", "bn2",
                   "--image-size", "64", "--quiet")[0] == 0
    code, _, err = run_cli(capsys, "fit", unlabelled, "--out", tmp_path / "m.skops")
    assert code == 1 and "has no labels" in err

    broken = tmp_path / "broken" / "cls"
    broken.mkdir(parents=True)
    (broken / "a.png").write_bytes(b"")
    (broken / "b.png").write_text("text")
    empty = tmp_path / "empty.h5"
    assert run_cli(capsys, "extract", broken.parent, "--out", empty, "--layers", "bn2",
                   "--image-size", "64", "--quiet")[0] == 0
    code, _, err = run_cli(capsys, "fit", empty, "--out", tmp_path / "m.skops")
    assert code == 1 and "no successfully extracted images (2 failed)" in err
    assert not (tmp_path / "m.skops").exists()


def test_model_with_untrusted_types_is_refused_without_trust(capsys, tmp_path, lite0_store):
    import operator

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from featpipe.classical.persist import save_model
    from featpipe.provenance import model_provenance

    store = FeatureStore.open(lite0_store)
    data = store.load(layers=["bn2"])
    pipeline = Pipeline([("negate", FunctionTransformer(operator.neg)),
                         ("clf", LogisticRegression())]).fit(data.X, data.y)
    model = tmp_path / "negate.skops"
    save_model(model, pipeline, provenance=model_provenance(store.provenance, data.layer_slices),
               training={"class_names": data.class_names})
    code, _, err = run_cli(capsys, "evaluate", model, lite0_store)
    assert code == 1 and "_operator.neg" in err and "allow these types with --trust NAMES" in err
    code, out, err = run_cli(capsys, "evaluate", model, lite0_store, "--trust", "_operator.neg")
    assert code == 0, err
    assert "accuracy" in out


def test_fit_stats_from_all_is_noted_and_reported(capsys, tmp_path, lite0_store):
    report = tmp_path / "report"
    code, out, err = run_cli(capsys, "fit", lite0_store, "--cv", "3", "--test-split", "0.3",
                             "--stats-from", "all", "--out", tmp_path / "m.skops",
                             "--report", report, "--grid", "clf__C=0.01,1")
    assert code == 0, err
    assert "transductive" in err and "test accuracy" in out
    meta = json.loads((report / "report.json").read_text())["meta"]
    assert meta["stats_from"]["source"] == "all" and meta["stats_from"]["transductive"] is True
    assert meta["search"] == "fast"


def test_fit_search_grid_and_bad_stats_from(capsys, tmp_path, lite0_store):
    report = tmp_path / "report"
    code, _, err = run_cli(capsys, "fit", lite0_store, "--cv", "3", "--search", "grid",
                           "--out", tmp_path / "m.skops", "--report", report,
                           "--grid", "clf__C=0.01,1")
    assert code == 0 and "transductive" not in err
    meta = json.loads((report / "report.json").read_text())["meta"]
    assert meta["search"] == "grid" and meta["stats_from"]["source"] == "train"
    code, _, err = run_cli(capsys, "fit", lite0_store, "--recipe", "l2", "--stats-from", "all",
                           "--out", tmp_path / "l2.skops")
    assert code == 1 and "standardizing pipeline" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "fit", lite0_store, "--search", "slow",
                           "--out", tmp_path / "x.skops")
    assert code == 2


@pytest.mark.parametrize("argv, message", [
    (["--cv", "1"], "error: --cv must be an int >= 2 or a CV splitter, got 1"),
    (["--recipe", "fnee"], "error: --recipe must be one of fne, l2, linear-probe, ridge, "
                           "pca-svm, umap-knn or None, got 'fnee'"),
    (["--normalize", "minmax"], "error: --normalize must be one of l2, layer-l2, standard, none"),
    (["--reduce", "tsne:2"], "unknown reduction 'tsne:2'; use pca:N, umap:N or none"),
    (["--grid", "C=1"], "grid parameter 'C' must name a step and a parameter"),
    (["--grid", "clf__C=-1", "--cv", "3"], r"invalid grid value: .* Fix the --grid values\."),
    (["--cv", "20"], "fewer than the 20 cross-validation folds; lower --cv or add samples"),
])
def test_fit_option_errors_are_worded_as_flags(capsys, tmp_path, lite0_store, argv, message):
    code, _, err = run_cli(capsys, "fit", lite0_store, "--out", tmp_path / "m.skops", *argv)
    assert code == 1 and re.search(message, err), err
    assert err.count("\n") == 1 and "`" not in err and not (tmp_path / "m.skops").exists()


def test_fit_flags_become_the_typed_spec(capsys, tmp_path, lite0_store):
    report = tmp_path / "report"
    code, _, err = run_cli(capsys, "fit", lite0_store, "--layers", "bn2,blocks.6.0", "--cv", "3",
                           "--halving", "--reduce", "pca:4", "--grid", "clf__C=0.1,1",
                           "--out", tmp_path / "m.skops", "--report", report)
    assert code == 0, err
    spec = json.loads((report / "report.json").read_text())["meta"]["spec"]
    assert spec["layers"] == ["bn2", "blocks.6.0"] and spec["search"] == "halving"
    assert spec["reduce"] == "pca:4" and spec["grid"] == {"clf__C": [0.1, 1]}
    code, _, err = run_cli(capsys, "fit", lite0_store, "--recipe", "pca-svm", "--reduce", "none",
                           "--cv", "3", "--out", tmp_path / "n.skops", "--report", report)
    assert code == 0, err
    assert json.loads((report / "report.json").read_text())["meta"]["spec"]["reduce"] == "none"


def test_fit_summarises_fits_at_the_iteration_limit(capsys, tmp_path, lite0_store):
    code, out, err = run_cli(capsys, "fit", lite0_store, "--recipe", "linear-probe", "--cv", "2",
                             "--grid", "clf__C=1,10", "--max-iter", "2", "--layers", "bn2",
                             "--out", str(tmp_path / "m.skops"))
    assert code == 0 and "ConvergenceWarning" not in err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "stopped at the iteration limit (--max-iter 2)" in notes[0]
    assert "raise --max-iter" in notes[0]
    code, _, err = run_cli(capsys, "fit", lite0_store, "--recipe", "umap-knn", "--max-iter", "5",
                           "--out", str(tmp_path / "k.skops"))
    assert code == 1 and "--max-iter does not apply to KNeighborsClassifier" in err


def test_fit_ridge_recipe_on_the_last_layer_and_the_full_network(capsys, tmp_path, lite0_store):
    for layers in ("last", "all"):
        report = tmp_path / f"report-{layers}"
        code, out, err = run_cli(capsys, "fit", lite0_store, "--recipe", "ridge", "--layers",
                                 layers, "--cv", "3", "--test-split", "0.3", "--out",
                                 str(tmp_path / f"{layers}.skops"), "--report", str(report))
        assert code == 0, err
        assert "best CV" in out and "clf__alpha" in out
        assert (report / "cv_curve.png").exists()
    code, out, _ = run_cli(capsys, "recipes")
    assert "ridge " in out
