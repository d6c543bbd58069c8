#!/bin/bash
# alternate-prefill.sh MODEL ROUNDS BIN...: prompt processing (-p $P, default 512) of each
# mustdrop-bench copy in turn (copies of build-rel/core/cli/mustdrop-bench in $BINDIR), ROUNDS times.
m=$1; n=$2; shift 2
for i in $(seq $n); do
  for b in "$@"; do
    echo "$b $(${BINDIR:-/tmp}/$b -m $m -p ${P:-512} -n 0 -r 2 -t 2 2>&1 | grep -E "pp[0-9]" | tr -s ' ' | cut -d'|' -f8,9)"
  done
done
