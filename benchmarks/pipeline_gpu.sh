#!/usr/bin/env bash
# The GPU benchmark configuration of both tasks, end to end through the Luigi pipeline on one GPU:
# objects (configs/gpu-objects.cfg) and panoramas (configs/gpu-panorama.cfg) at 64x64 with the GPU presets
# 3dim-64 and mvd-64, run side by side so that one's CPU stages (start, rendering, scoring, report) overlap the
# other's GPU stages. Prints the wall time of each, a table of the time per stage, and where the reports are.
#
#   benchmarks/pipeline_gpu.sh [luigi overrides for both runs, e.g. --TrainGenerator-steps 100]
#
# Needs only `python3` with the packages importable (PYTHON=... picks another interpreter; `make gpu-benchmark`
# passes the project's venv). Output: $NVSC_GPU_ROOT (default runs-gpu/): the task folders, the two logs
# objects.log and panorama.log, and the reports runs-gpu/BuildReport/report-{procedural,panorama}-<hash>/.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ROOT=${NVSC_GPU_ROOT:-runs-gpu}
OBJECT_WORKERS=${OBJECT_WORKERS:-6}
PANORAMA_WORKERS=${PANORAMA_WORKERS:-4}
# 10 worker processes on 16 cores: 2 OpenMP threads each for their CPU stages (TSED, rendering, NeRF set-up).
export OMP_NUM_THREADS=${GPU_BENCHMARK_THREADS:-2}
# Up to ten CUDA processes (one per worker, four of them trainings at first) share the GPU's memory; growable
# segments keep each process's cache from fragmenting as batch shapes change between stages.
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
export PYTHONUNBUFFERED=1
mkdir -p "$ROOT"

run() {  # run NAME WORKERS CONFIG [overrides]: one `nvsc run`, its output in $ROOT/NAME.log, its wall time after it
  local name=$1 workers=$2 config=$3; shift 3
  local start=$SECONDS status
  "$PYTHON" -m pipeline.cli run --workers "$workers" --config "$config" --nvsc-output-root "$ROOT" "$@" \
    > "$ROOT/$name.log" 2>&1
  status=$?
  echo "gpu-benchmark: $name finished with status $status after $((SECONDS - start)) s" | tee -a "$ROOT/$name.log"
  return $status
}

echo "gpu-benchmark: $(date -u '+%F %T') UTC; logs in $ROOT/objects.log and $ROOT/panorama.log"
# Every module a stage imports, checked before any work: a missing one would otherwise fail a late stage (the
# report's pandas and matplotlib, TSED's OpenCV) after minutes of GPU time. Without Embree the renderer falls
# back to a pure-numpy intersector about 100 times slower.
"$PYTHON" - <<'PREFLIGHT' || exit 1
import importlib, sys
modules = ["torch", "torchvision", "triton", "numpy", "pandas", "matplotlib", "PIL", "cv2", "luigi", "trimesh",
           "trimesh.ray.ray_pyembree", "safetensors", "torchmetrics", "lpips", "torch_fidelity", "nerfstudio",
           "tabulate", "tqdm", "pipeline.tasks", "generators.generate", "nerf.fit", "reports.assemble"]
missing = []
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as error:  # an import that fails for any reason stops a stage just the same
        missing.append(f"{name} ({type(error).__name__}: {error})")
if missing:
    sys.exit("gpu-benchmark: cannot run, these imports fail:\n  " + "\n  ".join(missing))
import torch
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "the CPU (no CUDA device: slow)"
print(f"gpu-benchmark: torch {torch.__version__} on {device}")
PREFLIGHT
start=$SECONDS
run objects "$OBJECT_WORKERS" configs/gpu-objects.cfg "$@" &
objects=$!
run panorama "$PANORAMA_WORKERS" configs/gpu-panorama.cfg "$@" &
panorama=$!
# GPU memory and utilisation every 5 s while both run: where the time went, and how close the four trainings
# came to the memory.
monitor=
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=timestamp,memory.used,memory.total,utilization.gpu --format=csv,noheader,nounits -l 5 \
    > "$ROOT/gpu.csv" 2> /dev/null &
  monitor=$!
fi
wait $objects; objects_status=$?
wait $panorama; panorama_status=$?
echo "gpu-benchmark: both tasks done after $((SECONDS - start)) s in all"
if [ -n "$monitor" ]; then
  kill "$monitor" 2> /dev/null
  awk -F', ' '{ if ($2 > peak) peak = $2; total = $3; busy += $4; n++ }
    END { if (n) printf "gpu-benchmark: GPU memory peak %d of %d MiB, mean utilisation %.0f%% (%d samples, %s)\n",
          peak, total, busy / n, n, FILENAME }' "$ROOT/gpu.csv"
fi

"$PYTHON" benchmarks/pipeline_stages.py "$ROOT/objects.log" "$ROOT/panorama.log"
for name in objects panorama; do
  echo; echo "== $name =="
  if grep -q "^Report page:" "$ROOT/$name.log"; then
    sed -n '/^nvsc: done/,$p' "$ROOT/$name.log"
  else
    tail -n 40 "$ROOT/$name.log"
  fi
done
echo; echo "gpu-benchmark: the reports of both tasks (objects, then panoramas):"
grep -h "^Report page:" "$ROOT/objects.log" "$ROOT/panorama.log"
[ "$objects_status" -eq 0 ] && [ "$panorama_status" -eq 0 ]
