"""Atomic checkpoints, RNG state capture, and checkpoint files that fail clearly.

A checkpoint is written to a temporary file in the same folder, flushed and
fsynced, then renamed over the target: a crash mid-write never leaves a
truncated ``last.pth``, and a failed write (disk full, read-only folder) leaves
the previous file as it was and raises an ``OSError`` naming the target.

Reading one (:func:`load_checkpoint`) says which file, what is wrong with it
(empty, truncated, not a torch file, a plain pickle...) and what to do, as a
:class:`CheckpointError`; loading weights (:func:`load_state`) names a few
mismatched parameters and shapes when the file was written for another architecture.
"""
from __future__ import annotations

import os
import random
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

TRAINING_KEYS = ("model", "strategy", "iter", "rng")
"""What every densekd training checkpoint holds (``--resume`` needs all of them)."""


class CheckpointError(ValueError, RuntimeError):
    """A checkpoint file that cannot be used: the message names the file, the problem and what to do.

    A ``ValueError`` (a user error: reported in one line by the tools) and, as weight-loading errors always
    were, a ``RuntimeError``."""


def _write_error(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its file name (the temporary file's name means nothing to a user)."""
    err = OSError(exc.errno, exc.strerror or str(exc), str(path))
    err.__cause__ = exc
    return err


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        # torch's zip writer reports a failed write as a RuntimeError: find the reason while the file still fills
        # the disk
        probe = _probe_write(path.parent) if isinstance(exc, RuntimeError) and "inline_container" in str(exc) \
            else None
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise _write_error(exc, path) from exc
        if isinstance(exc, RuntimeError) and "inline_container" in str(exc):
            if probe is not None:
                raise _write_error(probe, path) from exc
            import errno

            raise OSError(errno.EIO, f"could not write the checkpoint ({_first_line(exc)})", str(path)) from exc
        raise


def _probe_write(folder: Path, size: int = 1 << 16) -> OSError | None:
    """The error that writing ``size`` bytes in ``folder`` raises now (disk full, quota, read-only), or None.
    torch's zip writer reports a failed write as a RuntimeError without the reason; this finds it."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".probe.", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        return None
    except OSError as exc:
        return exc
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise _write_error(exc, path) from exc


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.random.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.random.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- reading ------------------------------------------------------------------------------------------------
_TRUNCATED_FIX = ("the write that produced it did not finish (a killed copy or download, a full disk); use "
                  "another copy (best.pth, an earlier checkpoint) or retrain")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]


def diagnose_file(path: Path) -> str | None:
    """Why ``path`` cannot be a torch checkpoint, judged from its bytes without unpickling; None if it may be one."""
    size = path.stat().st_size
    if size == 0:
        return f"it is empty (0 bytes): {_TRUNCATED_FIX}"
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):  # torch's zip format
        if not zipfile.is_zipfile(path):
            return f"it is truncated ({size} bytes, the zip archive has no end): {_TRUNCATED_FIX}"
        with zipfile.ZipFile(path) as z:
            if not any(n.endswith("data.pkl") for n in z.namelist()):
                return "it is a zip archive but not a torch checkpoint (no data.pkl inside); give a file written by " \
                       "torch.save / densekd"
        return None
    if head[:1] == b"\x80":  # a pickle: torch's legacy format or a plain pickle
        return None
    shown = head[:12]
    kind = "a text file" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "binary data"
    hint = " (an HTML page from a failed download?)" if head.lstrip().startswith(b"<") else ""
    return (f"it is not a torch checkpoint: {kind}{hint} starting with {shown!r}; give a file written by "
            f"torch.save / densekd (checkpoints/last.pth or best.pth of a run)")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` of a checkpoint file, or a :class:`CheckpointError` saying which file, what is wrong and
    what to do (``FileNotFoundError`` when there is no file)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file; give the .pth file inside it "
                              f"(e.g. {path / 'checkpoints' / 'best.pth'})")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    problem = diagnose_file(path)
    if problem:
        raise CheckpointError(f"checkpoint {path}: {problem}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (EOFError, OSError, RuntimeError, ValueError) as exc:
        text = str(exc)
        if isinstance(exc, EOFError) or "EOF" in text or "truncated" in text or isinstance(exc, OSError):
            problem = f"it is truncated or damaged ({_first_line(exc)}): {_TRUNCATED_FIX}"
        elif "magic number" in text:
            problem = ("it is a plain pickle, not a torch checkpoint; give a file written by torch.save / densekd")
        else:
            problem = f"it is damaged ({_first_line(exc)}): {_TRUNCATED_FIX}"
        raise CheckpointError(f"checkpoint {path}: {problem}") from exc
    except (ImportError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {path}: it was written by other software ({_first_line(exc)}); give a "
                              f"densekd checkpoint or a plain state dict (name -> tensor)") from exc
    except Exception as exc:  # pickle.UnpicklingError and friends
        raise CheckpointError(f"checkpoint {path}: it is not a readable torch checkpoint ({type(exc).__name__}: "
                              f"{_first_line(exc)}); {_TRUNCATED_FIX}") from exc


def require_training_checkpoint(ckpt: Any, path: str | os.PathLike) -> dict:
    """``ckpt`` if it is a densekd training checkpoint (what ``--resume`` continues), else a CheckpointError."""
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a densekd training checkpoint; "
                              f"--resume continues only from a checkpoints/last.pth written by tools/train.py")
    missing = [k for k in TRAINING_KEYS if k not in ckpt]
    if missing:
        what = "a plain state dict" if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()) else \
            f"a dict without {missing}"
        raise CheckpointError(f"checkpoint {path} is {what}, not a densekd training checkpoint; --resume continues "
                              f"only from a checkpoints/last.pth written by tools/train.py (start without --resume, "
                              f"or use load_from=... to initialise a new run from these weights)")
    return dict(ckpt)


def model_state_from(ckpt: Any) -> dict:
    """The model weights of a densekd checkpoint, or a plain state dict as it is."""
    if isinstance(ckpt, Mapping):
        for key in ("model", "state_dict"):
            if key in ckpt and isinstance(ckpt[key], Mapping):
                return ckpt[key]
    return ckpt


def _shape(v) -> str:
    return "x".join(str(s) for s in v.shape) if hasattr(v, "shape") else type(v).__name__


def _examples(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


def _trained_model(ckpt: Any) -> str:
    """``model=dict(type=...)`` as recorded in a densekd checkpoint's config, or ''."""
    config = ckpt.get("config") if isinstance(ckpt, Mapping) else None
    if not isinstance(config, str):
        return ""
    for line in config.splitlines():
        if line.startswith("model = "):
            return " ".join(line[len("model = "):].split())[:120]
    return ""


def load_state(model: torch.nn.Module, state: Any, what: str = "model", source: str = "the checkpoint",
               ckpt: Any = None) -> None:
    """Load a state dict (``module.`` prefixes of DDP stripped) or raise a :class:`CheckpointError` naming a few
    mismatched parameter names and shapes, and the architecture the file was written for when it says."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{what}: {source} holds a {type(state).__name__}, not a densekd checkpoint or a state "
                              f"dict (parameter name -> tensor)")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = model.state_dict()
    shapes = [f"{k} {_shape(v)} in the file vs {_shape(own[k])} here" for k, v in state.items()
              if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing: list[str] = []
    unexpected: list[str] = []
    if not shapes:
        result = model.load_state_dict(state, strict=False)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    else:
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
    if shapes or missing or unexpected:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} parameters differ in shape: {_examples(shapes, 3)}")
        if missing:
            parts.append(f"{len(missing)} missing from the file: {_examples(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} not in {type(model).__name__}: {_examples(unexpected)}")
        written = _trained_model(ckpt)
        hint = f" (the file was trained with model = {written})" if written else ""
        raise CheckpointError(
            f"{what} weights in {source} were written for another architecture than this "
            f"{type(model).__name__}{hint}: {'; '.join(parts)}. Give the checkpoint of this model, or the config "
            f"the checkpoint was trained with")


def load_weights(model: torch.nn.Module, path: str | os.PathLike, what: str = "model") -> None:
    """Load weights from a densekd checkpoint or plain state dict, with a readable error for a damaged or
    foreign file."""
    ckpt = load_checkpoint(path)
    load_state(model, model_state_from(ckpt), what, str(path), ckpt=ckpt)


# -- partial loading: a new head on old features ----------------------------------------------------------
def matches_any(name: str, patterns) -> bool:
    """``name`` (a state-dict key) matches one of ``patterns``: an fnmatch pattern (``'fc.*'``,
    ``'*.num_batches_tracked'``) or a module path, which covers everything under it (``'fc'`` = ``'fc'`` and
    ``'fc.*'``)."""
    from fnmatch import fnmatchcase

    return any(fnmatchcase(name, p) or name.startswith(p + ".") for p in patterns)


class LoadReport(dict):
    """What :func:`load_partial_state` did: ``loaded`` (names taken from the file), ``excluded`` (the model's names
    left at their initialisation on purpose), ``missing`` (the model's names the file lacks), ``unexpected`` (the
    file's names the model lacks) and ``mismatched`` (``'name AxB in the file vs CxD here'``), each a list."""

    def line(self, source: str) -> str:
        """One line for the log: what was loaded from ``source`` and what was not."""
        parts = [f"loaded {len(self['loaded'])} tensors from {source}"]
        if self["excluded"]:
            parts.append(f"kept {len(self['excluded'])} at their initialisation (exclude): "
                         f"{_examples(self['excluded'])}")
        for key, what in (("missing", "missing from the file"), ("unexpected", "in the file but not in the model"),
                          ("mismatched", "differ in shape, not loaded")):
            if self[key]:
                parts.append(f"{len(self[key])} {what}: {_examples(self[key])}")
        return "; ".join(parts)


def load_partial_state(model: torch.nn.Module, state: Any, exclude=(), strict: bool = True, what: str = "model",
                       source: str = "the checkpoint", ckpt: Any = None) -> LoadReport:
    """Load ``state`` into ``model`` except the names matching ``exclude`` (see :func:`matches_any`), which keep
    the model's fresh initialisation -- e.g. a new classifier (``exclude=['fc']``) on distilled features.

    ``strict=True``: every other name of the model must be in the file with the same shape and every other name
    of the file must be in the model, else a :class:`CheckpointError` (as :func:`load_state`) that suggests
    ``exclude``. ``strict=False``: the names both have with equal shapes are loaded and the rest is reported.
    A pattern of ``exclude`` that matches no name of the model or the file is a ``ValueError`` (a typo would
    otherwise load everything). Returns a :class:`LoadReport`."""
    from densekd.registry import close_matches

    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{what}: {source} holds a {type(state).__name__}, not a densekd checkpoint or a state "
                              f"dict (parameter name -> tensor)")
    exclude = [exclude] if isinstance(exclude, str) else list(exclude or ())
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = model.state_dict()
    for pattern in exclude:
        if not any(matches_any(k, [pattern]) for k in list(own) + list(state)):
            modules = sorted({k.rsplit(".", 1)[0] for k in own})
            hits = close_matches(pattern.rstrip(".*"), modules, n=3)
            hint = f" Closest module paths: {', '.join(hits)}." if hits else ""
            raise ValueError(f"{what}: exclude pattern {pattern!r} matches no parameter or buffer of "
                             f"{type(model).__name__} nor of {source}.{hint}")
    excluded = [k for k in own if matches_any(k, exclude)]
    kept = {k: v for k, v in state.items() if not matches_any(k, exclude)}
    mismatched = [f"{k} {_shape(v)} in the file vs {_shape(own[k])} here" for k, v in kept.items()
                  if k in own and tuple(v.shape) != tuple(own[k].shape)]
    usable = {k: v for k, v in kept.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    report = LoadReport(loaded=sorted(usable, key=list(own).index), excluded=excluded,
                        missing=[k for k in own if k not in kept and k not in excluded],
                        unexpected=[k for k in kept if k not in own], mismatched=mismatched)
    if strict and (report["missing"] or report["unexpected"] or report["mismatched"]):
        parts = []
        if mismatched:
            parts.append(f"{len(mismatched)} parameters differ in shape: {_examples(mismatched, 3)}")
        if report["missing"]:
            parts.append(f"{len(report['missing'])} missing from the file: {_examples(report['missing'])}")
        if report["unexpected"]:
            parts.append(f"{len(report['unexpected'])} not in {type(model).__name__}: "
                         f"{_examples(report['unexpected'])}")
        written = _trained_model(ckpt)
        hint = f" (the file was trained with model = {written})" if written else ""
        raise CheckpointError(
            f"{what} weights in {source} were written for another architecture than this "
            f"{type(model).__name__}{hint}: {'; '.join(parts)}. Give the checkpoint of this model, leave a new part "
            f"at its initialisation with exclude (e.g. load_from=dict(path=..., exclude=['fc'])), or load what fits "
            f"with strict=False")
    model.load_state_dict(usable, strict=False)
    return report
