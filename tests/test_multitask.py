"""One student with a segmentation and a depth head, distilled from a segmentation and a depth teacher."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from densekd.config import load_config
from densekd.distill.distiller import Distiller
from densekd.distill.taps import TapError
from densekd.engine.trainer import Trainer
from densekd.registry import DATASETS, MODELS, TASKS
from tests.conftest import ROOT, write_config

TASK = dict(type="multitask", primary_metric="mIoU", weights=dict(seg=1.0, depth=0.5),
            tasks=dict(seg=dict(type="segmentation", num_classes=4, target_key="label", aux_weight=0.0),
                       depth=dict(type="depth", target_key="depth", eval_crop=None)))


def rgbd_batch(n=2, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(n, 1, h, w, generator=g) * 5 + 0.5
    depth[:, :, :4] = 0
    label = torch.randint(0, 4, (n, h, w), generator=g)
    label[:, -2:] = 255
    return {"image": torch.randn(n, 3, h, w, generator=g), "label": label, "depth": depth}


def test_multitask_loss_is_the_weighted_sum_of_each_tasks_loss():
    torch.manual_seed(0)
    task = TASKS.build(TASK)
    b = rgbd_batch()
    out = {"seg": torch.randn(2, 4, 32, 32), "depth": torch.rand(2, 1, 32, 32) * 4 + 0.5}
    losses = task.loss(out, b)
    assert set(losses) == {"seg/seg", "depth/depth"}
    assert losses["seg/seg"].item() == pytest.approx(F.cross_entropy(out["seg"], b["label"], ignore_index=255).item())
    alone = TASKS.build(TASK["tasks"]["depth"]).loss(out["depth"], b)["depth"]
    assert losses["depth/depth"].item() == pytest.approx(0.5 * alone.item())
    with pytest.raises(ValueError, match="needs a model returning a dict with"):
        task.loss(out["seg"], b)
    with pytest.raises(ValueError, match="primary_metric 'top1' is no task's metric"):
        TASKS.build(dict(TASK, primary_metric="top1"))
    assert task.higher_is_better and not TASKS.build(dict(TASK, primary_metric="abs_rel")).higher_is_better


def test_multitask_model_runs_once_per_input_and_metrics_are_each_tasks():
    torch.manual_seed(0)
    model = MODELS.build(dict(type="multitask_model", encoder="resnet18", num_classes=4)).eval()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    task = TASKS.build(TASK)
    b = rgbd_batch()
    pred = task.predict(model, b["image"])
    assert len(calls) == 1 and pred["seg"].shape == (2, 4, 32, 32) and pred["depth"].shape == (2, 1, 32, 32)
    ev = task.evaluator()
    ev.update(pred, b)
    metrics = ev.compute()
    seg_ev, depth_ev = TASKS.build(TASK["tasks"]["seg"]).evaluator(), TASKS.build(TASK["tasks"]["depth"]).evaluator()
    seg_ev.update(pred["seg"], b)
    depth_ev.update(pred["depth"], b)
    assert metrics == {**seg_ev.compute(), **depth_ev.compute()}
    report = task.metric_report(metrics)
    assert "| class | IoU (%) |" in report and "abs_rel" in report


def test_two_teachers_distil_into_the_two_heads_through_output_taps():
    torch.manual_seed(0)
    student = MODELS.build(dict(type="multitask_model", encoder="resnet18", num_classes=4))
    seg_t = MODELS.build(dict(type="seg_model", arch="FPN", encoder="resnet18", num_classes=4))
    depth_t = MODELS.build(dict(type="depth_model", arch="FPN", encoder="resnet18"))
    terms = [dict(type="PixelWiseKD", student="output.seg", teacher="output", teachers=0, weight=1.0),
             dict(type="DepthKD", student="output.depth", teacher="output", teachers=1, weight=1.0),
             dict(type="AT", student="encoder.layer3", teacher="encoder.layer3", teachers=0, weight=10.0)]
    b = rgbd_batch()
    d = Distiller(student, TASKS.build(TASK), [seg_t, depth_t], terms, probe=b).eval()  # FPN has dropout
    _, losses = d(b)
    assert set(losses) == {"seg/seg", "depth/depth", "PixelWiseKD", "DepthKD", "AT"}
    with torch.no_grad():
        s_out, t_depth = student(b["image"]), depth_t(b["image"])
    want = LOSS_DEPTHKD(s_out["depth"], t_depth, depth=b["depth"])
    assert losses["DepthKD"].item() == pytest.approx(want.item(), rel=1e-5)
    losses["DepthKD"].backward()
    assert student.depth_head[0].weight.grad.abs().sum() > 0
    assert student.seg_head[0].weight.grad is None  # the depth term teaches the depth branch only
    assert all(p.grad is None for p in depth_t.parameters())
    with pytest.raises(TapError, match=r"Tap 'output.normals'.*returned \['depth', 'seg'\]"):
        Distiller(student, TASKS.build(TASK), [seg_t, depth_t],
                  [dict(type="DepthKD", student="output.normals", teacher="output", teachers=1)], probe=b)


def LOSS_DEPTHKD(s, t, **extra):
    from densekd.losses import DepthKD

    return DepthKD()(s, t, **extra)


@DATASETS.register("_RandomRGBD")
class RandomRGBD(torch.utils.data.Dataset):
    """Test-only RGB-D frames: depth a ramp, labels its bands, the image their colours (learnable)."""

    num_classes = 4
    class_names = ["near", "mid", "far", "wall"]

    def __init__(self, num_samples=8, split="train"):
        self.n = num_samples

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        depth = np.tile(np.linspace(0.5, 6.0, 32)[:, None], (1, 32)) * rng.uniform(0.8, 1.2)
        label = np.clip((depth / 1.5).astype(np.int64), 0, 3)
        image = np.stack([label / 3.0, depth / 6.0, np.full_like(depth, 0.5)]) + rng.normal(0, 0.05, (3, 32, 32))
        return {"image": torch.tensor(image, dtype=torch.float32), "label": torch.tensor(label),
                "depth": torch.tensor(depth, dtype=torch.float32)[None], "index": i}


MT_CONFIG = """
_base_ = ['{root}/configs/_base_/default_runtime.py']
task = {task!r}
model = dict(type='multitask_model', arch='FPN', encoder='resnet18', num_classes=4, encoder_depth=3)
teachers = [dict(model=dict(type='seg_model', arch='FPN', encoder='resnet18', num_classes=4, encoder_depth=3)),
            dict(model=dict(type='depth_model', arch='FPN', encoder='resnet18', encoder_depth=3))]
distill = [dict(type='PixelWiseKD', student='output.seg', teacher='output', teachers=0, weight=1.0),
           dict(type='DepthKD', student='output.depth', teacher='output', teachers=1, weight=1.0)]
data = dict(train=dict(type='_RandomRGBD', num_samples=8), val=dict(type='_RandomRGBD', num_samples=4),
            batch_size=4, num_workers=0)
optimizer = dict(type='AdamW', lr=1e-3, weight_decay=0.0)
train = dict(iters=4, eval_interval=2, log_interval=1)
"""


def test_multitask_student_trains_with_per_task_metrics_and_resumes_exactly(tmp_path):
    cfg_path = write_config(tmp_path / "mt.py", MT_CONFIG.format(root=ROOT, task=TASK))
    full = Trainer(load_config(cfg_path), tmp_path / "full", device="cpu", synthetic=True).train()
    assert full["primary_metric"] == "mIoU" and {"mIoU", "abs_rel", "delta1", "IoU/near"} <= set(full["final"])
    lines = [json.loads(x) for x in (tmp_path / "full/metrics.jsonl").read_text().splitlines()]
    assert {"loss/seg/seg", "loss/depth/depth", "loss/PixelWiseKD", "loss/DepthKD"} <= set(lines[0])
    Trainer(load_config(cfg_path), tmp_path / "part", device="cpu", synthetic=True, max_iters=2).train()
    resumed = Trainer(load_config(cfg_path), tmp_path / "part", device="cpu", synthetic=True, resume=True).train()
    assert resumed["final"] == full["final"]
    # the primary metric is configurable: abs_rel (lower is better) picks best.pth instead
    cfg = load_config(cfg_path, ["task.primary_metric='abs_rel'"])
    s = Trainer(cfg, tmp_path / "depth_primary", device="cpu", synthetic=True).train()
    assert s["primary_metric"] == "abs_rel" and s["best"]["abs_rel"] <= s["final"]["abs_rel"]


def test_label_free_crd_transfer_from_rgb_to_depth_trains_without_targets(tmp_path):
    text = """
_base_ = ['{root}/configs/_base_/default_runtime.py']
task = dict(type='representation')
student_input = 'depth'
model = dict(type='tv_resnet18', num_classes=8, in_channels=1)
teacher = dict(model=dict(type='tv_resnet18', num_classes=8), input='image')
distill = [dict(type='CRD', student='feats[-1]', teacher='feats[-1]', feat_dim=16, nce_k=4, weight=1.0)]
data = dict(train=dict(type='CRDSampleDataset', nce_k=4, mode='exact', sampling='any',
                       dataset=dict(type='_Unlabelled', num_samples=8)),
            val=None, batch_size=4, num_workers=0)
optimizer = dict(type='SGD', lr=0.01, momentum=0.9)
train = dict(iters=3, log_interval=1)
""".format(root=ROOT)
    s = Trainer(load_config(write_config(tmp_path / "xm.py", text)), tmp_path / "w", device="cpu", synthetic=True).train()
    assert s["completed"] and s["final"] == {} and s["distill"] == ["CRD"]
    assert (tmp_path / "w/checkpoints/last.pth").is_file() and not (tmp_path / "w/checkpoints/best.pth").exists()
    lines = [json.loads(x) for x in (tmp_path / "w/metrics.jsonl").read_text().splitlines()]
    assert set(lines[0]) >= {"loss", "loss/CRD"} and not any(k.startswith("loss/cls") for k in lines[0])


@DATASETS.register("_Unlabelled")
class Unlabelled(RandomRGBD):
    """Test-only RGB-D frames without labels."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        return {"image": item["image"], "depth": item["depth"], "index": i}
