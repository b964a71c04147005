"""Run records: ``train.log``, ``metrics.jsonl``, ``summary.json``, TensorBoard, progress.

Only rank 0 writes. On a terminal a tqdm bar shows progress; otherwise the
same information goes out as plain log lines. A record that cannot be written
(disk full, read-only folder) raises ``OSError`` naming the file, instead of
the logging module's "--- Logging error ---" traceback on the terminal.
"""
from __future__ import annotations

import json
import logging
import math
import os
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


class _FileHandler(logging.FileHandler):
    """A log file whose write errors are kept (and raised by :class:`RunRecords`), not printed."""

    error: OSError | None = None

    def handleError(self, record) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) and self.error is None:
            self.error = OSError(exc.errno, exc.strerror or str(exc), self.baseFilename)


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
        self._fh = None
        self._jsonl = None
        if not enabled:
            self.logger.addHandler(logging.NullHandler())
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
        fh = _FileHandler(self.work_dir / "train.log")
        fh.setFormatter(fmt)
        self.logger.addHandler(fh)
        self._fh = fh
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
    def _raise_write_error(self) -> None:
        if self._fh is not None and self._fh.error is not None:
            err, self._fh.error = self._fh.error, None
            raise err

    def info(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.clear()
        self.logger.info(msg)
        if self._bar is not None:
            self._bar.refresh()
        self._raise_write_error()

    def warning(self, msg: str) -> None:
        self.logger.warning(msg)
        self._raise_write_error()

    def exception(self, line: str, exc: BaseException) -> str:
        """Write ``line`` and the traceback of ``exc`` to ``train.log`` only (the terminal gets the one line from
        the tool). Returns where the traceback went: ``train.log``, or a file in the temporary folder when
        ``train.log`` cannot be written (a full or read-only disk)."""
        import tempfile
        import time
        import traceback

        text = (f"{time.strftime('%Y-%m-%d %H:%M:%S')} ERROR {line}\n"
                + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        targets = ([self.work_dir / "train.log"] if self.enabled else []) + \
            [Path(tempfile.gettempdir()) / f"densekd-failure-{os.getpid()}.log"]
        for target in targets:
            try:
                with open(target, "a") as f:
                    f.write(text)
                return str(target)
            except OSError:
                continue
        return "(nowhere: no writable file)"

    # -- progress -----------------------------------------------------------
    def start_progress(self, total: int, initial: int, desc: str) -> None:
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False)

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def set_postfix(self, values: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)

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
        try:
            self._jsonl.write(json.dumps(entry) + "\n")
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.work_dir / "metrics.jsonl")) from exc
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
            if self._jsonl is not None:
                try:
                    self._jsonl.close()
                except OSError:  # the last buffered line could not be written (disk full): already reported
                    pass
                self._jsonl = None
            if self._tb is not None:
                self._tb.close()
                self._tb = None
        for h in list(self.logger.handlers):
            try:
                h.close()
            except OSError:
                pass
            self.logger.removeHandler(h)
