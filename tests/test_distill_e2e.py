"""Every benchmark method, from its own config base, on real CIFAR zoo models."""
import copy

import pytest
import torch

from densekd.config import load_config
from densekd.data.crd import CRDSampleDataset
from densekd.data.multiview import StrongAugmentView
from densekd.data.sampling import forked_rng
from densekd.distill.distiller import Distiller
from densekd.engine.trainer import Trainer
from densekd.registry import DATASETS, MODELS, TASKS
from tests.conftest import ROOT

METHODS = sorted(p.stem for p in (ROOT / "configs/_base_/cifar100/methods").glob("*.py"))
SMALL_K = 32


def method_terms(name):
    terms = copy.deepcopy(load_config(ROOT / f"configs/_base_/cifar100/methods/{name}.py")["distill"])
    for t in terms:
        if t["type"] == "CRD":
            t["nce_k"] = SMALL_K
    return terms


def batch_for(terms, n=6):
    base = DATASETS.build(dict(type="SyntheticCIFAR100", split="train", num_samples=64))
    ds = CRDSampleDataset(base, nce_k=SMALL_K) if any(t["type"] == "CRD" for t in terms) else base
    if any(t["type"] in ("MLKD", "ViewCE") for t in terms):  # the strong view these terms read
        ds = StrongAugmentView(ds)
    with forked_rng(0):
        items = [ds[i] for i in range(n)]
    return torch.utils.data.default_collate(items), len(ds)


def test_every_method_has_a_base_and_a_config_per_pair():
    assert {"kd", "fitnet", "at", "sp", "cc", "vid", "rkd", "pkt", "ab", "ft", "fsp", "nst", "crd", "crd_kd", "ofd",
            "irg", "dkd", "dist", "kd_ls", "dkd_ls", "kdsvd", "reviewkd", "mlkd", "mlkd_ls"} <= set(METHODS)
    pairs = sorted(p.name for p in (ROOT / "configs/cifar100/distill").iterdir())
    assert len(pairs) == 7
    for pair in pairs:
        assert sorted(p.stem for p in (ROOT / "configs/cifar100/distill" / pair).glob("*.py")) == METHODS


@pytest.mark.parametrize("method", METHODS)
def test_gradients_reach_student_and_loss_parts_never_teacher(method):
    torch.manual_seed(0)
    terms = method_terms(method)
    batch, num_data = batch_for(terms)
    student, teacher = MODELS.build(dict(type="resnet8")), MODELS.build(dict(type="resnet14"))
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    d = Distiller(student, TASKS.build(dict(type="classification")), [teacher], terms, probe=batch["image"][:2],
                  num_classes=100, num_data=num_data)
    d.train()
    student_ids = {id(p) for p in student.parameters()}
    if d.init_terms():  # the initialisation stage trains exactly init_parameters()
        init_params = d.init_parameters()
        d.zero_grad(set_to_none=True)
        bn_before = {k: v.clone() for k, v in student.state_dict().items() if "running" in k}
        sum(d.init_forward(batch).values()).backward()
        if not d.init_trains_student():  # FT: the student's BN statistics stay put during the init stage
            assert all(torch.equal(student.state_dict()[k], v) for k, v in bn_before.items())
        assert student.training
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in init_params), method
        if not any(id(p) in student_ids for p in init_params):  # FT: paraphraser only
            assert all(p.grad is None or p.grad.abs().sum() == 0 for p in student.parameters()), method
    d.zero_grad(set_to_none=True)
    _, main = d(batch)
    assert all(torch.isfinite(v) for v in main.values()), main
    sum(main.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters()), method
    separate = {id(q) for q in d.separate_parameters()}
    own = [p for t in d.terms if not t.init_only for m in d.term_modules(t) for p in m.parameters()
           if p.requires_grad and id(p) not in separate]
    if own:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in own), f"{method}: own parts get no grad"
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), f"{method} changed teacher {k}"
    # logged separately: one entry per term (init-only terms act only in their stage)
    assert set(main) == {"cls"} | {t.name for t in d.terms if not t.init_only}


TRAINER_RUNS = [("resnet56-resnet20", m) for m in ("kd", "crd_kd", "ft", "ab", "vid", "dist", "kd_ls", "dkd_ls",
                                                     "kdsvd", "reviewkd", "mlkd", "mlkd_ls")]
TRAINER_RUNS += [("resnet32x4-resnet8x4", "reviewkd"), ("resnet32x4-resnet8x4", "mlkd"), ("vgg13-vgg8", "reviewkd")]


@pytest.mark.parametrize("pair,method", TRAINER_RUNS)
def test_trainer_runs_method_and_keeps_teacher(pair, method, tmp_path):
    cfg = load_config(ROOT / f"configs/cifar100/distill/{pair}/{method}.py",
                      ["data.batch_size=8", "data.val_batch_size=16", "data.num_workers=0", "strategy.init_epochs=1",
                       "train.log_interval=1"])
    from densekd.engine.builder import use_synthetic
    use_synthetic(cfg)
    for t in cfg["distill"]:
        if t["type"] == "CRD":
            t["nce_k"] = SMALL_K
    if cfg["data"]["train"]["type"] == "CRDSampleDataset":
        cfg["data"]["train"]["nce_k"] = SMALL_K
    train_set = cfg["data"]["train"]
    (train_set["dataset"] if "dataset" in train_set else train_set)["num_samples"] = 32  # inside a wrapper
    cfg["data"]["val"]["num_samples"] = 16
    trainer = Trainer(cfg, tmp_path / method, device="cpu", synthetic=True, max_iters=6)
    teacher = trainer.strategy.distiller.teachers[0]
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in trainer.strategy.student.state_dict().items()}
    loss_parts = {k: v.clone() for k, v in trainer.strategy.distiller.distill_state_dict().items()
                  if v.is_floating_point()}
    summary = trainer.train()
    assert summary["init_iters"] == (4 if method in ("ft", "ab") else 0)
    assert summary["iters"] == (2 if method in ("ft", "ab") else 6)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, student_before[k]) for k, v in trainer.strategy.student.state_dict().items()
               if v.is_floating_point())
    if method == "reviewkd":  # the ABF modules train with the student
        after = trainer.strategy.distiller.distill_state_dict()
        assert any(not torch.equal(after[k], v) for k, v in loss_parts.items() if "fusion" in k)
    log = (tmp_path / method / "metrics.jsonl").read_text()
    for term in summary["distill"]:
        if not any(t.init_only and t.name == term for t in trainer.strategy.distiller.terms):
            assert f'"loss/{term}"' in log
