"""Each comparison script's entry point on a tiny dataset, so the benchmark suite cannot rot.

The dataset is 3 classes x 9 images of the bundled ``data/clipart-mini`` (6 train / 3 test
per class), extracted once per session at 64 px into a temporary features folder that every
script reuses through ``--features-dir``.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from benchmarks import (common, compare_classifiers, compare_layers, compare_recipes, cost,
                        few_shot, harness, run_all)

CLIPART = Path(__file__).resolve().parents[1] / "data" / "clipart-mini"
CLASSES = ("birds", "flowers", "fruit")
TRAIN_PER_CLASS, TEST_PER_CLASS = 6, 3
NAME = "tiny"


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory) -> Path:
    """A manifest with a split column over 27 clipart-mini images."""
    root = tmp_path_factory.mktemp("tiny")
    rows = [("path", "label", "split")]
    for label in CLASSES:
        files = sorted((CLIPART / label).glob("*.png"))[:TRAIN_PER_CLASS + TEST_PER_CLASS]
        (root / label).mkdir()
        for k, source in enumerate(files):
            shutil.copy(source, root / label / source.name)
            rows.append((f"{label}/{source.name}", label,
                         "train" if k < TRAIN_PER_CLASS else "test"))
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return manifest


@pytest.fixture(scope="session")
def shared_argv(tmp_path_factory, tiny_manifest) -> list[str]:
    """Options every script gets; the store is extracted here, once."""
    features = tmp_path_factory.mktemp("features")
    argv = ["--datasets", NAME, "--manifest", f"{NAME}={tiny_manifest}", "--image-size", "64",
            "--features-dir", str(features), "--quick"]
    common.ensure_store(NAME, harness.parse_args(harness.parser("test"), argv))
    return argv


def run(module, shared_argv, out: Path, *extra: str) -> list[dict]:
    assert module.main([*shared_argv, "--out", str(out), *extra]) == 0
    for suffix in (".md", ".png"):
        assert (out / f"{module.NAME}{suffix}").stat().st_size > 0
    with open(out / f"{module.NAME}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def assert_unit_interval(rows: list[dict], *columns: str) -> None:
    for row in rows:
        for column in columns:
            assert 0.0 <= float(row[column]) <= 1.0, (column, row)


def test_compare_layers(shared_argv, tmp_path):
    rows = run(compare_layers, shared_argv, tmp_path)
    assert [r["layer"] for r in rows][-2:] == [common.SECOND_TO_LAST_LAYER, common.LAST_LAYER]
    assert len(rows) == 18 and {r["dataset"] for r in rows} == {NAME}
    assert_unit_interval(rows, "accuracy", "balanced_accuracy", "cv_accuracy")


def test_compare_recipes(shared_argv, tmp_path):
    rows = run(compare_recipes, shared_argv, tmp_path)
    assert [r["configuration"] for r in rows] == [c.label for c in compare_recipes.CONFIGURATIONS]
    assert {r["n_features"] for r in rows if r["layers"] == "bn2"} == {"1280"}
    assert_unit_interval(rows, "accuracy", "balanced_accuracy", "cv_accuracy")


def test_few_shot(shared_argv, tmp_path):
    rows = run(few_shot, shared_argv, tmp_path)
    per_config = {c.label: 0 for c in compare_recipes.CONFIGURATIONS}
    for row in rows:
        per_config[row["configuration"]] += 1
    # shots 1, 2, 5 with 2 seeds each, plus one "all" run
    assert set(per_config.values()) == {3 * few_shot.QUICK_SEEDS + 1}
    assert {r["cv"] for r in rows if r["shots"] == "1"} == {"fixed"}
    assert {r["cv"] for r in rows if r["shots"] == "2"} == {"2"}
    assert_unit_interval(rows, "accuracy", "balanced_accuracy")
    summary = list(csv.DictReader(open(tmp_path / "few_shot_summary.csv")))
    assert len(summary) == 4 * len(per_config)


def test_compare_classifiers(shared_argv, tmp_path):
    rows = run(compare_classifiers, shared_argv, tmp_path, "--no-umap")
    expected = [c.label for c in compare_classifiers.CLASSIFIERS if not c.uses_umap]
    assert [r["classifier"] for r in rows] == expected
    assert_unit_interval(rows, "accuracy", "balanced_accuracy", "cv_accuracy")
    assert all(float(r["fit_seconds"]) > 0 for r in rows)


def test_cost(shared_argv, tmp_path):
    rows = run(cost, shared_argv, tmp_path, "--no-umap")
    extraction = [r for r in rows if r["stage"] == "extraction"]
    assert [r["configuration"] for r in extraction][:3] == [f"extract `{p}`" for p in cost.PRESETS]
    assert all(float(r["images_per_second"]) > 0 for r in extraction)
    classical = [r for r in rows if r["stage"] == "classical"]
    assert len(classical) == len(compare_recipes.CONFIGURATIONS) + 1  # UMAP left out


def test_knn_grid_fits_the_folds():
    assert compare_classifiers._feasible("clf__n_neighbors", [1, 5, 10, 20], 18, 3) == [1, 5, 10]
    assert compare_classifiers._feasible("clf__C", [0.1, 1.0], 4, 3) == [0.1, 1.0]


def test_few_shot_cv_rule():
    import numpy as np

    assert common.few_shot_cv(np.array([0, 1, 2])) is None
    assert common.few_shot_cv(np.array([0, 0, 1, 1, 1])) == 2
    assert common.few_shot_cv(np.repeat([0, 1], 20)) == 5


def test_run_all_keeps_discussion_and_reports_absent_modules(tmp_path, monkeypatch):
    (tmp_path / run_all.SUITE).write_text(
        f"# old\n{run_all.DISCUSSION_START}\nhand-written\n{run_all.DISCUSSION_END}\n")
    (tmp_path / "cost.md").write_text("# Comparison 6: cost\n\n| a |\n|---|\n| 1 |\n")
    script = run_all.Script("no_such_module", "none.md", "absent")
    outcome = run_all.run_script(script, [])
    assert outcome.status == "skipped: module not present"
    args = run_all.parse(["--out", str(tmp_path), "--quick"])
    page = run_all.write_suite(args, [outcome, run_all.Outcome(run_all.SCRIPTS[-1], "ok", 1.0)],
                               {"tuxpaint": "missing package"}).read_text()
    assert "hand-written" in page and "## Comparison 6: cost" in page and "### " not in page
    assert "skipped: module not present" in page and "missing package" in page


# --------------------------------------------------------------------------- the harness


def test_load_average_is_the_1_5_15_minute_tuple_with_a_formatter():
    load = harness.load_average()
    assert len(load) == 3 and all(isinstance(v, float) for v in load)
    assert harness.format_load((1.234, 0.5, 0.25)) == "1.23 0.50 0.25"
    assert harness.format_load((1.234, 0.5, 0.25), digits=1) == "1.2 0.5 0.2"
    assert len(harness.format_load().split()) == 3


def test_peak_rss_of_a_child_and_measure():
    import sys

    rss, seconds, code, err = harness.peak_rss_mib(
        [sys.executable, "-c", "import sys; b = bytearray(64 << 20); sys.exit('bye')"])
    assert rss >= 64 and seconds > 0 and code == 1 and err == "bye"
    measured = harness.measure(sum, [1, 2])
    assert measured.value == 3 and measured.seconds >= 0 and len(measured.load) == 3


def test_python_peak_is_read_before_the_interpreter_tears_down():
    import json
    import subprocess
    import sys

    # a child's ru_maxrss starts at its parent's RSS: measure from a fresh, small parent; the
    # 256 MiB are touched after the code ends (at exit), as torch's libraries' pages are
    child = ("import atexit, sys; atexit.register(lambda: b'x' * (256 << 20)); "
             "b = bytes(range(256)) * (1 << 19); sys.exit('bye')")
    parent = ("import json, sys; from benchmarks.harness.measure import peak_rss_mib, "
              "python_peak_rss_mib; code = sys.argv[1]; print(json.dumps(["
              "python_peak_rss_mib(code), peak_rss_mib([sys.executable, '-c', code])]))")
    out = subprocess.run([sys.executable, "-c", parent, child], capture_output=True, text=True,
                         check=True).stdout
    (rss, seconds, code, err), (whole, _, _, _) = json.loads(out)
    assert 128 <= rss < whole - 192 and seconds > 0 and code == 1 and err == "bye"


def test_result_cache_computes_once_and_writes_atomically(tmp_path):
    calls = []
    path = harness.cache_file(tmp_path / "memo", {"b": 1, "a": [1, 2]})
    assert path == harness.cache_file(tmp_path / "memo", {"a": [1, 2], "b": 1})
    for _ in range(2):
        assert harness.cached(path, lambda: calls.append(1) or {"x": 1.5}) == {"x": 1.5}
    assert calls == [1] and [p.name for p in path.parent.iterdir()] == [path.name]


def test_every_script_shares_the_quick_and_out_convention():
    from benchmarks import bench_extract, bench_search

    parsers = {"common": lambda a: harness.parse_args(harness.parser("x"), a),
               "bench_extract": bench_extract._parse, "bench_search": bench_search.parse,
               "run_all": run_all.parse}
    for name, parse in parsers.items():
        assert parse(["--quick"]).out == harness.QUICK_RESULTS_DIR, name
        assert parse([]).out == harness.RESULTS_DIR, name
        assert str(parse(["--out", "x"]).out) == "x", name
    assert bench_search.parse(["--n-jobs", "2"]).jobs == 2
    with pytest.raises(SystemExit, match="unknown arm"):
        bench_search.parse(["--arms", "plain,nope"])


def test_gpu_throughput_quick_on_cpu(tmp_path):
    """Issue 15's benchmark, smoke-run on the CPU: every section is filled, GPU-only arms say
    why they did not run, and the page records the environment."""
    from benchmarks import gpu_throughput

    assert gpu_throughput.main(["--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "gpu_throughput.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    bare = [r for r in rows if r["part"] == "bare"]
    assert len(bare) == 12 and all(float(r["img_s"]) > 0 for r in bare)
    extract_rows = [r for r in rows if r["part"] == "extract"]
    assert {r["note"] for r in extract_rows if r["decode"] == "gpu"} == {"needs CUDA"}
    ran = [r for r in extract_rows if r["decode"] == "cpu"]
    assert len(ran) == 12 and all(float(r["img_s"]) > 0 and float(r["ratio_to_bare"]) > 0
                                  for r in ran)
    classical = {(r["part"], r["where"]) for r in rows if r["part"] in ("logistic-sweep",
                                                                        "ridge-probe")}
    assert classical == {("logistic-sweep", "torch cpu"), ("logistic-sweep", "numpy (CPU)"),
                         ("ridge-probe", "torch cpu"), ("ridge-probe", "numpy (CPU)")}
    page = (tmp_path / "gpu_throughput.md").read_text()
    assert "- GPU: none, driver none" in page and "torch 2." in page
    assert "logistic sweep GPU speed-up" in page
