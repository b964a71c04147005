"""Run records: ``train.log``, ``metrics.jsonl``, ``summary.json``, TensorBoard, progress.

Only rank 0 writes. On a terminal a tqdm bar shows progress; otherwise the
same information goes out as plain log lines.
"""
from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from densekd.engine.checkpoint import atomic_write_text


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RunRecords:
    def __init__(self, work_dir: Path, enabled: bool = True, tensorboard: bool = True, console: bool = True):
        self.work_dir = Path(work_dir)
        self.enabled = enabled
        self.logger = logging.getLogger(f"densekd.{self.work_dir}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        for h in list(self.logger.handlers):
            self.logger.removeHandler(h)
        self._tb = None
        self._bar = None
        if not enabled:
            self.logger.addHandler(logging.NullHandler())
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
        fh = logging.FileHandler(self.work_dir / "train.log")
        fh.setFormatter(fmt)
        self.logger.addHandler(fh)
        if console:
            sh = logging.StreamHandler(sys.stdout)
            sh.setFormatter(fmt)
            self.logger.addHandler(sh)
        self._jsonl = open(self.work_dir / "metrics.jsonl", "a", buffering=1)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.work_dir / "tb"))
            except ImportError:  # the 'tb' extra is optional
                self._tb = None

    # -- messages -----------------------------------------------------------
    def info(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.clear()
        self.logger.info(msg)
        if self._bar is not None:
            self._bar.refresh()

    def warning(self, msg: str) -> None:
        self.logger.warning(msg)

    # -- progress -----------------------------------------------------------
    def start_progress(self, total: int, initial: int, desc: str) -> None:
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False)

    def advance(self, postfix: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if postfix:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def stop_progress(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- records ------------------------------------------------------------
    def record(self, entry: dict) -> None:
        """Append one JSON line and mirror scalars to TensorBoard."""
        if not self.enabled:
            return
        entry = {k: _plain(v) for k, v in entry.items()}
        self._jsonl.write(json.dumps(entry) + "\n")
        if self._tb is not None:
            step = entry.get("iter", 0)
            prefix = f"{entry['split']}/" if "split" in entry else "train/"
            for k, v in entry.items():
                if isinstance(v, (int, float)) and k not in ("iter", "epoch"):
                    self._tb.add_scalar(prefix + k, v, step)

    def write_json(self, name: str, data: dict) -> None:
        if self.enabled:
            atomic_write_text(json.dumps(data, indent=2, default=_plain) + "\n", self.work_dir / name)

    def close(self) -> None:
        self.stop_progress()
        if self.enabled:
            self._jsonl.close()
            if self._tb is not None:
                self._tb.close()
        for h in list(self.logger.handlers):
            h.close()
            self.logger.removeHandler(h)
