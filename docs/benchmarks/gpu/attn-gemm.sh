#!/usr/bin/env bash
# Prefill attention through cuBLAS (the default on F32 caches) against the
# flash kernel (MD_CUDA_ATTN=flash), side by side in one run: the CUDA test
# suite first, then prefill of the LLaMA-2-7B shape, the CLIP-L/336 tower and
# the 2880-visual-token reduction pipeline under each.
#   docs/benchmarks/gpu/attn-gemm.sh OUTDIR        (from the repository root)
set -u
OUT=${1:-/tmp/mustdrop-gpu-bench}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
S="$OUT/attn-summary.txt"
export PATH=/usr/local/cuda/bin:$PATH
[ -e ../shared ] || [ ! -d shared ] || ln -s "$PWD/shared" ../shared
[ -d "$BUILD" ] || meson setup "$BUILD" -Dcuda=enabled -Dgst=disabled -Dbuildtype=release > "$OUT/setup.log" 2>&1
ninja -C "$BUILD" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
meson test -C "$BUILD" --suite cuda --print-errorlogs -v > "$OUT/attn-test-cuda.txt" 2>&1
grep -E "^ *[0-9]+/[0-9]+ .*(OK|FAIL|SKIP|TIMEOUT)" "$OUT/attn-test-cuda.txt" | sort -u | tee "$S"
grep -E "attention|CHECK failed" "$OUT/attn-test-cuda.txt" | sort -u | tee -a "$S"
B="$BUILD/core/cli/mustdrop-bench"
F=/tmp/synth-7b-f16.gguf M=/tmp/synth-clip-l-4096.gguf
SHAPE=arch=llama,n_embd=4096,n_layer=32,n_ff=11008,n_head=32,n_head_kv=32,n_vocab=32000
[ -f $F ] || "$B" --synthetic "$SHAPE" --type f16 --write $F -r 0 > /dev/null 2>&1
[ -f $M ] || "$B" --synthetic-vision clip-l-336 --type f16 --proj-dim 4096 --write $M -r 0 > /dev/null 2>&1
for mode in flash cublas; do
  [ $mode = flash ] && export MD_CUDA_ATTN=flash || unset MD_CUDA_ATTN
  echo "== prefill attention: $mode" | tee -a "$S"
  "$B" -m $F --device cuda -p 512,2048,4096 -n 0 -r 3 --json "$OUT/attn-$mode-pp.json" > "$OUT/attn-$mode-pp.txt" 2>&1
  grep "^| llama" "$OUT/attn-$mode-pp.txt" | tee -a "$S"
  "$B" --vision $M --batch 1,16,64 -r 5 --device cuda > "$OUT/attn-$mode-vision.txt" 2>&1
  grep "^| /tmp" "$OUT/attn-$mode-vision.txt" | tee -a "$S"
  "$B" --reduce "none;mustdrop:tokens=128,kv=faithful;mustdrop:tokens=64,kv=faithful;mustdrop:tokens=64;hired:budget=0.2" -m $F --mmproj $M \
    --frames 5 -n 32 -r 3 --warmup 1 --device cuda --csv "$OUT/attn-$mode-reduce-2880.csv" > /dev/null 2>&1
  cut -d, -f1,7,19,20,21,24 "$OUT/attn-$mode-reduce-2880.csv" | tee -a "$S"
done
