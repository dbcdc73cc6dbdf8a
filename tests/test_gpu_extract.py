"""Issue 15 on a CPU: GPU JPEG decoding's fallbacks, automatic batch size and out-of-memory
back-off (simulated), torch.compile with static shapes, bf16 autocast and channels_last."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import featpipe.extract.run as run_module
from featpipe.data.loading import DecodedImages
from featpipe.data.sources import open_source
from featpipe.errors import FeatpipeError, UsageError
from featpipe.extract import extract
from featpipe.extract.batchsize import CPU_BATCH, probe_batch_size
from featpipe.extract.gpu_decode import (EncodedImages, collate_encoded, decode_batch,
                                         device_decoder)
from featpipe.models import create_backbone
from featpipe.models.capture import FeatureCapture
from featpipe.store import FeatureStore

TINY = dict(model="torchvision:resnet18", pretrained=False, image_size=32, layers="stages")


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """JPEGs (RGB, greyscale, CMYK, EXIF-rotated), a PNG, a truncated JPEG, a zero-byte file."""
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir()
    pixels = [rng.integers(0, 256, size=(48 + 8 * i, 64, 3), dtype=np.uint8) for i in range(6)]
    for i, array in enumerate(pixels[:4]):
        Image.fromarray(array).save(root / "ab"[i % 2] / f"rgb{i}.jpg", quality=90)
    Image.fromarray(pixels[4][..., 0]).save(root / "a" / "grey.jpg")
    Image.fromarray(pixels[5]).convert("CMYK").save(root / "b" / "cmyk.jpg")
    Image.fromarray(pixels[0]).save(root / "a" / "photo.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: nvJPEG would not apply it, so the CPU path decodes it
    Image.fromarray(pixels[2]).save(root / "b" / "rotated.jpg", exif=exif)
    whole = io.BytesIO()
    Image.fromarray(pixels[1]).save(whole, "JPEG")
    (root / "b" / "truncated.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    (root / "b" / "empty.jpg").write_bytes(b"")
    return root


def _preprocessing():
    return create_backbone(TINY["model"], pretrained=False,
                           image_size=TINY["image_size"]).preprocessing.with_resize("pad")


def _cpu_path(image_set, prep):
    items = [DecodedImages(image_set, prep.resize_crop, size_hint=prep.resize_size)[i]
             for i in range(len(image_set))]
    return ({i: x for i, x, reason in items if reason is None},
            {i: reason for i, x, reason in items if reason is not None})


def _gpu_path(image_set, prep, decoder):
    items = [EncodedImages(image_set, prep, max_pixels=10**8)[i] for i in range(len(image_set))]
    positions, crops, failures = decode_batch(collate_encoded(items), prep, torch.device("cpu"),
                                              decoder)
    return dict(zip(positions.tolist(), crops)), dict(failures), items


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the fallback with CUDA absent")
def test_gpu_decode_without_cuda_gives_exactly_the_cpu_paths_crops(mixed_folder):
    image_set = open_source(mixed_folder)
    prep = _preprocessing()
    crops, failures, items = _gpu_path(image_set, prep, device_decoder(torch.device("cuda")))
    cpu_crops, cpu_failures = _cpu_path(image_set, prep)
    kinds = {image_set.ids[i]: kind for i, kind, _ in items}
    assert kinds["a/photo.png"] == kinds["b/cmyk.jpg"] == kinds["b/rotated.jpg"] == "crop"
    assert kinds["a/rgb0.jpg"] == kinds["a/grey.jpg"] == kinds["b/truncated.jpg"] == "jpeg"
    assert failures == cpu_failures and len(failures) == 2
    assert crops.keys() == cpu_crops.keys()
    for i, crop in crops.items():
        assert torch.equal(crop, cpu_crops[i]), image_set.ids[i]


def test_one_bad_file_fails_alone_and_lands_in_the_failures(mixed_folder):
    image_set = open_source(mixed_folder)
    prep = _preprocessing()
    calls = []
    real = device_decoder(torch.device("cpu"))  # torchvision's libjpeg decoder, batched

    def decoder(encoded):
        calls.append(len(encoded))
        return real(encoded)

    crops, failures, _ = _gpu_path(image_set, prep, decoder)
    cpu_crops, cpu_failures = _cpu_path(image_set, prep)
    assert calls[0] > 1 and calls[1:] == [1] * calls[0]  # the batch failed, then one by one
    truncated = image_set.ids.index("b/truncated.jpg")
    assert failures == cpu_failures and failures[truncated] == "truncated image"
    assert crops.keys() == cpu_crops.keys()
    for i, crop in crops.items():  # torch's resize of the same pixels: close to Pillow's
        diff = (crop.int() - cpu_crops[i].int()).abs().float()
        assert diff.mean() < 3 and diff.max() <= 64, image_set.ids[i]


def test_extract_through_the_gpu_decode_path(tmp_path, mixed_folder, monkeypatch):
    cpu = FeatureStore.open(extract(mixed_folder, tmp_path / "cpu.h5", progress=False,
                                    batch_size=4, **TINY).path)
    monkeypatch.setattr(run_module, "resolve_decode", lambda decode, dev: "gpu")
    # one decode worker: the packed JPEG bytes cross from another process
    gpu = FeatureStore.open(extract(mixed_folder, tmp_path / "gpu.h5", progress=False,
                                    batch_size=4, workers=1, **TINY).path)
    assert gpu.provenance["decode"] == "gpu" and cpu.provenance["decode"] == "cpu"
    assert dict(gpu.failures) == dict(cpu.failures) and len(gpu.failures) == 2
    np.testing.assert_array_equal(gpu.ok_rows, cpu.ok_rows)
    a, b = cpu.load().X, gpu.load().X
    assert np.abs(a - b).mean() < 0.05 * np.abs(a).mean()


def test_decode_gpu_without_cuda_is_one_line(tmp_path, mixed_folder):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    with pytest.raises(UsageError, match="`decode` gpu needs a CUDA device"):
        extract(mixed_folder, tmp_path / "f.h5", decode="gpu", progress=False, **TINY)
    with pytest.raises(FeatpipeError, match="no CUDA GPU is available"):
        extract(mixed_folder, tmp_path / "f.h5", device="cuda", progress=False, **TINY)


class _RaisesAbove:
    """A capture that runs out of GPU memory (simulated) above ``limit`` images."""

    def __init__(self, limit):
        self.limit, self.sizes = limit, []

    def __call__(self, x):
        self.sizes.append(len(x))
        if len(x) > self.limit:
            raise torch.cuda.OutOfMemoryError(f"simulated: {len(x)} > {self.limit}")
        return {}


@pytest.mark.parametrize("limit", [1, 7, 31, 32, 200, 5000])
def test_batch_size_probe_finds_the_largest_that_fits(limit):
    capture = _RaisesAbove(limit)
    found = probe_batch_size(capture, 8, torch.device("cpu"), limit=2048)
    assert found <= min(limit, 2048) and found >= 0.94 * min(limit, 2048)
    assert max(s for s in capture.sizes if s <= limit) == found


def test_no_image_fits_is_zero():
    assert probe_batch_size(_RaisesAbove(0), 8, torch.device("cpu")) == 0


def test_out_of_memory_halves_the_micro_batch_and_auto_is_recorded(tmp_path, shapes_folder,
                                                                  monkeypatch):
    reference = FeatureStore.open(extract(shapes_folder, tmp_path / "ref.h5", batch_size=8,
                                          progress=False, **TINY).path)
    real_call = FeatureCapture.__call__
    sizes = []

    def call(self, x):
        sizes.append(len(x))
        if len(x) > 3:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real_call(self, x)

    monkeypatch.setattr(FeatureCapture, "__call__", call)
    store = FeatureStore.open(extract(shapes_folder, tmp_path / "oom.h5", batch_size=8,
                                      progress=False, **TINY).path)
    assert sizes[:3] == [8, 4, 2] and max(sizes[3:]) == 2  # halved, and stays halved
    np.testing.assert_allclose(store.load().X, reference.load().X, rtol=1e-4, atol=1e-5)
    assert store.provenance["batch_size"] == 8
    monkeypatch.setattr(FeatureCapture, "__call__", real_call)
    auto = FeatureStore.open(extract(shapes_folder, tmp_path / "auto.h5", batch_size="auto",
                                     progress=False, **TINY).path)
    assert auto.provenance["batch_size"] == CPU_BATCH  # no probing on a CPU
    with pytest.raises(UsageError, match="`batch_size` must be an int >= 1 or auto"):
        extract(shapes_folder, tmp_path / "x.h5", batch_size="big", progress=False, **TINY)


def test_a_resumed_auto_batch_size_keeps_the_recorded_one(tmp_path, shapes_folder, monkeypatch):
    import featpipe.extract.run as run_module

    done = extract(shapes_folder, tmp_path / "a.h5", batch_size=4, progress=False, **TINY).path
    partial = tmp_path / "b.h5.partial"
    done.rename(partial)  # an unfinished store of batch size 4 to resume

    def probe(*args):
        raise AssertionError("a resumed run must not probe: its batches are fixed")

    monkeypatch.setattr(run_module, "auto_batch_size", probe)
    resumed = extract(shapes_folder, tmp_path / "b.h5", batch_size="auto", progress=False, **TINY)
    assert resumed.resumed and FeatureStore.open(resumed.path).provenance["batch_size"] == 4


def test_compile_pads_the_last_batch_and_matches_eager(tmp_path, shapes_folder, monkeypatch):
    import featpipe.models.capture as capture_module

    monkeypatch.setattr(capture_module, "COMPILE_BACKEND", "aot_eager")  # no C++ build in CI
    shapes = []
    real = capture_module._run_compiled
    monkeypatch.setattr(capture_module, "_run_compiled",
                        lambda compiled, x: shapes.append(tuple(x.shape)) or real(compiled, x))
    eager = FeatureStore.open(extract(shapes_folder, tmp_path / "eager.h5", batch_size=8,
                                      progress=False, **TINY).path)
    compiled = FeatureStore.open(extract(shapes_folder, tmp_path / "compiled.h5", batch_size=8,
                                         compile=True, progress=False, **TINY).path)
    assert set(shapes) == {(8, 3, 32, 32)} and len(shapes) == 4  # 30 images: 8+8+8+6 padded
    assert compiled.provenance["compile"] is True and len(compiled.ok_rows) == 30
    np.testing.assert_allclose(compiled.load().X, eager.load().X, rtol=1e-4, atol=1e-5)


def test_compile_refuses_a_trainable_capture():
    backbone = create_backbone("torchvision:resnet18", pretrained=False, image_size=32)
    with pytest.raises(FeatpipeError, match="`compile` applies to frozen"):
        FeatureCapture(backbone, "last", trainable=True, compile=True)


def test_bf16_autocast_and_channels_last_run_on_cpu(tmp_path, shapes_folder):
    plain = FeatureStore.open(extract(shapes_folder, tmp_path / "fp32.h5", progress=False,
                                      **TINY).path).load().X
    for name, options in {"bf16": dict(amp="bf16"), "cl": dict(channels_last=True),
                          "both16": dict(amp="bf16", channels_last=True, dtype="float16")}.items():
        store = FeatureStore.open(extract(shapes_folder, tmp_path / f"{name}.h5", progress=False,
                                          **TINY, **options).path)
        X = store.load().X
        assert store.provenance["dtype"] == options.get("dtype", "float32")
        error = np.abs(X - plain).mean() / np.abs(plain).mean()
        assert error < (0.05 if "amp" in options else 1e-5), name
        assert store.provenance["amp"] == options.get("amp")


def test_prefetched_batches_keep_order_and_raise_the_producers_error():
    from featpipe.extract.batches import prefetched

    def failing():
        yield from range(3)
        raise ValueError("decoder broke")

    seen = []
    with pytest.raises(ValueError, match="decoder broke"):
        for item in prefetched(failing()):
            seen.append(item)
    assert seen == [0, 1, 2]
    stopped_early = prefetched(iter(range(100)), depth=2)
    assert next(stopped_early) == 0
    stopped_early.close()  # the producer thread is released, not left blocked


def test_images_of_one_size_are_resized_together_as_one_by_one():
    from featpipe.extract.gpu_decode import _resize_by_size

    prep = _preprocessing()
    rng = np.random.default_rng(1)
    shapes = [(3, 40, 60), (3, 40, 60), (3, 90, 30), (3, 40, 60), (3, 90, 30), (3, 17, 17)]
    images = {i: torch.from_numpy(rng.integers(0, 256, s, dtype=np.uint8))
              for i, s in enumerate(shapes)}
    together = _resize_by_size(images, prep)
    assert sorted(together) == list(range(6))
    for i, image in images.items():
        assert torch.equal(together[i], prep.resize_crop(image)), i


def test_one_gpu_per_dask_worker(monkeypatch):
    """Several GPUs: `extract --dask local:N` pins worker slot k to cuda:k mod GPUs."""
    import featpipe.scale.extract as scale_extract

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    slots = iter([0, 1, 2, 3])
    monkeypatch.setattr(scale_extract, "_worker_slot", lambda: next(slots))
    assert [scale_extract.worker_device("auto") for _ in range(4)] == [
        "cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert scale_extract.worker_device("cuda:1") == "cuda:1"
    with pytest.raises(UsageError, match="fixed `batch_size`|batch size"):
        scale_extract.check_options(shard=None, workers=None, batch_size="auto")
