#!/usr/bin/env bash
# GPU benchmark skeleton for the CUDA backend (docs/cuda.md, "Needs a GPU").
# Run on the GPU machine from the repository root:
#   docs/benchmarks/gpu/run.sh [OUTDIR]
# Order matters: the machine's own limits first (copy bandwidth, cuBLAS
# peak), then the ops, then end-to-end, so every number can be read as a
# fraction of what this GPU can do (shared/reference/engine.md §5).
set -euo pipefail
OUT=${1:-${OUT:-/tmp/mustdrop-gpu-bench}}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

log "machine"
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv || true
  nvcc --version | tail -1; date -u; git rev-parse --short HEAD 2>/dev/null || true; } | tee -a "$OUT/summary.txt"

log "build ($BUILD, -Dcuda=enabled)"
[ -d "$BUILD" ] || meson setup "$BUILD" -Dcuda=enabled -Dbuildtype=release
ninja -C "$BUILD"

log "correctness first: meson test --suite cuda"
meson test -C "$BUILD" --suite cuda --print-errorlogs | tee "$OUT/test-cuda.txt"

log "limits and ops: bench_cuda_ops (copy bandwidth, cuBLAS GEMM, GEMV, attention)"
"$BUILD/tests/cuda/bench_cuda_ops" | tee "$OUT/ops.txt"

log "synthetic 7B-shaped models (LLaMA-2-7B: 4096/32 layers/11008/32 heads/32000)"
SHAPE=arch=llama,n_embd=4096,n_layer=32,n_ff=11008,n_head=32,n_head_kv=32,n_vocab=32000
for T in f16 q8_0; do
  F="$OUT/synth-7b-$T.gguf"
  [ -f "$F" ] || "$BUILD/core/cli/mustdrop-bench" --synthetic "$SHAPE" --type "$T" --write "$F" -r 0
done
ls -l "$OUT"/synth-7b-*.gguf | tee -a "$OUT/summary.txt"

log "end-to-end pp512 / tg128"
# TODO(GPU session): mustdrop-bench has no --backend option yet (core/cli);
# add one (md_model_params.backend = "cuda") and run:
#   "$BUILD/core/cli/mustdrop-bench" -m "$OUT/synth-7b-f16.gguf" -p 512,2930 -n 128 -r 3 \
#       --backend cuda --json "$OUT/e2e-f16.json"
# Compare with engine.md §5: decode bound ~248 tok/s F16 on H100 SXM
# (bandwidth / 13.5 GB), llama.cpp A100 F16 pp512 8668 / tg128 74.8.
if "$BUILD/core/cli/mustdrop-bench" --help 2>&1 | grep -q -- --backend; then
  for T in f16 q8_0; do
    "$BUILD/core/cli/mustdrop-bench" -m "$OUT/synth-7b-$T.gguf" -p 512,2930 -n 128 -r 3 \
      --backend cuda --json "$OUT/e2e-$T.json" | tee "$OUT/e2e-$T.txt"
  done
else
  log "skipped: mustdrop-bench has no --backend option yet"
fi

log "memory and race checks (slow; one pass)"
if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck "$BUILD/tests/cuda/test_backend_parity" > "$OUT/memcheck.txt" 2>&1 || true
  compute-sanitizer --tool racecheck "$BUILD/tests/cuda/test_backend_parity" > "$OUT/racecheck.txt" 2>&1 || true
  tail -3 "$OUT/memcheck.txt" "$OUT/racecheck.txt" | tee -a "$OUT/summary.txt"
fi
log "done: $OUT"
