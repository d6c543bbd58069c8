#!/usr/bin/env bash
# docs/examples/ask.c built in the tree against mustdrop_dep (the public
# headers alone), in every build: under ASan this is the sanitizer's run of
# the example; test_install.sh builds it against the installed files.
# Usage: test_example.sh ASK SOURCE_ROOT
set -u
ask=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
clip() { ffmpeg -v error -i "$src/pipelines/shapes.webm" -f rawvideo -pix_fmt rgb24 -; }

clip | "$ask" 128 128 8 "Which shape enters last?" >"$tmp/out" 2>"$tmp/err"
rc=${PIPESTATUS[1]}
cat "$tmp/err"
[ "$rc" = 0 ] || fail "ask exited $rc"
[ "$(cat "$tmp/out")" = star ] || fail "answered '$(cat "$tmp/out")', expected 'star'"
clip | "$ask" 128 128 8 "What colour is the small triangle?" >"$tmp/out" 2>"$tmp/err"
[ "$(cat "$tmp/out")" = green ] || fail "answered '$(cat "$tmp/out")', expected 'green'"

# what a user gets wrong: the usage, a bad size, no frames, a missing file
"$ask" 128 128 >/dev/null 2>"$tmp/err"
[ $? = 2 ] && grep -q '^usage:' "$tmp/err" || fail "no usage for missing arguments"
"$ask" 0 128 8 "q" </dev/null >/dev/null 2>"$tmp/err"
[ $? = 2 ] || fail "a zero width was accepted"
"$ask" 128 128 8 "Which shape enters last?" </dev/null >/dev/null 2>"$tmp/err"
[ $? = 1 ] && grep -q 'no frames to answer about' "$tmp/err" || fail "no frames: $(cat "$tmp/err")"
"$ask" 128 128 8 "q" "$tmp/none.gguf" "$tmp/none2.gguf" </dev/null >/dev/null 2>"$tmp/err"
[ $? = 1 ] && grep -q 'none.gguf: no such file' "$tmp/err" || fail "missing model: $(cat "$tmp/err")"

if [ "$fails" -gt 0 ]; then
    echo "$fails failure(s)"
    exit 1
fi
echo "example: all checks passed"
