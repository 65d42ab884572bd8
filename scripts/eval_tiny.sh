#!/usr/bin/env bash
# The measured targets of issue 7 for a model folder, on ../shared/data/dev only.
#
#   scripts/eval_tiny.sh [MODEL_DIR] [LIMIT] [PART...]   # defaults: weights/uare-tiny, 2, all parts
#
# PART: speed sr restore-imagenet restore-set5 monotonic cc15 (run parts in separate
# processes to use both cores).
# Each block writes its tables under runs/eval-tiny/ (resumable: the eval cache keeps
# finished images). LIMIT caps the images per set: on 2 shared CPU cores a 512 px restore
# takes tens of seconds, so full sets are for an idle machine (LIMIT=0 means all).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-weights/uare-tiny}
LIMIT=${2:-2}
DEV=../shared/data/dev
OUT=${UARE_EVAL_OUT:-runs/eval-tiny}   # tables resume from the eval cache (keyed on the model's files)
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${UARE_THREADS:-1}
U="nice -n ${UARE_NICE:-5} $PY -m uare"
LIM=(); [ "$LIMIT" != 0 ] && LIM=(--limit "$LIMIT")
M="uare:model=$MODEL"
shift $(( $# < 2 ? $# : 2 ))
PARTS=${*:-speed sr restore-imagenet restore-set5 monotonic cc15}
want() { [[ " $PARTS " == *" $1 "* ]]; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

if want speed; then
log "speed: assess and restore one 512x512 image"
$PY - "$MODEL" <<'EOF'
import sys, time, torch
from uare import UARE
from uare.demo import example_image_path
m = UARE.from_pretrained(sys.argv[1])
img = example_image_path()
m.assess(img)                      # warm-up (first-call allocations)
t = time.perf_counter(); m.assess(img); ta = time.perf_counter() - t
t = time.perf_counter(); m.restore(img, task="denoise"); tr = time.perf_counter() - t
print(f"threads {torch.get_num_threads()}: assess {ta:.2f} s, restore 512x512 {tr:.1f} s "
      f"({m.config.steps} steps)")
EOF
fi

if want sr; then
log "x4 SR on drealsr_x4: PSNR-Y and NIQE vs bicubic"
$U eval sr --lr $DEV/drealsr_x4/LR --hr $DEV/drealsr_x4/HR --methods "bicubic,$M" \
  --metrics psnr,niqe "${LIM[@]}" --no-plots --no-gallery -o $OUT/sr-drealsr
fi

log "single and mixed degradations from set5_x4/HR and imagenet_x4_synthetic/HR vs the degraded input"
SINGLE=single:blur,single:noise,single:jpeg,single:haze,single:rain,single:raindrop,single:lowlight
MIXED=multi:blur+noise,multi:blur+jpeg,multi:noise+jpeg,multi:blur+noise+jpeg,multi:lowlight+noise,multi:lowlight+blur,multi:lowlight+jpeg,multi:rain+haze,multi:lowlight+haze
for set in imagenet_x4_synthetic set5_x4; do
  part=restore-${set%%_*}; want "$part" || continue
  # the task's instruction, and the degradation named (they differ for raindrops only:
  # derain alone names rain streaks)
  $U eval restore --hq $DEV/$set/HR --preset "$SINGLE" --methods "bicubic,$M,$M:named" --metrics psnr \
    "${LIM[@]}" --seed 0 --no-plots --no-gallery -o $OUT/single-$set
  # simple prompt vs assessment-guided (analyze) on the mixed set: Table 5 at small scale;
  # named: the paper's multiple-degradation instruction ("enhance this image with A and B")
  $U eval restore --hq $DEV/$set/HR --preset "$MIXED" --methods "bicubic,$M,$M:analyze,$M:named" \
    --metrics psnr,niqe "${LIM[@]}" --seed 0 --no-plots --no-gallery -o $OUT/mixed-$set
done

if want monotonic; then
log "IQA monotonicity: noise, blur, JPEG at four severities, on both restoration sets"
for set in set5_x4 imagenet_x4_synthetic; do
  $U eval monotonic --hq $DEV/$set/HR --types noise,blur,jpeg --levels 0.25,0.5,0.75,1.0 \
    --methods "$M" "${LIM[@]}" --no-plots -o $OUT/monotonic-${set%%_*}
done
fi

if want cc15; then
log "denoise on real_noise_cc15 vs OpenCV fastNlMeansDenoisingColored"
# outputs of the model as it is now: a folder per digest of its files (weights,
# inference.json), so a changed model is run again instead of reusing old outputs
STATE=$($PY -c "import sys; from uare.eval.ours import folder_state; from uare.pipeline import _resolve_folder
print(folder_state(_resolve_folder(sys.argv[1]))[:12])" "$MODEL")
UDIR=$OUT/cc15/uare-$STATE
mkdir -p "$UDIR" $OUT/cc15/nlmeans
files=$(ls $DEV/real_noise_cc15/noisy | sort | head -n $([ "$LIMIT" = 0 ] && echo 1000 || echo "$LIMIT"))
$U restore $(for f in $files; do echo $DEV/real_noise_cc15/noisy/$f; done) --task denoise --model "$MODEL" \
  -o "$UDIR" --skip-existing
for f in $files; do
  $PY -c "import cv2,sys; cv2.imwrite(sys.argv[2], cv2.fastNlMeansDenoisingColored(cv2.imread(sys.argv[1])))" \
    $DEV/real_noise_cc15/noisy/$f $OUT/cc15/nlmeans/$f
done
# per-image PSNR-Y as cc15/uare.csv and cc15/nlmeans.csv: scripts/compare_runs.py reads them
for m in "$UDIR" $OUT/cc15/nlmeans; do
  name=${m##*/}; name=${name%%-*}
  echo "cc15 $name:"; $U metrics --pred "$m" --ref $DEV/real_noise_cc15/clean --metrics psnr \
    --csv $OUT/cc15/$name.csv 2>&1 | tail -n 2
done
fi
log "done: tables under $OUT"
