#!/usr/bin/env python3
"""Accuracy of the PyTorch (HF transformers) model on a written split.

    python3 models/synthvqa/eval_torch.py --model DIR/hf --split SPLITDIR [--frames 8] [--out preds.jsonl]

The reference for the GGUF port: frames come from the split's video files
decoded by the ffmpeg program with the pixel conversion libmustdrop's media.c
uses (SWS_POINT = "neighbor", accurate rounding, full chroma interpolation), frame
i*n/N of n as `mustdrop --video --frames N` takes them, resized with Pillow's
bicubic to the tower's size; greedy decoding with LlavaForConditionalGeneration's
own forward (not the training shortcut); exact match after trimming spaces.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import train as T  # noqa: E402


def decode(path: Path, n_frames: int) -> np.ndarray:
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height", "-of", "csv=p=0", str(path)],
                           check=True, capture_output=True, text=True).stdout.split(",")
    w, h = int(probe[0]), int(probe[1])
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-sws_flags",
                          "neighbor+accurate_rnd+full_chroma_int", "-f", "rawvideo", "-pix_fmt",
                          "rgb24", "-"], check=True, capture_output=True).stdout
    allf = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    n = len(allf)
    want = min(n_frames, n)
    return np.stack([allf[i * n // want] for i in range(want)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the HF checkpoint dir (train.py's OUT/hf)")
    ap.add_argument("--split", required=True)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--no-spm-prefix", action="store_true",
                    help="tokenize as transformers' fast tokenizer does (no leading \u2581 on the "
                         "first word), as train.py did before spm_prefix; by default the prompt's "
                         "ids are SentencePiece's, which llama.cpp and libmustdrop use")
    args = ap.parse_args()
    import torch
    from transformers import LlavaForConditionalGeneration
    torch.set_num_threads(args.threads)
    model = LlavaForConditionalGeneration.from_pretrained(args.model).eval()
    size = model.config.vision_config.image_size
    rows = (size // model.config.vision_config.patch_size) ** 2
    tok = T.Tok(Path(args.model), rows, args.frames, spm_prefix=not args.no_spm_prefix)
    eos = tok.tk.eos_token_id
    split = Path(args.split)
    lines = [json.loads(x) for x in (split / "manifest.jsonl").read_text().splitlines() if x.strip()]
    cache, per, preds = {}, {}, []
    t0 = time.time()
    for rec in lines:
        if rec["video"] not in cache:
            cache = {rec["video"]: decode(split / rec["video"], args.frames)}
        fr = np.stack([T.to_model(f, size) for f in cache[rec["video"]]])
        px = T.pixel_tensor(fr)
        ids, _ = tok.encode(rec["question"], None)
        gen = []
        with torch.no_grad():
            for _ in range(16):
                x = torch.tensor([ids + gen])
                t = int(model(input_ids=x, pixel_values=px).logits[0, -1].argmax())
                if t == eos:
                    break
                gen.append(t)
        pred = tok.tk.decode(gen, skip_special_tokens=True).strip()
        ok = pred == rec["answer"]
        c = per.setdefault(rec["type"], [0, 0])
        c[0] += 1
        c[1] += int(ok)
        preds.append({"id": rec["id"], "type": rec["type"], "answer": rec["answer"],
                      "prediction": pred, "correct": ok})
    n = sum(v[0] for v in per.values())
    ok = sum(v[1] for v in per.values())
    for k, v in sorted(per.items()):
        print(f"{k:14s} {v[1]:4d}/{v[0]:<4d} {100 * v[1] / v[0]:6.1f}%")
    print(f"{'all':14s} {ok:4d}/{n:<4d} {100 * ok / n:6.1f}%   ({time.time() - t0:.0f} s)")
    print(json.dumps({"n": n, "correct": ok, "accuracy": ok / n, "frames": args.frames,
                      "per_type": {k: {"n": v[0], "correct": v[1]} for k, v in per.items()}}))
    if args.out:
        Path(args.out).write_text("".join(json.dumps(p) + "\n" for p in preds))


if __name__ == "__main__":
    main()
