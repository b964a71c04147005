"""Pictures: palette figures (densekd.engine.visualize) and tools/visualize.py."""
import importlib.util

import numpy as np
import pytest
import torch

from densekd.engine import visualize as vis
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
    rgb = vis.to_rgb(labels)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 0]) == ROAD and tuple(rgb[0, 1]) == SIDEWALK and tuple(rgb[1, 0]) == SKY
    assert tuple(rgb[1, 1]) == (0, 0, 0)


def test_to_rgb_denormalizes_image_tensors():
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 1.0)
    img = torch.zeros(3, 2, 2)
    img[0] = 1.0  # -> (1 * 0.5 + 0.5) * 255 = 255
    img[1] = -1.0  # -> (-0.25 + 0.25) * 255 = 0
    img[2] = 0.2  # -> 0.2 * 255 = 51
    rgb = vis.to_rgb(img, mean, std)
    assert rgb.shape == (2, 2, 3)
    assert (rgb[..., 0] == 255).all() and (rgb[..., 1] == 0).all() and (rgb[..., 2] == 51).all()


def test_to_rgb_rejects_float_label_maps():
    with pytest.raises(ValueError, match="argmax"):
        vis.to_rgb(np.zeros((4, 4), dtype=np.float32))


def test_overlay_blends_and_keeps_ignore_pixels():
    image = np.full((1, 3, 3), 100, dtype=np.uint8)
    labels = np.array([[0, 13, 255]])
    out = vis.overlay(image, labels, alpha=0.25)
    expect_road = [round(0.75 * 100 + 0.25 * c) for c in ROAD]
    expect_car = [round(0.75 * 100 + 0.25 * c) for c in CAR]
    assert out[0, 0].tolist() == expect_road
    assert out[0, 1].tolist() == expect_car
    assert out[0, 2].tolist() == [100, 100, 100]
    with pytest.raises(ValueError, match="differ in size"):
        vis.overlay(image, np.zeros((2, 2), dtype=np.int64))


def test_figure_layout_size_and_panel_placement():
    h, w = 20, 30
    image = np.full((h, w, 3), 7, dtype=np.uint8)
    labels = np.zeros((h, w), dtype=np.int64)  # all road
    fig = vis.figure([image, labels, labels], ["image", "ground truth", "student"])
    th = max(14, min(48, w // 10))  # the documented title-strip rule
    gap = 2
    assert fig.shape == (h + th, 3 * w + 2 * gap, 3)
    assert (fig[th:, :w] == 7).all()
    assert (fig[th:, w + gap:2 * w + gap] == np.array(ROAD, dtype=np.uint8)).all()
    assert (fig[:, w:w + gap] == 255).all()  # white gap
    assert (fig[:th] != 255).any()  # a title was drawn


def test_figure_rejects_mismatched_panels():
    with pytest.raises(ValueError, match="one size"):
        vis.figure([np.zeros((4, 4), dtype=np.int64), np.zeros((4, 5), dtype=np.int64)])
    with pytest.raises(ValueError, match="titles"):
        vis.figure([np.zeros((4, 4), dtype=np.int64)], ["a", "b"])


def test_save_png_round_trip(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rgb = np.zeros((3, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red channel
    path = vis.save_png(tmp_path / "sub" / "x.png", rgb)
    back = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.array_equal(back, rgb)


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
