#!/usr/bin/env python3
"""Convert a HF transformers LLaVA checkpoint into the two GGUF files libmustdrop reads.

    python3 models/convert_hf.py MODEL_DIR OUT_DIR [--llama-cpp DIR] [--outtype f16|f32]

MODEL_DIR is a llava-hf style checkpoint (config.json with model_type "llava",
"llava_next" or "llava_onevision", weights, tokenizer files), e.g.
llava-hf/llava-1.5-7b-hf, llava-hf/llava-v1.6-vicuna-7b-hf or
llava-hf/llava-onevision-qwen2-0.5b-ov-hf. Writes into OUT_DIR:

  llm-<outtype>.gguf     the language model, by llama.cpp's convert_hf_to_gguf.py
  mmproj-<outtype>.gguf  vision tower + projector (+ image_newline), by
                         llama.cpp's legacy tools/mtmd/legacy-models/
                         convert_image_encoder_to_gguf.py (the path llama.cpp
                         documents for LLaVA 1.5/1.6)

How: the checkpoint is loaded with transformers; the language model is saved
as a plain causal LM (with the checkpoint's tokenizer files) and converted;
the vision tower is saved as a CLIPVisionModel whose config.json also carries
image_grid_pinpoints / mm_patch_merge_type (LLaVA-NeXT) and
vision_feature_layer, the projector (+ image_newline) as a torch file, and the
legacy converter runs on those (with one shim for transformers 5, see
make_test_vlm.clip_vision_shim). Nothing of llama.cpp is copied into this
repository; it is found with --llama-cpp DIR, $LLAMA_CPP_DIR, or downloaded
(llama-cpp-python sdist) as models/make_test_models.py does.

Notes (docs/models.md, docs/vision.md):
  - the legacy converter stores conv kernels and projector matrices in F16
    even with --outtype f32;
  - block_count is the number of layers up to vision_feature_layer (LLaVA:
    HF layers - 1) and clip.vision.feature_layer records it; libmustdrop runs
    exactly those layers, which gives HF's features;
  - LLaVA-OneVision (SigLIP + Qwen2): llama.cpp has no converter for it, so
    the mmproj is written here with gguf-py (write_onevision_mmproj): the
    usual clip.* keys and v.*/mm.* tensor names, ffn_up = fc1 (real
    meaning), all layers up to vision_feature_layer (-1: all), and NO post-LN
    (HF takes hidden_states[-1], before SigLIP's post_layernorm, and the
    engine applies a post-LN whenever the tensor is present). Extra keys:
    clip.vision.hidden_act (HF's), clip.vision.llava_family = "onevision",
    clip.vision.anyres_max_patches (from vision_aspect_ratio "anyres_max_N"),
    clip.vision.video_pool = 2, v.image_newline. The LM goes through
    llama.cpp's convert_hf_to_gguf.py as Qwen2.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json", "generation_config.json")


def save_llm(model, src: Path, d: Path) -> None:
    """The language model + lm_head as a stand-alone causal LM checkpoint."""
    from transformers import AutoModelForCausalLM
    lm = AutoModelForCausalLM.from_config(model.config.text_config)
    sd = {"model." + k: v for k, v in model.model.language_model.state_dict().items()}
    sd["lm_head.weight"] = model.lm_head.weight
    res = lm.load_state_dict(sd, strict=False)
    missing = [k for k in res.missing_keys if not k.endswith("rotary_emb.inv_freq")]
    if missing or res.unexpected_keys:
        sys.exit(f"error: language model weights do not map: missing {missing[:4]}, "
                 f"unexpected {res.unexpected_keys[:4]}")
    lm.save_pretrained(str(d), safe_serialization=True)
    for f in TOKENIZER_FILES:
        if (src / f).is_file():
            shutil.copy(src / f, d / f)


SIGLIP_MEAN = [0.5, 0.5, 0.5]
SIGLIP_STD = [0.5, 0.5, 0.5]


def onevision_layers(cfg) -> int:
    """Vision layers to store and run: HF hidden_states[vision_feature_layer]."""
    n = cfg.vision_config.num_hidden_layers
    fl = cfg.vision_feature_layer
    if not isinstance(fl, int):
        sys.exit("error: several vision_feature_layer values are not supported")
    k = fl if fl >= 0 else n + 1 + fl
    if not 1 <= k <= n:
        sys.exit(f"error: vision_feature_layer {fl} is out of range for {n} layers")
    return k


def write_onevision_mmproj(model, cfg, path: Path, outtype: str, mean=None, std=None) -> None:
    """The OneVision vision tower + projector + image_newline as an mmproj GGUF."""
    import gguf
    import numpy as np
    if cfg.vision_config.model_type != "siglip_vision_model":
        sys.exit(f"error: vision tower '{cfg.vision_config.model_type}' is not supported (SigLIP)")
    if cfg.vision_feature_select_strategy != "full":
        sys.exit("error: OneVision with vision_feature_select_strategy != 'full' is not supported")
    if cfg.projector_hidden_act != "gelu":
        sys.exit(f"error: projector activation '{cfg.projector_hidden_act}' is not supported (gelu)")
    ratio = str(getattr(cfg, "vision_aspect_ratio", "anyres_max_9"))
    if not ratio.startswith("anyres_max_"):
        sys.exit(f"error: vision_aspect_ratio '{ratio}' is not supported (anyres_max_N)")
    vc = cfg.vision_config
    n_layer = onevision_layers(cfg)
    vt = model.model.vision_tower
    vt = getattr(vt, "vision_model", vt)
    sd = {k: v.detach().float().cpu().numpy() for k, v in vt.state_dict().items()}
    w = gguf.GGUFWriter(str(path), "clip")
    w.add_string("general.name", "llava-onevision mmproj")
    w.add_uint32("general.file_type", 1 if outtype == "f16" else 0)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_text_encoder", False)
    w.add_string("clip.projector_type", "mlp")
    w.add_bool("clip.use_gelu", False)
    w.add_uint32("clip.vision.image_size", vc.image_size)
    w.add_uint32("clip.vision.patch_size", vc.patch_size)
    w.add_uint32("clip.vision.embedding_length", vc.hidden_size)
    w.add_uint32("clip.vision.feed_forward_length", vc.intermediate_size)
    w.add_uint32("clip.vision.projection_dim", cfg.text_config.hidden_size)
    w.add_uint32("clip.vision.attention.head_count", vc.num_attention_heads)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", vc.layer_norm_eps)
    w.add_uint32("clip.vision.block_count", n_layer)
    w.add_array("clip.vision.image_mean", [float(x) for x in (mean or SIGLIP_MEAN)])
    w.add_array("clip.vision.image_std", [float(x) for x in (std or SIGLIP_STD)])
    if cfg.image_grid_pinpoints:
        w.add_array("clip.vision.image_grid_pinpoints",
                    [int(x) for pair in cfg.image_grid_pinpoints for x in pair])
    w.add_string("clip.vision.mm_patch_merge_type", "spatial_unpad")
    w.add_string("clip.vision.hidden_act", vc.hidden_act)
    w.add_string("clip.vision.llava_family", "onevision")
    w.add_uint32("clip.vision.anyres_max_patches", int(ratio[len("anyres_max_"):]))
    w.add_uint32("clip.vision.video_pool", 2)

    def mat(name, a):   # matrices (and the conv kernel) in the out type
        w.add_tensor(name, a.astype(np.float16 if outtype == "f16" else np.float32))

    def f32(name, a):
        w.add_tensor(name, a.astype(np.float32))
    mat("v.patch_embd.weight", sd["embeddings.patch_embedding.weight"])
    f32("v.patch_embd.bias", sd["embeddings.patch_embedding.bias"])
    f32("v.position_embd.weight", sd["embeddings.position_embedding.weight"])
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.out_proj": "attn_out", "mlp.fc1": "ffn_up", "mlp.fc2": "ffn_down",
             "layer_norm1": "ln1", "layer_norm2": "ln2"}
    for il in range(n_layer):
        for hf, ours in names.items():
            pre = f"encoder.layers.{il}.{hf}"
            (f32 if hf.startswith("layer_norm") else mat)(f"v.blk.{il}.{ours}.weight", sd[pre + ".weight"])
            f32(f"v.blk.{il}.{ours}.bias", sd[pre + ".bias"])
    p = model.model.multi_modal_projector
    mat("mm.0.weight", p.linear_1.weight.detach().float().numpy())
    f32("mm.0.bias", p.linear_1.bias.detach().float().numpy())
    mat("mm.2.weight", p.linear_2.weight.detach().float().numpy())
    f32("mm.2.bias", p.linear_2.bias.detach().float().numpy())
    f32("v.image_newline", model.model.image_newline.detach().float().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def convert_onevision(src: Path, out: Path, outtype: str, llama_cpp: str | None) -> None:
    import json
    import torch
    import make_test_models as mtm
    from transformers import LlavaOnevisionForConditionalGeneration
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(str(src), dtype=torch.float32).eval()
    mean = std = None
    pp = src / "preprocessor_config.json"
    if pp.is_file():
        j = json.loads(pp.read_text())
        mean, std = j.get("image_mean"), j.get("image_std")
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        lcpp = mtm.locate_llama_cpp(llama_cpp, tmp)
        save_llm(model, src, tmp / "llm")
        mtm.setup_llama_cpp_path(lcpp)
        mtm.convert(lcpp, tmp / "llm", out / f"llm-{outtype}.gguf", outtype)
    # after the LM: the gguf module is then llama.cpp's gguf-py (the one
    # setup_llama_cpp_path insists on); only GGUFWriter's basic API is used
    write_onevision_mmproj(model, model.config, out / f"mmproj-{outtype}.gguf", outtype, mean, std)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--llama-cpp", help="llama.cpp source dir (or llama-cpp-python sdist dir)")
    ap.add_argument("--outtype", choices=["f16", "f32"], default="f16")
    args = ap.parse_args()
    src, out = Path(args.model_dir), Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE))
    import make_test_models as mtm
    import make_test_vlm as vlm
    import torch
    from transformers import AutoConfig, LlavaForConditionalGeneration, LlavaNextForConditionalGeneration

    cfg = AutoConfig.from_pretrained(str(src))
    if cfg.model_type == "llava_onevision":
        convert_onevision(src, out, args.outtype, args.llama_cpp)
        print(f"wrote {out}/llm-{args.outtype}.gguf and {out}/mmproj-{args.outtype}.gguf")
        return
    classes = {"llava": LlavaForConditionalGeneration, "llava_next": LlavaNextForConditionalGeneration}
    if cfg.model_type not in classes:
        sys.exit(f"error: model_type '{cfg.model_type}' is not supported "
                 "(llava, llava_next, llava_onevision)")
    if cfg.vision_config.model_type != "clip_vision_model":
        sys.exit(f"error: vision tower '{cfg.vision_config.model_type}' is not supported (CLIP only)")
    if not isinstance(cfg.vision_feature_layer, int) or cfg.vision_feature_select_strategy != "default":
        sys.exit("error: only one vision_feature_layer with the 'default' strategy is supported")
    model = classes[cfg.model_type].from_pretrained(str(src), dtype=torch.float32).eval()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        lcpp = mtm.locate_llama_cpp(args.llama_cpp, tmp)
        save_llm(model, src, tmp / "llm")
        vlm.save_vision(model, tmp / "vision", tmp / "llava.projector",
                        feature_layer=cfg.vision_feature_layer)
        mtm.setup_llama_cpp_path(lcpp)
        mm = vlm.convert_mmproj(lcpp, tmp / "vision", tmp / "llava.projector", tmp / "mmproj",
                                use_f32=args.outtype == "f32")
        shutil.copy(mm, out / f"mmproj-{args.outtype}.gguf")
        mtm.convert(lcpp, tmp / "llm", out / f"llm-{args.outtype}.gguf", args.outtype)
    print(f"wrote {out}/llm-{args.outtype}.gguf and {out}/mmproj-{args.outtype}.gguf")


if __name__ == "__main__":
    main()
