#!/usr/bin/env python3
"""Convert a Hugging Face byte-level BPE tokenizer.json into a vocab-only
GGUF laid out the way llama.cpp's converter writes one (no tensors).

Standard library only (json, struct): it carries its own small GGUF writer
so the test suite can run it on a machine without pip packages.

    make_vocab_gguf.py tokenizer.json out.gguf --pre qwen2 [--config tokenizer_config.json]
                       [--name NAME] [--arch ARCH]

Keys written:
  general.architecture, general.name
  tokenizer.ggml.model       = "gpt2"
  tokenizer.ggml.pre         = --pre ("qwen2", "llama-bpe", ...)
  tokenizer.ggml.tokens      every id 0..max in order, added tokens included;
                             ids with no token become "[PAD<id>]"
  tokenizer.ggml.token_type  CONTROL (3) for special added tokens and added
                             tokens that look special (<|...|>), USER_DEFINED
                             (4) for the other added tokens, UNUSED (5) for
                             the padding ids, NORMAL (1) otherwise
  tokenizer.ggml.merges      "left right", in rank order
  tokenizer.ggml.{bos,eos,unknown,padding}_token_id   from tokenizer_config.json
  tokenizer.ggml.add_bos_token / add_eos_token        when the config (or a
                             TemplateProcessing post-processor) says so
  tokenizer.chat_template    when the config has one
"""
import argparse
import json
import os
import struct
import sys

GGUF_MAGIC = 0x46554747
GGUF_VERSION = 3
ALIGNMENT = 32

T_UINT32, T_INT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 7, 8, 9

TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5


class GGUFWriter:
    """Just enough of GGUF v3 for key/value pairs and zero tensors."""

    def __init__(self):
        self.kv = []

    @staticmethod
    def _str(s):
        b = s.encode('utf-8')
        return struct.pack('<Q', len(b)) + b

    def add_string(self, key, value):
        self.kv.append((key, struct.pack('<I', T_STRING) + self._str(value)))

    def add_u32(self, key, value):
        self.kv.append((key, struct.pack('<II', T_UINT32, value)))

    def add_bool(self, key, value):
        self.kv.append((key, struct.pack('<IB', T_BOOL, 1 if value else 0)))

    def add_str_array(self, key, values):
        parts = [struct.pack('<IIQ', T_ARRAY, T_STRING, len(values))]
        parts.extend(self._str(v) for v in values)
        self.kv.append((key, b''.join(parts)))

    def add_i32_array(self, key, values):
        head = struct.pack('<IIQ', T_ARRAY, T_INT32, len(values))
        self.kv.append((key, head + struct.pack('<%di' % len(values), *values)))

    def write(self, path):
        keys = [k for k, _ in self.kv]
        if len(set(keys)) != len(keys):
            raise ValueError('duplicate GGUF keys')
        out = [struct.pack('<IIqq', GGUF_MAGIC, GGUF_VERSION, 0, len(self.kv))]
        for key, payload in self.kv:
            out.append(self._str(key))
            out.append(payload)
        data = b''.join(out)
        data += b'\0' * ((-len(data)) % ALIGNMENT)   # start of the (empty) data section
        tmp = path + '.tmp'
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)


def token_content(tok):
    if tok is None:
        return None
    if isinstance(tok, dict):
        return tok.get('content')
    return tok


def looks_special(text):
    # The same rule as llama.cpp's converter (does_token_look_special).
    return (text in ('<pad>', '<mask>', '<2mass>', '[@BOS@]')
            or (text.startswith('<|') and text.endswith('|>'))
            or (text.startswith('<\uff5c') and text.endswith('\uff5c>'))
            or (text.startswith('<unused') and text.endswith('>')))


def template_adds(post, config):
    """add_bos/add_eos implied by a TemplateProcessing post-processor."""
    if not isinstance(post, dict):
        return None, None
    if post.get('type') == 'Sequence':
        for p in post.get('processors', []):
            r = template_adds(p, config)
            if r != (None, None):
                return r
        return None, None
    if post.get('type') != 'TemplateProcessing':
        return None, None
    single = post.get('single') or []
    if not single:
        return None, None
    bos = token_content(config.get('bos_token'))
    eos = token_content(config.get('eos_token'))
    first = single[0].get('SpecialToken', {}).get('id')
    last = single[-1].get('SpecialToken', {}).get('id')
    return (first is not None and first == bos), (last is not None and last == eos)


def convert(tok_json, out_path, pre, config_path=None, name=None, arch=None):
    with open(tok_json, 'r', encoding='utf-8') as f:
        tj = json.load(f)
    config = {}
    if config_path is None:
        cand = os.path.join(os.path.dirname(os.path.abspath(tok_json)), 'tokenizer_config.json')
        if os.path.exists(cand):
            config_path = cand
    if config_path:
        with open(config_path, 'r', encoding='utf-8') as f:
            config = json.load(f)

    model = tj['model']
    if model.get('type') != 'BPE':
        raise SystemExit('%s: model type %r is not BPE' % (tok_json, model.get('type')))
    by_id = {}
    for text, i in model['vocab'].items():
        by_id[i] = text
    added = {}
    for a in tj.get('added_tokens', []):
        by_id[a['id']] = a['content']
        added[a['id']] = a
    n = max(by_id) + 1

    tokens, types = [], []
    for i in range(n):
        if i not in by_id:
            tokens.append('[PAD%d]' % i)
            types.append(TOKEN_UNUSED)
            continue
        text = by_id[i]
        tokens.append(text)
        if i in added:
            special = added[i].get('special', False) or looks_special(text)
            types.append(TOKEN_CONTROL if special else TOKEN_USER_DEFINED)
        else:
            types.append(TOKEN_NORMAL)

    merges = []
    for m in model.get('merges', []):
        if isinstance(m, str):
            merges.append(m)
        else:
            merges.append('%s %s' % (m[0], m[1]))

    ids = {}
    for i, t in enumerate(tokens):
        ids.setdefault(t, i)

    w = GGUFWriter()
    w.add_string('general.architecture', arch or ('qwen2' if pre.startswith('qwen') else 'llama'))
    w.add_string('general.name', name or pre)
    w.add_string('tokenizer.ggml.model', 'gpt2')
    w.add_string('tokenizer.ggml.pre', pre)
    w.add_str_array('tokenizer.ggml.tokens', tokens)
    w.add_i32_array('tokenizer.ggml.token_type', types)
    w.add_str_array('tokenizer.ggml.merges', merges)
    for key, field in (('bos', 'bos_token'), ('eos', 'eos_token'),
                       ('unknown', 'unk_token'), ('padding', 'pad_token')):
        text = token_content(config.get(field))
        if text is not None and text in ids:
            w.add_u32('tokenizer.ggml.%s_token_id' % key, ids[text])
    add_bos, add_eos = template_adds(tj.get('post_processor'), config)
    if 'add_bos_token' in config:
        add_bos = bool(config['add_bos_token'])
    if 'add_eos_token' in config:
        add_eos = bool(config['add_eos_token'])
    if add_bos is not None:
        w.add_bool('tokenizer.ggml.add_bos_token', add_bos)
    if add_eos is not None:
        w.add_bool('tokenizer.ggml.add_eos_token', add_eos)
    tmpl = config.get('chat_template')
    if isinstance(tmpl, str):
        w.add_string('tokenizer.chat_template', tmpl)
    w.write(out_path)
    return len(tokens), len(merges)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('tokenizer_json')
    ap.add_argument('out')
    ap.add_argument('--pre', required=True, help='tokenizer.ggml.pre value, e.g. qwen2 or llama-bpe')
    ap.add_argument('--config', help='tokenizer_config.json (default: next to tokenizer.json)')
    ap.add_argument('--name', help='general.name')
    ap.add_argument('--arch', help='general.architecture')
    args = ap.parse_args(argv)
    n_tok, n_merge = convert(args.tokenizer_json, args.out, args.pre, args.config, args.name, args.arch)
    print('%s: %d tokens, %d merges' % (args.out, n_tok, n_merge))


if __name__ == '__main__':
    main(sys.argv[1:])
