#!/usr/bin/env python3
"""The dense task variant of models/synthvqa/synthvqa.py (README "The dense
variant"), which a bundled dense model will be trained and scored on:

  - `write --variant dense` is deterministic (2 clips written twice, same
    bytes) and names its clips and ids dense-<split>-...;
  - its clips are other clips than the default variant's (own seeds);
  - a small object covers one to four 16 px patches and a large one at most
    nine, wherever it rests (60 scenes, every object at rest);
  - the background moves: between two frames of a clip, pixels no object
    covers change.
The default variant's bytes are guarded by test_synthvqa.py (accuracy mode).
Needs numpy and the ffmpeg program (Debian: python3-numpy, ffmpeg).
"""
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PATCH = 16


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


def footprint(S, scene, o, t):
    """16 px patches with any coverage of object o at time t."""
    import numpy as np
    p = o.pos(t)
    r = scene.variant.sizes[o.size]
    y, x = np.mgrid[0:S.RENDER, 0:S.RENDER].astype(np.float32) + 0.5
    cov = S.shape_coverage(o.shape, p[0], p[1], r, x, y) > 0
    g = S.RENDER // PATCH
    return int(cov.reshape(g, PATCH, g, PATCH).any((1, 3)).sum())


def check_geometry(S):
    import numpy as np
    for i in range(60):
        rng = S.clip_rng("val", i, S.DENSE)
        scene = S.make_scene(rng, variant=S.DENSE)
        for o in scene.objects:
            t = o.leave - 0.5                      # at rest in its last slot
            n = footprint(S, scene, o, t)
            hi = 4 if o.size == "small" else 9
            if not 1 <= n <= hi:
                fail(f"val clip {i}: {o.size} {o.name} covers {n} patches at rest (want 1..{hi})")
        a, b = S.render_frame(scene, 0.5), S.render_frame(scene, 6.5)
        still = np.ones((S.RENDER, S.RENDER), bool)
        y, x = np.mgrid[0:S.RENDER, 0:S.RENDER].astype(np.float32) + 0.5
        for o in scene.objects:
            for t in (0.5, 6.5):
                p = o.pos(t)
                if p is not None:
                    still &= (x - p[0]) ** 2 + (y - p[1]) ** 2 > (3 * S.DENSE.sizes["large"]) ** 2
        moved = (np.abs(a.astype(int) - b.astype(int)).max(-1) > 8) & still
        if moved.sum() < 50:
            fail(f"val clip {i}: the background did not move ({int(moved.sum())} pixels changed)")
    print("ok 60 dense scenes: objects cover 1..4 (small) / ..9 (large) patches, backgrounds move")


def main():
    root = Path(sys.argv[1])
    gen = root / "models" / "synthvqa" / "synthvqa.py"
    try:
        import numpy  # noqa: F401
    except ImportError:
        fail(f"numpy is not importable by {sys.executable} (Debian: python3-numpy; bash .ci/install-deps)")
    if not shutil.which("ffmpeg"):
        fail("the ffmpeg program is missing (Debian: ffmpeg; bash .ci/install-deps)")
    # loaded from its file: a models/ script, not an installed module
    spec = importlib.util.spec_from_file_location("synthvqa", gen)
    S = importlib.util.module_from_spec(spec)
    sys.modules["synthvqa"] = S          # its dataclasses look their module up
    spec.loader.exec_module(S)
    check_geometry(S)
    base = S.make_scene(S.clip_rng("test", 0), variant=S.BASE)
    dense = S.make_scene(S.clip_rng("test", 0, S.DENSE), variant=S.DENSE)
    if S.scene_record(base) == S.scene_record(dense):
        fail("dense clip 0 of the test split is the default variant's clip 0: seeds not separate")
    with tempfile.TemporaryDirectory() as td:
        digests = []
        for k in range(2):
            out = Path(td) / f"split{k}"
            subprocess.run([sys.executable, str(gen), "write", "--variant", "dense", "--split", "test",
                            "--n", "2", "--out", str(out)], check=True, timeout=200)
            names = sorted(f.name for f in (out / "clips").iterdir())
            if names != ["dense-test-000000.mp4", "dense-test-000001.mp4"]:
                fail(f"unexpected clip names {names}")
            h = hashlib.sha256()
            for n in names:
                h.update((out / "clips" / n).read_bytes())
            digests.append(h.hexdigest())
            lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
            if len(lines) != 4 or not all(x["id"].startswith("dense-test-") for x in lines):
                fail(f"unexpected manifest: {[x['id'] for x in lines]}")
        if digests[0] != digests[1]:
            fail("synthvqa.py --variant dense wrote different bytes for the same clips")
    print("ok the dense variant is deterministic (2 clips written twice, same bytes), own seeds and names")


if __name__ == "__main__":
    main()
