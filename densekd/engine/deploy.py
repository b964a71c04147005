"""A trained student as a plain inference network: the model alone (no taps, no distillation parts, no auxiliary
head unless asked), wrapped so that one call maps the input tensor to the task's output tensor(s).

Used by ``tools/export.py`` (:mod:`densekd.engine.export`), ``tools/profile_model.py``
(:mod:`densekd.engine.profile`) and the cost entry of ``summary.json``.

* :class:`InferenceGraph`: ``model`` + the task's :meth:`~densekd.tasks.base.Task.deploy_output` (segmentation:
  logits at the input resolution; classification: logits; depth: the depth map in metres; multi-task: one tensor
  per task), in eval mode, one forward pass without test-time augmentation.
* :func:`load_student`: the config's ``model`` with a checkpoint's weights (the ``model`` entry of a densekd
  checkpoint, i.e. the student or a strategy's primary model; or a plain state dict).
* :func:`example_input`: the input the network reads (``student_input`` / a teacher's ``input``) at the size
  the task evaluates: a sample of ``data.val``, or ``--input-size`` with the channels of the model's first layer.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn

from densekd.config import Config
from densekd.engine.builder import build_dataset, build_model, build_task
from densekd.engine.checkpoint import load_weights


class InferenceGraph(nn.Module):
    """``forward(x)`` -> ``task.deploy_output(model(x), x)`` (a tensor, or a tuple named by :attr:`output_names`).

    With ``aux=True`` the model's auxiliary head runs too (``model(x, aux=True)``, e.g. :class:`~densekd.models.seg
    .SegModel`) and its output, post-processed as the main one, is appended (name ``'aux_<main name>'``).
    Without it an auxiliary head is removed from ``model`` (``model.aux_head = None``), so the network holds
    only what inference runs. The graph is put in eval mode and its parameters need no gradients."""

    def __init__(self, model: nn.Module, task, aux: bool = False):
        super().__init__()
        if aux and getattr(model, "aux_head", None) is None:
            raise ValueError(f"--aux: {type(model).__name__} has no auxiliary head (a segmentation model built with "
                             f"aux_head=True has one)")
        if not aux and getattr(model, "aux_head", None) is not None:
            model.aux_head = None
        self.model, self.task, self.aux = model, task, bool(aux)
        names = tuple(task.output_names)
        self.output_names = names + ((f"aux_{names[0]}",) if aux else ())
        self.eval()
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor):
        if self.aux:
            raw = self.model(x, aux=True)
            main = self.task.deploy_output(raw["out"], x)
            extra = self.task.deploy_output(raw["aux"], x)
            return (*main, extra) if isinstance(main, tuple) else (main, extra)
        return self.task.deploy_output(self.model(x), x)


def describe_model(model_cfg: dict) -> str:
    """A short name of a model config: ``type(key=value, ...)`` with its scalar settings."""
    cfg = dict(model_cfg)
    kind = cfg.pop("type", "?")
    parts = [f"{k}={v}" for k, v in cfg.items() if isinstance(v, (str, int, float, bool)) and k != "pretrained"]
    return f"{kind}({', '.join(parts)})" if parts else str(kind)


def load_student(cfg: Config, checkpoint: str | None) -> nn.Module:
    """The config's ``model`` with ``checkpoint``'s weights (every weight must fit; a readable error otherwise);
    random weights when ``checkpoint`` is None. ``load_from`` and ``freeze`` are not applied: the weights come
    from the checkpoint."""
    model = build_model(cfg["model"])
    if checkpoint is not None:
        load_weights(model, checkpoint, what="student")
    return model.eval()


def first_in_channels(model: nn.Module) -> int | None:
    """The ``in_channels`` of the first convolution of ``model`` (registration order), or None."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return int(m.in_channels)
    return None


def input_size_from_data(cfg: Config, key: str) -> tuple[tuple[int, ...], str]:
    """``(shape of sample[key] of data.val's first sample, where it came from)`` -- data.train's (a training crop)
    when the config has no data.val; raises when the dataset cannot be read (no data at its root) or its samples
    lack ``key``."""
    from densekd.data.sampling import forked_rng

    split = "val" if (cfg.get("data") or {}).get("val") else "train"
    dataset = build_dataset(cfg, split)
    if dataset is None:
        raise ValueError("the config has no data.val or data.train dataset")
    with forked_rng(0):  # a training sample's augmentation draws from the global RNG
        sample = dataset[0]
    if key not in sample:
        raise KeyError(f"data.{split}'s samples have no {key!r} (they have {sorted(sample)})")
    return tuple(int(s) for s in sample[key].shape), f"data.{split} sample 0 ({type(dataset).__name__})"


def example_input(cfg: Config, model: nn.Module, key: str, input_size=None, batch: int = 1
                  ) -> tuple[torch.Tensor, str]:
    """A deterministic example input ``B x C x H x W`` (standard normal, seed 0) for ``model`` reading
    ``batch[key]`` and where its size came from.

    Size: ``input_size=(H, W)`` when given, else the size of ``data.val``'s first sample (what the task
    evaluates: the validation frame or crop; data.train's without a data.val). Channels: the sample's, else the
    model's first convolution's."""
    shape, source = None, ""
    try:
        shape, source = input_size_from_data(cfg, key)
    except Exception as exc:  # no data here: the size must be given
        if input_size is None:
            raise ValueError(f"cannot read the input size from the data ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200]}); give --input-size H W (or --synthetic / "
                             f"--data-root to read it from the data)") from None
    if input_size is not None:
        h, w = (int(v) for v in input_size)
        if h < 1 or w < 1:
            raise ValueError(f"--input-size must be two positive integers H W; got {input_size}")
        channels = shape[0] if shape is not None and len(shape) == 3 else first_in_channels(model)
        if channels is None:
            raise ValueError(f"cannot tell how many input channels {type(model).__name__} reads; run with the "
                             f"data (--synthetic / --data-root) so that a sample shows it")
        shape, source = (channels, h, w), "--input-size" + (f" (channels from {source})" if source else
                                                           " (channels from the model's first convolution)")
    gen = torch.Generator().manual_seed(0)
    return torch.randn((int(batch),) + tuple(shape), generator=gen), source


def normalisation(cfg: Config) -> dict:
    """The input normalisation the exported network expects: data.val's ``mean`` / ``std`` (fractions of 255),
    else its dataset class's defaults; ``{}`` when neither says."""
    from densekd.registry import DATASETS

    ds = dict((cfg.get("data") or {}).get("val") or {})
    while isinstance(ds.get("dataset"), dict):  # wrappers hold the dataset
        ds = dict(ds["dataset"])
    out = {}
    cls = DATASETS.get(ds["type"]) if isinstance(ds.get("type"), str) and ds["type"] in DATASETS else None
    params = inspect.signature(cls).parameters if cls is not None else {}
    for key in ("mean", "std"):
        value = ds.get(key, params[key].default if key in params else None)
        if value is not None and value is not inspect.Parameter.empty:
            out[key] = [float(v) for v in value]
    return out


def inference_graph(cfg: Config, checkpoint: str | None, aux: bool = False, task=None) -> InferenceGraph:
    """:class:`InferenceGraph` of the config's student with ``checkpoint``'s weights and the config's task
    (class names / palette from the dataset when it can be read, else the task's defaults)."""
    if task is None:
        task = build_config_task(cfg)
    return InferenceGraph(load_student(cfg, checkpoint), task, aux=aux)


def build_config_task(cfg: Config):
    """The config's task, with data.val's metadata when that dataset can be built (not needed otherwise)."""
    try:
        val = build_dataset(cfg, "val")
    except Exception:
        val = None
    return build_task(cfg, val) if val is not None else build_task(cfg)
