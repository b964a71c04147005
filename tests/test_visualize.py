"""Pictures: task-agnostic figures (densekd.engine.visualize), task-drawn panels, and tools/visualize.py."""
import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from densekd.data.cityscapes import PALETTE
from densekd.engine import visualize as vis
from densekd.tasks.base import Task
from densekd.tasks.segmentation import SegmentationTask
from tests.conftest import ROOT, write_config

# Official Cityscapes colours, written out independently of densekd.data.cityscapes.PALETTE
ROAD, SIDEWALK, SKY, CAR = (128, 64, 128), (244, 35, 232), (70, 130, 180), (0, 0, 142)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_to_rgb_colours_label_maps_and_ignore_black():
    labels = np.array([[0, 1], [10, 255]])
    rgb = vis.to_rgb(labels, palette=PALETTE)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 0]) == ROAD and tuple(rgb[0, 1]) == SIDEWALK and tuple(rgb[1, 0]) == SKY
    assert tuple(rgb[1, 1]) == (0, 0, 0)


def test_label_maps_need_a_given_palette():
    """The engine knows no dataset colours: a label map is drawn only with a palette passed in."""
    with pytest.raises(ValueError, match="needs a palette"):
        vis.to_rgb(np.zeros((2, 2), dtype=np.int64))
    palette = [(10, 20, 30), (200, 100, 0)]
    rgb = vis.colorize(torch.tensor([[1, 0], [2, -1]]), palette)
    assert rgb.tolist() == [[[200, 100, 0], [10, 20, 30]], [[0, 0, 0], [0, 0, 0]]]  # ids outside: black
    with pytest.raises(ValueError, match="0..255"):
        vis.colorize(np.zeros((1, 1), dtype=np.int64), [(0, 0, 256)])
    with pytest.raises(ValueError, match="integer class ids"):
        vis.colorize(np.zeros((1, 1)), palette)


def test_to_rgb_denormalizes_image_tensors():
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 1.0)
    img = torch.zeros(3, 2, 2)
    img[0] = 1.0  # -> (1 * 0.5 + 0.5) * 255 = 255
    img[1] = -1.0  # -> (-0.25 + 0.25) * 255 = 0
    img[2] = 0.2  # -> 0.2 * 255 = 51
    rgb = vis.to_rgb(img, mean, std)  # an image needs no palette
    assert rgb.shape == (2, 2, 3)
    assert (rgb[..., 0] == 255).all() and (rgb[..., 1] == 0).all() and (rgb[..., 2] == 51).all()


def test_to_rgb_rejects_float_label_maps():
    with pytest.raises(ValueError, match="argmax"):
        vis.to_rgb(np.zeros((4, 4), dtype=np.float32), palette=PALETTE)


def test_overlay_blends_and_keeps_ignore_pixels():
    image = np.full((1, 3, 3), 100, dtype=np.uint8)
    labels = np.array([[0, 13, 255]])
    out = vis.overlay(image, labels, PALETTE, alpha=0.25)
    expect_road = [round(0.75 * 100 + 0.25 * c) for c in ROAD]
    expect_car = [round(0.75 * 100 + 0.25 * c) for c in CAR]
    assert out[0, 0].tolist() == expect_road
    assert out[0, 1].tolist() == expect_car
    assert out[0, 2].tolist() == [100, 100, 100]
    with pytest.raises(ValueError, match="differ in size"):
        vis.overlay(image, np.zeros((2, 2), dtype=np.int64), PALETTE)


def test_figure_layout_size_and_panel_placement():
    h, w = 20, 30
    image = np.full((h, w, 3), 7, dtype=np.uint8)
    labels = np.zeros((h, w), dtype=np.int64)  # all road
    fig = vis.figure([image, labels, labels], ["image", "ground truth", "student"], palette=PALETTE)
    th = max(14, min(48, w // 10))  # the documented title-strip rule
    gap = 2
    assert fig.shape == (h + th, 3 * w + 2 * gap, 3)
    assert (fig[th:, :w] == 7).all()
    assert (fig[th:, w + gap:2 * w + gap] == np.array(ROAD, dtype=np.uint8)).all()
    assert (fig[:, w:w + gap] == 255).all()  # white gap
    assert (fig[:th] != 255).any()  # a title was drawn


def test_figure_rejects_mismatched_panels():
    with pytest.raises(ValueError, match="one size"):
        vis.figure([np.zeros((4, 4), dtype=np.int64), np.zeros((4, 5), dtype=np.int64)], palette=PALETTE)
    with pytest.raises(ValueError, match="titles"):
        vis.figure([np.zeros((4, 4), dtype=np.int64)], ["a", "b"], palette=PALETTE)


def test_save_png_round_trip(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red channel
    path = vis.save_png(tmp_path / "sub" / "x.png", rgb)
    back = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.array_equal(back, rgb)


def test_legend_rows_have_the_given_colours():
    names, palette = ["a", "b", "c"], [(255, 0, 0), (0, 255, 0), (1, 2, 3)]
    key = vis.legend(names, palette, swatch=10, width=50)
    assert key.shape == (30, 50, 3)
    for i, colour in enumerate(palette):
        assert (key[i * 10 + 1:i * 10 + 9, 1:9] == np.array(colour, np.uint8)).all()
    with pytest.raises(ValueError, match="3 class names but 2"):
        vis.legend(names, palette[:2])


# ---------------------------------------------------------------------------------------------- task panels
class _ListDataset:
    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


class _Constant(nn.Module):
    """Predicts a fixed ``C x H x W`` map for every image."""

    def __init__(self, out):
        super().__init__()
        self.register_buffer("out", out)
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.out[None].expand(x.shape[0], *self.out.shape) + 0 * self.w


class _GreyDepthTask(Task):
    """A dense-regression task the engine has never heard of: depth maps drawn as grey ramps, no legend."""

    def __init__(self, max_depth=10.0):
        self.max_depth = max_depth

    def _grey(self, depth):
        v = np.rint(np.clip(np.asarray(depth, dtype=np.float64) / self.max_depth, 0, 1) * 255).astype(np.uint8)
        return np.repeat(v[..., None], 3, axis=2)

    def draw_target(self, target):
        return self._grey(target.numpy())

    def draw_prediction(self, prediction):
        return self._grey(prediction[0].numpy())  # 1 x H x W


def test_draw_predictions_uses_the_tasks_own_pictures_and_no_legend(tmp_path):
    cv2 = pytest.importorskip("cv2")
    h, w = 6, 8
    depth = torch.full((h, w), 5.0)  # -> grey 128
    sample = {"image": torch.zeros(3, h, w), "target": depth}
    model = _Constant(torch.full((1, h, w), 10.0))  # -> white
    paths = vis.draw_predictions(_GreyDepthTask(), _ListDataset([sample]), {"net": model}, tmp_path, 3)
    assert [p.name for p in paths] == ["000.png"]
    assert not (tmp_path / "legend.png").exists()  # the task has no legend
    fig = cv2.imread(str(paths[0]), cv2.IMREAD_COLOR)[..., ::-1]
    th, gap = max(14, min(48, w // 10)), 2
    assert fig.shape == (h + th, 3 * w + 2 * gap, 3)  # image | ground truth | net
    assert (fig[th:, w + gap:2 * w + gap] == 128).all()
    assert (fig[th:, 2 * (w + gap):] == 255).all()


def test_draw_predictions_feeds_each_model_its_own_input_key(tmp_path):
    h, w = 6, 8
    sample = {"image": torch.zeros(3, h, w), "depth": torch.rand(1, h, w), "target": torch.full((h, w), 5.0)}
    seen = {}

    def recorder(title):
        model = _Constant(torch.full((1, h, w), 10.0))
        model.register_forward_pre_hook(lambda m, args: seen.setdefault(title, args[0].clone()))
        return model

    models = {"teacher": recorder("teacher"), "student": recorder("student")}
    vis.draw_predictions(_GreyDepthTask(), _ListDataset([sample]), models, tmp_path, 1,
                         input_keys={"student": "depth"})
    assert torch.equal(seen["student"][0], sample["depth"]) and torch.equal(seen["teacher"][0], sample["image"])
    with pytest.raises(KeyError, match=r"model 'student' reads batch\['ab'\]"):
        vis.draw_predictions(_GreyDepthTask(), _ListDataset([sample]), models, tmp_path, 1, input_keys={"student": "ab"})


def test_draw_predictions_with_overridden_panels(tmp_path):
    """A task may replace the whole row after the image (here: an error map only)."""

    class ErrorOnly(_GreyDepthTask):
        def panels(self, sample, predictions):
            return [(f"|{k} - gt|", self._grey((p[0] - sample["target"]).abs().numpy()))
                    for k, p in predictions.items()]

    h, w = 4, 4
    sample = {"image": torch.zeros(3, h, w), "target": torch.full((h, w), 2.0)}
    models = {"a": _Constant(torch.full((1, h, w), 7.0)), "b": _Constant(torch.full((1, h, w), 2.0))}
    cv2 = pytest.importorskip("cv2")
    fig = cv2.imread(str(vis.draw_predictions(ErrorOnly(), _ListDataset([sample]), models, tmp_path, 1)[0]))
    th = vis.title_height(w)
    assert fig.shape[1] == 3 * w + 2 * 2  # image | |a - gt| | |b - gt|
    assert (fig[th:, w + 2:2 * w + 2] == round(5 / 10 * 255)).all() and (fig[th:, 2 * (w + 2):] == 0).all()


def test_draw_predictions_segmentation_panels_and_legend(tmp_path):
    cv2 = pytest.importorskip("cv2")
    h, w, n = 4, 6, 3
    palette = [(10, 20, 30), (40, 50, 60), (70, 80, 90)]
    task = SegmentationTask(num_classes=n, class_names=["x", "y", "z"], palette=palette)
    target = torch.tensor([[0, 1, 2, 255, 0, 0]] * h)
    scores = torch.zeros(n, h, w)
    scores[2] = 1.0  # predicts class 2 everywhere
    sample = {"image": torch.zeros(3, h, w), "target": target}
    paths = vis.draw_predictions(task, _ListDataset([sample, sample]), {"m": _Constant(scores)}, tmp_path, 1)
    assert len(paths) == 1
    fig = cv2.imread(str(paths[0]), cv2.IMREAD_COLOR)[..., ::-1]
    th = vis.title_height(w)
    gt = fig[th:, w + 2:2 * w + 2]
    assert gt[0].tolist() == [list(palette[0]), list(palette[1]), list(palette[2]), [0, 0, 0],
                              list(palette[0]), list(palette[0])]
    assert (fig[th:, 2 * (w + 2):] == np.array(palette[2], np.uint8)).all()
    key = cv2.imread(str(tmp_path / "legend.png"), cv2.IMREAD_COLOR)[..., ::-1]
    assert key.shape[0] == 3 * 16 and tuple(key[16 + 8, 8]) == palette[1]


def test_task_without_pictures_says_so():
    sample = {"image": torch.zeros(3, 2, 2), "target": 3}
    with pytest.raises(NotImplementedError, match="draws no pictures"):
        vis.draw_predictions(Task(), _ListDataset([sample]), {}, "unused", 1)


# ---------------------------------------------------------------------------------------------- the tool
TINY = """
_base_ = ['{root}/configs/_base_/default_runtime.py', '{root}/configs/_base_/datasets/cityscapes.py',
          '{root}/configs/_base_/schedules/seg_40k.py']
model = dict(type='seg_model', arch='PSPNet', encoder='resnet18', encoder_depth=3, psp_out_channels=16)
data = dict(val=dict(num_samples=3, image_size=(32, 64)))
"""
TEACHER = """
teacher = dict(model=dict(type='seg_model', arch='PSPNet', encoder='resnet18', encoder_depth=3,
                          psp_out_channels=32), checkpoint={ckpt!r})
"""


def _weights(path, **kw):
    from densekd.models.seg import seg_model

    torch.manual_seed(0)
    model = seg_model(arch="PSPNet", encoder="resnet18", encoder_depth=3, **kw)
    torch.save({"model": model.state_dict()}, path)
    return path


def _png_size(path):
    cv2 = pytest.importorskip("cv2")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return img.shape[:2], img[..., ::-1]


def test_visualize_tool_writes_teacher_and_student_columns(tmp_path):
    student = _weights(tmp_path / "student.pth", psp_out_channels=16)
    teacher = _weights(tmp_path / "teacher.pth", psp_out_channels=32)
    cfg = write_config(tmp_path / "kd.py", TINY.format(root=ROOT) + TEACHER.format(ckpt=str(teacher)))
    tool = load_tool("visualize")
    paths = tool.main([str(cfg), str(student), "--synthetic", "--num", "2", "--out", str(tmp_path / "vis"),
                       "--device", "cpu"])
    assert len(paths) == 2 and all(p.suffix == ".png" and p.is_file() for p in paths)
    assert (tmp_path / "vis" / "legend.png").is_file()
    (h, w), img = _png_size(paths[0])
    th = max(14, min(48, 64 // 10))
    assert (h, w) == (32 + th, 4 * 64 + 3 * 2)  # image | ground truth | teacher | student

    # the ground-truth panel is the palette rendering of the scene's labels
    from densekd.data.cityscapes import SyntheticCityscapes

    label = SyntheticCityscapes(split="val", num_samples=3, image_size=(32, 64)).render(0)[1]
    gt_panel = img[th:, 64 + 2:2 * 64 + 2]
    assert np.array_equal(gt_panel[label == 10], np.tile(np.array(SKY, np.uint8), ((label == 10).sum(), 1)))
    assert (gt_panel[label == 255] == 0).all()


def test_visualize_tool_without_teacher_checkpoint_draws_three_columns(tmp_path, capsys):
    student = _weights(tmp_path / "student.pth", psp_out_channels=16)
    missing = tmp_path / "nope.pth"
    cfg = write_config(tmp_path / "kd.py", TINY.format(root=ROOT) + TEACHER.format(ckpt=str(missing)))
    tool = load_tool("visualize")
    paths = tool.main([str(cfg), str(student), "--synthetic", "--num", "1", "--out", str(tmp_path / "vis"),
                       "--device", "cpu"])
    (h, w), _ = _png_size(paths[0])
    assert w == 3 * 64 + 2 * 2
    assert "teacher column left out" in capsys.readouterr().out


def test_visualize_tool_errors(tmp_path, capsys):
    student = _weights(tmp_path / "student.pth", psp_out_channels=16)
    cfg = write_config(tmp_path / "plain.py", TINY.format(root=ROOT))
    tool = load_tool("visualize")
    with pytest.raises(SystemExit) as exc:
        tool.main([str(cfg), str(student), "--synthetic", "--teacher-checkpoint", str(student), "--device", "cpu"])
    assert exc.value.code == 2 and "defines no `teacher`" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main([str(cfg), str(tmp_path / "missing.pth"), "--synthetic", "--device", "cpu"])
    assert "student checkpoint not found" in capsys.readouterr().err
