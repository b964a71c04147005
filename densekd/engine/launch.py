"""What the command-line tools share: arguments -> resolved config and work dir, and one-line errors."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from densekd.config import Config, ConfigError, config_name, load_config
from densekd.engine.builder import set_data_root, use_synthetic
from densekd.engine.schema import ensure_valid


def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` (a readable error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int_at_least_{minimum}"
    return parse


non_negative_int = int_at_least(0)
positive_int = int_at_least(1)


def add_cfg_options(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--cfg-options k=v ...``; given several times, the groups accumulate (in order)."""
    parser.add_argument("--cfg-options", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help=help_text)


def add_data_root(parser: argparse.ArgumentParser, what: str = "") -> None:
    """``--data-root PATH`` (every real dataset) or ``--data-root TYPE=PATH ...`` (one root per dataset type)."""
    parser.add_argument("--data-root", nargs="+", default=None, metavar="PATH|TYPE=PATH",
                        help="root of the real dataset" + what + "; for several datasets one root each as TYPE=PATH, "
                             "e.g. --data-root CIFAR100=data/cifar100 STL10=data/stl10 TinyImageNet=data/tinyimagenet")


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="path to a config .py file")
    add_cfg_options(parser, "override settings, e.g. optimizer.lr=0.1 train.epochs=2 distill.0.weight=2 (values are "
                            "Python literals: 1e-3, nan, inf, True, None, [1, 2]; repeatable)")
    parser.add_argument("--synthetic", action="store_true",
                        help="replace every dataset by its built-in synthetic stand-in (smoke runs, tests)")
    add_data_root(parser)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def prepare(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config, args.cfg_options)
    if getattr(args, "seed", None) is not None:
        cfg["seed"] = args.seed
        cfg.sources["seed"] = "--seed"
    if args.data_root:
        set_data_root(cfg, args.data_root)
    if args.synthetic:
        use_synthetic(cfg)
    ensure_valid(cfg)
    return cfg


def default_work_dir(cfg: Config, explicit: str | None, seed: int | None = None) -> Path:
    """``--work-dir``, else the config's ``work_dir``, else ``work_dirs/<config name>[/seed<S>]``."""
    if explicit:
        return Path(explicit)
    if cfg.get("work_dir"):
        return Path(cfg["work_dir"])
    base = Path("work_dirs") / config_name(cfg.filename)
    return base / f"seed{seed}" if seed is not None else base


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def fail(exc: Exception) -> None:
    """Print a config/data error as one readable line and exit 2 (no traceback)."""
    print(f"error: {one_line(exc)}", file=sys.stderr)
    raise SystemExit(2)


def fail_after_start(exc: BaseException) -> None:
    """A failure after start-up (see :mod:`densekd.engine.failures`) as its one line on stderr, exit 1; an
    exception without a recorded failure is re-raised."""
    from densekd.engine.failures import failure_of

    failure = failure_of(exc)
    if failure is None:
        raise exc
    print(f"error: {one_line(failure.line())}", file=sys.stderr)
    raise SystemExit(1)


def _user_errors() -> tuple[type[BaseException], ...]:
    from densekd.engine.checkpoint import CheckpointError
    from densekd.engine.distributed import DeviceError

    return (ConfigError, FileNotFoundError, LookupError, ValueError, CheckpointError, DeviceError)


USER_ERRORS = _user_errors()
