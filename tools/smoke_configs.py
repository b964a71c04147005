#!/usr/bin/env python
"""Start every config under the given folders for a few iterations on synthetic data.

    python tools/smoke_configs.py configs/cifar100/distill [more folders or files] [--max-iters 2]
                                  [--cfg-options k=v ...] [--out results.json]

Runs `tools/train.py CONFIG --synthetic --max-iters N --overwrite` for each config (scratch work dirs under
work_dirs/smoke/, replaced on every run) and reports which started, how long each took, and the first error line.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--max-iters", type=int, default=2)
    parser.add_argument("--cfg-options", nargs="+", action="extend", default=[])
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    configs = sorted({c for p in args.paths for c in ([Path(p)] if Path(p).is_file() else Path(p).rglob("*.py"))})
    results = {}
    for i, cfg in enumerate(configs, 1):
        start = time.time()
        cmd = [sys.executable, str(ROOT / "tools/train.py"), str(cfg), "--synthetic", "--max-iters",
               str(args.max_iters), "--device", "cpu", "--overwrite",
               "--work-dir", str(ROOT / "work_dirs/smoke" / cfg.with_suffix(""))]
        if args.cfg_options:
            cmd += ["--cfg-options", *args.cfg_options]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        ok = proc.returncode == 0
        err = "" if ok else (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        results[str(cfg)] = {"ok": ok, "seconds": round(time.time() - start, 1), "error": err}
        print(f"[{i}/{len(configs)}] {'ok  ' if ok else 'FAIL'} {results[str(cfg)]['seconds']:6.1f}s {cfg} {err}",
              flush=True)
    passed = sum(r["ok"] for r in results.values())
    print(f"{passed} passed, {len(results) - passed} failed")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
