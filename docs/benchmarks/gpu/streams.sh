#!/usr/bin/env bash
# Issue 16 on a GPU, in one call (docs/streams.md): the batched decode step
# checked on CUDA, its tokens/s for 1-16 sequences, and streams per GPU for a
# 7B-shaped random LLaVA (CLIP-L/336 mmproj) at one answer every 10 s a stream.
#   docs/benchmarks/gpu/streams.sh [OUTDIR]        (from the repository root)
# Needs nvcc + cuBLAS, meson, ninja, gcc (no GStreamer: bench_streams drives
# md_vqa directly, as the element does). Estimated at 6 minutes on an H100
# (not run on one yet: two 30 s stream sweeps of 5 points, three decode
# sweeps, the 13 GB 7B file). A dry run of the script's logic on a CPU:
#   DEVICE=cpu BUILD=build-rel SMALL=llama-tiny LLM7=llama-tiny VISION=clip-tiny PROJ=256 \
#   SIDE=56 STREAMS=1,4 SECONDS_RUN=4 PERIOD=2 docs/benchmarks/gpu/streams.sh /tmp/streams-dry
set -u
OUT=${1:-/tmp/mustdrop-gpu-streams}
BUILD=${BUILD:-build-gpu}
DEVICE=${DEVICE:-cuda}
SMALL=${SMALL:-llama-0.27b}
LLM7=${LLM7:-n_embd=4096,n_layer=32,n_ff=11008,n_head=32,n_head_kv=32,n_vocab=32000}
VISION=${VISION:-clip-l-336}
PROJ=${PROJ:-4096}
SIDE=${SIDE:-336}
STREAMS=${STREAMS:-1,4,8,16,32}
PERIOD=${PERIOD:-10}
SECONDS_RUN=${SECONDS_RUN:-30}
# shellcheck source=docs/benchmarks/gpu/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # OUT made; S, log, step; nvcc on PATH

log "machine"
{ nvidia-smi 2>&1; date -u; git rev-parse --short HEAD 2>/dev/null; nproc; } > "$OUT/machine.txt"
grep -E "NVIDIA H|Driver" "$OUT/machine.txt" | head -2 | tee -a "$S"

if [ "$DEVICE" != cpu ]; then
  log "build ($BUILD, -Dcuda=enabled, no GStreamer)"
  [ -e ../shared ] || [ ! -d shared ] || ln -s "$PWD/shared" ../shared
  if [ ! -d "$BUILD" ]; then
    meson setup "$BUILD" -Dcuda=enabled -Dgst=disabled -Dbuildtype=release > "$OUT/setup.log" 2>&1 \
      || { tail -20 "$OUT/setup.log"; exit 1; }
  fi
  step ninja -C "$BUILD" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
  export MUSTDROP_BACKEND_DIR=${MUSTDROP_BACKEND_DIR:-$(cd "$BUILD" && pwd)/cuda}
  log "correctness: the multi-sequence step on CUDA (tests/llm/test_decode_multi.c)"
  step meson test -C "$BUILD" decode_multi_cuda --print-errorlogs -v > "$OUT/test-decode-multi-cuda.txt" 2>&1
  grep -E "decode_multi_cuda +(OK|FAIL|SKIP)|bit-identical|FAIL" "$OUT/test-decode-multi-cuda.txt" | tee -a "$S"
fi
BENCH="$BUILD/core/cli/mustdrop-bench"
STREAMS_BIN="$BUILD/tests/vqa/bench_streams"

log "batched decode, 0.27B (F16, Q8_0): S sequences stepped together vs one after another"
for t in f16 q8_0; do
  step "$BENCH" --synthetic "$SMALL" --type $t --device "$DEVICE" --seqs 1,2,4,8,16 -n 32 -d 64 -r 3 \
    > "$OUT/batched-0.27b-$t.txt" 2>&1
  grep -E "^\| |^device|params" "$OUT/batched-0.27b-$t.txt" | tee -a "$S"
done

log "7B-shaped random LLM (F16) and CLIP-L/336 mmproj, written once"
step "$BENCH" --synthetic "$LLM7" --type f16 --write "$OUT/llm7b-f16.gguf" -r 0 > "$OUT/write-llm.txt" 2>&1
step "$BENCH" --synthetic-vision "$VISION" --proj-dim "$PROJ" --write "$OUT/mmproj.gguf" -r 0 \
  > "$OUT/write-mmproj.txt" 2>&1
log "batched decode, 7B-shaped F16"
step "$BENCH" -m "$OUT/llm7b-f16.gguf" --device "$DEVICE" --seqs 1,4,8,16 -n 16 -d 64 -r 2 \
  > "$OUT/batched-7b-f16.txt" 2>&1
grep -E "^\| |^device|params" "$OUT/batched-7b-f16.txt" | tee -a "$S"

log "streams per GPU: one engine, each stream 8 frames a window, 32 tokens, every ${PERIOD} s"
for red in none "flashvid:keep=0.5,segs=2"; do
  step "$STREAMS_BIN" -m "$OUT/llm7b-f16.gguf" --mmproj "$OUT/mmproj.gguf" --device "$DEVICE" \
    --streams "$STREAMS" --period "$PERIOD" --seconds "$SECONDS_RUN" --frames 8 --side "$SIDE" \
    --tokens 32 --reduce "$red" > "$OUT/streams-${red%%:*}.txt" 2>&1
  tee -a "$S" < "$OUT/streams-${red%%:*}.txt"
done
nvidia-smi --query-gpu=memory.used,memory.total --format=csv > "$OUT/gpu-memory-after.txt" 2>&1
rm -f "$OUT/llm7b-f16.gguf" "$OUT/mmproj.gguf"   # 13 GB: not brought back
log "done"
