"""CUDA fast paths (skipped without a GPU; tools/gpu_check.sh runs them): AMP with float32 terms, channels_last,
no device synchronisation per step, torch.compile of the student."""
import pytest
import torch

from densekd.config import load_config
from densekd.engine.trainer import Trainer
from tests.readbacks import KD_AT, TEACHER, counting_readbacks

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CRD = TEACHER + ("distill = [dict(type='KD', T=4, weight=0.9), dict(type='CRD', student='feats[-1]', "
                 "teacher='feats[-1]', weight=0.8, nce_k=16)]\n"
                 "data['train'] = dict(_delete_=True, type='CRDSampleDataset', nce_k=16, "
                 "dataset=dict(type='SyntheticCIFAR100', split='train', num_samples=48))\n")


def cuda_trainer(tiny_config, tmp_path, extra, options=()):
    cfg = load_config(tiny_config(extra=extra), list(options))
    return Trainer(cfg, tmp_path / "w", device="cuda", synthetic=True)


@pytest.mark.parametrize("amp", ["bf16", "fp16", None])
@pytest.mark.parametrize("extra", [KD_AT, CRD], ids=["kd_at", "crd"])
def test_cuda_steps_do_not_synchronise(tiny_config, tmp_path, amp, extra):
    """check_finite 'auto' is 'interval' on CUDA: after warm-up no tensor value is read back inside a step
    (fp16's GradScaler reads its overflow flag each step by PyTorch's design: allowed one per step)."""
    trainer = cuda_trainer(tiny_config, tmp_path, extra, [f"train.amp={amp!r}", "train.channels_last=True"])
    assert trainer.check_finite == "interval"
    batches = trainer.batches(0)
    for _ in range(4):
        trainer.train_iteration(next(batches))
    batch = next(batches)
    torch.cuda.synchronize()
    with counting_readbacks() as counts:
        for _ in range(3):
            losses = trainer.train_iteration(batch)
    assert sum(counts.values()) <= (3 if amp == "fp16" else 0), counts
    trainer.guard.flush()
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_cuda_compiled_student_matches_eager(tiny_config, tmp_path):
    runs = {}
    for name, opts in (("eager", []), ("compiled", ["train.compile=True"])):
        torch._dynamo.reset()
        trainer = cuda_trainer(tiny_config, tmp_path / name, KD_AT, opts + ["deterministic=True"])
        batches = trainer.batches(0)
        runs[name] = [trainer.train_iteration(next(batches)) for _ in range(3)]
    for a, b in zip(runs["eager"], runs["compiled"]):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", ["NST", "KDSVD", "OFD", "IFM", "SP"])
def test_cuda_written_out_backwards_match_the_cpu(name, device="cuda"):
    """The losses with written-out backwards (NST's Gram sides, KDSVD's top eigenpairs, OFD's partial L2, IFM/SP's
    symmetric Gram) give on the GPU the CPU's values and student gradients (float64 both sides)."""
    import copy

    from densekd.registry import LOSSES

    g = torch.Generator().manual_seed(0)
    shapes = [(4, 8, 6, 6), (4, 16, 3, 3)]  # channel-side and spatial-side Gram matrices for NST
    s = [torch.randn(*sh, generator=g, dtype=torch.float64) for sh in shapes]
    t = [torch.randn(*sh, generator=g, dtype=torch.float64) for sh in shapes]
    kw = {}
    if name == "OFD":
        kw = dict(s_shapes=[x.shape for x in s], t_shapes=[x.shape for x in t],
                  teacher_bn=[(torch.zeros(sh[1]), torch.ones(sh[1])) for sh in shapes])
    cpu = LOSSES.build(dict(type=name, **kw)).double()
    results = []
    for dev, module in (("cpu", cpu), (device, copy.deepcopy(cpu).to(device))):
        xs = [x.to(dev).requires_grad_(True) for x in s]
        value = module(xs, [x.to(dev) for x in t])
        value.backward()
        results.append((value.item(), [x.grad.cpu() for x in xs]))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-9)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(b, a, rtol=1e-7, atol=1e-10)


def test_cuda_crd_nce_gradient_matches_the_cpu(device="cuda"):
    from densekd.losses import CRD

    loss = CRD(s_shapes=[torch.Size([4, 8])], t_shapes=[torch.Size([4, 8])], num_data=40, feat_dim=4, nce_k=3)
    z = torch.tensor(25.0, dtype=torch.float64)
    scores = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    out = []
    for dev in ("cpu", device):
        x = scores.to(dev).requires_grad_(True)
        v = loss._nce(x, z.to(dev))
        v.backward()
        out.append((v.item(), x.grad.cpu()))
    assert out[1][0] == pytest.approx(out[0][0], rel=1e-12)
    torch.testing.assert_close(out[1][1], out[0][1], rtol=1e-12, atol=1e-14)
