#!/usr/bin/env bash
# The CUDA backend on a GPU machine, in one go (docs/cuda.md): build, the
# correctness suite, the sanitizers, then the benchmarks, each benchmark read
# against the machine's own ceilings measured first in the same run.
#   docs/benchmarks/gpu/run.sh [OUTDIR]        (from the repository root)
# Needs nvcc + cuBLAS, meson, ninja, gcc; python3 with torch for the two
# ceilings (skipped without it). Writes raw outputs to OUTDIR and a summary.
set -u
OUT=${1:-/tmp/mustdrop-gpu-bench}
BUILD=${BUILD:-build-gpu}
# shellcheck source=docs/benchmarks/gpu/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # OUT made; S, log, step; nvcc on PATH

log "machine"
{ nvidia-smi; nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv
  nvcc --version | tail -1; date -u; git rev-parse --short HEAD 2>/dev/null; } > "$OUT/machine.txt" 2>&1
grep -E "NVIDIA H|Driver|release" "$OUT/machine.txt" | head -3 | tee -a "$S"

log "build ($BUILD, -Dcuda=enabled, no GStreamer needed)"
[ -e ../shared ] || [ ! -d shared ] || ln -s "$PWD/shared" ../shared   # fixtures carried in
if [ ! -d "$BUILD" ]; then
  meson setup "$BUILD" -Dcuda=enabled -Dgst=disabled -Dbuildtype=release > "$OUT/setup.log" 2>&1 \
    || { tail -20 "$OUT/setup.log"; exit 1; }
fi
step ninja -C "$BUILD" > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
grep -c "warning" "$OUT/build.log" | sed 's/^/   compiler warnings: /' | tee -a "$S"
# The CUDA backend is the module the library loads at run time: this build's,
# not one installed elsewhere (docs/cuda.md, "How the module is found").
export MUSTDROP_BACKEND_DIR=${MUSTDROP_BACKEND_DIR:-$(cd "$BUILD" && pwd)/cuda}
[ -f "$MUSTDROP_BACKEND_DIR/libmustdrop-cuda.so" ] || { echo "no CUDA module in $MUSTDROP_BACKEND_DIR"; exit 1; }

log "correctness: meson test --suite cuda"
step meson test -C "$BUILD" --suite cuda --print-errorlogs -v > "$OUT/test-cuda.txt" 2>&1
grep -E "^ *[0-9]+/[0-9]+ .*(OK|FAIL|SKIP|TIMEOUT)" "$OUT/test-cuda.txt" | sort -u | tee -a "$S"
grep -E "worst rel err|vs exact|tiny-|steps matched" "$OUT/test-cuda.txt" | sort -u > "$OUT/test-cuda-figures.txt"
log "hf_conformance on CUDA with F32 prefill GEMMs (tells F16 activation rounding from a kernel bug)"
MD_CUDA_PREFILL_F32=1 MD_TEST_BACKEND=cuda MD_TESTS_DIR=$PWD/tests \
  "$BUILD/tests/cuda/test_hf_conformance_cuda" > "$OUT/hf-prefill-f32.txt" 2>&1
grep -E "f16|q8_0|PASS|FAIL" "$OUT/hf-prefill-f32.txt" | tee -a "$S"

log "compute-sanitizer (memcheck: parity, HF LLM and LLaVA forwards; racecheck: parity)"
if command -v compute-sanitizer > /dev/null; then
  for t in test_backend_parity test_hf_conformance_cuda test_vision_hf_llava_cuda; do
    MD_TEST_BACKEND=cuda MD_TESTS_DIR=$PWD/tests timeout 200 compute-sanitizer --tool memcheck \
      "$BUILD/tests/cuda/$t" > "$OUT/memcheck-$t.txt" 2>&1
    echo "   memcheck $t: $(grep 'ERROR SUMMARY' "$OUT/memcheck-$t.txt")" | tee -a "$S"
  done
  timeout 200 compute-sanitizer --tool racecheck "$BUILD/tests/cuda/test_backend_parity" \
    > "$OUT/racecheck.txt" 2>&1
  echo "   racecheck: $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/racecheck.txt")" | tee -a "$S"
fi

log "the CLI with --device cuda:0 and auto (bundled model, text only: no FFmpeg here)"
Q="USER: Name a colour. ASSISTANT:"
for d in cpu cuda:0 auto; do
  "$BUILD/core/cli/mustdrop" --device $d -p "$Q" -n 8 --temp 0 > "$OUT/cli-${d/:/}.txt" 2>&1
  echo "   --device $d: exit $? | $(grep -o '| [a-z0-9:]*, [0-9]* threads' "$OUT/cli-${d/:/}.txt")" | tee -a "$S"
done
cmp -s <(head -1 "$OUT/cli-cpu.txt") <(head -1 "$OUT/cli-cuda0.txt") \
  && echo "   cpu and cuda:0 print the same text" | tee -a "$S" \
  || echo "   cpu and cuda:0 differ (see cli-*.txt)" | tee -a "$S"

log "ceilings: device copy bandwidth and cuBLAS F16/BF16 peak (torch, random data)"
python3 - > "$OUT/ceilings.json" 2>"$OUT/ceilings.err" <<'PY'
import json, torch
def t(f, n=20):
    for _ in range(3): f()
    s, e = torch.cuda.Event(True), torch.cuda.Event(True)
    ts = []
    for _ in range(n):
        s.record(); f(); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
    ts.sort(); return ts[len(ts) // 2] / 1e3
r = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
a = torch.empty(2 << 30, dtype=torch.uint8, device="cuda").random_(); b = torch.empty_like(a)
r["copy_GBps_rw"] = 2 * a.numel() / t(lambda: b.copy_(a)) / 1e9
del a, b
for dt in (torch.float16, torch.bfloat16):
    x = torch.randn(8192, 8192, dtype=dt, device="cuda"); y = torch.randn_like(x)
    r["gemm_8192_%s_TFLOPs" % str(dt)[6:]] = 2 * 8192**3 / t(lambda: x @ y) / 1e12
print(json.dumps(r, indent=1))
PY
cat "$OUT/ceilings.json" | tee -a "$S"

log "ops: bench_cuda_ops (GEMM, GEMV per weight type, attention)"
step "$BUILD/tests/cuda/bench_cuda_ops" > "$OUT/ops.txt" 2>&1
log "LLaMA-2-7B shape, random F16 weights (13.5 GB): pp512/2048/4096, tg128 at depth 0/512/3000"
B="$BUILD/core/cli/mustdrop-bench"
SHAPE=arch=llama,n_embd=4096,n_layer=32,n_ff=11008,n_head=32,n_head_kv=32,n_vocab=32000
F=/tmp/synth-7b-f16.gguf
[ -f $F ] || step "$B" --synthetic "$SHAPE" --type f16 --write $F -r 0 > "$OUT/write-7b.txt" 2>&1
step "$B" -m $F --device cuda -p 512,2048,4096 -n 128 -r 3 --json "$OUT/e2e-7b-f16.json" > "$OUT/e2e-7b-f16.txt" 2>&1
for d in 512 3000; do
  step "$B" -m $F --device cuda -p 0 -n 128 -d $d -r 3 --json "$OUT/e2e-7b-f16-d$d.json" > "$OUT/e2e-7b-f16-d$d.txt" 2>&1
done
grep -h "^| llama" "$OUT"/e2e-7b-f16*.txt | tee -a "$S"
log "vision: CLIP-L/336 tower + projector, F16, batch 1/16/64"
step "$B" --synthetic-vision clip-l-336 --type f16 --batch 1,16,64 -r 5 --device cuda > "$OUT/vision-clip-l.txt" 2>&1
grep -h "^| clip" "$OUT/vision-clip-l.txt" | tee -a "$S"
log "end to end, 2880 visual tokens (5 frames x 576, CLIP-L/336 + the 7B): none, mustdrop 128/64 with kv=faithful (as measured 2026-11-22), mustdrop 64 with the default kv=decode (2026-12-08), hired 0.2"
M=/tmp/synth-clip-l-4096.gguf
[ -f $M ] || "$B" --synthetic-vision clip-l-336 --type f16 --proj-dim 4096 --write $M -r 0 > /dev/null 2>&1
step "$B" --reduce "none;mustdrop:tokens=128,kv=faithful;mustdrop:tokens=64,kv=faithful;mustdrop:tokens=64;hired:budget=0.2" -m $F --mmproj $M \
  --frames 5 -n 32 -r 3 --warmup 1 --device cuda --csv "$OUT/reduce-2880.csv" > "$OUT/reduce-2880.txt" 2>&1
cat "$OUT/reduce-2880.csv" | tee -a "$S"
log "where decode time goes: GPU time of every kernel of 4 decode steps (ncu), against their wall time"
if command -v ncu > /dev/null; then
  # --cache-control none: kernels see the caches as a real run leaves them
  timeout 300 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
    "$B" -m $F --device cuda -p 0 -n 4 -d 64 -r 1 > "$OUT/ncu-decode.csv" 2> "$OUT/ncu-decode.err"
  python3 - "$OUT/ncu-decode.csv" <<'PY' | tee -a "$S"
import csv, sys, collections
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
h = rows[0]; ki, vi, ui = h.index("Kernel Name"), h.index("Metric Value"), h.index("Metric Unit")
by = collections.defaultdict(lambda: [0, 0.0])
for r in rows[1:]:
    v = float(r[vi].replace(",", "")) * {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0,
                                           "ms": 1e3, "msecond": 1e3}[r[ui]]   # -> us
    k = r[ki].split("(")[0].split("<")[0]; by[k][0] += 1; by[k][1] += v
tot = sum(v for _, v in by.values())
print("   kernels profiled: %d, GPU time %.1f ms (2 prefills of 64 rows, 4+4 decode steps)"
      % (sum(n for n, _ in by.values()), tot / 1e3))
for k, (n, v) in sorted(by.items(), key=lambda x: -x[1][1])[:12]:
    print("   %-48s %6d launches %9.1f us %7.2f us each %5.1f %%" % (k[:48], n, v, v / n, 100 * v / tot))
PY
fi
log "done: $OUT"
