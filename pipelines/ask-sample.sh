#!/usr/bin/env bash
# The README's main command: two questions about the bundled sample clip
# (pipelines/shapes.webm, 8 s of the synthetic shapes task the default model
# was trained on; made by models/synthvqa/synthvqa.py sample), asked by two
# mustdropvqa elements in one pipeline, each over the whole clip (window=8,
# one frame a second). The questions are the first two of shapes.json beside
# the clip. Prints one line per answer:
#   window 0.0-8.0 s  Q: What colour is the small triangle?  A: green   (expected: green)
#   pipelines/ask-sample.sh [VIDEO]
# QUESTION / QUESTION2 replace the two questions; MODEL / MMPROJ as for the
# other scripts (default: the bundled model models/synthvqa/); WINDOW (s),
# REDUCE (a reduction spec, default: the element's) and SAMPLE_FPS too.
set -euo pipefail
QUESTION_SET="${QUESTION:-}"
# shellcheck source=pipelines/common.sh
source "$(dirname "$0")/common.sh"   # sets here, fixtures, root, MODEL, MMPROJ, QUESTION, MD_PYTHON
in="${1:-$here/shapes.webm}"
if [ ! -r "$in" ]; then
  echo "ask-sample: cannot read $in" >&2
  exit 1
fi
# the sample's own questions and answers (shapes.json beside shapes.webm)
info="${in%.*}.json"
sample_q() {   # the sample's n-th question (0-based), or the fallback
  if [ -r "$info" ]; then
    "$MD_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["questions"][int(sys.argv[2])]["question"])' "$info" "$1"
  else
    echo "$2"
  fi
}
q1="${QUESTION_SET:-$(sample_q 0 "What is happening in the video?")}"
q2="${QUESTION2:-$(sample_q 1 "Which shape enters last?")}"
echo "mustdropvqa on $(basename "$in")"
# shellcheck disable=SC2154  # fixtures: from common.sh
if [ "$MODEL" = "$fixtures/tiny-llava-llm-f32.gguf" ]; then
  echo "model: the tiny random-weight test model (the bundled models/synthvqa/ model is missing),"
  echo "so the answers are NONSENSE (every step - decoding, frame sampling, vision tower,"
  echo "projector, LLM, sampling - is the real one; set MODEL= and MMPROJ= to use your own)"
else
  echo "model: $MODEL"
fi
reduce=()
[ -z "${REDUCE:-}" ] || reduce=(reduce="$REDUCE")
# Each element appends one JSON object per answer to jsonl-location (one
# write per line), here ("-") gst-launch's stdout, read line by line by the
# formatter.
set +e
gst-launch-1.0 -q filesrc location="$in" ! decodebin ! videoconvert \
  ! mustdropvqa model="$MODEL" mmproj="$MMPROJ" question="$q1" "${reduce[@]}" \
      window="${WINDOW:-8}" sample-fps="${SAMPLE_FPS:-1}" max-frames=8 max-pending=64 \
      max-new-tokens=16 temperature=0 jsonl-location=- \
  ! mustdropvqa model="$MODEL" mmproj="$MMPROJ" question="$q2" "${reduce[@]}" \
      window="${WINDOW:-8}" sample-fps="${SAMPLE_FPS:-1}" max-frames=8 max-pending=64 \
      max-new-tokens=16 temperature=0 jsonl-location=- \
  ! fakesink sync=false \
  | "$MD_PYTHON" -c '
import json, os, sys
expected = {}
if os.path.isfile(sys.argv[1]):
    expected = {q["question"]: q["answer"] for q in json.load(open(sys.argv[1]))["questions"]}
n = 0
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        print(line)
        continue
    a = json.loads(line)
    text = "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in a["answer"])
    exp = expected.get(a["question"])
    tail = "" if exp is None else "   (expected: %s)" % exp
    print("window %.1f-%.1f s  Q: %s  A: %s%s" % (a["start"], a["end"], a["question"], text, tail),
          flush=True)
    n += 1
if n == 0:
    sys.exit("ask-sample: no answer came back")
' "$info"
st=("${PIPESTATUS[@]}")
set -e
if [ "${st[0]}" != 0 ]; then
  echo "ask-sample: gst-launch-1.0 failed (exit status ${st[0]})" >&2
  exit 1
fi
[ "${st[1]}" = 0 ] || exit 1
