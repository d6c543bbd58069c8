#!/usr/bin/env python3
"""Summarize a docs/benchmarks/cpu/run.sh output folder as a Markdown table:
mustdrop and llama.cpp tok/s (mean over the rounds), their ratio, and each
against the machine's measured ceiling (decode: read bandwidth / bytes per
token; prefill: FMA peak / FLOPs per token). Standard library only."""
import json
import re
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
E, L, F, V = 1024, 16, 2816, 32000
layer_w = L * (4 * E * E + 3 * E * F)
bytes_per_w = {"f16": 2.0, "q8_0": 34 / 32}


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def load(engine, t):
    res = {"pp512": [], "tg128": []}
    for f in sorted(out.glob(f"{engine}-{t}-*.json")):
        d = json.loads(f.read_text())
        if engine == "mustdrop":
            for r in d["results"]:
                res[r["test"]].append(r["avg_ts"])
        else:
            for r in d:
                key = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
                res[key].append(r["avg_ts"])
    return {k: mean(v) for k, v in res.items()}


print(f"Ceilings measured in the same run: FMA peak {peak:.1f} GFLOP/s, "
      f"read bandwidth {bw:.2f} GB/s (2 threads).\n")
print("| weights | test | mustdrop tok/s | llama.cpp tok/s | mustdrop / llama.cpp | "
      "mustdrop % of ceiling | llama.cpp % of ceiling |")
print("|---|---|---:|---:|---:|---:|---:|")
for t in ("f16", "q8_0"):
    md, lc = load("mustdrop", t), load("llamacpp", t)
    for test in ("pp512", "tg128"):
        if test == "pp512":
            bound = peak * 1e9 / (2.0 * layer_w)   # tok/s if every FLOP ran at peak
        else:
            bound = bw * 1e9 / ((layer_w + E * V) * bytes_per_w[t])
        a, b = md[test], lc[test]
        print(f"| {t.upper()} | {test} | {a:.1f} | {b:.1f} | {a / b:.2f} | "
              f"{100 * a / bound:.0f}% | {100 * b / bound:.0f}% |")
