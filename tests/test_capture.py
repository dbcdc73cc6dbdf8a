"""Layer capture: presets, shapes, pooling, one forward pass per batch, FX == hooks."""

import pytest
import torch

from featpipe.models import create_backbone
from featpipe.models.capture import FeatureCapture
from featpipe.models.layers import LayerInfo, list_layers, resolve_layers
from featpipe.models.pooling import pool_features
from featpipe.errors import FeatpipeError

LITE0_FULL = ["bn1"] + [f"blocks.{i}.{j}" for i, n in enumerate([1, 2, 2, 3, 3, 4, 1]) for j in range(n)] + ["bn2"]
RESNET18_BLOCKS = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0", image_size=96)


@pytest.fixture(scope="module")
def resnet18():
    return create_backbone("torchvision:resnet18", pretrained=False, image_size=64)


@pytest.fixture(scope="module")
def vit():
    return create_backbone("timm:vit_tiny_patch16_224", pretrained=False, image_size=64)


def images(n, size, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def raw_activation(model, layer, x):
    """The module's output, captured independently of featpipe."""
    store = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, a, out: store.update(out=out.clone()))
    with torch.inference_mode():
        model(x)
    handle.remove()
    return store["out"]


def test_lite0_presets(lite0):
    assert resolve_layers(lite0, "full") == LITE0_FULL
    assert resolve_layers(lite0, "last") == ["global_pool"]
    assert resolve_layers(lite0, "stages") == ["blocks.0.0", "blocks.1.1", "blocks.2.1", "blocks.4.2", "bn2"]
    full = FeatureCapture(lite0, "full")
    assert len(full.layer_dims) == 18 and sum(full.layer_dims.values()) == 3120
    assert FeatureCapture(lite0, "last").layer_dims == {"global_pool": 1280}
    assert sum(FeatureCapture(lite0, "full", pool="meanmax").layer_dims.values()) == 6240


def test_lite0_layer_shapes_follow_image_size(lite0):
    at_224 = {info.name: info for info in list_layers(lite0, image_size=224)}
    at_96 = {info.name: info for info in list_layers(lite0)}
    assert at_224["bn1"].shape == (32, 112, 112) and at_96["bn1"].shape == (32, 48, 48)
    assert at_224["blocks.2.1"].shape == (40, 28, 28) and at_224["global_pool"].shape == (1280,)
    assert list(at_224) == list(at_96)
    assert all(at_224[n].pooled_dim("mean") == at_96[n].pooled_dim("mean") for n in at_224)
    assert list(at_224).index("bn1") < list(at_224).index("blocks.0.0") < list(at_224).index("bn2")


def test_last_is_the_classifier_input(lite0, vit):
    x = images(2, 96)
    with torch.inference_mode():
        expected = lite0.model.forward_head(lite0.model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(FeatureCapture(lite0, "last")(x)["global_pool"], expected)
    x = images(2, 64)
    with torch.inference_mode():
        expected = vit.model.forward_head(vit.model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(FeatureCapture(vit, "last")(x)["norm"], expected)


@pytest.mark.parametrize("pool", ["mean", "max", "meanmax", "none"])
def test_pooling_matches_manual_computation(lite0, pool):
    x = images(3, 96)
    raw = raw_activation(lite0.model, "blocks.2.1", x)  # (3, 40, 12, 12)
    manual = {
        "mean": raw.mean(dim=(2, 3)),
        "max": raw.amax(dim=(2, 3)),
        "meanmax": torch.cat([raw.mean(dim=(2, 3)), raw.amax(dim=(2, 3))], dim=1),
        "none": raw.reshape(3, -1),
    }[pool]
    out = FeatureCapture(lite0, ["blocks.2.1"], pool=pool)(x)["blocks.2.1"]
    assert out.dtype == torch.float32 and out.shape == manual.shape
    torch.testing.assert_close(out, manual)


def test_token_pooling(vit):
    x = images(2, 64)
    raw = raw_activation(vit.model, "blocks.3", x)  # (2, 17, 192): CLS + 4x4 patches
    assert raw.shape == (2, 17, 192)
    cls = FeatureCapture(vit, ["blocks.3"])(x)["blocks.3"]
    mean = FeatureCapture(vit, ["blocks.3"], token_pool="mean")(x)["blocks.3"]
    torch.testing.assert_close(cls, raw[:, 0])
    torch.testing.assert_close(mean, raw.mean(dim=1))


def test_flat_features_are_capped_unless_forced(lite0):
    with pytest.raises(FeatpipeError, match=r"layer 'bn1' gives 73728 features.*pool='none'.*force"):
        FeatureCapture(lite0, ["bn1"], pool="none")
    out = FeatureCapture(lite0, ["bn1"], pool="none", force=True)(images(1, 96))
    assert out["bn1"].shape == (1, 73728)


def test_batch_of_one(lite0):
    capture = FeatureCapture(lite0, "full")
    x = images(3, 96)
    batch, single = capture(x), capture(x[:1])
    assert list(single) == LITE0_FULL
    for name, dim in capture.layer_dims.items():
        assert single[name].shape == (1, dim)
        torch.testing.assert_close(single[name][0], batch[name][0], atol=1e-4, rtol=1e-4)


def test_one_forward_per_batch_and_early_stop(lite0):
    calls = {"model": 0, "classifier": 0}
    model = lite0.model
    handles = [
        model.register_forward_pre_hook(lambda m, a: calls.__setitem__("model", calls["model"] + 1)),
        model.classifier.register_forward_pre_hook(lambda m, a: calls.__setitem__("classifier", calls["classifier"] + 1)),
    ]
    try:
        capture = FeatureCapture(lite0, "full")  # the layer table is cached: no extra pass here
        calls.update(model=0, classifier=0)
        for seed in range(3):
            capture(images(2, 96, seed))
        assert calls["model"] == 3
        assert calls["classifier"] == 0  # the forward pass stops after bn2
    finally:
        for handle in handles:
            handle.remove()


def test_fx_and_hooks_agree(lite0, resnet18):
    for backbone, size in ((lite0, 96), (resnet18, 64)):
        x = images(2, size)
        hooks = FeatureCapture(backbone, "full", pool="meanmax")(x)
        fx = FeatureCapture(backbone, "full", pool="meanmax", method="fx")(x)
        assert list(hooks) == list(fx)
        for name in hooks:
            assert torch.equal(hooks[name], fx[name]), name


def test_resnet_presets_torchvision_and_timm(resnet18):
    timm_resnet = create_backbone("timm:resnet18", pretrained=False, image_size=64)
    for backbone, stem, head in ((resnet18, "relu", "avgpool"), (timm_resnet, "act1", "global_pool")):
        assert resolve_layers(backbone, "full") == [stem, *RESNET18_BLOCKS, head]
        assert resolve_layers(backbone, "last") == [head]
        assert resolve_layers(backbone, "stages") == [stem, "layer1.1", "layer2.1", "layer3.1", "layer4.1"]
        capture = FeatureCapture(backbone, "full")
        assert sum(capture.layer_dims.values()) == 64 + 2 * (64 + 128 + 256 + 512) + 512
        out = capture(images(2, 64))
        assert all(out[n].shape == (2, d) for n, d in capture.layer_dims.items())
        # post-activation block outputs are non-negative
        assert all(out[n].min() >= 0 for n in RESNET18_BLOCKS)


def test_vit_presets(vit):
    blocks = [f"blocks.{i}" for i in range(12)]
    assert resolve_layers(vit, "full") == [*blocks, "norm"]
    assert resolve_layers(vit, "last") == ["norm"]
    assert resolve_layers(vit, "stages") == ["blocks.2", "blocks.5", "blocks.8", "blocks.11"]
    shapes = {info.name: info.shape for info in list_layers(vit)}
    assert shapes["blocks.0"] == (17, 192) and shapes["norm"] == (17, 192)
    capture = FeatureCapture(vit, "full", pool="none", token_pool="mean")
    assert capture.layer_dims["norm"] == 17 * 192


def test_channels_last_gives_the_same_features():
    backbone = create_backbone("torchvision:resnet18", pretrained=False, image_size=64)
    x = images(2, 64)
    plain = FeatureCapture(backbone, "stages")(x)
    fast = FeatureCapture(backbone, "stages", channels_last=True)(x)
    for name in plain:
        torch.testing.assert_close(fast[name], plain[name], atol=1e-4, rtol=1e-4)


def test_requested_order_and_mixed_specs(lite0):
    assert resolve_layers(lite0, "last, blocks.2.1,last") == ["global_pool", "blocks.2.1"]
    out = FeatureCapture(lite0, ["bn2", "blocks.0.0"])(images(1, 96))
    assert list(out) == ["bn2", "blocks.0.0"]


def test_layer_errors_are_featpipe_errors(lite0, resnet18):
    with pytest.raises(FeatpipeError, match=r"unknown layer 'blocks.9.9'.*did you mean.*featpipe layers efficientnet_lite0"):
        resolve_layers(lite0, "blocks.9.9")
    with pytest.raises(FeatpipeError, match="did you mean 'stages'"):
        resolve_layers(lite0, "stage")
    with pytest.raises(FeatpipeError, match="'layer1.0.relu'.*runs more than once"):
        resolve_layers(resnet18, ["layer1.0.relu"])
    with pytest.raises(FeatpipeError, match="no layers"):
        resolve_layers(lite0, " , ")
    with pytest.raises(FeatpipeError, match="unknown pool 'avg'"):
        FeatureCapture(lite0, "last", pool="avg")


def test_pool_features_never_aliases_its_input():
    x = torch.ones(2, 5)
    out = pool_features(x)
    x.zero_()  # what an in-place activation does after the hook
    assert out.sum() == 10
    tokens = torch.arange(12.0).reshape(1, 3, 4)
    assert pool_features(tokens, token_pool="cls").tolist() == [[0.0, 1.0, 2.0, 3.0]]
    assert pool_features(torch.ones(1, 2, 1, 1, dtype=torch.float16), "meanmax").dtype == torch.float32


def test_layer_info_pooled_dim():
    assert LayerInfo("a", (40, 28, 28)).pooled_dim("mean") == 40
    assert LayerInfo("a", (40, 28, 28)).pooled_dim("meanmax") == 80
    assert LayerInfo("a", (40, 28, 28)).pooled_dim("none") == 40 * 28 * 28
    assert LayerInfo("t", (197, 384)).pooled_dim("meanmax") == 384
    assert LayerInfo("v", (1280,)).pooled_dim("max") == 1280


# --- training seam: a trainable capture works on its own copy, under autograd --------------


def _batchnorms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_trainable_capture_gradients_reach_parameters_and_features(lite0):
    capture = FeatureCapture(lite0, ["blocks.1.0", "bn2"], trainable=True).train()
    features = capture(images(2, 96))
    assert all(f.requires_grad for f in features.values())
    features["blocks.1.0"].retain_grad()
    loss = sum(f.square().mean() for f in features.values())
    loss.backward()
    assert features["blocks.1.0"].grad is not None
    grads = [p.grad for p in capture.model.parameters() if p.requires_grad]
    assert grads and all(p.requires_grad for p in capture.model.parameters())
    assert capture.model.conv_stem.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["hooks", "fx"])
def test_training_step_leaves_the_shared_backbone_untouched(lite0, method):
    before = {k: v.clone() for k, v in lite0.model.state_dict().items()}
    frozen = FeatureCapture(lite0, ["bn2"])
    x = images(2, 96)
    reference = frozen(x)["bn2"]
    capture = FeatureCapture(lite0, ["bn2"], trainable=True, method=method).train()
    assert capture.model is not lite0.model
    optimizer = torch.optim.SGD(capture.model.parameters(), lr=0.1)
    capture(x)["bn2"].sum().backward()
    optimizer.step()
    after = lite0.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in lite0.model.parameters())
    assert not lite0.model.training
    assert torch.equal(frozen(x)["bn2"], reference)
    # the copy did learn: its weights and BatchNorm statistics moved
    assert not torch.equal(capture.model.conv_stem.weight, lite0.model.conv_stem.weight)
    assert not torch.equal(capture.model.bn1.running_mean, lite0.model.bn1.running_mean)


def test_train_mode_follows_train_only_when_trainable(lite0):
    frozen = FeatureCapture(lite0, ["bn2"]).train()
    assert frozen.training and not any(bn.training for bn in _batchnorms(frozen.model))
    trainable = FeatureCapture(lite0, ["bn2"], trainable=True)
    assert not trainable.training and not trainable.model.training  # starts in eval mode
    trainable.train()
    assert all(bn.training for bn in _batchnorms(trainable.model))
    trainable.eval()
    assert not any(bn.training for bn in _batchnorms(trainable.model))
    assert not lite0.model.training


def test_frozen_capture_is_unchanged_and_eval_trainable_agrees(lite0):
    x = images(2, 96)
    frozen = FeatureCapture(lite0, ["blocks.2.1", "bn2"])
    out = frozen(x)
    assert not any(f.requires_grad for f in out.values())
    assert all(f.is_inference() for f in out.values())  # still under torch.inference_mode
    expected = pool_features(raw_activation(lite0.model, "bn2", x))
    torch.testing.assert_close(out["bn2"], expected, rtol=0, atol=0)
    tuned = FeatureCapture(lite0, ["blocks.2.1", "bn2"], trainable=True)(x)
    for name in out:
        torch.testing.assert_close(tuned[name].detach(), out[name], rtol=1e-6, atol=1e-6)
