#!/usr/bin/env python3
"""Constrained answers with the bundled default model (docs/structured.md).

  schema:  `mustdrop --json-schema` on pipelines/shapes.webm, for a set of
           schemas and questions: every answer is JSON (parsed here by
           Python's json) valid for its schema (checked here against the
           subset's rules), and the library's own refusals exit 2.
  choices: `mustdrop --choices` picks one of the choices; the pick does not
           depend on the order the choices are given in (the session is
           rewound to the same state before each one), with and without
           reductions that prune or evict KV entries inside the LLM.
  accuracy: models/synthvqa/synthvqa.py writes the first N_CLIPS clips of the
           test split; mustdrop-eval answers them freely and with
           --choices-per-type (each line's "choices": its type's answer set;
           `after` from the split's phrases): no errors, every chosen answer
           in its set, and the choices' accuracy not below the free one's.
Usage: test_constrained.py MODE MUSTDROP MUSTDROP_EVAL SOURCE_ROOT
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

N_CLIPS = 12

SCHEMAS = [
    {"type": "object", "properties": {
        "shape": {"enum": ["circle", "square", "triangle", "star"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 4},
        "moving": {"type": "boolean"}}, "required": ["shape"]},
    {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 12}},
     "additionalProperties": False},
    {"type": "integer", "minimum": -3, "maximum": 120},
    {"type": "boolean"},
    {"enum": ["top left", "top", "left", 7, True]},
    {"type": "object", "properties": {
        "where": {"type": "object", "properties": {
            "row": {"enum": ["top", "middle", "bottom"]},
            "col": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 4}}},
        "note": {"type": "string", "minLength": 2, "maxLength": 5},
        "ok": {"const": False}}},
    {"type": "string", "maxLength": 3},
]
QUESTIONS = ["What colour is the small triangle?", "Which shape enters last?",
             "How many squares appear?", "Is there a white star?"]


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


def valid(v, s, where="$"):
    """Whether v is valid for schema s (the subset md_vqa accepts); the
    reason when not."""
    if "enum" in s or "const" in s:
        allowed = s["enum"] if "enum" in s else [s["const"]]
        # JSON true is not 1 here: compare types too
        ok = any(type(v) is type(a) and v == a for a in allowed)
        return None if ok else f"{where}: {v!r} not in {allowed!r}"
    t = s["type"]
    if t == "boolean":
        return None if isinstance(v, bool) else f"{where}: {v!r} is not a boolean"
    if t == "integer":
        if not isinstance(v, int) or isinstance(v, bool):
            return f"{where}: {v!r} is not an integer"
        lo = max(s.get("minimum", -2**63), s.get("exclusiveMinimum", -2**63 - 1) + 1)
        hi = min(s.get("maximum", 2**63 - 1), s.get("exclusiveMaximum", 2**63) - 1)
        return None if lo <= v <= hi else f"{where}: {v} outside [{lo}, {hi}]"
    if t == "string":
        if not isinstance(v, str):
            return f"{where}: {v!r} is not a string"
        n = len(v)
        ok = s.get("minLength", 0) <= n <= s.get("maxLength", 32)
        return None if ok else f"{where}: {v!r} has {n} characters"
    if t == "object":
        props = s.get("properties", {})
        if not isinstance(v, dict) or list(v) != list(props):
            return f"{where}: {v!r} does not hold exactly {list(props)} in order"
        for k, sub in props.items():
            why = valid(v[k], sub, f"{where}.{k}")
            if why:
                return why
        return None
    return f"{where}: unexpected schema type {t}"


def run(args, env):
    r = subprocess.run(args, capture_output=True, env=env, timeout=120)
    return r.returncode, r.stdout.decode("utf-8"), r.stderr.decode("utf-8", "replace")


def schema_mode(mustdrop, root, env):
    clip = str(root / "pipelines" / "shapes.webm")
    base = [mustdrop, "--video", clip, "--frames", "8", "-t", "2"]
    n = 0
    for s in SCHEMAS:
        text = json.dumps(s)
        for q in QUESTIONS:
            rc, out, err = run(base + ["--question", q, "--json-schema", text, "-n", "96"], env)
            if rc != 0:
                fail(f"{q!r} with {text}: exit {rc}: {err[-800:]}")
            answer = out.strip()
            try:
                v = json.loads(answer)
            except json.JSONDecodeError as e:
                fail(f"{q!r} with {text}: {answer!r} is not JSON ({e})")
            why = valid(v, s)
            if why:
                fail(f"{q!r} with {text}: {answer!r} is not valid: {why}")
            if answer != json.dumps(v, separators=(",", ":"), ensure_ascii=False):
                fail(f"{q!r} with {text}: {answer!r} is not compact JSON")
            n += 1
        print(f"ok {text} -> e.g. {answer}")
    print(f"ok {n} answers, all valid JSON of their schema")
    # the schema file form, and refusals that name the place
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(SCHEMAS[0], f)
    try:
        rc, out, err = run(base + ["--question", QUESTIONS[0], "--json-schema", f.name], env)
        if rc != 0 or valid(json.loads(out), SCHEMAS[0]):
            fail(f"--json-schema FILE: exit {rc}, {out!r}, {err[-500:]}")
    finally:
        os.unlink(f.name)
    bad = {'{"type":"object","properties":{"n":{"type":"number"}}}':
           '/properties/n: type "number" is not supported (integer is)',
           '{"type":"array"}': 'type "array" is not supported'}
    for text, msg in bad.items():
        rc, out, err = run(base + ["--question", QUESTIONS[0], "--json-schema", text], env)
        if rc != 2 or msg not in err:
            fail(f"{text}: exit {rc} (expected 2), stderr {err[-300:]!r} lacks {msg!r}")
    print("ok refused schemas exit 2 and name the place")
    # a budget too small to close the value is an error, never an answer
    rc, out, err = run(base + ["--question", QUESTIONS[0], "--json-schema",
                               json.dumps(SCHEMAS[0]), "-n", "3"], env)
    if rc != 1 or "not complete after" not in err:
        fail(f"-n 3: exit {rc}, {out!r}, {err[-300:]!r}")
    print("ok an answer cut by -n is an error")


def choices_mode(mustdrop, root, env):
    clip = str(root / "pipelines" / "shapes.webm")
    info = json.loads((root / "pipelines" / "shapes.json").read_text())
    sets = {"colour_of": ["red", "green", "blue", "yellow", "white"],
            "enters_last": ["circle", "square", "triangle", "star"],
            "stop_where": ["top left", "top", "top right", "left", "center", "right",
                           "bottom left", "bottom", "bottom right"]}
    for spec in ("none", "fastv:k=1,r=0.5", "mustdrop:tokens=64,kv=decode,every=1"):
        for q in info["questions"]:
            picks = []
            for order in (sets[q["type"]], sets[q["type"]][::-1]):
                rc, out, err = run([mustdrop, "--video", clip, "--frames", "8", "-t", "2",
                                    "--reduce", spec, "--question", q["question"],
                                    "--choices", "|".join(order)], env)
                if rc != 0:
                    fail(f"{spec} {q['question']!r}: exit {rc}: {err[-800:]}")
                picks.append(out.strip())
            if picks[0] != picks[1] or picks[0] not in sets[q["type"]]:
                fail(f"{spec} {q['question']!r}: picked {picks} (in order, reversed)")
            if spec == "none" and picks[0] != q["answer"]:
                fail(f"{q['question']!r}: chose {picks[0]!r}, expected {q['answer']!r}")
            print(f"ok {spec}: {q['question']!r} -> {picks[0]!r} in either order")
    rc, out, err = run([mustdrop, "--video", clip, "--question", "Q?", "--choices", "a|b|a"], env)
    if rc != 2 or "duplicate choice 'a'" not in err:
        fail(f"--choices a|b|a: exit {rc}, {err[-300:]!r}")
    print("ok a bad list exits 2")


def accuracy_mode(mustdrop_eval, root, env):
    if not shutil.which("ffmpeg"):
        fail("the ffmpeg program is missing (Debian: ffmpeg; bash .ci/install-deps)")
    gen = root / "models" / "synthvqa" / "synthvqa.py"
    with tempfile.TemporaryDirectory() as td:
        split = Path(td) / "split"
        subprocess.run([sys.executable, str(gen), "write", "--split", "test", "--n", str(N_CLIPS),
                        "--out", str(split)], check=True, timeout=300)
        res = {}
        for name, extra in (("free", []), ("choices", ["--choices-per-type"])):
            out = Path(td) / f"{name}.jsonl"
            rc, so, se = run([mustdrop_eval, "--split", str(split), "--json", "-t", "2",
                              "--out", str(out)] + extra, env)
            if rc != 0:
                fail(f"mustdrop-eval {extra}: exit {rc}: {se[-1500:]}")
            d = json.loads(so.strip().splitlines()[-1])
            if d["n"] != 2 * N_CLIPS or d.get("n_errors", 0):
                fail(f"{name}: expected {2 * N_CLIPS} questions without errors, got {d}")
            res[name] = (d, [json.loads(x) for x in out.read_text().splitlines()])
        lines = [json.loads(x) for x in (split / "manifest.jsonl").read_text().splitlines()]
        after = {ln["answer"] for ln in lines if ln["type"] == "after"}
        for ln, pred in zip(lines, res["choices"][1]):
            allowed = ln["choices"].split("|") if "choices" in ln else after
            if pred["prediction"] not in allowed:
                fail(f"{ln['id']}: {pred['prediction']!r} is not one of {sorted(allowed)}")
        free, chosen = res["free"][0]["accuracy"], res["choices"][0]["accuracy"]
        for t, v in res["choices"][0]["per_type"].items():
            f = res["free"][0]["per_type"][t]
            print(f"  {t}: free {f['correct']}/{f['n']}, choices {v['correct']}/{v['n']}")
        if chosen < free:
            fail(f"choices {chosen:.3f} below the free answers' {free:.3f}")
        print(f"ok {2 * N_CLIPS} questions: choices {100 * chosen:.1f}% >= free {100 * free:.1f}%,"
              " every choice in its set")


def main():
    mode, mustdrop, mustdrop_eval, root = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    for f in ("synthvqa-llm-f16.gguf", "synthvqa-mmproj-f16.gguf"):
        if not (root / "models" / "synthvqa" / f).is_file():
            fail(f"bundled model file {f} missing")
    env = dict(os.environ)
    env.pop("MUSTDROP_MODEL_DIR", None)
    {"schema": lambda: schema_mode(mustdrop, root, env),
     "choices": lambda: choices_mode(mustdrop, root, env),
     "accuracy": lambda: accuracy_mode(mustdrop_eval, root, env)}[mode]()


if __name__ == "__main__":
    main()
