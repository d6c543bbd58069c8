#!/bin/bash
# alternate-llamacpp.sh MODEL ROUNDS BIN...: llama-bench, then each mustdrop-bench copy, ROUNDS times
# Binaries are copies of build-rel/core/cli/mustdrop-bench of each commit, in $BINDIR (/tmp);
# ISA="--isa avx2" passes extra flags (alternate.sh). Another load on the machine must be stopped first.
m=$1; n=$2; shift 2
for i in $(seq $n); do
  echo "llama $(${LLAMACPP_BIN:-build-llamacpp/build/bin}/llama-bench -m $m -p 0 -n 128 -r 3 -t 2 2>&1 | grep -E "tg[0-9]" | tr -s ' ' | awk -F'|' '{print $(NF-1)}')"
  for b in "$@"; do
    echo "$b $(${BINDIR:-/tmp}/$b -m $m -p 0 -n 128 -r 3 -t 2 2>&1 | grep -E "tg[0-9]" | tr -s ' ' | cut -d'|' -f8,9)"
  done
done
