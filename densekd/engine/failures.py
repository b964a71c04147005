"""Failures after start-up as one line: the cause, the file involved, the fix, the state left, the traceback.

:meth:`Trainer.train <densekd.engine.trainer.Trainer.train>` catches what stops a run (a corrupt data file, an
evaluation error, running out of memory or disk space, a read-only work dir, diverging losses...), writes the
traceback to ``train.log``, saves ``last.pth`` when the state is still sound, and re-raises the exception
with a :class:`Failure` attached; the command-line tools print :meth:`Failure.line` instead of the
traceback (:func:`failure_of`).
"""
from __future__ import annotations

import errno
from dataclasses import dataclass

from densekd.engine.checkpoint import CheckpointError
from densekd.engine.step import NonFiniteLossError

DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
DATA_FIX = ("replace or remove the file (python tools/check_data.py CONFIG lists every bad file of the dataset at "
            "once), then continue with --resume")


@dataclass
class Failure:
    cause: str  # what went wrong, naming the file involved
    fix: str
    state: str = ""  # what the work dir holds now (checkpoint saved / last good checkpoint)
    log: str = ""  # where the traceback is

    def line(self) -> str:
        parts = [self.cause.rstrip(". ") + "."]
        if self.fix:
            parts.append(f"Fix: {self.fix.rstrip('. ')}.")
        if self.state:
            parts.append(self.state.rstrip(". ") + ".")
        if self.log:
            parts.append(f"Traceback in {self.log}")
        return " ".join(parts)


def attach(exc: BaseException, failure: Failure) -> None:
    exc.densekd_failure = failure


def failure_of(exc: BaseException) -> Failure | None:
    return getattr(exc, "densekd_failure", None)


def message_of(exc: BaseException) -> str:
    """The exception's own message in one line; for an error re-raised from a DataLoader worker (whose message
    holds the worker's whole traceback) the original message, which is its last line."""
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if "DataLoader worker" in lines[0] and len(lines) > 1:
        head, sep, rest = lines[-1].partition(": ")  # "densekd.data.sampling.DataFileError: <message>"
        return rest if sep and " " not in head else lines[-1]
    return " ".join(ln.strip() for ln in lines) if len(lines) <= 3 else lines[0]


def _target(exc: OSError, where: str) -> str:
    """``': could not write FILE'`` unless ``where`` names the file already."""
    if not exc.filename:
        return ": could not write a file of the run"
    return "" if str(exc.filename) in where else f": could not write {exc.filename}"


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, getattr(torch.cuda, "OutOfMemoryError", MemoryError))):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                              or "DefaultCPUAllocator" in text)


def describe(exc: BaseException, where: str) -> Failure:
    """Cause and fix of ``exc``, raised ``where`` (e.g. ``'at iteration 13 (training step)'``)."""
    from densekd.data.sampling import DataFileError

    msg = message_of(exc)
    if isinstance(exc, DataFileError):
        return Failure(f"Bad data file {where}: {msg}", DATA_FIX)
    target = _target(exc, where) if isinstance(exc, OSError) else ""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return Failure(f"Disk full {where}{target} ({exc.strerror})",
                       "free space on that disk (or copy the work dir to a disk with room and use --work-dir "
                       "there), then continue with --resume")
    if isinstance(exc, OSError) and exc.errno in NOT_WRITABLE:
        return Failure(f"Work dir not writable {where}{target} ({exc.strerror})",
                       "make the work dir writable again (or copy it elsewhere and use --work-dir there), then "
                       "continue with --resume")
    if is_out_of_memory(exc):
        return Failure(f"Out of memory {where} ({msg[:200]})",
                       "lower data.batch_size (train.accumulate=K keeps the global batch) or data.val_batch_size "
                       "for evaluation, train with train.amp='bf16' on a GPU, or use smaller crops; then continue "
                       "with --resume")
    if isinstance(exc, NonFiniteLossError):  # its message says where and what to do
        return Failure(msg, "")
    if isinstance(exc, CheckpointError):
        return Failure(msg, "")
    if isinstance(exc, OSError):
        return Failure(f"I/O error {where}{target}: {exc.strerror or msg}",
                       "check the disk and the file, then continue with --resume")
    return Failure(f"{type(exc).__name__} {where}: {msg[:300]}",
                   "this is a bug or an unsupported setting; the traceback shows where it happened")
