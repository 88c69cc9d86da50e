#!/usr/bin/env bash
# One call of this workplace's device tool (issue 10): fewshot.py's gpu_auto profile on one GPU for at
# most BUDGET seconds, in the priority order of fewshot.plan(). It runs in the checkout's root on the
# device machine and needs two carried folders made beforehand (BENCHMARKS.md, "GPU grid at pet's
# defaults"): .whl (wheels of what the device image lacks: datasets, pydantic and their needs, for
# CPython 3.12) and .device/shared/{models/minilm-l6-mlm,data/<task>} (the shared model and data).
# What comes back: $OUT/fewshot.jsonl (the committed lines of benchmarks/results/gpu_auto with the new
# ones: jobs already there are skipped), plan.json, log*.txt, env.txt (failures.jsonl if any).
# Without arguments: PET's cells beside iPET's first seed at n = 10 (the call of 2026-12-04). With
# arguments: one fewshot.py run with every worker and these arguments, e.g. the iPET cells still
# missing: BUDGET=540 bash benchmarks/device/gpu_auto.sh --methods ipet --tasks sst2 agnews
set -u
OUT=${OUT:-/tmp/out}
BUDGET=${BUDGET:-470}      # seconds for fewshot.py; a stopped run keeps every finished job's lines
JOBS_MPS=${JOBS_MPS:-16}   # worker processes when MPS runs their kernels side by side (16 CPU cores)
JOBS_PLAIN=${JOBS_PLAIN:-8}  # without MPS the processes are time-sliced on the GPU
mkdir -p "$OUT"
cp benchmarks/results/gpu_auto/fewshot.jsonl "$OUT/fewshot.jsonl" 2>/dev/null  # finished jobs are skipped
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
{ date -u; nvidia-smi; python3 -c "import torch, transformers, datasets, pydantic; print('torch', torch.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__, 'pydantic', pydantic.__version__)"; } >"$OUT/env.txt" 2>&1
jobs=$JOBS_PLAIN
if nvidia-cuda-mps-control -d >>"$OUT/env.txt" 2>&1; then
  if timeout 90 python3 -c "import torch; print('mps client ok', float(torch.ones(8, device='cuda').sum()))" >>"$OUT/env.txt" 2>&1; then
    jobs=$JOBS_MPS
  else
    echo quit | timeout 10 nvidia-cuda-mps-control; echo "MPS client failed: plain time-slicing" >>"$OUT/env.txt"
  fi
fi
echo "workers: $jobs" >>"$OUT/env.txt"
start=$(date +%s)
run() {  # WORK JOBS fewshot.py-arguments...: one fewshot.py under the shared deadline
  local work=$1 jobs=$2; shift 2
  timeout -s TERM "$BUDGET" python3 benchmarks/fewshot.py --profile gpu_auto --out "$OUT" --shared .device/shared \
    --work "$work" --jobs "$jobs" --threads 1 --device cuda "$@"
  echo "fewshot.py $* rc=$? after $(( $(date +%s) - start )) s"
}
# Two runs side by side, in separate run folders (each deletes its own when it ends). iPET's jobs
# are the longest (4 generations of teachers), so the first seed of the two iPET cells that decide
# "iPET above PET at n = 10" starts at once instead of waiting behind PET's 18 cells.
if [ $# -gt 0 ]; then
  run /tmp/work "$jobs" "$@" >"$OUT/log.txt" 2>&1
else
  run /tmp/work-ipet 2 --methods ipet --tasks sst2 agnews --ns 10 --seeds 1 >"$OUT/log-ipet.txt" 2>&1 &
  run /tmp/work-pet $(( jobs > 2 ? jobs - 2 : 1 )) --methods pet >"$OUT/log.txt" 2>&1 &
  wait
fi
nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv >>"$OUT/env.txt" 2>&1
