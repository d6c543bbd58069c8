#!/usr/bin/env python3
"""What a checkpoint's visual tokens say about the objects under them.

Linear probes on the patches covered by exactly one object (the per-patch
targets train.py caches with the clips): from the tower's features (the
layer the projector reads) and from the projector's output (what the LLM
sees), predict the object's shape, colour and size; trained on 70 % of the
clips, scored on the other 30 %. A probe near chance for shape while colour
and size are read says the tower does not separate shapes, whatever the LLM
does with them.

    python3 models/synthvqa/probe.py CKPT_DIR CACHE_DIR [--split val-300-128-8-1.0-dense]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthvqa as S  # noqa: E402
import train as T     # noqa: E402


def fit_probe(x_tr, y_tr, x_te, y_te, n_cls, steps=300):
    import torch
    torch.manual_seed(0)
    mu, sd = x_tr.mean(0, keepdim=True), x_tr.std(0, keepdim=True) + 1e-6
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    lin = torch.nn.Linear(x_tr.shape[1], n_cls)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(x_tr), y_tr)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (lin(x_tr).argmax(1) == y_tr).float().mean().item(), \
               (lin(x_te).argmax(1) == y_te).float().mean().item()


def main():
    import torch
    from transformers import LlavaForConditionalGeneration
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("cache")
    ap.add_argument("--split", default="val-300-128-8-1.0-dense")
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    frames = np.load(Path(a.cache) / f"{a.split}.npy", mmap_mode="r")[:a.clips]
    aux = np.load(Path(a.cache) / f"{a.split}.aux.npy", mmap_mode="r")[:a.clips]
    model = LlavaForConditionalGeneration.from_pretrained(a.ckpt, dtype=torch.float32).eval()
    n_used = model.config.vision_config.num_hidden_layers - 1   # vision_feature_layer -2
    feats, projs = [], []
    with torch.no_grad():
        for c in range(len(frames)):
            px = T.pixel_tensor(np.asarray(frames[c]))
            f = T.vision_features(model, px, n_used)[:, 1:]          # [8, P, hidden]
            feats.append(f.reshape(-1, f.shape[-1]))
            projs.append(model.model.multi_modal_projector(f).reshape(-1, model.config.text_config.hidden_size))
    feats, projs = torch.cat(feats), torch.cat(projs)
    at = aux.reshape(-1, aux.shape[-1]).astype(np.int64)             # [clips*8*P, 40]
    one = at.sum(1) == 1
    k = at.argmax(1)
    n_sh, n_sz = len(S.SHAPES), len(S.SIZES)
    labels = {"shape": (k // n_sz) % n_sh, "colour": k // (n_sh * n_sz), "size": k % n_sz}
    n_cls = {"shape": n_sh, "colour": len(S.COLOURS), "size": n_sz}
    per_clip = aux.shape[1] * aux.shape[2]
    clip_of = np.arange(len(at)) // per_clip
    train = one & (clip_of < int(0.7 * len(frames)))
    test = one & (clip_of >= int(0.7 * len(frames)))
    print(f"{a.ckpt}: {int(one.sum())} single-object patches of {len(at)} "
          f"({int(train.sum())} train, {int(test.sum())} test)")
    for name, x in (("tower", feats), ("projector", projs)):
        for what in ("shape", "colour", "size"):
            y = torch.from_numpy(labels[what])
            tr, te = fit_probe(x[train], y[train], x[test], y[test], n_cls[what])
            counts = np.bincount(labels[what][test], minlength=n_cls[what])
            print(f"  {name:9s} {what:6s}: train {tr:6.1%}  test {te:6.1%}  "
                  f"(majority class {counts.max() / counts.sum():.1%})")


if __name__ == "__main__":
    main()
