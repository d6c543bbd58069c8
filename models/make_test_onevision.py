#!/usr/bin/env python3
"""Build the tiny random LLaVA-OneVision fixture in models/fixtures/vision/ and its HF reference.

    python3 models/make_test_onevision.py [--llama-cpp DIR] [--out DIR]

What it does (deterministically):
  1. A byte-level BPE vocabulary: make_test_models.py's truncated Qwen one
     (needs /work/shared/fixtures/tokenizer/hf/qwen3) plus "<image>" and
     "<video>" as added special tokens.
  2. A tiny LlavaOnevisionForConditionalGeneration: SigLIP tower (44 px,
     patch 14 -> 3x3 = 9 patches, the 2 px remainder dropped like
     so400m's 384/14; hidden 32, ff 64, 4 heads, 2 layers, gelu_pytorch_tanh,
     patch bias, post-LN present but unused), projector 32 -> 64 -> 64 (erf
     GELU), Qwen2 LM (hidden 64, 2 layers, GQA 4/2, q/k/v biases), pinpoints
     (h, w) = 44·{1..4} x 44·{1..4}, vision_aspect_ratio anyres_max_9,
     vision_feature_layer -1, strategy "full"; mean/std 0.5 (SigLIP).
  3. Converts with models/convert_hf.py's OneVision path (the mmproj written
     with gguf-py, F32; the LM by llama.cpp's convert_hf_to_gguf.py, F32).
  4. Runs HF (float32, eager, 1 thread) and records:
     - an image prompt: a 170x150 test image through the HF
       LlavaOnevisionProcessor (PIL image processor): pixel values (base +
       4x4 tiles), the tower's hidden_states[-1] for every tile, the packed
       image features (unpad + anyres_max_9 bilinear shrink + newlines: 89
       rows), the ids and the logits at every position;
     - an 8-frame video prompt: 8 frames of 44x44 (already the tower's size:
       HF's video processor needs torchvision, which resizes with its own
       antialiased bicubic, not PIL's; at 44x44 no resize happens on either
       side), pixel values made the way the processor rescales and
       normalises, get_video_features (2x2 bilinear pooling 3x3 -> 2x2 per
       frame, then one newline: 33 rows), the <video> expansion count from
       the processor's own formula, the ids and the logits.
     Prompts use the chatml text md_chat_format("chatml") produces.
Outputs (each < 5 MB): tiny-onevision-llm-f32.gguf, tiny-onevision-mmproj-f32.gguf,
  tiny-onevision.ref.bin (format of make_test_vlm.py's ref.bin), tiny-onevision.ref.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "fixtures" / "vision"
SEED = 20261123
MAX_FILE_BYTES = 5 * 1000 * 1000
MEAN = [0.5, 0.5, 0.5]
STD = [0.5, 0.5, 0.5]
S = 44
PINPOINTS = [[S * i, S * j] for i in range(1, 5) for j in range(1, 5)]
IMAGE_W, IMAGE_H = 170, 150
N_FRAMES = 8
SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
IMAGE_PROMPT = SYSTEM + "<|im_start|>user\n<image>\nWhat is shown?<|im_end|>\n<|im_start|>assistant\n"
VIDEO_PROMPT = SYSTEM + "<|im_start|>user\n<video>\nWhat happens?<|im_end|>\n<|im_start|>assistant\n"


def test_image(w: int, h: int, seed: int):
    import numpy as np
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 9.0) * np.cos(y / 6.0)
    g = 255 * (x / w)
    b = np.where((x - w / 2) ** 2 + (y - h / 3) ** 2 < (h / 4) ** 2, 220, 50)
    img = np.stack([r, g, b], -1) + rng.normal(0, 10, (h, w, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_tokenizer(d: Path) -> int:
    import make_test_models as mtm
    from transformers import AutoTokenizer
    mtm.make_qwen_tokenizer(d)
    tok = AutoTokenizer.from_pretrained(str(d))
    tok.add_special_tokens({"additional_special_tokens": ["<image>", "<video>"]})
    tok.save_pretrained(str(d))
    return len(tok)


def build(n_tok: int, img_id: int, vid_id: int):
    import torch
    import make_test_vlm as vlm
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              Qwen2Config, SiglipVisionConfig)
    import make_test_models as mtm
    vc = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, image_size=S, patch_size=14,
                            hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, vision_use_head=False)
    tc = Qwen2Config(vocab_size=(n_tok + 63) // 64 * 64, hidden_size=64, intermediate_size=128,
                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=False,
                     hidden_act="silu", use_sliding_window=False, bos_token_id=1000, eos_token_id=1000,
                     **mtm.rope_kwargs(Qwen2Config, 1000000.0))
    cfg = LlavaOnevisionConfig(vision_config=vc, text_config=tc, image_token_index=img_id,
                               video_token_index=vid_id, image_grid_pinpoints=PINPOINTS,
                               vision_aspect_ratio="anyres_max_9", vision_feature_layer=-1,
                               vision_feature_select_strategy="full", projector_hidden_act="gelu",
                               tie_word_embeddings=False)
    cfg._attn_implementation = "eager"
    cfg.text_config._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    torch.manual_seed(SEED)
    model = LlavaOnevisionForConditionalGeneration(cfg).eval()
    vlm.init_weights(model, SEED)
    with torch.no_grad():
        model.model.image_newline.copy_(0.3 * torch.randn(64, generator=torch.Generator().manual_seed(SEED + 5)))
    return model


def processor(tok_dir: Path):
    from transformers import AutoTokenizer, LlavaOnevisionProcessor
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil)
    ip = LlavaOnevisionImageProcessorPil(size={"height": S, "width": S}, image_mean=MEAN, image_std=STD,
                                         image_grid_pinpoints=PINPOINTS)
    tok = AutoTokenizer.from_pretrained(str(tok_dir))

    class NoVideoProcessor(LlavaOnevisionProcessor):
        """The video processor needs torchvision; this fixture makes video
        pixel values itself (see the docstring), so the processor is built
        without one: only the type check of that argument is skipped."""
        def check_argument_for_proper_class(self, name, arg):
            if name != "video_processor":
                return super().check_argument_for_proper_class(name, arg)
    return NoVideoProcessor(image_processor=ip, tokenizer=tok, video_processor=None,
                                   num_image_tokens=(S // 14) ** 2, vision_feature_select_strategy="full",
                                   vision_aspect_ratio="anyres_max_9")


def record(model, proc, img, frames) -> dict:
    import numpy as np
    import torch
    from PIL import Image
    out = {}
    m = model.model
    # ---- image
    enc = proc(text=IMAGE_PROMPT, images=Image.fromarray(img), return_tensors="pt")
    ids = enc["input_ids"]
    pix = enc["pixel_values"]                      # [1][n_tiles][3][S][S]
    with torch.no_grad():
        vo = m.vision_tower(pix[0], output_hidden_states=True)
        feats = m.get_image_features(pixel_values=pix, image_sizes=enc["image_sizes"])
        feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
        feats = torch.cat(list(feats), 0)
        logits = model(input_ids=ids, pixel_values=pix, image_sizes=enc["image_sizes"],
                       attention_mask=enc["attention_mask"]).logits[0]
    n_img = int((ids == model.config.image_token_index).sum())
    assert feats.shape[0] == n_img, (feats.shape, n_img)
    out["image"] = img
    out["pix_image"] = pix[0].numpy()
    out["tower_image"] = vo.hidden_states[-1].numpy()      # before post_layernorm
    out["feat_image"] = feats.numpy()
    out["ids_image"] = ids[0].numpy().astype(np.int32)
    out["logits_image"] = logits.numpy()
    # ---- video: frames at the tower's size, rescaled/normalised like the processor
    x = frames.astype(np.float64) * (1 / 255)
    x = ((x.astype(np.float32) - np.array(MEAN, np.float32)) / np.array(STD, np.float32))
    pv = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))[None]   # [1][F][3][S][S]
    n_vid = proc._get_num_multimodal_tokens(video_sizes=[(N_FRAMES, S, S)])["num_video_tokens"][0]
    text = VIDEO_PROMPT.replace("<video>", "<video>" * n_vid)
    vids = proc.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        vf = m.get_video_features(pixel_values_videos=pv)
        vf = vf.pooler_output if hasattr(vf, "pooler_output") else vf
        vf = vf.reshape(-1, vf.shape[-1])
        vlog = model(input_ids=vids, pixel_values_videos=pv).logits[0]
    assert vf.shape[0] == n_vid == int((vids == model.config.video_token_index).sum()), (vf.shape, n_vid)
    out["video"] = frames
    out["pix_video"] = pv[0].numpy()
    out["feat_video"] = vf.numpy()
    out["ids_video"] = vids[0].numpy().astype(np.int32)
    out["logits_video"] = vlog.numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-cpp", help="llama.cpp source dir (or llama-cpp-python sdist dir)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE))
    import numpy as np
    import torch
    import transformers
    import make_test_models as mtm
    import make_test_vlm as vlm
    import convert_hf
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        tok_dir = tmp / "tok"
        tok_dir.mkdir()
        n_tok = make_tokenizer(tok_dir)
        proc = processor(tok_dir)
        img_id = proc.tokenizer.convert_tokens_to_ids("<image>")
        vid_id = proc.tokenizer.convert_tokens_to_ids("<video>")
        model = build(n_tok, img_id, vid_id)
        img = test_image(IMAGE_W, IMAGE_H, 11)
        frames = np.stack([test_image(S, S, 100 + k) for k in range(N_FRAMES)])
        ref = record(model, proc, img, frames)
        vlm.write_ref(out / "tiny-onevision.ref.bin", ref)
        hf = tmp / "hf"
        model.save_pretrained(str(hf))
        proc.tokenizer.save_pretrained(str(hf))
        (hf / "preprocessor_config.json").write_text(json.dumps({"image_mean": MEAN, "image_std": STD}))
        conv = tmp / "conv"
        conv.mkdir()
        convert_hf.convert_onevision(hf, conv, "f32", args.llama_cpp)
        shutil.copy(conv / "mmproj-f32.gguf", out / "tiny-onevision-mmproj-f32.gguf")
        shutil.copy(conv / "llm-f32.gguf", out / "tiny-onevision-llm-f32.gguf")
        lcpp = mtm.locate_llama_cpp(args.llama_cpp, tmp)
        info = {
            "image_prompt": IMAGE_PROMPT, "video_prompt": VIDEO_PROMPT, "image": [IMAGE_W, IMAGE_H],
            "frames": [N_FRAMES, S, S], "image_token_id": img_id, "video_token_id": vid_id,
            "n_image_tokens": int(ref["feat_image"].shape[0]), "n_video_tokens": int(ref["feat_video"].shape[0]),
            "n_ids_image": int(ref["ids_image"].shape[0]), "n_ids_video": int(ref["ids_video"].shape[0]),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__, "pillow": __import__("PIL").__version__,
            "llama_cpp": mtm.llama_cpp_info(lcpp), "files": {},
        }
        for f in sorted(out.glob("tiny-onevision*")):
            if f.suffix in (".gguf", ".bin"):
                size = f.stat().st_size
                if size > MAX_FILE_BYTES:
                    sys.exit(f"error: {f} is {size} bytes (> {MAX_FILE_BYTES})")
                info["files"][f.name] = {"bytes": size, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
        (out / "tiny-onevision.ref.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {out}/tiny-onevision-*")


if __name__ == "__main__":
    main()
