"""smp-based segmentation models: every arch x encoder, aux head, taps, local pretrained weights."""
import pytest
import torch
import torch.nn.functional as F
import torchvision

import densekd.models.seg  # noqa: F401  (registers seg_model)
from densekd.distill.taps import FeatureTaps, expand_taps
from densekd.models.seg import SegModel, load_pretrained, seg_model
from densekd.registry import MODELS

ARCHS = ["PSPNet", "DeepLabV3", "DeepLabV3Plus", "FPN", "Unet"]
ENCODERS = ["resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v2"]
STAGE_CHANNELS = {
    "resnet18": [64, 64, 128, 256, 512], "resnet34": [64, 64, 128, 256, 512],
    "resnet50": [64, 256, 512, 1024, 2048], "resnet101": [64, 256, 512, 1024, 2048],
    "mobilenet_v2": [16, 24, 32, 96, 1280],
}


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_and_encoder(arch, encoder):
    torch.manual_seed(0)
    model = seg_model(arch=arch, encoder=encoder, num_classes=5, aux_head=True)
    paths = expand_taps(model, "feats[:]")
    assert paths[-1] == "decoder" and len(paths) == 6
    x = torch.randn(2, 3, 64, 64)
    model.train()
    with FeatureTaps(model, paths) as taps, torch.no_grad():
        out = model(x)
        feats = taps.collect(paths)
    assert set(out) == {"out", "aux"}
    assert out["out"].shape == (2, 5, 64, 64) and out["aux"].shape == (2, 5, 64, 64)
    assert [f.shape[1] for f in feats[:-1]] == STAGE_CHANNELS[encoder]
    assert feats[0].shape[-1] == 32  # stride-2 stem
    model.eval()
    with torch.no_grad():
        y = model(x[:1])
    assert isinstance(y, torch.Tensor) and y.shape == (1, 5, 64, 64)


def test_non_divisible_input_is_padded_and_cropped():
    model = seg_model(arch="PSPNet", encoder="resnet18", num_classes=3).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 70, 90))
    assert y.shape == (1, 3, 70, 90)


def test_aux_gradients_reach_aux_head_and_encoder_not_decoder():
    torch.manual_seed(0)
    model = seg_model(arch="PSPNet", encoder="resnet18", num_classes=4, aux_head=True).train()
    out = model(torch.randn(2, 3, 64, 64))
    out["aux"].square().mean().backward()
    assert model.aux_head[0].weight.grad.abs().sum() > 0
    assert model.encoder.layer3[0].conv1.weight.grad.abs().sum() > 0
    assert model.encoder.layer4[0].conv1.weight.grad is None  # the aux head reads layer3
    assert all(p.grad is None for p in model.decoder.parameters())
    model.zero_grad(set_to_none=True)
    out = model(torch.randn(2, 3, 64, 64))
    out["out"].square().mean().backward()
    assert all(p.grad is None for p in model.aux_head.parameters())
    assert model.decoder.conv[0].weight.grad.abs().sum() > 0


def test_preact_taps_are_pre_relu():
    torch.manual_seed(0)
    model = seg_model(arch="FPN", encoder="resnet18", num_classes=3).eval()
    paths = expand_taps(model, ["preacts[-1]", "feats[-2]", "preacts[0]", "feats[0]"])
    assert paths == ["encoder.layer4.-1.relu:input", "encoder.layer4", "encoder.relu:input", "encoder.relu"]
    with FeatureTaps(model, paths) as taps, torch.no_grad():
        model(torch.randn(2, 3, 64, 64))
        pre4, post4, pre0, post0 = taps.collect(paths)
    assert pre4.min() < 0 and pre0.min() < 0
    assert torch.allclose(F.relu(pre4), post4) and torch.allclose(F.relu(pre0), post0)


def test_registry_build_and_defaults():
    model = MODELS.build(dict(type="seg_model", arch="DeepLabV3Plus", encoder="mobilenet_v2"), num_classes=7)
    assert isinstance(model, SegModel) and model.num_classes == 7
    assert "preacts" not in model.feature_taps
    psp = seg_model(arch="PSPNet", encoder="resnet18")
    assert psp.size_divisor == 8 and psp.encoder._depth == 5  # dilated, all stages (paper recipe)


def test_pspnet_output_stride_4_dilates_the_stride_8_stage():
    torch.manual_seed(0)
    os8 = seg_model(arch="PSPNet", encoder="resnet18", num_classes=3, encoder_depth=3, output_stride=8)
    os4 = seg_model(arch="PSPNet", encoder="resnet18", num_classes=3, encoder_depth=3, output_stride=4)
    assert os4.size_divisor == 4 and os8.size_divisor == 8
    # same weights, only strides -> dilation: layer2's first conv and shortcut have stride 1, its 3x3s dilation 2
    assert os4.encoder.layer2[0].conv1.stride == (1, 1) and os4.encoder.layer2[0].downsample[0].stride == (1, 1)
    assert os4.encoder.layer2[1].conv2.dilation == (2, 2) and os4.encoder.layer1[0].conv1.dilation == (1, 1)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert os4.eval().decoder(os4.encoder(x)).shape[-2:] == (16, 24)
        assert os8.eval().decoder(os8.encoder(x)).shape[-2:] == (8, 12)
        assert os4(x).shape == (2, 3, 64, 96)
    with pytest.raises(ValueError, match="ResNet encoders only"):
        seg_model(arch="PSPNet", encoder="mobilenet_v2", encoder_depth=3, output_stride=4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown segmentation arch"):
        seg_model(arch="SegFormer")
    with pytest.raises(ValueError, match="resnet18"):
        seg_model(encoder="efficientnet-b0")
    with pytest.raises(ValueError, match="never downloads"):
        seg_model(encoder_weights="imagenet")


def test_pretrained_missing_path(tmp_path):
    path = tmp_path / "missing" / "r18.pth"
    with pytest.raises(FileNotFoundError) as err:
        seg_model(arch="FPN", encoder="resnet18", pretrained=str(path))
    assert str(path) in str(err.value)


def test_pretrained_encoder_only_torchvision_state(tmp_path):
    torch.manual_seed(1)
    tv = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "r18.pth"
    torch.save(tv.state_dict(), path)
    model = seg_model(arch="PSPNet", encoder="resnet18", num_classes=3, pretrained=str(path))
    assert torch.equal(model.encoder.layer3[1].conv2.weight, tv.layer3[1].conv2.weight)
    assert torch.equal(model.encoder.bn1.running_var, tv.bn1.running_var)
    # wrong depth -> clear error
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ValueError, match="encoder state dict"):
        seg_model(arch="PSPNet", encoder="resnet18", pretrained=str(tmp_path / "r34.pth"))


def test_stages_beyond_encoder_depth_are_dropped(tmp_path):
    model = seg_model(arch="PSPNet", encoder="resnet18", num_classes=3, encoder_depth=3, psp_out_channels=16)
    assert model.pruned_stages == ("layer3", "layer4")
    assert not hasattr(model.encoder, "layer3") and not hasattr(model.encoder, "layer4")
    tv = torchvision.models.resnet18(num_classes=1000)
    used = sum(p.numel() for name, p in tv.named_parameters() if name.split(".")[0] in {"conv1", "bn1", "layer1",
                                                                                         "layer2"})
    head = sum(p.numel() for m in (model.decoder, model.segmentation_head) for p in m.parameters())
    assert sum(p.numel() for p in model.parameters()) == used + head
    # a full torchvision ResNet-18 still loads: the weights of the dropped stages are skipped
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    loaded = seg_model(arch="PSPNet", encoder="resnet18", num_classes=3, encoder_depth=3,
                       pretrained=str(tmp_path / "r18.pth"))
    assert torch.equal(loaded.encoder.layer2[1].conv2.weight, tv.layer2[1].conv2.weight)
    assert loaded(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_pretrained_full_model_in_checkpoint_wrapper(tmp_path):
    torch.manual_seed(2)
    src = seg_model(arch="FPN", encoder="resnet18", num_classes=3).eval()
    state = {f"module.{k}": v for k, v in src.state_dict().items()}
    torch.save({"model": state, "iter": 10}, tmp_path / "ckpt.pth")
    torch.manual_seed(3)
    dst = seg_model(arch="FPN", encoder="resnet18", num_classes=3, aux_head=True).eval()
    assert load_pretrained(dst, str(tmp_path / "ckpt.pth")) == "full"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(src(x), dst(x))
    with pytest.raises(ValueError, match="does not match"):
        seg_model(arch="FPN", encoder="resnet18", num_classes=5, pretrained=str(tmp_path / "ckpt.pth"))


def test_checkpoint_with_the_unused_stages_still_loads(tmp_path):
    from densekd.engine.checkpoint import load_weights

    torch.manual_seed(3)
    model = seg_model(arch="PSPNet", encoder="resnet18", num_classes=3, encoder_depth=3, psp_out_channels=16)
    state = dict(model.state_dict())
    state["encoder.layer3.0.conv1.weight"] = torch.zeros(256, 128, 3, 3)  # as smp kept it before pruning
    torch.save({"model": state}, tmp_path / "old.pth")
    fresh = seg_model(arch="PSPNet", encoder="resnet18", num_classes=3, encoder_depth=3, psp_out_channels=16)
    load_weights(fresh, tmp_path / "old.pth")
    assert torch.equal(fresh.encoder.layer2[0].conv1.weight, model.encoder.layer2[0].conv1.weight)
    state["decoder.bogus"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(RuntimeError, match="decoder.bogus"):
        load_weights(fresh, tmp_path / "bad.pth")
