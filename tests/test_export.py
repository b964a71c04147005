"""tools/export.py: the student alone, its task's output, a dynamic batch axis, parity with PyTorch."""
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from densekd.config import load_config
from densekd.engine.builder import build_model
from densekd.engine.deploy import InferenceGraph
from densekd.engine.export import export
from densekd.tasks.classification import ClassificationTask
from densekd.tasks.segmentation import SegmentationTask
from tests.conftest import ROOT, write_config

HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None
needs_onnx = pytest.mark.skipif(not (HAVE_ONNX and HAVE_ORT),
                                reason="onnx / onnxscript / onnxruntime not installed (pip install 'densekd[export]')")

CIFAR = """
_base_ = ['{root}/configs/_base_/cifar100_classification.py']
model = dict(type='resnet8', num_classes=100)
data = dict(train=dict(type='SyntheticCIFAR100', split='train', num_samples=8),
            val=dict(type='SyntheticCIFAR100', split='test', num_samples=4), batch_size=4)
"""
PSP = """
_base_ = ['{root}/configs/cityscapes/demo/student_baseline.py']
model = dict(aux_head=True, encoder_depth=2, psp_out_channels=16)
data = dict(val=dict(num_samples=2), train=dict(num_samples=2))
"""


def make_run(tmp_path, name, text):
    """A config and a densekd-style checkpoint of its model (random weights, BatchNorm statistics made non-trivial)."""
    cfg_path = write_config(tmp_path / f"{name}.py", text.format(root=ROOT))
    model = build_model(load_config(cfg_path)["model"])
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ckpt = tmp_path / name / "checkpoints" / "best.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "config": "x"}, ckpt)
    return cfg_path, ckpt, model.eval()


def jit_load(path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in torch 2.14, not removed
        return torch.jit.load(str(path))


def export_main(*args):
    """tools/export.py's main in this process: (exit status, stdout, stderr)."""
    import contextlib
    import importlib.util as iu
    import io

    spec = iu.spec_from_file_location("tool_export", ROOT / "tools" / "export.py")
    mod = iu.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            mod.main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def run_tool(*args, timeout=600):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "export.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def test_inference_graph_is_the_student_alone_returning_the_tasks_output():
    model = build_model(dict(type="seg_model", arch="PSPNet", encoder="resnet18", num_classes=19, encoder_depth=2,
                             psp_out_channels=16, aux_head=True)).eval()
    x = torch.randn(2, 3, 40, 72)  # not a multiple of the output stride: the model pads and crops
    with torch.no_grad():
        expected = model(x)
    n_aux = sum(p.numel() for p in model.aux_head.parameters())
    n_all = sum(p.numel() for p in model.parameters())
    graph = InferenceGraph(model, SegmentationTask(num_classes=19))
    assert graph.model.aux_head is None and sum(p.numel() for p in graph.parameters()) == n_all - n_aux
    assert graph.output_names == ("logits",) and not graph.training
    with torch.no_grad():
        out = graph(x)
    assert out.shape == (2, 19, 40, 72) and torch.equal(out, expected)  # logits at the input resolution

    # a model whose logits are coarser than the input: the graph resizes them as the task's inference does
    coarse = torch.nn.Conv2d(3, 5, 3, stride=4, padding=1).eval()
    graph = InferenceGraph(coarse, SegmentationTask(num_classes=5))
    with torch.no_grad():
        ref = torch.nn.functional.interpolate(coarse(x), size=(40, 72), mode="bilinear", align_corners=False)
        assert torch.allclose(graph(x), ref)
        task = SegmentationTask(num_classes=5)
        assert torch.equal(graph(x).argmax(1), task.predict(coarse, x).argmax(1))

    with pytest.raises(ValueError, match="no auxiliary head"):
        InferenceGraph(torch.nn.Conv2d(3, 5, 1), ClassificationTask(), aux=True)


def test_torchscript_export_of_a_cifar_model_matches_at_other_batch_sizes(tmp_path):
    cfg, ckpt, model = make_run(tmp_path, "cifar", CIFAR)
    out = run_tool(cfg, ckpt, "--format", "torchscript")
    assert out.returncode == 0, out.stderr
    path = tmp_path / "cifar" / "export" / "best.torchscript.pt"  # the default: RUN_DIR/export/<stem>
    assert path.is_file() and "parity OK" in out.stdout
    report = json.loads((tmp_path / "cifar" / "export" / "best.torchscript.pt.json").read_text())
    assert report["input"] == dict(name="image", shape=["batch", 3, 32, 32], dtype="float32")
    assert report["outputs"] == [dict(name="logits", shape=["batch", 100])]
    assert report["parity"]["passed"] and {c["batch"] for c in report["parity"]["checks"]} == {1, 3}
    assert report["params"] == sum(p.numel() for p in model.parameters())
    assert report["meta"]["normalisation"]["mean"][0] == pytest.approx(0.5071, abs=1e-3)  # CIFAR-100's statistics
    # the file, loaded on its own, computes the checkpoint's logits at a batch size it was not traced with
    loaded = jit_load(path)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_torchscript_export_of_a_pspnet_with_and_without_its_aux_head(tmp_path):
    cfg, ckpt, model = make_run(tmp_path, "psp", PSP)
    x = torch.randn(3, 3, 64, 128)
    with torch.no_grad():
        ref = model(x, aux=True)
    for aux, names in ((False, ["logits"]), (True, ["logits", "aux_logits"])):
        dest = tmp_path / f"psp_{aux}.pt"
        code, _, err = export_main(cfg, ckpt, "--format", "torchscript", "--out", dest, *(["--aux"] if aux else []))
        assert code == 0, err
        report = json.loads((tmp_path / f"psp_{aux}.pt.json").read_text())
        assert [o["name"] for o in report["outputs"]] == names
        assert report["outputs"][0]["shape"] == ["batch", 19, 64, 128]
        loaded = jit_load(dest)
        with torch.no_grad():
            got = loaded(x)
        got = got if aux else (got,)
        assert torch.allclose(got[0], ref["out"], atol=1e-5)
        if aux:
            assert torch.allclose(got[1], ref["aux"], atol=1e-5)
        has_aux = any("aux_head" in k for k in loaded.state_dict())
        assert has_aux == aux  # no auxiliary head in the file unless --aux


def test_export_library_detects_a_graph_that_differs(tmp_path):
    """The parity check is a real check: an exported file that computes something else fails it."""
    from densekd.engine import export as ex

    graph = InferenceGraph(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(1),
                                               torch.nn.Linear(4 * 8 * 8, 10)), ClassificationTask())
    report = export(graph, torch.randn(2, 3, 8, 8), "torchscript", tmp_path / "m.pt")
    assert report["parity"]["passed"]
    wrong = ex.parity(graph, lambda x: (np.zeros((x.shape[0], 10), np.float32),), (2, 3, 8, 8), ("logits",))
    assert not wrong["passed"] and all(not c["ok"] for c in wrong["checks"])
    assert ex.parity(graph, lambda x: (np.zeros((1, 10), np.float32),), (2, 3, 8, 8), ("logits",))["checks"][1][
        "ok"] is False  # a batch size baked into the graph


@needs_onnx
def test_onnx_export_of_a_cifar_model_and_a_pspnet_runs_in_onnxruntime_at_any_batch(tmp_path):
    import onnx
    import onnxruntime as ort

    for name, text, shape in (("cifar", CIFAR, (3, 32, 32)), ("psp", PSP, (3, 64, 128))):
        cfg, ckpt, model = make_run(tmp_path, name, text)
        out = run_tool(cfg, ckpt, "--format", "onnx")
        assert out.returncode == 0, out.stderr + out.stdout
        path = tmp_path / name / "export" / "best.onnx"
        proto = onnx.load(str(path))
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        assert proto.graph.input[0].name == "image" and dims[0].dim_param == "batch"  # the dynamic batch axis
        assert [d.dim_value for d in dims[1:]] == list(shape)
        assert [o.name for o in proto.graph.output] == ["logits"]
        assert not any("aux_head" in init.name for init in proto.graph.initializer)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = torch.randn(4, *shape)
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4 + 1e-4 * np.abs(ref).max()
        report = json.loads(path.with_name("best.onnx.json").read_text())
        assert report["parity"]["passed"] and report["exporter"] == "torch.onnx.export(dynamo=True)"


def test_onnx_without_onnxruntime_says_so_and_fails_unless_no_check(tmp_path, monkeypatch):
    """Only the parity check needs onnxruntime: without it the tool says so in one line and exits 1."""
    if not HAVE_ONNX:
        pytest.skip("onnx / onnxscript not installed (pip install 'densekd[export]')")
    cfg, ckpt, _ = make_run(tmp_path, "cifar", CIFAR)
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import importlib.util, sys\n_find = importlib.util.find_spec\n"
        "def find_spec(name, *a, **k):\n    return None if name.split('.')[0] == 'onnxruntime' else _find(name, *a, **k)\n"
        "importlib.util.find_spec = find_spec\n")
    env = dict(__import__("os").environ, PYTHONPATH=f"{hide}:{ROOT}")
    tool = [sys.executable, str(ROOT / "tools" / "export.py"), str(cfg), str(ckpt), "--format", "onnx"]
    out = subprocess.run(tool, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 1 and (tmp_path / "cifar" / "export" / "best.onnx").is_file()
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "onnxruntime" in errors[0] and "densekd[export]" in errors[0]
    out = subprocess.run(tool + ["--no-check"], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0 and "parity check skipped (--no-check)" in out.stdout


def test_export_usage_errors_are_one_line(tmp_path):
    cfg, ckpt, _ = make_run(tmp_path, "cifar", CIFAR)
    code, _, err = export_main(cfg, ckpt, "--format", "torchscript", "--aux")
    assert code == 2 and err.count("\n") == 1 and "no auxiliary head" in err
    code, _, err = export_main(cfg, tmp_path / "missing.pth", "--format", "torchscript")
    assert code == 2 and "missing.pth" in err
