#!/usr/bin/env python3
"""Derive two tiny LLaVA LMs whose "<image>" token is not a control token.

The tiny LLaVA LM of make_test_vlm.py (models/fixtures/vision/
tiny-llava-llm-f32.gguf) stores "<image>" (id 3) as a CONTROL token, because
its tokenizer_config.json carries added_tokens_decoder and llama.cpp's
convert_hf_to_gguf.py types a piece CONTROL or USER_DEFINED only from there
(or from added_tokens.json). A tokenizer re-saved by transformers 5 has no
added_tokens_decoder, so the converter keeps what the SentencePiece model
says: a user-defined piece inside the model becomes NORMAL (score 0), and an
added token beyond it has no entry at all and becomes "[PAD<id>]", UNUSED,
score -10000 (the converter's placeholder for ids it has no piece for).
These two files are those vocabularies on the same weights:

  tiny-llava-llm-normal-image-q8_0.gguf   id 3 = "<image>", NORMAL, score 0
  tiny-llava-llm-no-image-q8_0.gguf       id 3 = "[PAD3]", UNUSED, score -10000

Everything else is the source file's: the same keys (general.file_type
becomes 7, "mostly Q8_0"), the same tensors, with every 2-D tensor
quantized to Q8_0 the way ggml's quantize_row_q8_0_ref does (d = max|x|/127
in float32, stored as fp16; q = roundf(x/d)) so each file is ~340 KB rather
than 1.2 MB; 1-D tensors (the norms) stay F32, as llama.cpp's --outtype q8_0
leaves them. They pair with tiny-llava-mmproj-f32.gguf (n_embd 64).

Standard library only, deterministic (a second run writes the same bytes):

    python3 models/make_marker_vocab.py [--src F32.gguf] [--out DIR] [--check]

--check writes to a temporary directory and compares with the files in
--out instead (what tests/vision's vision_marker_fixtures runs).
"""
import argparse
import array
import filecmp
import math
import os
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
VISION = os.path.join(HERE, 'fixtures', 'vision')
SRC = os.path.join(VISION, 'tiny-llava-llm-f32.gguf')

GGUF_MAGIC = 0x46554747
ALIGNMENT = 32
T_UINT32, T_INT32, T_FLOAT32, T_STRING, T_ARRAY = 4, 5, 6, 8, 9
SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
GGML_F32, GGML_Q8_0 = 0, 8
FILE_TYPE_Q8_0 = 7
TOKEN_NORMAL, TOKEN_UNUSED = 1, 5
IMAGE = '<image>'

VARIANTS = {
    'tiny-llava-llm-normal-image-q8_0.gguf': lambda i: (IMAGE, 0.0, TOKEN_NORMAL),
    'tiny-llava-llm-no-image-q8_0.gguf': lambda i: ('[PAD%d]' % i, -10000.0, TOKEN_UNUSED),
}


class Reader:
    """Just enough of GGUF v3 to copy a file: raw key/value bytes kept."""

    def __init__(self, data):
        self.d, self.o = data, 0

    def take(self, fmt):
        v = struct.unpack_from('<' + fmt, self.d, self.o)
        self.o += struct.calcsize('<' + fmt)
        return v

    def string(self):
        (n,) = self.take('Q')
        s = self.d[self.o:self.o + n].decode('utf-8')
        self.o += n
        return s

    def skip_value(self, t):
        if t == T_STRING:
            self.string()
        elif t == T_ARRAY:
            et, n = self.take('IQ')
            if et in SCALAR_SIZE:
                self.o += SCALAR_SIZE[et] * n
            else:
                for _ in range(n):
                    self.skip_value(et)
        else:
            self.o += SCALAR_SIZE[t]

    def value(self, t):
        start = self.o
        self.skip_value(t)
        return self.d[start:self.o]


def parse(data):
    r = Reader(data)
    magic, version, n_tensors, n_kv = r.take('IIQQ')
    if magic != GGUF_MAGIC or version != 3:
        sys.exit('not a GGUF v3 file')
    kv = []
    for _ in range(n_kv):
        key = r.string()
        (t,) = r.take('I')
        kv.append((key, t, r.value(t)))
    if any(k == 'general.alignment' for k, _, _ in kv):
        sys.exit('general.alignment is set: this script assumes the default 32')
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        (nd,) = r.take('I')
        dims = r.take('Q' * nd)
        ttype, off = r.take('IQ')
        tensors.append((name, dims, ttype, off))
    base = r.o + (-r.o) % ALIGNMENT
    return kv, tensors, base


def strings_of(raw):
    r = Reader(raw)
    et, n = r.take('IQ')
    assert et == T_STRING
    return [r.string() for _ in range(n)]


def scalars_of(raw, fmt):
    r = Reader(raw)
    _, n = r.take('IQ')
    return list(r.take(fmt * n))


def pack_str(s):
    b = s.encode('utf-8')
    return struct.pack('<Q', len(b)) + b


def pack_strings(values):
    return struct.pack('<IQ', T_STRING, len(values)) + b''.join(pack_str(v) for v in values)


def pack_scalars(et, fmt, values):
    return struct.pack('<IQ', et, len(values)) + struct.pack('<%d%s' % (len(values), fmt), *values)


def f32(x):
    return struct.unpack('<f', struct.pack('<f', x))[0]


def q8_0(values):
    """ggml's quantize_row_q8_0_ref. Python's double arithmetic gives the
    float32 results exactly here: a float32 quotient or product rounded
    through a double is rounded correctly (53 >= 2 * 24 + 2)."""
    out = bytearray()
    for b in range(0, len(values), 32):
        blk = values[b:b + 32]
        amax = max(abs(x) for x in blk)
        d = f32(amax / 127.0)
        inv = f32(1.0 / d) if d else 0.0
        out += struct.pack('<e', d)
        for x in blk:
            v = f32(x * inv)
            q = int(math.floor(abs(v) + 0.5))
            out += struct.pack('<b', q if v >= 0 else -q)
    return bytes(out)


def tensor_bytes(data, base, dims, ttype, off):
    if ttype != GGML_F32:
        sys.exit('expected an F32 source file')
    n = 1
    for d in dims:
        n *= d
    vals = array.array('f')
    vals.frombytes(data[base + off:base + off + 4 * n])
    if sys.byteorder != 'little':
        vals.byteswap()
    if len(dims) < 2:
        return GGML_F32, data[base + off:base + off + 4 * n]
    if dims[0] % 32:
        sys.exit('row length %d is not a multiple of 32' % dims[0])
    return GGML_Q8_0, q8_0(vals.tolist())


def rewrite_kv(kv, token_of):
    out = []
    tokens = strings_of(dict((k, raw) for k, _, raw in kv)['tokenizer.ggml.tokens'])
    if IMAGE not in tokens:
        sys.exit('the source vocabulary has no %s token' % IMAGE)
    img = tokens.index(IMAGE)
    text, score, ttype = token_of(img)
    for key, t, raw in kv:
        if key == 'tokenizer.ggml.tokens':
            tokens[img] = text
            raw = pack_strings(tokens)
        elif key == 'tokenizer.ggml.scores':
            scores = scalars_of(raw, 'f')
            scores[img] = score
            raw = pack_scalars(T_FLOAT32, 'f', scores)
        elif key == 'tokenizer.ggml.token_type':
            types = scalars_of(raw, 'i')
            types[img] = ttype
            raw = pack_scalars(T_INT32, 'i', types)
        elif key == 'general.file_type':
            raw = struct.pack('<I', FILE_TYPE_Q8_0)
        out.append((key, t, raw))
    return out


def derive(data, token_of):
    kv, tensors, base = parse(data)
    kv = rewrite_kv(kv, token_of)
    head = [struct.pack('<IIQQ', GGUF_MAGIC, 3, len(tensors), len(kv))]
    for key, t, raw in kv:
        head.append(pack_str(key) + struct.pack('<I', t) + raw)
    blobs, off = [], 0
    for name, dims, ttype, toff in tensors:
        new_type, blob = tensor_bytes(data, base, dims, ttype, toff)
        head.append(pack_str(name) + struct.pack('<I', len(dims)) +
                    struct.pack('<%dQ' % len(dims), *dims) + struct.pack('<IQ', new_type, off))
        pad = b'\0' * ((-len(blob)) % ALIGNMENT)
        blobs.append(blob + pad)
        off += len(blob) + len(pad)
    header = b''.join(head)
    header += b'\0' * ((-len(header)) % ALIGNMENT)
    return header + b''.join(blobs)


def write_all(src, out_dir):
    with open(src, 'rb') as f:
        data = f.read()
    paths = []
    for name, token_of in sorted(VARIANTS.items()):
        path = os.path.join(out_dir, name)
        tmp = path + '.tmp'
        with open(tmp, 'wb') as f:
            f.write(derive(data, token_of))
        os.replace(tmp, path)
        paths.append(path)
    return paths


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--src', default=SRC, help='the F32 tiny LLaVA LM (default: %(default)s)')
    ap.add_argument('--out', default=VISION, help='output directory (default: %(default)s)')
    ap.add_argument('--check', action='store_true',
                    help='compare a fresh derivation with the files in --out')
    args = ap.parse_args(argv)
    if not args.check:
        for p in write_all(args.src, args.out):
            print('%s: %d bytes' % (p, os.path.getsize(p)))
        return 0
    with tempfile.TemporaryDirectory() as td:
        bad = 0
        for p in write_all(args.src, td):
            name = os.path.basename(p)
            ref = os.path.join(args.out, name)
            if not os.path.exists(ref) or not filecmp.cmp(p, ref, shallow=False):
                print('FAIL: %s differs from a fresh derivation' % ref)
                bad += 1
        if bad:
            return 1
    print('PASS: marker vocabulary fixtures match %s' % os.path.basename(args.src))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
