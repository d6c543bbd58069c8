#!/usr/bin/python3
"""Constrained answers leave the element as structured values.

With the bundled model over pipelines/shapes.webm (8 s, played in real time
so that answers come while video still flows, one-a-second sampling):
  - choices (one window of the whole clip): the answer is one of the
    choices, the "mustdrop-answer" message carries it as "value" with its
    index as "choice", the JSON line too; with the clip's question "Which
    shape enters last?" the chosen shape is the right one (star, as
    pipelines/shapes.json says);
  - json-schema (inline and from a file; two 4 s windows): the message's
    "value" is a structure with the schema's fields and types, within the
    ranges and enums, the answer text is that JSON, the JSON line's "value"
    is the same object, and the custom meta on the first buffer after the
    first answer carries the same structure;
  - bad constraints fail the start with the cause in the headline: an
    unsupported schema, a missing schema file, choices and a schema together,
    an empty choice.
Needs GST_PLUGIN_PATH (meson sets it).
Usage: test_structured.py SOURCE_ROOT
"""
import json
import os
import sys
import tempfile

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, GObject, Gst  # noqa: E402

SHAPES = ["circle", "square", "triangle", "star"]
SCHEMA = {
    "type": "object",
    "properties": {
        "shape": {"enum": SHAPES},
        "count": {"type": "integer", "minimum": 0, "maximum": 4},
        "moving": {"type": "boolean"},
    },
    "required": ["shape", "count", "moving"],
}

failures = []


def check(cond, why):
    if not cond:
        failures.append(why)
        print("FAIL:", why)


def run(root, props, question, jsonl=None, window=8):
    """Plays the clip through the element; returns (answers, error)."""
    clip = os.path.join(root, "pipelines", "shapes.webm")
    pipe = Gst.parse_launch(
        'filesrc location="%s" ! decodebin ! videoconvert ! mustdropvqa name=v window=%g '
        'custom-meta=true ! fakesink name=out signal-handoffs=true sync=true' % (clip, window))
    v = pipe.get_by_name("v")
    v.set_property("question", question)
    for k, val in props.items():
        v.set_property(k, val)
    if jsonl:
        v.set_property("jsonl-location", jsonl)
    answers, metas, errors = [], [], []
    def on_buffer(sink, buf, pad):
        m = buf.get_custom_meta("GstMustdropAnswerCustomMeta")
        if m:
            metas.append(m.get_structure().copy())

    pipe.get_by_name("out").connect("handoff", on_buffer)
    loop = GLib.MainLoop()

    def on_message(bus, msg):
        if msg.type == Gst.MessageType.ELEMENT and \
                msg.get_structure().get_name() == "mustdrop-answer":
            answers.append(msg.get_structure().copy())
        elif msg.type == Gst.MessageType.ERROR:
            errors.append(msg.parse_error()[0].message)
            loop.quit()
        elif msg.type == Gst.MessageType.EOS:
            loop.quit()

    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    GLib.timeout_add_seconds(120, lambda: (errors.append("no EOS within 120 s"), loop.quit()))
    pipe.set_state(Gst.State.PLAYING)
    loop.run()
    pipe.set_state(Gst.State.NULL)
    bus.remove_signal_watch()
    return answers, metas, errors


def valid_for_schema(obj):
    return (isinstance(obj, dict) and list(obj) == ["shape", "count", "moving"]
            and obj["shape"] in SHAPES
            and isinstance(obj["count"], int) and not isinstance(obj["count"], bool)
            and 0 <= obj["count"] <= 4 and isinstance(obj["moving"], bool))


def test_choices(root, tmp):
    jsonl = os.path.join(tmp, "choices.jsonl")
    answers, metas, errors = run(root, {"choices": " | ".join(SHAPES)},
                                 "Which shape enters last?", jsonl)
    check(not errors, "choices: %s" % errors)
    check(len(answers) == 1, "choices: %d answers, expected 1" % len(answers))
    for a in answers:
        value, idx = a.get_string("value"), a.get_int("choice")
        check(value in SHAPES, "choices: value %r not a choice" % value)
        check(idx[0] and SHAPES[idx[1]] == value, "choices: index %s for %r" % (idx, value))
        check(a.get_string("answer") == value, "choices: answer %r, value %r"
              % (a.get_string("answer"), value))
        check(value == "star", "choices: %r enters last, the clip says star" % value)
    lines = [json.loads(x) for x in open(jsonl)]
    check(len(lines) == 1 and lines[0].get("value") == lines[0].get("answer") == "star"
          and lines[0].get("choice") == 3, "choices: JSON line %s" % lines)
    print("choices: %s" % [a.get_string("value") for a in answers])


def test_schema(root, tmp, inline):
    if inline:
        prop = json.dumps(SCHEMA)
    else:
        prop = os.path.join(tmp, "schema.json")
        with open(prop, "w") as f:
            json.dump(SCHEMA, f, indent=2)
    jsonl = os.path.join(tmp, "schema-%d.jsonl" % inline)
    # two windows: the first answer rides a buffer of the second (the last
    # comes at EOS, after the last buffer)
    answers, metas, errors = run(root, {"json-schema": prop},
                                 "How many squares appear?", jsonl, window=4)
    what = "json-schema (%s)" % ("inline" if inline else "file")
    check(not errors, "%s: %s" % (what, errors))
    check(len(answers) == 2, "%s: %d answers, expected 2" % (what, len(answers)))
    for a in answers:
        obj = json.loads(a.get_string("answer"))
        check(valid_for_schema(obj), "%s: answer %r not valid" % (what, a.get_string("answer")))
        ok, v = a.get_value("value") is not None, a.get_value("value")
        check(ok and isinstance(v, Gst.Structure), "%s: value is %r" % (what, v))
        if ok and isinstance(v, Gst.Structure):
            got = {"shape": v.get_string("shape"), "count": v.get_int64("count")[1],
                   "moving": v.get_boolean("moving")[1]}
            check(got == obj, "%s: structure %s, text %s" % (what, got, obj))
            check(v.get_field_type("count") == GObject.TYPE_INT64,
                  "%s: count is %s" % (what, v.get_field_type("count")))
    lines = [json.loads(x) for x in open(jsonl)]
    check(len(lines) == 2 and all(valid_for_schema(x.get("value"))
                                  and x["value"] == json.loads(x["answer"]) for x in lines),
          "%s: JSON lines %s" % (what, lines))
    check(len(metas) == 1 and isinstance(metas[0].get_value("value"), Gst.Structure)
          and metas[0].get_value("value").is_equal(answers[0].get_value("value")),
          "%s: custom meta %s" % (what, [m.to_string() for m in metas]))
    print("%s: %s" % (what, [a.get_string("answer") for a in answers]))


def test_bad(root, tmp):
    cases = [
        ({"json-schema": '{"type": "array"}'}, "json-schema"),
        ({"json-schema": os.path.join(tmp, "missing.json")}, "missing.json"),
        ({"choices": "yes|no", "json-schema": json.dumps(SCHEMA)}, "both set"),
        ({"choices": "yes||no"}, "choices"),
    ]
    for props, needle in cases:
        answers, _, errors = run(root, props, "Is there a star?")
        check(errors and needle in errors[0] and not answers,
              "%s: errors %s, answers %d (expected an error naming %r)"
              % (props, errors, len(answers), needle))
        print("%s -> %s" % (props, errors[:1]))


def main():
    Gst.init(None)
    root = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        test_choices(root, tmp)
        test_schema(root, tmp, inline=True)
        test_schema(root, tmp, inline=False)
        test_bad(root, tmp)
    if failures:
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main()
