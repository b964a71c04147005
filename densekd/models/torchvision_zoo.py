"""torchvision's ImageNet classifiers (ResNet-18/34/50, MobileNetV2) as zoo entries with declared taps.

``dict(type='tv_resnet18', num_classes=1000, pretrained='weights/resnet18-f37072fd.pth', in_channels=3)``
builds torchvision's own module (so torchvision's state dicts load without renaming), with:

* ``pretrained=PATH``: a LOCAL torchvision state dict (or a densekd checkpoint holding one under ``model``);
  nothing is downloaded. A missing file names the torchvision weights file to put there. With a different
  ``num_classes`` the classifier (``fc`` / ``classifier.1``) is left at its initialisation.
* ``in_channels`` (e.g. 1 for depth): the first convolution takes that many channels; 3-channel pretrained
  weights become their channel mean, repeated and scaled by ``3 / in_channels`` (a grey image seen with
  ``in_channels`` equal channels gets the RGB network's response to it), the usual transfer of ImageNet
  weights to depth or grey images.
* ``feature_taps``: ``feats`` = the stem (after its ReLU), the four stages and the pooled embedding (the
  classifier's input); ``preacts`` (ResNets) = the same stages before their final ReLU. ReLUs are made
  non-inplace so pre-activation taps are not overwritten. As in the CIFAR zoo, ``feats[1:-1]`` are the stage
  outputs (AT, NST, VID), ``feats[-2]`` the last stage (SP) and ``feats[-1]`` the pooled embedding (CC, CRD,
  RKD, PKT): ResNet-18 and ResNet-34 give the same shapes at every tap (64/128/256/512 channels at strides
  4/8/16/32, a 512-d embedding), ResNet-50 four times the channels.
* A teacher may instead load a torchvision file as its ``checkpoint`` (a plain state dict in torchvision's key
  layout loads as it is); the factory's ``weights_file`` names the file a missing checkpoint should be.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from densekd.registry import MODELS

# torchvision's released ImageNet weights (the file names torchvision downloads; densekd never does)
WEIGHT_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "mobilenet_v2": "mobilenet_v2-b0353104.pth",
}
#: what a missing weights file should be (a factory's ``weights_file``, which teacher errors quote)
WEIGHTS_FILE_HINT = ("torchvision's {arch} ImageNet weights, the file {file} (torchvision's model zoo; densekd never "
                     "downloads it)")
_RESNET_FEATS = ["relu", "layer1", "layer2", "layer3", "layer4", "fc:input"]
_MOBILENET_FEATS = ["features.1", "features.3", "features.6", "features.13", "features.18", "classifier:input"]


def _first_conv_name(arch: str) -> str:
    return "features.0.0" if arch.startswith("mobilenet") else "conv1"


def _adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    if weight.shape[1] == in_channels:
        return weight
    return weight.mean(1, keepdim=True).repeat(1, in_channels, 1, 1) * (weight.shape[1] / in_channels)


def load_torchvision_weights(model: nn.Module, path: str, arch: str) -> None:
    """Load a local torchvision state dict into ``model`` (see the module docstring)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"pretrained weights not found: {str(path)!r}. densekd never downloads weights: put torchvision's "
            f"{arch} ImageNet file ({WEIGHT_FILES.get(arch, '<arch>-<hash>.pth')}, from torchvision's model "
            f"zoo) at that path, or set pretrained=None")
    state = torch.load(p, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{str(path)!r} does not hold a state dict (name -> tensor)")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = model.state_dict()
    conv = _first_conv_name(arch) + ".weight"
    if conv in state:
        state[conv] = _adapt_first_conv(state[conv], own[conv].shape[1])
    head = ("fc.",) if arch.startswith("resnet") else ("classifier.1.",)
    skipped = [k for k in state if k.startswith(head) and k in own and state[k].shape != own[k].shape]
    state = {k: v for k, v in state.items() if k not in skipped}
    missing = [k for k in own if k not in state and not (skipped and k.startswith(head))]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
                  if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(f"{str(path)!r} is not a torchvision {arch} state dict: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, shape mismatch {mismatched[:5]}")
    model.load_state_dict(state, strict=False)


def _build(arch: str, num_classes: int, in_channels: int, pretrained: str | None) -> nn.Module:
    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    if in_channels != 3:
        parent, _, name = _first_conv_name(arch).rpartition(".")
        old = model.get_submodule(_first_conv_name(arch))
        new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        setattr(model.get_submodule(parent), name, new)
    for m in model.modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            m.inplace = False
    if arch.startswith("resnet"):
        model.feature_taps = {"feats": list(_RESNET_FEATS),
                              "preacts": ["bn1", "layer1.-1.relu:input", "layer2.-1.relu:input",
                                          "layer3.-1.relu:input", "layer4.-1.relu:input", "fc:input"]}
    else:
        model.feature_taps = {"feats": list(_MOBILENET_FEATS)}
    if pretrained:
        load_torchvision_weights(model, pretrained, arch)
    return model


def _register(arch: str):
    def factory(num_classes: int = 1000, in_channels: int = 3, pretrained: str | None = None) -> nn.Module:
        return _build(arch, num_classes, in_channels, pretrained)

    factory.__name__ = f"tv_{arch}"
    factory.__doc__ = f"torchvision's {arch} (see :mod:`densekd.models.torchvision_zoo`)."
    factory.weights_file = WEIGHTS_FILE_HINT.format(file=WEIGHT_FILES[arch], arch=arch)
    MODELS.register(f"tv_{arch}")(factory)
    return factory


tv_resnet18 = _register("resnet18")
tv_resnet34 = _register("resnet34")
tv_resnet50 = _register("resnet50")
tv_mobilenet_v2 = _register("mobilenet_v2")
