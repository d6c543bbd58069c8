#!/usr/bin/env python3
"""results.jsonl (run.sh) -> results.csv, table.md and accuracy.png.

    python3 docs/benchmarks/accuracy/plot.py OUT_DIR

x axis: visual tokens as a fraction of the unreduced count: the rows the LLM
keeps after the method's last pruning point (mustdrop-eval's
visual_tokens_final; for methods that prune inside the LLM, FastV and
MustDrop's prefill stage, earlier layers see more: the FLOPs column shows the
cost).
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def tokens(d: dict) -> float:
    return float(d.get("visual_tokens_final", d["visual_tokens_kept"]))


def pred_file(out: Path, r: dict) -> Path:
    """run.sh's per-question file of a spec (its name rule)."""
    name = "".join(c if c.isalnum() or c in ".-" else "_" for c in f"{r['method']}-{r['target']}")
    return out / f"pred-{name}.jsonl"


def predictions(out: Path, r: dict) -> dict:
    f = pred_file(out, r)
    if not f.exists():
        return {}
    return {d["id"]: d["prediction"] for d in map(json.loads, f.read_text().splitlines()) if d}


def same_share(base: dict, p: dict) -> str:
    """Share of questions answered with exactly the unreduced model's text."""
    ids = [i for i in base if i in p]
    return f"{100 * sum(base[i] == p[i] for i in ids) / len(ids):.1f}%" if ids else ""


def answer_ms(r: dict) -> float:
    return r["t_vision_ms"] + r["t_prefill_ms"] + r["t_decode_ms"]


def main() -> None:
    out = Path(sys.argv[1])
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if x.strip()]
    base = next((r for r in rows if r["method"] == "none"), rows[0])
    n_in = float(base["visual_tokens_in"])
    f0 = float(base["flops_prefill"])
    types = sorted({t for r in rows for t in r.get("per_type", {})})
    base_pred = predictions(out, base)
    same = {id(r): same_share(base_pred, predictions(out, r)) for r in rows}
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "target", "spec", "n", "correct", "accuracy", "visual_tokens_in",
                    "visual_tokens_kept", "visual_tokens_final",
                    "fraction", "flops_prefill", "flops_vs_none", "t_vision_ms", "t_prefill_ms",
                    "t_decode_ms", "same_as_none", *[f"acc_{t}" for t in types]])
        for r in rows:
            pt = r.get("per_type", {})
            w.writerow([r["method"], r["target"], r["spec"], r["n"], r["correct"],
                        f"{r['accuracy']:.4f}", f"{r['visual_tokens_in']:.2f}",
                        f"{r['visual_tokens_kept']:.2f}", f"{r.get('visual_tokens_final', 0):.2f}", f"{tokens(r) / n_in:.4f}", f"{r['flops_prefill']:.4g}",
                        f"{r['flops_prefill'] / f0:.3f}", f"{r['t_vision_ms']:.2f}",
                        f"{r['t_prefill_ms']:.2f}", f"{r['t_decode_ms']:.2f}", same[id(r)],
                        *[(f"{pt[t]['correct'] / pt[t]['n']:.3f}" if t in pt and pt[t]["n"] else "")
                          for t in types]])
    # "of none": accuracy as a share of the unreduced accuracy; "same": the
    # share of questions answered with the unreduced model's exact text;
    # times are means per question (mustdrop-eval), "answer" = vision +
    # reduction and prefill + decode
    lines = ["| method | target | spec | into LLM | kept (of %.0f) | fraction | accuracy | of none | same answers "
             "| prefill FLOPs vs none | ms vision | ms prefill | prefill vs none | ms decode | ms answer |" % n_in,
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    p0 = base["t_prefill_ms"] or 1.0
    for r in rows:
        lines.append(f"| {r['method']} | {r['target']} | `{r['spec']}` | {r['visual_tokens_kept']:.1f} | {tokens(r):.1f} | "
                     f"{100 * tokens(r) / n_in:.1f}% | **{100 * r['accuracy']:.1f}%** | "
                     f"{100 * r['accuracy'] / (base['accuracy'] or 1):.1f}% | {same[id(r)]} | "
                     f"{r['flops_prefill'] / f0:.2f} | {r['t_vision_ms']:.1f} | {r['t_prefill_ms']:.1f} | "
                     f"{r['t_prefill_ms'] / p0:.2f} | {r['t_decode_ms']:.1f} | {answer_ms(r):.1f} |")
    lines += ["", "Per question type (accuracy %):", "",
              "| method | target | " + " | ".join(types) + " |",
              "|---|---|" + "---:|" * len(types)]
    for r in rows:
        pt = r.get("per_type", {})
        lines.append(f"| {r['method']} | {r['target']} | " + " | ".join(
            (f"{100 * pt[t]['correct'] / pt[t]['n']:.0f}" if t in pt and pt[t]["n"] else "")
            for t in types) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    try:
        import matplotlib
    except ImportError:   # the tables are the result; the plot needs matplotlib
        print("matplotlib is not installed: no accuracy.png")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5.2))
    methods = []
    for r in rows:
        if r["method"] not in methods and r["method"] != "none":
            methods.append(r["method"])
    marks = "os^vD<>px*hH+"
    for i, m in enumerate(methods):
        pts = sorted((tokens(r) / n_in, r["accuracy"]) for r in rows if r["method"] == m)
        # tab20's dark shades first, then its light ones: 20 methods, no colour twice
        colour = plt.get_cmap("tab20")(((2 * i) % 20 + (i // 10) % 2) / 20)
        ax.plot([100 * p[0] for p in pts], [100 * p[1] for p in pts], marker=marks[i % len(marks)],
                color=colour, label=m)
    ax.axhline(100 * base["accuracy"], color="k", ls="--", lw=1,
               label=f"no reduction ({100 * base['accuracy']:.1f}%)")
    ax.set_xscale("log")
    ax.set_xticks([2, 5, 11, 25, 50, 100])
    ax.set_xticklabels(["2%", "5%", "11%", "25%", "50%", "100%"])
    ax.set_xlabel(f"visual tokens the LLM keeps after the last pruning point (of {n_in:.0f})")
    ax.set_ylabel("exact-match accuracy, test split (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"synthvqa test split: accuracy vs visual tokens ({n_in:.0f} a question, libmustdrop)")
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=110)


if __name__ == "__main__":
    main()
