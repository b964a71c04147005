#!/usr/bin/env python
"""How well datasets match a model's BatchNorm statistics: the BNS similarity of The Knowledge Within.

    python tools/bn_similarity.py CONFIG CHECKPOINT [--data train val gaussian FILE.h5 ...] [--batch-size 256]
                                  [--num-images 1024] [--image-size H W] [--out FILE.json] [--synthetic]
                                  [--data-root PATH] [--device cpu|cuda] [--cfg-options ...]

The model is CONFIG's ``model`` (or, for a synthesis config, ``synthesis.teacher.model``) with CHECKPOINT's weights
(a densekd checkpoint or a plain state dict), in eval mode. For each dataset, in batches of --batch-size images in
order and without augmentation (the last incomplete batch dropped when there is a full one): per BatchNorm layer
the sum over channels of KL(N(batch mean, batch var) || N(running mean, running var)) (both variances + the layer's
eps), averaged over the layers, then over the batches weighted by their size. Lower = more similar (0: every batch
reproduces the stored statistics). Datasets: ``train`` / ``val`` (the config's data.train / data.val),
``gaussian`` (--num-images N(0, 1) images in the normalised input space, the Gaussian scheme's inputs) or a
synthesised images file (tools/synthesize.py's images.h5). Prints a table (best first); --out writes JSON with the
per-layer values.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_config_args, fail, prepare  # noqa: E402


def _dataset(cfg, name: str):
    from densekd.registry import DATASETS, signature_params

    if name in ("train", "val"):
        ds_cfg = (cfg.get("data") or {}).get(name)
        if not ds_cfg:
            raise ValueError(f"--data {name}: the config has no data.{name}")
        ds_cfg = copy.deepcopy(ds_cfg)
        if "augment" in signature_params(DATASETS.get(ds_cfg["type"]))[0]:
            ds_cfg["augment"] = False
        return DATASETS.build(ds_cfg, where=f"data.{name}")
    path = Path(name)
    if path.suffix in (".h5", ".hdf5") or path.is_file():
        from densekd.data.synthesized import SynthesizedImages

        return SynthesizedImages(str(path), augment=False, target=None)
    raise ValueError(f"--data {name!r}: give train, val, gaussian or an images file (.h5)")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("checkpoint", help="the model's weights (best.pth / last.pth or a plain state dict)")
    parser.add_argument("--data", nargs="+", default=["train", "gaussian"],
                        help="datasets to score: train, val, gaussian, or images files (default: train gaussian)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-images", type=int, default=1024, help="images of the gaussian dataset")
    parser.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="size of the gaussian images (default: that of the first other dataset, else "
                             "synthesis.image_size, else 32 x 32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the scores (and per-layer values) as JSON")
    args = parser.parse_args(argv)
    import torch

    from densekd.data.sampling import build_loader
    from densekd.engine import distributed as dist
    from densekd.probe.runner import frozen_model
    from densekd.synthesis.similarity import bn_similarity

    try:
        cfg = prepare(args)
        model_cfg = cfg.get("model") or ((cfg.get("synthesis") or {}).get("teacher") or {}).get("model")
        if not model_cfg:
            raise ValueError("the config has no `model` (nor synthesis.teacher.model) to score the datasets with")
        device = dist.setup(args.device)
        model = frozen_model(model_cfg, args.checkpoint, device)
        datasets = {name: _dataset(cfg, name) for name in args.data if name != "gaussian"}
        results = {}
        for name in args.data:
            if name == "gaussian":
                size = args.image_size
                if size is None and datasets:
                    size = tuple(next(iter(datasets.values()))[0]["image"].shape[-2:])
                if size is None:
                    s = (cfg.get("synthesis") or {}).get("image_size", 32)
                    size = (s, s) if isinstance(s, int) else tuple(s)
                g = torch.Generator().manual_seed(args.seed)
                n, bs = args.num_images, args.batch_size
                batches = [torch.randn(min(bs, n - i), 3, *size, generator=g) for i in range(0, n, bs)]
                if len(batches) > 1 and batches[-1].shape[0] < bs:
                    batches = batches[:-1]
            else:
                ds = datasets[name]
                drop = len(ds) >= args.batch_size
                batches = build_loader(ds, args.batch_size, shuffle=False, train=False, seed=args.seed, drop_last=drop)
            results[name] = bn_similarity(model, batches, device)
    except USER_ERRORS as exc:
        fail(exc)
    except OSError as exc:
        fail(exc)
    print("| data | BNS (lower = more similar) | images | batches |")
    print("|---|---|---|---|")
    for name, r in sorted(results.items(), key=lambda kv: kv[1]["bns"]):
        print(f"| {name} | {r['bns']:.4f} | {r['images']} | {r['batches']} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"checkpoint": args.checkpoint, "batch_size": args.batch_size,
                                              "results": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
