"""What ``tools/train.py`` and ``tools/test.py`` share: arguments -> resolved config and work dir."""
from __future__ import annotations

import argparse
from pathlib import Path

from densekd.config import Config, ConfigError, config_name, load_config
from densekd.engine.builder import set_data_root, use_synthetic
from densekd.engine.schema import ensure_valid


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="path to a config .py file")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override settings, e.g. optimizer.lr=0.1 train.epochs=2 distill.0.weight=2")
    parser.add_argument("--synthetic", action="store_true",
                        help="replace every dataset by its built-in synthetic stand-in (smoke runs, tests)")
    parser.add_argument("--data-root", default=None, help="root of the real dataset")
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


def fail(exc: Exception) -> None:
    """Print a config/data error as one readable message and exit 2 (no traceback)."""
    import sys

    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2)


USER_ERRORS = (ConfigError, FileNotFoundError, LookupError, ValueError)
