"""Semantic-segmentation networks built with segmentation-models-pytorch (smp 0.6), ready for feature taps.

``seg_model(arch='PSPNet', encoder='resnet18', num_classes=19)`` builds a :class:`SegModel` whose children
are smp's own ``encoder`` / ``decoder`` / ``segmentation_head`` (so smp state dicts load as they are, and taps
read ``'encoder.layer4'``, ``'decoder'``...), plus an optional PSPNet-style auxiliary head.

Weights are never downloaded (smp's ``encoder_weights`` is always ``None``); ``pretrained=PATH`` loads a
local state dict, either an encoder-only one (torchvision / smp encoder keys, ``fc``/``classifier`` dropped) or
a full model.
"""
from __future__ import annotations

import os
from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from densekd.registry import MODELS

ARCHS = {
    "PSPNet": smp.PSPNet,
    "DeepLabV3": smp.DeepLabV3,
    "DeepLabV3Plus": smp.DeepLabV3Plus,
    "FPN": smp.FPN,
    "Unet": smp.Unet,
}

# Defaults that differ from smp's: PSPNet as in the paper (Zhao et al., CVPR 2017) and the KD literature
# (SKD, IFVD, CWD, CIRKD): all 5 encoder stages, dilated to output stride 8, pyramid pooling on the last one.
# (smp's own default PSPNet stops after stage 3 and has no dilation.)
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "PSPNet": dict(encoder_depth=5, output_stride=8),
    "DeepLabV3": dict(encoder_output_stride=8),
    "DeepLabV3Plus": dict(encoder_output_stride=16),
    "FPN": dict(),
    "Unet": dict(),
}

_RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")  # encoder stages 2..5
_RESNET_STAGES = ["encoder.relu", "encoder.layer1", "encoder.layer2", "encoder.layer3", "encoder.layer4"]
# pre-activation of each stage output: the input of the last ReLU call (after the residual addition)
_RESNET_PREACTS = ["encoder.relu:input", "encoder.layer1.-1.relu:input", "encoder.layer2.-1.relu:input",
                   "encoder.layer3.-1.relu:input", "encoder.layer4.-1.relu:input"]
_MOBILENET_STAGES = ["encoder.features.1", "encoder.features.3", "encoder.features.6", "encoder.features.13",
                     "encoder.features.18"]
ENCODERS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
            "resnext101_32x8d", "mobilenet_v2")


class SegModel(nn.Module):
    """An smp segmentation network with an optional auxiliary head and declared feature taps.

    Architectures: PSPNet (Zhao et al., CVPR 2017), DeepLabV3 (Chen et al., 2017), DeepLabV3+ (Chen et al.,
    ECCV 2018), FPN (Kirillov et al., panoptic FPN head, CVPR 2019), U-Net (Ronneberger et al., MICCAI 2015).

    ``forward(x)``: ``x`` B x C x H x W -> logits B x num_classes x H x W at the input resolution (inputs whose
    size is not a multiple of the encoder's output stride are zero-padded bottom/right and the logits
    cropped). With ``aux_head=True`` and in training mode it returns ``{'out': logits, 'aux': aux_logits}``;
    the auxiliary head (PSPNet recipe: 3x3 conv 256 - BN - ReLU - Dropout2d(0.1) - 1x1 conv) reads the
    penultimate encoder stage and is upsampled (bilinear) to the input size. Eval mode: always the tensor.

    ``feature_taps['feats']``: the encoder stage outputs (strides 2, 4, 8, 16, 32 before dilation) and the
    decoder output; for ResNet encoders also ``feature_taps['preacts']``: the same stages before their final
    ReLU (encoder stages only). Encoder ReLUs are made non-inplace so pre-activation taps are not overwritten.
    """

    def __init__(self, arch: str = "PSPNet", encoder: str = "resnet18", num_classes: int = 19,
                 aux_head: bool = False, pretrained: str | None = None, **arch_kwargs: Any):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"Unknown segmentation arch {arch!r}; choose one of {', '.join(ARCHS)}")
        if encoder not in ENCODERS:
            raise ValueError(f"Unsupported encoder {encoder!r}; choose one of {', '.join(ENCODERS)} "
                             f"(other smp encoders lack declared feature taps)")
        if arch_kwargs.get("encoder_weights") is not None:
            raise ValueError("densekd never downloads weights: leave encoder_weights unset and pass "
                             "pretrained='/path/to/state_dict.pth' (a local encoder or full-model state dict)")
        if "aux_params" in arch_kwargs:
            raise ValueError("aux_params (smp's classification head) is not supported; use aux_head=True for the "
                             "PSPNet-style auxiliary segmentation head")
        arch_kwargs.pop("encoder_weights", None)
        for key in ("classes", "encoder_name"):
            if key in arch_kwargs:
                raise ValueError(f"pass {'num_classes' if key == 'classes' else 'encoder'}=... instead of {key}=...")
        kwargs = {**ARCH_DEFAULTS[arch], **arch_kwargs}
        # smp dilates to output stride 8 or 16 only; 4 (small inputs, e.g. the synthetic demo frames) is done
        # here on the undilated encoder.
        stride4 = arch == "PSPNet" and kwargs.get("output_stride") == 4
        if stride4:
            kwargs.pop("output_stride")
        if arch == "PSPNet" and "upsampling" not in kwargs:
            kwargs["upsampling"] = min(4 if stride4 else int(kwargs.get("output_stride", 32)),
                                       2 ** int(kwargs.get("encoder_depth", 3)))
        net = ARCHS[arch](encoder_name=encoder, encoder_weights=None, classes=num_classes, **kwargs)
        if stride4:
            dilate_encoder(net.encoder, 4)
        self.arch, self.encoder_name, self.num_classes = arch, encoder, num_classes
        self.encoder = net.encoder
        self.decoder = net.decoder
        self.segmentation_head = net.segmentation_head
        for m in self.encoder.modules():
            if isinstance(m, (nn.ReLU, nn.ReLU6)):
                m.inplace = False
        depth = self.encoder._depth
        # smp keeps the stages beyond encoder_depth (never run); drop them so that parameter counts, optimiser
        # state and checkpoints hold only what the network uses. load_pretrained skips their weights.
        self.pruned_stages = tuple(_RESNET_LAYERS[max(depth - 1, 0):]) if encoder.startswith("res") else ()
        for name in self.pruned_stages:
            delattr(self.encoder, name)
        if self.pruned_stages:  # checkpoints written while smp's unused stages were kept still load
            self._register_load_state_dict_pre_hook(self._skip_pruned_stages)
        self.size_divisor = int(self.encoder.output_stride)
        stages = (_MOBILENET_STAGES if encoder.startswith("mobilenet") else _RESNET_STAGES)[:depth]
        self.feature_taps = {"feats": stages + ["decoder"]}
        if encoder.startswith("res"):
            self.feature_taps["preacts"] = _RESNET_PREACTS[:depth]
        self.aux_head = None
        if aux_head:
            if depth < 2:
                raise ValueError("aux_head needs an encoder with at least 2 stages (encoder_depth >= 2)")
            in_ch = self.encoder.out_channels[-2]
            self.aux_head = nn.Sequential(
                nn.Conv2d(in_ch, 256, 3, padding=1, bias=False), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
                nn.Dropout2d(0.1), nn.Conv2d(256, num_classes, 1))
        if pretrained is not None:
            load_pretrained(self, pretrained)

    def _skip_pruned_stages(self, state_dict, prefix, *args):
        stale = tuple(f"{prefix}encoder.{name}." for name in self.pruned_stages)
        for key in [k for k in state_dict if k.startswith(stale)]:
            del state_dict[key]

    def forward(self, x: torch.Tensor, aux: bool | None = None):
        """Logits, or ``{'out': logits, 'aux': aux_logits}`` when the auxiliary head runs: in training mode
        (``aux=None``, the default), or always with ``aux=True`` (e.g. an export that keeps the head; an error
        without one). ``aux=False`` never runs it."""
        if aux and self.aux_head is None:
            raise ValueError(f"{self.arch}/{self.encoder_name} has no auxiliary head (build it with aux_head=True)")
        x, h, w = pad_to_multiple(x, self.size_divisor, "SegModel")
        feats = self.encoder(x)
        logits = crop_to_input(self.segmentation_head(self.decoder(feats)), x, h, w)
        run_aux = self.aux_head is not None and (self.training if aux is None else bool(aux))
        if run_aux:
            return {"out": logits, "aux": crop_to_input(self.aux_head(feats[-2]), x, h, w)}
        return logits

    def extra_repr(self) -> str:
        return f"arch={self.arch}, encoder={self.encoder_name}, num_classes={self.num_classes}"


def dilate_encoder(encoder: nn.Module, output_stride: int) -> None:
    """Replace the strides of every ResNet stage deeper than ``output_stride`` by dilation (rate = the stage's
    stride / ``output_stride``), as smp's ``make_dilated`` does -- which allows only 8 and 16."""
    stages = {8: "layer2", 16: "layer3", 32: "layer4"}
    if not all(hasattr(encoder, name) for name in stages.values()):
        raise ValueError(f"output_stride={output_stride} is supported for ResNet encoders only (smp dilates other "
                         f"encoders to 8 or 16)")
    for stage_stride, name in stages.items():
        if stage_stride > output_stride:
            smp.encoders._utils.replace_strides_with_dilation(getattr(encoder, name), stage_stride // output_stride)
    encoder._output_stride = output_stride


def pad_to_multiple(x: torch.Tensor, divisor: int, who: str) -> tuple[torch.Tensor, int, int]:
    """``(x zero-padded bottom/right to a multiple of divisor, original height, original width)``."""
    if x.dim() != 4:
        raise ValueError(f"{who} expects B x C x H x W images; got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    ph, pw = (-h) % divisor, (-w) % divisor
    return (F.pad(x, (0, pw, 0, ph)) if ph or pw else x), h, w


def crop_to_input(t: torch.Tensor, padded: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A head's map resized (bilinear) to the padded input's size, then cropped to the original ``h x w``."""
    return _to_size(t, padded.shape[-2:])[..., :h, :w]


def _to_size(t: torch.Tensor, size) -> torch.Tensor:
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def load_pretrained(model: SegModel, path: str) -> str:
    """Load a local state dict into ``model``; returns ``'full'`` or ``'encoder'`` (what was loaded).

    Accepts a raw state dict or a checkpoint dict holding one under ``state_dict`` / ``model``; ``module.``
    prefixes (DDP) are removed. Keys starting with ``encoder.`` / ``decoder.`` / ``segmentation_head.`` make
    it a full model (the auxiliary head may be absent); otherwise it is an encoder state dict (ImageNet
    classifier keys ``fc.*`` / ``classifier.*`` are dropped). Any other mismatch is an error.
    """
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained weights not found: {path!r}. densekd never downloads weights; put a "
                                f"local state dict there (e.g. a torchvision ResNet .pth) or set pretrained=None")
    obj = torch.load(path, map_location="cpu", weights_only=False)  # densekd checkpoints hold RNG states too
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path!r} does not hold a state dict (name -> tensor)")
    state = _strip(dict(obj), "module.")
    if any(k.startswith(("encoder.", "decoder.", "segmentation_head.")) for k in state):
        state = {k: v for k, v in state.items()
                 if not k.startswith(tuple(f"encoder.{name}." for name in model.pruned_stages))}
        own = model.state_dict()
        missing = [k for k in own if k not in state and not k.startswith("aux_head.")]
        unexpected = [k for k in state if k not in own and not k.startswith(("aux_head.", "classification_head."))]
        mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
        if missing or unexpected or mismatched:
            raise ValueError(f"{path!r} does not match {model.arch}/{model.encoder_name} "
                             f"({model.num_classes} classes): missing {missing[:5]}, unexpected {unexpected[:5]}, "
                             f"shape mismatch {mismatched[:5]}")
        model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
        return "full"
    dropped = ("fc.", "classifier.") + tuple(f"{name}." for name in model.pruned_stages)
    state = {k: v for k, v in state.items() if not k.startswith(dropped)}
    own = model.encoder.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(f"{path!r} is not a {model.encoder_name} encoder state dict: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, shape mismatch {mismatched[:5]}")
    nn.Module.load_state_dict(model.encoder, state, strict=True)
    return "encoder"


@MODELS.register()
def seg_model(arch: str = "PSPNet", encoder: str = "resnet18", num_classes: int = 19, aux_head: bool = False,
              pretrained: str | None = None, **arch_kwargs: Any) -> SegModel:
    """Build a :class:`SegModel` (see there). ``arch_kwargs`` go to the smp architecture (e.g.
    ``encoder_depth``, ``encoder_output_stride`` for DeepLab, ``output_stride`` / ``upsampling`` /
    ``psp_out_channels`` for PSPNet, ``decoder_channels``, ``in_channels``). PSPNet's ``output_stride`` may be
    4, 8 or 16 (4 -- for small inputs -- dilates from the stride-8 stage on; ResNet encoders only)."""
    return SegModel(arch=arch, encoder=encoder, num_classes=num_classes, aux_head=aux_head, pretrained=pretrained,
                    **arch_kwargs)
