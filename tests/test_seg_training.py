"""Structured distillation for segmentation through the real trainer."""
import pytest
import torch

from densekd.config import load_config
from densekd.engine.trainer import NonFiniteLossError, Trainer
from tests.conftest import write_config

SEG = """
_base_ = ['{root}/configs/_base_/default_runtime.py']
task = dict(type='segmentation', num_classes=19)
model = dict(type='seg_model', arch='FPN', encoder='resnet18', num_classes=19, aux_head=True)
teacher = dict(model=dict(type='seg_model', arch='FPN', encoder='resnet18', num_classes=19))
distill = [dict(type='PixelWiseKD', T=1, weight=10),
           dict(type='PairWiseKD', student='decoder', teacher='decoder', weight=1),
           dict(type='HolisticKD', weight=0.1, d_lr=4e-4)]
data = dict(train=dict(type='SyntheticCityscapes', split='train', num_samples=8, crop_size=(64, 64)),
            val=dict(type='SyntheticCityscapes', split='val', num_samples=2),
            batch_size=2, num_workers=0)
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4)
lr_schedule = dict(type='poly', power=0.9, by_epoch=False)
train = dict(iters=4, eval_interval=4, log_interval=1)
"""


@pytest.fixture
def seg_config(tmp_path):
    from tests.conftest import ROOT

    return write_config(tmp_path / "seg.py", SEG.format(root=ROOT))


def run(cfg, wd, **kw):
    return Trainer(load_config(cfg), wd, device="cpu", synthetic=True, **kw)


def test_structured_kd_resumes_exactly_with_critic_state(seg_config, tmp_path):
    full = run(seg_config, tmp_path / "full").train()
    assert set(full["final"]) >= {"mIoU", "pixel_acc", "mean_acc"}
    run(seg_config, tmp_path / "part", max_iters=2).train()
    resumed = run(seg_config, tmp_path / "part", resume=True).train()
    assert resumed["final"] == full["final"]
    a = torch.load(tmp_path / "full/checkpoints/last.pth", weights_only=False)
    b = torch.load(tmp_path / "part/checkpoints/last.pth", weights_only=False)
    for part in ("model", "distill"):
        pa, pb = (a[part], b[part]) if part == "model" else (a["strategy"][part], b["strategy"][part])
        for k, v in pa.items():
            assert torch.equal(v, pb[k]), (part, k)
    # the critic has its own Adam, stepped every iteration, decayed by the student's poly schedule
    d_opt = a["strategy"]["d_optimizers"]["HolisticKD"][0]
    assert d_opt["state"] and d_opt["param_groups"][0]["lr"] == pytest.approx(4e-4 * (1 - 3 / 4) ** 0.9)
    log = (tmp_path / "full/metrics.jsonl").read_text()
    assert all(f'"loss/{t}"' in log for t in ("PixelWiseKD", "PairWiseKD", "HolisticKD", "seg", "aux"))


def test_critic_gets_its_own_gradients_and_student_optimizer_excludes_it(seg_config, tmp_path):
    trainer = run(seg_config, tmp_path / "w")
    critic = trainer.strategy.distiller.losses["HolisticKD"].discriminator
    in_student_opt = {id(p) for g in trainer.strategy.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in in_student_opt for p in critic.parameters())
    before = [p.detach().clone() for p in critic.parameters()]
    trainer.max_iters = 1
    trainer.train()
    assert any(not torch.equal(a, p) for a, p in zip(before, critic.parameters()))


def test_nonfinite_critic_loss_is_reported_or_skipped(seg_config, tmp_path, monkeypatch):
    from densekd.losses.adversarial import HolisticKD

    def broken(self, *a, **k):
        raise FloatingPointError("HolisticKD: wasserstein=nan, gp=nan")

    monkeypatch.setattr(HolisticKD, "discriminator_loss", broken)
    with pytest.raises(NonFiniteLossError, match="HolisticKD at iteration 1.*wasserstein=nan"):
        run(seg_config, tmp_path / "a", max_iters=1).train()
    cfg = load_config(seg_config, ["train.skip_nonfinite=True"])
    Trainer(cfg, tmp_path / "b", device="cpu", synthetic=True, max_iters=1).train()
    assert "Skipping this critic step" in (tmp_path / "b" / "train.log").read_text()


def test_test_tool_prints_per_class_iou_table(seg_config, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    run(seg_config, tmp_path / "w", max_iters=1).train()
    out = subprocess.run([sys.executable, str(ROOT / "tools/test.py"), str(seg_config),
                          str(tmp_path / "w/checkpoints/last.pth"), "--synthetic", "--device", "cpu"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "| class | IoU (%) |" in out.stdout and "| road |" in out.stdout and '"mIoU"' in out.stdout
