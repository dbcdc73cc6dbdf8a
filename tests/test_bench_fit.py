"""The fit benchmark (issue 3) and the peers comparison run end to end on tiny data.

A 3-class x (6 train + 3 test) manifest is built from the bundled ``data/clipart-mini`` and
extracted at 64 px into a temporary features folder. In the project's environment the peers
(fne, thingsvision, img2vec-pytorch) are not installed: their rows must say so while the
featpipe arms still run.
"""

from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

import pytest

from benchmarks import bench_fit, harness, peers

CLIPART = Path(__file__).resolve().parents[1] / "data" / "clipart-mini"
CLASSES = ("birds", "flowers", "fruit")
TRAIN, TEST = 6, 3
NAME = "tiny"


@pytest.fixture(scope="module")
def argv(tmp_path_factory) -> list[str]:
    """Shared options: the tiny manifest, 64 px, a temporary features folder, --quick."""
    root = tmp_path_factory.mktemp("tiny-fit")
    rows = [("path", "label", "split")]
    for label in CLASSES:
        (root / label).mkdir()
        for k, source in enumerate(sorted((CLIPART / label).glob("*.png"))[:TRAIN + TEST]):
            shutil.copy(source, root / label / source.name)
            rows.append((f"{label}/{source.name}", label, "train" if k < TRAIN else "test"))
    with open(root / "manifest.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return ["--datasets", NAME, "--manifest", f"{NAME}={root / 'manifest.csv'}",
            "--image-size", "64", "--features-dir", str(root / "features"), "--quick"]


def read_rows(out: Path, name: str) -> list[dict]:
    for suffix in (".md", ".png"):
        assert (out / f"{name}{suffix}").stat().st_size > 0
    with open(out / f"{name}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_bench_fit_quick(argv, tmp_path):
    assert bench_fit.main([*argv, "--out", str(tmp_path)]) == 0
    rows = read_rows(tmp_path, bench_fit.NAME)
    cache = [r for r in rows if r["part"] == "cache"]
    assert [(r["recipe"], r["arm"]) for r in cache] == [
        (recipe, arm) for recipe in bench_fit.CACHE_RECIPES for arm in bench_fit.CACHE_ARMS]
    assert {r["cached"] for r in cache if r["arm"] in ("cold", "warm")} == {"True"}
    assert {r["cached"] for r in cache if r["arm"] == "off"} == {"False"}
    auto = {r["recipe"]: r["cached"] for r in cache if r["arm"] == "auto"}
    assert auto == {"fne": "False", "pca-svm": "True"}
    for recipe in bench_fit.CACHE_RECIPES:  # caching never changes the chosen parameters
        assert len({r["best_params"] for r in cache if r["recipe"] == recipe}) == 1
    memory = [r for r in rows if r["part"] == "memory"]
    assert [r["recipe"] for r in memory] == list(bench_fit.QUICK_MEMORY_RECIPES)
    for row in memory:
        assert int(row["n_train"]) == TRAIN * len(CLASSES)
        assert float(row["peak_rss_mib"]) >= float(row["baseline_rss_mib"]) > 0
        assert float(row["x_mib"]) > 0


QUICK_COMPARISONS = ("multi-layer", "fne")  # single-layer differs only in layer and size


def test_peers_quick(argv, tmp_path):
    extra = ["--comparisons", ",".join(QUICK_COMPARISONS), "--out", str(tmp_path)]
    assert peers.main([*argv, *extra]) == 0
    rows = read_rows(tmp_path, peers.NAME)
    assert {r["comparison"] for r in rows} == set(QUICK_COMPARISONS)
    by_tool = {(r["comparison"], r["tool"]): r for r in rows}
    for comparison in QUICK_COMPARISONS:
        ours, peer, module = peers.COMPARISONS[comparison]
        if comparison == "fne":
            featpipe_rows = [by_tool[(comparison, "featpipe fne (CV over C)")],
                             by_tool[(comparison, "featpipe fne (C=1)")]]
            peer_row = by_tool[(comparison, "fne package")]
        else:
            featpipe_rows, peer_row = [by_tool[(comparison, ours)]], by_tool[(comparison, peer)]
        for row in featpipe_rows:
            assert row["status"] == "ok" and int(row["n_images"]) == len(CLASSES) * (TRAIN + TEST)
            assert float(row["seconds"]) > 0 and float(row["peak_rss_mib"]) > 0
        if importlib.util.find_spec(module) is None:
            assert peer_row["status"].startswith("skipped:")
        else:
            assert peer_row["status"] == "ok"
    fne_accuracy = float(by_tool[("fne", "featpipe fne (CV over C)")]["accuracy"])
    assert 0.0 <= fne_accuracy <= 1.0
    assert "Ratios" in (tmp_path / "peers.md").read_text()


def test_fne_layers_are_the_convolutions_ending_each_full_layer():
    from featpipe.models import create_backbone

    bb = create_backbone(harness.DEFAULT_MODEL, image_size=64)
    layers = peers.fne_layers(bb)
    assert layers[0] == "conv_stem" and layers[-1] == "conv_head"
    assert layers[1] == "blocks.0.0.conv_pw" and layers[2] == "blocks.1.0.conv_pwl"
    assert len(layers) == 18


def test_safe_batch_size_avoids_a_last_batch_of_one():
    assert peers.safe_batch_size(65) == 33 and 65 % 33 != 1
    assert peers.safe_batch_size(64) == 32


def test_bench_search_quick(argv, tmp_path):
    from benchmarks import bench_search

    assert bench_search.main([*argv, "--out", str(tmp_path), "--arms", "plain,fne"]) == 0
    with open(tmp_path / f"{bench_search.NAME}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["arm"] for r in rows] == ["plain", "fne"]
    assert all(len(r["load_before"].split()) == 3 for r in rows)
    assert float(rows[0]["ratio_to_plain"]) == 1.0
    assert "wall-time ratio" in (tmp_path / f"{bench_search.NAME}.md").read_text()
