"""HHA (Gupta et al., ECCV 2014): the encoding on scenes whose answer is known, the files, the loaders, the
cross-modal HHA student."""
import numpy as np
import pytest
import torch

from densekd.data.hha import (NYU_INTRINSICS, depth_to_hha, estimate_up, read_hha, scaled_intrinsics,
                              surface_normals, point_cloud, write_hha)
from densekd.data.nyu import NYUDepthV2, NYUTransform
from densekd.data.synthetic_nyu import SyntheticNYUDepthV2
from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from tests.conftest import ROOT

H, W = 120, 160
K = scaled_intrinsics(NYU_INTRINSICS, (H, W))


def room(camera_height=1.2, wall=8.0, pitch_deg=0.0):
    """A level floor ``camera_height`` m below the camera and a wall ``wall`` m ahead, seen by a camera pitched
    down by ``pitch_deg``: the depth map by ray casting (written independently of densekd's back-projection)."""
    fx, fy, cx, cy = K
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=2)  # camera frame, z = 1
    p = np.deg2rad(pitch_deg)
    # camera -> world (world: x right, y down, z forward, level): rotation about x by the pitch
    rot = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    world = rays @ rot.T
    t_floor = np.where(world[..., 1] > 1e-9, camera_height / np.maximum(world[..., 1], 1e-9), np.inf)
    t_wall = np.where(world[..., 2] > 1e-9, wall / np.maximum(world[..., 2], 1e-9), np.inf)
    t = np.minimum(t_floor, t_wall)  # the ray parameter: depth z = t, as the rays have z = 1 in the camera
    floor = t_floor < t_wall
    return t, floor


def test_hha_of_a_floor_and_a_wall():
    depth, floor = room()
    hha = depth_to_hha(depth, K).astype(np.float64)
    inner = np.zeros_like(floor)
    inner[3:-3, 3:-3] = True
    # disparity: 255 * 0.5 / depth
    np.testing.assert_allclose(hha[..., 0], np.clip(np.rint(127.5 / depth), 0, 255), atol=1)
    # angle to "up": 0 degrees on the floor, 90 on the wall (away from the seam, where normals are averaged)
    seam = np.abs(np.diff(floor.astype(int), axis=0, prepend=0)) | np.abs(np.diff(floor.astype(int), axis=0,
                                                                                  append=0))
    far = inner & ~np.convolve(seam.any(1), np.ones(7), "same").astype(bool)[:, None]
    assert np.abs(hha[far & floor, 2] - 0).max() <= 2
    assert np.abs(hha[far & ~floor, 2] - 127.5).max() <= 2
    # height above the floor (the lowest point), one level per cm: 0 on the floor, rising up the wall to
    # camera_height + (cy / fy) * wall at the top row
    assert np.abs(hha[far & floor, 1]).max() <= 1
    fx, fy, cx, cy = K
    top = 120 + (cy - 3) / fy * 8.0 * 100
    assert abs(hha[3, W // 2, 1] - min(top, 255)) <= 2


def test_gravity_is_found_when_the_camera_is_pitched():
    depth, floor = room(pitch_deg=20.0)
    pts = point_cloud(depth, K)
    normals = surface_normals(pts, depth > 0)
    up = estimate_up(normals, np.linalg.norm(normals, axis=2) > 0.5)
    p = np.deg2rad(20.0)
    truth = np.array([0.0, -np.cos(p), -np.sin(p)])  # world up (0, -1, 0) in the pitched camera: rot.T @ up
    assert np.degrees(np.arccos(np.clip(up @ truth, -1, 1))) < 1.0
    level = depth_to_hha(depth, K, estimate_gravity=False).astype(float)[..., 2]
    found = depth_to_hha(depth, K).astype(float)[..., 2]
    rows = slice(H - 20, H - 5)
    assert np.median(found[rows][floor[rows]]) <= 2  # the floor reads as a floor ...
    assert abs(np.median(level[rows][floor[rows]]) - 20 * 255 / 180) <= 3  # ... not as a 20-degree slope


def test_missing_depth_is_zero_in_every_channel():
    depth, _ = room()
    depth[40:50, 60:80] = 0
    depth[0, 0] = np.nan
    hha = depth_to_hha(depth, K)
    assert (hha[40:50, 60:80] == 0).all() and (hha[0, 0] == 0).all()
    with pytest.raises(ValueError, match="H x W"):
        depth_to_hha(np.zeros((2, 3, 4)), K)


def test_files_round_trip_and_bad_files(tmp_path):
    hha = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    write_hha(str(tmp_path / "a/0001.png"), hha)
    assert np.array_equal(read_hha(str(tmp_path / "a/0001.png"), (12, 16)), hha)
    with pytest.raises(ValueError, match="frame is 10 x 16"):
        read_hha(str(tmp_path / "a/0001.png"), (10, 16))
    with pytest.raises(FileNotFoundError, match="make_hha.py"):
        read_hha(str(tmp_path / "a/0002.png"))
    from PIL import Image
    Image.fromarray(hha[..., 0]).save(tmp_path / "a/grey.png")
    with pytest.raises(ValueError, match="3 channels"):
        read_hha(str(tmp_path / "a/grey.png"))


def test_transform_gives_hha_the_image_geometry():
    """An HHA image equal to the RGB image must come out of the augmentation as the image does."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 5, (40, 56)).astype(np.float32)
    t = NYUTransform(True, crop_size=(32, 48), scale_range=(1.0, 1.0), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    for seed in range(4):
        np.random.seed(seed)
        out = t(image, depth, None, hha=image)
        np.random.seed(seed)
        ref = t(image, depth, None)
        assert torch.allclose(out["hha"], ref["image"], atol=1e-5)
        assert torch.equal(out["depth"], ref["depth"])
    with pytest.raises(ValueError, match="hha must be H x W x 3 uint8"):
        t(image, depth, None, hha=image[:-1])


def test_real_loader_reads_hha_files_written_by_the_synthetic_tree(tmp_path):
    paths = SyntheticNYUDepthV2.write_tree(str(tmp_path), n_train=4, n_test=2, hha="hha")
    assert sorted(p.name for p in (tmp_path / "hha").iterdir()) == [f"{j:04d}.png" for j in range(1, 7)]
    for split, n in (("train", 4), ("test", 2)):
        real = NYUDepthV2(str(tmp_path), split, hha="hha", augment=False)
        syn = SyntheticNYUDepthV2(split=split, num_samples=n, hha="hha", augment=False)
        for i in range(n):
            assert np.array_equal(real.load_hha(i), syn.load_hha(i))
            a, b = real[i], syn[i]
            assert a["hha"].shape == (3, 96, 128) and torch.equal(a["hha"], b["hha"])
            mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
            std = torch.tensor(IMAGENET_STD)[:, None, None]
            back = (a["hha"] * std + mean) * 255
            assert torch.allclose(back, torch.from_numpy(real.load_hha(i)).permute(2, 0, 1).float(), atol=1e-3)
    computed = NYUDepthV2(str(tmp_path), "train", hha="compute", augment=False)
    assert computed[0]["hha"].shape == (3, 96, 128)
    (tmp_path / "hha/0002.png").unlink()
    with pytest.raises(FileNotFoundError, match="HHA image not found.*0002.png"):
        NYUDepthV2(str(tmp_path), "train", hha="hha", augment=False).load_hha(1)
    with pytest.raises(FileNotFoundError, match="HHA folder not found"):
        NYUDepthV2(str(tmp_path), "train", hha="nothere")
    with pytest.raises(ValueError, match="hha_pattern"):
        NYUDepthV2(str(tmp_path), "train", hha="hha", hha_pattern="{frame:04d}_{view}.png")
    assert paths["hha"] == str(tmp_path / "hha")


def test_make_hha_tool_writes_what_the_loader_reads(tmp_path):
    import subprocess
    import sys
    SyntheticNYUDepthV2.write_tree(str(tmp_path), n_train=2, n_test=1)
    run = subprocess.run([sys.executable, str(ROOT / "tools/make_hha.py"), str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "wrote 3 HHA images" in run.stdout
    files = NYUDepthV2(str(tmp_path), "train", hha="hha", augment=False)
    computed = NYUDepthV2(str(tmp_path), "train", hha="compute", augment=False)
    assert np.array_equal(files.load_hha(1), computed.load_hha(1))
    again = subprocess.run([sys.executable, str(ROOT / "tools/make_hha.py"), str(tmp_path)], capture_output=True,
                           text=True, timeout=120)
    assert "wrote 0 HHA images" in again.stdout  # kept: an interrupted run continues
    missing = subprocess.run([sys.executable, str(ROOT / "tools/make_hha.py"), str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "labeled file not found" in missing.stderr


def test_hha_crossmodal_pipeline_trains_a_three_channel_student(tmp_path):
    from densekd.pipelines import PipelineRunner, load_pipeline

    shrink = ["data.batch_size=2", "data.val_batch_size=2", "data.num_workers=0"]
    rows = {row: load_pipeline(ROOT / f"configs/pipelines/nyu_crossmodal_hha/{row}.py", synthetic=True,
                               cli_options=shrink) for row in ("crd", "random_init")}
    probe = rows["random_init"].stage("probe").cfg
    assert probe["student_input"] == "hha" and probe["model"]["in_channels"] == 3
    assert probe["data"]["train"]["hha"] == probe["data"]["val"]["hha"] == "hha"
    work = tmp_path / "crd"
    pipe = load_pipeline(ROOT / "configs/pipelines/nyu_crossmodal_hha/crd.py", synthetic=True, work_dir=str(work),
                         cli_options=shrink)
    assert pipe.stage("pretrain").cfg["data"]["train"]["dataset"]["hha"] == "hha"
    results = PipelineRunner(pipe, device="cpu", max_iters=1, log=lambda _m: None).run()
    assert [r.status for r in results] == ["trained"] * 4
    pre = torch.load(work / "pretrain/checkpoints/last.pth", map_location="cpu", weights_only=False)["model"]
    probe_w = torch.load(work / "probe/checkpoints/last.pth", map_location="cpu", weights_only=False)["model"]
    assert pre["conv1.weight"].shape == (64, 3, 7, 7)
    assert torch.equal(probe_w["encoder.conv1.weight"], pre["conv1.weight"])
