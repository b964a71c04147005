"""Multi-stage pipelines: stage order, checkpoint hand-over, skip / resume, the table, start-up errors, the CLI."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from densekd.config import load_config
from densekd.engine.builder import build_teachers
from densekd.pipelines import PipelineError, PipelineRunner, load_pipeline, stage_state
from densekd.registry import LOSSES

ROOT = Path(__file__).resolve().parents[1]
TOOL = [sys.executable, str(ROOT / "tools/pipeline.py")]

TEACHER_MODEL = "model = dict(type='simple_cnn', num_classes=100, width=16, norm='bn')\n"
STUDENT_EXTRA = """
teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=16, norm='bn'), checkpoint=None)
distill = [dict(type='KD', T=4, weight=0.9)]
task_weight = 0.1
"""
TWO_STAGES = """
stages = [
    dict(name='teacher', config='{teacher}'),
    dict(name='student', config='{student}', cfg_options=dict(REFS)),
]
"""


@LOSSES.register("_PipelineSigterm")
class SigtermOnce(nn.Module):
    """Test-only term: while ``marker`` exists, SIGTERMs its own process at its ``after``-th call (an
    interruption mid-stage; the trainer saves last.pth and exits 143), deleting the marker first."""

    def __init__(self, after=3, marker=""):
        super().__init__()
        self.after, self.marker, self.calls = after, Path(marker), 0

    def forward(self, student, teacher, **extra):
        self.calls += 1
        if self.calls == self.after and self.marker.is_file():
            self.marker.unlink()
            os.kill(os.getpid(), signal.SIGTERM)
        return student.sum() * 0


def write_pipeline(tmp_path, tiny_config, student_extra="", refs="{'teacher.checkpoint': '{teacher.best}'}",
                   text=None, name="pipe.py"):
    teacher = tiny_config("teacher.py", extra=TEACHER_MODEL)
    student = tiny_config("student.py", extra=STUDENT_EXTRA + student_extra)
    body = (text or TWO_STAGES).replace("{teacher}", str(teacher)).replace("{student}", str(student))
    if "{big}" in body:
        body = body.replace("{big}", str(tiny_config("big.py", extra="model = dict(type='resnet20', num_classes=100)\n")))
    path = tmp_path / name
    path.write_text(body.replace("dict(REFS)", refs))
    return path


def run(path, work_dir, **kw):
    pipe = load_pipeline(path, work_dir=str(work_dir), only=kw.get("only", ()))
    lines = []
    runner = PipelineRunner(pipe, device="cpu", log=lines.append, **kw)
    return runner.run(), lines


def model_weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished two-stage run (teacher, then a KD student taught by the teacher's best.pth)."""
    from conftest import TINY_CIFAR, write_config

    tmp = tmp_path_factory.mktemp("pipe")

    def maker(name="tiny.py", extra=""):
        text = TINY_CIFAR.format(root=ROOT, norm="bn", n_train=48, n_val=32, batch=8, epochs=2)
        return write_config(tmp / name, text + extra)

    path = write_pipeline(tmp, maker)
    results, lines = run(path, tmp / "work")
    return path, tmp / "work", results, lines


def test_stages_run_in_order_and_the_student_is_taught_by_the_teachers_best_checkpoint(finished):
    _path, work, results, lines = finished
    assert [(r.name, r.status) for r in results] == [("teacher", "trained"), ("student", "trained")]
    starts = [i for i, line in enumerate(lines) if ": training " in line]
    assert len(starts) == 2 and "'teacher'" in lines[starts[0]] and "'student'" in lines[starts[1]]
    best = work / "teacher" / "checkpoints" / "best.pth"
    # the resolved config of stage 2 names exactly stage 1's best.pth ...
    cfg = load_config(work / "student" / "config.py")
    assert cfg["teacher"]["checkpoint"] == str(best)
    # ... and the teacher built from it carries best.pth's weights (strict: synthetic=False raises if missing)
    (teacher,), _, untrained = build_teachers(cfg, synthetic=False)
    assert untrained == [False]
    for k, v in model_weights(best).items():
        assert torch.equal(teacher.state_dict()[k], v), k
    for stage in ("teacher", "student"):
        summary = json.loads((work / stage / "summary.json").read_text())
        assert summary["completed"] and summary["iters"] == summary["total_iters"] == 12
    assert "not found" not in (work / "student" / "train.log").read_text()


def test_table_lists_every_stage_with_its_metric(finished):
    _path, work, results, lines = finished
    data = json.loads((work / "pipeline.json").read_text())
    assert data["status"] == "done" and [s["stage"] for s in data["stages"]] == ["teacher", "student"]
    for row, stage in zip(data["stages"], ("teacher", "student")):
        summary = json.loads((work / stage / "summary.json").read_text())
        assert row["primary_metric"] == "top1"
        assert row["final"] == summary["final"]["top1"] and row["best"] == summary["best"]["top1"]
        assert row["iters"] == 12 and row["completed"] is True and row["work_dir"] == str(work / stage)
    md = (work / "pipeline.md").read_text().splitlines()
    header = next(line for line in md if line.startswith("| stage"))
    for col in ("config", "metric", "final", "best", "iterations", "completed", "time", "work dir"):
        assert col in header
    rows = [line for line in md if line.startswith("| teacher") or line.startswith("| student")]
    assert len(rows) == 2
    for row, r in zip(rows, data["stages"]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert "top1" in cells and f"{r['final']:.2f}" in cells and f"{r['best']:.2f}" in cells and "12/12" in cells
    # each finished stage was reported with its primary metric as it finished
    done = [line for line in lines if " trained: top1 final " in line]
    assert len(done) == 2 and ", best " in done[0]


def test_rerun_skips_finished_stages_without_touching_them(finished):
    path, copy, _results, _lines = finished
    files = [copy / s / f for s in ("teacher", "student")
             for f in ("summary.json", "checkpoints/best.pth", "checkpoints/last.pth", "train.log")]
    before = {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}
    results, lines = run(path, copy)
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert sum("already finished" in line for line in lines) == 2
    assert not any("WARNING" in line for line in lines), lines
    assert {f: (f.stat().st_mtime_ns, f.read_bytes()) for f in files} == before
    assert [s["status"] for s in json.loads((copy / "pipeline.json").read_text())["stages"]] == ["skipped"] * 2
    # an upstream checkpoint rewritten after the student finished: still skipped, with a warning
    best = copy / "teacher" / "checkpoints" / "best.pth"
    later = (copy / "student" / "summary.json").stat().st_mtime + 10
    os.utime(best, (later, later))
    results, lines = run(path, copy)
    assert [r.status for r in results] == ["skipped", "skipped"]
    assert any("WARNING stage 'student'" in line and "{teacher.best}" in line for line in lines)


def test_interrupted_stage_resumes_and_finished_stage_is_skipped(tiny_config, tmp_path):
    marker = tmp_path / "interrupt-once"
    marker.touch()
    extra = f"distill = [dict(type='KD', T=4, weight=0.9), dict(type='_PipelineSigterm', after=4, marker={str(marker)!r})]\n"
    path = write_pipeline(tmp_path, tiny_config, student_extra=extra)
    work = tmp_path / "work"
    with pytest.raises(SystemExit) as exc:
        run(path, work)
    assert exc.value.code == 128 + signal.SIGTERM
    student = work / "student"
    assert not (student / "summary.json").exists()
    assert torch.load(student / "checkpoints" / "last.pth", weights_only=False)["iter"] == 4
    assert stage_state(student).status == "resume" and stage_state(work / "teacher").status == "finished"
    report = json.loads((work / "pipeline.json").read_text())
    assert report["status"] == "interrupted"
    assert [s["status"] for s in report["stages"]] == ["trained", "interrupted"]
    teacher_summary = (work / "teacher" / "summary.json").read_bytes()

    results, lines = run(path, work)
    assert [r.status for r in results] == ["skipped", "resumed"]
    assert any("stage 'student': resuming" in line for line in lines)
    assert "Resumed from" in (student / "train.log").read_text()
    summary = json.loads((student / "summary.json").read_text())
    assert summary["completed"] and summary["iters"] == 12
    assert (work / "teacher" / "summary.json").read_bytes() == teacher_summary


def test_max_iters_smoke_run_counts_as_finished_for_the_same_budget_only(tiny_config, tmp_path):
    path = write_pipeline(tmp_path, tiny_config)
    work = tmp_path / "work"
    results, _ = run(path, work, max_iters=2)
    assert [r.status for r in results] == ["trained", "trained"]
    assert [r.summary["iters"] for r in results] == [2, 2]
    results, _ = run(path, work, max_iters=2)
    assert [r.status for r in results] == ["skipped", "skipped"]
    results, _ = run(path, work, max_iters=3, only=["teacher"])  # a larger budget continues the stage
    assert [r.status for r in results] == ["resumed", "not selected"]
    assert results[0].summary["iters"] == 3


def test_only_a_stage_whose_input_is_missing_fails_naming_the_earlier_stage(tiny_config, tmp_path):
    path = write_pipeline(tmp_path, tiny_config)
    work = tmp_path / "work"
    with pytest.raises(PipelineError, match=r"stage 'student' reads \{teacher\.best\}.*stage 'teacher' has not "
                                            r"finished.*add teacher to --only"):
        run(path, work, only=["student"])
    assert not (work / "student").exists()
    # a finished earlier stage whose best.pth went missing
    run(path, work, max_iters=1, only=["teacher"])
    (work / "teacher" / "checkpoints" / "best.pth").unlink()
    (work / "teacher" / "summary.json").write_text(json.dumps(
        {**json.loads((work / "teacher" / "summary.json").read_text()), "completed": True}))
    with pytest.raises(PipelineError, match=r"\{teacher\.best\}.*does not exist although stage 'teacher' has "
                                            r"finished"):
        run(path, work, only=["student"])


BAD = {
    "reference to itself": (dict(refs="{'teacher.checkpoint': '{student.best}'}"),
                          r"\{student\.best\}.*'student' itself"),
    "forward reference": (dict(text="""
stages = [dict(name='a', config='{teacher}', cfg_options=['train.epochs=1', 'work_dir={b.work_dir}']),
          dict(name='b', config='{teacher}')]
"""), r"stage 'a' cfg_options: \{b\.work_dir\} references stage 'b', which runs after 'a'.*none, it is the "
      r"first stage"),
    "unknown stage": (dict(refs="{'teacher.checkpoint': '{teachr.best}'}"),
                      r"\{teachr\.best\} names no stage.*Did you mean 'teacher'.*Stages before 'student': teacher"),
    "unknown field": (dict(refs="{'teacher.checkpoint': '{teacher.bset}'}"),
                      r"unknown field 'bset'.*\{STAGE\.best\}, \{STAGE\.last\}, \{STAGE\.work_dir\} or \{STAGE\.data\}"),
    "duplicate name": (dict(text="stages = [dict(name='t', config='{teacher}'), dict(name='t', config='{teacher}')]\n"),
                       r"duplicate stage name 't'"),
    "unknown stage key": (dict(text="stages = [dict(name='t', config='{teacher}', cfg_option=['seed=1'])]\n"),
                          r"stage 't': unknown stage key 'cfg_option'.*Did you mean 'cfg_options'.*Valid keys"),
    "unknown pipeline key": (dict(text="stage = [dict(name='t', config='{teacher}')]\n"),
                             r"Unknown pipeline key 'stage'.*Did you mean 'stages'"),
    "missing config file": (dict(text="stages = [dict(name='t', config='configs/nope.py')]\n"),
                            r"stage 't'.*config file 'configs/nope.py' not found"),
    "bad stage option": (dict(refs="{'teacher.checkpoint': '{teacher.best}', 'optimizer.lrr': 0.1}"),
                         r"stage 'student'.*Unknown config key 'optimizer.lrr' \(set in .*stage 'student' "
                         r"cfg_options\).*Did you mean 'lr'"),
    "reference in pipeline-wide options": (dict(text="""
stages = [dict(name='a', config='{teacher}'), dict(name='b', config='{teacher}')]
cfg_options = {'work_dir': '{a.work_dir}'}
"""), r"applies to every stage.*put it in the cfg_options of the stage"),
    "teacher model unlike the stage it reads": (dict(text="""
stages = [dict(name='big', config='{big}'),
          dict(name='student', config='{student}', cfg_options={'teacher.checkpoint': '{big.best}'})]
"""), r"stage 'student': teacher.checkpoint is \{big\.best\}.*'resnet20'.*, but teacher.model.type is 'simple_cnn'"),
    "options as a string": (dict(refs="'teacher.checkpoint={teacher.best}'"),
                            r"cfg_options must be a list of 'key=value' strings or a dict"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_startup_errors_are_clear_and_nothing_trains(case, tiny_config, tmp_path):
    kw, pattern = BAD[case]
    path = write_pipeline(tmp_path, tiny_config, **kw)
    with pytest.raises(PipelineError, match=pattern):
        load_pipeline(path, work_dir=str(tmp_path / "work"))
    assert not (tmp_path / "work").exists()


def test_unknown_only_name_and_cli_errors_are_one_line_exit_2(tiny_config, tmp_path):
    path = write_pipeline(tmp_path, tiny_config, refs="{'teacher.checkpoint': '{student.last}'}")
    work = tmp_path / "work"
    out = subprocess.run(TOOL + [str(path), "--work-dir", str(work)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1 and "{student.last}" in out.stderr
    assert not work.exists()
    good = write_pipeline(tmp_path, tiny_config, name="good.py")
    with pytest.raises(PipelineError, match=r"--only studnt: no such stage.*Did you mean 'student'"):
        load_pipeline(good, only=["studnt"])
    out = subprocess.run(TOOL + [str(good), "--work-dir", str(work), "--cfg-options", "optimizer.lrr=1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "optimizer.lrr" in out.stderr
    assert "stage 'teacher'" in out.stderr and not work.exists()


def test_work_dir_default_and_seed_mirror_train_py(tiny_config, tmp_path):
    path = write_pipeline(tmp_path, tiny_config)
    pipe = load_pipeline(path)
    assert pipe.work_dir == Path("work_dirs/pipe") and pipe.stage("student").work_dir == Path("work_dirs/pipe/student")
    pipe = load_pipeline(path, seed=3, cli_options=["optimizer.lr=0.01"])
    assert pipe.work_dir == Path("work_dirs/pipe/seed3")
    assert all(s.cfg["seed"] == 3 and s.cfg["optimizer"]["lr"] == 0.01 for s in pipe.stages)
    assert pipe.stage("student").cfg["teacher"]["checkpoint"] == "work_dirs/pipe/seed3/teacher/checkpoints/best.pth"
    shipped = load_pipeline(ROOT / "configs/pipelines/cifar100_resnet56_resnet20_kd.py", synthetic=True)
    assert shipped.work_dir == Path("work_dirs/pipelines/cifar100_resnet56_resnet20_kd")


def test_takd_chain_config_hands_each_best_checkpoint_to_the_next_stage(tmp_path):
    work = tmp_path / "takd"
    shrink = ["data.batch_size=2", "data.val_batch_size=4", "data.train.num_samples=4", "data.val.num_samples=4",
              "data.num_workers=0"]
    pipe = load_pipeline(ROOT / "configs/pipelines/cifar100_takd_resnet110_resnet56_resnet20.py", synthetic=True,
                         work_dir=str(work), cli_options=shrink)
    assert pipe.names == ["teacher", "assistant", "student"]
    t, a, s = (pipe.stage(n).cfg for n in pipe.names)
    assert t["model"]["type"] == "resnet110" and "teacher" not in t
    assert a["model"]["type"] == "resnet56" and a["teacher"]["model"]["type"] == "resnet110"
    assert s["model"]["type"] == "resnet20" and s["teacher"]["model"]["type"] == "resnet56"
    assert a["teacher"]["checkpoint"] == str(work / "teacher/checkpoints/best.pth")
    assert s["teacher"]["checkpoint"] == str(work / "assistant/checkpoints/best.pth")
    assert [d["type"] for d in a["distill"]] == [d["type"] for d in s["distill"]] == ["KD"]
    # one iteration per stage; synthetic=False in the runner: a teacher checkpoint that is missing raises
    results = PipelineRunner(pipe, device="cpu", max_iters=1, log=lambda _msg: None).run()
    assert [(r.name, r.status, r.summary["iters"]) for r in results] == [
        ("teacher", "trained", 1), ("assistant", "trained", 1), ("student", "trained", 1)]
    for stage, src in (("assistant", "teacher"), ("student", "assistant")):
        (teacher,), _, _ = build_teachers(load_config(work / stage / "config.py"), synthetic=False)
        for k, v in model_weights(work / src / "checkpoints/best.pth").items():
            assert torch.equal(teacher.state_dict()[k], v), (stage, k)


def test_load_from_initialises_the_next_stage_from_the_best_checkpoint(tiny_config, tmp_path):
    text = """
stages = [dict(name='pretrain', config='{teacher}'),
          dict(name='finetune', config='{teacher}', cfg_options={'load_from': '{pretrain.best}', 'optimizer.lr': 0.0})]
"""
    pre = tiny_config("pre.py", norm=None, epochs=1)  # no BatchNorm: with lr 0 the weights cannot move
    path = tmp_path / "pipe.py"
    path.write_text(text.replace("{teacher}", str(pre)))
    results, _ = run(path, tmp_path / "work")
    assert [r.status for r in results] == ["trained", "trained"]
    best = model_weights(tmp_path / "work/pretrain/checkpoints/best.pth")
    after = model_weights(tmp_path / "work/finetune/checkpoints/last.pth")
    assert best.keys() == after.keys() and all(torch.equal(best[k], after[k]) for k in best)


def test_cli_runs_the_shipped_two_stage_cifar_pipeline(tmp_path):
    work = tmp_path / "work"
    shrink = ["data.batch_size=4", "data.val_batch_size=8", "data.train.num_samples=8", "data.val.num_samples=8",
              "data.num_workers=0"]
    out = subprocess.run(TOOL + [str(ROOT / "configs/pipelines/cifar100_resnet56_resnet20_kd.py"), "--synthetic",
                                 "--max-iters", "2", "--device", "cpu", "--work-dir", str(work),
                                 "--cfg-options", *shrink],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "stage 'teacher' trained: top1 final" in out.stdout and "stage 'student' trained: top1 final" in out.stdout
    assert "| teacher | configs/cifar100/teachers/resnet56.py | trained | top1 |" in out.stdout
    rows = json.loads((work / "pipeline.json").read_text())["stages"]
    assert [(r["stage"], r["iters"], r["max_iters"]) for r in rows] == [("teacher", 2, 2), ("student", 2, 2)]
    cfg = load_config(work / "student" / "config.py")
    assert cfg["teacher"]["checkpoint"] == str(work / "teacher" / "checkpoints" / "best.pth")
    assert cfg["model"]["type"] == "resnet20" and cfg["teacher"]["model"]["type"] == "resnet56"
    assert (work / "pipeline.md").is_file() and (work / "pipeline.log").is_file()


def test_pretrain_probe_finetune_config_freezes_features_and_hands_weights_on(tmp_path):
    work = tmp_path / "probe"
    # (the CRD stage wraps its training set, so the training sets keep their default synthetic size)
    shrink = ["data.batch_size=2", "data.val_batch_size=4", "data.val.num_samples=4", "data.num_workers=0"]
    pipe = load_pipeline(ROOT / "configs/pipelines/cifar100_crd_student_probe_finetune.py", synthetic=True,
                         work_dir=str(work), cli_options=shrink)
    assert pipe.names == ["teacher", "crd", "probe", "finetune"]
    probe, finetune = pipe.stage("probe").cfg, pipe.stage("finetune").cfg
    assert probe["load_from"] == str(work / "crd/checkpoints/best.pth")
    assert probe["freeze"] == ["conv1", "bn1", "layer1", "layer2", "layer3"]
    assert finetune["load_from"] == str(work / "probe/checkpoints/best.pth") and "freeze" not in finetune
    results = PipelineRunner(pipe, device="cpu", max_iters=1, log=lambda _msg: None).run()
    assert [r.status for r in results] == ["trained"] * 4
    crd = model_weights(work / "crd/checkpoints/best.pth")
    probed = model_weights(work / "probe/checkpoints/last.pth")
    for k, v in probed.items():  # the probe trains the classifier only, on the distilled student's features
        assert torch.equal(v, crd[k]) != k.startswith("fc."), k


def test_kd_chain_builds_any_number_of_assistants():
    from densekd.pipelines.chains import kd_chain

    pipe = load_pipeline(ROOT / "configs/pipelines/cifar100_takd_resnet110_to_resnet8.py", synthetic=True)
    chain = ["resnet110", "resnet56", "resnet32", "resnet20", "resnet14", "resnet8"]
    assert pipe.names == chain
    for prev, name in zip(chain, chain[1:]):
        cfg = pipe.stage(name).cfg
        assert cfg["model"]["type"] == name and cfg["teacher"]["model"]["type"] == prev
        assert cfg["teacher"]["checkpoint"].endswith(f"{prev}/checkpoints/best.pth")
        assert [d["type"] for d in cfg["distill"]] == ["KD"]
    assert "teacher" not in pipe.stage("resnet110").cfg
    direct = load_pipeline(ROOT / "configs/pipelines/cifar100_takd_resnet110_resnet8_direct.py", synthetic=True)
    assert direct.names == ["resnet110", "resnet8"]
    with pytest.raises(ValueError, match="unique stage names"):
        kd_chain(["resnet20", "resnet20"], teacher_config="t.py", stage_config="s.py")
    with pytest.raises(ValueError, match="at least one student"):
        kd_chain(["resnet20"], teacher_config="t.py", stage_config="s.py")


def test_chain_interrupted_in_the_assistant_stage_resumes_there_then_teaches_the_student(tiny_config, tmp_path):
    marker = tmp_path / "interrupt-once"
    marker.touch()
    teacher = tiny_config("teacher.py", extra=TEACHER_MODEL)
    assistant = tiny_config("assistant.py", extra=STUDENT_EXTRA + (
        f"distill = [dict(type='KD', T=4, weight=0.9), dict(type='_PipelineSigterm', after=4, "
        f"marker={str(marker)!r})]\n"))
    student = tiny_config("student.py", extra=STUDENT_EXTRA)
    path = tmp_path / "chain.py"
    path.write_text(f"""
stages = [
    dict(name='teacher', config='{teacher}'),
    dict(name='assistant', config='{assistant}', cfg_options={{'teacher.checkpoint': '{{teacher.best}}'}}),
    dict(name='student', config='{student}', cfg_options={{'teacher.checkpoint': '{{assistant.best}}',
                                                          'teacher.model.width': 8}}),
]
""")
    work = tmp_path / "work"
    with pytest.raises(SystemExit) as exc:
        run(path, work)
    assert exc.value.code == 128 + signal.SIGTERM
    assert stage_state(work / "teacher").status == "finished"
    assert stage_state(work / "assistant").status == "resume"
    assert torch.load(work / "assistant/checkpoints/last.pth", weights_only=False)["iter"] == 4
    assert not (work / "student").exists()  # nothing after the interrupted stage started
    teacher_best = (work / "teacher/checkpoints/best.pth").read_bytes()

    results, lines = run(path, work)
    assert [r.status for r in results] == ["skipped", "resumed", "trained"]
    assert (work / "teacher/checkpoints/best.pth").read_bytes() == teacher_best
    assert json.loads((work / "assistant/summary.json").read_text())["iters"] == 12
    (teach,), _, _ = build_teachers(load_config(work / "student/config.py"), synthetic=False)
    for k, v in model_weights(work / "assistant/checkpoints/best.pth").items():
        assert torch.equal(teach.state_dict()[k], v), k  # the resumed assistant's best teaches the student
    report = json.loads((work / "pipeline.json").read_text())
    assert [(s["stage"], s["status"]) for s in report["stages"]] == [
        ("teacher", "skipped"), ("assistant", "resumed"), ("student", "trained")]  # one table of all stages
    assert all(s["completed"] and s["best"] is not None for s in report["stages"])
    md = (work / "pipeline.md").read_text()
    assert all(f"| {name} " in md for name in ("teacher", "assistant", "student"))


def test_tfkd_experiments_share_one_pipeline_and_one_table(tmp_path):
    """Self-training (same architecture), reverse KD (the small model teaches the large one) and a poorly
    trained teacher (one epoch), beside label smoothing and the virtual teacher, as stages of one pipeline."""
    import torch.nn.functional as F

    from densekd.engine.builder import build_task

    work = tmp_path / "tfkd"
    shrink = ["data.batch_size=2", "data.val_batch_size=2", "data.num_workers=0"]
    pipe = load_pipeline(ROOT / "configs/pipelines/cifar100_tfkd_experiments.py", synthetic=True,
                         work_dir=str(work), cli_options=shrink)
    cfg = {n: pipe.stage(n).cfg for n in pipe.names}
    pairs = {n: (c["teacher"]["model"]["type"], c["model"]["type"]) for n, c in cfg.items() if "teacher" in c}
    assert pairs == {"self_training": ("resnet8x4", "resnet8x4"), "reverse_kd": ("resnet8x4", "resnet32x4"),
                     "poor_teacher_kd": ("resnet32x4", "resnet8x4")}
    assert cfg["self_training"]["teacher"]["checkpoint"] == str(work / "resnet8x4/checkpoints/best.pth")
    assert cfg["poor_teacher_kd"]["teacher"]["checkpoint"] == str(work / "poor_teacher/checkpoints/best.pth")
    assert cfg["poor_teacher"]["train"]["epochs"] == 1 < cfg["resnet8x4"]["train"]["epochs"]
    # label smoothing really smooths: the task's loss equals CE against (1 - eps) one-hot + eps / C
    task = build_task(cfg["label_smoothing"], None)
    logits, target = torch.randn(3, 100), torch.tensor([1, 5, 7])
    soft = torch.full((3, 100), 0.1 / 100)
    soft[torch.arange(3), target] += 0.9
    expected = -(soft * F.log_softmax(logits, 1)).sum(1).mean()
    assert torch.allclose(task.loss(logits, {"target": target})["cls"], expected, atol=1e-6)
    assert [d["type"] for d in cfg["tfkd_virtual_teacher"]["distill"]] == ["LabelSmoothingKD"]


def test_stages_as_a_dict_compose_through_base_pipelines(tiny_config, tmp_path):
    """`stages = dict(NAME=dict(...))` merges into a _base_ pipeline's stage of that name; None removes one."""
    teacher = tiny_config("teacher.py", extra=TEACHER_MODEL)
    student = tiny_config("student.py", extra=STUDENT_EXTRA)
    (tmp_path / "base.py").write_text(f"""
stages = dict(teacher=dict(config='{teacher}'),
              student=dict(config='{student}', cfg_options={{'teacher.checkpoint': '{{teacher.best}}'}}))
""")
    (tmp_path / "child.py").write_text(f"""
_base_ = ['./base.py']
stages = dict(student=dict(cfg_options={{'optimizer.lr': 0.01}}), again=dict(config='{student}', cfg_options=None))
""")
    pipe = load_pipeline(tmp_path / "child.py", work_dir=str(tmp_path / "work"))
    assert pipe.names == ["teacher", "student", "again"]
    st = pipe.stage("student").cfg
    assert st["teacher"]["checkpoint"] == str(tmp_path / "work/teacher/checkpoints/best.pth")
    assert st["optimizer"]["lr"] == 0.01
    (tmp_path / "alone.py").write_text("""
_base_ = ['./base.py']
stages = dict(teacher=None, student=dict(cfg_options=None))
""")
    assert load_pipeline(tmp_path / "alone.py").names == ["student"]
    for body, pattern in ((f"stages = dict(a=dict(name='b', config='{student}'))\n", r"the key is the stage's name"),
                          ("stages = dict(a='x.py')\n", r"stage 'a' must be dict\(config=\.\.\."),
                          ("stages = dict(a=None)\n", r"needs `stages = .*a non-empty list, or a dict")):
        (tmp_path / "bad.py").write_text(body)
        with pytest.raises(PipelineError, match=pattern):
            load_pipeline(tmp_path / "bad.py")
