#!/usr/bin/python3
"""mustdropvqa publishes its answers to a real MQTT broker (mqtt-uri).

A mosquitto broker runs on a free loopback port with persistence on in a
temporary folder; a subscriber (paho) with a persistent session (clean
session off, QoS 1) collects what arrives. gst-launch-1.0 runs the element
with the bundled model, also writing jsonl-location: the JSON lines are what
the element answered, the MQTT payloads must be exactly those lines.
  1. two streams, one broker: each stream's answers arrive on its own topic
     once each, in order (seq 1..N), with the fields of the JSON line; the
     EOS stats say published N, dropped 0, queued 0
  2. the broker is stopped after the first answers and restarted on the same
     port and folder a few seconds later, while a live source keeps
     answering: nothing is lost and the first arrival of every seq comes in
     order. QoS 1 is at-least-once: a copy of an answer already received
     (the same payload) is allowed and counted, anything else fails (why in
     docs/fleet.md)
  3. no broker at all and mqtt-queue=2: the pipeline still runs to EOS, a
     warning says the broker is not reachable, and the EOS stats count
     dropped = answers - 2, queued 2
  4. URIs that cannot work (mqtts://, another scheme, no host, a topic with a
     wildcard) fail the start with the cause in the headline
  5. pipelines/fleet.sh (2 machines x 2 cameras, 8 s, window 2, its own
     broker): the subscriber prints every window of every camera once, in
     time order
Usage: test_mqtt.py SOURCE_ROOT MOSQUITTO   (GST_PLUGIN_PATH set by meson)
"""
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

ROOT = sys.argv[1]
MOSQUITTO = sys.argv[2]
LLM = os.path.join(ROOT, "models", "synthvqa", "synthvqa-llm-f16.gguf")
MMPROJ = os.path.join(ROOT, "models", "synthvqa", "synthvqa-mmproj-f16.gguf")
FIELDS = ("stream", "host", "run", "seq", "time", "window", "start", "end",
          "question", "answer", "frames", "visual_tokens", "prompt_tokens",
          "generated_tokens", "encode_ms", "prefill_ms", "decode_ms")


def fail(why):
    print("FAIL:", why)
    sys.exit(1)


def launch_prefix():
    """env LD_PRELOAD=... for an ASan-built plugin (tests/gst/launch-env.sh)."""
    plugin = os.path.join(os.environ["GST_PLUGIN_PATH"], "libgstmustdrop.so")
    out = subprocess.run(
        ["bash", "-c", 'plugin="$1"; source "$2"; printf "%s\\n" "${run_env[@]}"', "_",
         plugin, os.path.join(ROOT, "tests", "gst", "launch-env.sh")],
        capture_output=True, text=True, check=True).stdout
    return [a for a in out.split("\n") if a]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on 127.0.0.1:port, persistence in `folder` (kept across
    restarts)."""

    def __init__(self, folder, port):
        self.port, self.folder = port, folder
        self.conf = os.path.join(folder, "mosquitto.conf")
        with open(self.conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\n"
                    "persistence true\npersistence_location %s/\n" % (port, folder))
        self.proc = None

    def start(self):
        log = open(os.path.join(self.folder, "broker.log"), "a")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail("mosquitto exited with %s (%s/broker.log)" % (self.proc.returncode, self.folder))
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        fail("mosquitto did not listen on port %d within 10 s" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()   # SIGTERM: saves the persistence file
            self.proc.wait(10)
        self.proc = None


class Subscriber:
    """A persistent session on `topic` with QoS 1: (topic, payload) in
    arrival order."""

    def __init__(self, port, topic, client_id):
        self.got, self.cond = [], threading.Condition()
        self.c = mqtt.Client(client_id=client_id, clean_session=False)
        self.c.reconnect_delay_set(min_delay=1, max_delay=1)
        self.c.on_connect = lambda c, u, f, rc: c.subscribe(topic, qos=1)
        self.c.on_message = self.on_message
        self.c.connect("127.0.0.1", port, keepalive=10)
        self.c.loop_start()

    def on_message(self, client, user, msg):
        with self.cond:
            self.got.append((msg.topic, msg.payload.decode()))
            self.cond.notify_all()

    def wait_for(self, n, timeout):
        with self.cond:
            self.cond.wait_for(lambda: len(self.got) >= n, timeout)
            return list(self.got)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def element(name, port, tmp, extra=""):
    return ("mustdropvqa name=%s model=%s mmproj=%s question=\"How many squares appear?\" "
            "window=1 sample-fps=2 max-new-tokens=8 max-pending=64 stats=true "
            "mqtt-uri=mqtt://127.0.0.1:%d mqtt-topic=test/{stream} "
            "jsonl-location=%s/%s.jsonl %s" % (name, LLM, MMPROJ, port, tmp, name, extra))


def source(frames, pattern, live=False):
    return ("videotestsrc num-buffers=%d pattern=%s is-live=%s "
            "! video/x-raw,width=64,height=64,framerate=10/1 "
            % (frames, pattern, "true" if live else "false"))


def run(args, log, timeout):
    """gst-launch-1.0 -m ARGS (a list) to completion; its status and output."""
    with open(log, "w") as f:
        try:
            rc = subprocess.run(launch_prefix() + ["gst-launch-1.0", "-m"] + args,
                                stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            fail("gst-launch-1.0 hung (killed after %d s): %s" % (timeout, log))
    return rc, open(log, errors="replace").read()


def last_stats(output, name):
    """The fields of the last mustdrop-stats message of element `name`."""
    lines = [l for l in output.splitlines()
             if "mustdrop-stats" in l and '"%s"' % name in l]
    if not lines:
        fail("no mustdrop-stats message from %s" % name)
    return {k: int(v) for k, v in re.findall(r"([\w-]+)=\(g?u?int(?:64)?\)(\d+)", lines[-1])}


def jsonl(tmp, name):
    with open(os.path.join(tmp, name + ".jsonl")) as f:
        return [l.rstrip("\n") for l in f]


def check_stream(name, lines, payloads, allow_copies):
    """payloads (arrival order) against the JSON lines: every line arrives,
    first arrivals in order; copies only where allowed, and only exact ones.
    Returns the number of copies."""
    if not lines:
        fail("%s wrote no JSON lines" % name)
    first, copies = [], 0
    for p in payloads:
        if p in first:
            copies += 1
            continue
        first.append(p)
    if copies and not allow_copies:
        fail("%s: %d answers arrived twice: %s" % (name, copies, payloads))
    if first != lines:
        fail("%s: the MQTT payloads are not the JSON lines, in order:\nlines    %s\n"
             "payloads %s" % (name, lines, payloads))
    seqs = [json.loads(p)["seq"] for p in first]
    if seqs != list(range(1, len(lines) + 1)):
        fail("%s: seq is %s, expected 1..%d" % (name, seqs, len(lines)))
    for p in first:
        o = json.loads(p)
        missing = [k for k in FIELDS if k not in o]
        if missing:
            fail("%s: payload lacks %s: %s" % (name, missing, p))
        if o["stream"] != name or o["host"] != socket.gethostname():
            fail("%s: stream/host are %s/%s" % (name, o["stream"], o["host"]))
    if len({json.loads(p)["run"] for p in first}) != 1:
        fail("%s: more than one run id in one run" % name)
    return copies


def case_two_streams(tmp):
    port = free_port()
    broker = Broker(tmp, port)
    broker.start()
    sub = Subscriber(port, "test/#", "mdv-test-two")
    try:
        desc = (source(60, "ball") + "! " + element("cam1", port, tmp) + " ! fakesink "
                + source(40, "smpte") + "! " + element("cam2", port, tmp) + " ! fakesink")
        rc, out = run(shlex.split(desc), os.path.join(tmp, "two.log"), 60)
        if rc != 0:
            print(out[-3000:])
            fail("gst-launch-1.0 exited with %d" % rc)
        lines = {n: jsonl(tmp, n) for n in ("cam1", "cam2")}
        got = sub.wait_for(sum(len(v) for v in lines.values()), 10)
        for n in ("cam1", "cam2"):
            payloads = [p for t, p in got if t == "test/" + n]
            check_stream(n, lines[n], payloads, allow_copies=False)
            st = last_stats(out, n)
            if (st.get("mqtt-published"), st.get("mqtt-dropped"), st.get("mqtt-queued")) != \
                    (len(lines[n]), 0, 0):
                fail("%s: EOS stats %s, expected mqtt-published=%d dropped 0 queued 0"
                     % (n, st, len(lines[n])))
        stray = [t for t, p in got if t not in ("test/cam1", "test/cam2")]
        if stray:
            fail("messages on other topics: %s" % stray)
        print("ok two streams: cam1 %d, cam2 %d answers, each once, in order, on its topic"
              % (len(lines["cam1"]), len(lines["cam2"])))
    finally:
        sub.close()
        broker.stop()


def case_broker_restart(tmp):
    port = free_port()
    broker = Broker(tmp, port)
    broker.start()
    sub = Subscriber(port, "test/cam3", "mdv-test-restart")
    log = os.path.join(tmp, "restart.log")
    desc = source(140, "ball", live=True) + "! " + element("cam3", port, tmp) + " ! fakesink"
    with open(log, "w") as f:
        gst = subprocess.Popen(launch_prefix() + ["gst-launch-1.0", "-m"] + shlex.split(desc),
                               stdout=f, stderr=subprocess.STDOUT)
    try:
        if len(sub.wait_for(2, 30)) < 2:
            fail("no answers reached the broker within 30 s")
        broker.stop()
        t_stop = time.monotonic()
        # answers made while the broker is away: at least two
        path = os.path.join(tmp, "cam3.jsonl")
        at_stop = len(jsonl(tmp, "cam3"))
        while len(jsonl(tmp, "cam3")) < at_stop + 2 and time.monotonic() < t_stop + 15:
            time.sleep(0.1)
        during = len(jsonl(tmp, "cam3")) - at_stop
        broker.start()
        rc = gst.wait(60)
        lines = jsonl(tmp, "cam3")
        got = sub.wait_for(len(lines), 15)
        out = open(log, errors="replace").read()
        if rc != 0:
            print(out[-3000:])
            fail("gst-launch-1.0 exited with %d" % rc)
        if during < 2:
            fail("only %d answers while the broker was away (%s)" % (during, path))
        if "Lost the MQTT broker" not in out:
            fail("no warning that the broker was lost")
        copies = check_stream("cam3", lines, [p for t, p in got], allow_copies=True)
        st = last_stats(out, "cam3")
        if st.get("mqtt-dropped") != 0 or st.get("mqtt-published") != len(lines):
            fail("EOS stats %s, expected mqtt-published=%d dropped 0" % (st, len(lines)))
        print("ok broker restart: %d answers (%d while it was away), none lost, in order, "
              "%d QoS 1 copies" % (len(lines), during, copies))
    finally:
        if gst.poll() is None:
            gst.kill()
        sub.close()
        broker.stop()


def case_no_broker(tmp):
    port = free_port()   # nothing listens there
    desc = source(60, "ball") + "! " + element("cam4", port, tmp, "mqtt-queue=2") + " ! fakesink"
    rc, out = run(shlex.split(desc), os.path.join(tmp, "nobroker.log"), 60)
    if rc != 0:
        print(out[-3000:])
        fail("no broker: gst-launch-1.0 exited with %d (it must run on)" % rc)
    if "Could not reach the MQTT broker at 127.0.0.1:%d" % port not in out:
        fail("no warning naming the unreachable broker")
    n = len(jsonl(tmp, "cam4"))
    st = last_stats(out, "cam4")
    want = (0, n - 2, 2)
    if n <= 2 or (st.get("mqtt-published"), st.get("mqtt-dropped"), st.get("mqtt-queued")) != want:
        fail("no broker, %d answers, mqtt-queue=2: EOS stats %s, expected published, "
             "dropped, queued = %s" % (n, st, want))
    print("ok no broker: %d answers, %d dropped, 2 queued at EOS, pipeline ran on" % (n, n - 2))


def case_bad_settings(tmp):
    cases = [
        ("mqtt-uri=mqtts://127.0.0.1:8883", "TLS (mqtts://) is not supported"),
        ("mqtt-uri=http://127.0.0.1", 'unknown scheme "http"'),
        ("mqtt-uri=mqtt://", "names no host"),
        ("mqtt-uri=mqtt://127.0.0.1/x", "has a path"),
        ("mqtt-uri=mqtt://127.0.0.1 mqtt-topic=a/+/b", "has a wildcard"),
    ]
    for i, (setting, words) in enumerate(cases):
        desc = ("videotestsrc num-buffers=5 ! mustdropvqa model=%s mmproj=%s %s ! fakesink"
                % (LLM, MMPROJ, setting))
        t0 = time.monotonic()
        rc, out = run(shlex.split(desc), os.path.join(tmp, "bad%d.log" % i), 30)
        errors = [l for l in out.splitlines() if l.startswith("ERROR: from element")]
        if rc == 0 or not errors or words not in errors[0]:
            print(out[-2000:])
            fail("%s: expected a failed start whose headline says '%s'" % (setting, words))
        print("ok %s fails in %.1f s: %s" % (setting, time.monotonic() - t0, errors[0]))


def case_fleet(tmp):
    env = dict(os.environ, MACHINES="2", DURATION="8", WINDOW="2", FLEET_PORT=str(free_port()))
    log = os.path.join(tmp, "fleet.log")
    with open(log, "w") as f:
        try:
            rc = subprocess.run(launch_prefix() + ["bash", os.path.join(ROOT, "pipelines", "fleet.sh")],
                                stdout=f, stderr=subprocess.STDOUT, env=env, timeout=90).returncode
        except subprocess.TimeoutExpired:
            fail("pipelines/fleet.sh hung (killed after 90 s): %s" % log)
    out = open(log, errors="replace").read()
    events = re.findall(r"^(\d\d:\d\d:\d\d\.\d{3})  (m\d/cam\d) +#(\d+) ", out, re.M)
    want = {"m%d/cam%d" % (m, c): ["1", "2", "3", "4"] for m in (1, 2) for c in (1, 2)}
    got = {k: [seq for _, w, seq in events if w == k] for k in want}
    if rc != 0 or got != want or "16 events from 4 streams; 0 copies dropped, 0 missing" not in out:
        print(out[-3000:])
        fail("pipelines/fleet.sh (exit %d): expected 4 answers (seq 1..4) from each of 4 "
             "cameras, got %s" % (rc, got))
    times = [t for t, _, _ in events]
    if times != sorted(times):
        fail("pipelines/fleet.sh: events not in time order: %s" % times)
    print("ok pipelines/fleet.sh: 16 events from 4 cameras on 2 machines, in time order")


def main():
    for f in (LLM, MMPROJ):
        if not os.path.exists(f):
            fail("%s missing" % f)
    with tempfile.TemporaryDirectory() as tmp:
        for case in (case_bad_settings, case_two_streams, case_broker_restart, case_no_broker,
                     case_fleet):
            folder = os.path.join(tmp, case.__name__)
            os.mkdir(folder)
            case(folder)


if __name__ == "__main__":
    main()
