#!/usr/bin/env bash
# mustdrop with --mmproj/--image/--video on the tiny LLaVA fixtures
# (models/fixtures/vision/), with media written by test_media --write:
# frames used and their timestamps, embedding rows, errors a user sees.
# Usage: test_cli_vision.sh MUSTDROP TEST_MEDIA SOURCE_ROOT
set -u
md=$1 media=$2 root=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect() {  # name, expected exit code, stderr pattern, command...
    local name=$1 code=$2 pat=$3; shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    [ "$rc" = "$code" ] || fail "$name: exit $rc, expected $code ($(head -c 400 "$tmp/err"))"
    [ -z "$pat" ] || grep -q -- "$pat" "$tmp/err" || fail "$name: stderr lacks '$pat': $(head -c 400 "$tmp/err")"
}
has() { grep -q -- "$2" "$tmp/err" || fail "$1: stderr lacks '$2'"; }

"$media" --write "$tmp" || { echo "FAIL: cannot write the test media with this FFmpeg (bash .ci/install-deps)"; exit 1; }
fx=$root/models/fixtures/vision
llm=$fx/tiny-llava-llm-f32.gguf proj=$fx/tiny-llava-mmproj-f32.gguf next=$fx/tiny-llava-next-mmproj-f32.gguf
v=(-m "$llm" --mmproj "$proj" -n 6 --temp 0 -t 1)

# frames: --fps F a second from the first frame, at most --frames N of them
# (thinned uniformly: a full window keeps every other frame), the element's rule
expect video-frames 0 'using 4 frame(s), 0.000000 s to 0.400000 s' "$md" "${v[@]}" --video "$tmp/clip.mkv" --fps 8 --frames 4 --question "What happens?"
has video-frames "ffv1 33x27, 12 frames, 0.480 s; 8 fps, at most 4"
has video-frames "64 of them image rows in 4 block(s)"
has video-frames "decode 5 tokens"
# the answer as md_vqa gives it: no whitespace around it
[ -s "$tmp/out" ] && ! grep -q '^[[:space:]]\|[[:space:]]$' "$tmp/out" || fail "video-frames: whitespace around the answer: '$(cat "$tmp/out")'"
cp "$tmp/out" "$tmp/answer1"
expect video-again 0 'using 4 frame(s)' "$md" "${v[@]}" --video "$tmp/clip.mkv" --fps 8 --frames 4 -p "What happens?"
cmp -s "$tmp/out" "$tmp/answer1" || fail "greedy video answer differs between runs"

# the defaults, the element's: 1 frame a second (a 0.48 s clip: its first frame), at most 8
expect video-default 0 'using 1 frame(s), 0.000000 s to 0.000000 s' "$md" "${v[@]}" --video "$tmp/clip.mkv" --question "Q?"
has video-default "1 fps, at most 8"
expect video-fps 0 'using 3 frame(s), 0.000000 s to 0.400000 s' "$md" "${v[@]}" --video "$tmp/clip.mkv" --fps 5 --question "Q?"
expect video-many 0 'using 12 frame(s)' "$md" "${v[@]}" --video "$tmp/clip.mkv" --fps 0 --frames 50 --question "Q?"
has video-many "every frame, at most 50"
# 12 frames (40 ms apart) into a window of 4: the file states 0.44 s, so 4
# points 110 ms apart spread over it: frames 0, 3, 6, 9
expect video-spread 0 'using 4 frame(s), 0.000000 s to 0.360000 s' "$md" "${v[@]}" --video "$tmp/clip.mkv" --fps 0 --frames 4 --question "Q?"
expect video-mpeg4 0 'mpeg4 34x26, 10 frames' "$md" "${v[@]}" --video "$tmp/clip.avi" --fps 2 --frames 2 --question "Q?"
has video-mpeg4 "using 2 frame(s), 0.000000 s to 0.500000 s"

expect image-png 0 "image '$tmp/image.png': 33x27 -> 16 embedding rows" "$md" "${v[@]}" --image "$tmp/image.png" --question "What is it?"
has image-png "16 of them image rows in 1 block(s)"
expect image-two 0 "32 of them image rows in 2 block(s)" "$md" "${v[@]}" --image "$tmp/image.png" --image "$fx/test-image.ppm" --question "Q?"
# "<image>" as an ordinary token (llama.cpp's converter without added_tokens_decoder)
# or absent: models/make_marker_vocab.py's Q8_0 files, same weights, so the
# same greedy answer; a question with marker text in it is text, one block
normal=$fx/tiny-llava-llm-normal-image-q8_0.gguf noimage=$fx/tiny-llava-llm-no-image-q8_0.gguf
for kind in image video; do
    if [ $kind = image ]; then media=(--image "$tmp/image.png"); else media=(--video "$tmp/clip.mkv" --frames 2); fi
    expect normal-token-$kind 0 "image rows in" "$md" -m "$normal" --mmproj "$proj" -n 6 --temp 0 -t 1 "${media[@]}" --question "What is it?"
    [ -s "$tmp/out" ] || fail "normal-token-$kind: no answer"
    cp "$tmp/out" "$tmp/answer-normal"
    expect no-token-$kind 0 "image rows in" "$md" -m "$noimage" --mmproj "$proj" -n 6 --temp 0 -t 1 "${media[@]}" --question "What is it?"
    [ -s "$tmp/out" ] || fail "no-token-$kind: no answer"
    cmp -s "$tmp/out" "$tmp/answer-normal" || fail "$kind: answers differ between the normal-token and no-token vocabularies"
done
expect marker-in-question 0 "16 of them image rows in 1 block(s)" "$md" "${v[@]}" --image "$tmp/image.png" --question "Is this an <image> or a <video>?"
expect marker-in-question-normal 0 "16 of them image rows in 1 block(s)" "$md" -m "$normal" --mmproj "$proj" -n 4 --temp 0 -t 1 --image "$tmp/image.png" --question "<image>"
expect next-mixed 0 "in 4 block(s)" "$md" -m "$llm" --mmproj "$next" -n 4 --temp 0 --image "$tmp/image.png" --image "$fx/test-image.ppm" --video "$tmp/clip.mkv" --fps 8 --frames 2 --question "Q?"
has next-mixed "61x45 -> 44 embedding rows"

# the default model (md_default_model_paths): MUSTDROP_MODEL_DIR holding the pair
mkdir -p "$tmp/defmodel" "$tmp/nomodel"
ln -s "$llm" "$tmp/defmodel/synthvqa-llm-f16.gguf"
ln -s "$proj" "$tmp/defmodel/synthvqa-mmproj-f16.gguf"
expect default-model 0 'using 4 frame(s)' env MUSTDROP_MODEL_DIR="$tmp/defmodel" "$md" -n 6 --temp 0 -t 1 --video "$tmp/clip.mkv" --fps 8 --frames 4 --question "What happens?"
cmp -s "$tmp/out" "$tmp/answer1" || fail "default-model: answer differs from the one with -m/--mmproj"
expect default-model-text 0 'decode' env MUSTDROP_MODEL_DIR="$tmp/defmodel" "$md" -n 4 --temp 0 -t 1 -p "Hello"
env MUSTDROP_MODEL_DIR="$tmp/nomodel" "$md" --video "$tmp/clip.mkv" --question Q >"$tmp/out" 2>"$tmp/err"
if [ $? != 0 ]; then   # (the real default model, once installed or trained, is found after the override)
    has default-missing "searched: \$MUSTDROP_MODEL_DIR=$tmp/nomodel, "
    has default-missing "models/synthvqa"
    has default-missing "synthvqa-mmproj-f16.gguf"
fi
expect mmproj-no-model 2 'needs -m' "$md" --mmproj "$proj" --image "$tmp/image.png" -p Q
"$md" --help | grep -q -- 'MUSTDROP_MODEL_DIR' || fail "help: no default model"

# errors
expect video-missing 1 "cannot open '$tmp/nope.mp4'" "$md" "${v[@]}" --video "$tmp/nope.mp4" --question "Q?"
head -c 3000 /dev/urandom >"$tmp/junk.mp4"
expect video-junk 1 'video:' "$md" "${v[@]}" --video "$tmp/junk.mp4" --question "Q?"
: >"$tmp/empty.mkv"
expect video-empty 1 'video:' "$md" "${v[@]}" --video "$tmp/empty.mkv" --question "Q?"
head -c 100 "$tmp/clip.mkv" >"$tmp/short.mkv"
expect video-truncated 1 'video:' "$md" "${v[@]}" --video "$tmp/short.mkv" --question "Q?"
"${MD_PYTHON:-/usr/bin/python3}" -c "import wave,sys; w=wave.open(sys.argv[1],'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(bytes(1600)); w.close()" "$tmp/sound.wav"
expect video-audio-only 1 "has no video stream" "$md" "${v[@]}" --video "$tmp/sound.wav" --question "Q?"
echo "hello" >"$tmp/text.png"
expect image-text 1 'image:' "$md" "${v[@]}" --image "$tmp/text.png" --question "Q?"
expect image-missing 1 "cannot open '$tmp/none.png'" "$md" "${v[@]}" --image "$tmp/none.png" --question "Q?"
# bad model files: exit 1 and one line "mustdrop: PATH: CAUSE...", the path
# once (--device cpu: device=auto's CUDA attempt reports its own failure)
bad_pair() {  # name, llm, mmproj, the file at fault, expected message start after its path
    expect "$1" 1 "^mustdrop: $4: $5" "$md" -m "$2" --mmproj "$3" --image "$tmp/image.png" -p Q --device cpu
    [ "$(wc -l <"$tmp/err")" = 1 ] || fail "$1: not one line: $(head -c 600 "$tmp/err")"
    [ "$(grep -o -F -- "$4" "$tmp/err" | wc -l)" = 1 ] || fail "$1: the path is not there once: $(cat "$tmp/err")"
}
bad_pair mmproj-missing "$llm" "$tmp/none.gguf" "$tmp/none.gguf" "no such file"
bad_pair mmproj-not-gguf "$llm" "$tmp/text.png" "$tmp/text.png" "not a GGUF file: starts with 'hell'"
head -c 1000 "$proj" >"$tmp/proj-1000.gguf"
bad_pair mmproj-truncated "$llm" "$tmp/proj-1000.gguf" "$tmp/proj-1000.gguf" "truncated: the file has 1000 bytes"
head -c $(($(wc -c <"$proj") / 2)) "$proj" >"$tmp/proj-half.gguf"
bad_pair mmproj-truncated-data "$llm" "$tmp/proj-half.gguf" "$tmp/proj-half.gguf" "truncated: the file has [0-9]* bytes, its tensor data needs $(wc -c <"$proj")"
head -c 1000 "$llm" >"$tmp/llm-1000.gguf"
bad_pair llm-truncated "$tmp/llm-1000.gguf" "$proj" "$tmp/llm-1000.gguf" "truncated: the file has 1000 bytes"
: >"$tmp/empty.gguf"
bad_pair mmproj-empty "$llm" "$tmp/empty.gguf" "$tmp/empty.gguf" "empty file (0 bytes)"
bad_pair llm-empty "$tmp/empty.gguf" "$proj" "$tmp/empty.gguf" "empty file (0 bytes)"
mkdir "$tmp/dir.gguf"
bad_pair mmproj-directory "$llm" "$tmp/dir.gguf" "$tmp/dir.gguf" "is a directory, not a GGUF file"
bad_pair llm-directory "$tmp/dir.gguf" "$proj" "$tmp/dir.gguf" "is a directory, not a GGUF file"
bad_pair mmproj-as-llm "$proj" "$proj" "$proj" "a vision projector (clip), not a language model; pass it as the mmproj"
bad_pair llm-as-mmproj "$llm" "$llm" "$llm" "a language model (llama), not a vision projector; pass it as the model"
# questions that cannot be asked: said before any frame is encoded
expect question-empty 2 '^mustdrop: the question is empty$' "$md" "${v[@]}" --image "$tmp/image.png" --question ""
expect question-blank 2 '^mustdrop: the question is empty$' "$md" "${v[@]}" --image "$tmp/image.png" --question "  "
expect question-not-utf8 2 'the question is not valid UTF-8 (byte 0xff at offset 0)' "$md" "${v[@]}" --image "$tmp/image.png" --question $'\xff\xfe'
long=$(head -c 3000 /dev/zero | tr '\0' a)
expect question-too-long 1 '^mustdrop: the question is [0-9]* tokens and the context holds 256 .*; ask a shorter question or raise the context size$' "$md" "${v[@]}" -c 256 --video "$tmp/clip.mkv" --question "$long"
grep -q 'frame' "$tmp/err" && fail "question-too-long: frames were decoded first"
expect question-too-long-image 1 'the question is [0-9]* tokens and the context holds 256' "$md" "${v[@]}" -c 256 --image "$tmp/image.png" --question "$long"
# a question that leaves room for some of the frames: md_vqa spreads those that
# fit (the chat template's text is counted)
expect prompt-too-long 0 '^mustdrop: 2 of the 4 frame(s) fit the context' \
    "$md" "${v[@]}" -c 256 -s "" --video "$tmp/clip.mkv" --fps 8 --frames 4 --question "$(head -c 185 /dev/zero | tr '\0' a)"
expect image-no-mmproj 2 'need --mmproj' "$md" -m "$llm" --image "$tmp/image.png" -p Q
expect mmproj-no-media 2 'needs --image' "$md" -m "$llm" --mmproj "$proj" -p Q
expect frames-no-video 2 'need --video' "$md" "${v[@]}" --image "$tmp/image.png" --frames 3 -p Q
expect frames-zero 2 'must be 1..4096' "$md" "${v[@]}" --video "$tmp/clip.mkv" --frames 0 -p Q
expect fps-bad 2 'must be >= 0' "$md" "${v[@]}" --video "$tmp/clip.mkv" --fps -1 -p Q
expect text-only-options 2 'applies to text prompts only' "$md" "${v[@]}" --video "$tmp/clip.mkv" --verbose-prompt -p Q
# a chat template and CPU kernels named for a question about a video
expect video-chat-isa 0 'kernels scalar' "$md" "${v[@]}" --video "$tmp/clip.mkv" --chat chatml --isa scalar -p Q
expect no-tokens 2 '\-n 0' "$md" "${v[@]}" --video "$tmp/clip.mkv" -n 0 -p Q

"$md" --help | grep -q -- '--video FILE' || fail "help: no --video"

# constrained answers (docs/structured.md): the answer is one of the
# choices; a JSON answer parses and has the schema's shape; bad ones are
# usage errors (2) that name the cause
expect choices 0 'choice [1-4] of 4' "$md" "${v[@]}" --video "$tmp/clip.mkv" --question "Q?" --choices 'red | green square|top left|7'
grep -qx 'red\|green square\|top left\|7' "$tmp/out" || fail "choices: answered '$(cat "$tmp/out")'"
schema='{"type":"object","properties":{"ok":{"type":"boolean"},"n":{"type":"integer","minimum":0,"maximum":9}}}'
printf '%s' "$schema" >"$tmp/schema.json"
expect json-schema 0 '' "$md" "${v[@]}" -n 32 --video "$tmp/clip.mkv" --question "Q?" --json-schema "$tmp/schema.json"
grep -qx '{"ok":\(true\|false\),"n":[0-9]}' "$tmp/out" || fail "json-schema: answered '$(cat "$tmp/out")'"
expect choices-no-media 2 '--choices and --json-schema need --image/--video' "$md" -m "$llm" -p "Q?" --choices 'a|b'
expect choices-and-schema 2 'not both' "$md" "${v[@]}" --video "$tmp/clip.mkv" --question "Q?" --choices 'a|b' --json-schema "$schema"
expect choices-empty 2 "an empty choice in 'a| |b'" "$md" "${v[@]}" --video "$tmp/clip.mkv" --question "Q?" --choices 'a| |b'
expect schema-bad 2 '/properties/x: keyword "pattern" is not supported' "$md" "${v[@]}" --video "$tmp/clip.mkv" --question "Q?" --json-schema '{"type":"object","properties":{"x":{"type":"string","pattern":"a"}}}'
expect schema-missing 2 "--json-schema: $tmp/nope.json: No such file" "$md" "${v[@]}" --video "$tmp/clip.mkv" --question "Q?" --json-schema "$tmp/nope.json"
expect schema-json 2 'the schema is not valid JSON: at byte' "$md" "${v[@]}" --video "$tmp/clip.mkv" --question "Q?" --json-schema '{"type":'
"$md" --help | grep -q -- '--json-schema S' || fail "help: no --json-schema"

if [ $fails -gt 0 ]; then echo "FAIL: cli vision: $fails problem(s)"; exit 1; fi
echo "PASS: cli vision"
