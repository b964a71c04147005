"""Linear probing: how much a (distilled) network's frozen features at one tap know about the labels.

    from densekd.probe import run_probe
    summary = run_probe(cfg, 'work_dirs/x/checkpoints/best.pth', layer='feats[-1]')

``tools/linear_probe.py`` is the command line and pipelines have a ``kind='probe'`` stage. The pieces:
:mod:`~densekd.probe.settings` (the config's ``probe`` section), :mod:`~densekd.probe.features` (tap
resolution, extraction, the on-disk cache), :mod:`~densekd.probe.linear` (the classifiers and the weight-decay
sweep, on tensors only) and :mod:`~densekd.probe.runner` (config + checkpoint -> summary).
"""
from densekd.probe.features import FeatureCache, NoLabelsError, resolve_tap
from densekd.probe.linear import probe_dense, probe_global
from densekd.probe.runner import SUMMARY, read_summary, run_probe
from densekd.probe.settings import ProbeSettings

__all__ = ["FeatureCache", "NoLabelsError", "ProbeSettings", "SUMMARY", "probe_dense", "probe_global", "read_summary",
           "resolve_tap", "run_probe"]
