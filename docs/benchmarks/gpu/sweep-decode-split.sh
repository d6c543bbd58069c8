#!/usr/bin/env bash
# Keys per split-KV decode block (MD_CUDA_DECODE_SPLIT) against decode speed of
# the LLaMA-2-7B shape (F16, random weights), from an empty cache and after
# 512 and 3000 cached tokens. Run after run.sh built $BUILD (same machine):
#   docs/benchmarks/gpu/sweep-decode-split.sh OUTDIR
set -u
OUT=${1:-/tmp/mustdrop-gpu-bench}
BUILD=${BUILD:-build-gpu}
B="$BUILD/core/cli/mustdrop-bench"
F=/tmp/synth-7b-f16.gguf
SHAPE=arch=llama,n_embd=4096,n_layer=32,n_ff=11008,n_head=32,n_head_kv=32,n_vocab=32000
mkdir -p "$OUT"
[ -f $F ] || "$B" --synthetic "$SHAPE" --type f16 --write $F -r 0 > /dev/null 2>&1
T="$OUT/sweep-decode-split.txt"
echo "| keys per split | tg128 | tg128@d512 | tg128@d3000 |" | tee "$T"
echo "|---:|---:|---:|---:|" | tee -a "$T"
for k in 16 32 64 128 256; do
  row="| $k |"
  for d in 0 512 3000; do
    r=$(MD_CUDA_DECODE_SPLIT=$k "$B" -m $F --device cuda -p 0 -n 128 -d $d -r 3 2>&1 | grep '^| llama' | awk -F'|' '{print $8}')
    row="$row $r |"
  done
  echo "$row" | tee -a "$T"
done
