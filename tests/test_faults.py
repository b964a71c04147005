"""Fault injection through the real command line (tools/train.py, check_data.py, test.py in subprocesses).

Nothing is lost and every error is one clear line: kill -9 mid-run then --resume (bit-identical end state),
a second run on the same work dir, config drift on resume, a rerun without --resume, --overwrite, SIGTERM
during an evaluation, a full disk (a small tmpfs where it can be mounted, else a patched writer), a read-only
work dir, corrupt data and checkpoint files. Runs are parked at known points by the test-only dataset of
tests/fault_helpers.py (it waits while a "pause" file exists) instead of by timing.

Reference results come from the same config trained in this process without interruption.
"""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from densekd.config import load_config
from densekd.engine.trainer import Trainer
from tests.conftest import ROOT, write_config

TRAIN = [sys.executable, str(ROOT / "tools" / "train.py")]
TOOL = {name: [sys.executable, str(ROOT / "tools" / f"{name}.py")] for name in ("check_data", "test")}

CIFAR = """
_base_ = ['{root}/configs/_base_/cifar100_classification.py']
import tests.fault_helpers  # noqa: F401 - test-only dataset that can be paused
model = dict(type='simple_cnn', num_classes=100, width=8, norm='bn')
data = dict(train=dict(type='_FaultyCIFAR', split='train', num_samples=48{train}),
            val=dict(type='_FaultyCIFAR', split='test', num_samples=32{val}),
            batch_size=8, val_batch_size=4, num_workers=0)
optimizer = dict(lr=0.05)
lr_schedule = dict(milestones=[2], gamma=0.1)
train = dict(epochs=3, log_interval=4, eval_interval=1)
"""
# 6 iterations per epoch, 18 in all; log lines at 4, 8, 12, 16, 18 (a window crosses each checkpoint);
# checkpoints and evaluations at 6, 12, 18.
PAUSE_AT_9 = 8 * 8  # training reads before iteration 9: a run parks there with last.pth at 6 and a log at 8


def cifar_config(path: Path, train: str = "", val: str = "") -> Path:
    return write_config(path, CIFAR.format(root=ROOT, train=train, val=val))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: its work dir."""
    tmp = tmp_path_factory.mktemp("reference")
    Trainer(load_config(cifar_config(tmp / "ref.py")), tmp / "wd", device="cpu").train()
    return tmp / "wd"


# -- helpers ------------------------------------------------------------------------------------------------
def train(cfg, wd, *args, env=None, timeout=300):
    return subprocess.run(TRAIN + [str(cfg), "--work-dir", str(wd), "--device", "cpu", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def start(cfg, wd, *args, env=None):
    return subprocess.Popen(TRAIN + [str(cfg), "--work-dir", str(wd), "--device", "cpu", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc=None, timeout=180, what="the run"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"{what} ended early (rc {proc.returncode}):\n{out[-2000:]}\n{err[-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def records(wd) -> list[dict]:
    path = Path(wd) / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def logged(wd, it: int) -> bool:
    return any(r.get("iter") == it and "split" not in r for r in records(wd))


def ckpt(wd, name="last.pth"):
    return torch.load(Path(wd) / "checkpoints" / name, map_location="cpu", weights_only=False)


def tensors(obj, prefix=""):
    """Every tensor in a nested checkpoint structure, by path."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from tensors(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from tensors(v, f"{prefix}/{i}")


def assert_same_run(wd, ref):
    """Bit-identical end state (weights, optimiser state, best) and identical metrics.jsonl."""
    a, b = ckpt(wd), ckpt(ref)
    assert a["iter"] == b["iter"] and a["best"] == b["best"] and a["best_iter"] == b["best_iter"]
    ta, tb = dict(tensors({"model": a["model"], "strategy": a["strategy"]})), \
        dict(tensors({"model": b["model"], "strategy": b["strategy"]}))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert records(wd) == records(ref)
    assert json.loads((Path(wd) / "summary.json").read_text())["final"] == \
        json.loads((Path(ref) / "summary.json").read_text())["final"]


def one_line_error(proc) -> str:
    """The process failed with a single ``error: ...`` line on stderr and no traceback."""
    err = proc.stderr.strip()
    assert proc.returncode in (1, 2), (proc.returncode, proc.stdout[-2000:], err[-3000:])
    assert "Traceback (most recent call last)" not in err and "Errno 22" not in err, err[-3000:]
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    return lines[0]


def snapshot(wd) -> dict:
    wd = Path(wd)
    return {str(p.relative_to(wd)): p.read_bytes() for p in sorted(wd.rglob("*"))
            if p.is_file() and p.name not in (".lock", "train.log")}


# -- kill -9, a second run, config drift, rerun, --overwrite ----------------------------------------------------
def test_kill9_then_resume_is_bit_identical_and_the_work_dir_is_never_shared_or_overwritten(reference, tmp_path):
    pause = tmp_path / "pause"
    pause.touch()
    cfg = cifar_config(tmp_path / "run.py", train=f", pause={str(pause)!r}, pause_after={PAUSE_AT_9}")
    wd = tmp_path / "wd"
    a = start(cfg, wd)
    try:
        wait_for(lambda: logged(wd, 8), a, what="iteration 8")  # parked loading iteration 9; last.pth at 6
        # a second run on the same work dir, with or without --resume, fails at once naming the holder
        others = [start(cfg, wd), start(cfg, wd, "--resume")]
        for p in others:
            out, err = p.communicate(timeout=60)
            line = one_line_error(subprocess.CompletedProcess(p.args, p.returncode, out, err))
            assert p.returncode == 2 and "in use by another run" in line and f"process {a.pid}" in line, line
        assert a.poll() is None
        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=60)
    finally:
        if a.poll() is None:
            a.kill()
    pause.unlink()
    assert (wd / ".lock").is_file()  # left by the killed run: not stale for the next one
    assert ckpt(wd)["iter"] == 6 and logged(wd, 8)
    before = snapshot(wd)

    # resuming with a changed learning rate is refused, naming the key; nothing is touched
    drift = train(cfg, wd, "--resume", "--cfg-options", "optimizer.lr=0.1")
    line = one_line_error(drift)
    assert drift.returncode == 2 and "optimizer.lr (0.05 -> 0.1)" in line and "--work-dir" in line, line
    assert snapshot(wd) == before

    # a key that is safe to change warns; the resumed run ends exactly as the uninterrupted one, log windows too
    res = train(cfg, wd, "--resume", "--cfg-options", "data.num_workers=1")
    assert res.returncode == 0, res.stderr[-3000:]
    log = (wd / "train.log").read_text()
    assert "Resuming with changed data.num_workers (0 -> 1)" in log and "Resumed from" in log
    assert_same_run(wd, reference)
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["sessions"] == 2 and summary["time_s"] >= summary["time_s_session"] > 0
    assert not (wd / ".lock").exists()

    # a new run in the finished run's work dir is refused and changes nothing ...
    finished = snapshot(wd)
    again = train(cfg, wd)
    line = one_line_error(again)
    assert again.returncode == 2 and all(w in line for w in ("--resume", "--work-dir", "--overwrite")), line
    assert "finished run of 18 iterations" in line and snapshot(wd) == finished
    # ... unless it is asked to replace it
    fresh = train(cfg, wd, "--overwrite")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert_same_run(wd, reference)
    assert json.loads((wd / "summary.json").read_text())["sessions"] == 1


# -- SIGTERM during an evaluation ------------------------------------------------------------------------------------
def test_sigterm_during_evaluation_stops_it_and_resume_evaluates_again(reference, tmp_path):
    pause, reads = tmp_path / "pause", tmp_path / "val_reads"
    pause.touch()
    cfg = cifar_config(tmp_path / "run.py", val=f", pause={str(pause)!r}, reads={str(reads)!r}")
    wd = tmp_path / "wd"
    a = start(cfg, wd)
    try:
        wait_for(lambda: reads.is_file() and reads.read_text(), a, what="the first evaluation")
        a.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        pause.unlink()
        out, err = a.communicate(timeout=120)
    finally:
        if a.poll() is None:
            a.kill()
    assert a.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Stopped by SIGTERM at iteration 6 during the evaluation" in out
    assert len(reads.read_text().split()) < 32  # the evaluation was interrupted, not finished
    saved = ckpt(wd)
    assert saved["iter"] == 6 and saved["last_eval_iter"] is None  # written before the evaluation
    assert not any(r.get("split") == "val" for r in records(wd))
    res = train(cfg, wd, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_run(wd, reference)


# -- a full disk, a read-only work dir ------------------------------------------------------------------------------
@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "2m"):
    """A small tmpfs at ``path`` (root on Linux; not with DENSEKD_TEST_NO_TMPFS=1), else None."""
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("mount") or \
            os.environ.get("DENSEKD_TEST_NO_TMPFS") == "1":
        yield None
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
                f.flush()
        except OSError:
            pass
    return filler


def traceback_file(line: str) -> Path:
    return Path(line.rsplit("Traceback in ", 1)[1].strip())


def test_full_disk_mid_run_keeps_the_last_good_checkpoint_and_resume_finishes(reference, tmp_path):
    pause = tmp_path / "pause"
    pause.touch()
    cfg = cifar_config(tmp_path / "run.py", train=f", pause={str(pause)!r}, pause_after={PAUSE_AT_9}")
    with small_tmpfs(tmp_path / "disk") as disk:
        env, flag = None, tmp_path / "disk-full"
        if disk is None:  # no tmpfs here: the patched writer of tests/fault_helpers.py
            env = dict(os.environ, DENSEKD_TEST_FULL_FLAG=str(flag))
        wd = tmp_path / "disk" / "wd"
        a = start(cfg, wd, env=env)
        try:
            wait_for(lambda: logged(wd, 8), a, what="iteration 8")
            filler = fill(disk) if disk is not None else flag.touch()
            pause.unlink()
            out, err = a.communicate(timeout=120)
        finally:
            if a.poll() is None:
                a.kill()
        line = one_line_error(subprocess.CompletedProcess(a.args, a.returncode, out, err))
        assert a.returncode == 1 and "Disk full" in line and "No space left on device" in line, line
        assert str(wd) in line and "--resume" in line and "iteration 6) is intact" in line, line
        assert "Traceback" in traceback_file(line).read_text()
        assert ckpt(wd)["iter"] == 6  # the last good checkpoint, whole
        assert not list((wd / "checkpoints").glob(".*.tmp"))
        if disk is not None:
            filler.unlink()
        else:
            flag.unlink()
        res = train(cfg, wd, "--resume", env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        assert_same_run(wd, reference)


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` read-only: a read-only bind mount as root, file modes otherwise."""
    if os.geteuid() == 0:
        if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode != 0:
            pytest.skip("cannot bind-mount here to make a folder read-only for root")
        try:
            if subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True).returncode:
                pytest.skip("cannot remount read-only here")
            yield
        finally:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
    else:
        mode = folder.stat().st_mode
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)


def test_read_only_work_dir_mid_run_and_at_start(reference, tmp_path):
    pause = tmp_path / "pause"
    pause.touch()
    cfg = cifar_config(tmp_path / "run.py", train=f", pause={str(pause)!r}, pause_after={PAUSE_AT_9}")
    wd = tmp_path / "wd"
    a = start(cfg, wd)
    try:
        wait_for(lambda: logged(wd, 8), a, what="iteration 8")
        with read_only(wd / "checkpoints"):
            pause.unlink()
            out, err = a.communicate(timeout=120)
    finally:
        if a.poll() is None:
            a.kill()
    line = one_line_error(subprocess.CompletedProcess(a.args, a.returncode, out, err))
    assert a.returncode == 1 and "not writable" in line and str(wd / "checkpoints" / "last.pth") in line, line
    assert f"Traceback in {wd / 'train.log'}" in line and "Traceback" in (wd / "train.log").read_text()
    assert ckpt(wd)["iter"] == 6
    res = train(cfg, wd, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_run(wd, reference)

    blocked = tmp_path / "readonly"
    blocked.mkdir()
    with read_only(blocked):
        proc = train(cfg, blocked / "wd")
    line = one_line_error(proc)
    assert proc.returncode == 2 and "not writable" in line and str(blocked / "wd") in line, line


# -- corrupt data files --------------------------------------------------------------------------------------------
SEG = """
_base_ = ['{root}/configs/_base_/default_runtime.py']
task = dict(type='segmentation', num_classes=19)
model = dict(type='seg_model', arch='PSPNet', encoder='resnet18', num_classes=19, encoder_depth=1, psp_out_channels=8)
data = dict(train=dict(type='Cityscapes', root='{data}', split='train', crop_size=(32, 32), scale_range=(0.75, 1.25)),
            val=dict(type='Cityscapes', root='{data}', split='val'),
            batch_size=2, num_workers=0)
optimizer = dict(type='SGD', lr=0.01, momentum=0.9)
lr_schedule = dict(type='poly', power=0.9, by_epoch=False)
train = dict(iters=8, eval_interval=4, log_interval=1)
"""


def test_corrupt_image_and_label_files_are_listed_together_then_named_mid_run(tmp_path):
    from densekd.data.cityscapes import Cityscapes, SyntheticCityscapes
    from densekd.data.sampling import ResumableBatchSampler

    data = tmp_path / "cityscapes"
    SyntheticCityscapes.write_tree(str(data), "train", n=8, image_size=(32, 64))
    SyntheticCityscapes.write_tree(str(data), "val", n=2, image_size=(32, 64))
    cfg = write_config(tmp_path / "seg.py", SEG.format(root=ROOT, data=data))
    reference = tmp_path / "reference"
    Trainer(load_config(cfg), reference, device="cpu").train()

    # the image that iteration 3 reads (epoch 0, position 5 of the shuffled order), and a validation label
    order = [i for batch in ResumableBatchSampler(8, 2, seed=0) for i, _ in batch]
    image = Path(Cityscapes(str(data), "train").images[order[5]])
    label = Path(Cityscapes(str(data), "val").labels[0])
    good_image, good_label = image.read_bytes(), label.read_bytes()
    image.write_bytes(good_image[: len(good_image) // 2])  # truncated
    label.write_bytes(b"not a png" * 20)

    check = subprocess.run(TOOL["check_data"] + [str(cfg)], capture_output=True, text=True, timeout=300)
    assert check.returncode == 1, check.stderr[-3000:]
    assert "2 bad samples of 10" in check.stderr and str(image) in check.stderr and str(label) in check.stderr
    wd = tmp_path / "wd"
    early = train(cfg, wd, "--check-data")
    assert early.returncode == 2 and str(image) in early.stderr and str(label) in early.stderr
    assert not (wd / "checkpoints").exists()  # nothing trained

    label.write_bytes(good_label)
    failed = train(cfg, wd)
    line = one_line_error(failed)
    assert failed.returncode == 1 and "Bad data file" in line and str(image) in line, line
    assert "iteration 3" in line and "check_data.py" in line and "--resume" in line, line
    assert f"Saved {wd / 'checkpoints' / 'last.pth'} at iteration 2" in line, line
    assert ckpt(wd)["iter"] == 2

    image.write_bytes(good_image)
    res = train(cfg, wd, "--resume")
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_run(wd, reference)


def test_truncated_cifar_pickle_is_one_line_at_start_up(tmp_path):
    from densekd.data.cifar import write_cifar100_pickles

    rng = np.random.default_rng(0)
    folder = write_cifar100_pickles(tmp_path / "cifar", {s: rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
                                                         for s in ("train", "test")},
                                    {s: list(range(8)) for s in ("train", "test")})
    data = (folder / "train").read_bytes()
    (folder / "train").write_bytes(data[: len(data) // 3])
    cfg = write_config(tmp_path / "c.py", f"_base_ = ['{ROOT}/configs/cifar100/students/resnet20.py']\n")
    proc = train(cfg, tmp_path / "wd", "--data-root", str(tmp_path / "cifar"))
    line = one_line_error(proc)
    assert proc.returncode == 2 and str(folder / "train") in line and "truncated" in line, line


# -- corrupt checkpoint files ------------------------------------------------------------------------------------------
def test_damaged_checkpoints_name_the_file_the_problem_and_the_fix(tmp_path):
    """(More kinds of damage, and tools/visualize.py, in tests/test_reliability.py.)"""
    cfg = cifar_config(tmp_path / "run.py")
    wd = tmp_path / "wd"
    Trainer(load_config(cfg), wd, device="cpu", max_iters=2).train()
    last = wd / "checkpoints" / "last.pth"
    good = last.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good[: len(good) // 2])
    proc = subprocess.run(TOOL["test"] + [str(cfg), str(truncated), "--device", "cpu"], capture_output=True,
                          text=True, timeout=300)
    line = one_line_error(proc)
    assert str(truncated) in line and "truncated" in line and "retrain" in line, line

    foreign = tmp_path / "foreign.pth"
    torch.save({"model": torch.nn.Linear(3, 2).state_dict()}, foreign)
    last.write_bytes(foreign.read_bytes())
    proc = train(cfg, wd, "--resume")
    line = one_line_error(proc)
    assert proc.returncode == 2 and str(last) in line and "not a densekd training checkpoint" in line, line
