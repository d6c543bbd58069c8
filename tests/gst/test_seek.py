#!/usr/bin/python3
"""A flushing seek in a playing pipeline, as a player does it: the windows it
abandons are counted (aborted), none is lost, and the answers after the seek
carry the new positions.

pipelines/shapes.webm (8 s) plays in real time into a synchronised sink with
window=2; at 3.2 s the pipeline seeks back to 1.0 s (FLUSH | ACCURATE). The
open window [2, 4) s, which holds frames, is abandoned: the final
mustdrop-stats must add up (windows = answered + dropped + failed + aborted +
pending, pending 0) with aborted >= 1, and the first answer after the seek
must be for a window starting at 1.0 s (the windows restart at the first
buffer after a flush). Needs GST_PLUGIN_PATH (meson sets it).
Usage: test_seek.py SOURCE_ROOT
"""
import os
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def fail(why):
    print("FAIL:", why)
    sys.exit(1)


def main():
    root = sys.argv[1]
    clip = os.path.join(root, "pipelines", "shapes.webm")
    model = os.path.join(root, "models", "synthvqa", "synthvqa-llm-f16.gguf")
    mmproj = os.path.join(root, "models", "synthvqa", "synthvqa-mmproj-f16.gguf")
    Gst.init(None)
    pipe = Gst.parse_launch(
        'filesrc location="%s" ! decodebin ! videoconvert ! mustdropvqa name=v '
        'model="%s" mmproj="%s" window=2 max-pending=8 '
        'question="Which shape enters last?" ! fakesink sync=true' % (clip, model, mmproj))
    loop = GLib.MainLoop()
    answers, stats, seeked, errors = [], [], [], []

    def on_message(bus, msg):
        t = msg.type
        if t == Gst.MessageType.ELEMENT:
            s = msg.get_structure()
            if s.get_name() == "mustdrop-answer":
                answers.append((bool(seeked), s.get_uint64("window-start")[1] / Gst.SECOND))
            elif s.get_name() == "mustdrop-stats":
                stats.append({k: s.get_value(k) for k in (
                    "windows", "answered", "dropped", "failed", "aborted", "pending")})
        elif t == Gst.MessageType.ERROR:
            errors.append(msg.parse_error()[0].message)
            loop.quit()
        elif t == Gst.MessageType.EOS:
            loop.quit()

    def poll():
        ok, pos = pipe.query_position(Gst.Format.TIME)
        if not seeked and ok and pos >= 3.2 * Gst.SECOND:
            seeked.append(pos)
            if not pipe.seek_simple(Gst.Format.TIME,
                                    Gst.SeekFlags.FLUSH | Gst.SeekFlags.ACCURATE, Gst.SECOND):
                errors.append("the seek was refused")
                loop.quit()
        return not seeked

    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    GLib.timeout_add(20, poll)
    GLib.timeout_add_seconds(40, lambda: (errors.append("no EOS within 40 s"), loop.quit()))
    pipe.set_state(Gst.State.PLAYING)
    loop.run()
    pipe.set_state(Gst.State.NULL)

    if errors:
        fail(errors[0])
    if not seeked or not stats:
        fail("no seek (%s) or no stats (%s)" % (seeked, stats))
    last = stats[-1]
    accounted = sum(last[k] for k in ("answered", "dropped", "failed", "aborted", "pending"))
    if last["windows"] != accounted or last["pending"] != 0:
        fail("mustdrop-stats do not add up: %s" % last)
    if last["aborted"] < 1:
        fail("the window the seek abandoned is not counted: %s" % last)
    after = [start for was_seeked, start in answers if was_seeked]
    if not after or abs(after[0] - 1.0) > 0.05:
        fail("first answer after the seek is for a window at %s s, expected 1.0 s (%s)"
             % (after[:1], answers))
    print("ok flushing seek at %.2f s: %s; windows after it start at %s s"
          % (seeked[0] / Gst.SECOND, last, after))


if __name__ == "__main__":
    main()
