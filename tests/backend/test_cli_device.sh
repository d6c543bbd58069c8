#!/usr/bin/env bash
# mustdrop's --device choice (core/cli/device.c) without a GPU: auto runs on
# the CPU quietly when CUDA is not usable; an explicit cuda:N fails before
# loading with md_backend_check's reason; a broken file is blamed on the file,
# not on CUDA; a load failing on the device (the stand-in module,
# fake-module.c) falls back to the CPU under auto with one notice, and is the
# error under an explicit device.
# Usage: test_cli_device.sh MUSTDROP SOURCE_ROOT (environment: tests/backend/meson.build)
set -u
md=$1 root=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
run() {  # name, expected exit code, stderr pattern, command...
    local name=$1 code=$2 pat=$3; shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    [ "$rc" = "$code" ] || fail "$name: exit $rc, expected $code ($(head -c 300 "$tmp/err"))"
    [ -z "$pat" ] || grep -q -- "$pat" "$tmp/err" || fail "$name: stderr lacks '$pat': $(head -c 300 "$tmp/err")"
}
lacks() {  # name, pattern: stderr of the last run must not have it
    ! grep -qi -- "$2" "$tmp/err" || fail "$1: stderr has '$2': $(head -c 300 "$tmp/err")"
}
model=$root/models/fixtures/tiny-llama-f32.gguf
head -c 1000 "$model" >"$tmp/trunc.gguf"
gen=(-p "Once upon a time" -n 4 --temp 0 -t 1)

# The module as built (none at all without CUDA): on a machine with a GPU the
# no-device cases do not apply.
export MUSTDROP_BACKEND_DIR=$MD_TEST_CUDA_MODULE_DIR
"$md" -m "$model" "${gen[@]}" --device cuda:0 >"$tmp/out" 2>"$tmp/err"
if grep -q "no CUDA device\|has no CUDA backend" "$tmp/err"; then
    run explicit-no-device 1 "--device cuda:0: \(no CUDA device: \|this build has no CUDA backend\)" \
        "$md" -m "$model" "${gen[@]}" --device cuda:0
    run auto-no-device 0 "| cpu, 1 threads" "$md" -m "$model" "${gen[@]}"
    lacks auto-no-device "cuda"
else
    echo "note: a CUDA device is usable here, no-device cases not run"
fi
run auto-broken-file 1 "truncated: the file has 1000 bytes" "$md" -m "$tmp/trunc.gguf" "${gen[@]}"
lacks auto-broken-file "cuda"
if [ "$MD_TEST_CUDA_BUILT" != 1 ]; then   # no module to look for
    [ "$fails" = 0 ] || exit 1
    echo "PASS: cli device choice (a build without CUDA)"
    exit 0
fi
mkdir "$tmp/empty"
MUSTDROP_BACKEND_DIR=$tmp/empty run explicit-no-module 1 \
    "--device cuda:0: .*not found (looked in $tmp/empty" "$md" -m "$model" "${gen[@]}" --device cuda

# The stand-in module: two devices whose loads fail as FAKE_CUDA_NEW says.
export MUSTDROP_BACKEND_DIR=$MD_TEST_FAKE_DIR
run explicit-bad-index 1 "--device cuda:5: CUDA device 5 does not exist (2 found)" \
    "$md" -m "$model" "${gen[@]}" --device cuda:5
for mode in nomem backend unsupported; do
    FAKE_CUDA_NEW=$mode run auto-fallback-$mode 0 "| cpu, 1 threads" "$md" -m "$model" "${gen[@]}"
    [ "$(grep -c 'device auto: cannot load on cuda:0 (.*fake backend_new' "$tmp/err")" = 1 ] ||
        fail "auto-fallback-$mode: not one notice: $(head -c 300 "$tmp/err")"
done
# An instance is made, then uploading weights fails on the device.
run auto-fallback-upload 0 "device auto: cannot load on cuda:0" "$md" -m "$model" "${gen[@]}"
grep -q "| cpu, 1 threads" "$tmp/err" || fail "auto-fallback-upload: not on the cpu"
cmp -s <(head -1 "$tmp/out") <("$md" -m "$model" "${gen[@]}" --device cpu 2>/dev/null | head -1) ||
    fail "auto-fallback-upload: the text differs from --device cpu's"
FAKE_CUDA_NEW=nomem run explicit-device-failure 1 "fake backend_new: nomem" \
    "$md" -m "$model" "${gen[@]}" --device cuda:1
lacks explicit-device-failure "using the cpu"
run auto-broken-file-with-device 1 "truncated: the file has 1000 bytes" \
    "$md" -m "$tmp/trunc.gguf" "${gen[@]}"
lacks auto-broken-file-with-device "cuda"

[ "$fails" = 0 ] || exit 1
echo "PASS: cli device choice"
