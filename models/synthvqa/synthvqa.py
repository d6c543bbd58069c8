#!/usr/bin/env python3
"""Synthetic video question answering: scenes, questions, frames and video files.

A clip is D seconds (4..32) split into SLOTS equal slots. Two to four objects
(a shape, a colour, a size) appear and disappear on slot boundaries, some move
and stop, over a static textured background. Because everything that changes
state does so on a slot boundary, one frame per slot (any phase inside the
slot) sees every state the questions ask about: `mustdrop --video --frames 8`
(frame i*n/8, the first frame of slot i) and the element at sample-fps=8/D see
exactly what the model was trained on.

Questions need small or brief things and the order of events:
  colour_of   "What colour is the small triangle?"       -> red
  shape_of    "What shape is the blue object?"           -> star
  size_of     "Is the green circle small or large?"      -> small
  enters_last "Which shape enters last?"                 -> square
  first_colour "Which colour appears first?"             -> yellow
  stop_where  "Where does the red circle stop?"          -> top left
  count       "How many squares appear?"                 -> two
  after       "What happens after the blue star appears?" -> the red circle disappears
  exists      "Is there a yellow star?"                  -> no

Splits are seeded (train 1, val 2, test 3, sample 4): clip i of split s is
made from numpy's SeedSequence([SEED_BASE, s, i]) and nothing else, so a
split can be regenerated anywhere, bit for bit. The test split is never read
by the training script.

The dense variant (`--variant dense`, models/synthvqa/README.md "The dense
variant") is the same task drawn for a tower of 16 px patches (8x8 a frame):
smaller objects (radius 6 / 10 px instead of 9 / 16, one to four patches for
a small one) over the same textures plus a drifting striped band and soft
moving blobs that no question is about. Its clips come from
SeedSequence([SEED_BASE, s, i, 1]): other clips, while the default variant's
stay byte-identical.

    python3 models/synthvqa/synthvqa.py write --split test --n 250 --out DIR
        writes DIR/clips/*.mp4 (H.264, yuv420p, through the ffmpeg program) and
        DIR/manifest.jsonl (one question per line; see mustdrop-eval)
    python3 models/synthvqa/synthvqa.py write --variant dense --split test --n 250 --out DIR
        the same for the dense variant (clips/dense-test-*.mp4)
    python3 models/synthvqa/synthvqa.py sample --out pipelines/shapes.webm
        the bundled sample clip (VP8/WebM for GStreamer's decodebin) and
        pipelines/shapes.json with its questions and answers
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SEED_BASE = 20261122
SPLITS = {"train": 1, "val": 2, "test": 3, "sample": 4}
SLOTS = 8
FPS = 8                  # 8 frames a second: slot boundaries fall on frames for any whole D
RENDER = 128             # video frames are RENDER x RENDER
COLOURS = {"red": (220, 40, 40), "green": (40, 185, 60), "blue": (45, 85, 235),
           "yellow": (240, 215, 30), "white": (245, 245, 245)}
SHAPES = ("circle", "square", "triangle", "star")
SIZES = {"small": 9.0, "large": 16.0}        # radius in pixels at RENDER
# an object at rest sits within JITTER px of its cell's centre: inside the
# cell, so a 3x3 patch grid (the model's 32 px patches at 96 px) sees each
# resting object in exactly one patch
JITTER = 3.0
CELLS = ("top left", "top", "top right", "left", "center", "right",
         "bottom left", "bottom", "bottom right")
NUMBERS = ("zero", "one", "two", "three", "four")
QTYPES = ("colour_of", "shape_of", "size_of", "enters_last", "first_colour", "stop_where",
          "count", "after", "exists")
# Every answer a question type can have; `after` answers are open-ended
# event phrases ("the red circle disappears"), so it has no set here.
ANSWER_SETS = {"colour_of": tuple(COLOURS), "shape_of": SHAPES, "size_of": tuple(SIZES),
               "enters_last": SHAPES, "first_colour": tuple(COLOURS), "stop_where": CELLS,
               "count": NUMBERS, "exists": ("yes", "no")}


@dataclass(frozen=True)
class Variant:
    """What differs between the shipped task and its dense variant."""
    name: str
    seed_tag: tuple          # appended to a clip's SeedSequence entropy
    sizes: dict              # radius in pixels at RENDER per size name
    moving_background: bool  # a drifting striped band and moving blobs


BASE = Variant("base", (), SIZES, False)
# 16 px patches: a small object (12 px across) covers one to four patches,
# a large one (20 px) four to nine, so most of a frame's 64 patches are
# background; the questions' words and answers are unchanged
DENSE = Variant("dense", (1,), {"small": 6.0, "large": 10.0}, True)
VARIANTS = {v.name: v for v in (BASE, DENSE)}


@dataclass
class Obj:
    shape: str
    colour: str
    size: str
    appear: int                  # slot of appearance (visible from its start)
    leave: int                   # first slot where it is gone (SLOTS: stays)
    path: tuple                  # (x0, y0, x1, y1) centre at rest before / after the move
    move: tuple | None           # (m0, m1) slots during which it moves; None: static
    stop_cell: int
    tint: tuple = (0, 0, 0)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    def pos(self, t: float) -> tuple | None:
        """Centre at time t (in slots), None when not visible."""
        if not (self.appear <= t < self.leave):
            return None
        x0, y0, x1, y1 = self.path
        if self.move is None:
            return x1, y1
        m0, m1 = self.move
        a = min(max((t - m0) / (m1 - m0), 0.0), 1.0)
        return x0 + (x1 - x0) * a, y0 + (y1 - y0) * a


@dataclass
class Band:
    """A strip of stripes across the frame whose phase drifts with time."""
    vertical: bool
    start: int                   # first row (column) of the strip
    width: int
    freq: float                  # stripes per RENDER pixels
    speed: float                 # stripe periods per slot
    colours: tuple               # two muted RGB colours


@dataclass
class Blob:
    """A soft muted ellipse drifting at constant speed (wraps around)."""
    x: float
    y: float
    vx: float                    # pixels per slot
    vy: float
    rx: float
    ry: float
    colour: tuple


@dataclass
class Scene:
    duration: int                # seconds
    objects: list
    background: np.ndarray = field(repr=False)   # [RENDER, RENDER, 3] float32
    variant: Variant = BASE
    band: Band | None = None
    blobs: list = field(default_factory=list)


def cell_centre(c: int) -> tuple:
    step = RENDER / 3.0
    return (c % 3 + 0.5) * step, (c // 3 + 0.5) * step


# ----------------------------------------------------------------------------- scenes

def make_background(rng) -> np.ndarray:
    """A static muted texture: smooth noise, stripes, checks or blotches."""
    n = RENDER
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / n
    hue = rng.uniform(0, 1, 2)
    base = []
    for h in hue:      # low-saturation colours, value 55..145
        v = rng.uniform(55, 145)
        s = rng.uniform(0.05, 0.35)
        rgb = np.array([np.cos(2 * np.pi * (h + k / 3.0)) for k in range(3)], np.float32)
        base.append(v * (1 + s * rgb))
    kind = rng.integers(4)
    if kind == 0:
        g = rng.uniform(0, 1, (6, 6)).astype(np.float32)
        gi = np.clip((y * 5).astype(int), 0, 4)
        gj = np.clip((x * 5).astype(int), 0, 4)
        fy, fx = y * 5 - gi, x * 5 - gj
        m = (g[gi, gj] * (1 - fy) * (1 - fx) + g[gi + 1, gj] * fy * (1 - fx)
             + g[gi, gj + 1] * (1 - fy) * fx + g[gi + 1, gj + 1] * fy * fx)
    elif kind == 1:
        a, f = rng.uniform(0, np.pi), rng.uniform(4, 12)
        m = 0.5 + 0.5 * np.sin(2 * np.pi * f * (x * np.cos(a) + y * np.sin(a)))
    elif kind == 2:
        k = int(rng.integers(3, 9))
        m = ((np.floor(x * k) + np.floor(y * k)) % 2).astype(np.float32)
    else:
        m = np.zeros((n, n), np.float32)
        for _ in range(int(rng.integers(4, 10))):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.25)
            m = np.maximum(m, np.clip(1 - ((x - cx) ** 2 + (y - cy) ** 2) / r ** 2, 0, 1))
    img = base[0][None, None, :] * (1 - m[..., None]) + base[1][None, None, :] * m[..., None]
    img = img + rng.normal(0, 5, img.shape)
    return img.astype(np.float32)


def muted_colour(rng, lo: float, hi: float) -> tuple:
    """A low-saturation colour (value lo..hi): never one the questions name."""
    v, s, h = rng.uniform(lo, hi), rng.uniform(0.05, 0.3), rng.uniform(0, 1)
    return tuple(float(v * (1 + s * np.cos(2 * np.pi * (h + k / 3.0)))) for k in range(3))


def make_motion(rng) -> tuple:
    """The dense variant's moving background: one band, two to four blobs.
    Blobs are 6..13 px radii, blurred and unsaturated, and never stop: a
    token that changes between frames is not necessarily an object."""
    width = int(rng.integers(12, 25))
    band = Band(bool(rng.random() < 0.5), int(rng.integers(0, RENDER - width)), width,
                float(rng.uniform(6, 14)), float(rng.uniform(0.2, 0.6)) * (1 if rng.random() < 0.5 else -1),
                (muted_colour(rng, 50, 120), muted_colour(rng, 110, 170)))
    blobs = []
    for _ in range(int(rng.integers(2, 5))):
        ang = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(3, 9)
        blobs.append(Blob(float(rng.uniform(0, RENDER)), float(rng.uniform(0, RENDER)),
                          float(speed * np.cos(ang)), float(speed * np.sin(ang)),
                          float(rng.uniform(6, 13)), float(rng.uniform(6, 13)),
                          muted_colour(rng, 60, 160)))
    return band, blobs


def make_scene(rng, duration: int | None = None, variant: Variant = BASE) -> Scene:
    d = int(rng.integers(4, 33))
    duration = duration or d
    n_obj = int(rng.integers(2, 5))
    kinds = set()
    objs = []
    cells = list(rng.permutation(9))
    while len(objs) < n_obj:
        shape = SHAPES[rng.integers(len(SHAPES))]
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        if (shape, colour) in kinds:
            continue
        kinds.add((shape, colour))
        size = "small" if rng.random() < 0.5 else "large"
        r = rng.random()
        if r < 0.3:            # brief: one or two slots
            span = int(rng.integers(1, 3))
        elif r < 0.6:
            span = int(rng.integers(3, SLOTS + 1))
        else:
            span = SLOTS
        appear = int(rng.integers(0, SLOTS - span + 1))
        if span == SLOTS:
            appear = 0
        elif rng.random() < 0.5 and appear + span < SLOTS:
            # stays until the end more often than not: late entries matter
            span = SLOTS - appear
        leave = appear + span
        end_cell = int(cells.pop())
        x1, y1 = cell_centre(end_cell)
        x1 += rng.uniform(-JITTER, JITTER)
        y1 += rng.uniform(-JITTER, JITTER)
        move = None
        x0, y0 = x1, y1
        if span >= 2 and rng.random() < 0.6:
            start_cell = int(rng.choice([c for c in range(9) if c != end_cell]))
            x0, y0 = cell_centre(start_cell)
            x0 += rng.uniform(-JITTER, JITTER)
            y0 += rng.uniform(-JITTER, JITTER)
            m0 = appear
            m1 = int(rng.integers(appear + 1, leave))       # at rest for >= 1 slot before leaving
            move = (m0, m1)
        tint = tuple(int(v) for v in rng.integers(-14, 15, 3))
        objs.append(Obj(shape, colour, size, appear, leave, (x0, y0, x1, y1), move, end_cell, tint))
    scene = Scene(duration, objs, make_background(rng), variant)
    if variant.moving_background:
        # drawn after everything the default variant draws: its clips stay as they were
        scene.band, scene.blobs = make_motion(rng)
    return scene


# ----------------------------------------------------------------------------- rendering

def shape_coverage(shape: str, cx: float, cy: float, r: float, x, y) -> np.ndarray:
    """Anti-aliased coverage (0..1) from a signed distance, about one pixel wide."""
    dx, dy = x - cx, y - cy
    if shape == "circle":
        d = np.sqrt(dx * dx + dy * dy) - r
    elif shape == "square":
        s = r * 0.88
        d = np.maximum(np.abs(dx), np.abs(dy)) - s
    elif shape == "triangle":
        # upward equilateral triangle with circumradius r*1.15
        R = r * 1.2
        d = np.full(dx.shape, -1e9, np.float32)
        for k in range(3):
            a = np.pi / 2 + 2 * np.pi * k / 3 + np.pi       # outward normals of the edges
            nx, ny = np.cos(a), -np.sin(a)
            d = np.maximum(d, dx * nx + dy * ny - R * 0.5)
    else:   # five-pointed star: radius modulated by angle
        ang = np.arctan2(-dy, dx) - np.pi / 2
        rad = np.sqrt(dx * dx + dy * dy)
        k = np.abs(((ang / (2 * np.pi / 5)) % 1.0) - 0.5) * 2      # 1 at tips, 0 between
        rr = r * 1.15 * (0.45 + 0.55 * k)
        d = rad - rr
    return np.clip(0.5 - d, 0.0, 1.0)


def draw_motion(img: np.ndarray, scene: Scene, t: float) -> None:
    """The band and the blobs at time t, in place."""
    b = scene.band
    axis = np.arange(RENDER, dtype=np.float32) + 0.5
    m = 0.5 + 0.5 * np.sin(2 * np.pi * (b.freq * axis / RENDER - b.speed * t))
    c0, c1 = np.array(b.colours[0], np.float32), np.array(b.colours[1], np.float32)
    stripe = c0 * (1 - m[:, None]) + c1 * m[:, None]                    # [RENDER, 3]
    if b.vertical:
        img[:, b.start:b.start + b.width] = stripe[:, None, :]
    else:
        img[b.start:b.start + b.width] = stripe[None, :, :]
    y, x = np.mgrid[0:RENDER, 0:RENDER].astype(np.float32) + 0.5
    for bl in scene.blobs:
        cx = (bl.x + bl.vx * t) % (RENDER + 2 * bl.rx) - bl.rx
        cy = (bl.y + bl.vy * t) % (RENDER + 2 * bl.ry) - bl.ry
        d2 = ((x - cx) / bl.rx) ** 2 + ((y - cy) / bl.ry) ** 2
        a = 0.85 * np.clip(1.2 - d2, 0.0, 1.0) ** 0.5 / 1.2 ** 0.5      # soft edge
        img[:] = img * (1 - a[..., None]) + np.array(bl.colour, np.float32) * a[..., None]


def render_frame(scene: Scene, t: float) -> np.ndarray:
    """The frame at time t (in slots) as uint8 [RENDER, RENDER, 3]."""
    img = scene.background.copy()
    if scene.band is not None:
        draw_motion(img, scene, t)
    for o in scene.objects:
        p = o.pos(t)
        if p is None:
            continue
        r = scene.variant.sizes[o.size]
        x0 = max(int(p[0] - 2 * r), 0)
        x1 = min(int(p[0] + 2 * r) + 2, RENDER)
        y0 = max(int(p[1] - 2 * r), 0)
        y1 = min(int(p[1] + 2 * r) + 2, RENDER)
        y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        cov = shape_coverage(o.shape, p[0], p[1], r, x, y)[..., None]
        col = np.clip(np.array(COLOURS[o.colour], np.float32) + np.array(o.tint, np.float32), 0, 255)
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - cov) + col * cov
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def video_frames(scene: Scene):
    """Every frame of the clip at FPS, in order."""
    n = scene.duration * FPS
    for i in range(n):
        yield render_frame(scene, i * SLOTS / n)


# ----------------------------------------------------------------------------- questions

def events(scene: Scene) -> list:
    """(slot, text) of every appearance after the start and every disappearance."""
    ev = []
    for o in scene.objects:
        if o.appear > 0:
            ev.append((o.appear, f"the {o.name} appears"))
        if o.leave < SLOTS:
            ev.append((o.leave, f"the {o.name} disappears"))
    return ev


def questions(scene: Scene, rng) -> list:
    """Every question this scene answers unambiguously: (type, question, answer)."""
    objs = scene.objects
    out = []
    for size in SIZES:
        for shape in SHAPES:
            m = [o for o in objs if o.size == size and o.shape == shape]
            if len(m) == 1:
                out.append(("colour_of", f"What colour is the {size} {shape}?", m[0].colour))
    for colour in COLOURS:
        m = [o for o in objs if o.colour == colour]
        if len(m) == 1:
            out.append(("shape_of", f"What shape is the {colour} object?", m[0].shape))
    for o in objs:
        out.append(("size_of", f"Is the {o.name} small or large?", o.size))
    last = max(o.appear for o in objs)
    m = [o for o in objs if o.appear == last]
    if last > 0 and len(m) == 1:
        out.append(("enters_last", "Which shape enters last?", m[0].shape))
    first = min(o.appear for o in objs)
    m = [o for o in objs if o.appear == first]
    if len(m) == 1:
        out.append(("first_colour", "Which colour appears first?", m[0].colour))
    for o in objs:
        if o.move is not None:
            out.append(("stop_where", f"Where does the {o.name} stop?", CELLS[o.stop_cell]))
    for shape in SHAPES:
        n = sum(o.shape == shape for o in objs)
        out.append(("count", f"How many {shape}s appear?", NUMBERS[n]))
    ev = events(scene)
    for o in objs:
        if o.appear == 0:
            continue
        later = [e for e in ev if e[0] > o.appear]
        if not later:
            continue
        t = min(e[0] for e in later)
        nxt = [e for e in later if e[0] == t]
        if len(nxt) == 1:
            out.append(("after", f"What happens after the {o.name} appears?", nxt[0][1]))
    present = {(o.colour, o.shape) for o in objs}
    for o in objs:
        out.append(("exists", f"Is there a {o.name}?", "yes"))
    for _ in range(len(objs)):
        o = objs[rng.integers(len(objs))]
        if rng.random() < 0.5:
            c, s = o.colour, SHAPES[rng.integers(len(SHAPES))]
        else:
            c, s = list(COLOURS)[rng.integers(len(COLOURS))], o.shape
        if (c, s) not in present:
            out.append(("exists", f"Is there a {c} {s}?", "no"))
    return out


def pick_questions(qs: list, rng, k: int) -> list:
    """k questions of distinct types where possible (types chosen uniformly)."""
    by = {}
    for q in qs:
        by.setdefault(q[0], []).append(q)
    types = list(by)
    rng.shuffle(types)
    out = []
    for t in types[:k]:
        out.append(by[t][rng.integers(len(by[t]))])
    return out


def clip_rng(split: str, index: int, variant: Variant = BASE):
    return np.random.default_rng(np.random.SeedSequence([SEED_BASE, SPLITS[split], index,
                                                         *variant.seed_tag]))


# ----------------------------------------------------------------------------- text

VICUNA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the human's questions.")


def prompt_text(question: str, n_frames: int) -> str:
    """What libmustdrop renders for LLaVA-1.5 (Vicuna v1, one <image> per frame)."""
    return f"{VICUNA_SYSTEM} USER: " + "<image>\n" * n_frames + f"{question} ASSISTANT:"


def corpus_lines() -> list:
    """Every question and answer text the task can produce (for the vocabulary)."""
    lines = [VICUNA_SYSTEM]
    names = [f"{c} {s}" for c in COLOURS for s in SHAPES]
    for size in SIZES:
        for s in SHAPES:
            lines.append(f"What colour is the {size} {s}?")
    for c in COLOURS:
        lines.append(f"What shape is the {c} object?")
    for n in names:
        lines += [f"Is the {n} small or large?", f"Where does the {n} stop?",
                  f"What happens after the {n} appears?", f"Is there a {n}?",
                  f"the {n} appears", f"the {n} disappears"]
    lines += ["Which shape enters last?", "Which colour appears first?"]
    lines += [f"How many {s}s appear?" for s in SHAPES]
    lines += list(COLOURS) + list(SHAPES) + list(SIZES) + list(CELLS) + list(NUMBERS) + ["yes", "no"]
    return lines


# ----------------------------------------------------------------------------- files

def write_video(frames, path: Path, codec: str = "h264") -> None:
    ff = shutil.which("ffmpeg")
    if not ff:
        sys.exit("error: the ffmpeg program is needed to write videos (Debian: apt-get install ffmpeg)")
    if codec == "h264":
        enc = ["-c:v", "libx264", "-preset", "medium", "-crf", "16", "-pix_fmt", "yuv420p",
               "-g", str(FPS * 4)]
    elif codec == "vp8":
        enc = ["-c:v", "libvpx", "-b:v", "1500k", "-crf", "6", "-qmin", "0", "-qmax", "20",
               "-pix_fmt", "yuv420p", "-auto-alt-ref", "0"]
    else:
        raise ValueError(codec)
    # one encoder thread: x264's and libvpx's output depends on the thread
    # count, and a split must be the same file on every machine
    cmd = [ff, "-v", "error", "-y", "-threads", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
           f"{RENDER}x{RENDER}", "-r", str(FPS), "-i", "-", *enc, "-threads", "1", "-fflags", "+bitexact",
           "-flags:v", "+bitexact", "-map_metadata", "-1", str(path)]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for f in frames:
        p.stdin.write(f.tobytes())
    p.stdin.close()
    if p.wait() != 0:
        sys.exit(f"error: ffmpeg failed writing {path}")


def scene_record(scene: Scene) -> dict:
    return {"duration": scene.duration,
            "objects": [{"shape": o.shape, "colour": o.colour, "size": o.size, "appear": o.appear,
                         "leave": o.leave, "move": o.move, "stop": CELLS[o.stop_cell]}
                        for o in scene.objects]}


def write_split(split: str, n: int, out: Path, per_clip: int, codec: str,
                variant: Variant = BASE) -> None:
    (out / "clips").mkdir(parents=True, exist_ok=True)
    ext = "mp4" if codec == "h264" else "webm"
    prefix = "" if variant is BASE else f"{variant.name}-"
    with open(out / "manifest.jsonl", "w") as mf:
        for i in range(n):
            rng = clip_rng(split, i, variant)
            scene = make_scene(rng, variant=variant)
            qs = pick_questions(questions(scene, rng), rng, per_clip)
            name = f"clips/{prefix}{split}-{i:06d}.{ext}"
            write_video(video_frames(scene), out / name, codec)
            for k, (qt, q, a) in enumerate(qs):
                line = {"id": f"{prefix}{split}-{i:06d}-{k}", "video": name, "question": q, "answer": a,
                        "type": qt}
                if qt in ANSWER_SETS:   # mustdrop-eval --choices-per-type
                    line["choices"] = "|".join(ANSWER_SETS[qt])
                line["scene"] = scene_record(scene)
                mf.write(json.dumps(line) + "\n")
            if (i + 1) % 50 == 0:
                print(f"{split}: {i + 1}/{n} clips", file=sys.stderr)


def write_sample(out: Path, first: int) -> None:
    """The bundled sample: the first clip of the sample split (from index
    `first`) that is 8 s long (one slot a second: sample-fps=1 sees every
    state), with at least three objects, one of them moving, that asks three
    of the issue's example questions: the colour of a small object, which
    shape enters last, and where an object stops. Written as VP8/WebM
    (GStreamer's decodebin plays it with plugins-good) plus a JSON file with
    its questions and answers, in that order."""
    for i in range(first, first + 10000):
        rng = clip_rng("sample", i)
        scene = make_scene(rng, duration=8)
        qs = questions(scene, rng)
        small = [q for q in qs if q[0] == "colour_of" and "small" in q[1]]
        last = [q for q in qs if q[0] == "enters_last"]
        stop = [q for q in qs if q[0] == "stop_where"]
        if small and last and stop and len(scene.objects) >= 3:
            break
    else:
        sys.exit("error: no suitable sample scene")
    chosen = (small[0], last[0], stop[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(video_frames(scene), out, "vp8")
    info = {"split": "sample", "index": i, "fps": FPS, "size": [RENDER, RENDER],
            "scene": scene_record(scene),
            "questions": [{"type": q[0], "question": q[1], "answer": q[2]} for q in chosen]}
    out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {out} (sample clip {i}): " + "; ".join(f"{q[1]} -> {q[2]}" for q in chosen))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write a split as video files + manifest.jsonl")
    w.add_argument("--split", choices=list(SPLITS), required=True)
    w.add_argument("--n", type=int, required=True, help="number of clips")
    w.add_argument("--per-clip", type=int, default=2, help="questions per clip (distinct types)")
    w.add_argument("--codec", choices=("h264", "vp8"), default="h264")
    w.add_argument("--variant", choices=list(VARIANTS), default="base",
                   help="base: the shipped model's task; dense: for 16 px patches (README)")
    w.add_argument("--out", required=True)
    sm = sub.add_parser("sample", help="write the bundled sample clip (WebM) and its questions")
    sm.add_argument("--out", required=True, help="e.g. pipelines/shapes.webm")
    sm.add_argument("--first", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "sample":
        write_sample(Path(args.out), args.first)
    elif args.cmd == "write":
        write_split(args.split, args.n, Path(args.out), args.per_clip, args.codec,
                    VARIANTS[args.variant])


if __name__ == "__main__":
    main()
