#!/usr/bin/env bash
# mustdrop vs llama.cpp on the CPU in one command: builds llama.cpp from pip's
# source distribution of llama-cpp-python (build-llamacpp.sh, reused when
# already built), writes the 0.27B synthetic LLaMA (n_embd 1024, 16 layers,
# n_ff 2816, vocab 32000, random weights) in F16 with mustdrop-bench,
# quantizes it with llama.cpp's own llama-quantize to Q8_0, Q4_K_M and Q4_0,
# then runs llama-bench and mustdrop-bench alternately on each file with the
# same settings: pp512 and tg128 (-p 512 -n 128), and tg128 after DEPTH
# cached tokens (-p 0 -n 128 -d DEPTH; both engines' -d). The machine's
# ceilings (FMA peak, read bandwidth) are measured in the same run.
# The vision path last (VISION=1, the default): a random CLIP-L/336 mmproj
# (projector to the LLM's width) plus the F16 LLM, one 336x336 PNG, one
# answer token, Vicuna template (mustdrop's default for LLaVA-1.5; the
# synthetic GGUF names none), whole process, llama-mtmd-cli and `mustdrop --image`
# alternately, REPS x ROUNDS pairs of wall times (vision.tsv).
#
#   docs/benchmarks/cpu/side-by-side.sh BUILD_DIR [OUT_DIR]
#
# BUILD_DIR: a release build of this repository (mustdrop-bench, bench_matmul;
# with FFmpeg when VISION=1: `mustdrop --image` reads the PNG with it).
# Environment: THREADS (2), REPS (3), ROUNDS (1), DEPTH (2048; 0 skips the
# depth test), TYPES ("f16 q8_0 q4_k_m q4_0"), LLAMACPP_DIR (build-llamacpp/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(realpath "$1")
out=$(mkdir -p "${2:-$here/$(date -u +%F)-sbs}" && cd "${2:-$here/$(date -u +%F)-sbs}" && pwd)
threads=${THREADS:-2} reps=${REPS:-3} rounds=${ROUNDS:-1} depth=${DEPTH:-2048}
types=${TYPES:-f16 q8_0 q4_k_m q4_0} vision=${VISION:-1}
if [ "$vision" = 1 ] && "$build/core/cli/mustdrop" --image /nonexistent.png --question x 2>&1 |
        grep -q "without FFmpeg"; then
    echo "$build has no FFmpeg: configure it with -Dffmpeg=enabled, or VISION=0" >&2
    exit 1
fi
lbin=$(WITH_MTMD=$vision "$here/build-llamacpp.sh" ${LLAMACPP_DIR:+"$LLAMACPP_DIR"})
lb=$lbin/llama-bench
mb=$build/core/cli/mustdrop-bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -srm)"
    lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|L1d cache|L2 cache|L3 cache|Flags):' \
        | sed 's/  */ /g'
    echo "mustdrop commit: $(git -C "$here" rev-parse HEAD)$(git -C "$here" diff --quiet HEAD -- core || echo ' (core/ modified)')"
    echo "llama.cpp: $("$lb" --version 2>&1 | grep -i commit | head -1) (llama-cpp-python 0.3.36 sdist)"
    echo "settings: threads $threads, reps $reps, rounds $rounds, depth $depth, types $types"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.txt"
lscpu > "$out/lscpu.txt"

"$build/tests/llm/bench_matmul" > "$out/ceilings.txt" 2>&1 || echo "bench_matmul failed" >> "$out/ceilings.txt"

f16=$tmp/llama-0.27b-f16.gguf
"$mb" --synthetic llama-0.27b --type f16 --write "$f16" -r 0 > /dev/null
for t in $types; do
    [ "$t" = f16 ] && continue
    "$lbin/llama-quantize" "$f16" "$tmp/llama-0.27b-$t.gguf" "${t^^}" "$threads" \
        > "$out/quantize-$t.log" 2>&1
done

# Both engines on one file, llama.cpp first: TYPE TAG ROUND BENCH-ARGS... (llama-bench writes JSON to
# stdout, mustdrop-bench to --json).
run_pair() {
    local t=$1 tag=$2 round=$3; shift 3
    local m=$tmp/llama-0.27b-$t.gguf
    "$lb" -m "$m" "$@" -t "$threads" -r "$reps" -o json \
        > "$out/llamacpp-$t-$tag-$round.json" 2> "$out/llamacpp-$t-$tag-$round.log"
    "$mb" -m "$m" "$@" -t "$threads" -r "$reps" \
        --json "$out/mustdrop-$t-$tag-$round.json" > "$out/mustdrop-$t-$tag-$round.txt" 2>&1
}
for round in $(seq 1 "$rounds"); do
    for t in $types; do
        run_pair "$t" base "$round" -p 512 -n 128
        [ "$depth" -gt 0 ] && run_pair "$t" depth "$round" -p 0 -n 128 -d "$depth"
    done
done

# The vision path: wall time of the whole process (load, image, tower,
# projector, prefill, one token) for each engine, alternating.
wall() {   # LOG CMD...: seconds CMD took, its output in LOG
    local log=$1 t0=$EPOCHREALTIME; shift
    "$@" > "$log" 2>&1 || { echo "failed: $* (see $log)" >&2; return 1; }
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'
}
if [ "$vision" = 1 ]; then
    mmproj=$tmp/clip-l-336-f16.gguf img=$tmp/frame.png q="What is in the image?"
    "$mb" --synthetic-vision clip-l-336 --proj-dim 1024 --type f16 --write "$mmproj" -r 0 > /dev/null
    ffmpeg -loglevel error -f lavfi -i testsrc2=size=336x336 -frames:v 1 "$img"
    printf 'pair\tllama-mtmd-cli s\tmustdrop s\n' > "$out/vision.tsv"
    for i in $(seq 1 $((reps * rounds))); do
        a=$(wall "$out/vision-llamacpp-$i.log" "$lbin/llama-mtmd-cli" -m "$f16" \
            --mmproj "$mmproj" --image "$img" -p "$q" -n 1 --temp 0 -t "$threads" \
            --chat-template vicuna)
        b=$(wall "$out/vision-mustdrop-$i.log" "$build/core/cli/mustdrop" -m "$f16" \
            --mmproj "$mmproj" --image "$img" --question "$q" -n 1 -t "$threads")
        printf '%s\t%s\t%s\n' "$i" "$a" "$b" >> "$out/vision.tsv"
    done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
/usr/bin/python3 "$here/summarize.py" "$out" | tee "$out/summary.md"
