#!/usr/bin/env bash
# The whole uare-tiny recipe, end to end and resumable: kill it at any point and run it
# again; every step skips what is finished and goes on from its newest checkpoint.
#
#   scripts/train_tiny.sh            # data, autoencoder, tokenizer, init, stage 1 x3, stage 2, refiner, JPEG / raindrop / noise branches
#   scripts/train_tiny.sh --package  # then copy the stage-2 export to weights/uare-tiny
#
# This is part 1 of the shipped model's recipe (CPU). Part 2 (GPU stage-2 continuation,
# decoder-only autoencoder tuning, scripts/pretrain_vit.py) is scripts/device/run.sh; the
# model card gives the exact commands.
# Everything is written under runs/ (ignored by git). Threads: 1 by default, because two
# OpenMP threads on the 2 shared cores measured ~6x slower than one when others are busy;
# set UARE_THREADS=2 on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${UARE_THREADS:-1}
RUN="nice -n ${UARE_NICE:-5} $PY"
DATA=../shared/data/train
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

if [ ! -f runs/tiny-data/manifest-single.jsonl ]; then
  log "data: manifests from $DATA"
  $RUN -m uare data build "$DATA" --recursive -o runs/tiny-data
fi

if [ ! -f runs/tiny/autoencoder/ae_config.json ]; then
  log "autoencoder: recipes/tiny/autoencoder.yaml (resumes from runs/tiny/autoencoder/state)"
  $RUN scripts/train_autoencoder.py recipes/tiny/autoencoder.yaml --set threads="$OMP_NUM_THREADS"
fi

if [ ! -f runs/tiny/tokenizer/tokenizer.json ]; then
  log "tokenizer: BPE on the instruction/response/IQA texts of the manifests"
  $RUN scripts/train_tokenizer.py runs/tiny-data -o runs/tiny/tokenizer
fi

if [ ! -f runs/tiny/init/config.json ]; then
  log "init: fresh tiny weights + autoencoder + tokenizer"
  $RUN scripts/make_init.py --ae runs/tiny/autoencoder --tokenizer runs/tiny/tokenizer -o runs/tiny/init
fi

for stage in stage1-single stage1-multi stage1-high-order stage2-unified; do
  if [ -f "runs/tiny/$stage/final/config.json" ] && [ -z "${UARE_EXTEND:-}" ]; then
    continue   # finished (set UARE_EXTEND=1 after raising train.steps to go on)
  fi
  log "train: recipes/tiny/$stage.yaml"
  $RUN -m uare train "tiny/$stage"
done

# the refiner's pairs are restorations by one stage-2 export: a newer export starts it over
for r in refiner refiner-ft; do
  if [ -d runs/tiny/$r/pairs ] && [ runs/tiny/stage2-unified/final/model.safetensors -nt runs/tiny/$r/pairs ]; then
    rm -rf runs/tiny/$r
  fi
done
if [ ! -f runs/tiny/refiner-ft/model/refiner.safetensors ]; then
  # last: it learns from this model's own restorations (resumes its pairs and its training);
  # in the shipped one's two steps (model card, sessions 18-19): from zero, then fine-tuned on
  # new pairs with more darkened crops (the shipped first step was a prototype of the
  # script, without the gate or darkened crops)
  log "refiner: scripts/train_refiner.py on the stage-2 export's restorations"
  $RUN scripts/train_refiner.py --model runs/tiny/stage2-unified/final --data "$DATA" -o runs/tiny/refiner \
    --loss l1 --minutes "${REFINER_MINUTES:-25}" --threads "$OMP_NUM_THREADS"
  $RUN scripts/train_refiner.py --model runs/tiny/stage2-unified/final --data "$DATA" -o runs/tiny/refiner-ft \
    --init runs/tiny/refiner/model --dark 0.3 --lr 5e-4 --batches 480 --seed 2 --loss l1 \
    --minutes "${REFINER_FT_MINUTES:-30}" --threads "$OMP_NUM_THREADS"
  cp runs/tiny/refiner-ft/model/refiner.safetensors runs/tiny/stage2-unified/final/refiner.safetensors.tmp
  mv runs/tiny/stage2-unified/final/refiner.safetensors.tmp runs/tiny/stage2-unified/final/refiner.safetensors
fi

# the branches learn from the photos alone, not from the model: no reason to redo them
# after a new export (model card, sessions 24-25); each run's file keeps the earlier ones'
branch() {   # branch NAME TRAIN_BRANCH_ARGS...: runs/tiny/NAME, unless it is done
  local out="runs/tiny/$1"; shift
  if [ ! -f "$out/branches.safetensors" ]; then
    log "$out: scripts/train_branch.py $*"
    $RUN scripts/train_branch.py --data "$DATA" -o "$out" --threads "$OMP_NUM_THREADS" "$@"
  fi
}
branch branch-jpeg --type jpeg --model '' --steps "${BRANCH_STEPS:-20000}"
branch branch-raindrop --type raindrop --source 128 --model runs/tiny/branch-jpeg --steps "${RAINDROP_STEPS:-3600}"
branch branch-noise --type noise --camera 0.7 --residual --model runs/tiny/branch-raindrop \
  --steps "${NOISE_STEPS:-12000}" --minutes "${NOISE_MINUTES:-56}"
# session 26: on from there with the colour pattern's phase drawn (session 25's run had one
# phase: the first run above draws them too now, so these steps are plain continuations)
branch branch-noise-ft --type noise --camera 0.7 --init runs/tiny/branch-noise/train --lr 5e-4 \
  --model runs/tiny/branch-raindrop --steps "${NOISE_FT_STEPS:-8500}" --minutes "${NOISE_FT_MINUTES:-42}"
branch branch-noise-ft2 --type noise --camera 0.7 --init runs/tiny/branch-noise-ft/train --lr 2e-4 \
  --model runs/tiny/branch-raindrop --steps "${NOISE_FT2_STEPS:-6000}" --minutes "${NOISE_FT2_MINUTES:-30}"
cp runs/tiny/branch-noise-ft2/branches.safetensors runs/tiny/stage2-unified/final/branches.safetensors.tmp
mv runs/tiny/stage2-unified/final/branches.safetensors.tmp runs/tiny/stage2-unified/final/branches.safetensors

if [ "${1:-}" = "--package" ]; then
  log "package: runs/tiny/stage2-unified/final -> weights/uare-tiny"
  mkdir -p weights/uare-tiny
  for f in config.json model.safetensors ae.safetensors tokenizer.json refiner.safetensors branches.safetensors; do
    cp "runs/tiny/stage2-unified/final/$f" "weights/uare-tiny/$f.tmp"
    mv "weights/uare-tiny/$f.tmp" "weights/uare-tiny/$f"
  done
fi
log "done"
