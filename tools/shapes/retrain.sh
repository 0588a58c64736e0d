#!/usr/bin/env bash
# Retrain the whole shapes family from fixed seeds, export it to models/ and rewrite the
# golden fixtures. Needs Debian's python3-torch and python3-onnx (and, for speed,
# libopenblas0-pthread); downloads nothing. Prints the wall time of every stage.
#
#   bash tools/shapes/retrain.sh
#
# One torch thread per process: torch's OpenMP regions on these tiny tensors cost more
# in barriers than they gain, and a spinning OpenMP pool collapses when the machine has
# any other load. Instead the two cores run independent work side by side: the style
# image encoder beside the VAE, each UNet stage's data (rendering, VAE encoding) in a
# prefetch process beside its training step, and the two fine-tunes (layout, style)
# together.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
export OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1
CK=tools/shapes/.ckpt
LOG=$CK/retrain.log
mkdir -p $CK
: > "$LOG"
t0=$(date +%s)
stage() { local s=$(date +%s); "$@" 2>&1 | tee -a "$LOG"; echo "== $* : $(( $(date +%s) - s )) s" | tee -a "$LOG"; }
# side by side: train.py stage A and stage B, each logging to its own file
pair() {
  local s=$(date +%s)
  $PY tools/shapes/train.py "$1" --threads 1 > $CK/"$1".log 2>&1 &
  local p1=$!
  $PY tools/shapes/train.py "$2" --threads 1 > $CK/"$2".log 2>&1 &
  local p2=$!
  local rc=0
  wait $p1 || rc=$?
  wait $p2 || rc=$?
  cat $CK/"$1".log $CK/"$2".log >> "$LOG"
  echo "== $1 + $2 side by side : $(( $(date +%s) - s )) s" | tee -a "$LOG"
  return $rc
}
pair vae image_encoder
stage $PY tools/shapes/train.py base --threads 1
pair layout style
# the style model trained with the full caption (added for the control table's better
# auxiliary): alone after the pair, which puts the chain past the 90-minute budget (docs/shapes.md)
stage $PY tools/shapes/train.py captioned_style --threads 1
stage $PY tools/shapes/export.py
stage $PY tools/shapes/fixtures.py
echo "== total: $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
