#!/usr/bin/env bash
# Retrain the whole shapes family from fixed seeds, export it to models/ and rewrite the
# golden fixtures. Needs Debian's python3-torch and python3-onnx (and, for speed,
# libopenblas0-pthread); downloads nothing. Prints the wall time of every stage.
#
#   bash tools/shapes/retrain.sh
#
# One torch thread per process: torch's OpenMP regions on these tiny tensors cost more
# in barriers than they gain, and a spinning OpenMP pool collapses when the machine has
# any other load. The two fine-tunes (layout, style) run side by side on the two cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
export OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1
LOG=tools/shapes/.ckpt/retrain.log
mkdir -p tools/shapes/.ckpt
: > "$LOG"
t0=$(date +%s)
stage() { local s=$(date +%s); "$@" 2>&1 | tee -a "$LOG"; echo "== $* : $(( $(date +%s) - s )) s" | tee -a "$LOG"; }
stage $PY tools/shapes/train.py vae --threads 1
stage $PY tools/shapes/train.py base --threads 1
s=$(date +%s)
$PY tools/shapes/train.py layout --threads 1 > tools/shapes/.ckpt/layout.log 2>&1 &
p1=$!
$PY tools/shapes/train.py style --threads 1 > tools/shapes/.ckpt/style.log 2>&1 &
p2=$!
wait $p1
wait $p2
cat tools/shapes/.ckpt/layout.log tools/shapes/.ckpt/style.log >> "$LOG"
echo "== layout + style in parallel : $(( $(date +%s) - s )) s" | tee -a "$LOG"
stage $PY tools/shapes/export.py
stage $PY tools/shapes/fixtures.py
echo "== total: $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
