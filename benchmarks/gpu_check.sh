#!/usr/bin/env bash
# dapt on one GPU in at most 8 minutes: the device tests on cuda (losses, bf16/fp16 autocast and the
# GradScaler, teacher_amp auto, a tiny teacher and cached/live students), a short distill run at 224 px
# (benchmarks/distill_speed.py: scratch, live, cached) and the images per second of students alone,
# sharing a cached teacher and with a live one (benchmarks/study_speed.py, when present).
#
#   bash benchmarks/gpu_check.sh | tee benchmarks/results/gpu_check.txt   # on a CUDA machine; commit the output
#   bash benchmarks/gpu_check.sh --cpu                                     # the same steps on the CPU, tiny sizes
#
# Offline: it installs nothing and uses .venv/bin/python when present, else python3. Every step's output goes
# to stdout; a step that fails or runs out of time is reported and the next one runs; the last line sums up
# (exit status 1 when a step failed, 2 when CUDA is missing without --cpu).
# The dataset is fashion_mnist when its files are on the machine, else digits (sklearn's, in the venv);
# DATASET=... overrides.
set -euo pipefail

cd "$(dirname "$0")/.."
MODE=cuda
case "${1:-}" in
  --cpu) MODE=cpu ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--cpu]" >&2; exit 2 ;;
esac
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
export PYTHONUNBUFFERED=1
export TQDM_DISABLE=1  # no progress bars (carriage returns) in the committed output; epoch lines still print

# seconds for the whole script: under 8 minutes on a GPU with the start-up; --cpu is not bounded by it
if [ "$MODE" = cuda ]; then BUDGET=${GPU_CHECK_BUDGET:-470}; else BUDGET=${GPU_CHECK_BUDGET:-900}; fi
START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dapt-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SUMMARY=()
FAILED=0

# step NAME SECONDS COMMAND...: run COMMAND with its output on stdout (and in $WORK/NAME.log), under a
# timeout of SECONDS capped by what is left of the budget; records ok / failed (rc) / timeout in SUMMARY.
step() {
  local name=$1 limit=$2 rc=0 t0 left
  shift 2
  left=$((BUDGET - ($(date +%s) - START) - 5))
  if [ "$left" -lt "$limit" ]; then limit=$left; fi
  echo
  echo "=== $name (timeout ${limit} s): $*"
  if [ "$limit" -lt 10 ]; then
    echo "--- $name: skipped, the ${BUDGET} s budget is spent"
    SUMMARY+=("$name=skipped(budget)")
    return 0
  fi
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$WORK/$name.log" || rc=$?
  local took=$(($(date +%s) - t0))
  if [ "$rc" -eq 0 ]; then
    echo "--- $name: ok in ${took} s"
    SUMMARY+=("$name=ok(${took}s)")
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "--- $name: TIMEOUT after ${took} s"
    SUMMARY+=("$name=timeout(${took}s)")
    FAILED=1
  else
    echo "--- $name: FAILED (exit $rc) in ${took} s"
    SUMMARY+=("$name=failed(rc=$rc,${took}s)")
    FAILED=1
  fi
}

echo "dapt gpu_check: mode $MODE, python $PY, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ "$MODE" = cuda ]; then
  if ! "$PY" -c "import torch; assert torch.cuda.is_available()" >/dev/null 2>&1; then
    echo "gpu_check: CUDA is not available to $PY (torch sees no GPU); run on a CUDA machine, or pass --cpu"
    exit 2
  fi
  echo
  echo "=== nvidia-smi"
  timeout 30 nvidia-smi --query-gpu=index,name,memory.total,driver_version,compute_cap,power.limit \
    --format=csv 2>&1 || echo "(nvidia-smi not available)"
  timeout 30 nvidia-smi 2>&1 | head -n 20 || true
fi
echo
echo "=== versions"
"$PY" - <<'EOF' 2>&1
import os, platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}, CPU cores {os.cpu_count()}, torch threads {torch.get_num_threads()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU {p.name}: {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}, "
          f"{p.multi_processor_count} SMs, bf16 {torch.cuda.is_bf16_supported()}, {torch.cuda.device_count()} device(s)")
EOF

if [ -n "${DATASET:-}" ]; then
  :
elif [ -f "${DAPT_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}/train-images-idx3-ubyte.gz" ] ||
     [ -d data/fashion_mnist ]; then
  DATASET=fashion_mnist
else
  DATASET=digits
fi
echo "dataset: $DATASET"

# 1-2. The device tests: losses, bf16 and fp16 autocast, GradScaler, teacher_amp auto, teacher + students.
if [ "$MODE" = cuda ]; then TEST_TIME=150; else TEST_TIME=360; fi
step tests "$TEST_TIME" env DAPT_TEST_DEVICE="$MODE" "$PY" -m pytest -rs -m device -p no:cacheprovider \
  --durations=5 tests/test_on_device.py

# 3. Distillation's cost over scratch at 224 px: the teacher (1 epoch, not timed), scratch, live and cached.
if [ "$MODE" = cuda ]; then
  step distill_speed 150 "$PY" benchmarks/distill_speed.py --dataset "$DATASET" --device cuda --image-size 224 \
    --train-subset 2000 --epochs 3 --teacher-epochs 1
else
  step distill_speed 150 "$PY" benchmarks/distill_speed.py --dataset "$DATASET" --device cpu --image-size 32 \
    --train-subset 200 --epochs 2 --teacher-epochs 1 --teacher-model resnet18 --student resnet18
fi

# 4. Images per second of students alone / sharing a cached teacher / with a live one.
if [ -f benchmarks/study_speed.py ]; then
  HELP=$("$PY" benchmarks/study_speed.py --help 2>&1 || true)
  EXTRA=()
  if grep -q -- "--dataset" <<<"$HELP"; then EXTRA+=(--dataset "$DATASET"); fi
  if [ "$MODE" = cuda ]; then
    step study_speed 180 "$PY" benchmarks/study_speed.py --device cuda --image-size 224 --train-subset 5000 \
      --epochs 4 "${EXTRA[@]}"
  else
    if grep -q -- "--teacher-model" <<<"$HELP"; then EXTRA+=(--teacher-model resnet18); fi
    if grep -q -- "--teacher-epochs" <<<"$HELP"; then EXTRA+=(--teacher-epochs 1); fi
    if grep -q -- "--student " <<<"$HELP"; then EXTRA+=(--student resnet18); fi
    step study_speed 150 "$PY" benchmarks/study_speed.py --device cpu --image-size 16 --train-subset 200 \
      --epochs 1 "${EXTRA[@]}"
  fi
else
  echo
  echo "=== study_speed: benchmarks/study_speed.py is absent; skipped"
  SUMMARY+=("study_speed=absent")
fi

# The figures, once more, for the summary.
figure() { [ -f "$WORK/$1.log" ] && grep -E "$2" "$WORK/$1.log" | tail -n 1 || true; }
TESTS=$(figure tests '(passed|failed|error)' | sed -E 's/^=+ //; s/ =+$//')
RATIO=$(figure distill_speed '^ratio ')
STUDY=$(figure study_speed '^study_speed: ')
echo
echo "=== figures"
echo "tests: ${TESTS:-none}"
echo "distill_speed: ${RATIO:-none}"
echo "${STUDY:-study_speed: none}"
echo
echo "gpu_check: mode=$MODE dataset=$DATASET ${SUMMARY[*]} total=$(($(date +%s) - START))s" \
  "result=$([ "$FAILED" -eq 0 ] && echo ok || echo FAILED)"
exit "$FAILED"
