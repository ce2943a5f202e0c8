#!/usr/bin/env bash
# One resumable piece of the committed checkpoint's training on a GPU machine (reports/benchmarks/trained_model.md):
# the `small-32` X-UNet, v-prediction and the v loss, batch 128, on the procedural objects at 32 px with 40 train
# instances per category (the demo's 8 among them: instances are seeded by split and index, so the demo's val and
# test scenes are the first of this dataset's). Each call trains for BUDGET seconds and stops; the next call with
# the same CKPT continues from its last checkpoint exactly (constant learning rate after warm-up, saved RNG state).
#
#   benchmarks/train_small32.sh CKPT_DIR OUT_DIR        (BUDGET seconds, default 480; PROBE=1 to probe at the end)
#
# The machine needs the wheels of ../shared/tools/gpu-wheels.sh in .gpu-wheels/ (luigi, trimesh, embreex, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=$1 out=$2
BUDGET=${BUDGET:-480} PROBE=${PROBE:-0}
PYTHON=${PYTHON:-python3}
if [ -d .gpu-wheels ]; then
  "$PYTHON" -m pip install -q --no-deps --no-index --target /tmp/deps .gpu-wheels/*.whl 2>/dev/null
  export PYTHONPATH=$PWD:/tmp/deps
fi
export PYTHONUNBUFFERED=1
data=/tmp/objects40
[ -f "$data/dataset.json" ] || "$PYTHON" - "$data" <<'EOF'
import sys
from pathlib import Path
from scenes.dataset import ProceduralDatasetConfig, generate_dataset
config = ProceduralDatasetConfig(categories=("mug", "chair", "lamp"), train_instances=40, val_instances=1,
                                 test_instances=4, train_views=24, test_views=16, image_size=32, seed=0)
generate_dataset(config, Path(sys.argv[1]))
EOF
mkdir -p "$out"
# timeout's TERM may land mid-step: the trainer's checkpoints are written atomically, so the last complete one stays.
timeout "$BUDGET" "$PYTHON" -m pipeline.cli generator train --data "$data" --out "$ckpt" --preset small-32 \
    --steps 40000 --batch-size 128 --lr 2e-3 --warmup-steps 200 --checkpoint-every 250 --loss v --device cuda \
    2>&1 | grep -v "^$" | tee -a "$out/train.log" | grep -E "step [0-9]+/[0-9]+: loss" | awk 'NR % 10 == 0' || true
if [ "$PROBE" = 1 ]; then
  "$PYTHON" -m benchmarks.conditioning_probe --checkpoint "$ckpt" --data "$data" --device cuda 2>&1 \
      | tee "$out/probe.log"
fi
# The checkpoint (with its resume state) comes back to be carried into the next piece.
cp -r "$ckpt" "$out/checkpoint"
