#!/usr/bin/env bash
# The GPU check: the CUDA tests, then the benchmark suites at the papers' sizes, in under 8 minutes (the
# steps' limits add up to 470 s), with one
# JSON summary. For a session that is lent a GPU:
#
#     bash tools/gpu_check.sh [OUT_DIR]          # default: $OUT if set, else work_dirs/gpu_check
#
# Writes OUT_DIR/gpu_check.json (every step's exit code, seconds and the benchmark results), the suites'
# benchmark_<suite>.{json,md}, the pytest log and its JUnit XML. Each step has its own time limit, so one that
# hangs cannot take the others' time; a failing step is recorded and the script goes on. Exit code: 0 when every
# step passed, else 1. PYTHON picks the interpreter (default: python).
set -u
OUT_DIR=${1:-${OUT:-work_dirs/gpu_check}}
PY=${PYTHON:-python}
mkdir -p "$OUT_DIR"
cd "$(dirname "$0")/.."
STEPS="$OUT_DIR/steps.tsv"
: > "$STEPS"

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, log to OUT_DIR/NAME.log, record rc and seconds
    local name=$1 limit=$2
    shift 2
    local start=$(date +%s)
    timeout --signal=TERM --kill-after=10 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
    local rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" >> "$STEPS"
    echo "[gpu_check] $name: exit $rc after $(( $(date +%s) - start )) s"
}

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" \
    > "$OUT_DIR/device.txt" 2>&1 || { echo "[gpu_check] no usable CUDA device: $(tail -n 1 "$OUT_DIR/device.txt")"; exit 1; }

# 1. the CUDA tests (CUDA paths of the CRD loss, AMP/channels_last training, the fast paths of tests/test_cuda_paths.py)
step cuda_tests 150 "$PY" -m pytest -q -p no:cacheprovider -k cuda --junitxml "$OUT_DIR/cuda_tests.xml" \
    tests/test_cuda_paths.py tests/test_crd.py tests/test_trainer.py
# 2. the benchmark at the papers' sizes (CIFAR batch 64; Cityscapes 512 x 1024, batch 2) with the configs' own
#    precision, then KD / CRD / the cached teacher under bf16 autocast with channels_last; fewer rounds than on a
#    CPU, since GPU steps vary little
BENCH=("$PY" tools/benchmark.py --device cuda --out "$OUT_DIR" --reps 5 --warmup 2)
step bench_cls 100 "${BENCH[@]}" --suite cls
step bench_cls_bf16 30 "$PY" tools/benchmark.py --device cuda --out "$OUT_DIR/bf16" --reps 5 --warmup 2 --suite cls \
    --methods KD CRD KD_cached --cfg-options "train.amp='bf16'" train.channels_last=True
step bench_seg 70 "${BENCH[@]}" --suite seg
step bench_seg_cirkd 50 "${BENCH[@]}" --suite seg-cirkd --methods KD CWD SKD
step bench_depth 40 "${BENCH[@]}" --suite depth --methods DepthKD PairWise Holistic
step bench_pairwise 30 "${BENCH[@]}" --suite pairwise-memory --max-nodes 32768

"$PY" - "$OUT_DIR" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
steps = {}
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, seconds = line.split("\t")
    steps[name] = {"exit_code": int(rc), "seconds": int(seconds), "log": str(out / f"{name}.log")}
bench = {str(p.relative_to(out).with_suffix("")): json.loads(p.read_text()) for p in sorted(out.rglob("benchmark_*.json"))}
summary = {"device": (out / "device.txt").read_text().strip(), "passed": all(s["exit_code"] == 0 for s in steps.values()),
           "steps": steps, "benchmarks": bench}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"[gpu_check] wrote {out / 'gpu_check.json'}: " + ", ".join(f"{k} {v['exit_code']}" for k, v in steps.items()))
sys.exit(0 if summary["passed"] else 1)
EOF
