# shellcheck shell=bash
# What the GPU scripts of this folder share (sourced): OUT made, the summary
# file S, log (a heading into S) and step (a command timed, its exit status
# into S), nvcc on PATH.
mkdir -p "$OUT"
S="$OUT/summary.txt"
log() { echo "== $*" | tee -a "$S"; }
step() { local t0=$(date +%s); "$@"; local rc=$?; echo "   ($(( $(date +%s) - t0 )) s, exit $rc)" | tee -a "$S"; return $rc; }
export PATH=/usr/local/cuda/bin:$PATH
