#!/usr/bin/python3
"""The progress line of `mustdrop --video` and `mustdrop-eval` (core/cli/progress.c).

Each program runs with its stderr (and stdout) on a pseudo-terminal of a known
width, and what the terminal received is read back: the progress lines are
there ("\\r" TEXT ESC[K), say what they should (frames decoded against the
file's stated duration, the frames encoded, clips and questions done, the
accuracy so far, the time left), fit the terminal's width, are erased before
any other output, come at most PROGRESS_HZ times a second, and what remains
once they are taken out is the output of a run without a terminal. Without a
terminal, or with --no-progress, nothing of them is printed; --progress
draws them into a file.

Usage: test_progress.py MUSTDROP_EVAL MUSTDROP SOURCE_ROOT
"""
import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import time

evalx, mdx, root = [os.path.abspath(a) for a in sys.argv[1:4]]
fx = os.path.join(root, "models", "fixtures", "vision")
llm = os.path.join(fx, "tiny-llava-llm-f32.gguf")
proj = os.path.join(fx, "tiny-llava-mmproj-f32.gguf")
sample = os.path.join(root, "pipelines", "sample.webm")
for f in (llm, proj, sample):
    if not os.path.isfile(f):
        print(f"FAIL: {f} not found (it is part of the repository)")
        sys.exit(1)
MODEL = ["-m", llm, "--mmproj", proj, "-t", "1"]
PROGRESS_HZ = 4              # core/cli/progress.h
DRAW = re.compile(rb"\r([^\r\n\x1b]*)\x1b\[K")   # a draw, or (empty) an erase
TIMEOUT = 300

fails = []


def check(cond, what):
    if not cond:
        fails.append(what)
        print("FAIL:", what)


def run_tty(args, cols):
    """args with stdout and stderr on a pseudo-terminal cols wide: the exit
    status, what the terminal received ("\\r\\n" as "\\n") and the seconds
    the run took."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    got = bytearray()
    while time.monotonic() - t0 < TIMEOUT:
        if not select.select([master], [], [], 1.0)[0]:
            if p.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:      # EIO: the terminal's last writer has gone
            break
        if not chunk:
            break
        got += chunk
    try:
        rc = p.wait(timeout=max(1.0, TIMEOUT - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
        check(False, f"{args[0]} timed out on a terminal")
    secs = time.monotonic() - t0
    os.close(master)
    return rc, bytes(got).replace(b"\r\n", b"\n"), secs


def run_plain(args, stderr_path=None):
    """args without a terminal: exit status, stdout, stderr (stderr_path:
    into that file, as a user's 2>file)."""
    if stderr_path:
        with open(stderr_path, "wb") as ef:
            p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=ef,
                               timeout=TIMEOUT)
        with open(stderr_path, "rb") as ef:
            return p.returncode, p.stdout, ef.read()
    p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=TIMEOUT)
    return p.returncode, p.stdout, p.stderr


def draws(tty):
    return [m.group(1) for m in DRAW.finditer(tty) if m.group(1)]


def without_progress(tty):
    return DRAW.sub(b"", tty)


def masked_lines(text):
    """The lines, figures masked (times differ from run to run), sorted:
    stdout and stderr interleave on a terminal, apart they do not."""
    return sorted(re.sub(rb"\d+(\.\d+)?", b"N", l) for l in text.split(b"\n") if l)


def check_common(name, tty, plain_out, plain_err, secs, cols):
    """What every run on a terminal must show."""
    d = draws(tty)
    check(d, f"{name}: no progress line on the terminal: {tty[-300:]!r}")
    check(all(len(x) <= cols - 1 for x in d),
          f"{name}: a progress line wider than {cols - 1} columns: {max(d, key=len, default=b'')!r}")
    # every draw is followed by another draw or an erase, never by other text
    for m in DRAW.finditer(tty):
        rest = tty[m.end():]
        if m.group(1) and not rest.startswith(b"\r"):
            check(False, f"{name}: text after a progress line that was not erased: "
                         f"{tty[m.start():m.end() + 60]!r}")
            break
    check(masked_lines(without_progress(tty)) == masked_lines(plain_out + plain_err),
          f"{name}: the output less its progress lines is not that of a run without a terminal:"
          f"\n{without_progress(tty)[-600:]!r}\n{(plain_out + plain_err)[-600:]!r}")
    # the forced draws (the first, the stages) plus PROGRESS_HZ a second
    check(len(d) <= PROGRESS_HZ * secs + 8,
          f"{name}: {len(d)} progress lines in {secs:.2f} s (at most {PROGRESS_HZ} a second)")


def check_quiet(name, args, tmp):
    """No terminal, or --no-progress on one: nothing of the progress line."""
    rc, out, err = run_plain(args, os.path.join(tmp, "stderr.txt"))
    check(rc == 0 and b"\r" not in err and b"\x1b" not in err,
          f"{name}, stderr a file: exit {rc}, progress bytes in {err[-300:]!r}")
    rc, tty, _ = run_tty(args + ["--no-progress"], 200)
    check(rc == 0 and b"\r" not in tty and b"\x1b" not in tty,
          f"{name} --no-progress on a terminal: exit {rc}, {tty[-300:]!r}")
    rc, out, err = run_plain(args + ["--progress"], os.path.join(tmp, "stderr.txt"))
    check(rc == 0 and draws(err) and all(len(x) <= 79 for x in draws(err)),
          f"{name} --progress, stderr a file: exit {rc}, no 79-column progress lines in {err[-300:]!r}")


def test_mustdrop(tmp, video, seconds):
    args = [mdx, *MODEL, "--video", video, "--question", "What is happening?", "-n", "8"]
    rc, out, err = run_plain(args)
    check(rc == 0 and out.endswith(b"\n"), f"mustdrop: exit {rc}: {err[-300:]!r}")
    used = re.search(rb"using (\d+) frame\(s\)", err)
    check(used, f"mustdrop's video line: {err[-300:]!r}")
    rc, tty, secs = run_tty(args, 200)
    check(rc == 0, f"mustdrop on a terminal: exit {rc}: {tty[-300:]!r}")
    check_common("mustdrop", tty, out, err, secs, 200)
    d = draws(tty)
    first = rb"decoding 1 frames, 0 taken \| 0\.0/%d\.0 s \(0%%\) \| 0:00 elapsed" % seconds
    check(d and re.fullmatch(first, d[0]), f"mustdrop: the first progress line: {d[:1]!r}")
    enc = [x for x in d if x.startswith(b"encoding ")]
    check(enc and used and re.fullmatch(rb"encoding %s frame\(s\) and the prompt \| \d+:\d\d elapsed"
                                        % used.group(1), enc[0]),
          f"mustdrop: the encoding line: {enc[:1]!r}, {used.group(0) if used else None!r}")
    check(all(re.fullmatch(rb"decoding \d+ frames, \d+ taken \| \d+\.\d/%d\.0 s \(\d+%%\) \| "
                           rb"\d+:\d\d elapsed(, \d+:\d\d left)?" % seconds, x)
              for x in d if x.startswith(b"decoding")),
          f"mustdrop: decoding lines: {d!r}")
    # the answer begins on an erased line, and ends the progress
    check(b"\r\x1b[K" + out in tty and not DRAW.search(tty[tty.find(out):]),
          f"mustdrop: the answer {out!r} not on a line of its own after the progress: {tty[-300:]!r}")
    # a narrow terminal: the line is cut to its width
    rc, tty, secs = run_tty(args, 40)
    d = draws(tty)
    check(rc == 0 and d and max(len(x) for x in d) == 39,
          f"mustdrop on 40 columns: {d!r}")
    check_quiet("mustdrop", args, tmp)


def test_eval(tmp, long_video):
    split = os.path.join(tmp, "split")
    os.makedirs(split)
    shutil.copy(sample, os.path.join(split, "sample.webm"))
    shutil.copy(long_video, os.path.join(split, "long.mp4"))
    qs = [("s-1", "sample.webm"), ("s-2", "sample.webm"), ("l-1", "long.mp4"),
          ("m-1", "missing.mp4"), ("s-3", "sample.webm")]
    with open(os.path.join(split, "manifest.jsonl"), "w") as f:
        for id_, v in qs:
            f.write('{"id": "%s", "video": "%s", "question": "What is happening?", '
                    '"answer": "x", "type": "motion"}\n' % (id_, v))
    args = [evalx, "--split", split, *MODEL]
    rc, out, err = run_plain(args)
    check(rc == 0 and b"n 5, accuracy" in out, f"mustdrop-eval: exit {rc}: {err[-300:]!r}")
    acc = re.search(rb"\nall +5 +\d+ +(\d+\.\d)%", out)
    rc, tty, secs = run_tty(args, 200)
    check(rc == 0, f"mustdrop-eval on a terminal: exit {rc}: {tty[-300:]!r}")
    check_common("mustdrop-eval", tty, out, err, secs, 200)
    d = draws(tty)
    line = re.compile(rb"clips (\d)/4 \| questions (\d)/5 \| accuracy (\d+\.\d)% \| "
                      rb"\d+:\d\d elapsed(, \d+:\d\d left)?")
    ms = [line.fullmatch(x) for x in d]
    check(d and all(ms), f"mustdrop-eval: progress lines: {d!r}")
    if d and all(ms):
        done = [int(m.group(2)) for m in ms]
        check(done == sorted(done) and set(done) == set(range(6)),
              f"mustdrop-eval: questions done, in order: {done}")
        check(ms[0].group(1, 2, 4) == (b"0", b"0", None), f"mustdrop-eval: the first line: {d[0]!r}")
        check(all(m.group(4) for m in ms if m.group(2) != b"0"),
              f"mustdrop-eval: no time left once a question is done: {d!r}")
        # clips: s-1 s-2 | l-1 | m-1 | s-3, done when their last question is
        clips = {int(m.group(2)): int(m.group(1)) for m in ms}
        check(clips == {0: 0, 1: 0, 2: 1, 3: 2, 4: 3, 5: 4}, f"mustdrop-eval: clips done: {clips}")
        check(acc and ms[-1].group(3) == acc.group(1),
              f"mustdrop-eval: the last accuracy {ms[-1].group(3)!r}, the report's "
              f"{acc.group(1) if acc else None!r}")
    # each question's line starts on an erased line
    for k in range(1, 6):
        if k == 4:
            continue        # the missing video's line says so instead
        check(re.search(rb"\r\x1b\[Kmustdrop-eval: \[%d/5\] " % k, tty),
              f"mustdrop-eval: [{k}/5] not on an erased line: {tty[-600:]!r}")
    check(b"\r\x1b[Kmustdrop-eval: line 4 (id m-1): video: cannot open" in tty,
          f"mustdrop-eval: the missing video's line: {tty[-600:]!r}")
    check_quiet("mustdrop-eval", args, tmp)


tmp = tempfile.mkdtemp()
try:
    # a 120 s clip of 3000 small frames: a decode long enough to be paced
    long_video = os.path.join(tmp, "long.mp4")
    gen = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                          "testsrc=size=64x48:rate=25", "-t", "120", "-c:v", "mpeg4", long_video])
    if gen.returncode != 0:
        print("FAIL: ffmpeg cannot write the test clip (bash .ci/install-deps)")
        sys.exit(1)
    test_mustdrop(tmp, long_video, 120)
    test_mustdrop(tmp, sample, 6)
    test_eval(tmp, long_video)
finally:
    shutil.rmtree(tmp, ignore_errors=True)

if fails:
    print(f"FAIL: progress lines: {len(fails)} problem(s)")
    sys.exit(1)
print("PASS: progress lines")
