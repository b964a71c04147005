"""tools/benchmark.py --suite: interleaved rounds, the bound and ratios, the per-step memory measure, the
Markdown table, the loader line and the pair-wise memory curve (tiny sizes; the real measurements are the
lead's, on a quiet machine)."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from densekd.bench.measure import Candidate, StepMemory, run_rounds, summarize
from densekd.bench.pairwise import grid, linear_fit
from densekd.bench.runner import leaf_datasets
from densekd.bench.suites import ROOT, SUITES, Size

TOOL = ROOT / "tools" / "benchmark.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeClock:
    """A clock that advances only when a step says so: timings become exact."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_rounds_interleave_candidates_after_the_warmup_and_time_each_step():
    clock, calls = FakeClock(), []

    def step(name, seconds):
        def fn():
            calls.append(name)
            clock.now += seconds
        return fn

    cands = [Candidate("a", step("a", 0.010)), Candidate("b", step("b", 0.020)), Candidate("c", step("c", 0.030))]
    samples = run_rounds(cands, reps=3, warmup=2, clock=clock)
    assert calls == ["a", "b", "c"] * 5  # 2 warm-up rounds then 3 timed rounds, one step of each per round
    assert samples == {"a": [pytest.approx(0.010)] * 3, "b": [pytest.approx(0.020)] * 3,
                       "c": [pytest.approx(0.030)] * 3}
    with pytest.raises(ValueError, match="reps must be >= 1"):
        run_rounds(cands, reps=0, warmup=0)


def test_summarize_reports_median_quartiles_and_extremes_in_ms():
    stats = summarize([0.004, 0.001, 0.003, 0.002, 0.005])
    assert stats["median_ms"] == pytest.approx(3.0) and stats["min_ms"] == pytest.approx(1.0)
    assert stats["max_ms"] == pytest.approx(5.0) and stats["q1_ms"] == pytest.approx(2.0)
    assert stats["iqr_ms"] == pytest.approx(2.0) and stats["n"] == 5
    assert summarize([0.002])["iqr_ms"] == 0.0


def test_cpu_step_memory_reads_the_peak_of_a_200_mb_tensor_not_the_process_peak():
    memory = StepMemory("cpu")
    if not memory.available:
        pytest.skip("/proc/self/clear_refs is not writable here")
    big = memory.measure(lambda: torch.ones(50 * 2**20).sum())  # 200 MiB, touched, freed inside the step
    assert 150 * 2**20 <= big <= 400 * 2**20
    keep = torch.ones(50 * 2**20)  # resident before the step: not the step's growth
    small = memory.measure(lambda: keep.sum())
    assert small < 50 * 2**20
    assert "VmHWM" in memory.kind and "clear_refs" in memory.kind


def test_pairwise_grid_and_linear_fit():
    assert grid(512) == (16, 32) and grid(1024) == (32, 32) and grid(32768) == (128, 256)
    fit = linear_fit([1, 2, 4, 8], [3, 5, 9, 17])  # y = 2x + 1 exactly
    assert fit["slope"] == pytest.approx(2.0) and fit["intercept"] == pytest.approx(1.0)
    assert fit["r2"] == pytest.approx(1.0)


def test_suites_list_every_cls_config_and_set_sizes_on_the_innermost_dataset():
    cls = SUITES["cls"]
    folder = ROOT / "configs/cifar100/distill/resnet32x4-resnet8x4"
    assert sorted(Path(m.config).name for m in cls.methods if not m.cached) == sorted(p.name for p in folder.glob("*.py"))
    assert [m.name for m in cls.methods if m.cached] == ["KD_cached"] and cls.method("KD_cached").target == 0.5
    assert cls.method("crd").target == 1.10 and cls.method("KD").target == 1.05
    seg = SUITES["seg"]
    assert seg.method("pi_pa").target == 1.15 and seg.method("PI_PA_HO").target == 1.30
    full = seg.method("PI_PA_full")  # a variant without its own file: the pair-wise term on every decoder pixel
    assert full.config == seg.method("PI_PA").config and full.options == ("distill.1.scale=None",)
    assert seg.dataset_settings(Size(2, (256, 512)), synthetic=True) == {
        "crop_size": (256, 512), "image_size": (256, 512), "num_samples": 2975}
    assert seg.dataset_settings(Size(2, (256, 512)), synthetic=False) == {"crop_size": (256, 512)}
    wrapped = dict(type="CRDSampleDataset", nce_k=16, dataset=dict(type="SyntheticCIFAR100", split="train"))
    assert list(leaf_datasets(wrapped)) == [wrapped["dataset"]]
    for suite in SUITES.values():
        for m in suite.methods:
            assert (ROOT / m.config).is_file(), m.config
        assert (ROOT / suite.student).is_file() and suite.loader_method in {m.name for m in suite.methods}


def test_cls_suite_bound_ratios_interleaving_table_and_loader_line(tmp_path, monkeypatch):
    from densekd.engine.trainer import Trainer

    order = []
    original = Trainer.train_iteration

    def recording(self, batch):
        order.append(Path(self.cfg.filename).stem)
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_iteration", recording)
    out = tmp_path / "out"
    result = load_tool().main(["--suite", "cls", "--quick", "--methods", "KD", "crd", "--device", "cpu",
                               "--reps", "2", "--warmup", "1", "--out", str(out),
                               "--cfg-options", "data.num_workers=0"])
    saved = json.loads((out / "benchmark_cls.json").read_text())
    assert saved["methods"].keys() == {"KD", "CRD"} and saved["bound_ms"] == pytest.approx(result["bound_ms"])
    student, teacher = saved["student"]["median_ms"], saved["teacher"]["median_ms"]
    assert saved["bound_ms"] == pytest.approx(student + teacher)
    for row in saved["methods"].values():
        assert row["ratio"] == pytest.approx(row["median_ms"] / saved["bound_ms"])
        assert len(row["samples_ms"]) == 2 and (row["peak_mb"] is None or row["peak_mb"] >= 0)
        assert row["within_target"] == (row["ratio"] <= row["target"])
        assert row["loss_modules"]["median_ms"] > 0 and len(row["loss_modules"]["samples_ms"]) == 2
        assert row["floor_ratio"] == pytest.approx(1 + row["loss_modules"]["median_ms"] / saved["bound_ms"])
    assert saved["environment"]["threads"] == 1 and saved["batch"] == 2 and "VmHWM" in saved["memory_measure"]
    # warm-up round then 2 timed rounds, each stepping student, KD, CRD in turn (the teacher forward between
    # the student and KD is no train_iteration)
    assert order[:9] == ["resnet8x4", "kd", "crd"] * 3
    line = saved["loader_line"]
    assert line["method"] == "KD" and line["difference_pct"] == pytest.approx(
        100 * (line["loader_fed"]["median_ms"] / line["prefetched"]["median_ms"] - 1))
    table = (out / "benchmark_cls.md").read_text().splitlines()
    rows = [r for r in table if r.startswith("| ")]
    assert rows[0].startswith("| method | median ms |") and "within target" in rows[0]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["student alone", "teacher forward", "bound", "KD", "CRD"]
    assert "<= 1.10x (CRD)" in rows[-1]
    crd = saved["methods"]["CRD"]
    assert rows[-1].split("|")[5].strip() == f"{crd['loss_modules']['median_ms']:.1f}"
    assert rows[-1].split("|")[6].strip() == f"{crd['floor_ratio']:.2f}x"
    assert any(r.startswith("Loader line (KD)") for r in table)


def test_loss_modules_step_runs_the_terms_alone_and_trains_only_their_own_parameters(tmp_path):
    """The loss-modules candidate: CRD's loss module forward on the inputs one distiller forward recorded, then
    the gradients of its embedding heads, returned and never left in .grad (the method's own steps run in the
    same rounds); the student network and the teacher get none and are not run (a forward hook counts their
    calls)."""
    from densekd.bench.runner import build_trainer, fixed_batch, loss_modules_step

    tr = build_trainer("configs/cifar100/distill/resnet32x4-resnet8x4/crd.py",
                       ["data.batch_size=2", "data.num_workers=0"], {"num_samples": 64}, "cpu", None, tmp_path / "t")
    try:
        batch = fixed_batch(tr)
        distiller = tr.strategy.distiller
        step = loss_modules_step(tr, batch)
        runs = []
        distiller.student.register_forward_hook(lambda *a: runs.append("student"))
        distiller.teachers[0].register_forward_hook(lambda *a: runs.append("teacher"))
        for p in list(distiller.parameters()) + list(distiller.teachers[0].parameters()):
            p.grad = None
        crd = next(iter(distiller.losses.values()))
        heads = list(crd.embed_s.parameters()) + list(crd.embed_t.parameters())
        computed = []
        original = torch.autograd.grad

        def grad(outputs, inputs, **kw):
            out = original(outputs, inputs, **kw)
            computed.append({id(x): g for x, g in zip(inputs, out)})
            return out

        torch.autograd.grad = grad
        try:
            step()
        finally:
            torch.autograd.grad = original
        assert runs == []
        assert all(computed[0].get(id(p)) is not None and float(computed[0][id(p)].abs().sum()) > 0 for p in heads)
        # returned, not accumulated: the method's own steps never see them; nothing reaches the networks
        assert all(p.grad is None for p in heads)
        assert all(id(p) not in computed[0] for p in distiller.student.parameters())
        assert all(p.grad is None for p in distiller.student.parameters())
        assert all(p.grad is None for p in distiller.teachers[0].parameters())
    finally:
        tr.close()


def test_cached_teacher_candidate_trains_from_a_cache_and_never_runs_the_teacher(tmp_path, monkeypatch):
    """KD_cached writes a teacher cache for its run and trains from it: every step takes the teacher's taps from
    the cache (the teacher forward the bound holds is timed once, on the cache-less teacher)."""
    from densekd.distill.distiller import Distiller

    modes = []
    original = Distiller.teacher_taps

    def recording(self, batch):
        modes.append(self.cached_teachers)
        return original(self, batch)

    monkeypatch.setattr(Distiller, "teacher_taps", recording)
    result = load_tool().main(["--suite", "cls", "--quick", "--methods", "KD_cached", "--device", "cpu", "--reps",
                               "2", "--warmup", "1", "--out", str(tmp_path), "--no-loader-line",
                               "--cfg-options", "data.num_workers=0"])
    row = result["methods"]["KD_cached"]
    assert row["kind"] == "cached teacher" and row["target"] == 0.5 and row["config"].endswith("/kd.py")
    # the cache writer runs the teacher (uncached); then the forward that records the loss modules' inputs, the
    # warm-up, 2 rounds and the memory step read the cache
    assert modes[-5:] == [True] * 5 and not any(modes[:-5])


def test_unknown_method_is_a_one_line_error_naming_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exc:
        load_tool().main(["--suite", "cls", "--methods", "KD", "NOPE", "--device", "cpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown method 'NOPE'" in err and "CRD" in err and "FitNet" in err


def test_pairwise_memory_curve_has_a_row_per_node_count_and_says_what_it_skipped(tmp_path):
    result = load_tool().main(["--suite", "pairwise-memory", "--nodes", "256", "512", "4096", "--max-nodes", "512",
                               "--channels", "8", "16", "--reps", "1", "--warmup", "0", "--device", "cpu",
                               "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "benchmark_pairwise-memory.json").read_text())
    assert [r["nodes"] for r in saved["rows"]] == [256, 512] and saved["skipped_nodes"] == [4096]
    assert all(r["median_ms"] > 0 for r in saved["rows"]) and saved["rows"][1]["grid"] == [16, 32]
    if StepMemory("cpu").available:
        assert "mb_per_1k_nodes" in saved["fit"] and isinstance(saved["fit"]["linear"], bool)
    table = (tmp_path / "benchmark_pairwise-memory.md").read_text()
    assert "| 256 | 16 x 16 |" in table and "| 512 | 16 x 32 |" in table and "Not run: 4096" in table
    assert result["rows"] == saved["rows"]


def test_mmap_threshold_option_is_recorded_with_the_memory_measure(tmp_path):
    import subprocess
    import sys

    # a subprocess: mallopt changes this process's allocator for good
    out = subprocess.run([sys.executable, str(TOOL), "--suite", "pairwise-memory", "--nodes", "256", "--channels",
                          "4", "4", "--reps", "1", "--warmup", "0", "--device", "cpu", "--mmap-threshold", "1048576",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    saved = json.loads((tmp_path / "benchmark_pairwise-memory.json").read_text())
    assert saved["malloc_mmap_threshold"] == 1048576 and "mmap threshold fixed at 1048576" in saved["memory_measure"]


def test_options_of_the_other_mode_are_refused(capsys):
    tool = load_tool()
    for argv in (["--suite", "pairwise-memory", "--methods", "KD"], ["--suite", "cls", "--nodes", "256"]):
        with pytest.raises(SystemExit) as exc:
            tool.main(argv + ["--device", "cpu"])
        assert exc.value.code == 2 and "apply to" in capsys.readouterr().err
