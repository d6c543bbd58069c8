#!/usr/bin/env python3
"""Summarize a docs/benchmarks/cpu/run.sh or side-by-side.sh output folder as
a Markdown table: mustdrop and llama.cpp tok/s (mean over the rounds), their
ratio, and each against the machine's measured ceiling (decode: read
bandwidth / bytes read per token; prefill: FMA peak / FLOPs per token).
Standard library only."""
import json
import re
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])
ceil = (out / "ceilings.txt").read_text()
peak = max(float(m) for m in re.findall(r"peak \w+\s+FMA:\s+([\d.]+) GFLOP/s", ceil))
bw_m = re.search(r"read bandwidth:\s+([\d.]+) GB/s", ceil)
bw = float(bw_m.group(1)) if bw_m else float("nan")

# The 0.27B shape: per token, decode reads every layer matrix and the output
# matrix once (token_embd contributes one row); prefill costs 2 FLOPs per
# weight of the layers (logits only for the last row, as both engines do).
# Bytes per weight come from the file's size (llama-bench's model_size), so
# mixed formats (Q4_K_M) count their real mix; decode at depth D also reads
# the F16 K and V caches (2 * L * E * 2 bytes per cached token).
E, L, F, V = 1024, 16, 2816, 32000
layer_w = L * (4 * E * E + 3 * E * F)
all_w = layer_w + 2 * E * V
TYPES = ("f16", "q8_0", "q4_k_m", "q4_0")


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def test_name(r):
    """llama-bench's row as mustdrop-bench names it: pp512, tg128, tg128@d2048."""
    name = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
    return name + (f"@d{r['n_depth']}" if r.get("n_depth", 0) else "")


def load(engine, t):
    """{test: mean tok/s over rounds}, and the model's size in bytes."""
    res, size = {}, None
    for f in sorted(out.glob(f"{engine}-{t}-*.json")):
        d = json.loads(f.read_text())
        rows = d["results"] if engine == "mustdrop" else d
        if engine == "mustdrop":
            size = d.get("model_size", size)
        for r in rows:
            key = r["test"] if engine == "mustdrop" else test_name(r)
            res.setdefault(key, []).append(r["avg_ts"])
            size = r.get("model_size", size)
    return {k: mean(v) for k, v in res.items()}, size


def bound(test, size):
    """tok/s if the test ran at the measured ceiling."""
    if test.startswith("pp"):
        return peak * 1e9 / (2.0 * layer_w)
    depth = int(test.split("@d")[1]) if "@d" in test else 0
    read = size * (layer_w + E * V) / all_w + depth * 2 * L * E * 2
    return bw * 1e9 / read


print(f"Ceilings measured in the same run: FMA peak {peak:.1f} GFLOP/s, "
      f"read bandwidth {bw:.2f} GB/s.\n")
print("| weights | test | mustdrop tok/s | llama.cpp tok/s | mustdrop / llama.cpp | "
      "mustdrop % of ceiling | llama.cpp % of ceiling |")
print("|---|---|---:|---:|---:|---:|---:|")
for t in TYPES:
    md, size = load("mustdrop", t)
    lc, lsize = load("llamacpp", t)
    size = lsize or size
    for test in sorted(set(md) | set(lc), key=lambda s: (s[:2] != "pp", len(s), s)):
        a, b = md.get(test, float("nan")), lc.get(test, float("nan"))
        c = bound(test, size) if size else float("nan")
        print(f"| {t.upper()} | {test} | {a:.1f} | {b:.1f} | {a / b:.2f} | "
              f"{100 * a / c:.0f}% | {100 * b / c:.0f}% |")

# The vision path (side-by-side.sh with VISION=1): whole-process wall time of
# one image, one answer token; the median of the pairs, and each pair's ratio.
vt = out / "vision.tsv"
if vt.exists():
    rows = [line.split("\t") for line in vt.read_text().splitlines()[1:] if line.strip()]
    pairs = [(float(a), float(b)) for _, a, b in rows if a and b]
    if pairs:
        a, b = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        ratios = ", ".join(f"{p[0] / p[1]:.2f}" for p in pairs)
        print("\nVision path (CLIP-L/336 mmproj + this F16 LLM, one 336x336 image, one answer "
              "token, whole process; median of the pairs):\n")
        print("| llama-mtmd-cli s | mustdrop --image s | llama.cpp / mustdrop (speed-up) | "
              "each pair's |")
        print("|---:|---:|---:|---|")
        print(f"| {a:.2f} | {b:.2f} | {a / b:.2f} | {ratios} |")
