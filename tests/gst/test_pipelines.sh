#!/usr/bin/env bash
# Runs the example pipelines of pipelines/ end to end with the tiny test
# models and checks that each one produced answers:
#   ask-sample.sh      the README's main command: each question's answers
#                      with and without reduction
#   test-pattern.sh    mustdrop-answer bus messages
#   file-jsonl.sh      one JSON line per window of pipelines/sample.webm
#   file-subtitles.sh  bus messages + a subtitled WebM that decodes
#   camera-live.sh     SOURCE="videotestsrc is-live=true pattern=ball ..."
#                      (stand-in for v4l2src), SINK=fakesink
#   rtsp.sh            against pipelines/rtsp-test-server.py on 127.0.0.1
#                      (a free port; the server is killed at the end)
# Every step is bounded (num-buffers + timeout). Exit 0 = pass, anything else
# = fail: a missing tool, element or Python module is an install problem
# (.ci/install-deps installs them all), never a skip.
# Needs GST_PLUGIN_PATH (set by meson to the build's gst/ folder) and
# MD_PYTHON (the build's Python, Debian's /usr/bin/python3 by default).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
pipes="$root/pipelines"
: "${GST_PLUGIN_PATH:?GST_PLUGIN_PATH must point at the folder of libgstmustdrop.so}"
export GST_PLUGIN_PATH
py="${MD_PYTHON:-/usr/bin/python3}"
export MD_PYTHON="$py"
for tool in gst-launch-1.0 gst-inspect-1.0 "$py"; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "FAIL: $tool not found (bash .ci/install-deps installs it)"
    exit 1
  }
done
plugin="$GST_PLUGIN_PATH/libgstmustdrop.so"
[ -e "$plugin" ] || { echo "FAIL: $plugin not found"; exit 1; }

tmp="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
# A registry of our own: the scripts start many gst-launch processes, and the
# build's registry is shared with the other tests running in parallel.
export GST_REGISTRY="$tmp/registry.bin"

# shellcheck source=tests/gst/launch-env.sh
source "$root/tests/gst/launch-env.sh"   # run_env

fail() { echo "FAIL: $*"; exit 1; }
run() {  # log-file, timeout-s, script, args...
  local log=$1 t=$2; shift 2
  local rc=0
  timeout "$t" "${run_env[@]}" bash "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" != 0 ]; then
    echo "--- output of $* (exit $rc):"
    tail -n 30 "$log"
    [ "$rc" = 124 ] && fail "$(basename "$1") timed out after $t s"
    fail "$(basename "$1") exited with $rc"
  fi
}
count_answers() { grep -c "mustdrop-answer" "$1" || true; }
check_jsonl() {  # file, min-lines
  "$py" - "$1" "$2" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
if len(lines) < int(sys.argv[2]):
    sys.exit("%s: %d JSON lines, expected at least %s" % (sys.argv[1], len(lines), sys.argv[2]))
for l in lines:
    a = json.loads(l)
    for k in ("window", "start", "end", "question", "answer", "frames"):
        if k not in a:
            sys.exit("%s: key %s missing in %s" % (sys.argv[1], k, l))
    if not a["answer"] or a["frames"] < 1 or not a["end"] > a["start"]:
        sys.exit("%s: bad answer line %s" % (sys.argv[1], l))
PY
}

sample="$pipes/sample.webm"
[ -s "$sample" ] || fail "$sample missing (pipelines/make-sample-clip.sh makes it)"

# 1. the README's main command: two questions over the 8 s shapes clip, each
#    answered (window 0-8 s) with the element's default reduction and
#    without, by four elements sharing one engine. With the bundled model
#    every answer must be the clip's (shapes.json); without it, the tiny
#    model's warning is shown.
run "$tmp/ask.log" 60 "$pipes/ask-sample.sh"
bundled=0
[ -r "$root/models/synthvqa/synthvqa-llm-f16.gguf" ] && bundled=1
"$py" - "$tmp/ask.log" "$pipes/shapes.json" "$bundled" <<'PY' || { cat "$tmp/ask.log"; fail "ask-sample.sh: see above"; }
import json, re, sys
log, info, bundled = open(sys.argv[1]).read(), json.load(open(sys.argv[2])), sys.argv[3] == "1"
if not re.search(r"^reduced: \S+; unreduced: none; one engine for the four elements$", log, re.M):
    sys.exit("no 'reduced: SPEC; unreduced: none' line")
for q in info["questions"][:2]:
    block = re.search(r"^window 0\.0-8\.0 s  Q: %s  \(expected: (.*)\)\n((?:  .*\n)+)" % re.escape(q["question"]),
                      log, re.M)
    if not block:
        sys.exit("no answers to %r" % q["question"])
    rows = dict(re.findall(r"^  (reduced|unreduced) +A: (.*?)   \d+ of \d+ visual tokens +[0-9.]+ ms", block.group(2), re.M))
    if set(rows) != {"reduced", "unreduced"}:
        sys.exit("%r: not answered both ways: %r" % (q["question"], block.group(2)))
    if bundled and any(a != q["answer"] for a in rows.values()):
        sys.exit("%r: the bundled model answered %r, expected %r" % (q["question"], rows, q["answer"]))
if not bundled and "NONSENSE" not in log:
    sys.exit("no tiny-model warning in its header")
PY
echo "ok ask-sample.sh: $(grep -cE '^  (reduced|unreduced) +A: ' "$tmp/ask.log") answers"

# 2. test-pattern.sh (not live: windows closed while the model loads may be
#    skipped, so at least one answer)
run "$tmp/pattern.log" 20 "$pipes/test-pattern.sh"
n=$(count_answers "$tmp/pattern.log")
[ "$n" -ge 1 ] || { cat "$tmp/pattern.log"; fail "test-pattern.sh: no mustdrop-answer"; }
echo "ok test-pattern.sh: $n answers"

# 3. file-jsonl.sh on the sample clip (max-pending=64: every window answered)
WINDOW=2 run "$tmp/jsonl.log" 20 "$pipes/file-jsonl.sh" "$sample" "$tmp/file.jsonl"
check_jsonl "$tmp/file.jsonl" 3 || fail "file-jsonl.sh: bad JSON lines"
echo "ok file-jsonl.sh: $(wc -l <"$tmp/file.jsonl") JSON lines"

# 4. file-subtitles.sh on the sample clip, to a file; the result must decode
WINDOW=2 run "$tmp/subs.log" 30 "$pipes/file-subtitles.sh" "$sample" "$tmp/subs.webm"
n=$(count_answers "$tmp/subs.log")
[ "$n" -ge 1 ] || { cat "$tmp/subs.log"; fail "file-subtitles.sh: no mustdrop-answer"; }
[ -s "$tmp/subs.webm" ] || fail "file-subtitles.sh: no output video"
frames=$(timeout 20 gst-launch-1.0 -v filesrc location="$tmp/subs.webm" ! decodebin \
  ! fakesink silent=false 2>&1 | grep -c "last-message = chain" || true)
[ "$frames" -ge 50 ] || fail "file-subtitles.sh: output decodes to $frames frames, expected 60"
echo "ok file-subtitles.sh: $n answers, $frames frames in the subtitled video"

# 5. camera-live.sh with a live test source standing in for v4l2src
SOURCE="videotestsrc is-live=true pattern=ball num-buffers=45" SINK=fakesink WINDOW=1 \
  run "$tmp/camera.log" 20 "$pipes/camera-live.sh"
n=$(count_answers "$tmp/camera.log")
[ "$n" -ge 1 ] || { cat "$tmp/camera.log"; fail "camera-live.sh: no mustdrop-answer"; }
echo "ok camera-live.sh (SOURCE=videotestsrc is-live=true): $n answers"

# 6. rtsp.sh against a local RTSP server (PyGObject + GstRtspServer typelib)
"$py" -c "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer" \
  || fail "$py has no PyGObject or no GstRtspServer typelib (Debian 12: python3-gi gir1.2-gst-rtsp-server-1.0; bash .ci/install-deps)"
# 40 frames at 10 fps per client, then EOS (the server sends BYE).
# The server needs no mustdrop plugin: it gets a registry of its own without
# GST_PLUGIN_PATH (an ASan-built plugin could not be loaded there).
env -u GST_PLUGIN_PATH GST_REGISTRY="$tmp/server-registry.bin" \
  "$py" "$pipes/rtsp-test-server.py" --port 0 --num-buffers 40 >"$tmp/server.out" 2>"$tmp/server.err" &
server_pid=$!
url=""
for _ in $(seq 50); do
  url="$(head -n 1 "$tmp/server.out" 2>/dev/null || true)"
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.err"; fail "rtsp-test-server.py exited"; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$tmp/server.err"; fail "rtsp-test-server.py did not start within 5 s"; }
case "$url" in rtsp://127.0.0.1:*) ;; *) fail "unexpected server address: $url" ;; esac
WINDOW=1 run "$tmp/rtsp.log" 25 "$pipes/rtsp.sh" "$url" "$tmp/rtsp.jsonl"
n=$(count_answers "$tmp/rtsp.log")
[ "$n" -ge 1 ] || { cat "$tmp/rtsp.log"; fail "rtsp.sh: no mustdrop-answer"; }
check_jsonl "$tmp/rtsp.jsonl" 1 || fail "rtsp.sh: bad JSON lines"
echo "ok rtsp.sh ($url): $n answers, $(wc -l <"$tmp/rtsp.jsonl") JSON lines"
echo "all pipelines produced answers"
