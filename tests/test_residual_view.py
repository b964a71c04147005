"""The residual view of KD: CIFAR ResNets without skip connections (skip=False) and their configs."""
import pytest
import torch

from densekd.config import load_config
from densekd.models.cifar.resnet import BasicBlock, resnet20, resnet56
from tests.conftest import ROOT


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("factory", [resnet20, resnet56])
def test_plain_resnet_has_the_same_layers_minus_the_projection_shortcuts(factory):
    res, plain = factory(), factory(skip=False)
    projections = sum(p.numel() for n, p in res.named_parameters() if ".downsample." in n)
    # two projections (stage 2 and 3 entries): 16->32 and 32->64 1x1 convs with BN
    assert projections == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert count(plain) == count(res) - projections
    assert not any(".downsample." in n for n, _ in plain.named_parameters())
    shared = {n: p.shape for n, p in plain.named_parameters()}
    assert all(res.state_dict()[n].shape == s for n, s in shared.items())  # same names and shapes


def test_no_identity_path_is_left():
    """With the residual branch silenced (conv2 and bn2 zero), a plain block outputs 0 for any input; the
    residual block passes its input through."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    for skip, expect_identity in ((True, True), (False, False)):
        block = BasicBlock(16, 16, skip=skip).eval()
        with torch.no_grad():
            block.conv2.weight.zero_()
            block.bn2.bias.zero_()
        out = block(x)
        if expect_identity:
            assert torch.allclose(out, torch.relu(x))
        else:
            assert torch.equal(out, torch.zeros_like(out))
    # the whole plain network: every block silenced -> the logits no longer depend on the input
    net = resnet20(skip=False).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, BasicBlock):
                m.conv2.weight.zero_()
                m.bn2.bias.zero_()
        a, b = net(torch.randn(2, 3, 32, 32)), net(torch.randn(2, 3, 32, 32))
    assert torch.allclose(a, b)
    with pytest.raises(ValueError, match="no shortcut"):
        BasicBlock(16, 32, stride=2, downsample=torch.nn.Identity(), skip=False)


def test_residual_view_configs():
    for name, depth, teacher in (("plain20", 20, None), ("plain20_kd", 20, "resnet56"), ("plain56", 56, None),
                                 ("plain56_kd", 56, "resnet110")):
        cfg = load_config(ROOT / f"configs/cifar100/residual_view/{name}.py")
        assert cfg["model"]["type"] == f"resnet{depth}" and cfg["model"]["skip"] is False
        if teacher:
            assert cfg["teacher"]["model"]["type"] == teacher and "skip" not in cfg["teacher"]["model"]
            assert [d["type"] for d in cfg["distill"]] == ["KD"] and cfg["task_weight"] == 0.1
        else:
            assert "teacher" not in cfg


def test_plain_student_learns_from_a_residual_teacher_through_the_trainer(tmp_path):
    from densekd.engine.trainer import Trainer

    from densekd.engine.builder import use_synthetic

    cfg = load_config(ROOT / "configs/cifar100/residual_view/plain20_kd.py",
                      ["data.batch_size=4", "data.val_batch_size=4", "data.num_workers=0"])
    use_synthetic(cfg)
    cfg["data"]["train"]["num_samples"], cfg["data"]["val"]["num_samples"] = 8, 4
    summary = Trainer(cfg, tmp_path / "w", device="cpu", synthetic=True, max_iters=2).train()
    assert summary["iters"] == 2
    ckpt = torch.load(tmp_path / "w/checkpoints/last.pth", weights_only=False)
    assert not any("downsample" in k for k in ckpt["model"])
