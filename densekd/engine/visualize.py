"""Task-agnostic pictures: palette maps, overlays, legends and side-by-side figures (``tools/visualize.py``,
``tools/demo.py``).

Everything works on numpy arrays: images are ``H x W x 3`` uint8 RGB, label maps ``H x W`` integer ids coloured
with a *given* palette (ids outside it, e.g. 255 = ignore, drawn black). A *figure* is one row of equally sized
panels, each with a title strip above it::

    +-----------+--+-----------+--+-----------+
    |   image   |  |  ground   |  |  student  |   <- title strip, title_height(W) pixels
    +-----------+  +-----------+  +-----------+
    |  H x W    |  |  H x W    |  |  H x W    |
    +-----------+--+-----------+--+-----------+
                 GAP px (white)

so a figure of ``n`` panels of ``H x W`` is ``(H + title_height(W)) x (n * W + (n - 1) * GAP)`` pixels.
What goes into the panels after the input image is the task's (:meth:`densekd.tasks.base.Task.panels`:
e.g. the segmentation task colours label maps with its dataset's palette), as is the legend
(:meth:`~densekd.tasks.base.Task.legend`); this module knows no class names or colours.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize
from densekd.tasks.base import batch_input

try:
    import cv2
except ImportError:  # pragma: no cover - albumentations ships OpenCV
    cv2 = None

GAP = 2
"""White pixels between panels."""

__all__ = ["GAP", "title_height", "colorize", "overlay", "figure", "legend", "save_png", "to_rgb",
           "predict_sample", "draw_predictions"]


def title_height(width: int) -> int:
    """Height of the title strip above a panel ``width`` pixels wide: ``clip(width // 10, 14, 48)``."""
    return int(min(48, max(14, int(width) // 10)))


def _check_rgb(img: np.ndarray, what: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"{what} must be an H x W x 3 uint8 RGB array; got {img.dtype} {img.shape}")
    return img


def _palette_array(palette: Sequence[Sequence[int]]) -> np.ndarray:
    pal = np.asarray(palette)
    if pal.ndim != 2 or pal.shape[1] != 3 or len(pal) == 0:
        raise ValueError(f"a palette is a non-empty list of (r, g, b) colours; got an array of shape {pal.shape}")
    if not np.issubdtype(pal.dtype, np.integer) or pal.min() < 0 or pal.max() > 255:
        raise ValueError("palette colours must be integers in 0..255")
    return pal.astype(np.uint8)


def colorize(labels: np.ndarray | torch.Tensor, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Label map ``H x W`` (integer ids) -> ``H x W x 3`` uint8 RGB: id ``i`` gets ``palette[i]``; ids outside
    ``[0, len(palette))`` (ignore 255...) are black."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"a label map must hold integer class ids; got {labels.dtype} "
                         f"(take argmax over the class dimension first)")
    pal = _palette_array(palette)
    out = np.zeros(labels.shape + (3,), dtype=np.uint8)
    valid = (labels >= 0) & (labels < len(pal))
    out[valid] = pal[labels[valid].astype(np.int64)]
    return out


def to_rgb(panel: np.ndarray | torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
           std: Sequence[float] = IMAGENET_STD, palette: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """A panel as ``H x W x 3`` uint8 RGB.

    Accepts an RGB uint8 array (returned as is), a normalised image tensor ``3 x H x W`` (de-normalised with
    ``mean``/``std``) or, when a ``palette`` is given, a label map ``H x W`` (ints; see :func:`colorize`).
    """
    if isinstance(panel, torch.Tensor):
        if panel.dim() == 3 and panel.shape[0] == 3 and panel.is_floating_point():
            return denormalize(panel, mean, std)
        panel = panel.detach().cpu().numpy()
    panel = np.asarray(panel)
    if panel.ndim == 2:
        if np.issubdtype(panel.dtype, np.floating):
            raise ValueError("a 2-D panel is a label map and must hold integer class ids; got floats "
                             "(take argmax over the class dimension first)")
        if palette is None:
            raise ValueError("a 2-D panel is a label map and needs a palette to be drawn (pass palette=..., "
                             "or let the task draw it: task.draw_target / task.draw_prediction)")
        return colorize(panel, palette)
    return _check_rgb(panel, "panel")


def overlay(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5,
            ignore_index: int = 255) -> np.ndarray:
    """Blend the ``palette`` colours of ``labels`` over ``image``: ``(1 - alpha) * image + alpha * colour``,
    rounded to uint8; ignore pixels keep the image. ``image`` H x W x 3 uint8, ``labels`` H x W ints."""
    image = _check_rgb(image, "image")
    labels = np.asarray(labels)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels {labels.shape} and image {image.shape[:2]} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * colorize(labels, palette).astype(np.float32)
    out = np.where((labels == ignore_index)[..., None], image.astype(np.float32), mixed)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _put_text(strip: np.ndarray, text: str) -> None:
    """Write ``text`` (black, centred, shrunk to fit) into a white title strip, in place."""
    if cv2 is None or not text:
        return
    h, w = strip.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = h / 32.0
    thickness = 1
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    if tw > w - 2:
        scale *= (w - 2) / tw
        (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    org = (max(0, (w - tw) // 2), min(h - 1, (h + th) // 2))
    cv2.putText(strip, text, org, font, scale, (0, 0, 0), thickness, cv2.LINE_AA)


def figure(panels: Sequence[np.ndarray | torch.Tensor], titles: Sequence[str] | None = None,
           mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
           palette: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """One row of titled panels (see the module docstring for the exact layout and size).

    ``panels``: RGB images / normalised image tensors / label maps (with ``palette``; see :func:`to_rgb`), all
    ``H x W``. ``titles``: one per panel (or ``None`` for empty strips). Returns ``H' x W' x 3`` uint8 RGB.
    """
    if not panels:
        raise ValueError("figure needs at least one panel")
    rgb = [to_rgb(p, mean, std, palette) for p in panels]
    h, w = rgb[0].shape[:2]
    for i, p in enumerate(rgb):
        if p.shape[:2] != (h, w):
            raise ValueError(f"panel {i} is {p.shape[:2]} but panel 0 is {(h, w)}; all panels must have one size")
    if titles is not None and len(titles) != len(rgb):
        raise ValueError(f"{len(titles)} titles for {len(rgb)} panels")
    th = title_height(w)
    n = len(rgb)
    out = np.full((h + th, n * w + (n - 1) * GAP, 3), 255, dtype=np.uint8)
    for i, p in enumerate(rgb):
        x0 = i * (w + GAP)
        out[th:, x0:x0 + w] = p
        if titles is not None:
            strip = np.ascontiguousarray(out[:th, x0:x0 + w])
            _put_text(strip, str(titles[i]))
            out[:th, x0:x0 + w] = strip
    return out


def legend(classes: Sequence[str], palette: Sequence[Sequence[int]], swatch: int = 16,
           width: int = 160) -> np.ndarray:
    """A colour key: one row per class (``swatch`` px high) with its palette colour and name."""
    if len(classes) != len(palette):
        raise ValueError(f"{len(classes)} class names but {len(palette)} palette colours")
    palette = _palette_array(palette)
    out = np.full((swatch * len(classes), width, 3), 255, dtype=np.uint8)
    for i, (name, color) in enumerate(zip(classes, palette)):
        y0 = i * swatch
        out[y0 + 1:y0 + swatch - 1, 1:swatch - 1] = np.asarray(color, dtype=np.uint8)
        if cv2 is not None:
            cv2.putText(out, str(name), (swatch + 4, y0 + int(swatch * 0.75)), cv2.FONT_HERSHEY_SIMPLEX,
                        swatch / 40.0, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Write an ``H x W x 3`` uint8 RGB array as a PNG (creating folders); returns the path."""
    rgb = _check_rgb(rgb, "picture")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if cv2 is not None:
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
    else:  # pragma: no cover
        from PIL import Image

        Image.fromarray(rgb).save(path)
    return path


@torch.no_grad()
def predict_sample(task, model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The task's inference (whole image / sliding window, scales, flips...) on one ``C x H x W`` image, on the
    model's device; returns the prediction without the batch dimension, on the CPU. The model is put in eval
    mode."""
    model.eval()
    device = next(model.parameters()).device
    pred = task.predict(model, image[None].to(device))
    if isinstance(pred, dict):  # a multi-task prediction: {task name: prediction}
        return {k: v[0].cpu() for k, v in pred.items()}
    return pred[0].cpu()


def draw_predictions(task, dataset, models: dict[str, torch.nn.Module], out_dir: str | os.PathLike, num: int,
                     name=lambda i: f"{i:03d}", input_keys: dict[str, str] | None = None, **norm) -> list[Path]:
    """For the first ``num`` samples of ``dataset``: one figure of the input image followed by the task's
    panels (:meth:`~densekd.tasks.base.Task.panels`: by default ground truth, then each model's prediction,
    titled by the keys of ``models``), written to ``out_dir / f'{name(i)}.png'``; plus ``legend.png`` when the
    task has a legend. Each model reads ``sample[input_keys[title]]`` (default ``'image'``: a depth or
    chrominance student names its own key); the first panel is the sample's ``image`` when it has one.
    ``norm`` (``mean`` / ``std``) undoes the image normalisation. Returns the figure paths."""
    out_dir = Path(out_dir)
    keys = {title: (input_keys or {}).get(title, "image") for title in models}
    paths = []
    for i in range(min(num, len(dataset))):
        sample = dataset[i]
        preds = {title: predict_sample(task, m, batch_input(sample, keys[title], f"model {title!r}"))
                 for title, m in models.items()}
        titled = [("image", to_rgb(sample["image"], **norm))] if "image" in sample else []
        titled += list(task.panels(sample, preds))
        fig = figure([p for _, p in titled], [t for t, _ in titled])
        paths.append(save_png(out_dir / f"{name(i)}.png", fig))
    key = task.legend()
    if key is not None:
        save_png(out_dir / "legend.png", key)
    return paths
