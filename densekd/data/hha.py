"""HHA: a depth map encoded as three 8-bit channels (Gupta, Girshick, Arbelaez and Malik, "Learning Rich
Features from RGB-D Images for Object Detection and Segmentation", ECCV 2014).

The channels, in order: **H**\\ orizontal disparity, **H**\\ eight above the ground, **A**\\ ngle between the
surface normal and the gravity direction. Networks read an HHA image like an RGB one (3 channels, 0..255),
which is why cross-modal and RGB-D work feeds it to ImageNet architectures unchanged.

:func:`depth_to_hha` computes it from a depth map in metres and the camera intrinsics:

1. back-project every valid pixel to a camera-frame point (x right, y down, z forward);
2. surface normals from the cross product of the point map's horizontal and vertical central differences,
   averaged over a ``normal_window`` x ``normal_window`` box and turned to face the camera;
3. the gravity ("up") direction as in Gupta et al.: start from the camera's up axis (0, -1, 0); twice (angle
   thresholds 45 then 15 degrees) take the normals nearly parallel to the current estimate (floors, table
   tops, ceilings) and those nearly perpendicular to it (walls), and choose the unit vector that is most
   parallel to the former and most perpendicular to the latter: the eigenvector of the smallest eigenvalue of
   ``sum_perp n n^T - sum_par n n^T``, signed to point up;
4. height = the point's coordinate along "up" minus the lowest valid point's; angle = the angle between the
   normal and "up" (0 degrees: a floor, 90: a wall, 180: a ceiling).

Encoding (densekd's, stated exactly because HHA files from other tools use their own scalings):
disparity channel ``255 * 0.5 / depth`` (255 at 0.5 m and closer, 25.5 at 5 m), height channel one level
per centimetre (0..2.55 m), angle channel ``angle_degrees * 255 / 180``; each rounded and clipped to 0..255;
pixels without a depth measurement are 0 in all three. Gupta et al.'s release differs in the disparity
scale and the angle offset and estimates gravity from the same normals but with its own normal estimation
(a local plane fit in a metric neighbourhood); a network trained on one encoding should be evaluated on the
same one. HHA files written by another tool are read as they are (:func:`read_hha`), so a user who has the
widely distributed NYU-Depth v2 HHA images can train on those instead.
"""
from __future__ import annotations

import os

import numpy as np

#: NYU-Depth v2 Kinect RGB camera intrinsics at 640 x 480 (fx, fy, cx, cy), as in the NYU toolbox's
#: camera_params.m (fx_rgb, fy_rgb, cx_rgb, cy_rgb).
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
NYU_SIZE = (480, 640)


def scaled_intrinsics(K: tuple, size: tuple[int, int], base_size: tuple[int, int] = NYU_SIZE) -> tuple:
    """``K`` = (fx, fy, cx, cy) of a ``base_size`` (H, W) frame, for the same camera at ``size`` (H, W)."""
    sy, sx = size[0] / base_size[0], size[1] / base_size[1]
    fx, fy, cx, cy = K
    return fx * sx, fy * sy, cx * sx, cy * sy


def _box(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over a centred k x k window (edge-replicated), per channel of an H x W x C array."""
    if k <= 1:
        return a
    import cv2

    return cv2.blur(a, (k, k), borderType=cv2.BORDER_REPLICATE)


def point_cloud(depth: np.ndarray, K: tuple) -> np.ndarray:
    """H x W depth (metres) -> H x W x 3 camera-frame points (x right, y down, z forward)."""
    fx, fy, cx, cy = (float(v) for v in K)
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = depth.astype(np.float64)
    return np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=2)


def surface_normals(points: np.ndarray, valid: np.ndarray, window: int = 5) -> np.ndarray:
    """Unit normals (H x W x 3) facing the camera; 0 where a pixel or a neighbour has no depth."""
    p = points * valid[..., None]
    dx = np.zeros_like(p)
    dy = np.zeros_like(p)
    dx[:, 1:-1] = p[:, 2:] - p[:, :-2]
    dy[1:-1] = p[2:] - p[:-2]
    ok = valid.copy()
    ok[:, 1:-1] &= valid[:, 2:] & valid[:, :-2]
    ok[1:-1] &= valid[2:] & valid[:-2]
    ok[[0, -1], :] = False
    ok[:, [0, -1]] = False
    n = np.cross(dx, dy) * ok[..., None]
    n = _box(n, window)
    norm = np.linalg.norm(n, axis=2, keepdims=True)
    n = np.where(norm > 0, n / np.maximum(norm, 1e-12), 0.0)
    facing = np.sum(n * points, axis=2) > 0  # pointing away from the camera: flip
    n[facing] *= -1
    n[~ok] = 0.0
    return n


def estimate_up(normals: np.ndarray, mask: np.ndarray, thresholds=(45.0, 15.0)) -> np.ndarray:
    """Gupta et al.'s gravity estimate (see the module docstring); returns a unit "up" vector (camera frame)."""
    up = np.array([0.0, -1.0, 0.0])
    n = normals[mask]
    n = n[np.linalg.norm(n, axis=1) > 0.5]
    if len(n) < 3:
        return up
    for t in thresholds:
        cos = n @ up
        par = n[np.abs(cos) > np.cos(np.deg2rad(t))]
        perp = n[np.abs(cos) < np.sin(np.deg2rad(t))]
        if len(par) + len(perp) < 3:
            break
        m = perp.T @ perp - par.T @ par
        vals, vecs = np.linalg.eigh(m)
        g = vecs[:, 0]
        up = g if g @ up >= 0 else -g
    return up / np.linalg.norm(up)


def depth_to_hha(depth: np.ndarray, K: tuple = NYU_INTRINSICS, normal_window: int = 5,
                 estimate_gravity: bool = True) -> np.ndarray:
    """H x W depth in metres (0 or non-finite = no measurement) and intrinsics ``K`` = (fx, fy, cx, cy) of this
    frame's size -> H x W x 3 uint8 HHA (disparity, height, angle) with densekd's encoding (module docstring).
    ``estimate_gravity=False`` takes the camera's up axis as "up" (a level camera)."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth_to_hha: depth must be H x W metres; got shape {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    depth = np.where(valid, depth, 0.0)
    pts = point_cloud(depth, K)
    normals = surface_normals(pts, valid, normal_window)
    has_normal = np.linalg.norm(normals, axis=2) > 0.5
    up = estimate_up(normals, has_normal) if estimate_gravity else np.array([0.0, -1.0, 0.0])
    out = np.zeros(depth.shape + (3,), np.float64)
    if valid.any():
        out[..., 0] = np.where(valid, 255.0 * 0.5 / np.maximum(depth, 1e-6), 0.0)
        height = pts @ up
        out[..., 1] = np.where(valid, (height - height[valid].min()) * 100.0, 0.0)
        angle = np.degrees(np.arccos(np.clip(normals @ up, -1.0, 1.0)))
        out[..., 2] = np.where(has_normal, angle * 255.0 / 180.0, 0.0)
    out[~valid] = 0.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def read_hha(path: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """An HHA PNG (3 channels, 8 bit) -> H x W x 3 uint8 in the file's channel order; ``shape`` (H, W) checked."""
    from PIL import Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"HHA image not found: {path!r}. Compute the HHA images with "
                                f"`python tools/make_hha.py ROOT` (densekd's encoding) or put your own "
                                f"(3-channel 8-bit PNGs, one per frame) there, or set hha='compute'")
    with Image.open(path) as im:
        if im.mode not in ("RGB", "RGBA"):
            raise ValueError(f"{path!r}: an HHA image must have 3 channels (8-bit RGB PNG); it is mode {im.mode!r}")
        arr = np.array(im.convert("RGB"))
    if shape is not None and arr.shape[:2] != tuple(shape):
        raise ValueError(f"{path!r}: HHA image is {arr.shape[0]} x {arr.shape[1]} but its frame is "
                         f"{shape[0]} x {shape[1]}; HHA must be computed on the frame's own pixel grid")
    return arr


def write_hha(path: str, hha: np.ndarray) -> None:
    """H x W x 3 uint8 -> an RGB PNG (written atomically)."""
    from PIL import Image

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.png"
    Image.fromarray(np.asarray(hha, dtype=np.uint8), mode="RGB").save(tmp)
    os.replace(tmp, path)
