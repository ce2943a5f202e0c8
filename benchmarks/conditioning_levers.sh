#!/usr/bin/env bash
# Levers against the X-UNet's conditioning plateau, side by side on one GPU: each variant trains in its own process
# for the same wall-clock budget on the demo's task (pairs of different views of the procedural objects at 32 px)
# and prints the conditioning probe (benchmarks/conditioning_probe.py: x0 MSE with the right conditioning
# view / another scene's view, on the held-out scenes and on train scenes) every EVAL_EVERY steps.
#
#   benchmarks/conditioning_levers.sh DATA_ROOTS_DIR OUT_DIR [VARIANT ...]
#
# DATA_ROOTS_DIR holds objects/srn (the demo's dataset: luigi.cfg's PrepareDataset, seed 0) and objects40/srn (the
# same generator with 40 train instances per category: the demo's 8 among them, the same val and test scenes).
# BUDGET (seconds of training per variant, default 420), EVAL_EVERY (default 500). Logs: OUT_DIR/<variant>.log.
# The variants run at once, so each gets a share of the GPU: compare them at equal steps, not only equal time.
set -uo pipefail
cd "$(dirname "$0")/.."
data=$1 out=$2; shift 2
mkdir -p "$out"
BUDGET=${BUDGET:-420} EVAL_EVERY=${EVAL_EVERY:-500}
PYTHON=${PYTHON:-python3}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
demo="--data $data/objects/srn"
b128="--batch 128 --warmup 200"
cond3dim="--set pos_emb=True --set pose_conv=3 --set pos_octaves=15 --set dir_octaves=8 --set logsnr_dim=64"
vpred="--loss v --set prediction='v'"
declare -A VARIANTS=(
  [base16]="$demo --batch 16"                                   # the CPU demo's recipe, many more steps
  [b128]="$demo $b128"                                          # batch 128
  [attn16]="$demo $b128 --set attn_resolutions=(16,8)"          # frames also mix at 16x16
  [attn32]="$demo $b128 --set attn_resolutions=(32,16,8)"       # and at 32x32 (3DiM's 32/16/8 of the 64 px model)
  [cond3dim]="$demo $b128 $cond3dim"                            # 3DiM's conditioning processor
  [flaxinit]="$demo $b128 --set init='flax'"                    # 3DiM's (flax's) initialisation
  [vpred]="$demo $b128 $vpred"                                  # v-prediction and the v loss
  [all]="$demo $b128 --set attn_resolutions=(32,16,8) $cond3dim --set init='flax' $vpred"
  [concat]="$demo $b128 --arch concat_unet"                     # the concat-UNet baseline
  [data40]="--data $data/objects40/srn $b128"                   # 5x the train instances
  [colour]="$demo $b128 --permute-colours"                      # RGB channels of each pair permuted alike
)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(base16 b128 attn16 attn32 cond3dim flaxinit vpred all concat data40 colour)
pids=()
for name in "${names[@]}"; do
  # shellcheck disable=SC2086 # the variant's words are arguments
  "$PYTHON" -m benchmarks.conditioning_probe --device cuda --size 32 --steps 1000000 --lr 2e-3 \
      --eval-every "$EVAL_EVERY" --time-budget "$BUDGET" ${VARIANTS[$name]} > "$out/$name.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for name in "${names[@]}"; do  # the last probe of the raw weights and the EMA's at the end
  echo "== $name: $(grep -E "^step" "$out/$name.log" | tail -n 1 | cut -c 1-150)"
  grep -E "^final|Error" "$out/$name.log" | tail -n 1 | cut -c 1-200
done
