#!/usr/bin/env python3
"""Tests of the bundled default model (models/synthvqa/).

  sample:   `mustdrop` without -m (so through the default-model lookup) on
            pipelines/shapes.webm answers the three questions of shapes.json
            (the first two are the README's) exactly (greedy, 8 frames).
  accuracy: models/synthvqa/synthvqa.py writes the first N_CLIPS clips of the
            test split (needs numpy and the ffmpeg program); it must write
            the same bytes twice (seeded, one encoder thread); mustdrop-eval
            then scores >= MIN_ACCURACY on them, with no reduction. The full
            test split (500 questions) is measured in docs/accuracy.md: 94.0 %;
            this slice is a regression guard for the model and the port
            (48 questions: 97.9 % measured, bound 85 %; the model before scored
            95.8 % here, the 64 px one 37.5 %, a random-weight model about 0).
A missing model file, numpy or ffmpeg program fails the test: they come with
the repository or with .ci/install-deps (run by meson with Debian's
/usr/bin/python3, the build's `python` option).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

N_CLIPS = 24
MIN_ACCURACY = 0.85


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


def main():
    mode, mustdrop, mustdrop_eval, root = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    mdir = root / "models" / "synthvqa"
    for f in ("synthvqa-llm-f16.gguf", "synthvqa-mmproj-f16.gguf"):
        if not (mdir / f).is_file():
            fail(f"bundled model file {mdir / f} missing")
    env = dict(os.environ)
    env.pop("MUSTDROP_MODEL_DIR", None)
    if mode == "sample":
        clip = root / "pipelines" / "shapes.webm"
        info = json.loads(clip.with_suffix(".json").read_text())
        for k, q in enumerate(info["questions"]):
            r = subprocess.run([mustdrop, "--video", str(clip), "--frames", "8", "--question",
                                q["question"], "--temp", "0", "-n", "16", "-t", "2"],
                               capture_output=True, text=True, env=env, timeout=60)
            if r.returncode != 0:
                fail(f"mustdrop exited {r.returncode}: {r.stderr[-2000:]}")
            got = r.stdout.strip()
            if got != q["answer"]:
                fail(f"{q['question']!r}: answered {got!r}, expected {q['answer']!r}")
            print(f"ok {q['question']!r} -> {got!r}")
        return
    try:
        import numpy  # noqa: F401
    except ImportError:
        fail(f"numpy is not importable by {sys.executable} (Debian: python3-numpy; "
             "bash .ci/install-deps); it renders the clips")
    if not shutil.which("ffmpeg"):
        fail("the ffmpeg program is missing (Debian: ffmpeg; bash .ci/install-deps); it encodes the clips")
    gen = root / "models" / "synthvqa" / "synthvqa.py"
    with tempfile.TemporaryDirectory() as td:
        digests = []
        for k in range(2):
            out = Path(td) / f"split{k}"
            n = N_CLIPS if k == 0 else 3
            subprocess.run([sys.executable, str(gen), "write", "--split", "test", "--n", str(n),
                            "--out", str(out)], check=True, timeout=400)
            h = hashlib.sha256()
            for f in sorted((out / "clips").iterdir())[:3]:
                h.update(f.read_bytes())
            digests.append(h.hexdigest())
        if digests[0] != digests[1]:
            fail("synthvqa.py wrote different video bytes for the same clips")
        print("ok the generator is deterministic (3 clips written twice, same bytes)")
        r = subprocess.run([mustdrop_eval, "--split", str(Path(td) / "split0"), "--json", "-t", "2"],
                           capture_output=True, text=True, env=env, timeout=300)
        if r.returncode != 0:
            fail(f"mustdrop-eval exited {r.returncode}: {r.stderr[-2000:]}")
        print(r.stderr)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        if d["n"] != 2 * N_CLIPS or d.get("n_errors", 0):
            fail(f"expected {2 * N_CLIPS} questions without errors, got {d}")
        if d["accuracy"] < MIN_ACCURACY:
            fail(f"accuracy {d['accuracy']:.3f} < {MIN_ACCURACY} on {d['n']} questions")
        print(f"ok accuracy {100 * d['accuracy']:.1f}% on {d['n']} questions (bound {100 * MIN_ACCURACY:.0f}%)")


if __name__ == "__main__":
    main()
