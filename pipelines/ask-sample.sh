#!/usr/bin/env bash
# The README's main command: two questions about the bundled sample clip
# (pipelines/shapes.webm, 8 s of the synthetic shapes task the default model
# was trained on; made by models/synthvqa/synthvqa.py sample), each asked
# over the whole clip (window=8, one frame a second) twice: by a mustdropvqa
# element with its default token reduction and by one with reduce=none. The
# four elements are in one pipeline and share one loaded engine. The
# questions are the first two of shapes.json beside the clip. Prints, per
# question, both answers with their visual tokens and times:
#   window 0.0-8.0 s  Q: What colour is the small triangle?  (expected: green)
#     reduced    A: green   40 of 72 visual tokens   9.1 ms  (vision 4.9, prefill 2.5, decode 1.7)
#     unreduced  A: green   72 of 72 visual tokens  10.3 ms  (vision 4.6, prefill 3.9, decode 1.8)
#   pipelines/ask-sample.sh [VIDEO]
# QUESTION / QUESTION2 replace the two questions; MODEL / MMPROJ as for the
# other scripts (default: the bundled model models/synthvqa/); WINDOW (s),
# REDUCE (the reduced elements' spec, default: the element's) and SAMPLE_FPS
# too. The answers are decoded one at a time (max-batch=1), so each time is
# that answer's own.
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
# formatter; elements named reduced<i> / unreduced<i> ask question i.
common=(model="$MODEL" mmproj="$MMPROJ" window="${WINDOW:-8}" sample-fps="${SAMPLE_FPS:-1}"
        max-frames=8 max-pending=64 max-new-tokens=16 temperature=0 max-batch=1 threads="${THREADS:-1}"
        jsonl-location=-)
set +e
gst-launch-1.0 -q filesrc location="$in" ! decodebin ! videoconvert \
  ! mustdropvqa name=reduced0 question="$q1" "${reduce[@]}" "${common[@]}" \
  ! mustdropvqa name=unreduced0 question="$q1" reduce=none "${common[@]}" \
  ! mustdropvqa name=reduced1 question="$q2" "${reduce[@]}" "${common[@]}" \
  ! mustdropvqa name=unreduced1 question="$q2" reduce=none "${common[@]}" \
  ! fakesink sync=false \
  | "$MD_PYTHON" -c '
import json, os, sys
expected = {}
if os.path.isfile(sys.argv[1]):
    expected = {q["question"]: q["answer"] for q in json.load(open(sys.argv[1]))["questions"]}
printable = lambda t: "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in t)
said_spec = False
pending = {}   # (window, question) -> {"reduced": answer, "unreduced": answer}

def row(kind, a):
    ms = a["encode_ms"] + a["prefill_ms"] + a["decode_ms"]
    return "  %-9s  A: %s   %d of %d visual tokens  %6.1f ms  (vision %.1f, prefill %.1f, decode %.1f)" % (
        kind, printable(a["answer"]), a["visual_tokens_kept"], a["visual_tokens"], ms,
        a["encode_ms"], a["prefill_ms"], a["decode_ms"])

def show(key, pair):
    a = next(iter(pair.values()))
    exp = expected.get(a["question"])
    tail = "" if exp is None else "  (expected: %s)" % exp
    print("window %.1f-%.1f s  Q: %s%s" % (a["start"], a["end"], a["question"], tail))
    for kind in ("reduced", "unreduced"):
        if kind in pair:
            print(row(kind, pair[kind]))
    if len(pair) == 2:
        r, u = pair["reduced"], pair["unreduced"]
        t = lambda a: a["encode_ms"] + a["prefill_ms"] + a["decode_ms"]
        print("  %s, reduced in %.2fx the time" % (
            "same answer" if r["answer"] == u["answer"] else "different answers",
            t(r) / t(u) if t(u) > 0 else 0.0), flush=True)

n = 0
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        print(line)
        continue
    a = json.loads(line)
    kind = "unreduced" if a["stream"].startswith("unreduced") else "reduced"
    if kind == "reduced" and not said_spec:
        print("reduced: %s; unreduced: none; one engine for the four elements" % a["reduce"])
        said_spec = True
    key = (a["window"], a["question"])
    pending.setdefault(key, {})[kind] = a
    if len(pending[key]) == 2:
        show(key, pending.pop(key))
    n += 1
for key, pair in pending.items():
    show(key, pair)
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
