"""The offline teacher cache (issue 13, point 3): CIFAR's finite views, the HDF5 cache of teacher taps, training
from it with the losses of the live teacher, and one-line errors when the cache does not fit the config."""
import json

import numpy as np
import pytest
import torch

from densekd.config import ConfigError, load_config
from densekd.data.finite_views import NoFiniteViews, crop_flip, crop_flip_views
from densekd.data.sampling import forked_rng
from densekd.data.teacher_cache import CacheMismatch, read_attrs, wrap_view_dataset, write_cache
from densekd.distill.cache import write_config_cache
from densekd.engine.builder import use_synthetic, with_teacher_cache
from densekd.engine.trainer import Trainer
from densekd.models.simple import SimpleCNN
from densekd.registry import DATASETS
from tests.conftest import ROOT, write_config

CONFIG = """
_base_ = ['{root}/configs/_base_/cifar100_classification.py']
model = dict(type='simple_cnn', num_classes=100, width=8)
teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=8){ckpt})
distill = {terms}
data = dict(train=dict(type='SyntheticCIFAR100', split='train', num_samples={n}),
            val=dict(type='SyntheticCIFAR100', split='test', num_samples=16), batch_size=8, val_batch_size=16,
            num_workers=0)
optimizer = dict(lr=0.05)
train = dict(epochs=2, log_interval=1, eval_interval=1)
"""
KD_AT = "[dict(type='KD', T=4, weight=0.9), dict(type='AT', student='feats[1:-1]', teacher='feats[1:-1]', weight=100)]"
KD = "[dict(type='KD', T=4, weight=0.9)]"


def config(tmp_path, name="run.py", terms=KD_AT, n=16, ckpt=None, extra=""):
    text = CONFIG.format(root=ROOT, terms=terms, n=n, ckpt=f", checkpoint={str(ckpt)!r}" if ckpt else "")
    cfg = load_config(write_config(tmp_path / name, text + extra))
    use_synthetic(cfg)
    return cfg


def losses_of(work_dir):
    records = [json.loads(line) for line in (work_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith("loss")} for r in records if "loss" in r]


def train(cfg, work_dir, cache=None, max_iters=4):
    if cache is not None:
        cfg["teacher_cache"] = str(cache)
    trainer = Trainer(cfg, work_dir, device="cpu", synthetic=True, max_iters=max_iters)
    if cache is not None:  # the cached run never runs the teacher
        def refuse(*_a, **_k):
            raise AssertionError("the teacher ran although its taps are cached")
        trainer.strategy.distiller.teachers[0].forward = refuse
    trainer.train()
    return losses_of(work_dir)


# -- finite views ----------------------------------------------------------------------------------------------------
def test_view_id_reproduces_the_augmentation_and_the_162_views_differ():
    ds = DATASETS.build(dict(type="SyntheticCIFAR100", split="train", num_samples=8))
    assert ds.num_views == crop_flip_views(4) == 162
    seen = set()
    for seed in range(40):
        with forked_rng(seed):
            item = ds[seed % 8]
        again = ds.view_item(seed % 8, item["view"])
        assert torch.equal(item["image"], again["image"]) and item["target"] == again["target"]
        seen.add(item["view"])
    assert len(seen) > 20  # the draws spread over the views
    renders = {ds.view_item(3, v)["image"].numpy().tobytes() for v in range(162)}
    assert len(renders) == 162
    image = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    assert np.array_equal(crop_flip(image, (4 * 9 + 4) * 2, 4), image)  # centre crop, no flip: the image itself
    assert np.array_equal(crop_flip(image, (4 * 9 + 4) * 2 + 1, 4), image[:, ::-1])
    plain = DATASETS.build(dict(type="SyntheticCIFAR100", split="test", num_samples=4))
    assert plain.num_views == 1 and plain[2]["view"] == 0
    with pytest.raises(ValueError, match="outside 0..0"):
        plain.view_item(0, 1)


# -- training from the cache -----------------------------------------------------------------------------------------
def test_cached_teacher_gives_the_live_teachers_losses(tmp_path):
    """KD + AT (the logits and three feature maps of the teacher) from a float32 cache: the live run's losses at
    every iteration (two epochs, so samples come back in other views); float16 within its rounding."""
    cfg = config(tmp_path)
    live = train(cfg, tmp_path / "live")
    for dtype, tol in (("float32", 1e-5), ("float16", 2e-3)):
        cache = write_config_cache(cfg, tmp_path / f"{dtype}.h5", synthetic=True, dtype=dtype, log=lambda _m: None)
        attrs = read_attrs(cache)
        assert attrs["num_samples"] == 16 and attrs["num_views"] == 162 and attrs["dtype"] == dtype
        assert attrs["teachers"][0]["taps"] == ["output", "layer1", "layer2", "layer3"]
        assert attrs["teachers"][0]["checkpoint_sha256"] == "random-init"
        cached = train(config(tmp_path), tmp_path / dtype, cache=cache)
        assert len(cached) == len(live) == 4
        for a, b in zip(live, cached):
            assert a.keys() == b.keys() and {"loss/KD", "loss/AT"} <= set(a)
            for k in a:
                assert b[k] == pytest.approx(a[k], rel=tol, abs=tol * 1e-2), (dtype, k)


# -- mismatches ------------------------------------------------------------------------------------------------------
def test_cache_that_does_not_fit_the_config_is_a_one_line_error(tmp_path):
    ckpts = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        ckpts.append(tmp_path / f"teacher{seed}.pth")
        torch.save(SimpleCNN(num_classes=100, width=8).state_dict(), ckpts[-1])
    cache = write_config_cache(config(tmp_path, terms=KD, ckpt=ckpts[0]), tmp_path / "kd.h5", dtype="float16",
                               log=lambda _m: None)
    assert read_attrs(cache)["teachers"][0]["checkpoint"] == str(ckpts[0])

    def start(**kw):
        cfg = config(tmp_path, **kw)
        cfg["teacher_cache"] = str(cache)
        Trainer(cfg, tmp_path / f"w{len(list(tmp_path.iterdir()))}", device="cpu", synthetic=True, max_iters=1)

    start(terms=KD, ckpt=ckpts[0])  # the matching config starts
    with pytest.raises(CacheMismatch, match=r"other weights of teacher 0 .*teacher0\.pth.*teacher1\.pth.*"
                                            r"tools/cache_teacher\.py CONFIG"):
        start(terms=KD, ckpt=ckpts[1])
    with pytest.raises(CacheMismatch, match=r"lacks teacher 0's taps \['layer1', 'layer2', 'layer3'\].*cache_teacher"):
        start(terms=KD_AT, ckpt=ckpts[0])
    with pytest.raises(CacheMismatch, match=r"16 samples x 162 views, but the training set is SyntheticCIFAR100 of "
                                            r"24 samples x 162 views"):
        start(terms=KD, ckpt=ckpts[0], n=24)
    other = config(tmp_path, terms=KD, extra="strategy = dict(type='mutual_learning')\n")
    other["teacher_cache"] = str(cache)
    with pytest.raises(ConfigError, match="strategy 'mutual_learning' runs its teachers"):
        with_teacher_cache(other, None)
    with pytest.raises(FileNotFoundError, match="no such file; write it with python tools/cache_teacher.py CONFIG"):
        cfg = config(tmp_path, terms=KD, ckpt=ckpts[0])
        cfg["teacher_cache"] = str(tmp_path / "absent.h5")
        Trainer(cfg, tmp_path / "absent", device="cpu", synthetic=True, max_iters=1)


def test_dataset_without_finite_views_cannot_be_cached(tmp_path):
    class RandomScaleCrop(torch.utils.data.Dataset):
        def __len__(self):
            return 4

    with pytest.raises(NoFiniteViews, match="RandomScaleCrop does not draw its samples from a finite set of views"):
        wrap_view_dataset(RandomScaleCrop(), tmp_path / "x.h5")


# -- the file --------------------------------------------------------------------------------------------------------
def test_interrupted_write_keeps_the_old_file_and_resumes_where_it_stopped(tmp_path):
    """Killed after 2 of 4 blocks, the write leaves the previous cache under the final name and its unfinished
    file beside it; run again with the same plan it runs the teacher on the last 2 blocks only, and the result
    equals an uninterrupted write. Another plan (dtype) or resume=False starts over."""
    import h5py

    from densekd.data.teacher_cache import partial_path

    ds = DATASETS.build(dict(type="SyntheticCIFAR100", split="train", num_samples=4))
    calls, messages, fail_at = [], [], [3]  # the forward call (counted from 1) that is interrupted

    def forward(batch):
        calls.append(len(batch["image"]))
        if len(calls) == fail_at[0]:
            raise KeyboardInterrupt
        return {0: {"output": batch["image"].mean((2, 3))}}

    path = tmp_path / "cache.h5"
    path.write_bytes(b"the previous cache")
    taps = {0: {"output": (3,)}}
    with pytest.raises(KeyboardInterrupt):
        write_cache(path, ds, forward, taps, {"teachers": []}, batch_size=162)  # one sample (162 views) a block
    assert path.read_bytes() == b"the previous cache"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache.h5.partial", "cache.h5"]
    calls.clear()
    fail_at[0] = 0  # from here on the forward succeeds
    done = []
    write_cache(path, ds, forward, taps, {"teachers": []}, batch_size=162, progress=done.append, log=messages.append)
    assert calls == [162, 162] and done[0] == 2 * 162 and sum(done) == 4 * 162  # samples 2 and 3 only
    assert any("resuming" in m and "after 2 of 4 samples" in m for m in messages)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.h5"]
    clean = tmp_path / "clean.h5"
    write_cache(clean, ds, lambda b: {0: {"output": b["image"].mean((2, 3))}}, taps, {"teachers": []}, batch_size=162)
    with h5py.File(path, "r") as f, h5py.File(clean, "r") as g:
        assert np.array_equal(f["teacher_0/output"][...], g["teacher_0/output"][...])
        assert dict(f.attrs) == dict(g.attrs) and "samples_done" not in f.attrs
    # an unfinished file of another plan is not continued
    calls.clear()
    fail_at[0] = 2  # interrupted after one block
    with pytest.raises(KeyboardInterrupt):
        write_cache(path, ds, forward, taps, {"teachers": []}, batch_size=162)
    fail_at[0] = 0
    messages.clear()
    write_cache(path, ds, forward, taps, {"teachers": []}, dtype="float32", batch_size=100, log=messages.append)
    assert any("another dataset, teacher, tap or format; starting over" in m for m in messages)
    with h5py.File(path, "r") as f:
        stored = f["teacher_0/output"]
        assert stored.shape == (4, 162, 3) and stored.chunks[:2] == (1, 162) and stored.compression == "lzf"
        assert stored.dtype == np.float32
        assert np.allclose(stored[2, 77], ds.view_item(2, 77)["image"].mean((1, 2)).numpy())
    # an unreadable unfinished file is replaced
    partial_path(path).write_bytes(b"not hdf5")
    messages.clear()
    write_cache(path, ds, forward, taps, {"teachers": []}, batch_size=162, log=messages.append)
    assert any("cannot be read" in m for m in messages) and not partial_path(path).exists()


def test_tool_refuses_a_cache_above_max_gb_and_writes_one_below(tmp_path, capsys):
    import tools.cache_teacher as tool

    cfg = write_config(tmp_path / "kd.py", CONFIG.format(root=ROOT, terms=KD, n=4, ckpt=""))
    with pytest.raises(SystemExit) as exc:
        tool.main([str(cfg), "--synthetic", "--out", str(tmp_path / "big.h5"), "--max-gb", "0.0001"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and not (tmp_path / "big.h5").exists()
    assert "4 samples x 162 views of SyntheticCIFAR100, taps teacher 0 output 100, float16: 0.00013 GB" in err
    assert err.strip().splitlines()[-1].startswith("error: the teacher cache would take 0.00013 GB (> --max-gb 0.0001); "
                                                  "raise --max-gb")
    out = tool.main([str(cfg), "--synthetic", "--out", str(tmp_path / "small.h5")])
    assert out == tmp_path / "small.h5" and read_attrs(out)["num_views"] == 162


def test_tool_continues_an_interrupted_cache_unless_told_not_to(tmp_path, capsys, monkeypatch):
    """Through the tool: a run interrupted after its first block is continued by the next (which says so and
    runs the teacher on the rest only); --no-resume starts over."""
    import densekd.data.teacher_cache as tc
    import tools.cache_teacher as tool

    cfg = write_config(tmp_path / "kd.py", CONFIG.format(root=ROOT, terms=KD, n=4, ckpt=""))
    out = tmp_path / "c.h5"
    original, blocks = tc.collate_samples, []

    def counting(dataset, items):
        blocks.append(len(items))
        if len(blocks) == 2 and len(items) == 162 and fail[0]:
            raise KeyboardInterrupt
        return original(dataset, items)

    fail = [True]
    monkeypatch.setattr(tc, "collate_samples", counting)
    args = [str(cfg), "--synthetic", "--out", str(out), "--batch-size", "162"]
    with pytest.raises(KeyboardInterrupt):
        tool.main(args)
    fail[0] = False
    blocks.clear()
    tool.main(args)
    assert "resuming" in capsys.readouterr().err and sum(blocks) == 3 * 162  # samples 1-3
    blocks.clear()
    fail[0] = True
    with pytest.raises(KeyboardInterrupt):
        tool.main(args)
    fail[0] = False
    blocks.clear()
    capsys.readouterr()
    tool.main(args + ["--no-resume"])
    assert "resuming" not in capsys.readouterr().err and sum(blocks) == 4 * 162
    assert read_attrs(out)["num_samples"] == 4


def test_config_key_is_validated(tmp_path):
    from densekd.engine.schema import validate

    cfg = config(tmp_path, extra="teacher_cache = dict(file='x.h5')\n")
    with pytest.raises(ConfigError, match=r"teacher_cache must be the cache file's path or dict\(path=\.\.\.\).*set in"):
        validate(cfg)
    validate(config(tmp_path, extra="teacher_cache = dict(path='x.h5')\n"))


def test_teachers_a_cache_replaces_stay_off_the_device(tmp_path):
    """A cached run moves no teacher to the training device unless a term still needs it there: MLKD's strong
    view runs the teacher, OFD reads the teacher's BatchNorms."""
    from densekd.distill.distiller import Distiller
    from densekd.registry import MODELS, TASKS

    def distiller(terms, cached):
        student, teacher = MODELS.build(dict(type="resnet8")), MODELS.build(dict(type="resnet14"))
        d = Distiller(student, TASKS.build(dict(type="classification")), [teacher], terms,
                      probe=torch.zeros(2, 3, 32, 32), num_classes=100, num_data=16)
        if cached:
            d.use_teacher_cache()
        return d

    kd = [dict(type="KD", T=4)]
    assert distiller(kd, cached=False).teachers_needed()
    assert not distiller(kd, cached=True).teachers_needed()
    assert distiller([dict(type="MLKD")], cached=True).teachers_needed()
    assert distiller([dict(type="OFD", student="preacts[1:-1]", teacher="preacts[1:-1]", teacher_bn="bn_before_relu")],
                     cached=True).teachers_needed()
    moved = []
    d = distiller(kd, cached=True)
    d.teachers[0].to = lambda *a, **k: moved.append(a)  # teachers_to must not call it
    d.teachers_to(torch.device("cpu"))
    assert moved == []
