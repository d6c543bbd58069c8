#!/usr/bin/env python3
"""Train the bundled default model (LLaVA architecture) on synthetic video QA.

    python3 models/synthvqa/train.py --out DIR [--config models/synthvqa/config.json]

Writes DIR/hf (a LlavaForConditionalGeneration checkpoint with its tokenizer,
what models/convert_hf.py takes), DIR/train.log and DIR/val.json. The model:
a CLIP ViT (class token, quick_gelu, pre-LN) on 96x96 frames in 32x32
patches (3x3 patches: the task's 3x3 cells), LLaVA's mlp2x_gelu projector, a LLaMA LLM with a SentencePiece BPE
vocabulary trained on the task's text. Eight frames per clip (one per slot,
at a random phase inside the slot), each "<image>\\n" in the Vicuna v1 prompt
libmustdrop renders (later turns of a conversation about the same clip add
more questions per encoded clip). Only the answer tokens (and the end of
sequence) are scored. Training-only signals, thrown away at export (why:
docs/accuracy.md): a vision warm-up and an auxiliary per-patch loss on which
(colour, shape, size) objects cover each patch, an alignment of projected
object patches with their words' embeddings (and their cell's name), an
attention loss on one LLM head toward the patches that hold the answer (at
the first answer position, or at every one for the types in
attn_every_token), and probes on an early LLM layer that say which patches
hold an object the previous frame did not and which cell each patch is.
`--init RUN/hf` continues an earlier run (config-continue.json,
config-tokens.json). Only the train split is used for
training and the val split for the log; the test split is never read.

A config's "variant" picks the task (synthvqa.py's VARIANTS; config-dense.json:
the dense variant, 128x128 frames in 16x16 patches). `--device auto|cpu|cuda`
picks where to train (auto: CUDA when torch sees a GPU); on CUDA the forward
runs under bf16 autocast. `--set train.clips=400` (repeatable, a JSON value)
changes one config entry for a run, e.g. a CPU smoke test of a GPU recipe.

Preprocessing is libmustdrop's for a square frame: Pillow bicubic resize of
the 128x128 video frame to the tower's size, CLIP mean/std. Training frames go through
a simulated 4:2:0 round trip (BT.601, 2x2 chroma average) and mild noise so
that frames decoded from H.264/VP8 look like the ones trained on.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import synthvqa as S  # noqa: E402

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
IMAGE_TOKEN = "<image>"
IMAGE_ID = 3
N_CLASSES = len(S.COLOURS) * len(S.SHAPES) * len(S.SIZES)


# ----------------------------------------------------------------------------- frames

def yuv420_roundtrip(img: np.ndarray, rng) -> np.ndarray:
    """RGB -> BT.601 limited-range YCbCr 4:2:0 -> RGB, about what a codec's
    pixel format does to our frames (plus a little noise for the codec)."""
    f = img.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    h, w = y.shape

    def sub(c):
        c = c.reshape(h // 2, 2, w // 2, 2).mean((1, 3))
        return np.repeat(np.repeat(c, 2, 0), 2, 1)
    cb, cr = sub(cb) - 128, sub(cr) - 128
    y = (y - 16) * 255 / 219 + rng.normal(0, 1.5, y.shape)
    out = np.stack([y + 1.402 * 255 / 224 * cr,
                    y - 0.344136 * 255 / 224 * cb - 0.714136 * 255 / 224 * cr,
                    y + 1.772 * 255 / 224 * cb], -1)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def to_model(frame: np.ndarray, size: int) -> np.ndarray:
    """libmustdrop's resize for a square frame (Pillow bicubic), uint8."""
    from PIL import Image
    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    return np.asarray(Image.fromarray(frame).resize((size, size), Image.BICUBIC))


def patch_targets(scene, t: float, grid: int) -> np.ndarray:
    """[grid*grid, N_CLASSES] 0/1: which objects cover a patch (>= 12% of the
    patch, or >= 25% of the object: a small star is under 12% of a 3x3 cell).
    Patches are grid x grid equal squares of the frame (any RENDER/grid)."""
    out = np.zeros((grid * grid, N_CLASSES), np.float32)
    cell = S.RENDER / grid
    colours, sizes = list(S.COLOURS), list(S.SIZES)
    for o in scene.objects:
        p = o.pos(t)
        if p is None:
            continue
        r = scene.variant.sizes[o.size]
        x0, x1 = max(int(p[0] - 2 * r), 0), min(int(p[0] + 2 * r) + 2, S.RENDER)
        y0, y1 = max(int(p[1] - 2 * r), 0), min(int(p[1] + 2 * r) + 2, S.RENDER)
        y, x = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        cov = S.shape_coverage(o.shape, p[0], p[1], r, x, y)
        gy = np.minimum((y / cell).astype(int), grid - 1)
        gx = np.minimum((x / cell).astype(int), grid - 1)
        per = np.zeros(grid * grid, np.float64)
        np.add.at(per, (gy * grid + gx).reshape(-1), cov.reshape(-1))
        share = per / max(per.sum(), 1e-6)
        per /= cell * cell
        k = (colours.index(o.colour) * len(S.SHAPES) + S.SHAPES.index(o.shape)) * len(sizes) \
            + sizes.index(o.size)
        out[(per >= 0.12) | (share >= 0.25), k] = 1.0
    return out


def make_clip(args):
    """One training/val clip: frames [SLOTS, size, size, 3], aux targets, questions."""
    split, i, size, grid, roundtrip, variant = args
    v = S.VARIANTS[variant]
    rng = S.clip_rng(split, i, v)
    scene = S.make_scene(rng, variant=v)
    qs = S.questions(scene, rng)
    frames, aux = [], []
    for k in range(S.SLOTS):
        t = k + float(rng.uniform(0, 0.999))
        f = S.render_frame(scene, t)
        if roundtrip:
            f = yuv420_roundtrip(f, rng)
        frames.append(to_model(f, size))
        aux.append(patch_targets(scene, t, grid))
    return np.stack(frames), np.stack(aux).astype(np.uint8), qs


def make_clips(split: str, n: int, size: int, grid: int, procs: int, roundtrip_p: float,
               variant: str = "base"):
    rr = random.Random(S.SPLITS[split])
    jobs = [(split, i, size, grid, rr.random() < roundtrip_p, variant) for i in range(n)]
    frames = aux = None
    qs = []
    with Pool(procs) as p:
        # each clip straight into one preallocated array: collecting them and
        # stacking held the frames twice (40,000 dense clips are 15.7 GB)
        for i, (f, a, q) in enumerate(p.imap(make_clip, jobs, chunksize=64)):
            if frames is None:
                frames = np.empty((n, *f.shape), f.dtype)
                aux = np.empty((n, *a.shape), a.dtype)
            frames[i], aux[i] = f, a
            qs.append(q)
    return frames, aux, qs


def load_or_make(split, n, size, grid, tr, roundtrip_p):
    """make_clips, cached in tr["cache"] (a directory) when given: the clips
    depend only on the split, n and these settings."""
    import pickle
    cache = tr.get("cache")
    variant = tr.get("variant", "base")
    key = f"{split}-{n}-{size}-{grid}-{roundtrip_p}" + ("" if variant == "base" else f"-{variant}")
    if cache and (Path(cache) / f"{key}.npy").is_file():
        d = Path(cache)
        return (np.load(d / f"{key}.npy", mmap_mode="r"), np.load(d / f"{key}.aux.npy"),
                pickle.loads((d / f"{key}.q.pkl").read_bytes()))
    # rendering is numpy in worker processes: on a GPU machine use its cores
    frames, aux, qs = make_clips(split, n, size, grid, tr.get("render_procs", tr["threads"]),
                                 roundtrip_p, variant)
    if cache:
        d = Path(cache)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / f"{key}.npy", frames)
        np.save(d / f"{key}.aux.npy", aux)
        (d / f"{key}.q.pkl").write_bytes(pickle.dumps(qs))
    return frames, aux, qs


# ----------------------------------------------------------------------------- tokenizer / model

def build_tokenizer(d: Path, vocab_size: int) -> None:
    import sentencepiece as spm
    d.mkdir(parents=True, exist_ok=True)
    corpus = d / "corpus.txt"
    lines = S.corpus_lines()
    # the system prompt and the turn markers are in every sequence: frequent
    # enough here to become a few dozen pieces instead of a hundred bytes
    turn = [S.prompt_text(q, 1).replace(IMAGE_TOKEN + "\n", "") for q in lines[1:40]]
    corpus.write_text("\n".join(lines * 4 + turn * 8) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(d / "spm"), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        character_coverage=1.0, num_threads=1, shuffle_input_sentence=False, minloglevel=2,
        hard_vocab_limit=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        user_defined_symbols=[IMAGE_TOKEN])
    os.replace(d / "spm.model", d / "tokenizer.model")
    (d / "spm.vocab").unlink()
    corpus.unlink()
    cfg = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "legacy": False,
           "clean_up_tokenization_spaces": False, "model_max_length": 1024,
           "chat_template": ("{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }} "
                             "{% elif m['role'] == 'user' %}USER: {{ m['content'] }} "
                             "{% else %}ASSISTANT: {{ m['content'] }}</s>{% endif %}{% endfor %}"
                             "{% if add_generation_prompt %}ASSISTANT:{% endif %}"),
           "added_tokens_decoder": {"3": {"content": IMAGE_TOKEN, "special": True, "lstrip": False,
                                          "rstrip": False, "normalized": False, "single_word": False}}}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))


def build_model(cfg: dict, vocab_size: int):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    v, t = cfg["vision"], cfg["llm"]
    vc = CLIPVisionConfig(hidden_size=v["hidden"], intermediate_size=v["ffn"],
                          num_hidden_layers=v["layers"], num_attention_heads=v["heads"],
                          image_size=v["image_size"], patch_size=v["patch"], hidden_act="quick_gelu",
                          layer_norm_eps=1e-5, projection_dim=v["hidden"], num_channels=3)
    tc = LlamaConfig(vocab_size=vocab_size, hidden_size=t["hidden"], intermediate_size=t["ffn"],
                     num_hidden_layers=t["layers"], num_attention_heads=t["heads"],
                     num_key_value_heads=t["kv_heads"], max_position_embeddings=t["max_pos"],
                     rms_norm_eps=1e-5, tie_word_embeddings=False, hidden_act="silu",
                     bos_token_id=1, eos_token_id=2, pad_token_id=None,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    lc = LlavaConfig(vision_config=vc, text_config=tc, image_token_index=IMAGE_ID,
                     vision_feature_layer=-2, vision_feature_select_strategy="default",
                     projector_hidden_act="gelu", multimodal_projector_bias=True)
    torch.manual_seed(cfg["seed"])
    return LlavaForConditionalGeneration(lc)


class Tok:
    """Prompt/answer token ids, with each <image> expanded to the frame's rows."""

    def __init__(self, d: Path, rows: int, frames: int, spm_prefix: bool = True):
        from transformers import AutoTokenizer
        self.tk = AutoTokenizer.from_pretrained(str(d))
        self.rows, self.frames = rows, frames
        self.cache = {}
        # SentencePiece (add_dummy_prefix), llama.cpp and libmustdrop start a
        # text with "▁": "A chat" is "▁A ▁chat". The fast tokenizer
        # transformers 5 builds from tokenizer.model drops that prefix ("A").
        # spm_prefix puts it back, so these ids are the ones the engine feeds;
        # the shipped runs (config.json, -continue, -tokens) trained without
        # it (key spm_prefix, default off); config-hour.json with it.
        self.prefix = ""
        if spm_prefix and not self.tk.tokenize("A")[0].startswith("\u2581"):
            self.prefix = " "

    def encode(self, question: str, answer: str | None):
        key = (question, answer)
        if key in self.cache:
            return self.cache[key]
        text = self.prefix + S.prompt_text(question, self.frames).replace(IMAGE_TOKEN,
                                                                           IMAGE_TOKEN * self.rows)
        p = self.tk(text, add_special_tokens=True)["input_ids"]
        if answer is None:
            self.cache[key] = (p, None)
            return p, None
        full = self.tk(text + " " + answer, add_special_tokens=True)["input_ids"]
        assert full[:len(p)] == p, f"answer changes the prompt's tokens: {question!r} {answer!r}"
        r = (p, full[len(p):] + [self.tk.eos_token_id])
        self.cache[key] = r
        return r

    def followup(self, question: str):
        """A later turn of the same conversation: "USER: {q} ASSISTANT:"."""
        key = ("followup", question)
        if key not in self.cache:
            self.cache[key] = self.tk(f"USER: {question} ASSISTANT:", add_special_tokens=False)["input_ids"]
        return self.cache[key]


def pixel_tensor(frames: np.ndarray, device=None):
    """uint8 [..., H, W, 3] -> float [N, 3, H, W] with CLIP's normalization
    (on `device`: the uint8 frames travel, a quarter of the floats)."""
    import torch
    x = torch.from_numpy(np.ascontiguousarray(frames.reshape(-1, *frames.shape[-3:])))
    x = x.to(device).float().div_(255.0)
    x = (x - torch.from_numpy(CLIP_MEAN).to(x.device)) / torch.from_numpy(CLIP_STD).to(x.device)
    return x.permute(0, 3, 1, 2).contiguous()


def vision_features(model, px, n_layers_used: int):
    """hidden_states[vision_feature_layer] without running the unused last layer."""
    vt = model.model.vision_tower.vision_model if hasattr(model.model.vision_tower, "vision_model") \
        else model.model.vision_tower
    h = vt.pre_layrnorm(vt.embeddings(px))
    for layer in vt.encoder.layers[:n_layers_used]:
        o = layer(h, attention_mask=None)
        h = o[0] if isinstance(o, tuple) else o
    return h


def forward(model, ids, px, n_layers_used: int, attentions: bool = False, hidden: int | None = None):
    """Logits of LLaVA's forward (same maths as HF's, minus the unused layer);
    also the patch features for the auxiliary head, and when asked the LLM's
    attention probabilities (eager attention, same maths) and its hidden
    states after layer `hidden`."""
    feats = vision_features(model, px, n_layers_used)[:, 1:]
    proj = model.model.multi_modal_projector(feats)
    emb = model.model.language_model.embed_tokens(ids)
    mask = (ids == IMAGE_ID).unsqueeze(-1).expand_as(emb)
    emb = emb.masked_scatter(mask, proj.reshape(-1, proj.shape[-1]).to(emb.dtype))
    if not attentions and hidden is None:
        out = model.model.language_model(inputs_embeds=emb)
        return model.lm_head(out.last_hidden_state), feats
    out = model.model.language_model(inputs_embeds=emb, output_attentions=attentions,
                                      output_hidden_states=hidden is not None)
    return (model.lm_head(out.last_hidden_state), feats, out.attentions if attentions else None,
            out.hidden_states[hidden] if hidden is not None else None)


# ----------------------------------------------------------------------------- training

def make_batch(tok, frames, aux, qsets, idx, rng, turns: int = 1, focus=(), focus_p: float = 1.0,
               device=None):
    """Token ids, shifted labels, pixels, aux targets and, per sample, the
    questions asked with the positions that predict each answer's tokens. With
    turns > 1 a sample is a conversation about the clip: the first turn is
    exactly the prompt libmustdrop renders, later ones (LLaVA-Instruct style)
    "USER: q ASSISTANT: a</s>" — more supervised answers per encoded clip."""
    import torch
    seqs, tgts, asked = [], [], []
    for i in idx:
        qs = qsets[i]
        order = rng.permutation(len(qs))
        if focus and (focus_p >= 1.0 or rng.random() < focus_p):
            # questions of the focus types first (a continuation that teaches them)
            order = sorted(order, key=lambda j: qs[j][0] not in focus)
        order = order[:turns]
        seq, tgt, ask = [], [], []
        for k, j in enumerate(order):
            qt, q, a = qs[j]
            p, ans = tok.encode(q, a)
            if k > 0:
                p = tok.followup(q)
            # the positions that predict the answer's tokens (its </s> included)
            first = len(seq) + len(p) - 1
            ask.append((qt, q, a, list(range(first, first + len(ans)))))
            seq += p + ans
            tgt += [-100] * len(p) + ans
        seqs.append(seq)
        tgts.append(tgt)
        asked.append(ask)
    L = max(len(s) for s in seqs)
    ids = torch.zeros((len(idx), L), dtype=torch.long)
    lab = torch.full((len(idx), L), -100, dtype=torch.long)
    for b, (s, t) in enumerate(zip(seqs, tgts)):
        ids[b, :len(s)] = torch.tensor(s)
        lab[b, :len(t)] = torch.tensor(t)
    # shift: position j predicts token j+1
    lab = torch.cat([lab[:, 1:], torch.full((len(idx), 1), -100, dtype=torch.long)], 1)
    return (ids, lab, pixel_tensor(frames[idx], device), torch.from_numpy(aux[idx].astype(np.float32)),
            asked)


def relevant_classes(qt: str, q: str, a: str) -> list:
    """The (colour, shape, size) classes a question is about, read from its
    words and its answer: where the answer is in the frames."""
    colours, shapes, sizes = list(S.COLOURS), list(S.SHAPES), list(S.SIZES)
    words = (q.rstrip("?") + " " + a).replace("s appear", " appear").split()
    cs = [w for w in words if w in colours]
    ss = [w for w in words if w in shapes]
    zs = [w for w in words if w in sizes]
    if qt == "exists" and a == "no":
        return []
    if qt == "first_colour":
        cs, ss, zs = [a], [], []
    if qt == "enters_last":
        cs, ss, zs = [], [a], []
    if qt == "count":
        cs, zs = [], []
    out = []
    for ci, c in enumerate(colours):
        for si, sh in enumerate(shapes):
            for zi, z in enumerate(sizes):
                if qt == "after":
                    # the object asked about and the one the answer names
                    pairs = list(zip(cs, ss))
                    if (c, sh) in pairs:
                        out.append((ci * len(shapes) + si) * len(sizes) + zi)
                    continue
                if (not cs or c in cs) and (not ss or sh in ss) and (not zs or z in zs):
                    out.append((ci * len(shapes) + si) * len(sizes) + zi)
    return out


def attention_target(qt: str, q: str, a: str, aux_b):
    """[frames * patches] bool: where the question's answer is in the frames.
    The asked objects' patches, narrowed in time for the questions about
    events: an entry (first_colour, enters_last, count, "after ... appears")
    is the object's first frame, a stop or a disappearance its last."""
    import torch
    pres = aux_b > 0                                             # [F, P, C]
    seen = pres.any(1)                                           # [F, C]
    F = seen.shape[0]
    fr = torch.arange(F)
    first = torch.where(seen, fr[:, None], F).amin(0)            # [C]; F: never
    last = torch.where(seen, fr[:, None], -1).amax(0)
    out = torch.zeros(pres.shape[:2], dtype=torch.bool)

    def add(c, frame=None):
        if frame is None:
            out.logical_or_(pres[..., c])
        elif 0 <= frame < F:
            out[frame].logical_or_(pres[frame, :, c])
    present = [c for c in range(pres.shape[-1]) if bool(seen[:, c].any())]
    if qt == "enters_last" and present:
        c = max(present, key=lambda c: int(first[c]))
        add(c, int(first[c]))
    elif qt == "first_colour" and present:
        c = min(present, key=lambda c: int(first[c]))
        add(c, int(first[c]))
    elif qt == "count":
        for c in relevant_classes(qt, q, a):
            add(c, int(first[c]))
    elif qt == "stop_where":
        for c in relevant_classes(qt, q, a):
            add(c, int(last[c]))
    elif qt == "after":
        subj = q.split("the ", 1)[1].rsplit(" appears", 1)[0]          # "blue star"
        obj, event = a.split(" ", 1)[1].rsplit(" ", 1)                  # "red circle", "disappears"
        for c in relevant_classes(qt, q, a):
            name = f"{list(S.COLOURS)[c // (len(S.SHAPES) * len(S.SIZES))]} " \
                   f"{S.SHAPES[(c // len(S.SIZES)) % len(S.SHAPES)]}"
            if name == subj:
                add(c, int(first[c]))
            if name == obj:
                add(c, int(first[c]) if event == "appears" else int(last[c]))
    else:
        for c in relevant_classes(qt, q, a):
            add(c)
    return out.reshape(-1)


def attention_loss(attn, asked, aux, ids, layers, head, every_token=()):
    """Supervise one head of some LLM layers: at the position that predicts
    the first answer token, its attention should fall on the visual tokens
    that hold the answer (attention_target; -log of the mass there).
    Another training-only signal that gets the model past the long plateau
    where it answers from the question alone. For the types in every_token
    the positions that predict the later answer tokens are supervised too:
    the column of "top left" is the second token, the object of "the red
    circle disappears" the second and third, and a model supervised only
    at the first one reads the row and guesses the column."""
    import torch
    # the targets are built on the CPU (ids, aux: CPU tensors), then one
    # gather per layer on attn's device: the same mean as a loop over
    # (sample, position, layer), without a device sync per term
    B, L = ids.shape
    rows, cols, masks = [], [], []
    for b in range(B):
        vis = (ids[b] == IMAGE_ID).nonzero().squeeze(-1)            # visual positions, in order
        for qt, q, a, positions in asked[b]:
            rel = attention_target(qt, q, a, aux[b])
            if not bool(rel.any()):
                continue
            m = torch.zeros(L, dtype=torch.bool)
            m[vis[rel]] = True
            for pos in positions if qt in every_token else positions[:1]:
                rows.append(b)
                cols.append(pos)
                masks.append(m)
    if not rows:
        return None
    dev = attn[layers[0]].device
    bi, pi = torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)
    mask = torch.stack(masks).to(dev)
    losses = [-torch.log((attn[lay][bi, head, pi].float() * mask).sum(-1) + 1e-6) for lay in layers]
    return torch.stack(losses).mean()


def new_object_targets(at):
    """[B, F, P, C] -> [B, F, P] 0/1: the patch holds an object that no
    patch of the previous frame held (every object in the first frame).
    What the questions about entries need; a visual token can compute it
    from the frame before it (causal attention), so a probe on an early
    LLM layer teaches that comparison directly."""
    import torch
    pres = at > 0
    prev = torch.zeros_like(pres[:, :1].any(2))                      # [B, 1, C]
    seen_prev = torch.cat([prev, pres[:, :-1].any(2)], 1)            # [B, F, C]
    new = pres & ~seen_prev[:, :, None, :]
    return new.any(-1).float()


def patch_cells(n_patches: int, device=None):
    """[n_patches] the 3x3 cell ("Where does ... stop?") each patch's centre
    lies in (3x3 patches: the patch itself; 8x8: rows and columns 3, 2, 3)."""
    import torch
    g = int(round(n_patches ** 0.5))
    r, c = torch.arange(g).repeat_interleave(g), torch.arange(g).repeat(g)
    return (((2 * r + 1) * 3 // (2 * g)) * 3 + (2 * c + 1) * 3 // (2 * g)).to(device)


def aux_targets(at, cells: bool = False):
    """[..., P, 40] class targets -> [..., P, 51]: the classes, then colour,
    shape and size on their own (factorized targets teach the tower faster);
    with cells, 9 more: the patch's cell (one-hot), so that the features say
    where they are and "stop" questions can be read from them."""
    import torch
    x = at.reshape(*at.shape[:-1], len(S.COLOURS), len(S.SHAPES), len(S.SIZES))
    out = [at, x.amax((-1, -2)), x.amax((-1, -3)), x.amax((-2, -3))]
    if cells:
        onehot = torch.nn.functional.one_hot(patch_cells(at.shape[-2], at.device), 9).float()
        out.append(onehot.expand(*at.shape[:-1], 9))
    return torch.cat(out, -1)


def shape_ce(logits, at):
    """Cross-entropy of the shape outputs (aux_targets' shape factor) on the
    patches exactly one object covers, and their accuracy: the dense model's
    tower learned colour and size from the BCE alone but not shape (a linear
    probe read it at 35-37 % against 30 % for the majority class; probe.py)."""
    import torch
    one = at.sum(-1) == 1
    if not bool(one.any()):
        return logits.sum() * 0.0, 0.0
    k = at[one].argmax(-1)
    y = (k // len(S.SIZES)) % len(S.SHAPES)
    o = N_CLASSES + len(S.COLOURS)
    z = logits[one][:, o:o + len(S.SHAPES)].float()
    return torch.nn.functional.cross_entropy(z, y), (z.argmax(-1) == y).float().mean().item()


def vision_aux_loss(aux_head, feats, at, pos_weight, cells: bool = False, shape_weight: float = 0.0):
    """Per-patch BCE on what covers the patch; positives are rare (~0.5 %),
    so they are weighted. With shape_weight, plus shape_ce."""
    import torch
    t = aux_targets(at, cells)
    pw = torch.full((t.shape[-1],), float(pos_weight), device=t.device)
    logits = aux_head(feats)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, t, pos_weight=pw)
    if shape_weight > 0:
        loss = loss + shape_weight * shape_ce(logits, at)[0]
    return loss


def vision_warmup(model, aux_head, frames, aux, rng, tr, n_used, grid, log, dev):
    """Stage 1: the tower and the auxiliary head alone, on the per-patch
    targets (a few minutes): the LLM then starts from visual tokens that
    already tell objects apart."""
    import torch
    vt = model.model.vision_tower
    params = list(vt.parameters()) + list(aux_head.parameters())
    opt = torch.optim.AdamW(params, lr=tr["vision_warmup_lr"], betas=(0.9, 0.98), weight_decay=0.01)
    n = tr["vision_warmup_steps"]
    ema = None
    for step in range(n):
        lr = tr["vision_warmup_lr"] * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * (1 - step / n))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = np.sort(rng.choice(len(frames), tr["vision_warmup_clips"], replace=False))
        px = pixel_tensor(frames[idx], dev)
        at = torch.from_numpy(aux[idx].astype(np.float32)).reshape(-1, grid * grid, N_CLASSES).to(dev)
        with autocast(dev, bool(tr.get("cpu_bf16"))):
            feats = vision_features(model, px, n_used)[:, 1:]
            loss = vision_aux_loss(aux_head, feats, at, tr["aux_pos_weight"], bool(tr.get("aux_cells")),
                                   float(tr.get("shape_ce_weight", 0.0)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if (step + 1) % 200 == 0:
            with torch.no_grad(), autocast(dev, bool(tr.get("cpu_bf16"))):    # feats may be bf16
                logits = aux_head(feats)
                p = logits[..., :N_CLASSES] > 0
                tp = (p & (at > 0)).sum().item()
                rec = tp / max(1, (at > 0).sum().item())
                prec = tp / max(1, p.sum().item())
                shape_acc = shape_ce(logits, at)[1]
            log(f"vision warm-up step {step + 1}/{n}: loss {ema:.4f}, class recall {rec:.2f} "
                f"precision {prec:.2f}, shape of single-object patches {shape_acc:.2f}")


def align_loss(model, feats, targets, words, cell_words=None):
    """Projected patch features that hold an object should point where the
    LLM's input embeddings of its colour, shape and size words add up (cosine,
    target detached). A shortcut for grounding: the visual tokens start out
    in the vocabulary's space, so question words find them by attention
    early instead of after a long plateau. Only a training signal: the
    exported model is plain LLaVA."""
    import torch
    E = model.model.language_model.embed_tokens.weight
    C = torch.stack([sum(E[ids].mean(0) for ids in w) for w in words]).detach()   # [classes, n_embd]
    proj = model.model.multi_modal_projector(feats)                                # [N, P, n_embd]
    cnt = targets.sum(-1, keepdim=True)
    tgt = (targets @ C) / cnt.clamp(min=1)
    if cell_words is not None:
        # and the name of the cell the patch is (3x3 patches = the 3x3 cells
        # "Where does ... stop?" names)
        P = torch.stack([E[ids].mean(0) for ids in cell_words]).detach()          # [patches, n_embd]
        tgt = tgt + P[None]
    m = cnt.squeeze(-1) > 0
    if not bool(m.any()):
        return proj.sum() * 0
    cos = torch.nn.functional.cosine_similarity(proj[m], tgt[m], dim=-1)
    return (1 - cos).mean()


def pick_typed(qs, rng):
    """One question of a uniformly chosen type (types are unevenly frequent)."""
    by = {}
    for q in qs:
        by.setdefault(q[0], []).append(q)
    t = list(by)[rng.integers(len(by))]
    return [by[t][rng.integers(len(by[t]))]]


def autocast(dev, cpu_bf16: bool = False):
    """bf16 autocast on CUDA (the matrix products; losses and softmax stay
    float32 by autocast's rules); on the CPU only when asked (`cpu_bf16`:
    CPUs with AVX-512 BF16 multiply bf16 faster; evaluation stays float32)."""
    import contextlib
    import torch
    if dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def greedy(model, tok, frames, questions, n_layers_used, max_new=8, batch=32):
    """Greedy answers (no KV cache: answers are a few tokens)."""
    import torch
    out = []
    eos = tok.tk.eos_token_id
    dev = next(model.parameters()).device
    with torch.no_grad(), autocast(dev):
        for s in range(0, len(questions), batch):
            qb = questions[s:s + batch]
            px = pixel_tensor(frames[s:s + batch], dev)
            seqs = [tok.encode(q, None)[0] for q in qb]
            gen = [[] for _ in qb]
            done = [False] * len(qb)
            for _ in range(max_new):
                L = max(len(a) + len(g) for a, g in zip(seqs, gen))
                ids = torch.zeros((len(qb), L), dtype=torch.long)
                last = []
                for b, (a, g) in enumerate(zip(seqs, gen)):
                    ids[b, :len(a) + len(g)] = torch.tensor(a + g)
                    last.append(len(a) + len(g) - 1)
                logits, _ = forward(model, ids.to(dev), px, n_layers_used)
                nxt = logits[torch.arange(len(qb)), torch.tensor(last)].argmax(-1).cpu().tolist()
                for b, t in enumerate(nxt):
                    if not done[b]:
                        if t == eos:
                            done[b] = True
                        else:
                            gen[b].append(t)
                if all(done):
                    break
            out += [tok.tk.decode(g, skip_special_tokens=True).strip() for g in gen]
    return out


def evaluate(model, tok, frames, qlist, n_layers_used):
    """qlist: one (type, question, answer) per clip. Exact-match accuracy by type."""
    model.eval()
    pred = greedy(model, tok, frames, [q for _, q, _ in qlist], n_layers_used)
    model.train()
    per = {}
    for (t, _, a), p in zip(qlist, pred):
        c = per.setdefault(t, [0, 0])
        c[0] += 1
        c[1] += int(p == a)
    n = sum(v[0] for v in per.values())
    ok = sum(v[1] for v in per.values())
    return ok / max(n, 1), per, pred


def save_checkpoint(model, hf: Path) -> None:
    """The plain LLaVA weights (training-only heads are not kept), saved with
    SDPA attention as the exporter and eval_torch.py expect; written to a
    temporary directory and renamed, so a run cut off mid-save leaves the
    previous checkpoint whole."""
    import shutil
    impl = model.model.language_model.config._attn_implementation
    dev = next(model.parameters()).device
    model.model.language_model.set_attn_implementation("sdpa")
    tmp = hf.with_name(hf.name + ".saving")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to("cpu").save_pretrained(str(tmp))
    model.to(dev)
    model.model.language_model.set_attn_implementation(impl)
    for f in hf.iterdir() if hf.is_dir() else ():
        if f.name.startswith("tokenizer") or f.name.startswith("special_tokens"):
            shutil.copy(f, tmp / f.name)
    shutil.rmtree(hf, ignore_errors=True)
    tmp.rename(hf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(HERE / "config.json"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, help="override the config's time budget")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: cuda when torch sees a GPU, else cpu")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override one config entry, e.g. train.clips=400 or train.threads=1")
    ap.add_argument("--init", help="continue from this checkpoint (an earlier run's OUT/hf): its "
                    "weights and tokenizer; no vision warm-up; the training-only heads start afresh")
    args = ap.parse_args()
    cfg = json.loads(Path(args.config).read_text())
    for kv in args.set:
        key, val = kv.split("=", 1)
        *path, last = key.split(".")
        d = cfg
        for k in path:
            d = d[k]
        d[last] = json.loads(val)
    if args.minutes:
        cfg["train"]["minutes"] = args.minutes
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "train.log", "a")

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    import torch
    tr = cfg["train"]
    torch.set_num_threads(tr["threads"])
    torch.manual_seed(cfg["seed"])
    dev = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                       else "cpu")
    rng = np.random.default_rng(cfg["seed"])
    log(f"config {json.dumps(cfg)}")
    log(f"torch {torch.__version__} transformers {__import__('transformers').__version__} "
        f"numpy {np.__version__}; device {dev}"
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""))

    hf = out / "hf"
    if args.init:
        import shutil
        hf.mkdir(parents=True, exist_ok=True)
        for f in Path(args.init).iterdir():
            if f.name.startswith("tokenizer") or f.name.startswith("special_tokens"):
                shutil.copy(f, hf / f.name)
        log(f"init from {args.init}")
    else:
        build_tokenizer(hf, cfg["vocab_size"])
    v = cfg["vision"]
    size, grid = v["image_size"], v["image_size"] // v["patch"]
    tok = Tok(hf, grid * grid, S.SLOTS, bool(tr.get("spm_prefix", False)))
    vocab = len(tok.tk)
    if args.init:
        from transformers import LlavaForConditionalGeneration
        model = LlavaForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32)
    else:
        model = build_model(cfg, vocab)
    n_used = v["layers"] - 1           # vision_feature_layer = -2
    aux_cells = bool(tr.get("aux_cells"))
    aux_head = torch.nn.Linear(v["hidden"], N_CLASSES + len(S.COLOURS) + len(S.SHAPES) + len(S.SIZES)
                               + (9 if aux_cells else 0))
    model.to(dev)
    aux_head.to(dev)
    log(f"vocab {vocab}; parameters {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M")

    t0 = time.time()
    frames, aux, qsets = load_or_make("train", tr["clips"], size, grid, tr, tr["roundtrip_p"])
    vf, _, vq = load_or_make("val", tr["val_clips"], size, grid, tr, 1.0)
    vrng = np.random.default_rng(12345)
    vlist = [pick_typed(q, vrng)[0] for q in vq]
    log(f"data: {len(frames)} train clips, {len(vf)} val clips in {time.time() - t0:.0f} s")

    # the training forward must be HF's forward
    model.eval()
    ids, lab, px, _, _ = make_batch(tok, frames, aux, qsets, np.arange(2), rng)
    ids, px = ids.to(dev), px.to(dev)
    with torch.no_grad():
        a, _ = forward(model, ids, px, n_used)
        b = model(input_ids=ids, pixel_values=px).logits
    err = (a - b).abs().max().item()
    log(f"forward vs HF LlavaForConditionalGeneration: max |diff| {err:.2e}")
    # float32 on both paths; CUDA kernels may order sums differently
    assert err < (1e-4 if dev.type == "cpu" else 1e-3)
    model.train()

    # (colour, shape, size) class -> the sum of its three words' input
    # embeddings: the target of the alignment loss (below)
    words = []
    for c in S.COLOURS:
        for sh in S.SHAPES:
            for sz in S.SIZES:
                words.append([tok.tk.encode(" " + w, add_special_tokens=False) for w in (c, sh, sz)])
    cell_words = None
    if tr.get("align_cells"):
        # the name of each patch's cell (patch_cells: one patch per cell at
        # 3x3, a 3/2/3 split of rows and columns at 8x8)
        cell_words = [tok.tk.encode(" " + S.CELLS[c], add_special_tokens=False)
                      for c in patch_cells(grid * grid).tolist()]
    # a probe on the visual tokens' hidden states after an early LLM layer:
    # does this patch hold an object the previous frame did not? (training only)
    probe = torch.nn.Linear(cfg["llm"]["hidden"], 1).to(dev) if tr.get("new_probe_weight", 0) > 0 else None
    # and which cell is this patch? (the visual tokens carry no other position
    # the LLM can read: RoPE only gives distances)
    cell_probe = torch.nn.Linear(cfg["llm"]["hidden"], 9).to(dev) \
        if probe is not None and tr.get("cell_probe_weight", 0) > 0 else None
    if tr.get("attn_weight", 0) > 0:
        # attention probabilities are needed for the attention loss
        model.model.language_model.set_attn_implementation("eager")
    params = list(model.parameters()) + list(aux_head.parameters())
    if probe is not None:
        params += list(probe.parameters())
    if cell_probe is not None:
        params += list(cell_probe.parameters())
    opt = torch.optim.AdamW(params, lr=tr["lr"], betas=(0.9, 0.98), weight_decay=tr["weight_decay"])
    budget = tr["minutes"] * 60.0
    start = time.time()
    # a warm-up also from a checkpoint when asked (warmup_on_init: a tower to
    # teach what it missed; the LLM waits)
    if tr.get("vision_warmup_steps", 0) and (not args.init or tr.get("warmup_on_init")):
        vision_warmup(model, aux_head, frames, aux, rng, tr, n_used, grid, log, dev)
        log(f"vision warm-up took {time.time() - start:.0f} s")
    step = 0
    B = tr["batch"]
    order = rng.permutation(len(frames))
    pos = 0
    next_eval = start + tr["eval_every_min"] * 60
    next_save = start + tr.get("save_every_min", float("inf")) * 60
    ema = None
    atl_ema = None
    pl_ema = None
    cl_ema = None
    while True:
        # the schedule follows wall time, not a step count: the machine may be
        # shared, and the budget is time
        frac = (time.time() - start) / budget
        if frac >= 1.0:
            break
        if pos + B > len(order):
            order, pos = rng.permutation(len(frames)), 0
        idx = order[pos:pos + B]
        pos += B
        warm = min(1.0, (step + 1) / tr["warmup"])
        lr = tr["lr"] * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        ids, lab, px, at, asked = make_batch(tok, frames, aux, qsets, idx, rng, tr.get("turns", 1),
                                               tuple(tr.get("focus_types", ())), tr.get("focus_p", 1.0),
                                               dev)
        use_attn = tr.get("attn_weight", 0) > 0 and frac < tr.get("attn_until", 1.0)
        use_probe = probe is not None
        ids_cpu, at_cpu = ids, at
        ids, lab, at = ids.to(dev), lab.to(dev), at.to(dev)          # px: already there
        with autocast(dev, bool(tr.get("cpu_bf16"))):
            if use_attn or use_probe:
                logits, feats, attn, hid = forward(model, ids, px, n_used, attentions=use_attn,
                                                   hidden=tr["new_probe_layer"] if use_probe else None)
            else:
                logits, feats = forward(model, ids, px, n_used)
            lm = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab.reshape(-1),
                                                   ignore_index=-100)
            al = vision_aux_loss(aux_head, feats, at.reshape(-1, grid * grid, N_CLASSES),
                                 tr["aux_pos_weight"], aux_cells, float(tr.get("shape_ce_weight", 0.0)))
            w = tr["aux_weight"] * (1.0 - 0.9 * min(frac, 1.0))
            loss = lm + w * al
            if tr.get("align_weight", 0) > 0:
                loss = loss + tr["align_weight"] * (1.0 - 0.9 * min(frac, 1.0)) * align_loss(
                    model, feats, at.reshape(-1, grid * grid, N_CLASSES), words, cell_words)
            if use_probe:
                vis = hid[ids == IMAGE_ID].reshape(len(idx), S.SLOTS, grid * grid, -1)
                pl = torch.nn.functional.binary_cross_entropy_with_logits(
                    probe(vis).squeeze(-1), new_object_targets(at))
                loss = loss + tr["new_probe_weight"] * pl
                pl_ema = pl.item() if pl_ema is None else 0.98 * pl_ema + 0.02 * pl.item()
                if cell_probe is not None:
                    cl = torch.nn.functional.cross_entropy(
                        cell_probe(vis).reshape(-1, 9),
                        patch_cells(grid * grid, dev).repeat(len(idx) * S.SLOTS))
                    loss = loss + tr["cell_probe_weight"] * cl
                    cl_ema = cl.item() if cl_ema is None else 0.98 * cl_ema + 0.02 * cl.item()
            if use_attn:
                atl = attention_loss(attn, asked, at_cpu, ids_cpu, tr["attn_layers"], tr["attn_head"],
                                     tuple(tr.get("attn_every_token", ())))
                if atl is not None:
                    loss = loss + tr["attn_weight"] * atl
                    atl_ema = atl.item() if atl_ema is None else 0.98 * atl_ema + 0.02 * atl.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        ema = lm.item() if ema is None else 0.98 * ema + 0.02 * lm.item()
        if step % tr.get("log_every", 50) == 0:
            log(f"step {step} lr {lr:.2e} lm {ema:.4f} aux {al.item():.4f} attn {atl_ema or 0:.3f} "
                f"new {pl_ema or 0:.3f} cell {cl_ema or 0:.3f} "
                f"elapsed {time.time() - start:.0f} s")
        if time.time() > next_eval:
            acc, per, _ = evaluate(model, tok, vf, vlist, n_used)
            log(f"val step {step}: accuracy {acc * 100:.1f}% " +
                " ".join(f"{k}={v[1]}/{v[0]}" for k, v in sorted(per.items())))
            next_eval = time.time() + tr["eval_every_min"] * 60
        if time.time() > next_save:
            # a checkpoint `--init` can continue from, should the run be cut off
            save_checkpoint(model, hf)
            log(f"checkpoint {hf} at step {step}")
            next_save = time.time() + tr["save_every_min"] * 60
    acc, per, pred = evaluate(model, tok, vf, vlist, n_used)
    log(f"final val: accuracy {acc * 100:.1f}% " +
        " ".join(f"{k}={v[1]}/{v[0]}" for k, v in sorted(per.items())))
    (out / "val.json").write_text(json.dumps({"accuracy": acc, "per_type": per, "steps": step}, indent=1))
    save_checkpoint(model, hf)
    log(f"saved {hf} after {step} steps, {(time.time() - start) / 60:.1f} min of training")


if __name__ == "__main__":
    main()
