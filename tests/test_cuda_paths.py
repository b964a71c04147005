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
