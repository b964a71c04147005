"""Data-free distillation: the BN-statistics losses against hand computations, synthesis that the teacher
recognises, the images file read back value by value, resume mid-synthesis, the BNS similarity, frozen student
BatchNorm statistics, a segmentation teacher, and synthesize stages in pipelines."""
import importlib.util
import json
import math
import pickle
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densekd.config import ConfigError, load_config
from densekd.data.cifar import to_normalized_tensor
from densekd.data.synthesized import (SynthesizedImages, dequantize, join_batch_files, quantize, read_attrs,
                                      write_images)
from densekd.engine.trainer import Trainer
from densekd.registry import DATASETS, MODELS, SYNTHESIS_METHODS
from densekd.synthesis.bn import BNInputStats, bn_kl_loss, bn_kl_per_layer, bn_moment_loss, gaussian_kl
from densekd.synthesis.methods import DeepInversion
from densekd.synthesis.priors import js_divergence, total_variation
from densekd.synthesis.runner import Synthesis, lr_at
from densekd.synthesis.similarity import bn_similarity
from tests.conftest import ROOT, write_config

TEACHER = "dict(type='simple_cnn', num_classes=100, width=8)"


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A simple_cnn trained 60 Adam steps on 512 synthetic CIFAR-100 images (about 25% top-1 on them), its
    checkpoint and the training images."""
    torch.manual_seed(0)
    ds = DATASETS.build(dict(type="SyntheticCIFAR100", split="train", num_samples=512, augment=False))
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    y = torch.tensor(ds.targets)
    model = MODELS.build(eval(TEACHER))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        idx = torch.randint(0, len(ds), (64,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().requires_grad_(False)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pth"
    torch.save({"model": model.state_dict()}, path)
    return model, path, x, y


def synth_config(tmp_path, checkpoint, name="synth.py", **kw):
    opts = dict(method="'deepinversion'", loss="dict(bn=0.1)", num_images=32, batch_size=32, iterations=40,
                optimizer="dict(lr=0.25)", checkpoint_interval=10, log_interval=10)
    opts.update({k: (repr(v) if isinstance(v, str) and not v.startswith(("dict(", "'", "[", "(")) else v)
                 for k, v in kw.items()})
    body = ", ".join(f"{k}={v}" for k, v in opts.items())
    text = f"synthesis = dict(teacher=dict(model={TEACHER}, checkpoint={str(checkpoint)!r}), {body})\n"
    return load_config(write_config(tmp_path / name, text))


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- the losses ---------------------------------------------------------------------------------------------------
def test_bn_moment_loss_equals_a_hand_computation():
    torch.manual_seed(0)
    bn1, conv, bn2 = nn.BatchNorm2d(2), nn.Conv2d(2, 2, 1, bias=False), nn.BatchNorm2d(2)
    net = nn.Sequential(bn1, conv, bn2).eval()
    with torch.no_grad():
        bn1.running_mean.copy_(torch.tensor([0.5, -1.0]))
        bn1.running_var.copy_(torch.tensor([2.0, 0.5]))
        bn1.weight.copy_(torch.tensor([1.5, 0.5]))
        bn1.bias.copy_(torch.tensor([0.1, -0.2]))
        conv.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]).view(2, 2, 1, 1))
        bn2.running_mean.copy_(torch.tensor([0.3, 0.0]))
        bn2.running_var.copy_(torch.tensor([1.0, 4.0]))
    x = torch.randn(3, 2, 2, 2, dtype=torch.float64)
    with BNInputStats(net) as stats:
        net.double()(x)
        loss = bn_moment_loss(stats.stats, first_bn_multiplier=10.0)

    xs = x.numpy()

    def moments(a):  # per channel, over batch and pixels, biased variance: written out
        out = []
        for c in range(a.shape[1]):
            vals = [a[n, c, i, j] for n in range(a.shape[0]) for i in range(a.shape[2]) for j in range(a.shape[3])]
            m = sum(vals) / len(vals)
            out.append((m, sum((v - m) ** 2 for v in vals) / len(vals)))
        return out

    def term(mom, rmean, rvar):
        return math.sqrt(sum((rv - v) ** 2 for (_, v), rv in zip(mom, rvar))) + \
            math.sqrt(sum((rm - m) ** 2 for (m, _), rm in zip(mom, rmean)))

    eps = 1e-5
    y = np.empty_like(xs)  # bn1 in eval mode: (x - running_mean) / sqrt(running_var + eps) * weight + bias
    for c, (rm, rv, w, b) in enumerate([(0.5, 2.0, 1.5, 0.1), (-1.0, 0.5, 0.5, -0.2)]):
        y[:, c] = (xs[:, c] - rm) / math.sqrt(rv + eps) * w + b
    z = np.stack([1.0 * y[:, 0] + 2.0 * y[:, 1], -1.0 * y[:, 1]], axis=1)  # the 1x1 conv
    expected = 10.0 * term(moments(xs), [0.5, -1.0], [2.0, 0.5]) + term(moments(z), [0.3, 0.0], [1.0, 4.0])
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_gaussian_kl_against_scalar_hand_computations():
    def kl(m1, v1, m2, v2):
        return gaussian_kl(*(torch.tensor(float(a), dtype=torch.float64) for a in (m1, v1, m2, v2))).item()

    assert kl(0.3, 2.0, 0.3, 2.0) == pytest.approx(0.0, abs=1e-12)
    # KL = log(s~ / s^) - 1/2 (1 - (s^^2 + (m^ - m~)^2) / s~^2), batch (m^, s^^2) first, stored (m~, s~^2) second
    assert kl(0.0, 1.0, 1.0, 1.0) == pytest.approx(0.5)                                     # 0 - 1/2 (1 - 2)
    assert kl(0.0, 1.0, 0.0, 4.0) == pytest.approx(math.log(2) - 0.5 * (1 - 1 / 4))         # 0.3181
    assert kl(1.0, 4.0, 0.0, 1.0) == pytest.approx(math.log(1 / 2) - 0.5 * (1 - 5.0))       # 1.3069
    assert kl(2.0, 0.25, -1.0, 9.0) == pytest.approx(math.log(3 / 0.5) - 0.5 * (1 - (0.25 + 9) / 9))
    # per layer: summed over channels, both variances + the layer's eps
    bn = nn.BatchNorm2d(2, eps=0.01).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([1.0, 0.0]))
        bn.running_var.copy_(torch.tensor([1.0, 3.99]))
    x = torch.zeros(2, 2, 1, 2)
    x[:, 0] = torch.tensor([[[-1.0, 1.0]], [[-1.0, 1.0]]])   # channel 0: mean 0, var 1
    x[:, 1] = 5.0                                            # channel 1: mean 5, var 0
    with BNInputStats(bn) as stats:
        bn(x)
        (value,) = bn_kl_per_layer(stats.stats)
        assert bn_kl_loss(stats.stats).item() == pytest.approx(value.item())
    expected = (0.5 * math.log(1.01 / 1.01) - 0.5 * (1 - (1.01 + 1.0) / 1.01)) + \
               (0.5 * math.log(4.0 / 0.01) - 0.5 * (1 - (0.01 + 25.0) / 4.0))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_priors_and_js_divergence():
    x = torch.zeros(1, 1, 2, 3)
    x[0, 0] = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    # right: [-1,-2],[0,0]; down: [-2,-1,1]; diagonals: [[2-1, 2-3]] and [[0-2, 1-2]]
    assert total_variation(x, "l2").item() == pytest.approx(math.sqrt(5) + math.sqrt(6) + math.sqrt(2) + math.sqrt(5))
    assert total_variation(x, "l1").item() == pytest.approx(3 / 4 + 4 / 3 + 2 / 2 + 3 / 2)
    p, q = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    pp, qq = torch.tensor([0.5, 0.5]), torch.tensor([0.75, 0.25])
    m = (pp + qq) / 2
    expected = 0.5 * (pp * (pp / m).log()).sum() + 0.5 * (qq * (qq / m).log()).sum()
    assert js_divergence(p, q, T=1.0).item() == pytest.approx(expected.item(), rel=1e-5)
    assert js_divergence(q, q, T=3.0).item() == pytest.approx(0.0, abs=1e-7)
    assert lr_at(dict(type="cosine", warmup_iters=100), 0.2, 0, 2000) == pytest.approx(0.2 / 100)
    assert lr_at(dict(type="cosine", warmup_iters=100), 0.2, 100, 2000) == pytest.approx(0.2)
    assert lr_at(dict(type="cosine", warmup_iters=100), 0.2, 1050, 2000) == pytest.approx(0.1)


def test_bn_loss_falls_as_images_are_optimised(teacher):
    model, _, _, _ = teacher
    method = DeepInversion(model, ce=0.0, bn=1.0, tv_l2=0.0)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.1)
    values = []
    for _ in range(25):
        loss = method.losses(x, None)["bn"]
        values.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    method.close()
    assert values[-1] < 0.5 * values[0]
    assert not any(m._forward_hooks for m in model.modules() if isinstance(m, nn.BatchNorm2d))  # hooks removed


def test_inception_and_bns_objectives_written_out():
    from densekd.synthesis.methods import BNStatistics, Inception

    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 2 * 2, 5)).eval()
    with torch.no_grad():
        net[0].running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        net[0].running_var.copy_(torch.tensor([0.5, 1.5, 2.0]))
    x, y = torch.randn(4, 3, 2, 2), torch.tensor([0, 3, 4, 1])
    inc = Inception(net, logit=2.0, tv_l2=0.1)
    out = inc.losses(x, y)
    z = net(x)
    assert out["logit"].item() == pytest.approx(-2.0 * sum(z[b, y[b]].item() for b in range(4)) / 4, rel=1e-6)
    assert out["tv_l2"].item() == pytest.approx(0.1 * total_variation(x, "l2").item(), rel=1e-6)
    bns = BNStatistics(net, bn=3.0)
    value = bns.losses(x, None)["bn_kl"].item()
    bns.close()
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    rm, rv, eps = net[0].running_mean, net[0].running_var, net[0].eps
    hand = sum(0.5 * math.log((rv[c] + eps) / (var[c] + eps)) - 0.5 * (1 - (var[c] + eps + (mean[c] - rm[c]) ** 2) /
                                                                       (rv[c] + eps)) for c in range(3))
    assert value == pytest.approx(3.0 * float(hand), rel=1e-5)


def test_gaussian_scheme_images_are_the_seeded_noise(teacher, tmp_path):
    from densekd.data.sampling import mix_seed

    _, ckpt, _, _ = teacher
    summary = Synthesis(synth_config(tmp_path, ckpt, method="gaussian", loss="dict()", num_images=6, batch_size=4,
                                     seed=3), tmp_path / "g", device="cpu", progress=False).run()
    ds = SynthesizedImages(summary["output"], augment=False)
    mean, std = ds.mean, ds.std
    for b, n in ((0, 4), (1, 2)):
        noise = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(mix_seed(3, b)))
        expected = quantize(noise, mean, std)
        assert all(np.array_equal(ds.load(4 * b + i), expected[i]) for i in range(n))
    assert summary["batches"][0]["losses"] == {}


# -- the file and the dataset -------------------------------------------------------------------------------------
def test_written_dataset_loads_back_value_by_value(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 256, size=(n, 8, 12, 3), dtype=np.uint8) for n in (5, 3)]
    targets = [rng.integers(0, 10, size=len(p)) for p in parts]
    preds = [rng.integers(0, 10, size=len(p)) for p in parts]
    files = [write_images(tmp_path / f"b{i}.h5", p, t, q, {"batch": i}) for i, (p, t, q) in
             enumerate(zip(parts, targets, preds))]
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    path = join_batch_files(files, tmp_path / "images.h5", {"mean": list(mean), "std": list(std), "num_classes": 10,
                                                            "method": "deepinversion"})
    assert not list(tmp_path.glob(".*.tmp"))
    images, labels, teacher_pred = np.concatenate(parts), np.concatenate(targets), np.concatenate(preds)
    attrs = read_attrs(path)
    assert attrs["method"] == "deepinversion" and attrs["num_classes"] == 10 and attrs["format"] == 1
    ds = SynthesizedImages(str(path), augment=False)
    assert len(ds) == 8 and ds.mean == mean and ds.std == std and ds.num_classes == 10
    assert ds.targets == labels.tolist()
    for i in range(8):
        s = ds[i]
        assert set(s) == {"image", "target", "index", "view"} and s["index"] == i and s["target"] == labels[i]
        assert torch.equal(s["image"], to_normalized_tensor(images[i], mean, std))
        assert np.array_equal(ds.load(i), images[i])
    again = pickle.loads(pickle.dumps(ds))  # a DataLoader worker's copy (the handle is reopened there)
    assert torch.equal(again[7]["image"], ds[7]["image"])
    mem = SynthesizedImages(str(path), augment=False, in_memory=True, target="teacher_pred", num_samples=6)
    assert len(mem) == 6 and mem.targets == teacher_pred[:6].tolist()
    assert "target" not in SynthesizedImages(str(path), augment=False, target=None)[0]
    with pytest.raises(FileNotFoundError, match="tools/synthesize.py"):
        SynthesizedImages(str(tmp_path / "missing.h5"))
    # quantisation: round(clip(x * std + mean, 0, 1) * 255), and back as the dataset normalises
    x = torch.randn(4, 3, 8, 12)
    q = quantize(x, mean, std)
    ref = ((x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)).clamp(0, 1) * 255).round()
    assert q.dtype == np.uint8 and np.array_equal(q, ref.permute(0, 2, 3, 1).numpy().astype(np.uint8))
    back = dequantize(q, mean, std)
    lo = (0 - torch.tensor(mean)) / torch.tensor(std)
    hi = (1 - torch.tensor(mean)) / torch.tensor(std)
    clipped = torch.maximum(torch.minimum(x, hi.view(1, 3, 1, 1)), lo.view(1, 3, 1, 1))
    assert (back - clipped).abs().max() <= 0.5 / 255 / min(std) + 1e-6


# -- synthesis -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding, flip", [(4, True), (2, False), (0, True), (0, False)])
def test_augmented_synthesised_images_follow_the_finite_view_protocol(tmp_path, padding, flip):
    """Each (crop, flip) setting: an item drawn under a seeded RNG is the crop + flip of the old augmentation (the
    same draws, written out here), names its view, and view_item renders that view without the RNG; the views
    number (2 padding + 1)^2 x (2 with flips) and a teacher cache's view dataset finds the set."""
    from densekd.data.finite_views import view_dataset

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(3, 8, 12, 3), dtype=np.uint8)
    path = join_batch_files([write_images(tmp_path / "b.h5", images, np.arange(3), np.arange(3), {})],
                            tmp_path / "images.h5", {"mean": [0.5] * 3, "std": [0.5] * 3, "num_classes": 3})
    ds = SynthesizedImages(str(path), padding=padding, flip=flip)
    assert ds.num_views == (2 * padding + 1) ** 2 * (2 if flip else 1) and view_dataset(ds) is ds
    seen = set()
    for seed in range(12):
        np.random.seed(seed)
        item = ds[1]
        np.random.seed(seed)  # the augmentation as it was: crop offsets first (when padding), then the flip
        image = images[1]
        if padding:
            top, left = np.random.randint(0, 2 * padding + 1, size=2)
            image = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))[top:top + 8, left:left + 12]
        if flip and np.random.rand() < 0.5:
            image = image[:, ::-1]
        assert torch.equal(item["image"], to_normalized_tensor(image, (0.5,) * 3, (0.5,) * 3))
        again = ds.view_item(1, item["view"])
        assert torch.equal(again["image"], item["image"]) and again["view"] == item["view"]
        seen.add(item["view"])
    assert len(seen) > 1 or ds.num_views == 1
    with pytest.raises(ValueError, match="outside"):
        ds.view_item(0, ds.num_views)


def test_synthesised_images_are_classified_as_their_targets(teacher, tmp_path):
    model, ckpt, _, _ = teacher
    summary = Synthesis(synth_config(tmp_path, ckpt), tmp_path / "di", device="cpu", progress=False).run()
    assert summary["completed"] and summary["num_images"] == 32 and summary["labels"] == "balanced"
    ds = SynthesizedImages(summary["output"], augment=False)
    assert ds.targets == [i % 100 for i in range(32)] and ds.attrs["method"] == "deepinversion"
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    with torch.no_grad():
        pred = model(x).argmax(1)
    top1 = (pred == torch.tensor(ds.targets)).float().mean().item() * 100
    assert top1 == pytest.approx(summary["teacher_top1"])
    assert top1 > 20  # chance: 1%
    losses = summary["batches"][0]["losses"]
    assert set(losses) == {"loss", "ce", "bn", "tv_l2"}
    # the same noise, not optimised (the Gaussian scheme), is not recognised
    noise = Synthesis(synth_config(tmp_path, ckpt, "g.py", method="gaussian", loss="dict()"), tmp_path / "g",
                      device="cpu", progress=False).run()
    g = SynthesizedImages(noise["output"], augment=False)
    assert g.targets is None and "target" not in g[0]
    with torch.no_grad():
        g_pred = model(torch.stack([g[i]["image"] for i in range(len(g))])).argmax(1)
    assert (g_pred == torch.tensor(ds.targets)).float().mean().item() * 100 < top1 / 4
    log = (tmp_path / "di" / "synthesis.log").read_text()
    assert "step 40/40" in log and "teacher top-1 on the stored images" in log


def test_resume_mid_synthesis_gives_the_same_file_and_keeps_written_batches(teacher, tmp_path, monkeypatch):
    _, ckpt, _, _ = teacher
    kw = dict(num_images=20, batch_size=8, iterations=14, checkpoint_interval=5, jitter=2, flip=True, clip=True,
              labels="random", keep="best", phases="[dict(iterations=6, downsample=2), dict(iterations=8)]",
              lr_schedule="dict(type='cosine', warmup_iters=3)")
    cfg = synth_config(tmp_path, ckpt, **kw)
    full = Synthesis(cfg, tmp_path / "full", device="cpu", progress=False).run()

    calls = {"n": 0, "stop_at": 11, "crash_at": None}
    real = DeepInversion.losses

    def counting(self, x, targets):
        calls["n"] += 1
        if calls["n"] == calls["crash_at"]:
            raise RuntimeError("simulated crash")
        out = real(self, x, targets)
        if calls["n"] == calls["stop_at"]:
            run._stop = signal.SIGTERM  # as the SIGTERM handler does
        return out

    monkeypatch.setattr(DeepInversion, "losses", counting)
    part = tmp_path / "part"
    run = Synthesis(cfg, part, device="cpu", progress=False)
    with pytest.raises(SystemExit) as stop:  # stopped in batch 1, phase 2, step 5 of 8: state saved at that step
        run.run()
    assert stop.value.code == 128 + signal.SIGTERM and (part / "state.pt").is_file()
    assert torch.load(part / "state.pt", weights_only=False)["phase"] == 1
    calls.update(n=0, stop_at=None)
    run = Synthesis(cfg, part, device="cpu", progress=False)
    assert run.run(max_batches=1)["batches_done"] == 1  # finishes batch 1 only: 3 steps
    assert calls["n"] == 3
    first = part / "batches" / "batch_000000.h5"
    stamp = first.stat().st_mtime_ns
    calls.update(n=0, crash_at=12)  # batch 2 crashes at its 12th step (phase 2, step 6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Synthesis(cfg, part, device="cpu", progress=False).run()
    state = torch.load(part / "state.pt", weights_only=False)  # the last checkpoint: phase 2, step 5
    assert (state["batch"], state["phase"], state["iter"]) == (1, 1, 5)
    assert first.stat().st_mtime_ns == stamp  # the written batch was not touched
    calls.update(n=0, crash_at=None)
    resumed = Synthesis(cfg, part, device="cpu", progress=False).run()
    assert calls["n"] == 3 + 14  # batch 2 from its checkpoint, batch 3 whole; batch 1 not redone
    assert resumed["completed"] and not (part / "state.pt").exists() and not (part / "batches").exists()
    import h5py

    with h5py.File(full["output"], "r") as a, h5py.File(resumed["output"], "r") as b:
        assert set(a) == set(b) == {"images", "targets", "teacher_pred"}
        for key in a:
            assert np.array_equal(a[key][:], b[key][:]), key
    assert [r["losses"] for r in full["batches"]] == [r["losses"] for r in resumed["batches"]]


def test_settings_are_checked_and_another_synthesis_is_not_overwritten(teacher, tmp_path):
    _, ckpt, _, _ = teacher
    from densekd.synthesis.settings import SynthesisSettings

    with pytest.raises(ConfigError, match="synthesis.iteration.*Did you mean 'iterations'"):
        SynthesisSettings.from_config(synth_config(tmp_path, ckpt, iteration=3))
    with pytest.raises(ConfigError, match="Unknown synthesis method type 'deepinvert'"):
        SynthesisSettings.from_config(synth_config(tmp_path, ckpt, method="deepinvert"))
    with pytest.raises(ConfigError, match="synthesis.loss.bn_weight.*Its parameters: teacher, student, ce, bn,"):
        SynthesisSettings.from_config(synth_config(tmp_path, ckpt, loss="dict(bn_weight=1.0)"))
    with pytest.raises(ValueError, match="needs the student it competes with"):
        Synthesis(synth_config(tmp_path, ckpt, loss="dict(adi=0.2)"), tmp_path / "adi", device="cpu").run()
    assert set(SYNTHESIS_METHODS.names()) == {"deepinversion", "bns", "inception", "gaussian"}
    cfg = synth_config(tmp_path, ckpt, iterations=2, num_images=4, batch_size=4)
    Synthesis(cfg, tmp_path / "w", device="cpu", progress=False).run()
    other = synth_config(tmp_path, ckpt, "o.py", iterations=3, num_images=4, batch_size=4)
    with pytest.raises(ConfigError, match=r"other settings \(differs in phases.*--overwrite"):
        Synthesis(other, tmp_path / "w", device="cpu").run()
    again = Synthesis(other, tmp_path / "w", device="cpu", overwrite=True, progress=False).run()
    assert again["completed"] and again["batches"][0]["losses"]
    same = Synthesis(other, tmp_path / "w", device="cpu", progress=False).run()  # complete: nothing to do
    assert same["fingerprint"] == again["fingerprint"]
    with pytest.raises(FileNotFoundError, match="synthesis.teacher checkpoint not found"):
        Synthesis(synth_config(tmp_path, tmp_path / "nope.pth"), tmp_path / "x", device="cpu").run()


def test_adaptive_deepinversion_term_is_one_minus_js_with_the_student(teacher):
    model, _, _, _ = teacher
    student = MODELS.build(dict(type="simple_cnn", num_classes=100, width=4)).eval().requires_grad_(False)
    method = DeepInversion(model, student, ce=0.0, bn=0.0, tv_l2=0.0, adi=0.5, adi_T=3.0)
    x = torch.randn(4, 3, 32, 32)
    out = method.losses(x, None)
    with torch.no_grad():
        ref = 0.5 * (1 - js_divergence(student(x), model(x), 3.0))
    assert set(out) == {"adi"} and out["adi"].item() == pytest.approx(ref.item())


def test_bns_method_lowers_the_kl_and_its_images_score_better_than_noise(teacher, tmp_path):
    model, ckpt, _, _ = teacher
    summary = Synthesis(synth_config(tmp_path, ckpt, method="bns", loss="dict(bn=1.0)", labels=None, iterations=30,
                                     optimizer="dict(lr=0.1)"), tmp_path / "bns", device="cpu", progress=False).run()
    ds = SynthesizedImages(summary["output"], augment=False)
    assert ds.targets is None and set(summary["batches"][0]["losses"]) == {"loss", "bn_kl"}
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    noise = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(123))
    assert bn_similarity(model, [x])["bns"] < 0.5 * bn_similarity(model, [noise])["bns"]


def test_bns_similarity_ranks_the_training_data_above_noise(teacher, tmp_path, capsys):
    model, ckpt, x, _ = teacher
    train = bn_similarity(model, [x[i:i + 128] for i in range(0, 512, 128)])
    noise = bn_similarity(model, [torch.randn(128, 3, 32, 32) for _ in range(4)])
    assert train["images"] == 512 and train["batches"] == 4 and len(train["per_layer"]) == 4
    assert train["bns"] < noise["bns"]
    assert train["bns"] == pytest.approx(sum(train["per_layer"].values()) / 4)
    # the command line: the config's data.train against Gaussian noise, best first
    cfg = write_config(tmp_path / "c.py", f"model = {TEACHER}\ndata = dict(train=dict(type='SyntheticCIFAR100', "
                                          f"split='train', num_samples=512))\n")
    out = tmp_path / "bns.json"
    results = load_tool("bn_similarity").main([str(cfg), str(ckpt), "--data", "gaussian", "train", "--batch-size",
                                              "128", "--num-images", "256", "--device", "cpu", "--out", str(out)])
    table = capsys.readouterr().out
    assert results["train"]["bns"] == pytest.approx(train["bns"], rel=1e-5)  # augmentation is switched off
    assert table.index("| train |") < table.index("| gaussian |")
    assert json.loads(out.read_text())["results"]["gaussian"]["images"] == 256


def test_inception_scheme_raises_the_target_logit(teacher, tmp_path):
    model, ckpt, _, _ = teacher
    summary = Synthesis(synth_config(tmp_path, ckpt, method="inception", loss="dict(logit=1.0)", clip=True,
                                     iterations=30, optimizer="dict(lr=0.1)"), tmp_path / "inc", device="cpu",
                        progress=False).run()
    assert set(summary["batches"][0]["losses"]) == {"loss", "logit", "tv_l2"}
    noise = Synthesis(synth_config(tmp_path, ckpt, "g.py", method="gaussian", loss="dict()"), tmp_path / "g",
                      device="cpu", progress=False).run()  # the same starting noise (same seed), not optimised
    targets = torch.arange(32) % 100

    def target_logit(path):
        ds = SynthesizedImages(path, augment=False)
        with torch.no_grad():
            return model(torch.stack([ds[i]["image"] for i in range(32)])).gather(1, targets.view(-1, 1)).mean().item()

    assert target_logit(summary["output"]) > target_logit(noise["output"]) + 3.0


# -- frozen student BatchNorm statistics --------------------------------------------------------------------
def test_freeze_bn_stats_keeps_running_statistics_fixed(tiny_config, tmp_path):
    def bn_state(trainer):
        return {k: v.clone() for k, v in trainer.strategy.student.state_dict().items()
                if "running" in k or "num_batches" in k}

    def weights(trainer):
        return {k: v.clone() for k, v in trainer.strategy.student.state_dict().items() if k.endswith("1.weight")}

    for frozen in (True, False):
        extra = "freeze_bn_stats = True\n" if frozen else ""
        trainer = Trainer(load_config(tiny_config(f"f{frozen}.py", epochs=1, extra=extra)), tmp_path / str(frozen),
                          device="cpu", synthetic=True)
        before, w_before = bn_state(trainer), weights(trainer)
        trainer.train()
        after, w_after = bn_state(trainer), weights(trainer)
        same = all(torch.equal(before[k], after[k]) for k in before)
        assert same == frozen
        assert any(not torch.equal(w_before[k], w_after[k]) for k in w_before)  # BN affine weights still train
        assert trainer.strategy.student.training  # the model is in train mode; its BatchNorms run in eval


# -- a segmentation teacher ---------------------------------------------------------------------------------
SEG_TEACHER = "dict(type='seg_model', arch='PSPNet', encoder='resnet18', encoder_depth=3, output_stride=8, " \
              "num_classes=19, psp_out_channels=32, psp_dropout=0.0)"
SEG_STUDENT = "dict(type='seg_model', arch='PSPNet', encoder='resnet18', encoder_depth=2, output_stride=8, " \
              "num_classes=19, psp_out_channels=16, psp_dropout=0.0)"


def test_segmentation_teacher_synthesis_and_pixelwise_distillation(tmp_path):
    from densekd.engine.builder import calibrate_batchnorm

    torch.manual_seed(0)
    teacher = MODELS.build(eval(SEG_TEACHER))
    scenes = DATASETS.build(dict(type="SyntheticCityscapes", num_samples=8, image_size=(32, 64)))
    calibrate_batchnorm(teacher, [torch.utils.data.default_collate([scenes[i] for i in range(8)])])
    ckpt = tmp_path / "seg_teacher.pth"
    torch.save({"model": teacher.state_dict()}, ckpt)
    synth = write_config(tmp_path / "seg_synth.py", f"""
synthesis = dict(method='deepinversion', loss=dict(ce=0.0, bn=0.05, tv_l2=1e-4),
                 teacher=dict(model={SEG_TEACHER}, checkpoint={str(ckpt)!r}),
                 labels=None, num_images=6, batch_size=3, iterations=8, image_size=(32, 64), jitter=2, flip=True,
                 optimizer=dict(lr=0.1), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
""")
    summary = load_tool("synthesize").main([str(synth), "--work-dir", str(tmp_path / "synth"), "--device", "cpu"])
    assert summary["completed"] and summary["teacher_top1"] is None and summary["labels"] is None
    first, last = summary["batches"][0]["losses"], summary["batches"][-1]["losses"]
    assert set(first) == {"loss", "bn", "tv_l2"} and math.isfinite(last["loss"])
    ds = SynthesizedImages(summary["output"])
    assert ds.image_size == (32, 64) and ds.targets is None and set(ds[0]) == {"image", "index", "view"}
    distil = write_config(tmp_path / "seg_kd.py", f"""
task = dict(type='segmentation', num_classes=19, ignore_index=255)
model = {SEG_STUDENT}
teacher = dict(model={SEG_TEACHER}, checkpoint={str(ckpt)!r})
task_weight = 0.0
distill = [dict(type='PixelWiseKD', T=1.0, weight=1.0)]
data = dict(train=dict(type='SynthesizedImages', path={summary['output']!r}),
            val=dict(type='SyntheticCityscapes', num_samples=4, image_size=(32, 64)),
            batch_size=3, val_batch_size=4, num_workers=0)
optimizer = dict(type='SGD', lr=0.01, momentum=0.9)
train = dict(iters=4, eval_interval=4, log_interval=2)
""")
    trainer = Trainer(load_config(distil), tmp_path / "kd", device="cpu")
    start = {k: v.clone() for k, v in trainer.strategy.student.state_dict().items()}
    result = trainer.train()
    assert result["completed"] and "mIoU" in result["final"]
    lines = [json.loads(x) for x in (tmp_path / "kd" / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if "loss/PixelWiseKD" in x]
    assert train and all(math.isfinite(x["loss/PixelWiseKD"]) and x["loss/PixelWiseKD"] > 0 for x in train)
    assert not any("loss/seg" in x for x in train)  # task_weight 0: no task loss, no labels needed
    end = trainer.strategy.student.state_dict()
    assert any(not torch.equal(start[k], end[k]) for k in start if end[k].is_floating_point())


# -- pipelines -------------------------------------------------------------------------------------------------
def test_synthesize_stage_hands_its_images_to_the_distillation_stage(tiny_config, tmp_path):
    from densekd.pipelines import PipelineError, PipelineRunner, load_pipeline

    teacher = tiny_config("teacher.py", extra="model = dict(type='simple_cnn', num_classes=100, width=8)\n")
    synth = write_config(tmp_path / "synth.py", f"""
synthesis = dict(method='deepinversion', loss=dict(bn=0.1), teacher=dict(model={TEACHER}, checkpoint=None),
                 num_images=12, batch_size=6, iterations=3)
""")
    student = tiny_config("student.py", extra=f"""
teacher = dict(model={TEACHER}, checkpoint=None)
distill = [dict(type='KD', T=4, weight=1.0)]
task_weight = 0.0
data['train'] = dict(_delete_=True, type='SynthesizedImages', path='')
""")
    text = f"""
stages = [
    dict(name='teacher', config={str(teacher)!r}),
    dict(name='synth', kind='synthesize', config={str(synth)!r},
         cfg_options={{'synthesis.teacher.checkpoint': '{{teacher.best}}'}}),
    dict(name='student', config={str(student)!r},
         cfg_options={{'teacher.checkpoint': '{{teacher.best}}', 'data.train.path': '{{synth.data}}'}}),
]
"""
    pipe_path = write_config(tmp_path / "pipe.py", text)
    lines = []
    results = PipelineRunner(load_pipeline(pipe_path, work_dir=str(tmp_path / "work")), device="cpu",
                             log=lines.append).run()
    assert [r.status for r in results] == ["trained", "synthesized", "trained"]
    work = tmp_path / "work"
    assert (work / "synth" / "images.h5").is_file()
    cfg = load_config(work / "student" / "config.py")
    assert cfg["data"]["train"]["path"] == str(work / "synth" / "images.h5")
    assert json.loads((work / "synth" / "synthesis_summary.json").read_text())["teacher"]["checkpoint"] == \
        str(work / "teacher" / "checkpoints" / "best.pth")
    table = (work / "pipeline.md").read_text()
    assert "| synth |" in table and "| synthesized | teacher_top1 |" in table and "| 2/2 |" in table
    again = PipelineRunner(load_pipeline(pipe_path, work_dir=str(work)), device="cpu", log=lines.append).run()
    assert [r.status for r in again] == ["skipped"] * 3
    assert not any("WARNING" in line for line in lines)
    synth.write_text(synth.read_text().replace("iterations=3", "iterations=4"))
    again = PipelineRunner(load_pipeline(pipe_path, work_dir=str(work)), device="cpu", log=lines.append).run()
    assert [r.status for r in again] == ["skipped"] * 3
    assert any("stage 'synth' finished with different settings (differs in phases)" in line for line in lines)
    for bad, match in (("'{synth.best}'", "synthesize stage, which writes no checkpoints; its images are "
                                          r"\{synth.data\}"),
                       ("'{teacher.data}'", "only synthesize stages")):
        broken = write_config(tmp_path / "bad.py", text.replace("'{synth.data}'", bad))
        with pytest.raises(PipelineError, match=match):
            load_pipeline(broken, work_dir=str(tmp_path / "w2"))


def test_shipped_data_free_configs_validate_and_synthesise(tmp_path):
    from densekd.engine.builder import use_synthetic
    from densekd.engine.schema import validate
    from densekd.pipelines import load_pipeline
    from densekd.synthesis.settings import SynthesisSettings

    for name in ("cifar100_deepinversion_resnet32x4_resnet8x4", "cifar100_knowledge_within_resnet32x4_resnet8x4",
                 "cityscapes_demo_deepinversion", "cifar100_standin_data_free"):
        pipe = load_pipeline(ROOT / "configs" / "pipelines" / f"{name}.py", work_dir=str(tmp_path / name),
                             synthetic=True)
        kinds = [s.kind for s in pipe.stages]
        assert "synthesize" in kinds and kinds[0] == "train"
    configs = sorted((ROOT / "configs" / "synthesis").rglob("*.py"))
    assert {p.stem for p in configs} == {"deepinversion_resnet32x4", "adi_resnet32x4", "bns_resnet32x4",
                                         "inception_resnet32x4", "gaussian_resnet32x4", "deepinversion_demo_teacher"}
    for path in configs:
        cfg = load_config(path)
        validate(cfg)
        s = SynthesisSettings.from_config(cfg)
        assert s.method in SYNTHESIS_METHODS.names() and s.teacher["checkpoint"].startswith("work_dirs/")
    di = SynthesisSettings.from_config(load_config(ROOT / "configs/synthesis/cifar100/deepinversion_resnet32x4.py"))
    assert (di.loss["bn"], di.loss["tv_l2"], di.optimizer["lr"], di.phases, di.batch_size, di.jitter) == \
        (10.0, 2.5e-5, 0.05, [dict(iterations=2000, downsample=1)], 256, 2)
    for data_free in sorted((ROOT / "configs/cifar100/data_free").rglob("*.py")):
        validate(load_config(data_free))
    # two of them for real on their networks (a random teacher under --synthetic), one step, two images
    for rel in ("cifar100/deepinversion_resnet32x4.py", "cityscapes/deepinversion_demo_teacher.py"):
        cfg = load_config(ROOT / "configs/synthesis" / rel, ["synthesis.num_images=2", "synthesis.batch_size=2",
                                                             "data.train.num_samples=2"])
        use_synthetic(cfg)
        summary = Synthesis(cfg, tmp_path / rel, device="cpu", synthetic=True, max_iters=1, progress=False).run()
        assert summary["completed"] and summary["num_images"] == 2 and summary["max_iters"] == 1, rel
