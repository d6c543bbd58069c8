#!/usr/bin/env bash
# mustdrop vs llama.cpp on the CPU, side by side in one run, on the same GGUF
# files: a 0.27B LLaMA shape (n_embd 1024, 16 layers, n_ff 2816, 16 heads,
# vocab 32000) with random weights, written by mustdrop-bench, in F16 and Q8_0.
# Each engine runs pp512 and tg128 with 2 threads; the two engines alternate
# (two rounds) so drift on a shared machine hits both alike. The machine's
# ceilings (FMA peak, streaming read bandwidth) are measured in the same run.
#
#   docs/benchmarks/cpu/run.sh BUILD_DIR LLAMA_BENCH [OUT_DIR]
#
# BUILD_DIR: a release build of this repository (meson setup build).
# LLAMA_BENCH: llama-bench from a llama.cpp CPU build made outside the
# repository (e.g. from pip's source distribution of llama-cpp-python:
# cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF && cmake --build build --target llama-bench).
set -euo pipefail
build=$(realpath "$1")
lb=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
out=${3:-$here/$(date -u +%F)}
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LD_LIBRARY_PATH="$(dirname "$lb")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -srm)"
    lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|L2 cache|L3 cache):' | sed 's/  */ /g'
    echo "avx512: $(grep -o 'avx512[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
    echo "mustdrop commit: $(git -C "$here" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "llama.cpp: $("$lb" --version 2>&1 | grep -i build | head -1)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$out/machine.txt"

"$build/tests/llm/bench_matmul" > "$out/ceilings.txt" 2>&1 || echo "bench_matmul failed" >> "$out/ceilings.txt"

for t in f16 q8_0; do
    "$build/core/cli/mustdrop-bench" --synthetic llama-0.27b --type "$t" \
        --write "$tmp/llama-0.27b-$t.gguf" -p 0 -n 0 -r 1 > /dev/null
done
for t in f16 q8_0; do
    for round in 1 2; do
        "$lb" -m "$tmp/llama-0.27b-$t.gguf" -p 512 -n 128 -t 2 -r 3 -o json \
            > "$out/llamacpp-$t-$round.json" 2> "$out/llamacpp-$t-$round.log"
        "$build/core/cli/mustdrop-bench" -m "$tmp/llama-0.27b-$t.gguf" -p 512 -n 128 -t 2 -r 3 \
            --json "$out/mustdrop-$t-$round.json" > "$out/mustdrop-$t-$round.txt"
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/machine.txt"
python3 "$here/summarize.py" "$out" | tee "$out/summary.md"
