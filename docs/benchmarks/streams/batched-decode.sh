#!/usr/bin/env bash
# Batched decode across sequences (issue 16, benchmark (a)): tokens/s of
# S = 1, 2, 4, 8, 16 sequences stepped together (md_decode_multi) against the
# same sequences one after another, on the 0.27B synthetic LLaMA, F16 and
# Q8_0, 2 threads.
#   docs/benchmarks/streams/batched-decode.sh BUILD_DIR OUT_DIR
set -euo pipefail
build=$1 out=$2
mkdir -p "$out"
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  git rev-parse HEAD
  lscpu | grep -E 'Model name|^CPU\(s\)|L3'
  uptime
} > "$out/machine.txt"
for t in f16 q8_0; do
  cmd=("$build/core/cli/mustdrop-bench" --synthetic llama-0.27b --type "$t" -t 2
       --seqs 1,2,4,8,16 -n 16 -d 64 -r 4)
  echo "\$ ${cmd[*]}" > "$out/$t.txt"
  rc=0; "${cmd[@]}" >> "$out/$t.txt" 2>&1 || rc=$?
  echo "exit status: $rc" >> "$out/$t.txt"
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/$t.txt"
done
