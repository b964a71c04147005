"""GPU fast paths that can be checked on the CPU: no value read back from the device per training step with
deferred finiteness checks (train.check_finite='interval'), failures still stop the run and never reach a
checkpoint, and train.compile compiles the student in place."""
import math

import pytest
import torch

from densekd.config import load_config
from densekd.engine.step import NonFiniteGuard, NonFiniteLossError, check_finite_mode
from densekd.engine.trainer import Trainer
from tests.readbacks import KD_AT, TEACHER, counting_readbacks

def trainer_for(tiny_config, tmp_path, extra, **kwargs):
    cfg = load_config(tiny_config(extra=extra), kwargs.pop("options", []))
    return Trainer(cfg, tmp_path / "w", device="cpu", synthetic=True, **kwargs)


@pytest.mark.parametrize("mode, silent", [("interval", True), ("step", False)])
def test_training_steps_read_nothing_back_with_deferred_checks(tiny_config, tmp_path, mode, silent):
    """KD + AT steps: with deferred checks no tensor value is copied to the host inside a step (the counter
    does see the per-step checks of mode 'step', so it can fail)."""
    trainer = trainer_for(tiny_config, tmp_path, KD_AT, options=[f"train.check_finite={mode!r}"])
    batches = trainer.batches(0)
    trainer.train_iteration(next(batches))  # first step: lazily built state
    batch = next(batches)
    with counting_readbacks() as counts:
        for _ in range(3):
            losses = trainer.train_iteration(batch)
    assert set(losses) >= {"loss", "loss/KD", "loss/AT"}
    assert (sum(counts.values()) == 0) is silent, counts


def test_crd_reads_its_normaliser_back_once(tmp_path):
    """CRD's Z is estimated on the first batch; later calls use it without reading it back (``item``)."""
    from densekd.losses.contrastive import CRD

    crd = CRD(s_shapes=[torch.Size([4, 8])], t_shapes=[torch.Size([4, 8])], num_data=32, feat_dim=4, nce_k=5)
    s, t = torch.randn(4, 8), torch.randn(4, 8)
    idx = torch.arange(4)
    crd(s, t, index=idx, contrast_idx=torch.randint(0, 32, (4, 6)))
    with counting_readbacks() as counts:
        for _ in range(3):
            crd(s, t, index=idx, contrast_idx=torch.randint(0, 32, (4, 6)))
    assert counts["item"] == 0 and float(crd.z_s) > 0
    crd.load_state_dict({k: (torch.tensor(-1.0) if k.startswith("z_") else v) for k, v in crd.state_dict().items()})
    crd(s, t, index=idx, contrast_idx=torch.randint(0, 32, (4, 6)))  # an unset Z loaded: estimated again
    assert float(crd.z_s) > 0


def poison(trainer, at_call):
    """Make the distiller's losses NaN from its ``at_call``-th forward on."""
    distiller, calls = trainer.strategy.distiller, [0]
    forward = distiller.forward

    def bad_forward(batch):
        calls[0] += 1
        out, losses = forward(batch)
        if calls[0] >= at_call:
            losses = {k: v * math.nan for k, v in losses.items()}
        return out, losses

    distiller.forward = bad_forward


def test_deferred_failure_names_the_first_bad_iteration_and_no_checkpoint_holds_it(tiny_config, tmp_path):
    trainer = trainer_for(tiny_config, tmp_path, KD_AT, options=[
        "train.check_finite='interval'", "train.epochs=None", "train.iters=12", "train.log_interval=100",
        "train.eval_interval=4", "train.checkpoint_interval=4"])
    poison(trainer, at_call=6)
    with pytest.raises(NonFiniteLossError, match="non-finite loss first at iteration 6;.*last checkpoint is the last "
                                                 "good one.*check_finite='step' with train.skip_nonfinite=True"):
        trainer.train()
    ckpt = torch.load(tmp_path / "w/checkpoints/last.pth", map_location="cpu", weights_only=False)
    assert ckpt["iter"] == 4  # the checkpoint due at iteration 8 was refused, not written from NaN weights
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    with pytest.raises(NonFiniteLossError):  # a failed flush fails again: nothing is saved after it
        trainer.save()
    assert torch.load(tmp_path / "w/checkpoints/last.pth", map_location="cpu", weights_only=False)["iter"] == 4


def test_step_mode_still_stops_at_the_bad_iteration(tiny_config, tmp_path):
    trainer = trainer_for(tiny_config, tmp_path, KD_AT, options=["train.check_finite='step'"])
    poison(trainer, at_call=2)
    with pytest.raises(NonFiniteLossError, match="Non-finite loss at iteration 2"):
        trainer.train()


def test_check_finite_modes():
    assert check_finite_mode("auto", on_cuda=True, skip_nonfinite=False) == "interval"
    assert check_finite_mode("auto", on_cuda=True, skip_nonfinite=True) == "step"
    assert check_finite_mode("auto", on_cuda=False, skip_nonfinite=False) == "step"
    with pytest.raises(ValueError, match="cannot skip single steps"):
        check_finite_mode("interval", on_cuda=True, skip_nonfinite=True)
    with pytest.raises(ValueError, match="must be one of 'auto', 'step', 'interval'"):
        check_finite_mode("sometimes", on_cuda=True, skip_nonfinite=False)
    guard = NonFiniteGuard(deferred=True)
    for it, bad in enumerate([False, False, True, True]):
        guard.defer(torch.tensor(bad), 1, it)
    with pytest.raises(NonFiniteLossError, match="non-finite gradients first at iteration 3"):
        guard.flush()
    clean = NonFiniteGuard(deferred=True)
    clean.defer(torch.tensor(False), 0, 0)
    clean.flush()


def test_compile_keeps_parameter_names_taps_and_losses(tiny_config, tmp_path):
    """train.compile (eager backend: dynamo traces the student with its tap hooks) gives the same losses as an
    uncompiled run and checkpoints with the same keys."""
    runs = {}
    for name, opts in (("eager", []), ("compiled", ["train.compile={'backend': 'eager'}"])):
        torch._dynamo.reset()
        trainer = Trainer(load_config(tiny_config(extra=KD_AT), opts + ["train.epochs=None", "train.iters=3"]),
                          tmp_path / name, device="cpu", synthetic=True)
        batches = trainer.batches(0)
        runs[name] = [trainer.train_iteration(next(batches)) for _ in range(3)]
        trainer.save()
        runs[name + "_keys"] = sorted(torch.load(tmp_path / name / "checkpoints/last.pth", weights_only=False)["model"])
        runs[name + "_compiled"] = trainer.compiled
    assert runs["compiled_compiled"] == ["student"] and runs["eager_compiled"] == []
    assert runs["compiled_keys"] == runs["eager_keys"] and not any("_orig_mod" in k for k in runs["compiled_keys"])
    for a, b in zip(runs["eager"], runs["compiled"]):
        assert set(a) == set(b)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="train.compile must be True or a dict"):
        Trainer(load_config(tiny_config(extra=KD_AT), ["train.compile={'backnd': 'eager'}"]), tmp_path / "x",
                device="cpu", synthetic=True)


from densekd.registry import LOSSES  # noqa: E402


@LOSSES.register("_RecordPrecision")
class RecordPrecision(torch.nn.Module):
    """A test term that records the dtype of what it receives and whether autocast is on inside it."""
    seen: list = []

    def __init__(self, **_):
        super().__init__()

    def forward(self, student, teacher, **extra):
        RecordPrecision.seen.append((student.dtype, teacher.dtype, torch.is_autocast_enabled("cpu")))
        return (student.float() - teacher.float()).pow(2).mean()


def test_terms_run_in_float32_on_float32_taps_under_autocast(tiny_config, tmp_path):
    """Under bf16 autocast (CPU autocast stands in for CUDA's) the networks run in bf16, every term gets float32
    tensors with autocast off inside it, and KD equals its formula on the bf16 logits cast up."""
    extra = TEACHER + "distill = [dict(type='_RecordPrecision', weight=1.0), dict(type='KD', T=4, weight=1.0)]\n"
    trainer = trainer_for(tiny_config, tmp_path, extra)
    batch = next(trainer.batches(0))
    distiller = trainer.strategy.distiller
    RecordPrecision.seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, losses = distiller(batch)
        with torch.no_grad():
            t_logits = distiller.teachers[0](batch["image"])
    assert output.dtype == torch.bfloat16 and t_logits.dtype == torch.bfloat16
    assert RecordPrecision.seen == [(torch.float32, torch.float32, False)]
    assert losses["KD"].dtype == torch.float32
    s, t = output.detach().float() / 4, t_logits.float() / 4
    want = (t.softmax(1) * (t.log_softmax(1) - s.log_softmax(1))).sum(1).mean() * 16
    torch.testing.assert_close(losses["KD"].detach(), want, rtol=1e-5, atol=1e-6)


def test_gpu_check_script_is_valid_bash_and_says_in_one_line_when_there_is_no_gpu(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = ROOT / "tools/gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: tools/gpu_check.sh would run in full")
    out = subprocess.run(["bash", str(script), str(tmp_path / "gc")], capture_output=True, text=True, timeout=120,
                         env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1 and out.stdout.strip().splitlines() == [
        "[gpu_check] no usable CUDA device: AssertionError: no CUDA device"]


def test_losses_without_their_own_init_still_build_after_dynamo_patched_module_init():
    """torch.compile (dynamo) replaces nn.Module.__init__; the registry must still see that SP takes no
    arguments, so a pipeline stage after a compiled one builds its terms."""
    import torch._dynamo  # noqa: F401 - installs dynamo's Module.__init__

    from densekd.registry import LOSSES, signature_params

    torch._dynamo.reset()
    torch.compile(torch.nn.Linear(2, 2), backend="eager")(torch.zeros(1, 2))
    assert signature_params(LOSSES.get("SP")) == ([], False)
    sp = LOSSES.build(dict(type="SP"), s_shapes=[torch.Size([2, 4, 3, 3])], num_classes=10)
    assert isinstance(sp, torch.nn.Module)
