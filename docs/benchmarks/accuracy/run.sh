#!/usr/bin/env bash
# Accuracy versus visual tokens for every reduction method, on the synthvqa
# test split, with the bundled default model. docs/accuracy.md explains it.
#   docs/benchmarks/accuracy/run.sh SPLIT_DIR OUT_DIR [SPECS_FILE]
# SPLIT_DIR: written by  python3 models/synthvqa/synthvqa.py write --split test --n 250 --out SPLIT_DIR
# LLM=FILE MMPROJ=FILE: another model pair than the bundled default.
# EVAL=BIN: another mustdrop-eval; PYTHON=BIN: the interpreter for plot.py (the plot needs matplotlib).
# SPECS_FILE (default specs.txt beside this script): "method|target|spec" per
# line ("none" for no reduction). Writes OUT_DIR/results.jsonl (one
# mustdrop-eval --json line per spec, with method/target/spec added),
# OUT_DIR/machine.txt, then results.csv, accuracy.png and table.md via plot.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
split="${1:?split dir}"
out="${2:?output dir}"
specs="${3:-$here/specs.txt}"
eval_bin="${EVAL:-$root/build/core/cli/mustdrop-eval}"
threads="${THREADS:-2}"
model_args=()
[ -z "${LLM:-}" ] || model_args+=(-m "$LLM")
[ -z "${MMPROJ:-}" ] || model_args+=(--mmproj "$MMPROJ")
mkdir -p "$out"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo '+dirty')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "threads: $threads"
  echo "split: $split ($(wc -l < "$split/manifest.jsonl") questions)"
  if [ -n "${LLM:-}${MMPROJ:-}" ]; then
    echo "model: $(sha256sum "${LLM:-/dev/null}" "${MMPROJ:-/dev/null}" | tr '\n' ' ')"
  else
    echo "model: default ($(cd "$root/models/synthvqa" && sha256sum synthvqa-*.gguf | tr '\n' ' '))"
  fi
} > "$out/machine.txt"
: > "$out/results.jsonl"
while IFS='|' read -r method target spec; do
  case "$method" in ''|'#'*) continue ;; esac
  args=()
  [ "$spec" = none ] || args=(--reduce "$spec")
  echo "== $method $target: $spec" >&2
  line="$("$eval_bin" --split "$split" --json -t "$threads" "${model_args[@]}" "${args[@]}" \
          --out "$out/pred-$(echo "$method-$target" | tr -c 'A-Za-z0-9.\n-' '_').jsonl" 2>>"$out/eval.log")"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(method=sys.argv[2], target=sys.argv[3], spec=sys.argv[4]); print(json.dumps(d))' \
    "$line" "$method" "$target" "$spec" >> "$out/results.jsonl"
  tail -n 1 "$out/results.jsonl" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("   accuracy %.1f%%, visual tokens %.1f of %.1f" % (100*d["accuracy"], d["visual_tokens_kept"], d["visual_tokens_in"]))' >&2
done < "$specs"
"${PYTHON:-python3}" "$here/plot.py" "$out"
