#!/usr/bin/env bash
# Smoke test: 6 s of videotestsrc, one answer per 2 s window, printed from
# the bus (gst-launch -m). Runs in about a second with the tiny models.
#   pipelines/test-pattern.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
gst_launch_filtered "mustdrop-(answer|stats)|ERROR|WARNING|erroneous|Progress" \
  -m videotestsrc num-buffers=60 \
  ! video/x-raw,width=320,height=240,framerate=10/1 \
  ! mustdropvqa model="$MODEL" mmproj="$MMPROJ" question="$QUESTION" \
      window=2 sample-fps=2 max-new-tokens=16 stats=true \
  ! fakesink
