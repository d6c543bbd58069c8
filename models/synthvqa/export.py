#!/usr/bin/env python3
"""Convert the trained checkpoint into the two GGUF files we ship.

    python3 models/synthvqa/export.py RUN/hf [--llama-cpp DIR]

Runs models/convert_hf.py (llama.cpp's own converters: convert_hf_to_gguf.py
for the LLM, the legacy LLaVA image-encoder converter for the mmproj) with
--outtype f16 and writes models/synthvqa/synthvqa-llm-f16.gguf and
synthvqa-mmproj-f16.gguf, plus models/synthvqa/manifest.json with their
sizes and sha256. These are the files a user of llama.cpp would have made
from the same checkpoint, so the default model exercises the real loading
path. Refuses to ship more than 40 MB. `--dest DIR` writes the two files
and the manifest to DIR instead (a trial export that leaves the shipped
model alone, e.g. the dense smoke test).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIMIT = 40 * 1000 * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hf")
    ap.add_argument("--llama-cpp", help="llama.cpp source dir (default: as convert_hf.py finds it)")
    ap.add_argument("--dest", default=str(HERE), help="where the GGUFs and manifest.json go "
                    "(default: models/synthvqa, the shipped model)")
    args = ap.parse_args()
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as td:
        cmd = [sys.executable, str(HERE.parent / "convert_hf.py"), args.hf, td, "--outtype", "f16"]
        if args.llama_cpp:
            cmd += ["--llama-cpp", args.llama_cpp]
        subprocess.run(cmd, check=True)
        files = {"synthvqa-llm-f16.gguf": Path(td) / "llm-f16.gguf",
                 "synthvqa-mmproj-f16.gguf": Path(td) / "mmproj-f16.gguf"}
        total = sum(p.stat().st_size for p in files.values())
        if total > LIMIT:
            sys.exit(f"error: {total} bytes > {LIMIT}")
        info = {"files": {}}
        for name, p in files.items():
            shutil.copy(p, dest / name)
            info["files"][name] = {"bytes": p.stat().st_size,
                                   "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
    cfg = json.loads((Path(args.hf) / "config.json").read_text())
    info["architecture"] = cfg.get("architectures")
    info["made_by"] = "models/synthvqa/train.py then models/synthvqa/export.py"
    (dest / "manifest.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {', '.join(files)} ({total} bytes)")


if __name__ == "__main__":
    main()
