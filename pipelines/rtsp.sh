#!/usr/bin/env bash
# RTSP camera / server: answers as JSON lines and bus messages.
#   pipelines/rtsp.sh rtsp://host:8554/stream [ANSWERS.jsonl]
set -euo pipefail
source "$(dirname "$0")/common.sh"
url="${1:?usage: $0 rtsp://host/path [ANSWERS.jsonl]}"
out="${2:-rtsp-answers.jsonl}"
gst-launch-1.0 -m rtspsrc location="$url" latency=200 ! decodebin ! videoconvert \
  ! queue leaky=downstream max-size-buffers=4 \
  ! mustdropvqa model="$MODEL" mmproj="$MMPROJ" question="$QUESTION" \
      window="${WINDOW:-5}" sample-fps=1 max-pending=1 jsonl-location="$out" \
  ! fakesink sync=false 2>&1 | grep --line-buffered -E "mustdrop-answer|ERROR"
