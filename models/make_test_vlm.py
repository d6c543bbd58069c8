#!/usr/bin/env python3
"""Build the tiny random LLaVA-1.5 fixture in models/fixtures/vision/ and its HF reference.

What it does (deterministically; re-running gives the same files):

  1. A SentencePiece BPE vocabulary (800 pieces, byte fallback) like
     make_test_models.py's tiny-llama, plus "<image>" as a user-defined piece.
  2. A tiny LlavaForConditionalGeneration: CLIP vision tower (56 px, patch 14
     -> 4x4 = 16 patches + class token, hidden 64, ff 96, 4 heads, 3 layers,
     quick_gelu), projector mlp2x_gelu 64 -> 80 -> 64, LLaMA LM (hidden 64,
     4 layers, GQA 4/2), vision_feature_layer -2, strategy "default".
     Weights: seeded normal init with a larger std than HF's (not flat).
     The converter always stores the conv kernel and the projector matrices
     in F16, so those HF weights are rounded to F16 values first: the
     reference then runs on exactly the weights the GGUF holds.
  3. Converts with llama.cpp's own scripts (never committed; location from
     --llama-cpp DIR or $LLAMA_CPP_DIR, or fetched as make_test_models.py does):
     convert_hf_to_gguf.py for the LM (F32), and the legacy
     tools/mtmd/legacy-models/convert_image_encoder_to_gguf.py for the mmproj
     (--clip-model-is-vision --llava-projector --use-f32), which drops the
     last vision layer and writes block_count = 2, fc1 as ffn_down, etc.
  4. Runs HF (float32, eager attention, 1 thread) through its own processor
     (LlavaProcessor with the PIL LlavaImageProcessor, do_pad = True, i.e.
     LLaVA's expand2square) on a deterministic numpy test image and records:
     the processor's pixel values (pad and crop modes), the vision tower's
     selected hidden state (hidden_states[-2], class token included), the
     class-token attention row of every vision layer, the projector output,
     the input ids and the LM logits at every position.

Outputs (models/fixtures/vision/, each < 5 MB):
  tiny-llava-llm-f32.gguf, tiny-llava-mmproj-f32.gguf, test-image.ppm (61x45),
  tiny-llava-next-mmproj-f32.gguf (LLaVA-NeXT: same tower and LM, its own
    projector and image_newline, pinpoints 56x112, 112x56, 112x112 (h, w)),
  tiny-llava.ref.bin: magic "MDVLMRF1", uint32 count, then per array:
     uint32 name_len, name, uint32 dtype (0 f32, 1 i32, 2 u8), uint32 ndim,
     uint32 dims[ndim], data (little-endian, C order)
  tiny-llava.ref.json: sizes, tool versions, prompt, sha256.
Then make_marker_vocab.py derives tiny-llava-llm-{normal,no}-image-q8_0.gguf
(the LM with "<image>" as a NORMAL token / absent) from the new F32 LM.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "fixtures" / "vision"
SEED = 20261122
MAX_FILE_BYTES = 5 * 1000 * 1000
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
QUESTION = "What is in the garden?"
VICUNA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the human's questions.")
PROMPT = f"{VICUNA_SYSTEM} USER: <image>\n{QUESTION} ASSISTANT:"
IMAGE_W, IMAGE_H = 61, 45


def test_image():
    """A smooth pattern with edges and noise, so resizing is exercised."""
    import numpy as np
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:IMAGE_H, 0:IMAGE_W].astype(np.float64)
    r = 128 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    g = 255 * (x / IMAGE_W)
    b = np.where((x - 30) ** 2 + (y - 20) ** 2 < 150, 230, 40)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (IMAGE_H, IMAGE_W, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def write_ppm(path: Path, img) -> None:
    h, w, _ = img.shape
    path.write_bytes(f"P6\n{w} {h}\n255\n".encode() + img.tobytes())


def make_tokenizer(d: Path) -> None:
    import sentencepiece as spm
    sys.path.insert(0, str(HERE))
    from make_test_models import spm_corpus
    corpus = d / "corpus.txt"
    corpus.write_text(spm_corpus() + (VICUNA_SYSTEM + "\n") * 3, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(d / "spm"), vocab_size=800, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        character_coverage=1.0, num_threads=1, shuffle_input_sentence=False, minloglevel=2,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, user_defined_symbols=["<image>"])
    shutil.move(str(d / "spm.model"), str(d / "tokenizer.model"))
    (d / "spm.vocab").unlink()
    corpus.unlink()
    cfg = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "legacy": False,
           "clean_up_tokenization_spaces": False, "model_max_length": 512,
           "added_tokens_decoder": {"3": {"content": "<image>", "special": True, "lstrip": False,
                                          "rstrip": False, "normalized": False, "single_word": False}}}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1))


def init_weights(model, seed: int) -> None:
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * (2 * torch.rand(p.shape, generator=g) - 1))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embedding" in name or "embed_tokens" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def round_f16(t) -> None:
    import torch
    with torch.no_grad():
        t.copy_(t.to(torch.float16).to(torch.float32))


def build_llava(tok_dir: Path):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    sys.path.insert(0, str(HERE))
    from make_test_models import rope_kwargs
    vc = CLIPVisionConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                          num_attention_heads=4, image_size=56, patch_size=14, hidden_act="quick_gelu",
                          layer_norm_eps=1e-5, projection_dim=32, num_channels=3)
    tc = LlamaConfig(vocab_size=800, hidden_size=64, intermediate_size=192, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                     rms_norm_eps=1e-5, tie_word_embeddings=False, hidden_act="silu",
                     bos_token_id=1, eos_token_id=2, **rope_kwargs(LlamaConfig, 10000.0))
    cfg = LlavaConfig(vision_config=vc, text_config=tc, image_token_index=3,
                      vision_feature_layer=-2, vision_feature_select_strategy="default",
                      projector_hidden_act="gelu", multimodal_projector_bias=True)
    cfg._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    cfg.text_config._attn_implementation = "eager"
    torch.manual_seed(SEED)
    model = LlavaForConditionalGeneration(cfg).eval()
    init_weights(model, SEED)
    m = model.model
    round_f16(m.vision_tower.embeddings.patch_embedding.weight)
    round_f16(m.multi_modal_projector.linear_1.weight)
    round_f16(m.multi_modal_projector.linear_2.weight)
    return model


NEXT_PINPOINTS = [[56, 112], [112, 56], [112, 112]]   # (height, width), HF order


def build_llava_next(base):
    """LLaVA-NeXT with the LLaVA-1.5 model's tower and LM (so the LLM GGUF is
    shared) and its own projector and image_newline."""
    import copy
    import torch
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration
    cfg = LlavaNextConfig(vision_config=copy.deepcopy(base.config.vision_config),
                          text_config=copy.deepcopy(base.config.text_config), image_token_index=3,
                          vision_feature_layer=-2, vision_feature_select_strategy="default",
                          projector_hidden_act="gelu", multimodal_projector_bias=True,
                          image_grid_pinpoints=NEXT_PINPOINTS)
    for c in (cfg, cfg.vision_config, cfg.text_config):
        c._attn_implementation = "eager"
    model = LlavaNextForConditionalGeneration(cfg).eval()
    init_weights(model, SEED + 1)
    m, b = model.model, base.model
    m.vision_tower.load_state_dict(b.vision_tower.state_dict())
    m.language_model.load_state_dict(b.language_model.state_dict())
    model.lm_head.load_state_dict(base.lm_head.state_dict())
    with torch.no_grad():
        m.image_newline.copy_(0.5 * torch.randn(m.image_newline.shape,
                                                generator=torch.Generator().manual_seed(SEED + 2)))
    round_f16(m.multi_modal_projector.linear_1.weight)
    round_f16(m.multi_modal_projector.linear_2.weight)
    return model


def record_next(model, tok_dir: Path, img):
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoTokenizer, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
    ip = LlavaNextImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56},
                                    image_mean=CLIP_MEAN, image_std=CLIP_STD,
                                    image_grid_pinpoints=NEXT_PINPOINTS)
    proc = LlavaNextProcessor(image_processor=ip, tokenizer=AutoTokenizer.from_pretrained(str(tok_dir)),
                              patch_size=14, vision_feature_select_strategy="default",
                              image_token="<image>", num_additional_image_tokens=1)
    inp = proc(text=PROMPT, images=Image.fromarray(img), return_tensors="pt")
    with torch.no_grad():
        feats = model.model.get_image_features(pixel_values=inp["pixel_values"],
                                               image_sizes=inp["image_sizes"],
                                               vision_feature_layer=-2,
                                               vision_feature_select_strategy="default")
        # transformers 5: get_image_features already packs (unpad + newline)
        packed = feats.pooler_output if hasattr(feats, "pooler_output") else feats
        packed = torch.cat(list(packed), 0) if isinstance(packed, (list, tuple)) else packed
        logits = model(**inp).logits[0]
    n_img = int((inp["input_ids"] == 3).sum())
    assert packed.shape[0] == n_img, (packed.shape, n_img)
    return {"next_pixels": inp["pixel_values"][0].numpy(), "next_packed": packed.numpy(),
            "next_ids": inp["input_ids"][0].numpy().astype(np.int32), "next_logits": logits.numpy()}


def make_processor(tok_dir: Path, do_pad: bool):
    from transformers import AutoTokenizer, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil
    ip = LlavaImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56},
                                image_mean=CLIP_MEAN, image_std=CLIP_STD, do_pad=do_pad)
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    return LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14,
                          vision_feature_select_strategy="default", image_token="<image>",
                          num_additional_image_tokens=1)


def record(model, tok_dir: Path, img):
    import numpy as np
    import torch
    out = {}
    pil = __import__("PIL.Image", fromlist=["Image"]).fromarray(img)
    crop = make_processor(tok_dir, False)(text=PROMPT, images=pil, return_tensors="pt")
    pad = make_processor(tok_dir, True)(text=PROMPT, images=pil, return_tensors="pt")
    out["pix_crop"] = crop["pixel_values"][0].numpy()
    out["pix_pad"] = pad["pixel_values"][0].numpy()
    assert crop["input_ids"].tolist() == pad["input_ids"].tolist()
    ids = pad["input_ids"]
    out["ids"] = ids[0].numpy().astype(np.int32)
    n_img = int((ids == model.config.image_token_index).sum())
    m = model.model
    with torch.no_grad():
        vo = m.vision_tower(pad["pixel_values"], output_hidden_states=True, output_attentions=True)
        sel = vo.hidden_states[model.config.vision_feature_layer][0]          # [n_pos][hidden]
        proj = m.multi_modal_projector(sel[1:][None])[0]
        assert proj.shape[0] == n_img, (proj.shape, n_img)
        att = torch.stack([a[0, :, 0, :] for a in vo.attentions])            # [layers][heads][n_pos]
        logits = model(input_ids=ids, pixel_values=pad["pixel_values"],
                       attention_mask=pad["attention_mask"]).logits[0]
        # the image features HF spliced are the projector output above
        feats = m.get_image_features(pixel_values=pad["pixel_values"],
                                     vision_feature_layer=-2, vision_feature_select_strategy="default")
        feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
        feats = torch.cat(list(feats), 0) if isinstance(feats, (list, tuple)) else feats.reshape(-1, proj.shape[-1])
        assert torch.allclose(feats, proj, atol=1e-6), "projector recomputation differs from HF's"
    out["vision_hidden"] = sel.numpy()
    out["hidden_all"] = torch.stack([h[0] for h in vo.hidden_states]).numpy()  # [layers+1][n_pos][hidden]
    out["attn_cls"] = att.numpy()
    out["proj"] = proj.numpy()
    out["logits"] = logits.numpy()
    return out


RESIZES = [(13, 7), (100, 80), (61, 20), (30, 45), (61, 45), (1, 1), (200, 3), (48, 12), (59, 27),
           (46, 19), (3, 200)]


def pil_resizes(img) -> dict:
    """PIL's own resize of the test image (down, up, one axis only, identity,
    extreme, both pass orders of Pillow 13) with BICUBIC and BILINEAR:
    md_image_resize must give these bytes."""
    import numpy as np
    from PIL import Image
    out = {}
    pil = Image.fromarray(img)
    for w, h in RESIZES:
        for name, f in (("bicubic", Image.Resampling.BICUBIC), ("bilinear", Image.Resampling.BILINEAR)):
            out[f"resize_{name}_{w}x{h}"] = np.asarray(pil.resize((w, h), resample=f, reducing_gap=None))
    return out


def write_ref(path: Path, arrays: dict) -> None:
    import numpy as np
    buf = bytearray(b"MDVLMRF1")
    buf += struct.pack("<I", len(arrays))
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        dt = {np.dtype(np.float32): 0, np.dtype(np.int32): 1, np.dtype(np.uint8): 2}[a.dtype]
        nb = name.encode()
        buf += struct.pack("<I", len(nb)) + nb + struct.pack("<II", dt, a.ndim)
        buf += struct.pack(f"<{a.ndim}I", *a.shape) + a.astype(a.dtype.newbyteorder("<")).tobytes()
    path.write_bytes(bytes(buf))


def save_llm(model, tok_dir: Path, d: Path) -> None:
    from transformers import LlamaForCausalLM
    lm = LlamaForCausalLM(model.config.text_config)
    sd = {"model." + k: v for k, v in model.model.language_model.state_dict().items()}
    sd["lm_head.weight"] = model.lm_head.weight
    missing = lm.load_state_dict(sd, strict=True)
    assert not missing.missing_keys
    lm.save_pretrained(str(d), safe_serialization=True)
    for f in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(tok_dir / f, d / f)


def save_vision(model, vdir: Path, proj_path: Path, feature_layer: int | None = None) -> None:
    """The tower as a CLIPVisionModel dir and the projector as a torch file,
    the inputs of the legacy converter. feature_layer (HF's
    vision_feature_layer) goes into the config.json, where the converter
    reads it (block_count and clip.vision.feature_layer); None = its default
    (drop the last layer)."""
    import copy
    import torch
    from transformers import CLIPVisionModel
    vc = copy.deepcopy(model.config.vision_config)
    if feature_layer is not None:
        vc.vision_feature_layer = feature_layer
    extra = {}
    if hasattr(model.model, "image_newline"):
        # what llava_surgery_v2 + the LLaVA-NeXT conversion recipe put in the
        # vision config.json the legacy converter reads
        vc.image_grid_pinpoints = model.config.image_grid_pinpoints
        vc.mm_patch_merge_type = "spatial_unpad"
        extra["image_newline"] = model.model.image_newline.detach().clone()
    vm = CLIPVisionModel(vc)
    vm.load_state_dict(model.model.vision_tower.state_dict())
    vm.save_pretrained(str(vdir), safe_serialization=False)
    p = model.model.multi_modal_projector
    torch.save({**extra, "multi_modal_projector.linear_1.weight": p.linear_1.weight.detach().clone(),
                "multi_modal_projector.linear_1.bias": p.linear_1.bias.detach().clone(),
                "multi_modal_projector.linear_2.weight": p.linear_2.weight.detach().clone(),
                "multi_modal_projector.linear_2.bias": p.linear_2.bias.detach().clone()}, proj_path)


def clip_vision_shim():
    """The legacy converter was written for transformers 4.x, where
    CLIPVisionModel wrapped a CLIPVisionTransformer as `.vision_model` (state
    dict keys "vision_model.*"). transformers 5 flattened it. This wrapper
    restores that one attribute and nothing else; the converter's own code
    does the rest."""
    import torch
    from transformers import CLIPVisionModel

    class CLIPVisionModel4x(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.vision_model = inner

        @classmethod
        def from_pretrained(cls, d, **kw):
            return cls(CLIPVisionModel.from_pretrained(d, **kw))
    return CLIPVisionModel4x


def convert_mmproj(lcpp: Path, vdir: Path, proj: Path, outdir: Path, use_f32: bool = True) -> Path:
    import contextlib
    import io
    import runpy
    import transformers
    script = lcpp / "tools" / "mtmd" / "legacy-models" / "convert_image_encoder_to_gguf.py"
    if not script.is_file():
        sys.exit(f"error: {script} not found")
    argv, real = sys.argv, transformers.CLIPVisionModel
    sys.argv = [str(script), "-m", str(vdir), "--llava-projector", str(proj), "--output-dir",
                str(outdir), "--clip-model-is-vision", *(["--use-f32"] if use_f32 else []),
                "--image-mean", *map(str, CLIP_MEAN), "--image-std", *map(str, CLIP_STD)]
    transformers.CLIPVisionModel = clip_vision_shim()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv, transformers.CLIPVisionModel = argv, real
    return outdir / ("mmproj-model-f32.gguf" if use_f32 else "mmproj-model-f16.gguf")


def check_convert_hf(lcpp: Path, model, tok_dir: Path, tmp: Path, out: Path) -> None:
    """models/convert_hf.py on the saved HF checkpoint must give the same
    tensors as the fixtures (plus clip.vision.feature_layer = [2])."""
    import subprocess
    import numpy as np
    import gguf
    hf = tmp / "hf-llava"
    model.save_pretrained(str(hf))
    for f in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(tok_dir / f, hf / f)
    conv = tmp / "converted"
    subprocess.run([sys.executable, str(HERE / "convert_hf.py"), str(hf), str(conv), "--llama-cpp",
                    str(lcpp), "--outtype", "f32"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    for mine, ref in (("mmproj-f32.gguf", "tiny-llava-mmproj-f32.gguf"),
                      ("llm-f32.gguf", "tiny-llava-llm-f32.gguf")):
        a, b = gguf.GGUFReader(str(conv / mine)), gguf.GGUFReader(str(out / ref))
        ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
        assert ta.keys() == tb.keys(), (mine, set(ta) ^ set(tb))
        for n in ta:
            assert np.array_equal(np.asarray(ta[n].data), np.asarray(tb[n].data)), (mine, n)
        if mine.startswith("mmproj"):
            assert list(a.fields["clip.vision.feature_layer"].contents()) == [2]
    print("convert_hf.py: same tensors as the fixtures")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", help="llama.cpp source dir (or llama-cpp-python sdist dir)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE))
    import make_test_models as mtm
    import numpy as np
    import torch
    import transformers
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        lcpp = mtm.locate_llama_cpp(args.llama_cpp, tmp)
        tok_dir = tmp / "tok"
        tok_dir.mkdir()
        make_tokenizer(tok_dir)
        model = build_llava(tok_dir)
        img = test_image()
        write_ppm(out / "test-image.ppm", img)
        ref = record(model, tok_dir, img)
        ref["image"] = img
        ref.update(pil_resizes(img))
        next_model = build_llava_next(model)
        ref.update(record_next(next_model, tok_dir, img))
        write_ref(out / "tiny-llava.ref.bin", ref)
        llm_dir, vdir = tmp / "llm", tmp / "vision"
        save_llm(model, tok_dir, llm_dir)
        save_vision(model, vdir, tmp / "llava.projector")
        mtm.setup_llama_cpp_path(lcpp)
        mm = convert_mmproj(lcpp, vdir, tmp / "llava.projector", tmp / "mmproj")
        shutil.copy(mm, out / "tiny-llava-mmproj-f32.gguf")
        save_vision(next_model, tmp / "vision-next", tmp / "next.projector")
        mm = convert_mmproj(lcpp, tmp / "vision-next", tmp / "next.projector", tmp / "mmproj-next")
        shutil.copy(mm, out / "tiny-llava-next-mmproj-f32.gguf")
        mtm.convert(lcpp, llm_dir, out / "tiny-llava-llm-f32.gguf", "f32")
        check_convert_hf(lcpp, model, tok_dir, tmp, out)
        info = {
            "prompt": PROMPT, "image": [IMAGE_W, IMAGE_H], "image_token_id": 3,
            "n_image_tokens": int(ref["proj"].shape[0]), "n_ids": int(ref["ids"].shape[0]),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__, "pillow": __import__("PIL").__version__,
            "llama_cpp": mtm.llama_cpp_info(lcpp),
            "files": {},
        }
        for f in sorted(out.iterdir()):
            if f.suffix in (".gguf", ".bin", ".ppm"):
                size = f.stat().st_size
                if size > MAX_FILE_BYTES:
                    sys.exit(f"error: {f} is {size} bytes (> {MAX_FILE_BYTES})")
                info["files"][f.name] = {"bytes": size,
                                         "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
        (out / "tiny-llava.ref.json").write_text(json.dumps(info, indent=1) + "\n")
    # the marker-vocabulary LMs are derived from the F32 LM just written
    import make_marker_vocab
    make_marker_vocab.write_all(str(out / "tiny-llava-llm-f32.gguf"), str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
