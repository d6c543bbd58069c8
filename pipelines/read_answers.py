#!/usr/bin/python3
"""Read mustdropvqa answers from Python (PyGObject), three ways:

  1. from the video buffers reaching an appsink, via the GstCustomMeta the
     element attaches with custom-meta=true (the C struct GstMustdropAnswerMeta
     is not readable from Python: no typelib for it);
  2. from the "mustdrop-answer" element messages on the bus;
  3. from the "answer" signal (called on the inference thread).

The appsink syncs to the clock (real time): without it the whole test clip
would pass before the first answer is ready, and answers ready after the
last buffer (the final window, answered at EOS) ride on no buffer.

Usage (Debian 12: python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0):
  /usr/bin/python3 pipelines/read_answers.py [VIDEO_FILE]
Without a file, 6 s of videotestsrc are used. MODEL / MMPROJ / QUESTION
environment variables as for the shell scripts (default, as there: the
bundled model of models/synthvqa/ with one of its questions, else the tiny
test models, whose answers are nonsense). GST_PLUGIN_PATH defaults to the
first of build/gst and build-gst/gst that holds the plugin.
"""
import os
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
fixtures = os.path.join(root, "models", "fixtures", "vision")
if "GST_PLUGIN_PATH" not in os.environ:
    # as pipelines/common.sh: the first of build/gst and build-gst/gst with the plugin
    dirs = [os.path.join(root, d, "gst") for d in ("build", "build-gst")]
    os.environ["GST_PLUGIN_PATH"] = next(
        (d for d in dirs if os.path.exists(os.path.join(d, "libgstmustdrop.so"))), dirs[0])
bundled = [os.path.join(root, "models", "synthvqa", f)
           for f in ("synthvqa-llm-f16.gguf", "synthvqa-mmproj-f16.gguf")]
if "MODEL" not in os.environ and "MMPROJ" not in os.environ and all(map(os.path.isfile, bundled)):
    # as pipelines/common.sh: the bundled model knows only its task's questions
    default_model, default_mmproj = bundled
    default_question = "How many squares appear?"
else:
    default_model = os.path.join(fixtures, "tiny-llava-llm-f32.gguf")
    default_mmproj = os.path.join(fixtures, "tiny-llava-mmproj-f32.gguf")
    default_question = "What is happening in the video?"
model = os.environ.get("MODEL", default_model)
mmproj = os.environ.get("MMPROJ", default_mmproj)
question = os.environ.get("QUESTION", default_question)


def seconds(ns):
    return ns / Gst.SECOND if ns != Gst.CLOCK_TIME_NONE else float("nan")


def main():
    Gst.init(None)
    if len(sys.argv) > 1:
        src = 'filesrc location="%s" ! decodebin ! videoconvert' % sys.argv[1]
    else:
        src = "videotestsrc num-buffers=60 ! video/x-raw,width=320,height=240,framerate=10/1"
    pipe = Gst.parse_launch(
        src + ' ! mustdropvqa name=vqa model="%s" mmproj="%s" window=2 sample-fps=2 '
        "max-new-tokens=16 custom-meta=true "
        "! appsink name=sink emit-signals=true sync=true" % (model, mmproj))
    vqa = pipe.get_by_name("vqa")
    vqa.set_property("question", question)

    meta_answers = []

    def on_sample(sink):
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        meta = buf.get_custom_meta("GstMustdropAnswerCustomMeta")
        if meta is not None:
            s = meta.get_structure()
            meta_answers.append(s.get_string("answer"))
            print("meta   on buffer %.2fs: window %d [%.2f, %.2f) s, %d frames: %r" % (
                seconds(buf.pts), s.get_uint64("window-index")[1],
                seconds(s.get_uint64("window-start")[1]),
                seconds(s.get_uint64("window-end")[1]),
                s.get_uint("frames")[1], s.get_string("answer")))
        return Gst.FlowReturn.OK

    pipe.get_by_name("sink").connect("new-sample", on_sample)
    vqa.connect("answer", lambda el, s: print("signal window %d: %r" % (
        s.get_uint64("window-index")[1], s.get_string("answer"))))

    pipe.set_state(Gst.State.PLAYING)
    bus = pipe.get_bus()
    rc = 0
    while True:
        msg = bus.timed_pop_filtered(
            30 * Gst.SECOND,
            Gst.MessageType.ELEMENT | Gst.MessageType.ERROR | Gst.MessageType.EOS)
        if msg is None:
            print("timed out", file=sys.stderr)
            rc = 1
            break
        if msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            print("error: %s (%s)" % (err.message, dbg), file=sys.stderr)
            rc = 1
            break
        if msg.type == Gst.MessageType.EOS:
            break
        s = msg.get_structure()
        if s.get_name() == "mustdrop-answer":
            print("bus    window %d: %r" % (s.get_uint64("window-index")[1],
                                            s.get_string("answer")))
        elif s.get_name() == "mustdrop-stats":
            print("stats  %s" % s.to_string())
    pipe.set_state(Gst.State.NULL)
    print("%d answers read from buffer meta" % len(meta_answers))
    return rc


if __name__ == "__main__":
    sys.exit(main())
