#!/usr/bin/env bash
# Visual-token reduction on a LLaVA-1.5-shaped model pair with random weights:
# cost (tokens, FLOPs, KV bytes, wall time per stage) of every method at
# 50/25/11/5 % of the 576 visual tokens, on the CPU (docs/reduction.md).
#
#   docs/benchmarks/reduction/run.sh [BUILD_DIR]      (default: build-rb)
#
# Environment (defaults in brackets):
#   THREADS [2]  REPS [2] timed runs per image spec  VIDEO_REPS [1]  WARMUP [1]
#   NPRED [16] answer tokens  FRAMES [8]  MUSTDROP, VIDEO: spec lists (below)
#   OUT   [docs/benchmarks/reduction/<UTC date>]  where the CSV files go
#   WORK  [/tmp/mustdrop-reduction-bench]          the synthetic GGUF files (~1.2 GB)
#   TINY=1  llama-tiny + clip-tiny instead (seconds; to test this script)
#   ONLY=image|video|ref  one part only
# Writes OUT/machine.txt (date, commit, CPU, commands), OUT/image.csv,
# OUT/video.csv, OUT/reference.txt (CPU FLOP/s), then OUT/reduction.png and
# OUT/summary.md through plot.py (numpy + matplotlib).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=$(cd "${1:-$root/build-rb}" && pwd)
bench=$build/core/cli/mustdrop-bench
matmul=$build/tests/llm/bench_matmul
THREADS=${THREADS:-2} REPS=${REPS:-2} VIDEO_REPS=${VIDEO_REPS:-1} WARMUP=${WARMUP:-1} NPRED=${NPRED:-16} FRAMES=${FRAMES:-8}
OUT=${OUT:-$here/$(date -u +%Y-%m-%d)}
WORK=${WORK:-/tmp/mustdrop-reduction-bench}
ONLY=${ONLY:-}
[ -x "$bench" ] || { echo "run.sh: no $bench (meson setup build-rb && ninja -C build-rb)" >&2; exit 1; }
mkdir -p "$OUT" "$WORK"

# The pair: CLIP-L/336 as LLaVA-1.5's mmproj stores it (577 tokens, hidden
# 1024, 23 of its 24 layers: the feature layer is the penultimate one), its
# 2-layer MLP projector sized to the LLM's width, and the 0.27B LLaMA shape
# (hidden 1024, 16 layers, 16 heads, FFN 2816, vocab 32000). f16 weights.
if [ -n "${TINY:-}" ]; then
    llm_shape=llama-tiny vis_shape=clip-tiny proj=256 tag=tiny
else
    llm_shape=llama-0.27b vis_shape=clip-l-336 proj=1024 tag=llava15
fi
llm=$WORK/$tag-llm-f16.gguf mmproj=$WORK/$tag-mmproj-f16.gguf
make_llm=("$bench" --synthetic "$llm_shape" --type f16 -r 0 --write "$llm")
make_mmproj=("$bench" --synthetic-vision "$vis_shape" --proj-dim "$proj" --type f16 -r 0 --write "$mmproj")
[ -s "$llm" ] || "${make_llm[@]}"
[ -s "$mmproj" ] || "${make_mmproj[@]}"

# Fractions 50/25/11/5 % of the 576 tokens = 288/144/64/29.
# MustDrop's counts depend on the data: its presets (192/128/64) plus
# thresholds picked by a calibration run (-n 0) on this pair so that the
# final count lands near 288 / 144 (tau 0.0022 / 0.0025: the attention of a
# random model is nearly uniform, 1/576 = 0.0017 per token) and near 29
# (tau 1 keeps only the key set; key=0.04 = 24 tokens, under the 8 % floor).
MUSTDROP=${MUSTDROP:-"mustdrop:tokens=192;mustdrop:tokens=128;mustdrop:tokens=64;mustdrop:tau_g=0.0022,tau_i=0.0022;mustdrop:tau_g=0.0025,tau_i=0.0025;mustdrop:tau_g=1,tau_i=1,key=0.04"}
IMAGE_SPECS="$MUSTDROP"
for f in 0.5 0.25 0.11 0.05; do IMAGE_SPECS+=";hired:budget=$f"; done
for r in 0.5 0.75 0.889 0.95; do IMAGE_SPECS+=";fastv:k=2,r=$r"; done
for f in 0.5 0.25 0.11 0.05; do IMAGE_SPECS+=";random:keep=$f"; done
for n in 288 144 64 29; do IMAGE_SPECS+=";uniform:tokens=$n"; done
# DyCoke keeps frame 0 of each 4-frame window whole (floor 25 %); stmerge's
# thresholds from a 2-frame calibration (0.9 merges nothing on this pair).
VIDEO_SPECS=${VIDEO:-"dycoke:k=0.5;dycoke:k=0.7;dycoke:k=0.9;stmerge:thresh=0.7;stmerge:thresh=0.6;stmerge:thresh=0.5"}

image_cmd=("$bench" --reduce "$IMAGE_SPECS" -m "$llm" --mmproj "$mmproj" -n "$NPRED" -r "$REPS"
           --warmup "$WARMUP" -t "$THREADS" --csv "$OUT/image.csv")
video_cmd=("$bench" --reduce "$VIDEO_SPECS" -m "$llm" --mmproj "$mmproj" --frames "$FRAMES"
           -n "$NPRED" -r "$VIDEO_REPS" --warmup 0 -t "$THREADS" --csv "$OUT/video.csv")
peak_cmd=("$matmul" -t "$THREADS" -r 5 -only peak)
gemm_cmd=("$matmul" -t "$THREADS" -r 3 -type F16 -only gemm)
pp_cmd=("$bench" -m "$llm" -p 512 -n 16 -r 2 -t "$THREADS")

q() { local a out=""; for a in "$@"; do out+=" $(printf '%q' "$a")"; done; echo "${out# }"; }
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD -- 2>/dev/null || echo ' (work tree modified)')"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) online CPUs, $(lscpu | sed -n 's/^Thread(s) per core: *//p') thread(s)/core, flags avx2=$(grep -qw avx2 /proc/cpuinfo && echo yes || echo no) avx512f=$(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
    echo "cpu family/model/stepping: $(lscpu | sed -n 's/^CPU family: *//p' | head -1)/$(lscpu | sed -n 's/^Model: *//p' | head -1)/$(lscpu | sed -n 's/^Stepping: *//p' | head -1)"
    echo "hypervisor: $(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1)"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
    echo "compiler: $(cc --version | head -1)"
    echo "build: $build ($(sed -n 's/.*"buildtype", "value": "\([a-z]*\)".*/\1/p' "$build/meson-info/intro-buildoptions.json" 2>/dev/null | head -1))"
    echo "threads: $THREADS  reps: $REPS (video $VIDEO_REPS)  warmup: $WARMUP  answer tokens: $NPRED  frames: $FRAMES"
    echo "models: $(q "${make_llm[@]}")"
    echo "        $(q "${make_mmproj[@]}")"
    echo "image: $(q "${image_cmd[@]}")"
    echo "video: $(q "${video_cmd[@]}")"
    echo "reference: $(q "${peak_cmd[@]}"); $(q "${gemm_cmd[@]}"); $(q "${pp_cmd[@]}")"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

# other processes on the machine skew wall times: log the load around each part
load() { echo "$1: $(date -u +%H:%M:%S) loadavg $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"; }
t0=$(date +%s)
if [ -z "$ONLY" ] || [ "$ONLY" = image ]; then
    load "image start"; "${image_cmd[@]}"; load "image end ($(( $(date +%s) - t0 )) s)"; fi
if [ -z "$ONLY" ] || [ "$ONLY" = video ]; then
    load "video start"; "${video_cmd[@]}"; load "video end ($(( $(date +%s) - t0 )) s)"; fi
if [ -z "$ONLY" ] || [ "$ONLY" = ref ]; then
    { echo "## $(q "${peak_cmd[@]}")"; "${peak_cmd[@]}"
      echo "## $(q "${gemm_cmd[@]}")"; "${gemm_cmd[@]}"
      echo "## $(q "${pp_cmd[@]}")"; "${pp_cmd[@]}"; } > "$OUT/reference.txt" 2>&1
    cat "$OUT/reference.txt"
fi
echo "total: $(( $(date +%s) - t0 )) s"
python3 "$here/plot.py" "$OUT"
