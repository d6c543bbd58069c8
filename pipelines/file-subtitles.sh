#!/usr/bin/env bash
# Answers burned into the video as subtitles with textoverlay.
#   pipelines/file-subtitles.sh INPUT [OUTPUT.webm]
# Without OUTPUT the result is shown in a window (autovideosink). The answers
# are also printed (the mustdrop-answer bus messages).
# The text pad goes through a queue: textoverlay blocks its text input until
# the video catches up, and mustdropvqa pushes text from the video thread.
# text-timing=answer shows each answer from the frame it is ready at, for
# one window step.
set -euo pipefail
source "$(dirname "$0")/common.sh"
in="${1:?usage: $0 INPUT [OUTPUT.webm]}"
out="${2:-}"
if [ -n "$out" ]; then
  sink=(videoconvert ! vp8enc deadline=1 ! webmmux ! filesink location="$out")
else
  sink=(videoconvert ! autovideosink)
fi
gst_launch_filtered "mustdrop-answer|ERROR|WARNING|erroneous" \
  -m -e filesrc location="$in" ! decodebin ! videoconvert \
  ! mustdropvqa name=vqa model="$MODEL" mmproj="$MMPROJ" \
      question="$QUESTION" window="${WINDOW:-5}" sample-fps=1 max-new-tokens=48 \
  ! textoverlay name=overlay wait-text=false valignment=bottom wrap-mode=word \
      font-desc="Sans 18" \
  ! "${sink[@]}" \
  vqa.text_src ! queue ! overlay.text_sink
[ -z "$out" ] || echo "subtitled video in $out"
