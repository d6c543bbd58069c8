#!/usr/bin/env python3
"""`mustdrop --video` and the mustdropvqa element give the same answers.

Both answer through md_vqa with the one frame-sampling rule, so on the same
clip, with the element's window covering the whole clip (window = its
length, sample-fps=1, max-frames=8, its default reduction) and the CLI's
defaults (--fps 1 --frames 8, greedy) with --reduce set to the spec the
element's answers report, they must see the same frames, keep the same
number of visual tokens and say the same thing, with no whitespace around
it. Clips: the README sample (pipelines/shapes.webm,
whose three answers are also checked against shapes.json) and three clips of
the synthvqa test split written here (VP8, which FFmpeg and GStreamer decode
to the same pixels), two questions each, with the bundled model.

Usage: test_cli_element.py MUSTDROP SOURCE_ROOT (GST_PLUGIN_PATH set by meson;
under ASan, gst-launch-1.0 gets tests/gst/launch-env.sh's preload).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

N_CLIPS = 3
fails = []


def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL:", what)
    return cond


def launch_prefix(root, plugin):
    """launch-env.sh's run_env: the sanitizer preload an ASan plugin needs."""
    script = f'plugin="$1"; source "{root}/tests/gst/launch-env.sh"; printf "%s\\n" "${{run_env[@]}}"'
    out = subprocess.run(["bash", "-c", script, "bash", plugin], check=True,
                         capture_output=True, text=True).stdout
    return [a for a in out.split("\n") if a]


def clips(root, split):
    """[(path, duration s, [(question, expected or None)])]"""
    info = json.loads((root / "pipelines" / "shapes.json").read_text())
    out = [(root / "pipelines" / "shapes.webm", info["scene"]["duration"],
            [(q["question"], q["answer"]) for q in info["questions"]])]
    by_video = {}
    for line in (split / "manifest.jsonl").read_text().splitlines():
        d = json.loads(line)
        v = by_video.setdefault(d["video"], (d["scene"]["duration"], []))
        v[1].append((d["question"], None))   # the model may get these wrong: agreement is the point
    for video, (duration, qs) in sorted(by_video.items()):
        out.append((split / video, duration, qs))
    return out


def element_answers(prefix, env, model, mmproj, clip, duration, questions):
    """question -> ((answer, frames, visual tokens kept), reduce spec), one element per question in
    one pipeline."""
    chain = []
    for q, _ in questions:
        chain += ["!", "mustdropvqa", f"model={model}", f"mmproj={mmproj}", f"question={q}",
                  f"window={duration}", "sample-fps=1", "max-frames=8", "max-pending=64",
                  "jsonl-location=-"]
    cmd = [*prefix, "gst-launch-1.0", "-q", "filesrc", f"location={clip}", "!", "decodebin", "!",
           "videoconvert", *chain, "!", "fakesink", "sync=false"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    check(p.returncode == 0, f"gst-launch-1.0 on {clip.name} exited {p.returncode}: {p.stderr[-800:]}")
    got = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            check(d["question"] not in got, f"{clip.name}: two answers to {d['question']!r}")
            got[d["question"]] = ((d["answer"], d["frames"], d["visual_tokens_kept"]), d["reduce"])
    return got


def cli_answer(mustdrop, clip, question, reduce, env):
    """(answer, frames, visual tokens kept) as mustdrop prints and reports them."""
    p = subprocess.run([mustdrop, "--video", str(clip), "--question", question, "--reduce", reduce],
                       capture_output=True, env=env, timeout=120)
    err = p.stderr.decode("utf-8", "replace")
    check(p.returncode == 0, f"mustdrop on {clip.name} / {question!r} exited {p.returncode}: {err[-800:]}")
    out = p.stdout.decode("utf-8", "replace")
    check(out.endswith("\n") and out.count("\n") == 1, f"mustdrop's stdout is not one line: {out!r}")
    m = re.search(r"prompt: \d+ rows, (\d+) of them image rows in (\d+) block", err)
    check(m, f"mustdrop's prompt report on {clip.name}: {err[-400:]}")
    return out[:-1], int(m.group(2)) if m else -1, int(m.group(1)) if m else -1


def main():
    mustdrop, root = os.path.abspath(sys.argv[1]), Path(sys.argv[2]).resolve()
    plugin = Path(os.environ["GST_PLUGIN_PATH"]) / "libgstmustdrop.so"
    model = root / "models" / "synthvqa" / "synthvqa-llm-f16.gguf"
    mmproj = root / "models" / "synthvqa" / "synthvqa-mmproj-f16.gguf"
    for f in (plugin, model, mmproj):
        if not f.is_file():
            print(f"FAIL: {f} missing")
            sys.exit(1)
    if not shutil.which("ffmpeg"):
        print("FAIL: the ffmpeg program is missing (bash .ci/install-deps); it encodes the clips")
        sys.exit(1)
    env = dict(os.environ)
    env.pop("MUSTDROP_MODEL_DIR", None)   # the CLI's default model: the bundled one
    prefix = launch_prefix(root, str(plugin))
    with tempfile.TemporaryDirectory() as td:
        split = Path(td) / "split"
        subprocess.run([sys.executable, str(root / "models" / "synthvqa" / "synthvqa.py"), "write",
                        "--split", "test", "--n", str(N_CLIPS), "--codec", "vp8", "--out", str(split)],
                       check=True, timeout=300)
        gst_env = dict(env, GST_REGISTRY=str(Path(td) / "registry.bin"))
        n = 0
        for clip, duration, questions in clips(root, split):
            gst = element_answers(prefix, gst_env, model, mmproj, clip, duration, questions)
            for q, expected in questions:
                if not check(q in gst, f"{clip.name}: the element gave no answer to {q!r}"):
                    continue
                el, reduce = gst[q]
                cli = cli_answer(mustdrop, clip, q, reduce, env)
                n += 1
                check(cli == el, f"{clip.name} / {q!r}: CLI (answer, frames, tokens) {cli} != element {el}")
                check(cli[0] and cli[0] == cli[0].strip(), f"{clip.name} / {q!r}: answer {cli[0]!r}")
                if expected is not None:
                    check(cli[0] == expected, f"{clip.name} / {q!r}: {cli[0]!r}, expected {expected!r}")
                print(f"ok {clip.name} {duration} s: {q!r} -> {cli[0]!r} ({cli[1]} frames, {cli[2]} "
                      f"visual tokens, {reduce})")
        check(n == 3 + 2 * N_CLIPS, f"{n} questions compared, expected {3 + 2 * N_CLIPS}")
    if fails:
        print(f"FAIL: CLI vs element: {len(fails)} problem(s)")
        sys.exit(1)
    print(f"PASS: the CLI and the element agree on {n} questions over {1 + N_CLIPS} clips")


if __name__ == "__main__":
    main()
