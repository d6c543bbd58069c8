#!/usr/bin/env bash
# Asks the model a question about every 2 s of the bundled sample clip
# (pipelines/sample.webm, made by make-sample-clip.sh) and prints one line per
# window: "window 0.0-2.0 s: <answer>".
#   pipelines/ask-sample.sh [VIDEO]
# MODEL / MMPROJ / QUESTION / WINDOW as for the other scripts. The default
# models are the tiny random-weight test models: their answers are nonsense
# (every step runs for real); a trained default model comes with a later issue.
set -euo pipefail
# shellcheck source=pipelines/common.sh
source "$(dirname "$0")/common.sh"   # sets here, fixtures, MODEL, MMPROJ, QUESTION
in="${1:-$here/sample.webm}"
if [ ! -r "$in" ]; then
  echo "ask-sample: cannot read $in" >&2
  exit 1
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "ask-sample: python3 not found (it formats the answers; Debian 12: apt-get install python3)" >&2
  exit 1
fi
echo "mustdropvqa on $(basename "$in"), question: \"$QUESTION\""
# shellcheck disable=SC2154  # fixtures: from common.sh
if [ "$MODEL" = "$fixtures/tiny-llava-llm-f32.gguf" ]; then
  echo "model: the bundled tiny random-weight test model, so the answers are NONSENSE"
  echo "(every step - decoding, frame sampling, vision tower, projector, LLM, sampling - is"
  echo "the real one; a trained default model comes later; set MODEL= and MMPROJ= to use your own)"
else
  echo "model: $MODEL"
fi
# The element appends one JSON object per answer to jsonl-location (flushed
# per line); here that is our stdout, read line by line by the formatter.
set +e
gst-launch-1.0 -q filesrc location="$in" ! decodebin ! videoconvert \
  ! mustdropvqa model="$MODEL" mmproj="$MMPROJ" question="$QUESTION" \
      window="${WINDOW:-2}" sample-fps=2 max-frames=4 max-pending=64 \
      max-new-tokens=24 jsonl-location=/dev/stdout \
  ! fakesink sync=false \
  | python3 -c '
import json, sys
n = 0
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        print(line)
        continue
    a = json.loads(line)
    text = "".join(c if c.isprintable() and c != "\ufffd" else "?"
                   for c in a["answer"])
    print("window %.1f-%.1f s: %s" % (a["start"], a["end"], text), flush=True)
    n += 1
if n == 0:
    sys.exit("ask-sample: no answer came back")
'
st=("${PIPESTATUS[@]}")
set -e
if [ "${st[0]}" != 0 ]; then
  echo "ask-sample: gst-launch-1.0 failed (exit status ${st[0]})" >&2
  exit 1
fi
[ "${st[1]}" = 0 ] || exit 1
