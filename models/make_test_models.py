#!/usr/bin/env python3
"""Build the tiny random LLM fixtures in models/fixtures/ and their HF references.

What it does (deterministically; re-running gives byte-identical files):

  1. tiny-llama: LlamaForCausalLM (GQA 4 heads / 2 kv heads, hidden 64, 4 layers,
     ff 192, untied output) with a SentencePiece BPE vocabulary (800 pieces,
     byte_fallback) trained here on a generated English corpus, so that
     llama.cpp's converter takes its SPM path (tokenizer.ggml.model = "llama").
  2. tiny-qwen2: Qwen2ForCausalLM (q/k/v biases, hidden 64, 3 layers, tied
     embeddings, rope_theta 1e6) with a byte-level BPE vocabulary: the real Qwen3
     tokenizer truncated to its first 1000 tokens (+ its 26 added tokens
     remapped to 1000..1025; config vocab_size padded to 1088 like real Qwen
     checkpoints pad theirs).
  3. Weights: torch.Generator-seeded normal init with a larger std than HF's
     0.02 (see INIT_STD) so that logits and greedy continuations are not flat.
  4. Converts each HF checkpoint with llama.cpp's own convert_hf_to_gguf.py
     (imported as a module, run in-process) to F32, F16 and Q8_0.
     One monkeypatch of ours: for the truncated Qwen vocabulary the converter's
     BPE pre-tokenizer detection (get_vocab_base_pre, a hash of a test string's
     tokenization) cannot match, so Qwen2Model.get_vocab_base_pre is replaced by
     a function returning "qwen2" (the pre-tokenizer the real Qwen3 vocab maps
     to). Everything else is the converter's own code.
  5. Records HF references (float32, eager attention, 1 CPU thread): for each
     prompt the HF tokenizer's ids, the logits at every position, and a 16-token
     greedy continuation (argmax fed back, no stop on EOS), into
     <model>.ref.bin (format below) and a human-readable <model>.ref.json.
  6. Verifies every GGUF independently with models/gguf_forward_ref.py (a numpy
     forward that reads the GGUF with gguf-py) against the HF logits, and writes
     manifest.json (tool versions, sizes, sha256, measured errors).
  7. For F16 and Q8_0 also writes <model>-<type>.exact.bin (same format, same
     ids): the logits of that numpy forward in float64 on the file's dequantized
     weights, i.e. what exact arithmetic gives for the quantized file. Quantizing
     the weights alone moves the logits by up to ~3e-3 (F16) and ~7e-2 (Q8_0) of
     max|logit| against HF, so an engine that keeps activations in F32 is held to
     these files much more tightly than to HF's.

llama.cpp's converter location, in order: --llama-cpp DIR, $LLAMA_CPP_DIR, or
downloaded at run time with
  pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36
and unpacked into a temporary directory (vendor/llama.cpp inside it). Its
gguf-py/ is put first on sys.path so the reader/writer match the converter.
Nothing from llama.cpp is committed.

Reference file format (<model>.ref.bin, all little-endian):
  char     magic[8]    "MDHFREF1"
  uint32   version     1
  uint32   n_vocab     logits per row
  uint32   n_prompts
  then per prompt:
    uint32 text_len;  uint8 text[text_len]       (UTF-8, no NUL)
    uint32 flags      bit0: the HF tokenizer added special tokens (BOS for
                      llama) = tokenize with add_special; bit1: special-token
                      text in the prompt is parsed as special tokens
    uint32 n_prompt   number of prompt token ids
    uint32 n_gen      number of greedy continuation ids (16)
    int32  ids[n_prompt + n_gen]    prompt ids, then the greedy continuation
    float32 logits[(n_prompt + n_gen - 1) * n_vocab]
                      row p = HF logits at position p of ids[0 .. n_prompt+n_gen-2];
                      rows 0..n_prompt-1 are the prompt logits, row n_prompt-1+k
                      predicts ids[n_prompt+k] (= argmax of that row).

Usage:  python3 models/make_test_models.py [--llama-cpp DIR] [--out DIR] [--keep-hf DIR]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# single-threaded BLAS/torch for reproducible float results (set before numpy loads)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "fixtures"
QWEN_TOKENIZER_DIR = Path("/work/shared/fixtures/tokenizer/hf/qwen3")
LLAMA_CPP_PY_VERSION = "0.3.36"
MAX_FILE_BYTES = 5 * 1000 * 1000

SEED = 20240601
INIT_STD = 0.15          # q/k/v/gate/up matrices (HF default 0.02 is too flat)
OUT_STD = 0.15           # o_proj / down_proj (what each layer writes into the residual)
EMB_STD = 0.15           # token embeddings
HEAD_STD = 0.15          # untied lm_head
NORM_JITTER = 0.2        # RMSNorm weights ~ U(1 - j, 1 + j)
BIAS_STD = 0.2           # qwen2 q/k/v biases
N_GEN = 16
OUTTYPES = ["f32", "f16", "q8_0"]

COMMON_PROMPTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
]
MODELS = {
    "tiny-llama": dict(
        prompts=COMMON_PROMPTS + [
            "Once upon a time, Alice found 42 golden apples in the garden.",
            "Caf\u00e9 au lait costs 3.50 \u2014 na\u00efve?",  # byte fallback
        ],
    ),
    "tiny-qwen2": dict(
        prompts=COMMON_PROMPTS + [
            "Caf\u00e9 au lait costs 3.50 \u2014 na\u00efve?",
            "<|im_start|>user\nWhat is 12+7?<|im_end|>\n<|im_start|>assistant\n",
        ],
    ),
}


# --------------------------------------------------------------------------
# locating llama.cpp's converter

def locate_llama_cpp(arg: str | None, tmp: Path) -> Path:
    cand = arg or os.environ.get("LLAMA_CPP_DIR")
    if cand:
        p = Path(cand).resolve()
        if (p / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py").is_file():
            p = p / "vendor" / "llama.cpp"
        if not (p / "convert_hf_to_gguf.py").is_file():
            sys.exit(f"error: {p}/convert_hf_to_gguf.py not found")
        return p
    dl = tmp / "llama-cpp-python"
    dl.mkdir(parents=True, exist_ok=True)
    print(f"downloading llama-cpp-python=={LLAMA_CPP_PY_VERSION} source distribution ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    f"llama-cpp-python=={LLAMA_CPP_PY_VERSION}", "-d", str(dl)], check=True)
    tars = glob.glob(str(dl / "llama_cpp_python-*.tar.gz"))
    if not tars:
        sys.exit("error: pip download produced no llama_cpp_python-*.tar.gz")
    with tarfile.open(tars[0]) as tf:
        try:
            tf.extractall(dl, filter="data")
        except TypeError:  # Python without extraction filters
            tf.extractall(dl)
    found = glob.glob(str(dl / "llama_cpp_python-*" / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py"))
    if not found:
        sys.exit("error: vendor/llama.cpp/convert_hf_to_gguf.py not in the source distribution")
    return Path(found[0]).parent


def setup_llama_cpp_path(lcpp: Path) -> None:
    # their gguf-py first (it must match the converter), then the converter's dir
    sys.path.insert(0, str(lcpp))
    sys.path.insert(0, str(lcpp / "gguf-py"))
    import gguf  # noqa: F401
    gf = Path(gguf.__file__).resolve()
    if lcpp.resolve() not in gf.parents:
        sys.exit(f"error: imported gguf from {gf}, not from {lcpp}/gguf-py")


def llama_cpp_info(lcpp: Path) -> dict:
    info: dict = {"source": f"llama-cpp-python=={LLAMA_CPP_PY_VERSION} sdist, vendor/llama.cpp"}
    try:  # only if lcpp is itself the top of a git checkout (the sdist keeps its .git)
        r = subprocess.run(["git", "-C", str(lcpp), "rev-parse", "--show-toplevel", "HEAD"],
                           capture_output=True, text=True)
        out = r.stdout.split()
        if r.returncode == 0 and len(out) == 2 and Path(out[0]).resolve() == lcpp.resolve():
            info["commit"] = out[1]
    except OSError:
        pass
    h = hashlib.sha256()
    files = [lcpp / "convert_hf_to_gguf.py"] + sorted((lcpp / "conversion").glob("*.py"))
    for f in files:
        h.update(f.read_bytes())
    info["converter_sha256"] = h.hexdigest()
    ver = None
    for line in (lcpp / "gguf-py" / "pyproject.toml").read_text().splitlines():
        if line.startswith("version"):
            ver = line.split("=", 1)[1].strip().strip('"')
            break
    info["gguf_py_version"] = ver
    return info


# --------------------------------------------------------------------------
# tokenizers

SPM_WORDS = """the of and to in is was that for on with as by at from his her it an be are this which or
had not but they have one you all were we there been has their more if will would about so what when
who up out do into time some could them other than then now only its over also two may first new any
these like very after our most made just where way many well down back long great little old man world
day year work life home house city country water light night hand eye child king queen river mountain
forest sea ship road tree bird dog cat fox horse cow garden door window table book letter story song
word name people woman friend family mother father brother sister boy girl teacher student doctor robot
computer machine engine train station market school village castle bridge tower island valley field
summer winter spring autumn morning evening rain snow wind sun moon star cloud fire stone gold silver
red green blue white black brown yellow quick slow happy sad bright dark warm cold young small large
strong gentle quiet loud early late strange simple clever lazy brave kind wise curious hungry tired
walk run jump swim fly sing read write speak listen look watch find keep give take bring carry build
make open close begin end learn teach help love like want need know think remember forget believe
said asked answered went came saw found told called lived loved wanted looked walked jumped played
opened closed started stopped turned moved carried built learned helped dreamed laughed smiled cried
once upon there named who loved never always often sometimes again together behind between under
above across around through before after during while because although until unless hello goodbye
yes please thank sorry maybe perhaps every each another nothing something everything someone
apple apples golden costs price coffee milk tea bread cheese jumps dogs foxes""".split()
SPM_NAMES = "Alice Bob Carol Dave Emma Frank Grace Henry Ivy Jack Lily Max Nora Oscar Paul Rose Sam Tom Una Vera".split()


def spm_corpus() -> str:
    r = random.Random(1234)
    lines = []
    for _ in range(3000):
        n = r.randint(5, 16)
        ws = [r.choice(SPM_WORDS) for _ in range(n)]
        if r.random() < 0.4:
            ws.insert(r.randint(0, n), r.choice(SPM_NAMES))
        if r.random() < 0.3:
            ws.insert(r.randint(0, n), str(r.randint(0, 2000)))
        s = " ".join(ws)
        s = s[0].upper() + s[1:] + r.choice([".", ".", ".", "!", "?", ",", ";"])
        if r.random() < 0.2:
            s = '"' + s + '" ' + r.choice(SPM_NAMES) + " said."
        lines.append(s)
    return "\n".join(lines) + "\n"


def make_spm_tokenizer(d: Path) -> None:
    import sentencepiece as spm
    corpus = d / "corpus.txt"
    corpus.write_text(spm_corpus(), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(d / "spm"), vocab_size=800, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        character_coverage=1.0, num_threads=1, shuffle_input_sentence=False, minloglevel=2,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    shutil.move(str(d / "spm.model"), str(d / "tokenizer.model"))
    (d / "spm.vocab").unlink()
    corpus.unlink()
    cfg = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "legacy": False,
           "clean_up_tokenization_spaces": False, "model_max_length": 256}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))


def make_qwen_tokenizer(d: Path, n_keep: int = 1000) -> int:
    t = json.loads((QWEN_TOKENIZER_DIR / "tokenizer.json").read_text(encoding="utf-8"))
    cfg = json.loads((QWEN_TOKENIZER_DIR / "tokenizer_config.json").read_text(encoding="utf-8"))
    vocab = {s: i for s, i in t["model"]["vocab"].items() if i < n_keep}
    assert sorted(vocab.values()) == list(range(n_keep))
    merges = [m for m in t["model"]["merges"]
              if m[0] in vocab and m[1] in vocab and (m[0] + m[1]) in vocab]
    t["model"]["vocab"] = vocab
    t["model"]["merges"] = merges
    remap = {}
    for k, a in enumerate(t["added_tokens"]):
        remap[a["id"]] = n_keep + k
        a["id"] = n_keep + k
    cfg["added_tokens_decoder"] = {str(remap[int(k)]): v for k, v in cfg["added_tokens_decoder"].items()}
    (d / "tokenizer.json").write_text(json.dumps(t, ensure_ascii=False, indent=1), encoding="utf-8")
    (d / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"qwen tokenizer: kept {len(vocab)} tokens, {len(merges)} merges, {len(remap)} added tokens")
    return n_keep + len(remap)


# --------------------------------------------------------------------------
# models

def init_weights(model, seed: int) -> None:
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight"):
                p.copy_(1.0 + NORM_JITTER * (2 * torch.rand(p.shape, generator=g) - 1))
            elif name.endswith(".bias"):
                p.copy_(BIAS_STD * torch.randn(p.shape, generator=g))
            else:
                std = (EMB_STD if "embed_tokens" in name else HEAD_STD if "lm_head" in name
                       else OUT_STD if name.endswith(("o_proj.weight", "down_proj.weight")) else INIT_STD)
                p.copy_(std * torch.randn(p.shape, generator=g))


def rope_kwargs(cfg_cls, theta: float) -> dict:
    import inspect
    params = inspect.signature(cfg_cls.__init__).parameters
    if "rope_parameters" in params:
        return {"rope_parameters": {"rope_type": "default", "rope_theta": theta}}
    return {"rope_theta": theta}


def build_llama(d: Path):
    from transformers import LlamaConfig, LlamaForCausalLM
    make_spm_tokenizer(d)
    cfg = LlamaConfig(vocab_size=800, hidden_size=64, intermediate_size=192, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, hidden_act="silu",
                      bos_token_id=1, eos_token_id=2, attention_bias=False, mlp_bias=False,
                      **rope_kwargs(LlamaConfig, 10000.0))
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg)
    init_weights(model, SEED)
    return model


def build_qwen2(d: Path):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    n_tok = make_qwen_tokenizer(d)
    n_vocab = (n_tok + 63) // 64 * 64
    cfg = Qwen2Config(vocab_size=n_vocab, hidden_size=64, intermediate_size=192, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu",
                      use_sliding_window=False, bos_token_id=1000, eos_token_id=1000,
                      **rope_kwargs(Qwen2Config, 1000000.0))
    cfg._attn_implementation = "eager"
    model = Qwen2ForCausalLM(cfg)
    init_weights(model, SEED + 1)
    if cfg.tie_word_embeddings:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


# --------------------------------------------------------------------------
# references

def check_spm_agrees(d: Path, tok, prompts) -> None:
    """The HF tokenizer must agree with sentencepiece itself (= llama.cpp's SPM)."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    for p in prompts:
        a = tok(p)["input_ids"]
        b = [sp.bos_id()] + sp.encode(p)
        if a != b:
            sys.exit(f"error: HF and sentencepiece disagree on {p!r}: {a} vs {b}")


def record_reference(model, tok, prompts):
    import torch
    recs = []
    for text in prompts:
        ids = tok(text)["input_ids"]
        plain = tok(text, add_special_tokens=False)["input_ids"]
        flags = (1 if ids != plain else 0) | 2
        seq = list(ids)
        margins = []
        with torch.no_grad():
            for _ in range(N_GEN):
                lg = model(torch.tensor([seq])).logits[0, -1].double()
                top = torch.topk(lg, 2)
                margins.append(float((top.values[0] - top.values[1]) / lg.abs().max()))
                seq.append(int(top.indices[0]))
            full = model(torch.tensor([seq[:-1]])).logits[0].float()
        gen = seq[len(ids):]
        # the single-pass logits must reproduce the step-by-step greedy choice
        assert [int(x) for x in full[len(ids) - 1:].argmax(-1)] == gen, "greedy/full-pass mismatch"
        if len(set(gen)) < 4:
            sys.exit(f"error: degenerate greedy continuation for {text!r}: {gen}")
        recs.append(dict(text=text, flags=flags, ids=ids, gen=gen, logits=full.numpy().copy(),
                         min_margin=min(margins)))
    return recs


def write_reference(path: Path, n_vocab: int, recs) -> None:
    import numpy as np
    buf = io.BytesIO()
    buf.write(b"MDHFREF1")
    buf.write(struct.pack("<III", 1, n_vocab, len(recs)))
    for r in recs:
        tb = r["text"].encode("utf-8")
        buf.write(struct.pack("<I", len(tb)) + tb)
        buf.write(struct.pack("<III", r["flags"], len(r["ids"]), len(r["gen"])))
        buf.write(np.asarray(r["ids"] + r["gen"], dtype="<i4").tobytes())
        lg = np.asarray(r["logits"], dtype="<f4")
        assert lg.shape == (len(r["ids"]) + len(r["gen"]) - 1, n_vocab)
        buf.write(lg.tobytes())
    path.write_bytes(buf.getvalue())


def ref_json(n_vocab: int, recs) -> str:
    """The .ref.bin minus the logits, for people (one prompt per block)."""
    lines = ['{', ' "format": "see models/make_test_models.py; logits are in the .ref.bin",',
             f' "n_vocab": {n_vocab},', ' "prompts": [']
    for i, r in enumerate(recs):
        lines += ['  {',
                  f'   "text": {json.dumps(r["text"], ensure_ascii=False)},',
                  f'   "flags": {r["flags"]},',
                  f'   "ids": {json.dumps(r["ids"])},',
                  f'   "greedy": {json.dumps(r["gen"])},',
                  f'   "greedy_min_rel_margin": {round(r["min_margin"], 6)}',
                  '  }' + ("," if i + 1 < len(recs) else "")]
    lines += [' ]', '}']
    json.loads("\n".join(lines))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# conversion

def convert(lcpp: Path, hf_dir: Path, outfile: Path, outtype: str) -> None:
    import logging
    import torch
    conversion = importlib.import_module("conversion")
    qwen = importlib.import_module("conversion.qwen")

    # Our one monkeypatch (see the module docstring): the truncated Qwen vocab cannot
    # match the converter's pre-tokenizer hash; it is the Qwen2 pre-tokenizer.
    def _pre_qwen2(self, tokenizer) -> str:
        return "qwen2"
    qwen.Qwen2Model.get_vocab_base_pre = _pre_qwen2

    import gguf
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype]
    logging.getLogger().setLevel(logging.WARNING)
    with torch.inference_mode():
        hparams = conversion.ModelBase.load_hparams(hf_dir, False)
        arch = conversion.get_model_architecture(hparams, conversion.ModelType.TEXT)
        cls = conversion.get_model_class(arch, mmproj=False)
        m = cls(hf_dir, ftype, outfile, is_big_endian=False, use_temp_file=False, eager=False,
                metadata_override=None, model_name=None, split_max_tensors=0, split_max_size=0,
                dry_run=False, small_first_shard=False, remote_hf_model_id=None)
        m.write()


# --------------------------------------------------------------------------

def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-cpp", help="llama.cpp tree with convert_hf_to_gguf.py (or $LLAMA_CPP_DIR)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output directory (default models/fixtures)")
    ap.add_argument("--keep-hf", help="also keep the HF checkpoints in this directory")
    args = ap.parse_args()

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="md-make-models-") as tmps:
        tmp = Path(tmps)
        lcpp = locate_llama_cpp(args.llama_cpp, tmp)
        setup_llama_cpp_path(lcpp)

        import numpy as np
        import sentencepiece
        import tokenizers
        import torch
        import transformers
        from transformers import AutoTokenizer
        import gguf
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)

        sys.path.insert(0, str(HERE))
        import gguf_forward_ref

        manifest = {
            "generator": "models/make_test_models.py",
            "versions": {
                "python": sys.version.split()[0], "torch": torch.__version__,
                "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                "sentencepiece": sentencepiece.__version__, "numpy": np.__version__,
                "llama_cpp": llama_cpp_info(lcpp),
            },
            "settings": {"seed": SEED, "init_std": INIT_STD, "out_std": OUT_STD,
                         "emb_std": EMB_STD, "head_std": HEAD_STD, "norm_jitter": NORM_JITTER,
                         "bias_std": BIAS_STD, "n_gen": N_GEN, "hf_attn": "eager",
                         "hf_dtype": "float32", "monkeypatch": "conversion.qwen.Qwen2Model."
                         "get_vocab_base_pre -> 'qwen2' (truncated vocab defeats the hash)"},
            "models": {},
        }

        for name, spec in MODELS.items():
            hf_dir = tmp / name
            hf_dir.mkdir()
            model = build_llama(hf_dir) if name == "tiny-llama" else build_qwen2(hf_dir)
            model.eval()
            model.save_pretrained(hf_dir, safe_serialization=True)
            tok = AutoTokenizer.from_pretrained(hf_dir)
            if name == "tiny-llama":
                check_spm_agrees(hf_dir, tok, spec["prompts"])
            n_vocab = model.config.vocab_size
            recs = record_reference(model, tok, spec["prompts"])
            ref = out / f"{name}.ref.bin"
            write_reference(ref, n_vocab, recs)
            (out / f"{name}.ref.json").write_text(ref_json(n_vocab, recs), encoding="utf-8")
            for r in recs:
                print(f"{name}: {r['text']!r}\n   ids {r['ids']}\n   greedy {r['gen']} "
                      f"(min rel margin {r['min_margin']:.4f})")

            entry = {"hf_config": {k: v for k, v in json.loads((hf_dir / "config.json").read_text()).items()
                                   if k not in ("transformers_version",)},
                     "files": {}}
            extra = []
            for ot in OUTTYPES:
                g = out / f"{name}-{ot}.gguf"
                convert(lcpp, hf_dir, g, ot)
                err, lgs = gguf_forward_ref.check_against_reference(g, ref, verbose=False,
                                                                    return_logits=True)
                entry["files"][g.name] = {"bytes": g.stat().st_size, "sha256": sha256(g),
                                          "numpy_ref_max_rel_err": float(f"{err:.3g}")}
                print(f"{g.name}: {g.stat().st_size} bytes, numpy forward vs HF max rel err {err:.3g}")
                if ot != "f32":
                    # exact-arithmetic reference of the quantized file itself: float64
                    # forward on the dequantized weights (same ids, same format)
                    ex = out / f"{name}-{ot}.exact.bin"
                    write_reference(ex, n_vocab, [dict(r, logits=lg) for r, lg in zip(recs, lgs)])
                    extra.append(ex)
            for f in [ref, out / f"{name}.ref.json"] + extra:
                entry["files"][f.name] = {"bytes": f.stat().st_size, "sha256": sha256(f)}
            manifest["models"][name] = entry
            if args.keep_hf:
                dst = Path(args.keep_hf) / name
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(hf_dir, dst)

        (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        print("\nfiles:")
        bad = False
        ours = ["manifest.json"] + [n for e in manifest["models"].values() for n in e["files"]]
        for f in sorted(out / n for n in ours):
            sz = f.stat().st_size
            print(f"  {sz:>9}  {f.name}")
            bad |= sz >= MAX_FILE_BYTES
        if bad:
            sys.exit("error: a fixture is >= 5 MB")


if __name__ == "__main__":
    main()
