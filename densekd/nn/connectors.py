"""Connectors: small learnable adapters between student and teacher features.

They live inside the loss modules that need them (so the trainer optimises
them with the student) and are built from observed shapes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from densekd.registry import CONNECTORS


@CONNECTORS.register()
class ConvConnector(nn.Sequential):
    """1x1 (or kxk) convolution + BatchNorm mapping ``in_channels`` -> ``out_channels``.

    The FitNet regressor / OFD connector. Input ``B x Cs x H x W``, output ``B x Ct x H x W``.
    ``relu=True`` appends a ReLU (AB's connector has none; FitNet's RepDistiller
    regressor uses one for spatially-equal maps).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, bn: bool = True, relu: bool = False):
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                                             bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(out_channels))
        if relu:
            layers.append(nn.ReLU())
        super().__init__(*layers)


@CONNECTORS.register()
class LinearEmbed(nn.Module):
    """Flatten, linear projection to ``dim``, then L2 normalisation (CRD's embedding head).

    Input ``B x ...`` (flattened to ``B x in_features``), output ``B x dim`` with unit rows.
    """

    def __init__(self, in_features: int, dim: int = 128, normalize: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, dim)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x.flatten(1))
        return F.normalize(x, dim=1) if self.normalize else x


@CONNECTORS.register()
class MLPEmbed(nn.Module):
    """Flatten, Linear -> ReLU -> Linear to ``dim``, then optional L2 normalisation."""

    def __init__(self, in_features: int, dim: int = 128, hidden: int | None = None, normalize: bool = True):
        super().__init__()
        hidden = hidden or 2 * dim
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net(x.flatten(1))
        return F.normalize(x, dim=1) if self.normalize else x


def build_connector(kind: str, s_shape: torch.Size, t_shape: torch.Size, **kwargs) -> nn.Module:
    """Build a connector from observed (batched) shapes: ``'conv'``, ``'linear'``, ``'mlp'``, ``'identity'``, or
    ``'auto'``: identity when the shapes agree, a 1x1 conv for two feature maps, a linear map otherwise (never
    a linear map of a flattened map, which at CIFAR's 256 x 8 x 8 would be a 16384 -> 16384 layer of 268 M
    parameters)."""
    if kind == "auto":
        if tuple(s_shape[1:]) == tuple(t_shape[1:]):
            kind = "identity"
        elif len(s_shape) == 4 and len(t_shape) == 4:
            kind = "conv"
        else:
            kind = "linear"
    if kind == "identity":
        if tuple(s_shape[1:]) != tuple(t_shape[1:]):
            raise ValueError(f"identity connector needs equal shapes; student {tuple(s_shape)} vs teacher "
                             f"{tuple(t_shape)}: use connector='conv' (for maps) or 'linear' (for vectors)")
        return nn.Identity()
    if kind == "conv":
        if len(s_shape) != 4 or len(t_shape) != 4:
            raise ValueError(f"conv connector needs 4-D feature maps; got student {tuple(s_shape)}, "
                             f"teacher {tuple(t_shape)}")
        return ConvConnector(s_shape[1], t_shape[1], **kwargs)
    if kind in ("linear", "mlp"):  # flatten, map, reshape to the teacher's (per-sample) shape
        embed = LinearEmbed if kind == "linear" else MLPEmbed
        kwargs.setdefault("normalize", False)
        return nn.Sequential(embed(int(torch.Size(s_shape[1:]).numel()), int(torch.Size(t_shape[1:]).numel()), **kwargs),
                             nn.Unflatten(1, tuple(t_shape[1:])))
    raise ValueError(f"unknown connector kind {kind!r}; choose 'auto', 'conv', 'linear', 'mlp' or 'identity'")


def _spatial(shape, who: str) -> tuple[int, int, int]:
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(f"{who} needs 4-D (B x C x H x W) feature maps, got shape {shape}; tap a convolutional "
                         f"feature map, not a pooled vector")
    return int(shape[1]), int(shape[2]), int(shape[3])


@CONNECTORS.register()
class ConvReg(nn.Module):
    """FitNet's convolutional regressor (RepDistiller ``models/util.py:ConvReg``), built from shapes.

    Maps a student map ``B x Cs x Hs x Ws`` to the teacher's ``B x Ct x Ht x Wt``:

    * ``Hs, Ws == 2 Ht, 2 Wt``: 3x3 conv, stride 2, padding 1;
    * ``2 Hs, 2 Ws == Ht, Wt``: 4x4 transposed conv, stride 2, padding 1;
    * ``Hs >= Ht and Ws >= Wt``: conv with kernel ``(1 + Hs - Ht, 1 + Ws - Wt)``, no padding
      (a 1x1 conv when the sizes are equal);
    * otherwise (student map smaller, but not by exactly 2x): ``ValueError``.

    followed by BatchNorm and, if ``relu`` (default, FitNet), a ReLU. AB's connector uses ``relu=False``.
    Departure: RepDistiller only compares heights (assumes square maps); here both sides are checked.
    """

    def __init__(self, s_shape, t_shape, relu: bool = True):
        super().__init__()
        s_c, s_h, s_w = _spatial(s_shape, "ConvReg (student)")
        t_c, t_h, t_w = _spatial(t_shape, "ConvReg (teacher)")
        if s_h == 2 * t_h and s_w == 2 * t_w:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
        elif 2 * s_h == t_h and 2 * s_w == t_w:
            self.conv = nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
        elif s_h >= t_h and s_w >= t_w:
            self.conv = nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
        else:
            raise ValueError(f"ConvReg cannot map student shape {tuple(s_shape)} to teacher shape {tuple(t_shape)}: "
                             f"the student map is smaller than the teacher's but not by exactly 2x; tap a student "
                             f"layer at least as large as the teacher's (or exactly half its size)")
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


def _maybe_bn(channels: int, use_bn: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if use_bn else nn.Identity()


def _conv_stack(channels: list[int], use_bn: bool, transposed: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers += [conv(c_in, c_out, 3, 1, 1), _maybe_bn(c_out, use_bn), nn.LeakyReLU(0.1)]
    return nn.Sequential(*layers)


@CONNECTORS.register()
class Paraphraser(nn.Module):
    """Factor Transfer's paraphraser (Kim et al., "Paraphrasing Complex Network", NeurIPS 2018).

    A convolutional auto-encoder trained on the teacher's feature map ``B x C x H x W``:
    encoder = three 3x3 convs ``C -> C -> k*C -> k*C`` (``k = rate``, default 0.5), decoder = three 3x3
    transposed convs back to ``C``; every conv is followed by (optional BN and) LeakyReLU(0.1), as in
    RepDistiller's ``Paraphraser`` (``use_bn=False`` there). ``forward`` returns ``(factor, reconstruction)``
    with shapes ``B x int(k*C) x H x W`` and ``B x C x H x W``; ``encode`` returns only the factor.
    """

    def __init__(self, in_channels: int, rate: float = 0.5, use_bn: bool = False):
        super().__init__()
        out_channels = int(in_channels * rate)
        if out_channels < 1:
            raise ValueError(f"Paraphraser: rate={rate} x {in_channels} channels leaves no factor channels; "
                             f"raise rate (0 < rate, rate * channels >= 1)")
        self.out_channels = out_channels
        self.encoder = _conv_stack([in_channels, in_channels, out_channels, out_channels], use_bn)
        self.decoder = _conv_stack([out_channels, out_channels, in_channels, in_channels], use_bn, transposed=True)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        factor = self.encoder(x)
        return factor, self.decoder(factor)


@CONNECTORS.register()
class Translator(nn.Module):
    """Factor Transfer's translator on the student (Kim et al., NeurIPS 2018; RepDistiller ``Translator``).

    Three 3x3 convs ``Cs -> Cs -> out -> out``, each with BN (``use_bn=True``) and LeakyReLU(0.1).
    Input ``B x Cs x H x W``, output the student factor ``B x out x H x W`` (``out`` = the paraphraser's
    factor channels, ``int(rate * Ct)``).
    """

    def __init__(self, in_channels: int, out_channels: int, use_bn: bool = True):
        super().__init__()
        self.encoder = _conv_stack([in_channels, in_channels, out_channels, out_channels], use_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)
