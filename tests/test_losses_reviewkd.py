"""ReviewKD (densekd.losses.features.ReviewKD, densekd.nn.review): the attention-based fusion and the hierarchical
context loss against their equations written out here (explicit convolutions, batch norm, nearest resizing and
numpy pooling), the warm-up, the release's widths on the real CIFAR pairs, gradients and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from densekd.distill.distiller import Distiller
from densekd.losses import ReviewKD
from densekd.losses.features import hierarchical_context_loss
from densekd.nn.review import ABF, ReviewFusion
from densekd.registry import LOSSES, MODELS, TASKS


def rand(*shape, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(requires_grad)


def np_pool(x, size):
    """Adaptive average pooling of a B x C x H x W array whose sides are multiples of ``size``."""
    b, c, h, w = x.shape
    return x.reshape(b, c, size, h // size, size, w // size).mean(axis=(3, 5))


def np_hcl_level(s, t):
    """One level of the HCL, as the release: full MSE, then pooled MSEs at 4, 2, 1 (only sizes < H) with weights
    1/2, 1/4, 1/8 (halving per size used), divided by the sum of the weights."""
    loss, weight, norm = np.mean((s - t) ** 2), 1.0, 1.0
    for size in (4, 2, 1):
        if size >= s.shape[2]:
            continue
        weight /= 2
        loss += weight * np.mean((np_pool(s, size) - np_pool(t, size)) ** 2)
        norm += weight
    return loss / norm


def test_hcl_matches_the_written_out_pyramid():
    s = [rand(2, 3, 8, 8, seed=1), rand(2, 4, 4, 4, seed=2), rand(2, 5, 1, 1, seed=3), rand(2, 2, 16, 16, seed=4)]
    t = [rand(2, 3, 8, 8, seed=5), rand(2, 4, 4, 4, seed=6), rand(2, 5, 1, 1, seed=7), rand(2, 2, 16, 16, seed=8)]
    got = hierarchical_context_loss(s, t).item()
    want = sum(np_hcl_level(a.numpy(), b.numpy()) for a, b in zip(s, t))
    assert got == pytest.approx(want, rel=1e-12)
    # the weights by hand for an 8 x 8 level: (full + pool4 / 2 + pool2 / 4 + pool1 / 8) / 1.875
    a, b = s[0].numpy(), t[0].numpy()
    hand = (np.mean((a - b) ** 2) + np.mean((np_pool(a, 4) - np_pool(b, 4)) ** 2) / 2
            + np.mean((np_pool(a, 2) - np_pool(b, 2)) ** 2) / 4 + np.mean((np_pool(a, 1) - np_pool(b, 1)) ** 2) / 8)
    assert hierarchical_context_loss(s[:1], t[:1]).item() == pytest.approx(hand / 1.875, rel=1e-12)
    # a 1 x 1 level is its plain MSE
    assert hierarchical_context_loss(s[2:3], t[2:3]).item() == pytest.approx(np.mean((s[2].numpy() - t[2].numpy()) ** 2))


# ---------------------------------------------------------------------------------------------- written-out ABF
def bn_train(x, bn):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)


def nearest(x, size):
    """Nearest resizing: output pixel i reads input pixel floor(i * in / out)."""
    rows = torch.floor(torch.arange(size[0], dtype=torch.float64) * x.shape[2] / size[0]).long()
    cols = torch.floor(torch.arange(size[1], dtype=torch.float64) * x.shape[3] / size[1]).long()
    return x[:, :, rows][:, :, :, cols]


def abf_by_hand(block: ABF, x, residual, out_size):
    x = bn_train(F.conv2d(x, block.reduce[0].weight), block.reduce[1])
    if residual is not None:
        r = nearest(residual, tuple(x.shape[2:]))
        logits = F.conv2d(torch.cat([x, r], 1), block.attention[0].weight, block.attention[0].bias)
        a = 1 / (1 + torch.exp(-logits))
        x = x * a[:, 0:1] + r * a[:, 1:2]
    if tuple(x.shape[2:]) != tuple(out_size):
        x = nearest(x, out_size)
    return bn_train(F.conv2d(x, block.project[0].weight, padding=1), block.project[1]), x


def test_reviewkd_value_is_the_review_chain_then_hcl():
    # levels: 8x8 -> 8x8, 4x4 -> teacher 8x8 (resized before the 3x3 conv), pooled 5 -> pooled 6
    s = [rand(3, 2, 8, 8, seed=1, requires_grad=True), rand(3, 3, 4, 4, seed=2, requires_grad=True),
         rand(3, 5, seed=3, requires_grad=True)]
    t = [rand(3, 4, 8, 8, seed=4), rand(3, 6, 8, 8, seed=5), rand(3, 6, seed=6)]
    loss = ReviewKD(s_shapes=[x.shape for x in s], t_shapes=[x.shape for x in t]).double()
    fusion = loss.fusion
    assert fusion.mid_channels == 5  # min(512, channels of the deepest student level)
    assert [b.fuses for b in fusion.blocks] == [True, True, False]
    for b in fusion.blocks:  # the BN affine parameters away from 1 / 0, so that they count
        for bn in (b.reduce[1], b.project[1]):
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.5, 0.5)
    got = loss(s, t)
    maps = [s[0], s[1], s[2][:, :, None, None]]
    t_maps = [t[0], t[1], t[2][:, :, None, None]]
    out2, r = abf_by_hand(fusion.blocks[2], maps[2], None, (1, 1))
    out1, r = abf_by_hand(fusion.blocks[1], maps[1], r, (8, 8))
    assert r.shape == (3, 5, 8, 8)  # the residual handed on is the resized fused map
    out0, _ = abf_by_hand(fusion.blocks[0], maps[0], r, (8, 8))
    want = sum(np_hcl_level(o.detach().numpy(), tt.numpy()) for o, tt in zip([out0, out1, out2], t_maps))
    assert got.item() == pytest.approx(want, rel=1e-10)
    got.backward()
    for x in s:
        assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in loss.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(not x.requires_grad for x in t)


def test_abf_structure_and_init_follow_the_release():
    block = ABF(8, 4, 6, fuse=True)
    assert block.reduce[0].kernel_size == (1, 1) and block.reduce[0].bias is None
    assert block.project[0].kernel_size == (3, 3) and block.project[0].padding == (1, 1) and block.project[0].bias is None
    assert block.attention[0].in_channels == 8 and block.attention[0].out_channels == 2
    assert block.attention[0].bias is not None
    # kaiming_uniform_(a=1): bound sqrt(6 / ((1 + a^2) fan_in)) = sqrt(3 / fan_in)
    assert block.reduce[0].weight.abs().max() <= (3 / 8) ** 0.5
    assert block.project[0].weight.abs().max() <= (3 / (4 * 9)) ** 0.5
    assert ABF(8, 4, 6, fuse=False).attention is None
    with pytest.raises(ValueError, match="residual"):
        block(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match="one student width"):
        ReviewFusion([4, 8], [4], [(2, 2)], 4)


def test_gradients_reach_student_and_fusion_never_the_teacher():
    torch.manual_seed(0)
    s = [torch.randn(4, 3, 8, 8, requires_grad=True), torch.randn(4, 6, 4, 4, requires_grad=True),
         torch.randn(4, 6, requires_grad=True)]
    t = [torch.randn(4, 5, 8, 8, requires_grad=True), torch.randn(4, 7, 4, 4, requires_grad=True),
         torch.randn(4, 7, requires_grad=True)]
    loss_mod = LOSSES.build(dict(type="ReviewKD"), s_shapes=[x.shape for x in s], t_shapes=[x.shape for x in t])
    loss_mod(s, t, epoch=30.0).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)
    assert all(x.grad is None for x in t)
    assert all(p.grad is not None for p in loss_mod.parameters())


def test_warmup_counts_epochs_from_one_as_mdistiller():
    s, t = [rand(2, 3, 4, 4, seed=1), rand(2, 3, seed=2)], [rand(2, 3, 4, 4, seed=3), rand(2, 3, seed=4)]
    loss = ReviewKD(s_shapes=[x.shape for x in s], t_shapes=[x.shape for x in t]).double()
    full = loss(s, t).item()  # no epoch: factor 1
    assert loss(s, t, epoch=0.0).item() == pytest.approx(full / 20, rel=1e-12)
    assert loss(s, t, epoch=4.7).item() == pytest.approx(full * 5 / 20, rel=1e-12)
    assert loss(s, t, epoch=19.0).item() == pytest.approx(full, rel=1e-12)
    assert loss(s, t, epoch=150.0).item() == pytest.approx(full, rel=1e-12)
    no_warm = ReviewKD(s_shapes=[x.shape for x in s], t_shapes=[x.shape for x in t], warmup=0).double()
    no_warm.load_state_dict(loss.state_dict())
    assert no_warm(s, t, epoch=0.0).item() == pytest.approx(full, rel=1e-12)


@pytest.mark.parametrize("student,teacher,s_ch,t_ch,mid", [
    ("resnet8x4", "resnet32x4", [64, 128, 256, 256], [64, 128, 256, 256], 256),
    ("resnet20", "resnet56", [16, 32, 64, 64], [16, 32, 64, 64], 64),
    ("wrn_16_2", "wrn_40_2", [32, 64, 128, 128], [32, 64, 128, 128], 128),
    ("wrn_40_1", "wrn_40_2", [16, 32, 64, 64], [32, 64, 128, 128], 64),
    ("vgg8", "vgg13", [128, 256, 512, 512, 512], [128, 256, 512, 512, 512], 512),
])
def test_the_release_widths_on_the_cifar_pairs(student, teacher, s_ch, t_ch, mid):
    """feats[1:] / preacts[1:] give the release's in_channels / out_channels tables and min(512, last) mid width."""
    torch.manual_seed(0)
    s_net, t_net = MODELS.build(dict(type=student)), MODELS.build(dict(type=teacher))
    d = Distiller(s_net, TASKS.build(dict(type="classification")), [t_net],
                  [dict(type="ReviewKD", student="feats[1:]", teacher="preacts[1:]")], probe=torch.randn(2, 3, 32, 32))
    fusion = d.losses["ReviewKD"].fusion
    assert [b.reduce[0].in_channels for b in fusion.blocks] == s_ch
    assert [b.project[0].out_channels for b in fusion.blocks] == t_ch
    assert fusion.mid_channels == mid


def test_mid_channels_option_and_errors():
    s, t = [torch.Size([2, 3, 4, 4]), torch.Size([2, 8])], [torch.Size([2, 3, 4, 4]), torch.Size([2, 8])]
    assert ReviewKD(s_shapes=s, t_shapes=t, mid_channels=16).fusion.mid_channels == 16
    assert ReviewKD(s_shapes=s, t_shapes=t, max_mid_channels=4).fusion.mid_channels == 4
    with pytest.raises(ValueError, match="same number of layers"):
        ReviewKD(s_shapes=s, t_shapes=t[:1])
    with pytest.raises(ValueError, match="tap B x C x H x W maps or the pooled"):
        ReviewKD(s_shapes=[torch.Size([2, 3, 4])], t_shapes=[torch.Size([2, 3, 4])])
    with pytest.raises(ValueError, match="s_shapes"):
        ReviewKD()
    loss = ReviewKD(s_shapes=s, t_shapes=t)
    with pytest.raises(ValueError, match="built for 2 layer"):
        loss([torch.randn(2, 3, 4, 4)], [torch.randn(2, 3, 4, 4)])
    with pytest.raises(ValueError, match="channels but the loss was built for"):
        loss([torch.randn(2, 5, 4, 4), torch.randn(2, 8)], [torch.randn(2, 3, 4, 4), torch.randn(2, 8)])
    with pytest.raises(ValueError, match="does not match the teacher"):
        loss([torch.randn(2, 3, 4, 4), torch.randn(2, 8)], [torch.randn(2, 3, 8, 8), torch.randn(2, 8)])
