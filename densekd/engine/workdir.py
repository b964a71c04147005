"""Work-dir safety: one run per work dir at a time, and no run silently replaces another.

* :func:`earlier_run` recognises what a run leaves behind (checkpoints, ``summary.json``, a non-empty
  ``metrics.jsonl``). A new run in such a folder is refused (:class:`WorkDirError`) unless it continues the
  earlier one (``--resume``) or explicitly replaces it (``--overwrite``, :func:`clear_run`); the message names
  the three ways out, the third being another ``--work-dir``.
* :class:`WorkDirLock` is the ``.lock`` file of a running run. It is held with ``fcntl.flock``, which the
  kernel releases when the holder exits however it exits (``kill -9`` included), so a crashed run never leaves
  a stale lock; the file records the holder's pid, host and command for the message a second run gets. Where
  ``flock`` is not available the lock is the file's existence and a lock whose process is no longer alive
  (checked with the pid, and its start time where ``/proc`` has it) is taken over.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".lock"
RUN_FILES = ("config.py", "train.log", "metrics.jsonl", "summary.json")
RUN_DIRS = ("checkpoints", "tb")


class WorkDirError(ValueError):
    """A work dir that this run may not use: ``kind`` is ``'in_use'``, ``'earlier_run'`` or ``'not_writable'``."""

    def __init__(self, message: str, kind: str = "earlier_run"):
        super().__init__(message)
        self.kind = kind


def earlier_run(work_dir: str | os.PathLike) -> str | None:
    """What an earlier run left in ``work_dir`` (e.g. ``'a finished run of 18 iterations (summary.json,
    checkpoints/last.pth, ...)'``), or None when there is nothing to protect."""
    wd = Path(work_dir)
    found = [f"checkpoints/{p.name}" for p in sorted((wd / "checkpoints").glob("*.pth"))]
    if (wd / "summary.json").is_file():
        found.insert(0, "summary.json")
    metrics = wd / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size > 0:
        found.append("metrics.jsonl")
    if not found:
        return None
    state = "an earlier run"
    try:
        summary = json.loads((wd / "summary.json").read_text())
        state = (f"a finished run of {summary.get('iters')} iterations" if summary.get("completed") else
                 f"an earlier run stopped at iteration {summary.get('iters')} of {summary.get('total_iters')}")
    except (OSError, ValueError):
        if (wd / "checkpoints" / "last.pth").is_file():
            state = "an interrupted run"
    return f"{state} ({', '.join(found)})"


def refuse_earlier_run(work_dir: Path, what: str) -> WorkDirError:
    return WorkDirError(
        f"work dir {work_dir} holds {what}; starting a new run there would overwrite it. Continue it with "
        f"--resume, start elsewhere with --work-dir DIR, or replace it with --overwrite", kind="earlier_run")


def clear_run(work_dir: str | os.PathLike) -> list[str]:
    """Delete what a run writes in ``work_dir`` (checkpoints, records, TensorBoard scalars); other files stay.
    Returns the removed names."""
    wd = Path(work_dir)
    removed = []
    for name in RUN_FILES:
        if (wd / name).is_file():
            (wd / name).unlink()
            removed.append(name)
    ckpts = wd / "checkpoints"
    if ckpts.is_dir():
        for p in list(ckpts.glob("*.pth")) + list(ckpts.glob(".*.tmp")):
            p.unlink()
            removed.append(f"checkpoints/{p.name}")
        if not any(ckpts.iterdir()):
            ckpts.rmdir()
    if (wd / "tb").is_dir():
        shutil.rmtree(wd / "tb")
        removed.append("tb/")
    return removed


# -- the lock -----------------------------------------------------------------------------------------------
def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, start_time: str | None = None) -> bool:
    """Whether process ``pid`` runs on this machine (and, when ``start_time`` is given and ``/proc`` knows it,
    is the same process rather than a later one that reused the pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    if start_time is not None:
        now = _start_time(pid)
        if now is not None and now != start_time:
            return False
    return True


def _describe_holder(info: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"])) if info.get("started") else "?"
    cmd = f" ({info['command'][:120]})" if info.get("command") else ""
    return f"process {info.get('pid', '?')} on {info.get('host', '?')}, started {since}{cmd}"


class WorkDirLock:
    """The lock of one work dir, held by the run writing it (see the module docstring)."""

    def __init__(self, work_dir: str | os.PathLike):
        self.path = Path(work_dir) / LOCK_NAME
        self._fd: int | None = None

    def _info(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "proc_start": _start_time(os.getpid()), "command": " ".join(sys.argv)}

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _in_use(self, info: dict) -> WorkDirError:
        return WorkDirError(
            f"work dir {self.path.parent} is in use by another run ({_describe_holder(info)}); wait for it to "
            f"finish or stop it, or use another --work-dir", kind="in_use")

    def acquire(self) -> "WorkDirLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if fcntl is not None:
                self._acquire_flock()
            else:
                self._acquire_pidfile()
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
                raise WorkDirError(f"work dir {self.path.parent} is not writable ({exc.strerror}): make it writable "
                                   f"or free space there, or use another --work-dir", kind="not_writable") from None
            raise
        return self

    def _acquire_flock(self, orphan_wait_s: float = 15.0) -> None:
        deadline = None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    info = self._read()
                    holder_gone = (info.get("host") == socket.gethostname() and
                                   not pid_alive(int(info.get("pid", 0)), info.get("proc_start")))
                    if holder_gone:  # its data-loader workers, orphaned by a kill -9, still hold it: they exit soon
                        deadline = deadline or time.monotonic() + orphan_wait_s
                        if time.monotonic() < deadline:
                            time.sleep(0.2)
                            continue
                    raise self._in_use(info) from None
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):  # a file system without flock
                    return self._acquire_pidfile()
                raise
            try:  # the file we locked must still be the lock (a finishing run unlinks it)
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(self._info()).encode())
            self._fd = fd
            return

    def _acquire_pidfile(self) -> None:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                info = self._read()
                here = info.get("host") == socket.gethostname()
                if not info or (here and not pid_alive(int(info.get("pid", 0)), info.get("proc_start"))):
                    self.path.unlink(missing_ok=True)  # stale: its holder is gone
                    continue
                if not here:
                    raise WorkDirError(f"work dir {self.path.parent} is locked by {_describe_holder(info)}, which "
                                       f"cannot be checked from this machine; if that run is no longer running, "
                                       f"delete {self.path}", kind="in_use") from None
                raise self._in_use(info) from None
            os.write(fd, json.dumps(self._info()).encode())
            os.close(fd)
            self._fd = -1
            return
        raise self._in_use(self._read())

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if self._read().get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
        except OSError:
            pass
        if self._fd >= 0:
            try:
                if fcntl is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)  # also for forked data-loader workers sharing the fd
                os.close(self._fd)
            except OSError:
                pass
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __del__(self):
        self.release()


def claim_work_dir(work_dir: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> WorkDirLock:
    """Lock ``work_dir`` for a run and check that the run may write there: a fresh run needs a folder without
    an earlier run (or ``overwrite``, which deletes that run's files first); ``resume`` continues the run there.
    Raises :class:`WorkDirError` (the lock is not kept then)."""
    wd = Path(work_dir)
    if resume and overwrite:
        raise WorkDirError("--resume continues the run in the work dir and --overwrite replaces it: give one of them")
    lock = WorkDirLock(wd).acquire()
    try:
        for tmp in (wd / "checkpoints").glob(".*.pth.*.tmp"):  # a write cut short by a kill: ours to clean now
            tmp.unlink(missing_ok=True)
        what = earlier_run(wd)
        if what and not resume:
            if not overwrite:
                raise refuse_earlier_run(wd, what)
            clear_run(wd)
    except BaseException:
        lock.release()
        raise
    return lock
