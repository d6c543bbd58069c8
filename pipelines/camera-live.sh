#!/usr/bin/env bash
# Live camera: the video is shown in real time, answers arrive as bus
# messages (printed) and on screen. A leaky queue in front keeps the display
# real-time if anything downstream stalls; mustdropvqa itself never holds
# video back (windows that wait longer than max-pending allows are dropped
# and counted).
#   pipelines/camera-live.sh                      # v4l2src device=/dev/video0
#   DEVICE=/dev/video2 pipelines/camera-live.sh
#   SOURCE="videotestsrc is-live=true pattern=ball" pipelines/camera-live.sh
# SOURCE replaces the source element (default: v4l2src device=$DEVICE); it is
# split on spaces into gst-launch arguments, so it may hold properties and
# even a short chain ("videotestsrc is-live=true num-buffers=60 ! video/x-raw,
# width=640,height=480"), but no quoted values with spaces. Everything after
# it (videoconvert, leaky queue, mustdropvqa, textoverlay) stays as for a
# camera. SINK replaces the display (default: autovideosink sync=false), e.g.
# SINK=fakesink on a machine without a display.
set -euo pipefail
source "$(dirname "$0")/common.sh"
read -r -a src <<<"${SOURCE:-v4l2src device=${DEVICE:-/dev/video0}}"
read -r -a sink <<<"${SINK:-autovideosink sync=false}"
if [ "${#src[@]}" = 0 ] || [ "${#sink[@]}" = 0 ]; then
  echo "camera-live: SOURCE and SINK must not be empty" >&2
  exit 1
fi
# a missing element is an install problem, not the camera's or the display's
for e in "${src[0]}" "${sink[0]}" videoconvert queue textoverlay; do
  if ! gst-inspect-1.0 --exists "$e"; then
    echo "camera-live: GStreamer element $e not found (textoverlay: Debian 12 gstreamer1.0-x; v4l2src, autovideosink: gstreamer1.0-plugins-good; or bash .ci/install-deps)" >&2
    exit 1
  fi
done
gst_launch_filtered "mustdrop-|ERROR|WARNING|erroneous" \
  -m "${src[@]}" ! videoconvert \
  ! queue leaky=downstream max-size-buffers=2 max-size-time=0 max-size-bytes=0 \
  ! mustdropvqa name=vqa model="$MODEL" mmproj="$MMPROJ" question="$QUESTION" \
      window="${WINDOW:-3}" sample-fps=2 max-frames=6 max-pending=1 \
      max-new-tokens=32 stats=true \
  ! textoverlay name=overlay wait-text=false ! videoconvert ! "${sink[@]}" \
  vqa.text_src ! queue ! overlay.text_sink || {
  hint=""
  [ -n "${SOURCE:-}" ] || hint=" If the ERROR above is about the camera, set SOURCE= (e.g. SOURCE=\"videotestsrc is-live=true pattern=ball\")."
  [ -n "${SINK:-}" ] || hint="$hint If it is about the display, set SINK=fakesink."
  echo "camera-live: the pipeline failed (the ERROR above says why).$hint" >&2
  exit 1
}
