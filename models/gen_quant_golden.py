#!/usr/bin/env python3
"""Golden vectors for core/gguf/quant.c, computed by gguf-py (pip package `gguf`).

Writes tests/gguf/data/quant_golden.bin (deterministic; re-run only when the set
of vectors changes):

    pip install gguf numpy
    python3 models/gen_quant_golden.py [OUT]

File format, all little-endian:
    "MDQG", u32 version (1), u32 record count, then records:
    u32 kind, u32 type, u32 n_elems, u32 n_bytes, payload
    kind 0  dequantize:   n_bytes quantized bytes, then n_elems f32 = gguf.quants.dequantize
    kind 1  quantize:     n_elems f32 input, then n_bytes = gguf.quants.quantize (Q8_0, Q4_0)
    kind 2  fp32->fp16:   n_elems f32 input, then n_elems u16 = numpy astype(float16) (RNE)
    kind 3  fp32->bf16:   n_elems f32 input, then n_elems u16 = gguf.quants.quantize(BF16)
Type ids are ggml's (GGMLQuantizationType).

The quantized bytes are random, with the fp16 scale fields replaced by finite
scales of varied magnitude (normal, subnormal, zero, negative, 65504), plus one
block per type with an infinite scale (the C test compares NaN as "any NaN").
"""
import random
import struct
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

SEED = 20240601
OUT = Path(__file__).resolve().parent.parent / "tests" / "gguf" / "data" / "quant_golden.bin"

# (type, n_blocks, block bytes, byte offsets of the fp16 scale fields)
DEQUANT = [
    (T.F32, 64, 4, []),
    (T.F16, 64, 2, []),
    (T.BF16, 64, 2, []),
    (T.Q4_0, 8, 18, [0]),
    (T.Q4_1, 8, 20, [0, 2]),
    (T.Q5_0, 8, 22, [0]),
    (T.Q5_1, 8, 24, [0, 2]),
    (T.Q8_0, 8, 34, [0]),
    (T.Q4_K, 4, 144, [0, 2]),
    (T.Q5_K, 4, 176, [0, 2]),
    (T.Q6_K, 4, 210, [208]),
]


def f16_bits(x: float) -> int:
    return int(np.array([x], dtype=np.float16).view(np.uint16)[0])


def scale(rng: random.Random, i: int) -> int:
    """fp16 bits of a finite scale; the first blocks cover special magnitudes."""
    special = [0x0001, 0x03ff, 0x0000, 0x8000, 0x7bff, 0xfbff, 0x0400]
    if i < len(special) and rng.random() < 0.5:
        return special[i]
    mag = 10.0 ** rng.uniform(-5, 1)
    return f16_bits(mag if rng.random() < 0.7 else -mag)


def dequant_records(rng: random.Random):
    recs = []
    for qt, nb, bsz, scales in DEQUANT:
        raw = bytearray(rng.getrandbits(8) for _ in range(nb * bsz))
        if qt == T.F32:
            vals = [rng.uniform(-1e3, 1e3) for _ in range(nb)]
            vals[:6] = [0.0, -0.0, float("inf"), 1e-40, -3.4e38, 1.5]
            raw = bytearray(np.array(vals, dtype=np.float32).tobytes())
        for b in range(nb):
            for k, off in enumerate(scales):
                struct.pack_into("<H", raw, b * bsz + off, scale(rng, b + k))
        if scales:  # last block: infinite scale
            struct.pack_into("<H", raw, (nb - 1) * bsz + scales[0], 0x7c00)
        data = np.frombuffer(bytes(raw), dtype=np.uint8)
        if qt in (T.F32, T.F16):
            out = quants.dequantize(data, qt)
        else:
            out = quants.dequantize(data.reshape(1, -1), qt).reshape(-1)
        out = np.asarray(out, dtype=np.float32)
        n = out.size
        recs.append(struct.pack("<IIII", 0, int(qt), n, len(raw)) + bytes(raw) + out.tobytes())
    return recs


def quant_records(rng: random.Random):
    recs = []
    nprng = np.random.default_rng(SEED)
    for qt in (T.Q8_0, T.Q4_0):
        x = nprng.standard_normal(32 * 16).astype(np.float32)
        x[0:32] = 0.0                                      # all-zero block
        x[32:64] *= np.float32(1e-3)
        x[64:96] *= np.float32(1e-30)                      # tiny: d underflows in fp16
        x[96:128] = np.arange(-16, 16, dtype=np.float32) * np.float32(0.25)  # ties
        x[128:160] *= np.float32(6e4)
        x[160] = np.float32(-3.0e4)                        # one dominant value
        q = quants.quantize(x.reshape(1, -1), qt).reshape(-1)
        q = np.asarray(q, dtype=np.uint8)
        recs.append(struct.pack("<IIII", 1, int(qt), x.size, q.size) + x.tobytes() + q.tobytes())
    return recs


def conv_records(rng: random.Random):
    recs = []
    # fp32 -> fp16: random bits over the half range, exact midpoints between
    # consecutive halves and their neighbours, overflow and underflow edges.
    vals = []
    for _ in range(1500):
        e = rng.randint(95, 145)
        vals.append(struct.unpack("<f", struct.pack("<I", (rng.getrandbits(1) << 31) | (e << 23) | rng.getrandbits(23)))[0])
    halves = np.array([rng.randrange(0, 0x7bff) for _ in range(600)] + [0, 1, 0x3ff, 0x400, 0x7bfe], dtype=np.uint16)
    lo = halves.view(np.float16).astype(np.float64)
    hi = (halves + 1).view(np.float16).astype(np.float64)
    mids = ((lo + hi) / 2).astype(np.float32)  # exact in f32
    for m in mids:
        b = struct.unpack("<I", struct.pack("<f", float(m)))[0]
        for d in (-1, 0, 1):
            vals.append(struct.unpack("<f", struct.pack("<I", b + d))[0])
    vals += [65504.0, 65519.99, 65520.0, 1e6, float("inf"), -float("inf"), 0.0, -0.0,
             2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 2.0 ** -26, 2.0 ** -14, 1e-45]
    x = np.array(vals, dtype=np.float32)
    x = np.concatenate([x, -x])
    h = x.astype(np.float16).view(np.uint16)
    recs.append(struct.pack("<IIII", 2, int(T.F16), x.size, 2 * x.size) + x.tobytes() + h.tobytes())

    # fp32 -> bf16: random bits (all exponents), ties, NaNs (forced quiet).
    bits = [rng.getrandbits(32) for _ in range(2000)]
    bits += [(rng.getrandbits(16) << 16) | 0x8000 for _ in range(200)]   # exact ties
    bits += [0x7f800000, 0xff800000, 0x7f800001, 0x7fc00000, 0xffffffff, 0x7f7fffff, 0x00000001]
    xb = np.array(bits, dtype=np.uint32).view(np.float32)
    hb = np.asarray(quants.quantize(xb.reshape(1, -1), T.BF16)).view(np.uint16).reshape(-1)
    recs.append(struct.pack("<IIII", 3, int(T.BF16), xb.size, 2 * xb.size) + xb.tobytes() + hb.tobytes())
    return recs


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    rng = random.Random(SEED)
    np.seterr(all="ignore")  # inf scales and fp16 overflow are intended
    recs = dequant_records(rng) + quant_records(rng) + conv_records(rng)
    blob = b"MDQG" + struct.pack("<II", 1, len(recs)) + b"".join(recs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    print(f"{out}: {len(recs)} records, {len(blob)} bytes")


if __name__ == "__main__":
    main()
