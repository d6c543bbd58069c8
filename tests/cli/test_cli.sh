#!/usr/bin/env bash
# The mustdrop and mustdrop-bench programs: output, exit codes and error
# messages a user sees. Usage: test_cli.sh MUSTDROP MUSTDROP_BENCH SOURCE_ROOT
set -u
md=$1 bench=$2 root=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect() {  # name, expected exit code, stderr pattern, command...
    local name=$1 code=$2 pat=$3; shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    [ "$rc" = "$code" ] || fail "$name: exit $rc, expected $code ($(head -c 300 "$tmp/err"))"
    [ -z "$pat" ] || grep -q -- "$pat" "$tmp/err" || fail "$name: stderr lacks '$pat': $(head -c 300 "$tmp/err")"
}
model=$root/models/fixtures/tiny-llama-f32.gguf

expect generate 0 'decode 15 tokens' "$md" -m "$model" -p "Once upon a time" -n 16 --temp 0
grep -q '^Once upon a time' "$tmp/out" || fail "generate: stdout does not start with the prompt"
[ "$(wc -c <"$tmp/out")" -gt 20 ] || fail "generate: no generated text"
grep -q 'prefill .* tok/s' "$tmp/err" || fail "generate: no prefill speed"
cp "$tmp/out" "$tmp/greedy1"
expect greedy-again 0 'decode' "$md" -m "$model" -p "Once upon a time" -n 16 --temp 0 -t 1
cmp -s "$tmp/out" "$tmp/greedy1" || fail "greedy output differs between 1 and 2 threads"
expect seeded 0 'decode' "$md" -m "$model" -p "Once" -n 16 --temp 1.0 --seed 7
cp "$tmp/out" "$tmp/seed7"
expect seeded-again 0 'decode' "$md" -m "$model" -p "Once" -n 16 --temp 1.0 --seed 7
cmp -s "$tmp/out" "$tmp/seed7" || fail "the same seed gave different text"
expect chat 0 'decode' "$md" -m "$root/models/fixtures/tiny-qwen2-f16.gguf" --chat -p "hi" -n 8 --temp 0
# a bad model file: exit 1 and one line "mustdrop: PATH: CAUSE...", the path
# once (--device cpu: device=auto's CUDA attempt reports its own failure)
bad_model() {  # name, file, expected message start after the path
    expect "$1" 1 "^mustdrop: $2: $3" "$md" -m "$2" -p hi --device cpu
    [ "$(wc -l <"$tmp/err")" = 1 ] || fail "$1: not one line: $(head -c 400 "$tmp/err")"
    [ "$(grep -o -F -- "$2" "$tmp/err" | wc -l)" = 1 ] || fail "$1: the path is not there once: $(cat "$tmp/err")"
}
bad_model missing-file "$tmp/nope.gguf" "no such file"
echo "not a model" >"$tmp/text.gguf"
bad_model not-gguf "$tmp/text.gguf" "not a GGUF file: starts with 'not '"
head -c 1000 "$model" >"$tmp/trunc.gguf"
bad_model truncated "$tmp/trunc.gguf" "truncated: the file has 1000 bytes, its header"
head -c $(($(wc -c <"$model") / 2)) "$model" >"$tmp/half.gguf"
bad_model truncated-data "$tmp/half.gguf" "truncated: the file has [0-9]* bytes, its tensor data needs $(wc -c <"$model")"
: >"$tmp/empty.gguf"
bad_model empty "$tmp/empty.gguf" "empty file (0 bytes)"
mkdir "$tmp/dir.gguf"
bad_model directory "$tmp/dir.gguf" "is a directory, not a GGUF file"
mkfifo "$tmp/fifo.gguf"
bad_model fifo "$tmp/fifo.gguf" "not a regular file (a FIFO)"
expect prompt-not-utf8 2 'the prompt is not valid UTF-8 (byte 0xff at offset 2)' "$md" -m "$model" -p $'hi\xff'
expect prompt-too-long 1 'the prompt is [0-9]* tokens and the context holds 64' "$md" -m "$model" -p "$(head -c 3000 /dev/zero | tr '\0' a)" -c 64
grep -q aaaa "$tmp/out" && fail "prompt-too-long: the prompt was echoed"
vocab=$root/../shared/fixtures/tokenizer/llama.cpp-vocab/ggml-vocab-gpt-2.gguf
if [ -f "$vocab" ]; then
    expect unsupported-arch 1 "unsupported architecture 'gpt2'" "$md" -m "$vocab" -p hi
else
    echo "note: shared/ absent, unsupported-architecture case not run"
fi
expect no-prompt 2 'no prompt given' "$md" -m "$model"
expect bad-option 2 "unknown option '--bogus'" "$md" -m "$model" -p hi --bogus
expect bad-number 2 "is not a valid integer" "$md" -m "$model" -p hi -n lots
expect bad-template 1 "unknown chat template" "$md" -m "$model" -p hi --chat nosuch
expect device-cpu 0 '| cpu, 1 threads' "$md" -m "$model" -p "Once upon a time" -n 16 --temp 0 -t 1 --device cpu
cmp -s "$tmp/out" "$tmp/greedy1" || fail "device-cpu: output differs from the default device's"
expect bad-device 2 "invalid --device 'cuda:x'" "$md" -m "$model" -p hi --device cuda:x
expect bad-device2 2 "invalid --device 'gpu'" "$md" -m "$model" -p hi --device gpu

expect bench 0 '' "$bench" --synthetic llama-tiny --type q8_0 -p 16 -n 4 -r 2 -t 1 --json "$tmp/b.json" --write "$tmp/s.gguf"
grep -q '| tg4 |' "$tmp/out" || fail "bench: no tg4 row"
"${MD_PYTHON:-/usr/bin/python3}" -c "import json,sys; d=json.load(open(sys.argv[1])); assert [r['test'] for r in d['results']]==['pp16','tg4'] and all(r['avg_ts']>0 for r in d['results'])" "$tmp/b.json" \
    || fail "bench: bad JSON"
expect bench-file 0 '' "$bench" -m "$tmp/s.gguf" -p 8 -n 2 -r 1 -t 1
grep -q '^device: cpu$' "$tmp/out" || fail "bench-file: no 'device: cpu' line"
expect bench-depth 0 '' "$bench" -m "$tmp/s.gguf" -p 8 -n 2 -d 6 -r 1 -t 1
grep -q '| tg2@d6 |' "$tmp/out" || fail "bench-depth: no tg2@d6 row: $(cat "$tmp/out")"
expect bench-bad-device 2 "bad value 'tpu' for --device" "$bench" -m "$tmp/s.gguf" --device tpu
expect bench-bad-shape 1 'bad --synthetic' "$bench" --synthetic n_embd=abc
expect bench-no-model 2 'exactly one of' "$bench" -p 8
expect bench-vision 0 '' "$bench" --synthetic-vision clip-tiny --type f32 --batch 1,3 -r 2 -t 1
grep -q '| clip-tiny | 1 | 56x56 | 3 | 16 |' "$tmp/out" || fail "bench-vision: no batch-3 row: $(cat "$tmp/out")"
expect bench-vision-file 0 '' "$bench" --vision "$root/models/fixtures/vision/tiny-llava-mmproj-f32.gguf" --image-size 33 -r 1 -t 1
grep -q '| 33x33 | 1 | 16 |' "$tmp/out" || fail "bench-vision-file: no row: $(cat "$tmp/out")"
expect bench-vision-bad 1 'bad --synthetic-vision' "$bench" --synthetic-vision nosuch
expect bench-vision-two 2 'exactly one of' "$bench" --synthetic-vision clip-tiny -m "$model"

if [ $fails -gt 0 ]; then echo "FAIL: cli: $fails problem(s)"; exit 1; fi
echo "PASS: cli"
