"""Tests for featpipe.images: sources, decoding rules, failures and the DataLoader side."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featpipe.errors import FeatpipeError, FeatpipeWarning
from featpipe.data.loading import DecodedImages, collate_decoded
from featpipe.data.decode import ImageDecodeError, load_rgb
from featpipe.data.imageset import ImageSet
from featpipe.data.sources import from_arrays, from_file_list, from_folder, from_idx, from_manifest, open_source

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def solid(value: int, size=(8, 6)) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


def pixel(item, xy=(0, 0), **kwargs):
    return load_rgb(item, **kwargs).getpixel(xy)


def assert_one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# --------------------------------------------------------------------------- folder


@pytest.fixture
def class_folder(tmp_path):
    root = tmp_path / "imgs"
    save(root / "cat" / "b.png", solid(10))
    save(root / "cat" / "a.jpg", solid(20))
    save(root / "a-b" / "z.png", solid(30))
    save(root / "dog" / "sub" / "c.png", solid(40))
    save(root / "dog" / ".hidden.png", solid(50))
    save(root / ".cache" / "x.png", solid(60))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "empty_class").mkdir()
    os.symlink(root / "cat" / "b.png", root / "dog" / "link.png")
    return root


def test_from_folder_labels_order_and_ids(class_folder):
    with pytest.warns(FeatpipeWarning, match="skipped 1 symbolic link.*dog/link.png"):
        images = from_folder(class_folder)  # dog/link.png -> cat/b.png would relabel a cat
    assert images.ids == ["a-b/z.png", "cat/a.jpg", "cat/b.png", "dog/sub/c.png"]
    assert images.labels == ["a-b", "cat", "cat", "dog"]
    assert images.class_names == ["a-b", "cat", "dog"]
    assert images.label_indices().tolist() == [0, 1, 1, 2]
    assert images.label_indices().dtype == np.int64
    assert images.kind == "folder" and images.splits is None
    assert images.root == str(class_folder.resolve())
    assert images.items[1] == str(class_folder.resolve() / "cat" / "a.jpg")
    with pytest.warns(FeatpipeWarning):
        assert open_source(class_folder).fingerprint() == images.fingerprint()
    followed = from_folder(class_folder, follow_links=True)
    assert followed.ids[3] == "dog/link.png" and pixel(followed.items[3]) == (10, 10, 10)


def test_from_folder_unlabelled(tmp_path):
    save(tmp_path / "b.png", solid(1))
    save(tmp_path / "a.PNG", solid(2))
    (tmp_path / "readme.md").write_text("x")
    images = from_folder(tmp_path)
    assert images.ids == ["a.PNG", "b.png"]
    assert images.labels is None and images.class_names == []
    assert images.label_indices().tolist() == [-1, -1]


def test_folder_user_errors(tmp_path):
    with pytest.raises(FeatpipeError) as excinfo:
        open_source(tmp_path / "nope")
    assert_one_line_error(excinfo, "does not exist")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "x.txt").write_text("x")
    with pytest.raises(FeatpipeError) as excinfo:
        from_folder(tmp_path / "empty")
    assert_one_line_error(excinfo, "contains no images")
    save(tmp_path / "mixed" / "loose.png", solid(1))
    save(tmp_path / "mixed" / "cls" / "x.png", solid(1))
    with pytest.raises(FeatpipeError) as excinfo:
        from_folder(tmp_path / "mixed")
    assert_one_line_error(excinfo, "mixes images")


# --------------------------------------------------------------------------- manifest / list


def test_manifest_round_trip_with_splits(tmp_path):
    absolute = save(tmp_path / "elsewhere" / "abs.png", solid(7))
    save(tmp_path / "data" / "x" / "1.png", solid(1))
    (tmp_path / "data" / "m.csv").write_text(
        "path,label,split\n"
        "x/1.png,cat,train\n"
        "\n"
        f"{absolute},dog,test\n"
        "./x/../x/2.png,cat,test\n"
    )
    with pytest.raises(FeatpipeError, match=r"m.csv:4: '.*abs.png' is outside the manifest's "
                                            r"folder .*; pass `allow_outside=True`"):
        open_source(tmp_path / "data" / "m.csv")
    images = open_source(tmp_path / "data" / "m.csv", allow_outside=True)
    assert images.kind == "manifest"
    assert images.ids == ["x/1.png", str(absolute), "x/2.png"]
    assert images.items[0] == str(tmp_path / "data" / "x" / "1.png")
    assert images.items[1] == str(absolute)
    assert images.labels == ["cat", "dog", "cat"]
    assert images.splits == ["train", "test", "test"]
    assert images.class_names == ["cat", "dog"]
    assert pixel(images.items[1]) == (7, 7, 7)


def test_manifest_unlabelled_and_errors(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("path,label\na.png,\nb.png,\n")
    assert from_manifest(path).labels is None

    cases = {
        "path,label\na.png,cat\nb.png,\n": ("m.csv:3:", "some rows have a label"),
        "file,label\na.png,cat\n": ("m.csv:1:", "bad manifest header"),
        "path\na.png\n": ("m.csv:1:", "bad manifest header"),
        "": ("m.csv:1:", "bad manifest header"),
        "path,label\na.png,cat\nb.png,cat,extra\n": ("m.csv:3:", "expected 2"),
        "path,label,split\na.png,cat,\n": ("m.csv:2:", "empty split"),
        "path,label\na.png,cat\n./a.png,dog\n": ("m.csv:3:", "already listed on line 2"),
        "path,label\n": ("no rows",),
    }
    for text, fragments in cases.items():
        path.write_text(text)
        with pytest.raises(FeatpipeError) as excinfo:
            from_manifest(path)
        assert_one_line_error(excinfo, *fragments)


def test_file_list(tmp_path):
    save(tmp_path / "sub" / "a.png", solid(3))
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "q.txt").write_text("# queries\n\n../sub/a.png\n  ../sub/b.png  \n")
    images = open_source(tmp_path / "lists" / "q.txt")
    assert images.kind == "list" and images.labels is None
    assert images.ids == [str(tmp_path / "sub" / "a.png"), str(tmp_path / "sub" / "b.png")]
    assert images.items == images.ids
    (tmp_path / "lists" / "empty.txt").write_text("# nothing\n")
    with pytest.raises(FeatpipeError) as excinfo:
        from_file_list(tmp_path / "lists" / "empty.txt")
    assert_one_line_error(excinfo, "lists no images")


def test_unknown_format(tmp_path):
    (tmp_path / "weird.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(FeatpipeError) as excinfo:
        open_source(tmp_path / "weird.bin")
    assert_one_line_error(excinfo, "unknown image source format")


# --------------------------------------------------------------------------- ImageSet


def test_fingerprint_subset_and_arrays():
    arrays = [np.full((4, 4), v, np.uint8) for v in (0, 100, 200)]
    images = from_arrays(arrays, labels=[1, 0, 1])
    assert images.ids == ["array:0", "array:1", "array:2"]
    assert images.labels == ["1", "0", "1"]
    same = from_arrays([a.copy() for a in arrays], labels=["1", "0", "1"])
    assert images.fingerprint() == same.fingerprint()
    assert len(images.fingerprint()) == 64
    relabelled = from_arrays(arrays, labels=[1, 0, 0])
    assert relabelled.fingerprint() != images.fingerprint()
    reordered = images.subset([2, 1, 0])
    assert reordered.labels == ["1", "0", "1"]
    assert reordered.ids == ["array:2", "array:1", "array:0"]
    assert reordered.fingerprint() != images.fingerprint()
    split = ImageSet(images.items, images.ids, images.labels, ["train"] * 3, None, "arrays")
    assert split.fingerprint() != images.fingerprint()
    masked = images.subset(np.array([True, False, True]))
    assert masked.ids == ["array:0", "array:2"] and masked.items[1] is arrays[2]
    with pytest.raises(FeatpipeError):
        images.subset([3])
    with pytest.raises(FeatpipeError) as excinfo:
        from_arrays(arrays, labels=[0, 1])
    assert_one_line_error(excinfo, "3 images but 2 labels")


# --------------------------------------------------------------------------- IDX


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 2051 if array.ndim == 3 else 2049
    header = struct.pack(">i", magic) + b"".join(struct.pack(">i", n) for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    pixels = np.arange(3 * 5 * 4, dtype=np.uint8).reshape(3, 5, 4)
    labels = np.array([7, 0, 3], dtype=np.uint8)
    suffix = ".gz" if compress else ""
    write = gzip.compress if compress else (lambda b: b)
    (tmp_path / f"tiny-images-idx3-ubyte{suffix}").write_bytes(write(idx_bytes(pixels)))
    (tmp_path / f"tiny-labels-idx1-ubyte{suffix}").write_bytes(write(idx_bytes(labels)))
    images = open_source(tmp_path / f"tiny-images-idx3-ubyte{suffix}")
    assert images.kind == "idx" and len(images) == 3
    assert images.labels == ["7", "0", "3"]
    assert images.ids[2] == f"idx:tiny-images-idx3-ubyte{suffix}#2"
    np.testing.assert_array_equal(images.items[1], pixels[1])
    assert pixel(images.items[1], (3, 4)) == (39, 39, 39)


def test_idx_errors(tmp_path):
    pixels = np.zeros((3, 2, 2), np.uint8)
    (tmp_path / "a-images-idx3-ubyte").write_bytes(idx_bytes(pixels))
    (tmp_path / "four-labels").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(FeatpipeError) as excinfo:
        from_idx(tmp_path / "a-images-idx3-ubyte", tmp_path / "four-labels")
    assert_one_line_error(excinfo, "4 labels", "3 images")
    assert from_idx(tmp_path / "a-images-idx3-ubyte").labels is None  # no labels file near
    with pytest.raises(FeatpipeError) as excinfo:
        from_idx(tmp_path / "four-labels")
    assert_one_line_error(excinfo, "magic number 2049")
    (tmp_path / "cut-images-idx3-ubyte").write_bytes(idx_bytes(pixels)[:-1])
    with pytest.raises(FeatpipeError) as excinfo:
        from_idx(tmp_path / "cut-images-idx3-ubyte")
    assert_one_line_error(excinfo, "truncated or corrupt")


def test_row_selector_keeps_rows_and_their_ids(tmp_path):
    pixels = np.arange(10 * 2 * 2, dtype=np.uint8).reshape(10, 2, 2)
    (tmp_path / "t-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(pixels)))
    (tmp_path / "t-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.arange(10))))
    images = open_source(f"{tmp_path / 't-images-idx3-ubyte.gz'}[2:8:2]")
    assert images.ids == [f"idx:t-images-idx3-ubyte.gz#{i}" for i in (2, 4, 6)]
    assert images.labels == ["2", "4", "6"]
    np.testing.assert_array_equal(images.items[1], pixels[4])
    assert len(open_source(f"{tmp_path / 't-images-idx3-ubyte.gz'}[-3:]")) == 3
    for bad in ("[5:5]", "[0:4:0]"):
        with pytest.raises(FeatpipeError) as excinfo:
            open_source(f"{tmp_path / 't-images-idx3-ubyte.gz'}{bad}")
        assert_one_line_error(excinfo)


def test_manifest_of_idx_rows_selects_rows_labels_and_splits(tmp_path):
    pixels = np.arange(6 * 2 * 2, dtype=np.uint8).reshape(6, 2, 2)
    (tmp_path / "t-images-idx3-ubyte").write_bytes(idx_bytes(pixels))
    (tmp_path / "rows.csv").write_text(
        "path,label,split\nt-images-idx3-ubyte#5,five,train\nt-images-idx3-ubyte#0,zero,test\n")
    images = open_source(tmp_path / "rows.csv")
    assert images.ids == ["t-images-idx3-ubyte#5", "t-images-idx3-ubyte#0"]
    assert images.splits == ["train", "test"] and images.labels == ["five", "zero"]
    np.testing.assert_array_equal(images.items[0], pixels[5])
    (tmp_path / "beyond.csv").write_text("path,label\nt-images-idx3-ubyte#6,six\n")
    with pytest.raises(FeatpipeError) as excinfo:
        open_source(tmp_path / "beyond.csv")
    assert_one_line_error(excinfo, "row 6 is beyond the 6 images")


@pytest.mark.skipif(not FASHION_MNIST.exists(), reason="Fashion-MNIST not installed")
def test_fashion_mnist_test_set():
    images = open_source(FASHION_MNIST)
    assert len(images) == 10_000
    assert images.items[0].shape == (28, 28) and images.items[0].dtype == np.uint8
    assert images.class_names == [str(d) for d in range(10)]
    assert images.labels[:3] == ["9", "2", "1"]
    assert np.bincount(images.label_indices()).tolist() == [1000] * 10
    assert load_rgb(images.items[0]).size == (28, 28)


# --------------------------------------------------------------------------- decoding rules


def png_bytes(image: Image.Image, fmt="PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def palette_with_transparency() -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 1
    return image


def test_greyscale_and_16bit_modes():
    sixteen = Image.fromarray(np.array([[0, 257, 32896, 65535]], dtype=np.uint16))
    assert sixteen.mode == "I;16"
    from_file = load_rgb(png_bytes(sixteen))
    assert [from_file.getpixel((x, 0)) for x in range(4)] == [
        (0, 0, 0), (1, 1, 1), (128, 128, 128), (255, 255, 255)]
    as_int = Image.fromarray(np.array([[65535, 514]], dtype=np.int32))
    assert as_int.mode == "I"
    assert pixel(as_int) == (255, 255, 255) and pixel(as_int, (1, 0)) == (2, 2, 2)
    assert pixel(Image.new("F", (1, 1), 12.4)) == (12, 12, 12)
    assert pixel(Image.new("F", (1, 1), 300.0)) == (255, 255, 255)
    assert pixel(png_bytes(Image.new("L", (1, 1), 77))) == (77, 77, 77)
    one_bit = Image.new("1", (2, 1), 0)
    one_bit.putpixel((1, 0), 1)
    decoded = load_rgb(png_bytes(one_bit))
    assert decoded.getpixel((0, 0)) == (0, 0, 0) and decoded.getpixel((1, 0)) == (255, 255, 255)


def test_alpha_palette_and_cmyk_modes():
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 255))
    decoded = load_rgb(png_bytes(rgba))
    assert decoded.getpixel((0, 0)) == (255, 255, 255)
    assert decoded.getpixel((1, 0)) == (255, 0, 0)
    half = pixel(Image.new("RGBA", (1, 1), (0, 0, 0, 128)))
    assert all(abs(c - 127) <= 1 for c in half)
    assert pixel(Image.new("LA", (1, 1), (0, 0))) == (255, 255, 255)
    assert pixel(png_bytes(Image.new("LA", (1, 1), (9, 255)))) == (9, 9, 9)
    palette = load_rgb(png_bytes(palette_with_transparency()))
    assert palette.getpixel((0, 0)) == (255, 0, 0)
    assert palette.getpixel((1, 0)) == (255, 255, 255)
    opaque_palette = Image.new("P", (1, 1), 0)
    opaque_palette.putpalette([0, 200, 0])
    assert pixel(opaque_palette) == (0, 200, 0)
    cmyk = load_rgb(png_bytes(Image.new("CMYK", (1, 1), (255, 0, 0, 0)), "JPEG", quality=100))
    assert cmyk.mode == "RGB"
    assert pixel(Image.new("CMYK", (1, 1), (255, 0, 0, 0))) == (0, 255, 255)
    assert pixel(Image.new("CMYK", (1, 1), (0, 0, 0, 0))) == (255, 255, 255)


def test_exif_orientation_swaps_dimensions(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: left half ends on top
    path = save(tmp_path / "rotated.jpg", image, exif=exif, quality=95)
    decoded = load_rgb(path)
    assert decoded.size == (20, 40)
    top, bottom = decoded.getpixel((10, 5)), decoded.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50


def test_arrays_and_tensors():
    assert pixel(np.array([[5]], np.uint8)) == (5, 5, 5)
    assert pixel(np.full((2, 2, 1), 6, np.uint8)) == (6, 6, 6)
    assert pixel(np.array([[[1, 2, 3]]], np.uint8)) == (1, 2, 3)
    assert pixel(np.array([[[1, 2, 3, 0]]], np.uint8)) == (255, 255, 255)
    assert pixel(np.array([[[0.0, 0.5, 1.0]]], np.float32)) == (0, 128, 255)
    assert pixel(np.array([[65535]], np.uint16)) == (255, 255, 255)
    assert pixel(np.array([[True]])) == (255, 255, 255)
    chw = torch.zeros(3, 4, 5)
    chw[1] = 1.0
    decoded = load_rgb(chw)
    assert decoded.size == (5, 4) and decoded.getpixel((0, 0)) == (0, 255, 0)
    hwc = torch.full((6, 5, 3), 9, dtype=torch.uint8)
    assert load_rgb(hwc).size == (5, 6) and pixel(hwc) == (9, 9, 9)
    assert load_rgb(torch.zeros(4, 5, 3)).size == (3, 5)  # ambiguous: CxHxW wins
    assert pixel(torch.full((1, 3, 3), 0.2)) == (51, 51, 51)
    assert pixel(torch.full((3, 3), 200, dtype=torch.int64)) == (200, 200, 200)
    for bad, reason in [(np.full((2, 2), 2.0), "outside [0, 1]"),
                        (np.full((2, 2), 300, np.int32), "outside [0, 255]"),
                        (np.zeros((2, 2, 2), np.uint8), "shape"),
                        (42, "unsupported input type")]:
        with pytest.raises(ImageDecodeError) as excinfo:
            load_rgb(bad)
        assert reason in excinfo.value.reason


def test_jpeg_draft_with_size_hint():
    data = png_bytes(Image.new("RGB", (800, 600), (10, 200, 30)), "JPEG")
    reduced = load_rgb(data, size_hint=100)
    assert reduced.size == (200, 150)
    assert load_rgb(data).size == (800, 600)
    assert load_rgb(png_bytes(Image.new("RGB", (800, 600))), size_hint=100).size == (800, 600)


# --------------------------------------------------------------------------- failures


@pytest.fixture
def broken_files(tmp_path):
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    png, jpeg = png_bytes(noisy), png_bytes(noisy, "JPEG")
    files = {
        "zero.png": b"",
        "cut.png": png[: len(png) // 2],
        "cut.jpg": jpeg[: len(jpeg) * 3 // 4],
        "text.jpg": b"hello, I am not a picture\n" * 10,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize("name, reason", [
    ("zero.png", "zero-byte file"),
    ("cut.png", "truncated image"),
    ("cut.jpg", "truncated image"),
    ("text.jpg", "not an image (cannot identify)"),
    ("missing.png", "file not found"),
])
def test_decode_failures(broken_files, name, reason):
    with pytest.raises(ImageDecodeError) as excinfo:
        load_rgb(broken_files / name)
    assert excinfo.value.reason == reason
    assert pickle.loads(pickle.dumps(excinfo.value)).reason == reason


def test_pixel_limit_is_per_call(tmp_path, monkeypatch):
    path = save(tmp_path / "big.png", solid(3, size=(20, 10)))
    with pytest.raises(ImageDecodeError) as excinfo:
        load_rgb(path, max_pixels=199)
    assert excinfo.value.reason.startswith("decompression bomb: 200 pixels > limit 199 ")
    assert "--max-pixels" in excinfo.value.reason
    with pytest.raises(ImageDecodeError):
        load_rgb(np.zeros((10, 20), np.uint8), max_pixels=199)
    # our limit replaces Pillow's global one for the call, which is restored afterwards
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    assert load_rgb(path, max_pixels=200).size == (20, 10)
    assert Image.MAX_IMAGE_PIXELS == 50
    assert not getattr(__import__("PIL.ImageFile").ImageFile, "LOAD_TRUNCATED_IMAGES")


# --------------------------------------------------------------------------- torch side


def grey_value_tensor(image: Image.Image) -> torch.Tensor:
    if image.size[0] == 5:
        raise ValueError("width 5 is not allowed")
    resized = image.resize((4, 4))
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float()


def test_decoded_images_with_workers_keeps_indices_aligned(broken_files):
    good = {0: 10, 2: 20, 5: 30, 6: 40, 8: 50}
    items = [None] * 9
    for index, value in good.items():
        items[index] = str(save(broken_files / f"good{index}.png", solid(value)))
    items[1] = str(broken_files / "zero.png")
    items[3] = str(broken_files / "cut.jpg")
    items[4] = str(broken_files / "missing.png")
    items[7] = np.full((3, 5), 99, np.uint8)  # decodes, but the transform refuses it
    image_set = ImageSet(items, [f"id{i}" for i in range(9)], None, None, None, "arrays")
    dataset = DecodedImages(image_set, grey_value_tensor)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2,
                                         collate_fn=collate_decoded)
    seen, failures = {}, {}
    for indices_ok, stacked, failed in loader:
        assert stacked is None or stacked.shape == (len(indices_ok), 3, 4, 4)
        for index, tensor in zip(indices_ok.tolist(), stacked if stacked is not None else []):
            seen[index] = int(tensor[0, 0, 0])
        failures.update(failed)
    assert seen == good
    assert failures == {1: "zero-byte file", 3: "truncated image", 4: "file not found",
                        7: "transform failed: ValueError: width 5 is not allowed"}


def test_decoded_images_subset_pickles_and_all_failed_batch(broken_files):
    image_set = from_arrays([np.full((2, 2), v, np.uint8) for v in (1, 2, 3)])
    dataset = pickle.loads(pickle.dumps(DecodedImages(image_set, grey_value_tensor,
                                                      indices=[2, 0])))
    assert len(dataset) == 2
    index, tensor, reason = dataset[0]
    assert index == 2 and reason is None and float(tensor[0, 0, 0]) == 3.0
    ok, stacked, failed = collate_decoded([(4, None, "file not found")])
    assert ok.dtype == np.int64 and ok.size == 0 and stacked is None
    assert failed == [(4, "file not found")]
    not_tensor = DecodedImages(image_set, lambda image: "oops")[1]
    assert not_tensor[1] is None and not_tensor[2].startswith("transform failed: returned str")
