#!/usr/bin/env bash
# A time-boxed continuation of the tiny recipe on a lent GPU machine (one call, ~9 minutes):
#   1. stage 2 (recipes/tiny/stage2-unified.yaml) continued from the shipped weights with a
#      64-sample global batch, samples built by worker processes;
#   2. with DECODER=1, at the same time, the autoencoder's decoder fine-tuned alone
#      (recipes/tiny/autoencoder-decoder.yaml): the encoder, and so every latent, stays bit
#      for bit. Off by default since session 14: a decoder that reconstructed the tune
#      photos 0.4-0.5 dB better decoded the model's own latents worse (nearly every
#      restoration row lower, model card), so judge a new decoder on restorations.
# Both stop by the clock and write their results; the model comes back in <= 16 MB shards
# (the device tool's file limit), reassembled here by scripts/device/collect.py.
# Needs the folder from scripts/device/prepare.py (default .gpu) carried along.
# If CUDA training fails at once, the same stage-2 run goes on on the machine's CPUs.
#   OUT=/somewhere MINUTES=7 bash scripts/device/run.sh
# EXTRA="--set key=value ..." adds recipe overrides (SKIP_AE=1, the old switch, still
# means no decoder job).
# VIT_MINUTES=M first pre-trains the ViT on the GPU for M of the MINUTES
# (scripts/pretrain_vit.py --pairs 0.5 --quality 1, batches built by worker processes),
# then stage 2 starts from that ViT for the rest, e.g. with
# EXTRA="--set train.freeze_vit=true --set data.score_first=true --set data.online=[iqa]";
# VIT_ARGS adds pretrain_vit options, e.g. VIT_ARGS="--view-scale 2 --crop 64" (the ViT then
# sees every image at 2x, saved in the model's config: see the model card, session 8).
set -uo pipefail
cd "$(dirname "$0")/../.."
G=${GPU_DIR:-.gpu}
MIN=${MINUTES:-7}
OUT=${OUT:?set OUT to the folder that comes back}
PY=${PY:-python3}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
W=/tmp/uare-device
T0=$(date +%s)
mkdir -p "$W"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }
log "start: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | head -1); $(nproc) cpus"
$PY -c "import torch, safetensors, tokenizers, scipy, yaml; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/run.log"

# float16 carry -> float32 model folder
$PY scripts/device/shards.py widen "$G/init" "$W/init" 2>&1 | tee -a "$OUT/run.log"

AE=""
if [ -n "${DECODER:-}" ] && [ -z "${SKIP_AE:-}" ]; then
log "autoencoder decoder: $MIN min in the background"
OMP_NUM_THREADS=2 $PY scripts/train_autoencoder.py recipes/tiny/autoencoder-decoder.yaml \
  --set init="$W/init" --set "train_dirs=[$G/train]" --set "eval_dirs=[]" --set out_dir="$W/ae" \
  --set threads=2 --max-minutes "$MIN" --time-box > "$W/ae.log" 2>&1 &
AE=$!
fi

INIT="$W/init"
S2MIN=$MIN
if [ -n "${VIT_MINUTES:-}" ]; then
  log "ViT pre-training: $VIT_MINUTES min"
  OMP_NUM_THREADS=2 $PY scripts/pretrain_vit.py --model "$W/init" -o "$W/init-vit" --data "$G/train" \
    --pairs 0.5 --quality 1 --batch ${VIT_BATCH:-256} --minutes "$VIT_MINUTES" --workers ${WORKERS:-10} \
    ${VIT_ARGS:-} > "$W/vit.log" 2>&1 && INIT="$W/init-vit" || log "ViT pre-training failed (rc $?): stage 2 keeps the old ViT"
  tail -4 "$W/vit.log" | tee -a "$OUT/run.log"
  S2MIN=$($PY -c "print(max(0.5, $MIN - ($(date +%s) - $T0) / 60))")
fi

MAN=(); for k in single multi high_order interleaved iqa; do
  MAN+=(--set "data.manifests.$k=$G/tiny-data/manifest-$k.jsonl"); done
S2=(tiny/stage2-unified "${MAN[@]}" --set model.init="$INIT" --set train.out_dir="$W/stage2"
    --set train.steps=1000000 --set checkpoint.every=1000000 --set log.every=1
    --set data.samples_per_step=64 --set data.max_tokens_per_pack=16384 --set data.workers=${WORKERS:-10}
    --set data.seed=1 --set train.seed=1 --set optim.warmup_steps=20 --set data.prefetch=true
    --set parallel.activation_checkpointing=off --export "$W/export" ${EXTRA:-})
log "stage 2 on $( $PY -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')"
OMP_NUM_THREADS=3 $PY -m uare train "${S2[@]}" --max-minutes "$S2MIN" > "$W/stage2.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ ! -d "$W/export" ]; then
  log "stage 2 failed on the GPU (rc $rc): the same run on the CPUs"
  tail -30 "$W/stage2.log" >> "$OUT/run.log"
  rm -rf "$W/stage2"
  LEFT=$($PY -c "print(max(0.5, $MIN - ($(date +%s) - $T0) / 60))")
  CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=6 $PY -m uare train "${S2[@]}" --set data.workers=6 \
    --set data.samples_per_step=16 --max-minutes "$LEFT" > "$W/stage2-cpu.log" 2>&1
  log "cpu run rc $?"
fi
[ -n "$AE" ] && { wait $AE; log "autoencoder rc $?"; }

# results: model shards, autoencoder, logs
$PY scripts/device/shards.py pack "$W/export" "$W/ae" "$OUT" 2>&1 | tee -a "$OUT/run.log"
{ for f in "$W/vit.log" "$W"/stage2*.log "$W/ae.log" "$W"/stage2/metrics.csv "$W/ae/log.jsonl"; do
    [ -f "$f" ] && { echo "=== $f"; tail -c 300000 "$f"; }; done; } > "$OUT/logs.txt"
log "done"; ls -la "$OUT" | tee -a "$OUT/run.log"
