#!/usr/bin/env bash
# The refiner (uare.model.refiner) trained on a lent GPU machine, in one call:
#   1. new training pairs: the repository's own weights/uare-tiny restores random crops of
#      the carried photos on the GPU (scripts/train_refiner.py, float32 as on a CPU);
#   2. the refiner trained on them there for what is left of MINUTES, from the shipped one
#      (--init weights/uare-tiny), a BATCH of windows a step.
# On two CPU cores a refiner sees ~25 k steps of 16 windows in 25 minutes, JPEG one job in
# eleven, and a network of its size trained on JPEG alone starts to deblock only after a
# few thousand steps (model card, session 23): JPEG and raindrops are where more steps are
# wanted. Pairs stay there (GBs); what comes back is the
# refiner file, the held-out table (val.md) and the log.
#   here:   python scripts/device/prepare.py --data ../shared/data/train -o .gpu   # photos only
#   device: OUT=$OUT MINUTES=8 BATCHES=600 bash scripts/device/refiner.sh [train_refiner options]
#   here:   cp -r weights/uare-tiny runs/gpu-ref && cp FILES/refiner.safetensors runs/gpu-ref/
# Options after the script go to train_refiner.py, e.g. --loss root --noise-scales 1,2
# --camera 0.2 (a refiner of another shape than the shipped one: add --init '' to start
# from zero). Needs the folder from prepare.py (default .gpu) carried along. MODEL (default
# weights/uare-tiny) is the model folder that restores and whose refiner it starts from;
# DEVICE=cpu runs the same steps on the CPU (tests/test_scripts_device.py).
set -uo pipefail
cd "$(dirname "$0")/../.."
G=${GPU_DIR:-.gpu}
OUT=${OUT:?set OUT to the folder that comes back}
PY=${PY:-python3}
MIN=${MINUTES:-8}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
W=${WORK:-/tmp/uare-refiner}
T0=$(date +%s)
mkdir -p "$W" "$OUT"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }
[ -d "$G/train" ] || { log "no $G/train: run scripts/device/prepare.py --data ../shared/data/train -o $G here first"; exit 2; }
log "start: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | head -1); $(nproc) cpus"
MODEL=${MODEL:-weights/uare-tiny}
R=($PY scripts/train_refiner.py --model "$MODEL" --data "$G/train" -o "$W"
   --batches "${BATCHES:-600}" --batch "${BATCH:-64}" --threads "${THREADS:-8}" --device "${DEVICE:-auto}"
   --init "$MODEL" --lr 5e-4 --dark 0.3 --save-minutes 1 "$@")   # session 19's fine-tuning settings
# pairs first (no training: --minutes 0), at most PAIR_SHARE of the time, so the training
# gets a time box of its own whatever the pairs cost there
"${R[@]}" --minutes 0 --pairs-minutes "$($PY -c "print($MIN * ${PAIR_SHARE:-0.45})")" > "$W/pairs.log" 2>&1
rc=$?
log "pairs rc $rc: $(ls "$W/pairs" 2>/dev/null | wc -l) shards"
if [ $rc -eq 0 ]; then
  LEFT=$($PY -c "print(max($MIN / 10, $MIN - ($(date +%s) - $T0) / 60 - 0.75))")
  log "training: $LEFT min"
  rm -rf "$W/train"   # the --minutes 0 run's step-0 state: a fresh time box, not a resumed one
  "${R[@]}" --minutes "$LEFT" > "$W/train.log" 2>&1
  rc=$?
  log "training rc $rc"
fi
for f in "$W/model/refiner.safetensors" "$W/val.md"; do [ -f "$f" ] && cp "$f" "$OUT/"; done
{ for f in "$W/pairs.log" "$W/train.log"; do [ -f "$f" ] && { echo "=== $f"; tail -c 200000 "$f"; }; done; } > "$OUT/logs.txt"
log "done (rc $rc)"; ls -la "$OUT" | tee -a "$OUT/run.log"
exit $rc
