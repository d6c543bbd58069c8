#!/usr/bin/python3
"""The answers of a fleet of mustdropvqa pipelines as one stream of events.

Subscribes (QoS 1) to TOPIC on an MQTT broker where mustdropvqa elements
publish (mqtt-uri; pipelines/fleet.sh) and prints one line per answer,
ordered by the time it was answered (the payload's "time", the answering
machine's wall clock: keep the machines' clocks in sync, e.g. NTP). Each
event is held --delay seconds so that one arriving a little later from
another machine still comes out in its place. A copy of an answer (QoS 1
delivers at least once: the same stream, run and seq) is dropped; a seq that
skips (the element's mqtt-queue overflowed while its broker was away) is
reported.
Usage: fleet-subscribe.py [--broker HOST:PORT] [--topic 'fleet/#']
                          [--delay S] [--idle S] [--client-id ID]
  --idle S: exit after S seconds without a message (once one came);
  otherwise run until interrupted. Ends with a summary line.
"""
import argparse
import heapq
import json
import signal
import threading
import time

import paho.mqtt.client as mqtt


class Merger:
    """Events in answer-time order, without copies, with gaps noted."""

    def __init__(self):
        self.lock = threading.Lock()
        self.heap, self.count = [], 0
        self.seen = {}        # (topic, run) -> highest seq so far
        self.copies = self.missing = self.events = 0
        self.streams = set()
        self.last_message = None

    def add(self, topic, payload):
        try:
            o = json.loads(payload)
            key, seq = (topic, o["run"]), int(o["seq"])
        except (ValueError, KeyError, TypeError):
            print("fleet-subscribe: not an answer on %s: %.80r" % (topic, payload), flush=True)
            return
        with self.lock:
            self.last_message = time.monotonic()
            last = self.seen.get(key, 0)
            if seq <= last:
                self.copies += 1
                return
            if seq > last + 1:
                self.missing += seq - last - 1
                print("fleet-subscribe: %s: seq %d..%d missing (dropped by the element)"
                      % (topic, last + 1, seq - 1), flush=True)
            self.seen[key] = seq
            self.streams.add(topic)
            self.count += 1
            heapq.heappush(self.heap, (float(o.get("time", 0)), self.count, topic, o))

    def release(self, until):
        """Prints the events answered before `until` (wall clock)."""
        with self.lock:
            out = []
            while self.heap and self.heap[0][0] <= until:
                out.append(heapq.heappop(self.heap))
            self.events += len(out)
        for t, _, topic, o in out:
            clock = time.strftime("%H:%M:%S", time.localtime(t)) + ".%03d" % (t % 1 * 1000)
            where = topic.split("/", 1)[1] if "/" in topic else topic
            print("%s  %-14s #%-3d window %d [%.1f-%.1f s]  %s -> %s"
                  % (clock, where, o["seq"], o.get("window", -1), o.get("start") or 0,
                     o.get("end") or 0, o.get("question", ""), o.get("answer", "")), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--broker", default="127.0.0.1:1883")
    ap.add_argument("--topic", default="fleet/#")
    ap.add_argument("--delay", type=float, default=1.0)
    ap.add_argument("--idle", type=float, default=0)
    ap.add_argument("--client-id", default="")
    a = ap.parse_args()
    host, _, port = a.broker.rpartition(":")
    merger, stop = Merger(), threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    # with a client id, a persistent session: what is published while this
    # subscriber reconnects waits for it on the broker
    c = mqtt.Client(client_id=a.client_id, clean_session=not a.client_id)
    c.on_connect = lambda cl, u, f, rc: cl.subscribe(a.topic, qos=1)
    c.on_message = lambda cl, u, m: merger.add(m.topic, m.payload.decode(errors="replace"))
    c.connect_async(host or "127.0.0.1", int(port or 1883), keepalive=30)
    c.loop_start()
    while not stop.is_set():
        merger.release(time.time() - a.delay)
        last = merger.last_message
        if a.idle and last is not None and time.monotonic() - last > a.idle:
            break
        stop.wait(0.1)
    c.loop_stop()
    c.disconnect()
    merger.release(float("inf"))
    print("fleet-subscribe: %d events from %d streams; %d copies dropped, %d missing"
          % (merger.events, len(merger.streams), merger.copies, merger.missing), flush=True)


if __name__ == "__main__":
    main()
