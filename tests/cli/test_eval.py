#!/usr/bin/env python3
"""mustdrop-eval end to end on the tiny LLaVA fixtures and the sample clip.

The manifest's expected answers are, for some lines, what `mustdrop --video
FILE --frames N --fps F --question Q -n 16` prints (so they are right only
if both tools sample, prompt and decode the same way: both are one md_vqa
answer), and wrong for others; the reported accuracy and the visual tokens
(as mustdrop reports them) must then be exact. Also: a missing video counted
wrong without stopping the run, malformed manifest lines, --reduce changing
the visual tokens (and agreeing with mustdrop --reduce), --limit, --out,
--json, the default model, usage errors.

Usage: test_eval.py MUSTDROP_EVAL MUSTDROP TEST_MEDIA SOURCE_ROOT
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

evalx, mdx, mediax, root = [os.path.abspath(a) for a in sys.argv[1:5]]
fx = os.path.join(root, "models", "fixtures", "vision")
llm = os.path.join(fx, "tiny-llava-llm-f32.gguf")
proj = os.path.join(fx, "tiny-llava-mmproj-f32.gguf")
sample = os.path.join(root, "pipelines", "sample.webm")
for f in (llm, proj, sample):
    if not os.path.isfile(f):
        print(f"FAIL: {f} not found (it is part of the repository)")
        sys.exit(1)

fails = []


def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL:", what)


def run(args, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e, timeout=300)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def json_bytes(b):
    """b (bytes, maybe not UTF-8) as a JSON string literal, raw bytes kept."""
    out = bytearray(b'"')
    for c in b:
        if c == 0x22:
            out += b'\\"'
        elif c == 0x5C:
            out += b"\\\\"
        elif c < 0x20:
            out += b"\\u%04x" % c
        else:
            out.append(c)
    return bytes(out + b'"')


def line(id_, video, question, answer, type_, extra=b""):
    return (b'{"id": ' + json_bytes(id_.encode()) + b', "video": ' + json_bytes(video.encode())
            + b', "question": ' + json_bytes(question.encode()) + b', "answer": '
            + json_bytes(answer) + b', "type": ' + json_bytes(type_.encode()) + extra + b"}\n")


tmp = tempfile.mkdtemp()
try:
    split = os.path.join(tmp, "split")
    os.makedirs(os.path.join(split, "clips"))
    shutil.copy(sample, os.path.join(split, "clips", "sample.webm"))
    if subprocess.run([mediax, "--write", tmp], stdout=subprocess.DEVNULL).returncode != 0:
        print("FAIL: cannot write the test media with this FFmpeg (bash .ci/install-deps)")
        sys.exit(1)
    shutil.copy(os.path.join(tmp, "clip.mkv"), os.path.join(split, "clips", "clip.mkv"))
    model = ["-m", llm, "--mmproj", proj]
    # at most 4 frames, 8 a second: the 0.48 s clip gives 4, the 6 s sample 3
    # (48 sampled, thinned uniformly)
    N, FPS = "4", "8"
    frames = ["--frames", N, "--fps", FPS]
    tokens = {}   # (video, question, reduce) -> (visual tokens in, kept) as mustdrop says

    def cli_answer(video, q, reduce=None):
        args = [mdx, *model, "--video", os.path.join(split, video), *frames, "--question", q,
                "-n", "16", "-t", "1"]
        if reduce:
            args += ["--reduce", reduce]
        rc, out, err = run(args)
        check(rc == 0 and out.endswith(b"\n"), f"mustdrop failed on {video} / {q}: {err[-300:]}")
        kept = re.search(r"prompt: \d+ rows, (\d+) of them image rows", err)
        vin = re.search(r"visual tokens (\d+) -> ", err) if reduce else kept
        check(kept and vin, f"mustdrop's report on {video}: {err[-300:]}")
        tokens[video, q, reduce] = (int(vin.group(1)), int(kept.group(1))) if kept and vin else (0, 0)
        return out[:-1]

    def mean_tokens(reduce=None):
        t = [tokens[v, q, reduce] for _, v, q, _ in qs]
        return sum(x[0] for x in t) / len(t), sum(x[1] for x in t) / len(t)

    qs = [("s-1", "clips/sample.webm", "What colour is the circle?", "colour_of"),
          ("s-2", "clips/sample.webm", "How many shapes are there?", "count"),
          ("s-3", "clips/sample.webm", "Where does the square go?", "motion"),
          ("s-4", "clips/sample.webm", "What is happening?", "motion"),
          ("c-1", "clips/clip.mkv", "What colour is the background?", "colour_of"),
          ("c-2", "clips/clip.mkv", "Is anything moving?", "motion")]
    preds = {id_: cli_answer(v, q) for id_, v, q, _ in qs}
    check(len(set(preds.values())) > 1, "the CLI gave one answer to every question")
    check(all(p == p.strip() for p in preds.values()), f"whitespace around answers: {preds}")
    # --frames 4 spread over each file's stated duration: 4 frames of each
    check(tokens[qs[0][1], qs[0][2], None] == (64, 64) and tokens[qs[4][1], qs[4][2], None] == (64, 64),
          f"frames: 4 of the sample, 4 of the clip: {tokens}")
    vis_in, vis_kept = mean_tokens()

    # right: s-1, s-3 (with surrounding whitespace), c-1; wrong: s-2, s-4 (case changed or a
    # different text), c-2; and a missing video (wrong, reported)
    lines = []
    right = {"s-1", "s-3", "c-1"}
    for id_, v, q, t in qs:
        p = preds[id_]
        if id_ == "s-3":
            ans = b"  " + p + b" \n\t"
        elif id_ in right:
            ans = p
        elif id_ == "s-4" and p.swapcase() != p:
            ans = p.swapcase()
        else:
            ans = b"definitely not " + p
        extra = b', "extra": [1, {"nested": null}], "n": -1.5e3' if id_ == "s-2" else b""
        lines.append(line(id_, v, q, ans, t, extra))
    lines.insert(4, b"\n")   # a blank line is skipped
    lines.append(line("gone-1", "clips/missing.mp4", "What?", b"x", "count"))
    with open(os.path.join(split, "manifest.jsonl"), "wb") as f:
        f.write(b"".join(lines))

    out_path = os.path.join(tmp, "pred.jsonl")
    rc, out, err = run([evalx, "--split", split, *model, *frames, "-t", "1", "--json",
                        "--out", out_path])
    check(rc == 0, f"eval exit {rc}: {err[-500:]}")
    outl = out.decode().splitlines()
    check(len(outl) == 1, f"--json: stdout is not one line: {out[:300]!r}")
    s = json.loads(outl[0]) if outl else {}
    check(s.get("n") == 7 and s.get("correct") == 3, f"n/correct: {s}")
    check(abs(s.get("accuracy", -1) - 3 / 7) < 1e-6, f"accuracy: {s.get('accuracy')}")
    check(s.get("per_type") == {"colour_of": {"n": 2, "correct": 2}, "count": {"n": 2, "correct": 0},
                                "motion": {"n": 3, "correct": 1}}, f"per_type: {s.get('per_type')}")
    check(s.get("spec") == "none" and s.get("frames") == 4 and s.get("sample_fps") == 8,
          f"spec/frames: {s}")
    check(abs(s.get("visual_tokens_in", 0) - vis_in) < 1e-3
          and abs(s.get("visual_tokens_kept", 0) - vis_kept) < 1e-3,
          f"visual tokens ({vis_in:.3f}, as mustdrop's): {s}")
    check(s.get("n_errors") == 1 and s.get("n_run") == 6, f"errors: {s}")
    for k in ("flops_prefill", "t_vision_ms", "t_prefill_ms", "t_decode_ms"):
        check(s.get(k, 0) > 0, f"{k}: {s.get(k)}")
    check("line 8 (id gone-1): video: cannot open" in err and "missing.mp4" in err,
          f"missing video not reported with its line: {err[-400:]}")
    check("all " in err and "42.9%" in err, f"table on stderr with --json: {err[-600:]}")
    with open(out_path, "rb") as f:
        recs = [json.loads(l) for l in f.read().decode("utf-8").splitlines()]
    check([r["id"] for r in recs] == ["s-1", "s-2", "s-3", "s-4", "c-1", "c-2", "gone-1"],
          f"--out ids: {[r.get('id') for r in recs]}")
    check({r["id"] for r in recs if r["correct"]} == right, f"--out correct: {recs}")
    check(all(r["visual_tokens_kept"] == tokens[v, q, None][1] for r, (_, v, q, _) in zip(recs, qs)),
          "--out tokens kept")
    check("error" in recs[6] and recs[6]["prediction"] == "" and "error" not in recs[0],
          f"--out error field: {recs[6]}")
    for r in recs[:6]:
        check(r["prediction"].encode("utf-8", "replace") == preds[r["id"]]
              or "\ufffd" in r["prediction"], f"--out prediction of {r['id']}")

    # the text report (no --json): stdout, per-type rows and the summary
    rc, out, err = run([evalx, "--split", split, *model, *frames, "-t", "1", "--limit", "3"])
    o = out.decode("utf-8", "replace")
    check(rc == 0 and "n 3, accuracy 66.67% (2 correct)" in o, f"--limit 3 report: {o}")
    for want in ("colour_of", "count", "motion", "visual tokens per question: 64.0 given to the LLM",
                 "frames per video: at most 4, 8 a second",
                 "LLM prefill:", "time per question: vision encode", "total wall time:"):
        check(want in o, f"report lacks '{want}': {o}")

    # --reduce: fewer visual tokens, the same answers as mustdrop --reduce (one session per
    # question on a shared context, as against a fresh mustdrop each time)
    rsplit = os.path.join(tmp, "rsplit")
    os.makedirs(rsplit)
    os.symlink(os.path.join(split, "clips"), os.path.join(rsplit, "clips"))
    for spec in ("mustdrop:tokens=64,kv=decode", "uniform:tokens=4"):
        rlines = [line(id_, v, q, cli_answer(v, q, spec), t) for id_, v, q, t in qs]
        with open(os.path.join(rsplit, "manifest.jsonl"), "wb") as f:
            f.write(b"".join(rlines))
        rc, out, err = run([evalx, "--split", rsplit, *model, *frames, "-t", "1", "--json",
                            "--reduce", spec])
        r = json.loads(out.decode().splitlines()[0]) if rc == 0 and out else {}
        check(r.get("correct") == 6 and r.get("n") == 6,
              f"--reduce {spec}: answers differ from mustdrop --reduce: {r} {err[-300:]}")
        r_in, r_kept = mean_tokens(spec)
        check(abs(r.get("visual_tokens_in", 0) - r_in) < 1e-3
              and abs(r.get("visual_tokens_kept", 0) - r_kept) < 1e-3,
              f"--reduce {spec} tokens ({r_in:.3f}, {r_kept:.3f} as mustdrop's): {r}")
    check(abs(r.get("visual_tokens_in", 0) - vis_in) < 1e-3
          and abs(r.get("visual_tokens_kept", 0) - vis_in / 4) < 1e-3, f"uniform:tokens=4: {r}")
    check(r.get("spec") == spec and 0 < r.get("flops_prefill", 0) < s.get("flops_prefill", 0),
          f"--reduce spec/flops: {r}")
    rc, out, err = run([evalx, "--split", rsplit, *model, *frames, "-t", "1", "--json",
                        "--reduce", "fastv:k=2,r=0.5"])
    r = json.loads(out.decode().splitlines()[0]) if rc == 0 and out else {}
    check(abs(r.get("visual_tokens_kept", 0) - vis_in) < 1e-3
          and abs(r.get("visual_tokens_final", 0) - vis_in / 2) < 1e-3,
          f"fastv: the LLM gets every token, keeps half after layer 2: {r}")

    # a context too small for the prompt: every question reported and counted wrong
    rc, out, err = run([evalx, "--split", split, *model, *frames, "-t", "1", "--json", "-c", "60"])
    r = json.loads(out.decode().splitlines()[0]) if rc == 0 and out else {}
    check(r.get("n") == 7 and r.get("correct") == 0 and r.get("n_errors") == 7
          and re.search(r"the context \(60 tokens\) is too small for \d+ visual tokens", err),
          f"-c 60: {r} {err[-300:]}")

    # the default model from MUSTDROP_MODEL_DIR
    dm = os.path.join(tmp, "defmodel")
    os.makedirs(dm)
    os.symlink(llm, os.path.join(dm, "synthvqa-llm-f16.gguf"))
    os.symlink(proj, os.path.join(dm, "synthvqa-mmproj-f16.gguf"))
    rc, out, err = run([evalx, "--split", split, *frames, "-t", "1", "--json", "--limit", "2"],
                       {"MUSTDROP_MODEL_DIR": dm})
    d = json.loads(out.decode().splitlines()[0]) if rc == 0 and out else {}
    check(d.get("n") == 2 and d.get("correct") == 1, f"default model: {d} {err[-300:]}")
    os.makedirs(os.path.join(tmp, "nomodel"))
    rc, out, err = run([evalx, "--split", split], {"MUSTDROP_MODEL_DIR": os.path.join(tmp, "nomodel")})
    if rc != 0:   # (the real default model, once trained or installed, is found after it)
        check(rc == 1 and "searched: $MUSTDROP_MODEL_DIR=" in err and "synthvqa" in err,
              f"missing default model: {rc} {err}")

    # malformed manifests: every bad line named, nothing run, exit 1
    bad = os.path.join(tmp, "bad")
    os.makedirs(bad)
    bad_lines = [
        line("ok-1", "clips/x.mp4", "Q", b"A", "t"),
        b"not json at all\n",
        b'{"id": "x", "video": "v", "question": "q", "type": "t"}\n',
        b'{"id": "x", "video": "v", "question": "q", "answer": 3}\n',
        b'{"id": "x", "video": "v", "question": "q", "answer": "a"} trailing\n',
        b'{"id": "x", "video": "v", "question": "q", "answer": "unterminated}\n',
        b'{"id": "x", "id": "y", "video": "v", "question": "q", "answer": "a"}\n',
        b'{"id": "x", "video": "v", "question": "bad \\q escape", "answer": "a"}\n',
        b'{"id": "x", "video": "v", "question": "q", "answer": "a",}\n',
        b'["id", "x"]\n',
        b'{"id": "x", "video": "v", "question": "q", "answer": "\\ud800"}\n',
        b'{"id": "x", "video": "v", "question": "q", "answer": "a", "n": 01}\n',
        b'{"id": "x", "video": "v", "question": "q", "answer": "a", "deep": ' + b"[" * 100 + b"]" * 100 + b"}\n",
        b'{"id": "x", "video": "v", "question": "q", "answer": "a\x00b"}\n',
        b'{"id": "x", "video": "v", "question": "q", "answer": "a\tb"}\n',
    ]
    with open(os.path.join(bad, "manifest.jsonl"), "wb") as f:
        f.write(b"".join(bad_lines))
    rc, out, err = run([evalx, "--split", bad, *model])
    check(rc == 1, f"malformed manifest: exit {rc}")
    mf = os.path.join(bad, "manifest.jsonl")
    for n, want in [(2, "expected '{'"), (3, 'missing key "answer"'), (4, '"answer" must be a string'),
                    (5, "unexpected text after the object"), (6, "unterminated string"),
                    (7, 'duplicate key "id"'), (8, "bad escape"), (9, "expected a key"),
                    (10, "expected '{'"), (11, "without its low half"), (12, "expected ',' or '}'"),
                    (13, "nested more than"), (14, "NUL byte"), (15, "control character 0x09")]:
        check(f"{mf}:{n}: " in err, f"line {n} not reported: {err}")
        check(want in err, f"line {n}: message lacks '{want}': {err}")
    check(f"{mf}:1:" not in err, "a good line reported as bad")
    check("mustdrop-eval: model" not in err, "the model was loaded despite a bad manifest")

    # usage errors and the help
    for args, code, want in [([], 2, "no split given"), (["--split", split, "-m", llm], 2, "both -m and --mmproj"),
                             (["--split", split, *model, "--reduce", "fastv:q=1"], 2, "unknown key"),
                             (["--split", split, *model, "--frames", "0"], 2, "--frames"),
                             (["--split", split, *model, "--fps", "-1"], 2, "--fps"),

                             (["--split", split, *model, "--bogus"], 2, "unknown option"),
                             (["--split", os.path.join(tmp, "nosuch"), *model], 1, "cannot open"),
                             (["--split", split, "-m", os.path.join(tmp, "no.gguf"), "--mmproj", proj], 1,
                              "mustdrop-eval: " + os.path.join(tmp, "no.gguf") + ": no such file"),
                             (["--split", split, "-m", llm, "--mmproj", tmp], 1,
                              "mustdrop-eval: " + tmp + ": is a directory, not a GGUF file")]:
        rc, out, err = run([evalx, *args])
        check(rc == code and want in err, f"{args}: exit {rc}, stderr {err[-300:]}")
    rc, out, err = run([evalx, "--help"])
    check(rc == 0 and b"--split DIR" in out and b"case-sensitive" in out, "--help")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

if fails:
    print(f"FAIL: mustdrop-eval: {len(fails)} problem(s)")
    sys.exit(1)
print("PASS: mustdrop-eval")
