#!/usr/bin/env bash
# The one script to run on a lent GPU machine, from the repository root (no network, no pip
# install: the package is imported from the working tree through PYTHONPATH):
#
#   OUT=<folder whose files come back> bash benchmarks/device/run_gpu.sh
#
# It prints nvidia-smi, checks that optodesign imports without gdstk/trimesh, runs
# benchmarks/gpu.py (training / Monte-Carlo samples/s, propagation vs the cuFFT floor; about
# 1 min), then trains examples/d2nn_mnist4_full.toml at 2, 4 and 16 levels as three concurrent
# processes on the one GPU, each planning its epochs to fit TRAIN_BUDGET seconds and killed at
# TRAIN_BUDGET + 45 s at the latest, merges their table, and leaves in $OUT (6 small files):
#   run_gpu.log  gpu.txt  gpu.json  accuracy_full.txt  accuracy_full.json  runs.tar.gz
# (runs.tar.gz: per level the design.npz/json, metrics.csv, run JSON and log).
# Whole script: at most GPU_LIMIT + TRAIN_BUDGET + 45 s + a few s (defaults: ~7.7 min).
#
# Settings (environment): OUT (required); DATA (MNIST IDX .gz folder, default <repo>/.mnist);
# GPU_LIMIT (s, hard limit of gpu.py, default 120); TRAIN_BUDGET (s per accuracy run, default
# 300); LEVELS (default "2 4 16"); PYTHON (default python3); SMOKE=1 shrinks everything to test
# the script on a CPU in a couple of minutes:
#
#   SMOKE=1 OUT=/tmp/out DATA=../shared/data/mnist bash benchmarks/device/run_gpu.sh
set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 2
if [ -z "${OUT:-}" ]; then
  echo "error: set OUT to the folder whose files come back" >&2
  exit 2
fi
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export PYTHONDONTWRITEBYTECODE=1
export MPLBACKEND=Agg
PY=${PYTHON:-python3}
DATA=${DATA:-$REPO/.mnist}
LEVELS=${LEVELS:-2 4 16}
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
  GPU_LIMIT=${GPU_LIMIT:-120}
  TRAIN_BUDGET=${TRAIN_BUDGET:-60}
  GPU_ARGS=(--smoke --threads 1)
  ACC_ARGS=(--smoke --threads 1)
else
  GPU_LIMIT=${GPU_LIMIT:-120}
  TRAIN_BUDGET=${TRAIN_BUDGET:-300}
  GPU_ARGS=()
  ACC_ARGS=(--threads 4)
fi
TRAIN_LIMIT=$((TRAIN_BUDGET + 45))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/optodesign_gpu.XXXXXX")
LOG="$OUT/run_gpu.log"
: > "$LOG"

main() {
  local t0=$SECONDS
  echo "== run_gpu.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(cat /proc/sys/kernel/hostname 2> /dev/null), repo $REPO"
  echo "   git: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" \
       "$(git -C "$REPO" status --porcelain 2>/dev/null | wc -l) changed/untracked paths"
  echo "   SMOKE=$SMOKE GPU_LIMIT=$GPU_LIMIT TRAIN_BUDGET=$TRAIN_BUDGET LEVELS='$LEVELS'" \
       "DATA=$DATA WORK=$WORK"
  echo "== nvidia-smi"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi
  else
    echo "(no nvidia-smi)"
  fi
  echo "== python / torch"
  "$PY" -c 'import sys, torch
print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
  echo "== import check (no gdstk / trimesh needed)"
  if ! "$PY" -c 'import importlib.util as u, optodesign
optodesign.propagate
import optodesign.train.trainer, optodesign.verify.montecarlo, optodesign.train.plots
print("optodesign", optodesign.__version__, "from", optodesign.__file__)
print("optional:", {m: u.find_spec(m) is not None for m in ("gdstk", "trimesh", "stl")})'; then
    echo "import failed: nothing else can run"
    return 1
  fi

  echo "== benchmarks/gpu.py (limit ${GPU_LIMIT} s)"
  timeout -k 10 "$GPU_LIMIT" "$PY" benchmarks/gpu.py --results "$OUT" ${GPU_ARGS[@]+"${GPU_ARGS[@]}"}
  echo "gpu.py exit $? after $((SECONDS - t0)) s"

  local missing=0
  for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
           t10k-labels-idx1-ubyte.gz; do
    [ -f "$DATA/$f" ] || { echo "missing $DATA/$f"; missing=1; }
  done
  if [ "$missing" = 1 ]; then
    echo "== accuracy runs skipped: MNIST IDX files not found in $DATA"
  else
    local n
    n=$(echo $LEVELS | wc -w)
    echo "== accuracy_full.py, levels $LEVELS concurrently (budget ${TRAIN_BUDGET} s," \
         "limit ${TRAIN_LIMIT} s)"
    local pids=()
    for L in $LEVELS; do
      OMP_NUM_THREADS=4 timeout -k 10 "$TRAIN_LIMIT" "$PY" benchmarks/accuracy_full.py \
        --levels "$L" --data "$DATA" --budget "$TRAIN_BUDGET" --work "$WORK/acc" \
        --results "$OUT" --sync-dir "$WORK/sync" --sync-count "$n" ${ACC_ARGS[@]+"${ACC_ARGS[@]}"} \
        > "$WORK/acc_L$L.log" 2>&1 &
      pids+=($!)
    done
    for i in "${!pids[@]}"; do
      wait "${pids[$i]}"
      echo "accuracy run $i exit $?"
    done
    echo "accuracy runs done after $((SECONDS - t0)) s"
    for L in $LEVELS; do
      echo "-- log L=$L (last 25 lines)"
      tail -n 25 "$WORK/acc_L$L.log"
      cp "$WORK/acc_L$L.log" "$WORK/acc/" 2> /dev/null
    done
    echo "== merge"
    "$PY" benchmarks/accuracy_full.py --merge --work "$WORK/acc" --results "$OUT"
  fi

  echo "== pack"
  if [ -d "$WORK/acc" ]; then
    (cd "$WORK/acc" && tar czf "$OUT/runs.tar.gz" --ignore-failed-read \
      $(ls -d L*.json acc_L*.log L*/design.json L*/design.npz L*/metrics.csv 2> /dev/null))
  fi
  ls -la "$OUT"
  echo "== done in $((SECONDS - t0)) s"
}

main 2>&1 | tee -a "$LOG"
rm -rf "$WORK"
