#!/usr/bin/env bash
# Live camera: the video is shown in real time, answers arrive as bus
# messages and on screen. A leaky queue in front keeps the display real-time
# if anything downstream stalls; mustdropvqa itself never holds video back
# (windows that wait longer than max-pending allows are dropped and counted).
#   DEVICE=/dev/video0 pipelines/camera-live.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
gst-launch-1.0 -m v4l2src device="${DEVICE:-/dev/video0}" ! videoconvert \
  ! queue leaky=downstream max-size-buffers=2 max-size-time=0 max-size-bytes=0 \
  ! mustdropvqa name=vqa model="$MODEL" mmproj="$MMPROJ" question="$QUESTION" \
      window="${WINDOW:-3}" sample-fps=2 max-frames=6 max-pending=1 \
      max-new-tokens=32 stats=true \
  ! textoverlay name=overlay wait-text=false ! videoconvert ! autovideosink sync=false \
  vqa.text_src ! queue ! overlay.text_sink 2>&1 | grep --line-buffered -E "mustdrop-|ERROR"
