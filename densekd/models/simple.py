"""A small configurable CNN for smoke runs, tests and quick experiments."""
from __future__ import annotations

from torch import nn

from densekd.registry import MODELS


def _norm(kind: str | None, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(min(4, channels), channels)
    if kind is None:
        return nn.Identity()
    raise ValueError(f"simple_cnn norm must be 'bn', 'gn' or None; got {kind!r}")


@MODELS.register("simple_cnn")
class SimpleCNN(nn.Module):
    """Three conv stages (conv-norm-ReLU, stride 2 after the first) + global pool + linear.

    Input ``B x in_channels x H x W``, output ``B x num_classes``. ``norm='gn'``
    (GroupNorm) makes every sample's output independent of the rest of the batch,
    which the distributed-equivalence test relies on (SyncBatchNorm is CUDA-only).
    Taps: ``feats`` = stem, layer1, layer2, layer3, pooled embedding.
    """

    feature_taps = {"feats": ["stem", "layer1", "layer2", "layer3", "fc:input"],
                    "preacts": ["stem", "layer1.1:input", "layer2.1:input", "layer3.1:input", "fc:input"]}

    def __init__(self, num_classes: int = 100, width: int = 16, norm: str | None = "bn", in_channels: int = 3):
        super().__init__()

        def stage(cin, cout, stride):
            return nn.Sequential(nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=norm is None),
                                               _norm(norm, cout)), nn.ReLU())

        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=norm is None), _norm(norm, width),
                                  nn.ReLU())
        self.layer1 = stage(width, width, 1)
        self.layer2 = stage(width, 2 * width, 2)
        self.layer3 = stage(2 * width, 4 * width, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))
