import pytest
import torch
import torch.nn.functional as F

from densekd.config import load_config
from densekd.distill.distiller import Distiller
from densekd.distill.taps import FeatureTaps, TapError, expand_taps
from densekd.engine.trainer import Trainer
from densekd.registry import MODELS, TASKS

CLS = TASKS.build(dict(type="classification"))


def models(student="resnet8", teacher="resnet8x4"):
    torch.manual_seed(0)
    return MODELS.build(dict(type=student)), MODELS.build(dict(type=teacher))


def batch(n=4):
    return {"image": torch.randn(n, 3, 32, 32), "target": torch.randint(0, 100, (n,))}


def test_missing_tap_names_closest_valid_paths():
    s, t = models()
    with pytest.raises(TapError) as err:
        Distiller(s, CLS, [t], [dict(type="AT", student=["layer1", "layer4"], teacher=["layer1", "layer2"])],
                  probe=batch()["image"])
    msg = str(err.value)
    assert "'layer4'" in msg and "layer1" in msg and "list_taps.py" in msg
    with pytest.raises(TapError, match=r"index 5 out of range for layer2 \(1 children\)"):
        FeatureTaps(s, ["layer2.5.conv1"])
    with pytest.raises(TapError, match="has no module 'layer2.0.conv9'"):
        FeatureTaps(s, ["layer2.0.conv9"])
    with pytest.raises(TapError, match="out of range"):
        FeatureTaps(s, ["layer2.-3"])
    with pytest.raises(TapError, match="defines: feats, preacts"):
        expand_taps(s, "stages[1:]")


def test_group_expansion_and_input_taps_record_the_right_tensors():
    s, _ = models()
    assert expand_taps(s, "feats[1:-1]") == ["layer1", "layer2", "layer3"]
    assert expand_taps(s, "feats[-1]") == ["fc:input"]
    x = batch()["image"]
    with FeatureTaps(s, ["fc:input", "layer3"]) as taps:
        logits = s(x)
        pooled, l3 = taps.collect(["fc:input", "layer3"])
    assert torch.allclose(s.fc(pooled), logits) and torch.allclose(l3.mean((2, 3)), pooled, atol=1e-6)


def test_shape_mismatch_names_both_shapes_and_the_fitting_connector():
    s, t = models()
    term = dict(type="FSP", student=["layer1", "layer2"], teacher=["layer1", "layer2"])
    with pytest.raises(ValueError) as err:  # at start-up, from the probe shapes
        Distiller(s, CLS, [t], [term], probe=batch()["image"])
    msg = str(err.value)
    assert "(4, 16, 32, 32)" in msg and "(4, 64, 32, 32)" in msg and "connector='conv'" in msg
    d = Distiller(s, CLS, [t], [dict(term, connector="conv")], probe=batch()["image"])
    _, losses = d(batch())
    losses["FSP"].backward()
    assert d.connectors["FSP"][0][0].weight.grad.abs().sum() > 0
    assert "connectors.FSP.0.0.weight" in d.distill_state_dict()


def test_teacher_count_and_tap_count_errors():
    s, t = models()
    with pytest.raises(ValueError, match="needs a teacher"):
        Distiller(s, CLS, [], [dict(type="KD")], probe=batch()["image"])
    with pytest.raises(ValueError, match="3 student taps"):
        Distiller(s, CLS, [t], [dict(type="AT", student="feats[1:-1]", teacher="feats[1:3]")], probe=batch()["image"])
    with pytest.raises(ValueError, match="teacher index 1 out of range"):
        Distiller(s, CLS, [t], [dict(type="KD", teachers=[1])], probe=batch()["image"])
    with pytest.raises(ValueError, match="no initialisation stage"):
        Distiller(s, CLS, [t], [dict(type="KD", init_only=True)], probe=batch()["image"])


def test_ensemble_mean_kd_equals_kd_on_averaged_logits_and_crd_gets_a_critic_per_teacher():
    torch.manual_seed(0)
    s = MODELS.build(dict(type="resnet8"))
    t1, t2 = MODELS.build(dict(type="resnet14")), MODELS.build(dict(type="resnet20"))
    b = batch()
    d = Distiller(s, CLS, [t1, t2], [dict(type="KD", T=4, teachers="all", ensemble="mean", weight=0.9)],
                  probe=b["image"], task_weight=0.0)
    d.train()
    _, losses = d(b)
    with torch.no_grad():
        avg = (t1(b["image"]) + t2(b["image"])) / 2
    s.eval()
    # recompute with the same train-mode student output
    s.train()
    out = s(b["image"])
    ref = F.kl_div(F.log_softmax(out / 4, 1), F.softmax(avg / 4, 1), reduction="batchmean") * 16 * 0.9
    assert torch.allclose(losses["KD"], ref, rtol=1e-5)
    crd = Distiller(s, CLS, [t1, t2], [dict(type="CRD", student="feats[-1]", teacher="feats[-1]", teachers="all",
                                            nce_k=4)], probe=b["image"], num_data=10)
    assert len(crd.losses["CRD"]) == 2
    assert crd.losses["CRD"][0].memory_t.data_ptr() != crd.losses["CRD"][1].memory_t.data_ptr()


FT_EXTRA = ("teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=16))\n"
            "distill = [dict(type='FT', student='feats[-2]', teacher='feats[-2]', weight=200)]\n"
            "train = dict(epochs=1, log_interval=2)\nstrategy = dict(init_epochs=1, init_lr=0.01)\n")


@pytest.mark.parametrize("stop_at", [3, 9])  # inside the initialisation stage, inside the main stage
def test_two_stage_method_resumes_exactly_in_either_stage(tiny_config, tmp_path, stop_at):
    cfg = tiny_config(extra=FT_EXTRA)

    def run(wd, **kw):
        return Trainer(load_config(cfg), tmp_path / wd, device="cpu", synthetic=True, **kw).train()

    full = run("full")
    part = run("part", max_iters=stop_at)
    assert part["init_iters"] == min(stop_at, 6) and part["iters"] == max(stop_at - 6, 0)
    resumed = run("part", resume=True)
    assert resumed["final"] == full["final"] and resumed["init_iters"] == 6 and resumed["iters"] == 6
    a = torch.load(tmp_path / "full/checkpoints/last.pth", weights_only=False)
    b = torch.load(tmp_path / "part/checkpoints/last.pth", weights_only=False)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["strategy"]["distill"]:
        assert torch.equal(a["strategy"]["distill"][k], b["strategy"]["distill"][k]), k


def test_missing_teacher_checkpoint_names_training_command(tiny_config, tmp_path):
    cfg = load_config(tiny_config(extra="teacher = dict(model=dict(type='resnet8'), checkpoint='nope.pth', "
                                        "config='configs/cifar100/teachers/resnet56.py')\n"
                                        "distill = [dict(type='KD')]\n"))
    with pytest.raises(FileNotFoundError) as err:
        Trainer(cfg, tmp_path / "w", device="cpu", synthetic=False)
    msg = str(err.value)
    assert "nope.pth" in msg and "python tools/train.py configs/cifar100/teachers/resnet56.py" in msg
    assert "work_dirs/cifar100/teachers/resnet56/checkpoints/best.pth" in msg


def test_connectors_of_init_terms_train_in_the_init_stage():
    s, t = models("wrn_40_1", "wrn_40_2")
    d = Distiller(s, CLS, [t], [dict(type="FSP", student="feats[:-1]", teacher="feats[:-1]", init_only=True,
                                     connector="conv")], probe=batch()["image"])
    ids = {id(p) for p in d.init_parameters()}
    assert all(id(p) in ids for p in d.connectors["FSP"].parameters())
    sum(d.init_forward(batch()).values()).backward()
    assert d.connectors["FSP"][1][0].weight.grad.abs().sum() > 0


def test_teacher_free_term_runs_without_teachers_and_equals_the_loss_on_the_student_logits():
    from densekd.losses.logits import LabelSmoothingKD

    s, _ = models()
    b = batch()
    d = Distiller(s, CLS, [], [dict(type="LabelSmoothingKD", weight=0.1)], task_weight=0.9, probe=b["image"])
    assert d.terms[0].teacher_ids == [] and d.teachers == []
    logits, losses = d(b)
    # the authors' Tf-KD_reg: KL(virtual teacher || student) averaged over B*C elements, x multiplier 100
    c = logits.shape[1]
    p_virtual = torch.full_like(logits, 0.01 / (c - 1)).scatter(1, b["target"][:, None], 0.99)
    p_t = F.softmax(p_virtual / 20.0, dim=1)
    expected = 100.0 * (p_t * (p_t.log() - F.log_softmax(logits, 1))).mean()
    assert torch.allclose(losses["LabelSmoothingKD"], 0.1 * expected, rtol=1e-5)
    assert torch.allclose(losses["LabelSmoothingKD"], 0.1 * LabelSmoothingKD()(logits, None, target=b["target"]))
    assert torch.allclose(losses["cls"], 0.9 * F.cross_entropy(logits, b["target"]))
    losses["LabelSmoothingKD"].backward()
    assert all(p.grad is not None for p in s.fc.parameters())
    # teacher-only keys make no sense for it
    with pytest.raises(ValueError, match="uses no teacher network"):
        Distiller(s, CLS, [], [dict(type="TfKD", teacher="output")], probe=b["image"])


def test_teacher_free_config_trains_without_a_teacher_section(tmp_path):
    from densekd.engine.builder import use_synthetic

    from tests.conftest import ROOT

    cfg = load_config(ROOT / "configs/cifar100/teacher_free/resnet8x4_tfkd.py",
                      ["data.batch_size=8", "data.val_batch_size=16", "data.num_workers=0", "train.log_interval=1",
                       "data.train.num_samples=16", "data.val.num_samples=16"])
    assert "teacher" not in cfg and cfg["task_weight"] == 0.9
    use_synthetic(cfg)
    summary = Trainer(cfg, tmp_path, device="cpu", synthetic=True, max_iters=2).train()
    assert summary["iters"] == 2 and summary["distill"] == ["LabelSmoothingKD"]


@pytest.mark.parametrize("pair", ["resnet56-resnet20", "resnet110-resnet20", "resnet110-resnet32", "resnet32x4-resnet8x4",
                                  "vgg13-vgg8", "wrn_40_2-wrn_16_2", "wrn_40_2-wrn_40_1"])
def test_ofd_configs_take_margins_from_the_teacher_bn_before_each_relu(pair):
    """As RepDistiller's get_bn_before_relu: margin_c = E[x | x < 0] for x ~ N(beta_c, gamma_c^2) of that BN."""
    from densekd.distill.taps import resolve_module
    from densekd.losses.features import ofd_margin
    from tests.conftest import ROOT

    cfg = load_config(ROOT / f"configs/cifar100/distill/{pair}/ofd.py")
    torch.manual_seed(0)
    student, teacher = MODELS.build(cfg["model"]), MODELS.build(cfg["teacher"]["model"])
    bns = [resolve_module(teacher, p) for p in teacher.bn_before_relu]
    with torch.no_grad():  # a "trained" teacher: BN parameters away from their initial 1 / 0
        for bn in bns:
            bn.weight.uniform_(-2, 2)
            bn.bias.uniform_(-1, 1)
    d = Distiller(student, CLS, [teacher], cfg["distill"], probe=torch.randn(2, 3, 32, 32))
    ofd = d.losses["OFD"]
    assert not ofd.estimate and len(bns) == ofd.num_layers
    for margin, bn in zip(ofd.margins(), bns):
        assert torch.allclose(margin, ofd_margin(bn.bias, bn.weight).float())
    _, losses = d(batch(2))
    assert torch.isfinite(losses["OFD"])


def test_teacher_module_args_name_the_problem():
    s, t = models()
    with pytest.raises(ValueError, match="teacher_bn='no_such_list' is neither"):
        Distiller(s, CLS, [t], [dict(type="OFD", student="preacts[1:-1]", teacher="preacts[1:-1]",
                                     teacher_bn="no_such_list")], probe=batch()["image"])


def test_cskd_runs_the_student_on_class_mates_without_gradient_and_after_the_tapped_terms():
    from densekd.losses import CSKD

    s, _ = models()
    b = batch()
    b["pair_image"] = torch.randn(4, 3, 32, 32)
    terms = [dict(type="CSKD", weight=1.0), dict(type="LabelSmoothingKD", student="output", weight=0.1)]
    d = Distiller(s, CLS, [], terms, probe=b["image"])
    s.eval()  # deterministic BN for the independent recomputation
    d.train(False)
    logits, losses = d(b)
    with torch.no_grad():
        pair_logits = s(b["pair_image"])
    assert torch.allclose(losses["CSKD"], CSKD()(logits, pair_logits))
    d.zero_grad()
    losses["CSKD"].backward()
    grad = s.fc.weight.grad.clone()
    # the gradient is that of KL(fixed q || p(anchor)) alone: the class-mate branch carries none
    logits2 = s(b["image"])
    s.zero_grad()
    CSKD()(logits2, pair_logits.detach()).backward()
    assert torch.allclose(grad, s.fc.weight.grad, atol=1e-6)
    with pytest.raises(ValueError, match="taps the model output only"):
        Distiller(s, CLS, [], [dict(type="CSKD", student="layer3")], probe=b["image"])
    del b["pair_image"]
    with pytest.raises(KeyError, match="ClassPairDataset"):
        d(b)


def test_cskd_config_trains_on_synthetic_class_pairs(tmp_path):
    from densekd.engine.builder import use_synthetic
    from tests.conftest import ROOT

    cfg = load_config(ROOT / "configs/cifar100/teacher_free/resnet8x4_cskd.py",
                      ["data.batch_size=8", "data.val_batch_size=16", "data.num_workers=0", "train.log_interval=1",
                       "data.train.dataset.num_samples=32", "data.val.num_samples=16"])
    use_synthetic(cfg)
    assert cfg["data"]["train"]["dataset"]["type"] == "SyntheticCIFAR100"
    summary = Trainer(cfg, tmp_path, device="cpu", synthetic=True, max_iters=2).train()
    assert summary["iters"] == 2 and summary["distill"] == ["CSKD"]


def test_auto_connector_picks_identity_conv_or_linear_and_never_flattens_maps():
    from densekd.nn.connectors import ConvConnector, build_connector

    assert isinstance(build_connector("auto", torch.Size([2, 8, 4, 4]), torch.Size([2, 8, 4, 4])), torch.nn.Identity)
    conv = build_connector("auto", torch.Size([2, 8, 4, 4]), torch.Size([2, 16, 4, 4]))
    assert isinstance(conv, ConvConnector) and sum(p.numel() for p in conv.parameters()) < 8 * 16 * 2 + 64
    lin = build_connector("auto", torch.Size([2, 8]), torch.Size([2, 16]))
    assert lin(torch.randn(3, 8)).shape == (3, 16)
    # IRG's benchmark pairs: the 256-wide stages of resnet32x4 / resnet8x4 need no connector at all
    cfg = load_config("configs/cifar100/distill/resnet32x4-resnet8x4/irg.py")
    assert cfg["distill"][0]["connector"] == "auto"
    s, t = models("resnet8x4", "resnet32x4")
    d = Distiller(s, CLS, [t], cfg["distill"], probe=batch()["image"])
    assert sum(p.numel() for p in d.connectors.parameters()) == 0 and d.oversized_connectors() == []


def test_a_connector_larger_than_the_student_is_reported():
    s, t = models("resnet8", "resnet8x4")
    term = dict(type="FitNet", student="feats[-2]", teacher="feats[-2]", connector="linear")  # 64x8x8 -> 256x8x8
    d = Distiller(s, CLS, [t], [term], probe=batch()["image"])
    (name, n), = d.oversized_connectors()
    assert name == "FitNet" and n == 64 * 64 * 256 * 64 + 256 * 64 > sum(p.numel() for p in s.parameters())


def test_trainer_warns_at_start_up_about_an_oversized_connector(tiny_config, tmp_path):
    extra = ("teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=16, norm='bn'))\n"
             "distill = [dict(type='FitNet', student='feats[-2]', teacher='feats[-2]', connector='linear')]\n")
    Trainer(load_config(tiny_config(extra=extra)), tmp_path / "w", device="cpu", synthetic=True,
            max_iters=1)
    log = (tmp_path / "w/train.log").read_text()
    assert "distill term 'FitNet': its connectors have" in log and "connector='auto'" in log
