#!/usr/bin/env bash
# RTSP camera / server: answers as JSON lines and bus messages (printed).
#   pipelines/rtsp.sh rtsp://host:8554/stream [ANSWERS.jsonl]
# The JSON lines are appended to ANSWERS.jsonl (default rtsp-answers.jsonl).
# Without a camera, try it against the local test server:
#   /usr/bin/python3 pipelines/rtsp-test-server.py --port 8554 &
#   pipelines/rtsp.sh rtsp://127.0.0.1:8554/test
# The stream ends when the server ends it (EOS) or on Ctrl-C.
set -euo pipefail
source "$(dirname "$0")/common.sh"
url="${1:?usage: $0 rtsp://host/path [ANSWERS.jsonl]}"
out="${2:-rtsp-answers.jsonl}"
gst_launch_filtered "mustdrop-answer|ERROR|WARNING|erroneous" \
  -m rtspsrc location="$url" latency=200 ! decodebin ! videoconvert \
  ! queue leaky=downstream max-size-buffers=4 \
  ! mustdropvqa model="$MODEL" mmproj="$MMPROJ" question="$QUESTION" \
      window="${WINDOW:-5}" sample-fps=1 max-pending=1 jsonl-location="$out" \
  ! fakesink sync=false
echo "answers in $out"
