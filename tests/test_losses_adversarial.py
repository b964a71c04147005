"""Tests for densekd.losses.adversarial.HolisticKD (WGAN-GP critic, SAGAN blocks, spectral norm)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from densekd.losses import HolisticKD
from densekd.losses.adversarial import Critic, SelfAttention2d
from densekd.registry import LOSSES


def _small(c=4, hw=16, **kw) -> HolisticKD:
    kw.setdefault("conv_dim", 8)
    return HolisticKD(t_shapes=[torch.Size([2, c, hw, hw])], s_shapes=[torch.Size([2, c, hw, hw])], **kw)


def _lively(loss: HolisticKD) -> HolisticKD:
    """Eval mode (deterministic BN / spectral norm) and a scaled last layer so that ||grad D|| is O(1):
    with the default init the gradient norms are ~1e-3 and the penalty is ~1 whatever the gradients are."""
    loss.eval()
    with torch.no_grad():
        loss.discriminator.last.weight.mul_(200)
    return loss


def _independent_gp(D, fake, real, alpha, image=None):
    """(||grad_x D(x)||_2 - 1)^2 averaged over samples, x = a*real + (1-a)*fake, by plain autograd."""
    a = alpha.view(-1, 1, 1, 1)
    x = (a * real + (1 - a) * fake).detach().requires_grad_(True)
    inp = x if image is None else torch.cat([x, image], 1)
    out = D(inp)
    (g,) = torch.autograd.grad(out.sum(), x)
    norms = torch.stack([g[b].pow(2).sum().sqrt() for b in range(g.shape[0])])
    return ((norms - 1) ** 2).mean()


def test_critic_matches_reference_architecture_and_uses_spectral_norm():
    loss = HolisticKD(t_shapes=[torch.Size([2, 19, 65, 65])])
    D = loss.discriminator
    assert isinstance(D, Critic) and isinstance(D.preprocess, nn.BatchNorm2d)
    convs = [m for m in D.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512]
    assert convs[0].in_channels == 19
    for c in convs:
        assert parametrize.is_parametrized(c, "weight")
        assert type(c.parametrizations.weight[0]).__name__ == "_SpectralNorm"
        assert (c.kernel_size, c.stride, c.padding) == ((4, 4), (2, 2), (1, 1))
    assert [m.negative_slope for m in D.features if isinstance(m, nn.LeakyReLU)] == [0.1] * 4
    attn = [m for m in D.features if isinstance(m, SelfAttention2d)]
    assert [a.value.in_channels for a in attn] == [256, 512]
    assert all(a.gamma.item() == 0 for a in attn)
    out = D(torch.randn(2, 19, 65, 65))
    assert out.shape == (2, 1, 1, 1)
    # small maps: depth derived from the probed shape; output at least 1x1
    small = HolisticKD(t_shapes=[torch.Size([2, 5, 8, 8])], conv_dim=4)
    assert small.discriminator.depth == 3
    assert small.discriminator(torch.randn(2, 5, 8, 8)).shape == (2, 1, 1, 1)


def test_spectral_norm_bounds_the_layer():
    torch.manual_seed(0)
    D = _small().discriminator
    conv = D.features[0]
    with torch.no_grad():
        conv.parametrizations.weight.original.mul_(50)
        for _ in range(30):  # power iterations happen in training-mode forwards
            D(torch.randn(2, 4, 16, 16))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_self_attention_block_matches_loops():
    torch.manual_seed(1)
    blk = SelfAttention2d(8)
    with torch.no_grad():
        blk.gamma.fill_(0.7)
    x = torch.randn(1, 8, 2, 3)
    q, k, v = blk.query(x).flatten(2)[0], blk.key(x).flatten(2)[0], blk.value(x).flatten(2)[0]
    N = 6
    want = torch.zeros(8, N)
    for i in range(N):
        e = torch.stack([(q[:, i] * k[:, j]).sum() for j in range(N)])
        a = torch.softmax(e, 0)
        want[:, i] = sum(a[j] * v[:, j] for j in range(N))
    want = 0.7 * want.view(1, 8, 2, 3) + x
    torch.testing.assert_close(blk(x), want, rtol=1e-5, atol=1e-6)


def test_generator_loss_value_and_gradients():
    torch.manual_seed(2)
    loss = _small()
    loss.eval()  # deterministic critic (BN running stats, fixed spectral-norm vectors)
    s = torch.randn(2, 4, 16, 16, requires_grad=True)
    t = torch.randn(2, 4, 16, 16, requires_grad=True)
    g = loss(s, t)
    with torch.no_grad():
        want = -loss.discriminator(s).mean()
    assert g.item() == pytest.approx(want.item(), rel=1e-5)
    g.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    d_grads = [p.grad for p in loss.discriminator.parameters() if p.requires_grad]
    assert any(gr is not None and gr.abs().sum() > 0 for gr in d_grads)


def test_separate_parameters_and_d_optimizer():
    loss = _small(d_lr=1e-3, d_betas=(0.5, 0.9), d_weight_decay=1e-4, n_critic=5)
    sep = loss.separate_parameters()
    assert {id(p) for p in sep} == {id(p) for p in loss.parameters()}  # nothing left for the student's optimiser
    assert {id(p) for p in sep} == {id(p) for p in loss.discriminator.parameters()}
    opt = loss.build_d_optimizer()
    assert isinstance(opt, torch.optim.Adam)
    group = opt.param_groups[0]
    assert group["lr"] == 1e-3 and tuple(group["betas"]) == (0.5, 0.9) and group["weight_decay"] == 1e-4
    assert {id(p) for p in group["params"]} == {id(p) for p in sep}
    assert loss.n_critic == 5
    d = HolisticKD(num_classes=3)
    assert (d.gp_weight, d.d_lr, d.d_betas, d.d_weight_decay, d.n_critic) == (10.0, 4e-4, (0.9, 0.99), 0.0, 1)


def test_gradient_penalty_equals_independent_autograd_with_fixed_alpha():
    torch.manual_seed(3)
    loss = _lively(_small(gp_weight=10.0))
    s, t = torch.randn(3, 4, 16, 16), torch.randn(3, 4, 16, 16) * 2
    alpha = torch.tensor([0.1, 0.5, 0.9])
    gp = loss.gradient_penalty(s, t, alpha=alpha)
    want = _independent_gp(loss.discriminator, s, t, alpha)
    assert gp.item() == pytest.approx(want.item(), rel=1e-5)
    assert 1e-4 < want.item() < 0.5  # gradient norms near 1: the penalty depends on them
    # the full critic loss: mean D(s) - mean D(t) + 10 GP
    d_loss = loss.discriminator_loss(s, t, alpha=alpha)
    with torch.no_grad():
        wd = loss.discriminator(s).mean() - loss.discriminator(t).mean()
    assert d_loss.item() == pytest.approx(wd.item() + 10.0 * want.item(), rel=1e-5)
    assert loss.last_stats["gp"] == pytest.approx(want.item(), rel=1e-5)
    # scalar alpha, and a seeded generator gives reproducible draws
    gp_half = loss.gradient_penalty(s, t, alpha=0.5)
    assert gp_half.item() == pytest.approx(_independent_gp(loss.discriminator, s, t, torch.full((3,), 0.5)).item(),
                                           rel=1e-5)
    g1 = loss.gradient_penalty(s, t, generator=torch.Generator().manual_seed(7))
    g2 = loss.gradient_penalty(s, t, generator=torch.Generator().manual_seed(7))
    drawn = torch.rand(3, 1, 1, 1, generator=torch.Generator().manual_seed(7)).flatten()
    assert g1.item() == g2.item()
    assert g1.item() == pytest.approx(_independent_gp(loss.discriminator, s, t, drawn).item(), rel=1e-5)
    with pytest.raises(ValueError, match="alpha"):
        loss.gradient_penalty(s, t, alpha=torch.tensor([0.1, 0.2]))


def test_gradient_penalty_is_fp32_under_autocast():
    torch.manual_seed(4)
    loss = _lively(_small())
    s, t = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    alpha = torch.tensor([0.3, 0.6])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        gp = loss.gradient_penalty(s.bfloat16(), t.bfloat16(), alpha=alpha)
        d_loss = loss.discriminator_loss(s.bfloat16(), t.bfloat16(), alpha=alpha)
        bf16_gp = _independent_gp(loss.discriminator, s.bfloat16().float(), t.bfloat16().float(), alpha)
    assert gp.dtype == torch.float32
    # fp32 arithmetic on the bf16-rounded inputs, computed outside autocast
    ref = _independent_gp(loss.discriminator, s.bfloat16().float(), t.bfloat16().float(), alpha)
    assert gp.item() == pytest.approx(ref.item(), rel=1e-5)
    assert bf16_gp.item() != pytest.approx(ref.item(), rel=1e-5)  # autocast would have made a difference
    assert torch.isfinite(d_loss)


def test_wgan_gp_training_step_decreases_critic_loss():
    torch.manual_seed(5)
    loss = _small(c=3, hw=16, d_lr=2e-3)
    loss.train()
    opt = loss.build_d_optimizer()
    # separable: teacher = confident one-hot score maps, student = small noise
    labels = torch.randint(0, 3, (4, 16, 16))
    teacher = F.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 6 - 3
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        student = torch.randn(4, 3, 16, 16, generator=gen) * 0.1
        for _ in range(loss.n_critic):
            d_loss = loss.discriminator_loss(student.detach(), teacher, generator=gen)
            opt.zero_grad()
            d_loss.backward()
            opt.step()
        losses.append(d_loss.item())
    first, last = losses[0], sum(losses[-5:]) / 5
    assert last < first - 1.0, losses
    assert loss.last_stats["wasserstein"] < 0  # the critic now scores the teacher higher


def test_student_step_does_not_move_critic_and_d_step_does():
    torch.manual_seed(6)
    loss = _small()
    student_net = nn.Conv2d(4, 4, 1)
    s_opt = torch.optim.SGD(student_net.parameters(), lr=0.1)  # excludes separate_parameters()
    d_opt = loss.build_d_optimizer()
    x, t = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    before = [p.detach().clone() for p in loss.separate_parameters()]
    w_before = student_net.weight.detach().clone()
    s_opt.zero_grad()
    loss(student_net(x), t).backward()
    s_opt.step()
    assert not torch.equal(student_net.weight, w_before)
    assert all(torch.equal(a, b) for a, b in zip(before, loss.separate_parameters()))
    d_loss = loss.discriminator_loss(student_net(x).detach(), t)
    d_opt.zero_grad()
    d_loss.backward()
    d_opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, loss.separate_parameters()))


def test_non_finite_critic_loss_raises():
    loss = _small()
    s, t = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    s[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError) as exc:
        loss.discriminator_loss(s, t, alpha=0.5)
    msg = str(exc.value)
    for word in ("HolisticKD", "wasserstein", "gradient penalty", "d_lr", "nan"):
        assert word in msg
    # inf from an exploded critic weight
    loss2 = _small(preprocess="none")
    with torch.no_grad():
        loss2.discriminator.last.weight.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="HolisticKD"):
        loss2.discriminator_loss(torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16), alpha=0.5)


def test_image_conditioning_and_resolution_alignment():
    torch.manual_seed(7)
    loss = _lively(_small(use_image=True))
    assert loss.discriminator.features[0].in_channels == 4 + 3
    s, t = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 16, 16)
    image = torch.randn(2, 3, 64, 64)
    with pytest.raises(ValueError, match="image"):
        loss(s, t)
    g = loss(s, t, image=image, target=torch.zeros(2, 64, 64))  # extra keys are ignored
    s_up = F.interpolate(s, size=(16, 16), mode="bilinear", align_corners=False)
    img = F.interpolate(image, size=(16, 16), mode="bilinear", align_corners=False)
    with torch.no_grad():
        want = -loss.discriminator(torch.cat([s_up, img], 1)).mean()
    assert g.item() == pytest.approx(want.item(), rel=1e-5)
    alpha = torch.tensor([0.25, 0.75])
    gp = loss.gradient_penalty(s_up, t, image=img, alpha=alpha)
    assert gp.item() == pytest.approx(_independent_gp(loss.discriminator, s_up, t, alpha, image=img).item(),
                                      rel=1e-5)
    d_loss = loss.discriminator_loss(s, t, image=image, alpha=alpha)
    with torch.no_grad():
        wd = loss.discriminator(torch.cat([s_up, img], 1)).mean() - loss.discriminator(torch.cat([t, img], 1)).mean()
    assert d_loss.item() == pytest.approx(wd.item() + 10 * gp.item(), rel=1e-5)


def test_softmax_scores_option():
    torch.manual_seed(8)
    loss = _small(score="softmax")
    loss.eval()
    s, t = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        want = -loss.discriminator(s.softmax(1)).mean()
    assert loss(s, t).item() == pytest.approx(want.item(), rel=1e-5)


def test_errors_and_registry():
    with pytest.raises(ValueError, match="num_classes"):
        HolisticKD()
    loss = LOSSES.build(dict(type="HolisticKD", n_critic=2), s_shapes=[torch.Size([2, 6, 16, 16])],
                        t_shapes=[torch.Size([2, 6, 16, 16])], num_classes=6, num_data=100)
    assert isinstance(loss, HolisticKD) and loss.n_critic == 2 and loss.score_channels == 6
    with pytest.raises(ValueError, match="6"):
        loss(torch.randn(2, 5, 16, 16), torch.randn(2, 5, 16, 16))
    with pytest.raises(ValueError, match="taps"):
        loss([torch.randn(2, 6, 16, 16)] * 2, [torch.randn(2, 6, 16, 16)] * 2)
    with pytest.raises(ValueError, match="depth"):
        loss(torch.randn(2, 6, 4, 4), torch.randn(2, 6, 4, 4))
    with pytest.raises(ValueError, match="score"):
        HolisticKD(num_classes=3, score="probs")
    with pytest.raises(ValueError, match="preprocess"):
        HolisticKD(num_classes=3, preprocess="layernorm")
    import densekd.losses.adversarial as adv

    assert adv.__all__ == ["HolisticKD"] and "HolisticKD" in LOSSES
