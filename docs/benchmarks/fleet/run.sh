#!/usr/bin/env bash
# How many live streams one process answers in real time (docs/fleet.md):
# for each N in STREAMS, one gst-launch-1.0 with N live cameras
# (videotestsrc is-live=true, 320x240, 30 fps) and a mustdropvqa per camera
# (window=4, sample-fps=2, the bundled model, default max-pending=2) runs for
# DURATION seconds. The streams keep up when every window closed is answered
# (dropped 0: a worker that falls behind drops waiting windows) and the
# slowest answer took less than a window (so the queue does not grow).
#   docs/benchmarks/fleet/run.sh [OUT.txt]     STREAMS="1 2 4 6 8" DURATION=24
# Prints one line per N and each stream's last mustdrop-stats (also appended
# to OUT).
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
source "$root/pipelines/common.sh"
out="${1:-/dev/null}"
duration="${DURATION:-24}"
window=4
{
  echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
  echo "# model $MODEL; window=$window sample-fps=2, 320x240 30 fps live, $duration s"
} | tee -a "$out"
for n in ${STREAMS:-1 2 4 6 8}; do
  args=()
  for i in $(seq "$n"); do
    args+=(videotestsrc is-live=true num-buffers=$((duration * 30)) pattern=ball
      ! video/x-raw,width=320,height=240,framerate=30/1
      ! mustdropvqa name="s$i" model="$MODEL" mmproj="$MMPROJ" question="$QUESTION"
          window=$window sample-fps=2 stats=true
      ! fakesink sync=true)
  done
  load="$(cut -d' ' -f1-3 /proc/loadavg)"
  t0=$(date +%s.%N)
  log="$(mktemp)"
  gst-launch-1.0 -m "${args[@]}" >"$log" 2>&1 || { tail -n 20 "$log"; exit 1; }
  t1=$(date +%s.%N)
  "$MD_PYTHON" - "$log" "$n" "$t0" "$t1" "$duration" "$window" "$load" <<'PY' | tee -a "$out"
import re, sys
log, n, t0, t1, duration, window, load = sys.argv[1:]
n, wall = int(n), float(t1) - float(t0)
last = {}
for line in open(log, errors="replace"):
    m = re.search(r'from element "(s\d+)".*mustdrop-stats, (.*)', line)
    if m:
        last[m.group(1)] = {k: int(v) for k, v in re.findall(r"([\w-]+)=\(g?u?int(?:64)?\)(\d+)", m.group(2))}
windows = sum(s["windows"] for s in last.values())
answered = sum(s["answered"] for s in last.values())
dropped = sum(s["dropped"] for s in last.values())
worst = max((s["max-inference-time"] for s in last.values()), default=0) / 1e6
# wall time includes the model loads (one per stream) before the video starts
keeps_up = (len(last) == n and dropped == 0 and answered == windows
            and worst < float(window) * 1000)
print("streams=%d windows=%d answered=%d dropped=%d max_inference_ms=%.0f wall_s=%.1f "
      "load_before=%s real_time=%s" % (n, windows, answered, dropped, worst, wall, load,
                                      "yes" if keeps_up else "no"))
for name in sorted(last, key=lambda s: int(s[1:])):
    print("  %s %s" % (name, last[name]))
PY
  rm -f "$log"
done
