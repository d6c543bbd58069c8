#!/usr/bin/env bash
# A fleet on one machine (docs/fleet.md): MACHINES gst-launch-1.0 processes
# stand in for machines, each with two live cameras (videotestsrc patterns,
# 320x240, 10 fps) and a mustdropvqa per camera publishing its answers to
# one MQTT broker under fleet/<machine>/<camera>; pipelines/fleet-subscribe.py
# prints them as one merged, time-ordered stream of events.
#   pipelines/fleet.sh                          # 3 machines x 2 cameras, 20 s
#   MACHINES=2 DURATION=10 pipelines/fleet.sh
#   BROKER=mqtt://10.0.0.5:1883 pipelines/fleet.sh   # a broker of your own
# Without BROKER, a mosquitto is started on 127.0.0.1:FLEET_PORT (1883) when
# nothing listens there (and stopped at the end). WINDOW (4) and SAMPLE_FPS
# (2) set the windows; MODEL, MMPROJ, QUESTION as in common.sh.
set -euo pipefail
source "$(dirname "$0")/common.sh"
machines="${MACHINES:-3}"
duration="${DURATION:-20}"
port="${FLEET_PORT:-1883}"
broker="${BROKER:-mqtt://127.0.0.1:$port}"
tmp="$(mktemp -d)"
helpers=()
cleanup() {
  for p in "${helpers[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -z "${BROKER:-}" ] && ! listening "$port"; then
  mosquitto="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
  [ -x "$mosquitto" ] || { echo "mosquitto not found (Debian 12: apt-get install mosquitto)" >&2; exit 1; }
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" >"$tmp/mosquitto.conf"
  "$mosquitto" -c "$tmp/mosquitto.conf" >"$tmp/broker.log" 2>&1 &
  helpers+=($!)
  for _ in $(seq 50); do listening "$port" && break; sleep 0.1; done
  listening "$port" || { cat "$tmp/broker.log"; echo "mosquitto did not start" >&2; exit 1; }
  echo "fleet: started mosquitto on 127.0.0.1:$port"
fi

hostport="${broker#mqtt://}"
hostport="${hostport#*@}"
"$MD_PYTHON" "$here/fleet-subscribe.py" --broker "$hostport" --topic 'fleet/#' \
  --idle 6 &
subscriber=$!
helpers+=("$subscriber")

patterns=(ball smpte pinwheel snow gradient circular)
frames=$((duration * 10))
machine_pids=()
for m in $(seq "$machines"); do
  cameras=()
  for c in 1 2; do
    pattern="${patterns[$(( (2 * (m - 1) + c - 1) % ${#patterns[@]} ))]}"
    cameras+=(videotestsrc is-live=true num-buffers="$frames" pattern="$pattern"
      ! video/x-raw,width=320,height=240,framerate=10/1
      ! mustdropvqa name="cam$c" model="$MODEL" mmproj="$MMPROJ"
          question="$QUESTION" window="${WINDOW:-4}" sample-fps="${SAMPLE_FPS:-2}"
          mqtt-uri="$broker" mqtt-topic="fleet/m$m/{stream}"
      ! fakesink)
  done
  gst-launch-1.0 -q "${cameras[@]}" >"$tmp/m$m.log" 2>&1 &
  machine_pids+=($!)
done
echo "fleet: $machines machines x 2 cameras for $duration s, publishing to $broker"

status=0
for i in "${!machine_pids[@]}"; do
  if ! wait "${machine_pids[$i]}"; then
    echo "fleet: machine m$((i + 1)) failed:" >&2
    tail -n 5 "$tmp/m$((i + 1)).log" >&2
    status=1
  fi
done
# the subscriber ends 6 s after the last answer
wait "$subscriber" || status=1
exit $status
