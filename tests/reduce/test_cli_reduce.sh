#!/usr/bin/env bash
# mustdrop --reduce / --stats json on the tiny LLaVA fixtures: the stats
# line, a keep-everything spec answering like no reduction, errors a user
# sees for bad specs. Usage: test_cli_reduce.sh MUSTDROP SOURCE_ROOT
set -u
md=$1 root=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
fx=$root/models/fixtures/vision
[ -f "$fx/test-image.ppm" ] || { echo "SKIP: fixtures absent"; exit 77; }
"$md" --help 2>&1 | grep -q "built without FFmpeg" && { echo "SKIP: mustdrop built without FFmpeg"; exit 77; }
v=(-m "$fx/tiny-llava-llm-f32.gguf" --mmproj "$fx/tiny-llava-mmproj-f32.gguf" --image "$fx/test-image.ppm"
   -n 6 --temp 0 -t 1 --question "What is in the garden?")

"$md" "${v[@]}" >"$tmp/plain" 2>"$tmp/plain.err" || fail "plain run: $(tail -3 "$tmp/plain.err")"
"$md" "${v[@]}" --reduce "mustdrop:tau_g=0,tau_i=0,merge=2" --stats json >"$tmp/keep" 2>"$tmp/keep.err" \
    || fail "keep-all run: $(tail -3 "$tmp/keep.err")"
cmp -s "$tmp/plain" "$tmp/keep" || fail "keep-everything answer differs: '$(cat "$tmp/plain")' vs '$(cat "$tmp/keep")'"
grep -q '^{"spec":"mustdrop:tau_g=0,tau_i=0,merge=2".*"layer_avg":16.000' "$tmp/keep.err" \
    || fail "no stats JSON line: $(tail -2 "$tmp/keep.err")"
grep -q "visual tokens 16 -> 16 (vision) -> 16 (select) -> 16 (final)" "$tmp/keep.err" || fail "summary line"

"$md" "${v[@]}" --reduce "hired:budget=0.5+fastv:k=2,r=0.5" --stats json >"$tmp/out" 2>"$tmp/err" \
    || fail "hired+fastv: $(tail -3 "$tmp/err")"
grep -q '"after_select":8,"final":4' "$tmp/err" || fail "hired+fastv counts: $(tail -1 "$tmp/err")"

"$md" "${v[@]}" --reduce "fastv:q=1" >"$tmp/out" 2>"$tmp/err"
[ $? = 2 ] || fail "bad key: exit code"
grep -q "unknown key 'q'" "$tmp/err" || fail "bad key message: $(cat "$tmp/err")"
"$md" "${v[@]}" --stats yaml >"$tmp/out" 2>"$tmp/err"
[ $? = 2 ] && grep -q "only 'json'" "$tmp/err" || fail "--stats yaml"
"$md" -m "$fx/tiny-llava-llm-f32.gguf" -p hi --reduce none >"$tmp/out" 2>"$tmp/err"
[ $? = 2 ] && grep -q "need --mmproj" "$tmp/err" || fail "--reduce without --mmproj"

[ $fails = 0 ] && echo "PASS: cli_reduce" || { echo "FAIL: cli_reduce: $fails"; exit 1; }
