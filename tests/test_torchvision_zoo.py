"""torchvision classifiers in the zoo: torchvision's key layout, local weights, taps, other input channels."""
import pytest
import torch
import torchvision

from densekd.distill.taps import FeatureTaps, expand_taps
from densekd.registry import MODELS


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v2"])
def test_a_torchvision_state_dict_loads_without_renaming(arch, tmp_path):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, arch)(weights=None).eval()
    path = tmp_path / f"{arch}.pth"
    torch.save(reference.state_dict(), path)
    model = MODELS.build(dict(type=f"tv_{arch}", pretrained=str(path))).eval()
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(model(x), reference(x), atol=1e-5)
    # another head: the classifier keeps its initialisation, everything else loads
    ten = MODELS.build(dict(type=f"tv_{arch}", num_classes=10, pretrained=str(path)))
    first = "conv1.weight" if arch.startswith("resnet") else "features.0.0.weight"
    assert torch.equal(ten.state_dict()[first], reference.state_dict()[first])


def test_missing_or_foreign_weights_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
        MODELS.build(dict(type="tv_resnet18", pretrained=str(tmp_path / "nope.pth")))
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ValueError, match="is not a torchvision resnet18 state dict.*unexpected"):
        MODELS.build(dict(type="tv_resnet18", pretrained=str(tmp_path / "r34.pth")))


def test_depth_input_adapts_rgb_weights_by_the_channel_mean(tmp_path):
    torch.manual_seed(0)
    rgb = torchvision.models.resnet18(weights=None)
    torch.save(rgb.state_dict(), tmp_path / "r18.pth")
    depth = MODELS.build(dict(type="tv_resnet18", in_channels=1, pretrained=str(tmp_path / "r18.pth")))
    w = rgb.conv1.weight
    assert depth.conv1.weight.shape == (64, 1, 7, 7)
    assert torch.allclose(depth.conv1.weight, w.mean(1, keepdim=True) * 3)
    x = torch.rand(1, 1, 32, 32)  # a grey image seen as 1 channel or as 3 equal channels: same stem response
    assert torch.allclose(depth.conv1(x), rgb.conv1(x.repeat(1, 3, 1, 1)), atol=1e-5)


def test_declared_taps_record_stages_and_the_pooled_embedding():
    model = MODELS.build(dict(type="tv_resnet18", num_classes=7)).eval()
    paths = expand_taps(model, "feats[:]")
    assert paths == ["relu", "layer1", "layer2", "layer3", "layer4", "fc:input"]
    with FeatureTaps(model, paths + expand_taps(model, "preacts[1:5]")) as taps:
        logits = model(torch.randn(2, 3, 64, 64))
        feats = taps.collect(paths)
        pre = taps.collect(expand_taps(model, "preacts[1:5]"))
    assert [tuple(f.shape[1:]) for f in feats[1:5]] == [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]
    assert torch.allclose(model.fc(feats[-1]), logits, atol=1e-6)
    assert all(torch.equal(torch.relu(p), f) for p, f in zip(pre, feats[1:5]))
    assert (pre[0] < 0).any()  # pre-activations are not rectified
