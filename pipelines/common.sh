# shellcheck shell=bash
# Shared settings of the pipelines/*.sh scripts (sourced, not run).
# MODEL / MMPROJ: the LLM and vision projector GGUFs (default: the bundled
# synthvqa model, models/synthvqa/, trained on synthetic shape videos; when it
# is absent, the tiny random test models, which give nonsense answers but
# exercise every step).
# QUESTION: the question asked about every window (default: "What is happening
# in the video?"; with the bundled model, which knows only its task's nine
# question types and answers an open question with nothing, "How many squares
# appear?").
# GST_PLUGIN_PATH: where libgstmustdrop.so is (default: the first of
# build/gst and build-gst/gst that holds it, relative to the repository).
# MD_PYTHON: the Python the scripts run (default: Debian's /usr/bin/python3,
# where .ci/install-deps puts python3-gi; not whichever python3 is first on
# PATH).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
fixtures="$root/models/fixtures/vision"
if [ -z "${MODEL:-}" ] && [ -z "${MMPROJ:-}" ] && [ -r "$root/models/synthvqa/synthvqa-llm-f16.gguf" ] \
   && [ -r "$root/models/synthvqa/synthvqa-mmproj-f16.gguf" ]; then
  MODEL="$root/models/synthvqa/synthvqa-llm-f16.gguf"
  MMPROJ="$root/models/synthvqa/synthvqa-mmproj-f16.gguf"
  QUESTION="${QUESTION:-How many squares appear?}"
fi
MODEL="${MODEL:-$fixtures/tiny-llava-llm-f32.gguf}"
MMPROJ="${MMPROJ:-$fixtures/tiny-llava-mmproj-f32.gguf}"
QUESTION="${QUESTION:-What is happening in the video?}"
if [ -z "${GST_PLUGIN_PATH:-}" ]; then
  GST_PLUGIN_PATH="$root/build/gst"
  for d in "$root/build/gst" "$root/build-gst/gst"; do
    if [ -e "$d/libgstmustdrop.so" ]; then GST_PLUGIN_PATH="$d"; break; fi
  done
fi
export GST_PLUGIN_PATH
MD_PYTHON="${MD_PYTHON:-/usr/bin/python3}"
if [ ! -x "$MD_PYTHON" ]; then
  echo "$MD_PYTHON not found (Debian 12: apt-get install python3, or bash .ci/install-deps; MD_PYTHON= names another)" >&2
  exit 1
fi
if ! command -v gst-launch-1.0 >/dev/null 2>&1; then
  echo "gst-launch-1.0 not found (Debian 12: apt-get install gstreamer1.0-tools, or bash .ci/install-deps)" >&2
  exit 1
fi
if ! gst-inspect-1.0 mustdropvqa >/dev/null 2>&1; then
  echo "mustdropvqa not found in GST_PLUGIN_PATH=$GST_PLUGIN_PATH (build with: meson setup build && ninja -C build)" >&2
  exit 1
fi
for f in "$MODEL" "$MMPROJ"; do
  if [ ! -r "$f" ]; then
    echo "model file not found: $f (set MODEL= / MMPROJ=)" >&2
    exit 1
  fi
done

# gst_launch_filtered PATTERN ARGS...: gst-launch-1.0 ARGS with its output
# (stdout and stderr) filtered through grep -E PATTERN. Fails with a message
# naming gst-launch's exit status (a crash would otherwise print nothing);
# no matching line is not a failure.
gst_launch_filtered() {
  local pattern=$1 st
  shift
  set +e
  gst-launch-1.0 "$@" 2>&1 | grep --line-buffered -E "$pattern"
  st=${PIPESTATUS[0]}
  set -e
  if [ "$st" != 0 ]; then
    echo "$(basename "$0"): gst-launch-1.0 failed (exit status $st)" >&2
    return 1
  fi
}
