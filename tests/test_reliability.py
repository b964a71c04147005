"""Nothing lost, every error clear (in this process; tests/test_faults.py drives the same through subprocesses):
the work-dir lock and refusal, failures after start-up as one line, non-finite steps, damaged checkpoints,
command-line parsing, forgiving data loaders."""
import errno
import importlib.util
import json
import math
import os
import pickle
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import tests.fault_helpers  # noqa: F401 - registers _FaultyCIFAR and _FaultCNN
from densekd.config import ConfigError, load_config, parse_override_value
from densekd.engine.checkpoint import load_checkpoint, load_weights
from densekd.engine.trainer import NonFiniteLossError, Trainer
from tests.conftest import ROOT, write_config

# what these tests check is imported inside each test, so that each one fails on its own without it


def workdir_api():
    from densekd.engine import workdir

    return workdir, workdir.WorkDirError, workdir.WorkDirLock


def checkpoint_error():
    from densekd.engine.checkpoint import CheckpointError

    return CheckpointError


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cli(tool, argv, capsys):
    """Run ``tools/<tool>.py`` in this process: ``(exit code, stdout, stderr)``."""
    capsys.readouterr()
    try:
        load_tool(tool).main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback (most recent" not in err, err
    return lines[0]


def ckpt(wd, name="last.pth"):
    return torch.load(wd / "checkpoints" / name, map_location="cpu", weights_only=False)


def finite_weights(state) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


# -- work dirs -----------------------------------------------------------------------------------------------------
def test_a_second_trainer_on_a_locked_work_dir_fails_naming_the_holder(tiny_config, tmp_path):
    _, WorkDirError, _ = workdir_api()
    cfg = load_config(tiny_config(epochs=1))
    first = Trainer(cfg, tmp_path / "wd", device="cpu")
    with pytest.raises(WorkDirError, match=rf"in use by another run \(process {os.getpid()} on "):
        Trainer(cfg, tmp_path / "wd", device="cpu")
    first.train()  # releases the lock
    assert not (tmp_path / "wd" / ".lock").exists()
    Trainer(cfg, tmp_path / "wd", device="cpu", resume=True).close()


def test_an_earlier_run_is_refused_kept_or_replaced(tiny_config, tmp_path):
    _, WorkDirError, _ = workdir_api()
    cfg = tiny_config(epochs=1)
    wd = tmp_path / "wd"
    Trainer(load_config(cfg), wd, device="cpu", max_iters=2).train()
    before = {p.name: p.read_bytes() for p in [wd / "summary.json", wd / "metrics.jsonl", *(wd / "checkpoints").iterdir()]}
    with pytest.raises(WorkDirError) as err:
        Trainer(load_config(cfg), wd, device="cpu")
    assert "stopped at iteration 2 of 6" in str(err.value) and "--overwrite" in str(err.value)
    assert {p.name: p.read_bytes() for p in [wd / "summary.json", wd / "metrics.jsonl",
                                            *(wd / "checkpoints").iterdir()]} == before
    with pytest.raises(WorkDirError, match="give one of them"):
        Trainer(load_config(cfg), wd, device="cpu", resume=True, overwrite=True)
    summary = Trainer(load_config(cfg), wd, device="cpu", overwrite=True).train()
    assert summary["completed"] and summary["sessions"] == 1
    assert [json.loads(x)["iter"] for x in (wd / "metrics.jsonl").read_text().splitlines()][0] == 2  # fresh records
    # a start-up error leaves no "earlier run" behind: the corrected command starts normally
    with pytest.raises(FileNotFoundError):
        Trainer(load_config(cfg, ["load_from='nowhere.pth'"]), tmp_path / "new", device="cpu")
    Trainer(load_config(cfg), tmp_path / "new", device="cpu", max_iters=1).train()


def test_pidfile_lock_where_flock_is_missing_takes_over_only_dead_holders(tmp_path, monkeypatch):
    workdir, WorkDirError, WorkDirLock = workdir_api()
    monkeypatch.setattr(workdir, "fcntl", None)
    lock_file = tmp_path / workdir.LOCK_NAME
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_file.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": 0}))
    lock = WorkDirLock(tmp_path).acquire()  # the holder is gone: a stale lock
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    with pytest.raises(WorkDirError, match=f"in use by another run \\(process {os.getpid()}"):
        WorkDirLock(tmp_path).acquire()
    lock.release()
    assert not lock_file.exists()
    lock_file.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 0}))
    with pytest.raises(WorkDirError, match="cannot be checked from this machine; if that run is no longer running, "
                                           "delete"):
        WorkDirLock(tmp_path).acquire()


def test_pipeline_stage_with_unresumable_leftovers_says_what_to_delete(tiny_config, tmp_path):
    from densekd.pipelines import PipelineError, PipelineRunner, load_pipeline

    pipe = write_config(tmp_path / "pipe.py", f"stages = [dict(name='a', config={str(tiny_config(epochs=1))!r})]\n")
    stage_dir = tmp_path / "work" / "a"
    stage_dir.mkdir(parents=True)
    (stage_dir / "metrics.jsonl").write_text('{"iter": 2, "loss": 4.6}\n')  # killed before its first checkpoint
    runner = PipelineRunner(load_pipeline(pipe, work_dir=str(tmp_path / "work")), device="cpu", log=lambda m: None)
    with pytest.raises(PipelineError, match=rf"neither skip .* nor resume .*delete {stage_dir}"):
        runner.run()


def test_pipeline_resume_refuses_a_changed_config_naming_the_key(tiny_config, tmp_path):
    from densekd.pipelines import PipelineError, PipelineRunner, load_pipeline

    pipe = write_config(tmp_path / "pipe.py", f"stages = [dict(name='a', config={str(tiny_config(epochs=1))!r})]\n")

    def run(options=(), **kw):
        pipeline = load_pipeline(pipe, work_dir=str(tmp_path / "work"), cli_options=list(options))
        return PipelineRunner(pipeline, device="cpu", log=lambda m: None, **kw).run()

    run(max_iters=2)
    leftover = tmp_path / "work" / "a" / "checkpoints" / ".last.pth.x1y2.tmp"  # a write cut short by a kill
    leftover.write_bytes(b"partial")
    with pytest.raises(PipelineError, match=r"optimizer.lr \(0.05 -> 0.1\)"):
        run(["optimizer.lr=0.1"], max_iters=4)
    results = run(max_iters=4)
    assert results[0].status == "resumed" and results[0].summary["iters"] == 4 and not leftover.exists()


# -- failures after start-up ----------------------------------------------------------------------------------------
FAULT_CNN = "model = dict(type='_FaultCNN', num_classes=100, width=8, {arg})\n"
FAULT_HEADER = "import tests.fault_helpers  # noqa: F401\n"


def test_out_of_memory_in_a_training_step_keeps_the_last_good_checkpoint(tiny_config, tmp_path, capsys):
    cfg = tiny_config(extra=FAULT_HEADER + FAULT_CNN.format(arg="oom_at=9"))
    wd = tmp_path / "wd"
    code, _, err = cli("train", [cfg, "--work-dir", wd, "--device", "cpu"], capsys)
    line = error_line(err)
    assert code == 1 and "Out of memory in the training step of iteration 9" in line, line
    assert "lower data.batch_size" in line and f"{wd / 'checkpoints' / 'last.pth'} (iteration 6) is intact" in line
    assert f"Traceback in {wd / 'train.log'}" in line
    assert "OutOfMemoryError" in (wd / "train.log").read_text()
    assert ckpt(wd)["iter"] == 6  # the step's half-done state was not saved


def test_an_evaluation_error_finds_last_pth_written_before_the_evaluation(tiny_config, tmp_path, capsys):
    extra = ("import tests.fault_helpers  # noqa: F401\n"
             "data = dict(train=dict(type='SyntheticCIFAR100', split='train', num_samples=48),\n"
             "            val=dict(type='_FaultyCIFAR', split='test', num_samples=32, fail_after=0),\n"
             "            batch_size=8, val_batch_size=32, num_workers=0)\n")
    wd = tmp_path / "wd"
    code, _, err = cli("train", [tiny_config(extra=extra), "--work-dir", wd, "--device", "cpu"], capsys)
    line = error_line(err)
    assert code == 1 and "during the evaluation at iteration 6" in line and "injected failure" in line, line
    assert "was written before the evaluation; --resume evaluates again" in line
    assert ckpt(wd)["iter"] == 6 and ckpt(wd)["last_eval_iter"] is None


def test_an_unreadable_sample_raises_data_file_error_naming_its_files():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def sample_files(self, index):
            return [f"/data/img{index}.png"]

        def __getitem__(self, index):
            raise OSError(f"cannot identify image file '/data/img{index}.png'")

    from densekd.data.sampling import DataFileError, build_loader

    loader = build_loader(Broken(), 2, shuffle=False, seed=0)
    with pytest.raises(DataFileError, match=r"sample 0 of Broken \(/data/img0.png\): cannot identify"):
        next(iter(loader))


# -- non-finite steps -------------------------------------------------------------------------------------------------
def test_nonfinite_gradients_never_reach_the_weights(tiny_config, tmp_path):
    extra = FAULT_HEADER + FAULT_CNN.format(arg="nan_grad_from=4")
    cfg = tiny_config(extra=extra)
    with pytest.raises(NonFiniteLossError, match="Non-finite gradients of the student parameters at main iteration 4"):
        Trainer(load_config(cfg), tmp_path / "raise", device="cpu").train()
    summary = Trainer(load_config(cfg, ["train.skip_nonfinite=True"]), tmp_path / "skip", device="cpu").train()
    assert summary["completed"] and summary["skipped_steps"] == 9 and summary["skipped_steps_by"] == {"main": 9}
    assert finite_weights(ckpt(tmp_path / "skip")["model"])
    # a skipped micro-batch skips its whole accumulation window
    acc = Trainer(load_config(tiny_config(extra=FAULT_HEADER + FAULT_CNN.format(arg="nan_grad_from=12")),
                              ["train.skip_nonfinite=True", "train.accumulate=2"]), tmp_path / "acc", device="cpu")
    summary = acc.train()
    assert summary["skipped_steps"] == 1 and finite_weights(ckpt(tmp_path / "acc")["model"])


def test_consecutive_skips_stop_the_run_with_last_pth_saved(tiny_config, tmp_path, capsys):
    cfg = tiny_config(extra=FAULT_HEADER + FAULT_CNN.format(arg="nan_grad_from=4"))
    wd = tmp_path / "wd"
    code, _, err = cli("train", [cfg, "--work-dir", wd, "--device", "cpu", "--cfg-options", "train.skip_nonfinite=True",
                                 "train.max_consecutive_skips=3"], capsys)
    line = error_line(err)
    assert code == 1 and "3 consecutive main steps skipped for non-finite values" in line, line
    assert f"Saved {wd / 'checkpoints' / 'last.pth'} at iteration 6" in line
    state = ckpt(wd)
    assert state["nonfinite"]["by_stream"] == {"main": 3} and finite_weights(state["model"])


def test_nonfinite_critic_gradients_skip_the_critic_step(tmp_path, monkeypatch):
    from densekd.losses.adversarial import HolisticKD

    real = HolisticKD.discriminator_loss

    def nan_grads(self, s, t, image=None):
        p = next(self.discriminator.parameters())
        return real(self, s, t, image) + (p.sum() * 0).sqrt()  # finite value, nan gradient

    monkeypatch.setattr(HolisticKD, "discriminator_loss", nan_grads)
    seg = f"""
_base_ = ['{ROOT}/configs/_base_/default_runtime.py']
task = dict(type='segmentation', num_classes=19)
model = dict(type='seg_model', arch='PSPNet', encoder='resnet18', num_classes=19, encoder_depth=1, psp_out_channels=8)
teacher = dict(model=dict(type='seg_model', arch='PSPNet', encoder='resnet18', num_classes=19, encoder_depth=1,
                          psp_out_channels=8))
distill = [dict(type='HolisticKD', weight=0.1)]
data = dict(train=dict(type='SyntheticCityscapes', split='train', num_samples=4, crop_size=(32, 32)),
            val=dict(type='SyntheticCityscapes', split='val', num_samples=2, image_size=(32, 64)),
            batch_size=2, num_workers=0)
train = dict(iters=3, eval_interval=3, log_interval=1, skip_nonfinite=True)
"""
    trainer = Trainer(load_config(write_config(tmp_path / "seg.py", seg)), tmp_path / "wd", device="cpu",
                      synthetic=True)
    critic = trainer.strategy.distiller.losses["HolisticKD"].discriminator
    summary = trainer.train()
    assert summary["skipped_steps_by"] == {"critic/HolisticKD/0": 3}
    assert all(torch.isfinite(p).all() for p in critic.parameters())
    assert "Non-finite gradients of the critic of HolisticKD" in (tmp_path / "wd" / "train.log").read_text()


# -- damaged or foreign checkpoints ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, expect", [
    ("empty", "it is empty (0 bytes)"), ("text", "it is not a torch checkpoint: a text file"),
    ("html", "an HTML page from a failed download"), ("pickle", "a plain pickle, not a torch checkpoint"),
    ("zip", "a zip archive but not a torch checkpoint"), ("legacy_truncated", "truncated or damaged"),
    ("truncated", "it is truncated"),
])
def test_load_checkpoint_says_what_is_wrong(tmp_path, kind, expect):
    import zipfile

    CheckpointError = checkpoint_error()

    path = tmp_path / f"{kind}.pth"
    good = tmp_path / "good.pth"
    torch.save({"w": torch.randn(64, 64)}, good)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("12345\n")
    elif kind == "html":
        path.write_text("<html><body>404 Not Found</body></html>")
    elif kind == "pickle":
        path.write_bytes(pickle.dumps([1, 2, 3]))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    elif kind == "legacy_truncated":
        torch.save({"w": torch.randn(64, 64)}, path, _use_new_zipfile_serialization=False)
        path.write_bytes(path.read_bytes()[:2000])
    else:
        path.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and expect in str(err.value)
    assert "Errno" not in str(err.value) and "\n" not in str(err.value)


def test_foreign_architecture_lists_mismatched_names_and_shapes(tmp_path, tiny_config, capsys):
    cfg = tiny_config(epochs=1)
    wide = tmp_path / "wide.pth"
    from densekd.models.simple import SimpleCNN

    torch.save({"model": SimpleCNN(num_classes=10, width=16).state_dict(),
                "config": "model = {'type': 'simple_cnn', 'num_classes': 10, 'width': 16}\n"}, wide)
    code, _, err = cli("test", [cfg, wide, "--synthetic", "--device", "cpu"], capsys)
    line = error_line(err)
    assert code == 2 and str(wide) in line and "written for another architecture than this SimpleCNN" in line
    assert "stem.0.weight 16x3x3x3 in the file vs 8x3x3x3 here" in line and "'width': 16" in line, line
    # as a teacher's checkpoint=
    teacher = f"teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=8), checkpoint={str(wide)!r})\n" \
              f"distill = [dict(type='KD')]\n"
    code, _, err = cli("train", [tiny_config("kd.py", extra=teacher), "--work-dir", tmp_path / "kd", "--device", "cpu"],
                       capsys)
    line = error_line(err)
    assert code == 2 and "teacher 0 weights in" in line and "22 parameters differ in shape" in line, line
    assert "stem.1.weight 16 in the file vs 8 here" in line and "(+19 more)" in line, line


def test_visualize_and_resume_name_a_damaged_checkpoint(tmp_path, tiny_config, capsys):
    seg = (f"_base_ = ['{ROOT}/configs/_base_/default_runtime.py', '{ROOT}/configs/_base_/datasets/cityscapes.py',\n"
           f"          '{ROOT}/configs/_base_/schedules/seg_40k.py']\n"
           "model = dict(type='seg_model', arch='PSPNet', encoder='resnet18', encoder_depth=1, psp_out_channels=8)\n"
           "data = dict(val=dict(num_samples=2, image_size=(32, 64)))\n")
    bad = tmp_path / "bad.pth"
    bad.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    code, _, err = cli("visualize", [write_config(tmp_path / "seg.py", seg), bad, "--synthetic", "--device", "cpu",
                                     "--out", tmp_path / "vis"], capsys)
    line = error_line(err)
    assert code == 2 and str(bad) in line and "not a torch checkpoint: a text file" in line, line
    wd = tmp_path / "wd"
    Trainer(load_config(tiny_config(epochs=1)), wd, device="cpu", max_iters=2).train()
    (wd / "checkpoints" / "last.pth").write_bytes(b"")
    code, _, err = cli("train", [tiny_config(epochs=1), "--work-dir", wd, "--device", "cpu", "--resume"], capsys)
    assert code == 2 and "it is empty (0 bytes)" in error_line(err)


# -- command-line parsing -------------------------------------------------------------------------------------------------
def test_cfg_options_given_several_times_accumulate(tiny_config):
    import argparse

    from densekd.engine.launch import add_config_args, prepare

    parser = argparse.ArgumentParser()
    add_config_args(parser)
    args = parser.parse_args([str(tiny_config()), "--cfg-options", "optimizer.lr=0.2", "train.grad_clip=inf",
                              "--cfg-options", "train.log_interval=3", "task_weight=1e-3", "seed=None"])
    cfg = prepare(args)
    assert cfg["optimizer"]["lr"] == 0.2 and cfg["train"]["log_interval"] == 3
    assert cfg["train"]["grad_clip"] == math.inf and cfg["task_weight"] == 0.001 and cfg["seed"] is None


def test_no_cfg_options_group_is_dropped_by_train_or_pipeline(tiny_config, tmp_path, capsys):
    pipe = write_config(tmp_path / "pipe.py", f"stages = [dict(name='a', config={str(tiny_config())!r})]\n")
    for tool, target in (("train", tiny_config()), ("pipeline", pipe)):
        code, _, err = cli(tool, [target, "--work-dir", tmp_path / tool, "--max-iters", "0",
                                  "--cfg-options", "train.epochz=1", "--cfg-options", "optimizer.lr=0.1"], capsys)
        assert code == 2 and "train.epochz" in err, (tool, err)


def test_override_values_parse_as_literals():
    assert math.isnan(parse_override_value("nan")) and parse_override_value("-inf") == -math.inf
    assert parse_override_value("1e-3") == 0.001 and parse_override_value("True") is True
    assert parse_override_value("true") is True and parse_override_value("None") is None
    assert parse_override_value("[1, inf]") == [1, math.inf] and parse_override_value("sgd") == "sgd"


def test_a_word_for_a_numeric_key_is_an_error_not_a_string(tiny_config, tmp_path, capsys):
    for option, key in (("optimizer.lr=O.1", "optimizer.lr"), ("train.grad_clip=one", "train.grad_clip")):
        code, _, err = cli("train", [tiny_config(), "--work-dir", tmp_path / "w", "--cfg-options", option], capsys)
        line = error_line(err)
        assert code == 2 and f"{key} takes a number" in line, line
    with pytest.raises(ConfigError, match="'optimizer.lr' .* takes a number; got the string '0.1'"):
        Trainer(load_config(tiny_config(extra="optimizer = dict(lr='0.1')\n")), tmp_path / "x", device="cpu")
    assert not (tmp_path / "w").exists()


def test_a_missing_dataset_is_one_line_naming_the_layout(tmp_path, capsys):
    cfg = write_config(tmp_path / "c.py", f"_base_ = ['{ROOT}/configs/cifar100/students/resnet20.py']\n")
    code, _, err = cli("train", [cfg, "--work-dir", tmp_path / "w", "--data-root", tmp_path / "nowhere"], capsys)
    line = error_line(err)
    assert code == 2 and "CIFAR-100 train file not found" in line and "Expected layout" in line, line


def test_max_iters_must_not_be_negative(tiny_config, tmp_path, capsys):
    for tool in ("train", "pipeline"):
        code, _, err = cli(tool, [tiny_config(), "--max-iters", "-1"], capsys)
        assert code == 2 and "--max-iters: must be >= 0, got -1" in err
    with pytest.raises(ValueError, match="must be >= 0"):
        Trainer(load_config(tiny_config()), tmp_path / "w", device="cpu", max_iters=-1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line(tiny_config, tmp_path, capsys):
    for tool, extra in (("train", ["--work-dir", tmp_path / "w"]), ("test", [tmp_path / "none.pth"])):
        code, _, err = cli(tool, [tiny_config(), *extra, "--device", "cuda"], capsys)
        line = error_line(err)
        assert code == 2 and "--device cuda: CUDA is not available" in line and "--device cpu" in line, line


def test_visualize_refuses_a_classification_config_naming_the_tasks_that_draw(tiny_config, tmp_path, capsys):
    ckpt_path = tmp_path / "c.pth"
    from densekd.models.simple import SimpleCNN

    torch.save(SimpleCNN(width=8).state_dict(), ckpt_path)
    code, _, err = cli("visualize", [tiny_config(), ckpt_path, "--device", "cpu"], capsys)
    line = error_line(err)
    assert code == 2 and "draws pictures for depth, segmentation configs only" in line and "'classification'" in line, line


# -- data loaders ---------------------------------------------------------------------------------------------------------
def _cifar_entry(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), "fine_labels": list(range(n)),
            "coarse_labels": [0] * n, "filenames": [f"{i}.png" for i in range(n)], "batch_label": "x"}


def test_cifar_reads_str_and_bytes_keyed_pickles(tmp_path):
    from densekd.data.cifar import CIFAR100

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    entry = _cifar_entry()
    with open(folder / "train", "wb") as f:  # as Python 3 tools write it after reading with encoding='bytes'
        pickle.dump({k.encode(): v for k, v in entry.items()}, f)
    with open(folder / "test", "wb") as f:
        pickle.dump(entry, f)
    names = [f"name{i}".encode() for i in range(100)]
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": names}, f)
    for split in ("train", "test"):
        ds = CIFAR100(str(tmp_path), split=split, augment=False)
        assert len(ds) == 6 and ds.targets == list(range(6)) and ds.class_names[1] == "name1"
        assert torch.allclose(ds[0]["image"], CIFAR100(str(tmp_path), split="test", augment=False)[0]["image"])


def test_truncated_cifar_pickle_names_the_file(tmp_path):
    from densekd.data.cifar import CIFAR100

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = pickle.dumps(_cifar_entry())
    (folder / "test").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"{folder / 'test'} is truncated .*download cifar-100-python.tar.gz again"):
        CIFAR100(str(tmp_path), split="test")


def test_test_tool_reads_only_the_split_it_evaluates(tiny_config, tmp_path, capsys):
    from densekd.data.cifar import write_cifar100_pickles
    from densekd.models.simple import SimpleCNN

    rng = np.random.default_rng(0)
    write_cifar100_pickles(tmp_path / "cifar", {"test": rng.integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)},
                           {"test": list(range(10))})  # no train file
    cfg = write_config(tmp_path / "real.py", f"_base_ = ['{tiny_config()}']\n"
                                             "data = dict(train=dict(_delete_=True, type='CIFAR100', split='train'),"
                                             " val=dict(_delete_=True, type='CIFAR100', split='test'))\n")
    torch.save(SimpleCNN(width=8).state_dict(), tmp_path / "w.pth")
    code, out, err = cli("test", [cfg, tmp_path / "w.pth", "--data-root", tmp_path / "cifar", "--device", "cpu"], capsys)
    assert code == 0, err
    assert set(json.loads(out[: out.index("}") + 1])) == {"top1", "top5"}


def test_loaders_never_ask_for_more_workers_than_cores(tiny_config, tmp_path):
    from densekd.data.sampling import build_loader

    usable_cores = lambda: len(os.sched_getaffinity(0))  # noqa: E731

    ds = torch.utils.data.TensorDataset(torch.arange(8.0))
    loader = build_loader(ds, 2, shuffle=False, seed=0, num_workers=usable_cores() + 6)
    assert loader.num_workers == usable_cores()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # DataLoader warns when asked for more workers than cores
        batches = list(loader)
    assert len(batches) == 4
    trainer = Trainer(load_config(tiny_config(epochs=1), [f"data.num_workers={usable_cores() + 6}"]),
                      tmp_path / "w", device="cpu")
    trainer.close()
    assert f"using {usable_cores()} loader processes" in (tmp_path / "w" / "train.log").read_text()


def test_disk_full_error_names_the_checkpoint(tmp_path, monkeypatch):
    from densekd.engine import checkpoint

    CheckpointError = checkpoint_error()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, "fsync", full)
    (tmp_path / "last.pth").write_bytes(b"old")
    with pytest.raises(OSError) as err:
        checkpoint.atomic_save({"a": 1}, tmp_path / "last.pth")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "last.pth")
    assert (tmp_path / "last.pth").read_bytes() == b"old" and os.listdir(tmp_path) == ["last.pth"]
    with pytest.raises(CheckpointError):
        load_weights(torch.nn.Linear(2, 2), tmp_path / "last.pth")
