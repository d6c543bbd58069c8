#!/usr/bin/env python3
"""Plot and tabulate a docs/benchmarks/reduction/run.sh result directory.

    python3 docs/benchmarks/reduction/plot.py DIR

Reads DIR/image.csv and DIR/video.csv (mustdrop-bench --reduce output) and
DIR/reference.txt (bench_matmul peak / GEMM and the LLM's pp512 rate), and
writes DIR/reduction.png (one image), DIR/reduction-video.png (8 frames) and
DIR/summary.md (the tables docs/reduction.md quotes). Needs numpy and
matplotlib (pip install numpy matplotlib).

x axis: retained visual tokens = mean over the LLM layers of the visual rows
each layer keeps (MustDrop's "layer avg"; equal to the tokens entering the
LLM for the methods that select before it, and what the prefill FLOPs scale
with). One line per method.
"""
import csv
import os
import re
import sys

import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "none": ("black", "*"), "mustdrop": ("tab:red", "o"), "hired": ("tab:blue", "s"),
    "fastv": ("tab:green", "^"), "random": ("tab:gray", "x"), "uniform": ("tab:purple", "D"),
    "dycoke": ("tab:orange", "v"), "stmerge": ("tab:brown", "P"),
}


def load(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k, v in list(r.items()):
            if k != "spec":
                r[k] = float(v)
        r["method"] = "+".join(p.split(":")[0] for p in r["spec"].split("+"))
        r["ms_decode_tok"] = r["ms_decode"] / r["generated"] if r["generated"] else 0.0
    return rows


def reference(path):
    """Measured CPU FLOP/s: FMA peak, f16 GEMM, and the LLM's pp512 rate."""
    ref = {}
    if not os.path.exists(path):
        return ref
    text = open(path).read()
    peaks = [float(x) for x in re.findall(r"peak \S+\s+FMA:\s+([\d.]+) GFLOP/s", text)]
    if peaks:
        ref["peak"] = max(peaks)
    # f16 GEMM at the LLM's shapes (n_tok 512), median over the shapes of the
    # fastest ISA (the one the engine picks)
    gemm = {}
    for isa, g in re.findall(r"^gemm (\S+)\s.* ([\d.]+) GFLOP/s", text, re.M):
        gemm.setdefault(isa, []).append(float(g))
    if gemm:
        ref["gemm_median"] = max(float(np.median(v)) for v in gemm.values())
    m = re.search(r"\| pp512 \| ([\d.]+)", text)
    if m:
        ref["pp512_tok_s"] = float(m.group(1))
    return ref


def lines(ax, rows, ycol, scale=1.0, total=None):
    by = {}
    for r in rows:
        by.setdefault(r["method"], []).append(r)
    for m, rs in by.items():
        rs = sorted(rs, key=lambda r: r["layer_avg"])
        x = np.array([r["layer_avg"] for r in rs])
        y = np.array([r[ycol] for r in rs]) * scale
        c, mk = STYLE.get(m.split("+")[0], ("tab:cyan", "."))
        ax.plot(x, y, marker=mk, color=c, label=m, linestyle="-" if len(rs) > 1 else "none",
                markersize=9 if m == "none" else 5)
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("retained visual tokens (mean over LLM layers)")
    if total:
        ax.set_xlim(0, total * 1.05)


def figure(rows, title, path, ref):
    if not rows:
        return
    total = max(r["tokens_in"] for r in rows)
    panels = [
        ("ms_vision", "vision (tower + projector) ms", 1.0),
        ("ms_select", "select (stage b) ms", 1.0),
        ("ms_prefill", "prefill ms (incl. stage c)", 1.0),
        ("ms_decode_tok", "decode ms / token", 1.0),
        ("gflops_prefill", "prefill GFLOP (analytic)", 1.0),
        ("kv_mib_decode", "KV cache MiB (end of decode)", 1.0),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (col, name, sc) in zip(axes.flat, panels):
        lines(ax, rows, col, sc, total)
        ax.set_title(name)
        ax.set_ylim(bottom=0)
    # each run's prefill FLOPs at the rate the unreduced prefill achieved:
    # where a point sits above its grey cross, that method's prefill ran
    # slower per FLOP than the unreduced one (overheads, smaller matmuls)
    none = [r for r in rows if r["method"] == "none"]
    if none and none[0]["ms_prefill"] > 0:
        rate = none[0]["gflops_prefill"] / none[0]["ms_prefill"]  # GFLOP per ms
        axes[0][2].plot([r["layer_avg"] for r in rows], [r["gflops_prefill"] / rate for r in rows],
                        "+", color="gray", markersize=11, zorder=0, label="FLOPs at the unreduced rate")
    for ax, (col, _, _) in zip(axes.flat, panels):
        if none:
            ax.axhline(none[0][col], color="black", alpha=0.3, linestyle=":")
    axes[0][0].legend(fontsize=8, loc="lower right")
    axes[0][2].legend(handles=axes[0][2].get_legend_handles_labels()[0][-1:], fontsize=8, loc="upper left")
    sub = ""
    if ref.get("peak"):
        sub = f" — CPU FMA peak {ref['peak']:.0f} GFLOP/s"
    fig.suptitle(title + sub)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table(rows, ref):
    out = ["| spec | into LLM | layer avg | final | GFLOP vision | GFLOP prefill | GFLOP decode/tok "
           "| KV MiB prefill | KV MiB decode | ms vision | ms select | ms prefill | ms decode/tok "
           "| prefill GFLOP/s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        g = r["generated"] or 1
        rate = r["gflops_prefill"] / r["ms_prefill"] * 1e3 if r["ms_prefill"] else 0
        out.append(
            f"| `{r['spec']}` | {r['after_select']:.0f} | {r['layer_avg']:.1f} | {r['final']:.0f} "
            f"| {r['gflops_vision']:.1f} | {r['gflops_prefill']:.1f} | {r['gflops_decode'] / g:.3f} "
            f"| {r['kv_mib_prefill']:.1f} | {r['kv_mib_decode']:.1f} | {r['ms_vision']:.0f} "
            f"| {r['ms_select']:.2f} | {r['ms_prefill']:.0f} | {r['ms_decode'] / g:.1f} | {rate:.0f} |")
    return "\n".join(out)


def physics(rows, ref):
    """Achieved GFLOP/s per stage of the unreduced run vs the measured CPU."""
    none = [r for r in rows if r["method"] == "none"]
    if not none:
        return ""
    r = none[0]
    g = r["generated"] or 1
    st = [("vision", r["gflops_vision"], r["ms_vision"]),
          ("prefill", r["gflops_prefill"], r["ms_prefill"]),
          ("decode (per token)", r["gflops_decode"] / g, r["ms_decode"] / g)]
    out = ["| stage (`none`) | GFLOP | ms | achieved GFLOP/s | % of FMA peak | % of f16 GEMM |",
           "|---|---:|---:|---:|---:|---:|"]
    for name, gf, ms in st:
        rate = gf / ms * 1e3 if ms else 0
        pk = f"{100 * rate / ref['peak']:.0f}%" if ref.get("peak") else "–"
        gm = f"{100 * rate / ref['gemm_median']:.0f}%" if ref.get("gemm_median") else "–"
        out.append(f"| {name} | {gf:.2f} | {ms:.1f} | {rate:.1f} | {pk} | {gm} |")
    return "\n".join(out)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "."
    ref = reference(os.path.join(d, "reference.txt"))
    img = load(os.path.join(d, "image.csv"))
    vid = load(os.path.join(d, "video.csv"))
    if img:
        figure(img, f"One image ({img[0]['tokens_in']:.0f} visual tokens), random weights, CPU",
               os.path.join(d, "reduction.png"), ref)
    if vid:
        figure(vid, f"{vid[0]['images']:.0f} video frames ({vid[0]['tokens_in']:.0f} visual tokens), "
               "random weights, CPU", os.path.join(d, "reduction-video.png"), ref)
    parts = []
    if ref:
        parts.append("Reference: " + ", ".join(f"{k} {v:.1f}" for k, v in ref.items()))
    for name, rows in (("One image", img), ("Eight frames", vid)):
        if rows:
            parts += [f"## {name}", "", table(rows, ref), "", physics(rows, ref), ""]
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write("\n".join(parts) + "\n")
    print("\n".join(parts))


if __name__ == "__main__":
    main()
