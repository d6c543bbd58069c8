#!/usr/bin/env bash
# Answers of a whole file as JSON lines (one object per window), as fast as
# the model allows (no clock sync; EOS waits for the last answer).
#   pipelines/file-jsonl.sh INPUT [ANSWERS.jsonl]
# Fields: stream (the element's name), host, run, seq, time (wall clock),
# window, start, end (stream seconds), start/end_running_time, question,
# answer, frames, reduce, visual_tokens(_kept/_final), prompt_tokens,
# generated_tokens, encode_ms, prefill_ms, decode_ms.
set -euo pipefail
source "$(dirname "$0")/common.sh"
in="${1:?usage: $0 INPUT [ANSWERS.jsonl]}"
out="${2:-answers.jsonl}"
gst-launch-1.0 filesrc location="$in" ! decodebin ! videoconvert \
  ! mustdropvqa model="$MODEL" mmproj="$MMPROJ" question="$QUESTION" \
      window="${WINDOW:-10}" sample-fps="${SAMPLE_FPS:-1}" max-frames=8 \
      max-pending=64 reduce="${REDUCE:-none}" jsonl-location="$out" \
  ! fakesink sync=false
echo "answers in $out"
