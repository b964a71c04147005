"""Test-only parts that inject faults into real runs, registered on import.

Configs of the fault-injection suite (tests/test_faults.py) import this module at their top, so that
``tools/train.py`` running in a subprocess builds them like any other part:

* ``_FaultyCIFAR``: the synthetic CIFAR-100 stand-in whose reads can be logged (``reads``: one line per
  sample read), held (``pause``: while that file exists, every read after the first ``pause_after`` waits,
  which parks a run at a known point) or made to fail (``fail_after``: reads after that many raise).
* ``_FaultCNN``: ``simple_cnn`` that, in training mode, raises an out-of-memory error at forward call
  ``oom_at`` or, from call ``nan_grad_from`` on, returns finite logits with non-finite gradients.

``DENSEKD_TEST_FULL_FLAG=PATH`` (the patched writer used where no small tmpfs can be mounted): while PATH
exists, ``os.fsync`` fails with ENOSPC, as a full disk makes every flushed write fail.
"""
from __future__ import annotations

import errno
import os
import time

import torch

from densekd.data.cifar import SyntheticCIFAR100
from densekd.models.simple import SimpleCNN
from densekd.registry import DATASETS, MODELS


class FaultyCIFAR(SyntheticCIFAR100):
    def __init__(self, *args, reads: str | None = None, pause: str | None = None, pause_after: int = 0,
                 fail_after: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads, self.pause, self.pause_after, self.fail_after = reads, pause, int(pause_after), fail_after
        self.calls = 0

    def __getitem__(self, index: int) -> dict:
        self.calls += 1
        if self.reads:
            with open(self.reads, "a") as f:
                f.write(f"{index}\n")
        if self.pause and self.calls > self.pause_after:
            while os.path.exists(self.pause):
                time.sleep(0.02)
        if self.fail_after is not None and self.calls > int(self.fail_after):
            raise RuntimeError(f"injected failure reading sample {index} (test)")
        return super().__getitem__(index)


class FaultCNN(SimpleCNN):
    def __init__(self, *args, oom_at: int | None = None, nan_grad_from: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.oom_at, self.nan_grad_from = oom_at, nan_grad_from
        self.calls = 0

    def forward(self, x):
        out = super().forward(x)
        if not self.training:
            return out
        self.calls += 1
        if self.oom_at is not None and self.calls == int(self.oom_at):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (test)")
        if self.nan_grad_from is not None and self.calls >= int(self.nan_grad_from):
            out = out + (out.sum() * 0).sqrt()  # value + 0, gradient inf * 0 = nan
        return out


def _register():
    if "_FaultyCIFAR" not in DATASETS:
        DATASETS.register("_FaultyCIFAR")(FaultyCIFAR)
    if "_FaultCNN" not in MODELS:
        MODELS.register("_FaultCNN")(FaultCNN)
    flag = os.environ.get("DENSEKD_TEST_FULL_FLAG")
    if flag and not getattr(os.fsync, "_densekd_patched", False):
        real = os.fsync

        def fsync(fd):
            if os.path.exists(flag):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd)

        fsync._densekd_patched = True
        os.fsync = fsync


_register()
