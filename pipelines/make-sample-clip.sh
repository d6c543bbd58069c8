#!/usr/bin/env bash
# Renders the bundled sample clip pipelines/sample.webm: 6 s, 320x240,
# 10 fps, VP8 in WebM, made only of GStreamer elements from Debian 12's
# gstreamer1.0-plugins-base/-good (videotestsrc, compositor, vp8enc, webmmux).
#
# Picture: a textured background (a static zone-plate ring pattern tinted by
# a colour gradient) with moving coloured shapes on top: a red ball waving
# across the frame, a smaller yellow ball circling in the top-right quarter,
# a green ball sweeping down the left half and a blue bar scrolling sideways.
# Every source counts frames (animation-mode=frames), so the picture does not
# depend on the machine's speed.
#   pipelines/make-sample-clip.sh [OUTPUT.webm]   (default: pipelines/sample.webm)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/sample.webm}"
for e in videotestsrc compositor videoconvert vp8enc webmmux; do
  gst-inspect-1.0 "$e" >/dev/null 2>&1 || {
    echo "make-sample-clip: GStreamer element '$e' not found (Debian 12: gstreamer1.0-plugins-base gstreamer1.0-plugins-good)" >&2
    exit 1
  }
done

n=60                         # frames: 6 s at 10 fps
rgba="video/x-raw,format=BGRA,framerate=10/1"
clear=0x00000000             # transparent background of the shape layers

gst-launch-1.0 -q \
  compositor name=mix background=black \
      sink_0::zorder=0 \
      sink_1::zorder=1 sink_1::alpha=0.45 \
      sink_2::zorder=2 \
      sink_3::zorder=3 \
      sink_4::zorder=4 sink_4::xpos=160 sink_4::ypos=0 \
      sink_5::zorder=5 sink_5::xpos=0 sink_5::ypos=60 \
  ! "$rgba,width=320,height=240" ! videoconvert ! video/x-raw,format=I420 \
  ! vp8enc deadline=0 cpu-used=4 threads=1 target-bitrate=200000 \
      keyframe-max-dist=30 \
  ! webmmux ! filesink location="$out" \
  videotestsrc num-buffers=$n pattern=zone-plate kx2=24 ky2=24 \
  ! "$rgba,width=320,height=240" ! mix.sink_0 \
  videotestsrc num-buffers=$n pattern=gradient foreground-color=0xff2060c0 \
      background-color=0xffe0a040 \
  ! "$rgba,width=320,height=240" ! mix.sink_1 \
  videotestsrc num-buffers=$n pattern=bar foreground-color=0xff2040ff \
      background-color=$clear horizontal-speed=-4 \
  ! "$rgba,width=320,height=240" ! mix.sink_2 \
  videotestsrc num-buffers=$n pattern=ball motion=wavy animation-mode=frames \
      foreground-color=0xffff2020 background-color=$clear \
  ! "$rgba,width=320,height=240" ! mix.sink_3 \
  videotestsrc num-buffers=$n pattern=ball motion=sweep animation-mode=frames \
      foreground-color=0xffffe020 background-color=$clear \
  ! "$rgba,width=160,height=120" ! mix.sink_4 \
  videotestsrc num-buffers=$n pattern=ball motion=hsweep animation-mode=frames \
      foreground-color=0xff20d040 background-color=$clear \
  ! "$rgba,width=160,height=180" ! mix.sink_5
echo "make-sample-clip: wrote $out ($(stat -c %s "$out") bytes)"
