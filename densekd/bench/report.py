"""The files a benchmark writes: ``benchmark_<suite>.json`` (everything, raw timings included) and
``benchmark_<suite>.md`` (the table a README or an issue can take as it is)."""
from __future__ import annotations

import json
from pathlib import Path

DASH = "—"


def _num(value, fmt: str = "{:.1f}") -> str:
    return DASH if value is None else fmt.format(value)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _yes_no(value) -> str:
    return DASH if value is None else ("yes" if value else "no")


def suite_markdown(result: dict) -> str:
    """The suite table: student alone, teacher forward and the bound first, then one row per method."""
    env = result["environment"]
    image = f" at {result['image_size'][0]} x {result['image_size'][1]}" if result["image_size"] else ""
    lines = [
        f"# Step cost: {result['title']} (`--suite {result['suite']}`)", "",
        f"Batch {result['batch']}{image} ({result['size']} size), {result['data']} data, {env['device']}"
        f"{' (' + env['gpu'] + ')' if env.get('gpu') else ''}, torch {env['torch']}, {env['threads']} thread(s). "
        f"Medians of {_count(result['reps'], 'interleaved round')} after {_count(result['warmup'], 'warm-up round')}; "
        f"IQR = interquartile range. Memory: {result['memory_measure']}.", "",
        "| method | median ms | IQR ms | ratio to bound | loss modules ms | floor | per-step peak MB | target | "
        "within target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in (result["student"], result["teacher"]):
        lines.append(f"| {row['name']} | {row['median_ms']:.1f} | {row['iqr_ms']:.1f} | {DASH} | {DASH} | {DASH} | "
                     f"{_num(row['peak_mb'])} | {DASH} | {DASH} |")
    lines.append(f"| bound | {result['bound_ms']:.1f} | {DASH} | 1.00x | {DASH} | {DASH} | {DASH} | {DASH} | "
                 f"{DASH} |")
    for row in result["methods"].values():
        target = DASH if row["target"] is None else f"<= {row['target']:.2f}x ({row['kind']})"
        own = row.get("loss_modules")
        lines.append(f"| {row['name']} | {row['median_ms']:.1f} | {row['iqr_ms']:.1f} | {row['ratio']:.2f}x | "
                     f"{_num(own and own['median_ms'])} | {_num(row.get('floor_ratio'), '{:.2f}x')} | "
                     f"{_num(row['peak_mb'])} | {target} | {_yes_no(row['within_target'])} |")
    line = result.get("loader_line")
    if line:
        lines += ["", f"Loader line ({line['method']}): fed by the training loader ({line['num_workers']} workers) "
                      f"{line['loader_fed']['median_ms']:.1f} ms vs on a prefetched batch "
                      f"{line['prefetched']['median_ms']:.1f} ms per step: {line['difference_pct']:+.1f}%."]
    lines += ["", "Loss modules: every term's loss module alone (forward on the inputs a forward gave it, backward to "
                  "them and to its own parameters; networks, connectors, optimiser and critic updates left out); "
                  "floor = 1 + loss modules / bound, the ratio the step cannot go below."]
    notes = [f"{row['name']}: {note}" for row in result["methods"].values() for note in row["notes"]]
    notes += result.get("notes", [])
    if notes:
        lines += ["", "Notes:", ""] + [f"* {note}" for note in notes]
    return "\n".join(lines) + "\n"


def pairwise_markdown(result: dict) -> str:
    """The pair-wise memory curve: one row per node count, then the linear fit."""
    env = result["environment"]
    lines = [
        "# PairWiseKD memory against node count (`--suite pairwise-memory`)", "",
        f"Forward + backward of PairWiseKD ({result['loss']}) on random B x C x H x W maps, batch {result['batch']}, "
        f"{result['channels'][0]} student / {result['channels'][1]} teacher channels, {env['device']}, torch "
        f"{env['torch']}, {env['threads']} thread(s); median of {_count(result['reps'], 'step')}. Memory: "
        f"{result['memory_measure']}.", "",
        "| nodes | grid | median ms | per-step peak MB |", "|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['nodes']} | {row['grid'][0]} x {row['grid'][1]} | {row['median_ms']:.1f} | "
                     f"{_num(row['peak_mb'])} |")
    fit = result.get("fit")
    if fit:
        lines += ["", f"Linear fit: {fit['mb_per_1k_nodes']:.2f} MB per 1k nodes + {fit['intercept_mb']:.1f} MB "
                      f"(R^2 {fit['r2']:.3f}); memory {fit['verdict']}."]
    if result.get("skipped"):
        lines += ["", result["skipped"]]
    return "\n".join(lines) + "\n"


def write(result: dict, out_dir: str | Path, markdown: str) -> tuple[Path, Path]:
    """``out_dir/benchmark_<suite>.json`` and ``.md``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"benchmark_{result['suite']}"
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path
