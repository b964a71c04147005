"""Tests of the CIFAR model zoo (densekd.models.cifar) against RepDistiller's architectures.

Cheap checks for every model run on the ``meta`` device (shapes only, no arithmetic); value
checks run on CPU for a few small models and recompute RepDistiller's ``is_feat`` / ``preact``
feature lists by hand, wiring the model's convolutions/BNs the way RepDistiller's forward does.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densekd.distill.taps import FeatureTaps, expand_taps, resolve_module
from densekd.models.cifar import CIFAR_MODELS
from densekd.models.cifar._common import channel_shuffle
from densekd.models.cifar.resnet import CifarResNet
from densekd.models.cifar.shufflenetv2 import PartialReLU, ShuffleNetV2
from densekd.models.cifar.vgg import VGG
from densekd.models.cifar.wrn import WideResNet
from densekd.registry import MODELS, RegistryError

# ---------------------------------------------------------------------------------------------
# Parameter counts (num_classes=100).
#
# EXACT: integers obtained (while writing this zoo) by instantiating a transcription of
#   RepDistiller's models/*.py (github.com/HobbitLong/RepDistiller, resnet.py, resnetv2.py,
#   wrn.py, vgg.py [the *_bn models], mobilenetv2.py [mobile_half], ShuffleNetv1.py,
#   ShuffleNetv2.py) and summing p.numel() over its parameters.
# closed_form(): the same numbers derived below by hand from the architecture description only
#   (layer by layer: conv = C_in/groups * C_out * k * k (+ C_out bias), BN = 2C, linear = in*out + out).
# MILLIONS: the sizes in millions (2 decimals), the form in which follow-up KD papers quote this zoo
#   (e.g. resnet32x4 7.43M, resnet8x4 1.23M, wrn_40_2 2.26M, vgg13 9.46M, ResNet50 23.71M,
#   MobileNetV2 0.81M, ShuffleV1 0.95M, ShuffleV2 1.36M; recalled, not re-fetched for this file).
#   vgg8 is 3.965028M: 3.97 rounded (sometimes quoted truncated as 3.96).
# ---------------------------------------------------------------------------------------------
EXACT = {
    "resnet8": 83_892, "resnet14": 181_108, "resnet20": 278_324, "resnet32": 472_756, "resnet44": 667_188,
    "resnet56": 861_620, "resnet110": 1_736_564, "resnet8x4": 1_233_540, "resnet32x4": 7_433_860,
    "ResNet50": 23_705_252,
    "wrn_16_1": 180_916, "wrn_16_2": 703_284, "wrn_40_1": 569_780, "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028, "vgg11": 9_277_284, "vgg13": 9_462_180, "vgg16": 14_774_436, "vgg19": 20_086_692,
    "MobileNetV2": 812_836, "ShuffleV1": 949_258, "ShuffleV2": 1_355_528,
}
MILLIONS = {
    "resnet8": 0.08, "resnet14": 0.18, "resnet20": 0.28, "resnet32": 0.47, "resnet44": 0.67, "resnet56": 0.86,
    "resnet110": 1.74, "resnet8x4": 1.23, "resnet32x4": 7.43, "ResNet50": 23.71, "wrn_16_1": 0.18,
    "wrn_16_2": 0.70, "wrn_40_1": 0.57, "wrn_40_2": 2.26, "vgg8": 3.97, "vgg11": 9.28, "vgg13": 9.46,
    "vgg16": 14.77, "vgg19": 20.09, "MobileNetV2": 0.81, "ShuffleV1": 0.95, "ShuffleV2": 1.36,
}


def _conv(cin, cout, k, groups=1, bias=False):
    return cin // groups * cout * k * k + (cout if bias else 0)


def _bn(c):
    return 2 * c


def _fc(i, o):
    return i * o + o


def _cifar_resnet(depth, w, nc):
    n = (depth - 2) // 6
    total = _conv(3, w[0], 3) + _bn(w[0])
    cin = w[0]
    for cout, stride in ((w[1], 1), (w[2], 2), (w[3], 2)):
        for i in range(n):
            total += _conv(cin, cout, 3) + _bn(cout) + _conv(cout, cout, 3) + _bn(cout)
            if i == 0 and (stride != 1 or cin != cout):
                total += _conv(cin, cout, 1) + _bn(cout)
            cin = cout
    return total + _fc(w[3], nc)


def _resnet50(nc):
    total, cin = _conv(3, 64, 3) + _bn(64), 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for i in range(blocks):
            total += _conv(cin, planes, 1) + _bn(planes) + _conv(planes, planes, 3) + _bn(planes)
            total += _conv(planes, 4 * planes, 1) + _bn(4 * planes)
            if i == 0:  # every stage's first block changes width (64 -> 256, ...): projection
                total += _conv(cin, 4 * planes, 1) + _bn(4 * planes)
            cin = 4 * planes
    return total + _fc(2048, nc)


def _wrn(depth, k, nc):
    n = (depth - 4) // 6
    total, cin = _conv(3, 16, 3), 16
    for cout in (16 * k, 32 * k, 64 * k):
        for _ in range(n):
            total += _bn(cin) + _conv(cin, cout, 3) + _bn(cout) + _conv(cout, cout, 3)
            total += _conv(cin, cout, 1) if cin != cout else 0
            cin = cout
    return total + _bn(64 * k) + _fc(64 * k, nc)


def _vgg(blocks, nc):
    total, cin = 0, 3
    for block in blocks:
        for v in block:
            total += _conv(cin, v, 3, bias=True) + _bn(v)
            cin = v
    return total + _fc(512, nc)


def _mobile_half(nc):
    def ir(inp, oup, t):
        h = inp * t
        return _conv(inp, h, 1) + _bn(h) + _conv(h, h, 3, groups=h) + _bn(h) + _conv(h, oup, 1) + _bn(oup)

    total, cin = _conv(3, 16, 3) + _bn(16), 16
    # widths x0.5: 8, 12, 16, 32, 48, 80, 160; expansion 1 for the first stage, 6 after
    for t, c, n in ((1, 8, 1), (6, 12, 2), (6, 16, 3), (6, 32, 4), (6, 48, 3), (6, 80, 3), (6, 160, 1)):
        for _ in range(n):
            total += ir(cin, c, t)
            cin = c
    return total + _conv(160, 1280, 1) + _bn(1280) + _fc(1280, nc)


def _shufflev1(nc):
    def unit(cin, cout, g1, g=3):
        mid = cout // 4
        return (_conv(cin, mid, 1, groups=g1) + _bn(mid) + _conv(mid, mid, 3, groups=mid) + _bn(mid)
                + _conv(mid, cout, 1, groups=g) + _bn(cout))

    total = _conv(3, 24, 1) + _bn(24)
    total += unit(24, 240 - 24, 1) + 3 * unit(240, 240, 3)
    total += unit(240, 480 - 240, 3) + 7 * unit(480, 480, 3)
    total += unit(480, 960 - 480, 3) + 3 * unit(960, 960, 3)
    return total + _fc(960, nc)


def _shufflev2(nc):
    def down(cin, cout):
        m = cout // 2
        return (_conv(cin, cin, 3, groups=cin) + _bn(cin) + _conv(cin, m, 1) + _bn(m)
                + _conv(cin, m, 1) + _bn(m) + _conv(m, m, 3, groups=m) + _bn(m) + _conv(m, m, 1) + _bn(m))

    def unit(c):
        h = c // 2
        return 2 * (_conv(h, h, 1) + _bn(h)) + _conv(h, h, 3, groups=h) + _bn(h)

    total, cin = _conv(3, 24, 1) + _bn(24), 24
    for cout, n in ((116, 3), (232, 7), (464, 3)):
        total += down(cin, cout) + n * unit(cout)
        cin = cout
    return total + _conv(464, 1024, 1) + _bn(1024) + _fc(1024, nc)


_THIN, _WIDE = (16, 16, 32, 64), (32, 64, 128, 256)
_VGG = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


def closed_form(name: str, nc: int = 100) -> int:
    if name.startswith("resnet"):
        wide = name.endswith("x4")
        return _cifar_resnet(int(name[6:].replace("x4", "")), _WIDE if wide else _THIN, nc)
    if name == "ResNet50":
        return _resnet50(nc)
    if name.startswith("wrn"):
        _, depth, k = name.split("_")
        return _wrn(int(depth), int(k), nc)
    if name in _VGG:
        return _vgg(_VGG[name], nc)
    return {"MobileNetV2": _mobile_half, "ShuffleV1": _shufflev1, "ShuffleV2": _shufflev2}[name](nc)


# Expected RepDistiller is_feat shapes (without batch) for a 32x32 input; preacts have the same shapes.
def expected_feat_shapes(name: str) -> list[tuple[int, ...]]:
    if name.startswith("resnet"):
        w = _WIDE if name.endswith("x4") else _THIN
        return [(w[0], 32, 32), (w[1], 32, 32), (w[2], 16, 16), (w[3], 8, 8), (w[3],)]
    if name == "ResNet50":
        return [(64, 32, 32), (256, 32, 32), (512, 16, 16), (1024, 8, 8), (2048, 4, 4), (2048,)]
    if name.startswith("wrn"):
        k = int(name.split("_")[2])
        return [(16, 32, 32), (16 * k, 32, 32), (32 * k, 16, 16), (64 * k, 8, 8), (64 * k,)]
    if name.startswith("vgg"):
        return [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 4, 4), (512,)]
    return {
        "MobileNetV2": [(16, 16, 16), (12, 16, 16), (16, 8, 8), (48, 4, 4), (160, 2, 2), (1280,)],
        "ShuffleV1": [(24, 32, 32), (240, 16, 16), (480, 8, 8), (960, 4, 4), (960,)],
        "ShuffleV2": [(24, 32, 32), (116, 16, 16), (232, 8, 8), (464, 4, 4), (1024,)],
    }[name]


def build_meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return MODELS.build(dict(type=name, **kwargs))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_zoo_lists_every_requested_model():
    assert set(CIFAR_MODELS) == set(EXACT)
    for name in CIFAR_MODELS:
        assert name in MODELS


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_parameter_count_matches_repdistiller(name):
    model = build_meta(name)
    assert n_params(model) == EXACT[name]
    assert closed_form(name) == EXACT[name]
    assert round(EXACT[name] / 1e6, 2) == MILLIONS[name]


def test_num_classes_changes_only_the_classifier():
    # 10 classes: the classifier loses (100 - 10) * (in_features + 1) parameters.
    for name, in_features in (("resnet20", 64), ("wrn_16_2", 128), ("vgg8", 512), ("ShuffleV2", 1024)):
        assert n_params(build_meta(name, num_classes=10)) == EXACT[name] - 90 * (in_features + 1)
        assert closed_form(name, 10) == EXACT[name] - 90 * (in_features + 1)


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_in_channels_changes_only_the_first_convolution(name):
    """``in_channels`` (1 for an L view, 2 for ab): the first convolution's weight alone changes shape, by the
    input-channel axis, and the model reads (B, in_channels, 32, 32)."""
    ref = {k: tuple(v.shape) for k, v in build_meta(name).state_dict().items()}
    for c in (1, 2):
        model = build_meta(name, in_channels=c)
        got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert got.keys() == ref.keys()
        changed = [k for k in ref if got[k] != ref[k]]
        assert len(changed) == 1 and got[changed[0]] == (ref[changed[0]][0], c, *ref[changed[0]][2:])
        assert ref[changed[0]][1] == 3
        with torch.device("meta"):
            assert model(torch.empty(2, c, 32, 32)).shape == (2, 100)


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_meta_forward_logits_and_tap_shapes(name):
    model = MODELS.get(name)  # every factory builds with no argument: num_classes defaults to 100
    with torch.device("meta"):
        model = model()
        x = torch.empty(2, 3, 32, 32)
    feats, preacts = expand_taps(model, "feats[:]"), expand_taps(model, "preacts[:]")
    assert len(feats) == len(preacts) == len(expected_feat_shapes(name))
    calls: dict[str, int] = {}
    handles = [m.register_forward_hook(lambda *_a, n=n: calls.__setitem__(n, calls.get(n, 0) + 1))
               for n, m in model.named_modules() if n]
    with FeatureTaps(model, feats + preacts) as taps:
        out = model(x)
    for h in handles:
        h.remove()
    assert out.shape == (2, 100)
    want = [(2, *s) for s in expected_feat_shapes(name)]
    assert [tuple(t.shape) for t in taps.collect(feats)] == want
    assert [tuple(t.shape) for t in taps.collect(preacts)] == want
    # each module runs at most once per forward (so a tap records a unique tensor) ...
    assert max(calls.values()) == 1, {n: c for n, c in calls.items() if c > 1}
    # ... and nothing is in-place (an in-place op would overwrite recorded tensors)
    assert not [n for n, m in model.named_modules() if getattr(m, "inplace", False)]


def test_group_slices_resolve_to_stage_paths():
    model = build_meta("resnet32x4")
    assert expand_taps(model, "feats[1:-1]") == ["layer1", "layer2", "layer3"]
    assert expand_taps(model, "preacts[-2]") == ["layer3.-1.act:input"]
    assert expand_taps(build_meta("MobileNetV2"), "preacts[:]") == expand_taps(build_meta("MobileNetV2"), "feats[:]")


def test_bn_before_relu_paths_match_preact_taps():
    # RepDistiller get_bn_before_relu(): resnet layerX[-1].bn2, ResNet50 layerX[-1].bn3, wrn
    # block2.layer[0].bn1 / block3.layer[0].bn1 / bn1, vgg blockX[-1], mobile_half blocks[1,2,4,6][-1].conv[-1]
    want = {
        "resnet8x4": ["layer1.0.bn2", "layer2.0.bn2", "layer3.0.bn2"],
        "resnet20": ["layer1.2.bn2", "layer2.2.bn2", "layer3.2.bn2"],
        "ResNet50": ["layer1.2.bn3", "layer2.3.bn3", "layer3.5.bn3", "layer4.2.bn3"],
        "wrn_40_2": ["block2.layer.0.bn1", "block3.layer.0.bn1", "bn1"],
        "vgg13": ["block1.4", "block2.4", "block3.4", "block4.4"],
        "MobileNetV2": ["blocks.1.1.conv.7", "blocks.2.2.conv.7", "blocks.4.2.conv.7", "blocks.6.0.conv.7"],
    }
    for name, paths in want.items():
        model = build_meta(name)
        modules = dict(model.named_modules())
        got = [resolve_module(model, p) for p in model.bn_before_relu]
        assert got == [modules[p] for p in paths], name
        assert all(isinstance(m, nn.BatchNorm2d) for m in got)
        channels = [s[0] for s in expected_feat_shapes(name)[1:-1]]
        assert [m.num_features for m in got] == channels
    assert build_meta("ShuffleV1").bn_before_relu is None and build_meta("ShuffleV2").bn_before_relu is None


def test_vgg_64x64_input_uses_pool3():
    model = build_meta("vgg8")
    with FeatureTaps(model, ["act3", "act4"]) as taps:
        out = model(torch.empty(2, 3, 64, 64, device="meta"))
    assert out.shape == (2, 100)
    assert taps.features["act3"].shape == (2, 512, 8, 8) and taps.features["act4"].shape == (2, 512, 4, 4)


def test_checkpoint_key_names_follow_repdistiller():
    # a few RepDistiller state_dict keys per family, so its checkpoints load with load_state_dict
    cases = {
        "resnet8x4": ["conv1.weight", "layer1.0.downsample.0.weight", "layer3.0.bn2.running_var", "fc.bias"],
        "ResNet50": ["layer1.0.shortcut.0.weight", "layer4.2.bn3.weight", "linear.weight"],
        "wrn_16_2": ["block1.layer.0.convShortcut.weight", "block3.layer.1.bn2.weight", "bn1.weight", "fc.weight"],
        "vgg13": ["block0.0.bias", "block0.4.running_mean", "block4.3.weight", "classifier.weight"],
        "MobileNetV2": ["conv1.0.weight", "blocks.0.0.conv.0.weight", "blocks.6.0.conv.7.bias", "conv2.1.weight",
                        "classifier.0.weight"],
        "ShuffleV1": ["layer1.0.conv1.weight", "layer3.3.bn3.bias", "linear.weight"],
        "ShuffleV2": ["layer1.0.conv5.weight", "layer3.3.bn3.weight", "conv2.weight", "bn2.bias", "linear.bias"],
    }
    for name, keys in cases.items():
        sd = build_meta(name).state_dict()
        assert all(k in sd for k in keys), (name, [k for k in keys if k not in sd])
    assert "block1.layer.0.convShortcut.weight" not in build_meta("wrn_16_1").state_dict()  # 16 -> 16: identity
    assert build_meta("wrn_16_2").state_dict()["block1.layer.0.convShortcut.weight"].shape == (32, 16, 1, 1)


# ------------------------------- value checks on CPU (small models) -------------------------------
def _randomised_eval(model: nn.Module) -> nn.Module:
    """Eval mode with non-trivial BN statistics/affines so features are not just normalised noise."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


def _record(model, x, group):
    paths = expand_taps(model, f"{group}[:]")
    with FeatureTaps(model, paths) as taps:
        logits = model(x)
    return taps.collect(paths), logits


def _shuffle_ref(x, g):
    # output channel j takes input channel (j % g) * (C // g) + j // g
    c = x.shape[1]
    idx = torch.tensor([(j % g) * (c // g) + j // g for j in range(c)])
    return x[:, idx]


def _ref_resnet(m, x):
    """RepDistiller resnet.py forward(is_feat=True[, preact=True]) wired by hand."""
    h = F.relu(m.bn1(m.conv1(x)))
    feats, pres = [h], [h]
    for stage in (m.layer1, m.layer2, m.layer3):
        for blk in stage:
            res = h if blk.downsample is None else blk.downsample(h)
            pre = blk.bn2(blk.conv2(F.relu(blk.bn1(blk.conv1(h))))) + res
            h = F.relu(pre)
        feats.append(h)
        pres.append(pre)
    emb = F.avg_pool2d(h, 8).view(h.size(0), -1)
    return feats + [emb], pres + [emb], m.fc(emb)


def _ref_wrn(m, x):
    """RepDistiller wrn.py: pre-activation blocks; preact re-applies the next BN to stage outputs."""
    h = m.conv1(x)
    f0, outs = h, []
    for stage in (m.block1, m.block2, m.block3):
        for blk in stage.layer:
            a = F.relu(blk.bn1(h))
            out = blk.conv2(F.relu(blk.bn2(blk.conv1(a))))
            h = (h if blk.convShortcut is None else blk.convShortcut(a)) + out
        outs.append(h)
    emb = F.avg_pool2d(F.relu(m.bn1(h)), 8).flatten(1)
    feats = [f0, *outs, emb]
    pres = [f0, m.block2.layer[0].bn1(outs[0]), m.block3.layer[0].bn1(outs[1]), m.bn1(outs[2]), emb]
    return feats, pres, m.fc(emb)


def _ref_vgg(m, x):
    """RepDistiller vgg.py: blocks end with BN; ReLU applied outside; max-pool after blocks 0-2."""
    feats, pres, h = [], [], x
    for i in range(5):
        mods = [mod for mod in getattr(m, f"block{i}") if not isinstance(mod, nn.ReLU)]
        for j in range(0, len(mods), 2):
            h = mods[j + 1](mods[j](h))
            if j + 2 < len(mods):
                h = F.relu(h)
        pres.append(h)
        h = F.relu(h)
        feats.append(h)
        if i < 3:
            h = F.max_pool2d(h, 2)
    emb = F.adaptive_avg_pool2d(h, 1).flatten(1)
    return feats + [emb], [feats[0]] + pres[1:] + [emb], m.classifier(emb)


def _ref_shufflev1(m, x):
    """RepDistiller ShuffleNetv1.py; the last unit of each stage (stride 1) is wired by hand."""
    h = F.relu(m.bn1(m.conv1(x)))
    feats, pres = [h], [h]
    for stage in (m.layer1, m.layer2, m.layer3):
        h_in, u = stage[:-1](h), stage[-1]
        out = _shuffle_ref(F.relu(u.bn1(u.conv1(h_in))), 3)
        out = u.bn3(u.conv3(F.relu(u.bn2(u.conv2(out)))))
        pre = out + h_in
        h = F.relu(pre)
        feats.append(h)
        pres.append(pre)
    emb = F.avg_pool2d(h, 4).flatten(1)
    return feats + [emb], pres + [emb], m.linear(emb)


def _ref_shufflev2(m, x):
    """RepDistiller ShuffleNetv2.py; preact is cat([x1, branch]) before ReLU and before the shuffle."""
    h = F.relu(m.bn1(m.conv1(x)))
    feats, pres = [h], [h]
    for stage in (m.layer1, m.layer2, m.layer3):
        h_in, u = stage[:-1](h), stage[-1]
        c = h_in.shape[1] // 2
        x1, x2 = h_in[:, :c], h_in[:, c:]
        branch = u.bn3(u.conv3(u.bn2(u.conv2(F.relu(u.bn1(u.conv1(x2)))))))
        pres.append(torch.cat([x1, branch], 1))
        h = _shuffle_ref(torch.cat([x1, F.relu(branch)], 1), 2)
        feats.append(h)
    emb = F.avg_pool2d(F.relu(m.bn2(m.conv2(h))), 4).flatten(1)
    return feats + [emb], pres + [emb], m.linear(emb)


def _ref_mobile(m, x):
    """RepDistiller mobilenetv2.py: feats after conv1 and stages 1, 2, 4, 6; preact ignored."""
    h = m.conv1(x)
    outs = [h]
    for stage in m.blocks:
        h = stage(h)
        outs.append(h)
    emb = F.avg_pool2d(m.conv2(h), 2, ceil_mode=True).flatten(1)
    feats = [outs[0], outs[2], outs[3], outs[5], outs[7], emb]
    return feats, feats, m.classifier(emb)


REFERENCE_FORWARDS = {
    "resnet8x4": _ref_resnet, "wrn_16_2": _ref_wrn, "wrn_16_1": _ref_wrn, "vgg8": _ref_vgg,
    "ShuffleV1": _ref_shufflev1, "ShuffleV2": _ref_shufflev2, "MobileNetV2": _ref_mobile,
}


@pytest.mark.parametrize("name", list(REFERENCE_FORWARDS))
def test_taps_equal_repdistiller_feature_lists(name):
    torch.manual_seed(0)
    model = _randomised_eval(MODELS.build(dict(type=name)))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want_feats, want_pres, want_logits = REFERENCE_FORWARDS[name](model, x)
        feats, logits = _record(model, x, "feats")
        pres, _ = _record(model, x, "preacts")
    assert logits.shape == (2, 100)
    torch.testing.assert_close(logits, want_logits, rtol=1e-4, atol=1e-5)
    assert len(feats) == len(want_feats) and len(pres) == len(want_pres)
    for got, want in zip(feats + pres, want_feats + want_pres):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet8x4", "vgg8", "ShuffleV1", "ShuffleV2"])
def test_preact_taps_are_pre_relu(name):
    torch.manual_seed(0)
    model = MODELS.build(dict(type=name))  # train mode: batch statistics centre every BN output
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats, _ = _record(model, x, "feats")
        pres, _ = _record(model, x, "preacts")
    for i in range(1, len(feats) - 1):  # the stage taps (stem and pooled vector are post-ReLU in both)
        assert feats[i].min() >= 0
        assert pres[i].min() < 0, f"{name} preacts[{i}] has no negative value: not pre-ReLU"
        assert not torch.equal(feats[i], pres[i])


def test_wrn_stage_features_are_signed_and_preacts_are_bn_outputs():
    torch.manual_seed(0)
    model = MODELS.build(dict(type="wrn_16_2")).train()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        feats, _ = _record(model, x, "feats")
        pres, _ = _record(model, x, "preacts")
    # pre-activation net: stage outputs are residual sums (signed); preacts are train-mode BN outputs,
    # i.e. per-channel zero mean and unit variance over (B, H, W) with BN's default affine (1, 0)
    assert feats[1].min() < 0
    for p in pres[1:4]:
        mean = p.mean(dim=(0, 2, 3))
        var = p.var(dim=(0, 2, 3), unbiased=False)
        torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
        torch.testing.assert_close(var, torch.ones_like(var), atol=1e-3, rtol=0)
    assert feats[-1].min() >= 0  # pooled after the final BN-ReLU


def test_gradients_reach_exactly_the_layers_before_a_tap():
    torch.manual_seed(0)
    model = MODELS.build(dict(type="resnet8x4"))
    x = torch.randn(2, 3, 32, 32)
    path = expand_taps(model, "preacts[2]")  # layer2's last block, before its ReLU
    with FeatureTaps(model, path) as taps:
        model(x)
        taps.collect(path)[0].square().mean().backward()
    for name, p in model.named_parameters():
        upstream = name.startswith(("conv1", "bn1", "layer1", "layer2"))
        if upstream:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None or p.grad.abs().sum() == 0, name
    model.zero_grad(set_to_none=True)
    model(x).logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.fc.weight.grad.abs().sum() > 0 and model.conv1.weight.grad.abs().sum() > 0


def test_build_with_other_num_classes():
    model = MODELS.build(dict(type="resnet20", num_classes=10))
    assert isinstance(model, CifarResNet) and model.fc.out_features == 10
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # a default offered by the caller is used when the constructor accepts it
    assert MODELS.build(dict(type="ShuffleV1"), num_classes=7).linear.out_features == 7


def test_partial_relu_and_channel_shuffle():
    x = torch.randn(2, 6, 3, 3)
    out = PartialReLU(2)(x)
    torch.testing.assert_close(out[:, :2], x[:, :2])
    torch.testing.assert_close(out[:, 2:], x[:, 2:].clamp(min=0))
    torch.testing.assert_close(channel_shuffle(x, 3), _shuffle_ref(x, 3))
    torch.testing.assert_close(channel_shuffle(x, 1), x)
    with pytest.raises(ValueError, match="divisible"):
        channel_shuffle(x, 4)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match=r"6n\+2"):
        CifarResNet(depth=9)
    with pytest.raises(ValueError, match=r"6n\+4"):
        WideResNet(depth=15)
    with pytest.raises(ValueError, match="net_size"):
        ShuffleNetV2(net_size=0.7)
    with pytest.raises(ValueError, match="five"):
        VGG([[64], [128]])
    with pytest.raises(RegistryError, match="resnet20"):
        MODELS.build(dict(type="resnet21"))
    with pytest.raises(RegistryError, match="no parameter 'depth'"):
        MODELS.build(dict(type="resnet20", depth=3))
