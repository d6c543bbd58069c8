#!/usr/bin/env python3
"""Independent numpy reference forward for the LLM fixtures (tooling only).

Reads a llama/qwen2 GGUF with gguf-py's GGUFReader (dequantizing F16/Q8_0 with
gguf.quants), checks its tensor names/shapes/types, runs a float64 forward and
compares the logits with the HF references in <model>.ref.bin (format in
make_test_models.py). This proves the fixture pipeline and documents the two
GGUF traps an engine must get right:

  * arch "llama": the converter permuted the Q and K rows, so RoPE rotates
    consecutive pairs (2i, 2i+1) ("normal" RoPE in ggml);
  * arch "qwen2": no permutation, NEOX RoPE pairs (i, i + n_rot/2).

Usage: python3 models/gguf_forward_ref.py [--llama-cpp DIR] MODEL.gguf [REF.bin]
(REF.bin defaults to the .ref.bin beside the model: tiny-llama-f16.gguf ->
tiny-llama.ref.bin). With --llama-cpp (or $LLAMA_CPP_DIR) its gguf-py is used,
else the installed gguf package.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

import numpy as np


def read_reference(path: Path):
    """Read <model>.ref.bin -> (n_vocab, [dict(text, flags, ids, gen, logits)])."""
    b = Path(path).read_bytes()
    assert b[:8] == b"MDHFREF1", "bad magic"
    ver, n_vocab, n_prompts = struct.unpack_from("<III", b, 8)
    assert ver == 1
    off = 20
    recs = []
    for _ in range(n_prompts):
        (tl,) = struct.unpack_from("<I", b, off); off += 4
        text = b[off:off + tl].decode("utf-8"); off += tl
        flags, n_p, n_g = struct.unpack_from("<III", b, off); off += 12
        ids = np.frombuffer(b, "<i4", n_p + n_g, off).tolist(); off += 4 * (n_p + n_g)
        nrow = n_p + n_g - 1
        lg = np.frombuffer(b, "<f4", nrow * n_vocab, off).reshape(nrow, n_vocab); off += 4 * nrow * n_vocab
        recs.append(dict(text=text, flags=flags, ids=ids[:n_p], gen=ids[n_p:], logits=lg))
    assert off == len(b), "trailing bytes"
    return n_vocab, recs


class GGUFModel:
    def __init__(self, path: Path):
        import gguf
        self.gguf = gguf
        r = gguf.GGUFReader(str(path))
        self.kv = {}
        for f in r.fields.values():
            try:
                self.kv[f.name] = f.contents()
            except Exception:  # pragma: no cover - exotic fields
                pass
        self.arch = self.kv["general.architecture"]
        a = self.arch
        self.n_embd = int(self.kv[f"{a}.embedding_length"])
        self.n_layer = int(self.kv[f"{a}.block_count"])
        self.n_ff = int(self.kv[f"{a}.feed_forward_length"])
        self.n_head = int(self.kv[f"{a}.attention.head_count"])
        self.n_head_kv = int(self.kv.get(f"{a}.attention.head_count_kv", self.n_head))
        self.eps = float(self.kv[f"{a}.attention.layer_norm_rms_epsilon"])
        self.rope_base = float(self.kv.get(f"{a}.rope.freq_base", 10000.0))
        self.head_dim = self.n_embd // self.n_head
        self.n_rot = int(self.kv.get(f"{a}.rope.dimension_count", self.head_dim))
        self.tensors = {t.name: t for t in r.tensors}

    def ne(self, name):
        return [int(x) for x in self.tensors[name].shape]

    def type_name(self, name):
        return self.gguf.GGMLQuantizationType(int(self.tensors[name].tensor_type)).name

    def w(self, name) -> np.ndarray:
        t = self.tensors[name]
        qt = self.gguf.GGMLQuantizationType(int(t.tensor_type))
        a = self.gguf.quants.dequantize(np.asarray(t.data), qt)
        shape = [int(x) for x in reversed(t.shape)]  # numpy order = reversed ne
        return np.asarray(a, dtype=np.float64).reshape(shape)

    def has(self, name) -> bool:
        return name in self.tensors

    def check_structure(self, n_vocab: int | None = None) -> list[str]:
        """Tensor names/shapes/types; returns a list of problems (empty = ok)."""
        bad = []
        E, H, KV, FF = self.n_embd, self.n_head, self.n_head_kv, self.n_ff
        kv_dim = KV * self.head_dim
        nv = self.ne("token_embd.weight")[1]
        if n_vocab is not None and nv != n_vocab:
            bad.append(f"n_vocab {nv} != {n_vocab}")
        toks = self.kv.get("tokenizer.ggml.tokens")
        if toks is not None and len(toks) != nv:
            bad.append(f"{len(toks)} tokens vs token_embd {nv} rows")
        want = {"token_embd.weight": [E, nv], "output_norm.weight": [E]}
        if self.arch == "llama":
            want["output.weight"] = [E, nv]
        for i in range(self.n_layer):
            p = f"blk.{i}."
            want.update({p + "attn_norm.weight": [E], p + "attn_q.weight": [E, E],
                         p + "attn_k.weight": [E, kv_dim], p + "attn_v.weight": [E, kv_dim],
                         p + "attn_output.weight": [E, E], p + "ffn_norm.weight": [E],
                         p + "ffn_gate.weight": [E, FF], p + "ffn_up.weight": [E, FF],
                         p + "ffn_down.weight": [FF, E]})
            if self.arch == "qwen2":
                want.update({p + "attn_q.bias": [E], p + "attn_k.bias": [kv_dim],
                             p + "attn_v.bias": [kv_dim]})
        for n, s in want.items():
            if n not in self.tensors:
                bad.append(f"missing {n}")
            elif self.ne(n) != s:
                bad.append(f"{n}: ne {self.ne(n)} != {s}")
        for n in self.tensors:
            if n not in want:
                bad.append(f"unexpected tensor {n}")
        ftype = int(self.kv.get("general.file_type", -1))
        mat = {0: "F32", 1: "F16", 7: "Q8_0"}.get(ftype)
        for n in self.tensors:
            t = self.type_name(n)
            if len(self.ne(n)) == 1:
                if t != "F32":
                    bad.append(f"{n}: 1-D tensor of type {t}")
            elif mat is not None and t != mat:
                bad.append(f"{n}: type {t}, file_type says {mat}")
        return bad

    # ---- forward ----
    @staticmethod
    def rmsnorm(x, w, eps):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    def rope(self, x, pos):
        """x [T, heads, head_dim]; rotates the first n_rot dims."""
        n_rot = self.n_rot
        inv = self.rope_base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)  # [n_rot/2]
        ang = np.asarray(pos, dtype=np.float64)[:, None] * inv[None, :]               # [T, n_rot/2]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        y = x.copy()
        if self.arch == "qwen2":      # NEOX: pairs (i, i + n_rot/2)
            a, b = x[..., :n_rot // 2], x[..., n_rot // 2:n_rot]
            y[..., :n_rot // 2] = a * c - b * s
            y[..., n_rot // 2:n_rot] = a * s + b * c
        else:                         # normal: pairs (2i, 2i+1), rows were permuted by the converter
            a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
            y[..., 0:n_rot:2] = a * c - b * s
            y[..., 1:n_rot:2] = a * s + b * c
        return y

    def forward(self, ids) -> np.ndarray:
        T, hd = len(ids), self.head_dim
        H, KV = self.n_head, self.n_head_kv
        x = self.w("token_embd.weight")[np.asarray(ids)]
        pos = np.arange(T)
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for i in range(self.n_layer):
            p = f"blk.{i}."
            h = self.rmsnorm(x, self.w(p + "attn_norm.weight"), self.eps)
            q = h @ self.w(p + "attn_q.weight").T
            k = h @ self.w(p + "attn_k.weight").T
            v = h @ self.w(p + "attn_v.weight").T
            if self.has(p + "attn_q.bias"):
                q = q + self.w(p + "attn_q.bias")
                k = k + self.w(p + "attn_k.bias")
                v = v + self.w(p + "attn_v.bias")
            q = self.rope(q.reshape(T, H, hd), pos)
            k = self.rope(k.reshape(T, KV, hd), pos)
            v = v.reshape(T, KV, hd)
            o = np.empty((T, H, hd))
            for hh in range(H):
                g = hh // (H // KV)
                s = q[:, hh, :] @ k[:, g, :].T / np.sqrt(hd) + mask
                s = np.exp(s - s.max(-1, keepdims=True))
                s /= s.sum(-1, keepdims=True)
                o[:, hh, :] = s @ v[:, g, :]
            x = x + o.reshape(T, H * hd) @ self.w(p + "attn_output.weight").T
            h = self.rmsnorm(x, self.w(p + "ffn_norm.weight"), self.eps)
            gt = h @ self.w(p + "ffn_gate.weight").T
            up = h @ self.w(p + "ffn_up.weight").T
            x = x + (gt / (1 + np.exp(-gt)) * up) @ self.w(p + "ffn_down.weight").T
        x = self.rmsnorm(x, self.w("output_norm.weight"), self.eps)
        out = self.w("output.weight") if self.has("output.weight") else self.w("token_embd.weight")
        return x @ out.T


def default_ref(gguf_path: Path) -> Path:
    stem = gguf_path.name[:-len(".gguf")]
    base = stem.rsplit("-", 1)[0]
    return gguf_path.with_name(base + ".ref.bin")


def check_against_reference(gguf_path, ref_path=None, verbose=True, return_logits=False):
    """Structure check + numpy forward vs HF logits; returns the worst relative error
    max|ours-HF| / max|HF| (per prompt, worst over prompts), and with return_logits
    also the list of numpy logits per prompt (float64, same rows as the reference).
    Raises on a structure problem, and for F32 files also if the greedy argmax
    differs from HF's."""
    gguf_path = Path(gguf_path)
    ref_path = Path(ref_path) if ref_path else default_ref(gguf_path)
    n_vocab, recs = read_reference(ref_path)
    m = GGUFModel(gguf_path)
    bad = m.check_structure(n_vocab)
    if bad:
        raise AssertionError(f"{gguf_path.name}: " + "; ".join(bad))
    is_f32 = int(m.kv.get("general.file_type", -1)) == 0
    worst = 0.0
    out = []
    for r in recs:
        seq = r["ids"] + r["gen"][:-1]
        lg = m.forward(seq)
        out.append(lg)
        ref = r["logits"].astype(np.float64)
        err = float(np.abs(lg - ref).max() / np.abs(ref).max())
        worst = max(worst, err)
        agree = int((lg[len(r["ids"]) - 1:].argmax(-1) == np.asarray(r["gen"])).sum())
        if verbose:
            print(f"  {gguf_path.name}: {r['text'][:40]!r}: T={len(seq)} rel err {err:.3g}, "
                  f"greedy argmax agrees {agree}/{len(r['gen'])}")
        if is_f32 and agree != len(r["gen"]):
            raise AssertionError(f"{gguf_path.name}: F32 greedy disagrees on {r['text']!r}")
    return (worst, out) if return_logits else worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-cpp", help="llama.cpp tree whose gguf-py to use (or $LLAMA_CPP_DIR)")
    ap.add_argument("gguf")
    ap.add_argument("ref", nargs="?")
    a = ap.parse_args()
    lcpp = a.llama_cpp or os.environ.get("LLAMA_CPP_DIR")
    if lcpp:
        sys.path.insert(0, str(Path(lcpp) / "gguf-py"))
    m = GGUFModel(Path(a.gguf))
    print(f"{a.gguf}: arch {m.arch}, n_embd {m.n_embd}, layers {m.n_layer}, heads {m.n_head}/{m.n_head_kv}, "
          f"ff {m.n_ff}, eps {m.eps}, rope base {m.rope_base}, n_rot {m.n_rot}")
    for n in m.tensors:
        if n.startswith(("token_embd", "output", "blk.0.")):
            print(f"  {n:28s} ne {m.ne(n)} {m.type_name(n)}")
    err = check_against_reference(Path(a.gguf), a.ref)
    print(f"worst relative error {err:.3g}")


if __name__ == "__main__":
    main()
