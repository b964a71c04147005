"""torchrun with 2 CPU processes (gloo) trains the same weights as 1 process with the same global batch."""
import json
import os
import subprocess
import sys

import torch

from tests.conftest import ROOT


def test_two_processes_match_one(tiny_config, tmp_path):
    cfg = tiny_config(norm="gn", batch=8, epochs=2)  # GroupNorm: per-sample, so batch splitting is exact
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), str(cfg), "--work-dir", str(tmp_path / "one"),
                          "--device", "cpu"], capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
                          str(ROOT / "tools/train.py"), str(cfg), "--work-dir", str(tmp_path / "two"), "--device", "cpu"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    w1 = torch.load(tmp_path / "one/checkpoints/last.pth", weights_only=False)
    w2 = torch.load(tmp_path / "two/checkpoints/last.pth", weights_only=False)
    assert w2["world_size"] == 2 and w1["iter"] == w2["iter"] == 12
    gap = max((v - w2["model"][k]).abs().max().item() for k, v in w1["model"].items())
    # float32 reduction order (and thread count) perturbs the last bits; 12 SGD steps amplify that to ~1e-5.
    # A run that saw different batches is 100x further away, so this tolerance can tell them apart:
    other = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), str(cfg), "--work-dir",
                            str(tmp_path / "other"), "--device", "cpu", "--cfg-options", "data.batch_size=4"],
                           capture_output=True, text=True, timeout=600, env=env)
    assert other.returncode == 0, other.stderr[-3000:]
    w3 = torch.load(tmp_path / "other/checkpoints/last.pth", weights_only=False)["model"]
    wrong_gap = max((v - w3[k]).abs().max().item() for k, v in w1["model"].items())
    assert gap < 5e-4 < wrong_gap / 10, (gap, wrong_gap)
    s1 = json.loads((tmp_path / "one/summary.json").read_text())
    s2 = json.loads((tmp_path / "two/summary.json").read_text())
    assert s2["world_size"] == 2
    assert abs(s1["final"]["top1"] - s2["final"]["top1"]) < 1e-6  # metrics reduced over both ranks' shards
    # only rank 0 writes: one line per log step, not two
    iters = [json.loads(x)["iter"] for x in (tmp_path / "two/metrics.jsonl").read_text().splitlines()
             if "split" not in json.loads(x)]
    assert iters == sorted(set(iters))


def one_and_two_processes(cfg, tmp_path, port, args=("--seed", "0")):
    """The same config trained by 1 process and by 2 under torchrun (same global batch, ``args`` added to both
    command lines): the two checkpoints."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = [str(ROOT / "tools/train.py"), str(cfg), "--device", "cpu", *args, "--synthetic"]
    one = subprocess.run([sys.executable] + base + ["--work-dir", str(tmp_path / "one")], capture_output=True,
                         text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]
                         + base + ["--work-dir", str(tmp_path / "two")], capture_output=True, text=True, timeout=600,
                         env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    return [torch.load(tmp_path / f"{n}/checkpoints/last.pth", weights_only=False) for n in ("one", "two")]


def test_two_stage_distillation_under_torchrun_matches_one_process(tiny_config, tmp_path):
    """FT: the initialisation stage averages gradients by hand, the main stage has idle parts (paraphraser)."""
    extra = ("teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=16, norm='gn'))\n"
             "distill = [dict(type='FT', student='feats[-2]', teacher='feats[-2]', weight=200),\n"
             "           dict(type='KD', T=4, weight=0.9)]\n"
             "train = dict(epochs=1, log_interval=2)\nstrategy = dict(init_epochs=1, init_lr=0.01)\n")
    a, b = one_and_two_processes(tiny_config(norm="gn", batch=8, extra=extra), tmp_path, 29532, args=())
    assert a["phase_iters"]["init"] == b["phase_iters"]["init"] == 6 and a["iter"] == b["iter"] == 6
    # The paraphraser trains only in the initialisation stage (gradients averaged across ranks by the trainer)
    # and stays frozen in the main stage, where DDP must tolerate it being idle.
    a, b = a["strategy"], b["strategy"]
    para = [k for k in a["distill"] if "paraphraser" in k and a["distill"][k].is_floating_point()]
    assert para
    for k in para:
        assert torch.allclose(a["distill"][k], b["distill"][k], atol=1e-6), k
    # (The student is not compared: FT's translator has BatchNorm, which sees each rank's half batch
    # unless train.sync_bn=True, and SyncBatchNorm runs on CUDA only.)
    assert json.loads((tmp_path / "two/summary.json").read_text())["completed"]



_TEARDOWN_SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tools!r})
import train

def threads():
    return sorted(open(f'/proc/self/task/{{t}}/comm').read().strip() for t in os.listdir('/proc/self/task'))

before = threads()
train.main([{cfg!r}, '--work-dir', {work!r}, '--device', 'cpu'])
print('THREADS', before, threads(), flush=True)
"""


def test_train_ends_the_process_groups_threads(tiny_config, tmp_path):
    """tools/train.py must end the gloo group's worker threads before it returns, not leave the group to
    interpreter finalisation, where a worker freeing a finished collective aborts a successful run
    ("terminate called without an active exception", SIGABRT, torchrun exit 1) now and then."""
    cfg = tiny_config(norm="gn", batch=8, epochs=1)
    script = tmp_path / "run_train.py"
    script.write_text(_TEARDOWN_SCRIPT.format(root=str(ROOT), tools=str(ROOT / "tools"), cfg=str(cfg),
                                              work=str(tmp_path / "work")))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_port=29533", str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    ends = [line for line in run.stdout.splitlines() if line.startswith("THREADS")]
    assert len(ends) == 2, run.stdout[-2000:]
    for line in ends:
        before, after = line[len("THREADS "):].split("] [")
        assert "gloo" not in after, line  # no pt_gloo_runloop / gloo_tcp_loop left running


def test_crd_under_torchrun_keeps_the_one_process_banks(tiny_config, tmp_path):
    """CRD's banks are not broadcast by DDP: every rank applies the all-gathered update, which must give the
    banks of a one-process run with the same global batch (up to float reduction order)."""
    extra = ("teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=16, norm='gn'))\n"
             "distill = [dict(type='CRD', student='feats[-1]', teacher='feats[-1]', feat_dim=16, nce_k=8, "
             "weight=0.8)]\n"
             "data = dict(train=dict(_delete_=True, type='CRDSampleDataset', nce_k=8, mode='exact', sampling='any',"
             " dataset=dict(type='SyntheticCIFAR100', split='train', num_samples=48)))\n"
             "train = dict(epochs=1, log_interval=2)\n")
    a, b = (ckpt["strategy"]["distill"] for ckpt in
            one_and_two_processes(tiny_config(norm="gn", batch=8, extra=extra), tmp_path, 29534))
    banks = [k for k in a if k.endswith(("memory_s", "memory_t"))]
    assert len(banks) == 2
    for k in banks:
        moved = (a[k] != b[k]).any(1)
        assert torch.allclose(a[k], b[k], atol=1e-4), (k, moved.sum())


def assert_close_state(a: dict, b: dict, keys, atol=5e-4):
    keys = list(keys)
    assert keys
    for k in keys:
        assert torch.allclose(a[k].float(), b[k].float(), atol=atol), (k, (a[k].float() - b[k].float()).abs().max())


def test_holistic_critic_under_torchrun_matches_one_process(tiny_config, tmp_path):
    """The adversarial term's critic steps outside DDP's forward: its gradients are averaged by hand, so the
    2-process critic (and student) equal the 1-process ones. Without the gradient penalty (``gp_weight=0``),
    whose interpolation weights each process draws for itself, and without the critic's BatchNorm (per-process
    batch statistics, as in any DDP model without sync_bn), nothing is left to differ."""
    extra = ("teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=8, norm='gn'))\n"
             "distill = [dict(type='KD', T=4, weight=0.9),\n"
             "           dict(type='HolisticKD', student='feats[1]', teacher='feats[1]', weight=0.1, d_lr=1e-3, gp_weight=0, preprocess='tanh')]\n"
             "train = dict(epochs=1, log_interval=2)\n")
    a, b = one_and_two_processes(tiny_config(norm="gn", batch=8, extra=extra), tmp_path, 29535)
    critic = [k for k in a["strategy"]["distill"] if "discriminator" in k and a["strategy"]["distill"][k].is_floating_point()]
    assert_close_state(a["strategy"]["distill"], b["strategy"]["distill"], critic)
    assert_close_state(a["model"], b["model"], a["model"])


def test_mutual_learning_under_torchrun_matches_one_process(tiny_config, tmp_path):
    """A multi-student strategy: every cohort member's weights after 2-process training equal 1-process ones."""
    extra = ("strategy = dict(type='mutual_learning', peers=[dict(type='simple_cnn', num_classes=100, width=4, "
             "norm='gn')], peer_loss=dict(type='KD', T=1.0), weight=1.0)\n"
             "train = dict(epochs=1, log_interval=2)\n")
    a, b = one_and_two_processes(tiny_config(norm="gn", batch=8, extra=extra), tmp_path, 29536)
    assert set(a["models"]) == {"student", "peer1"}
    for name in a["models"]:
        assert_close_state(a["models"][name], b["models"][name], a["models"][name])
