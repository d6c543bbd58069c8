#!/usr/bin/python3
"""Streams per machine (docs/streams.md): N live 30 fps 320x240 sources
through N mustdropvqa elements (window=4, sample-fps=2, the bundled model)
in one process, the elements sharing one engine (shared: answers of
several streams decoded together, max-batch=8; unbatched: max-batch=1) or
each with its own (separate: engine-name=e<i>), N = 1, 2, 4, ... until none
keeps up.

    /usr/bin/python3 docs/benchmarks/streams/run.py BUILD OUTDIR [SECONDS] [MAX_N]
        [--modes shared,unbatched,separate,video] [--ns 1,4] [--repeat R]

--ns runs those N (each R times, modes alternating) instead of doubling
until none keeps up. Mode "video" is the same pipeline with `identity` in
place of mustdropvqa: what the sources, converters and sinks cost alone.

Each (N, mode) runs in a child process of its own, modes alternating, so
that the ratios compare runs under the same machine load. A child prints
one JSON object: answer latency (running time of the answer minus the end
of its window) p50/p95, windows answered, missed (answered after the next
window closed) and dropped (max-pending), the worst video lateness at the
sinks, CPU seconds while streaming, RSS now and peak (/proc/self/status),
the load average. Raw lines go to OUTDIR/raw.jsonl, a table to
OUTDIR/summary.txt.
"""
import json
import os
import subprocess
import sys
import time

WINDOW_S = 4.0
LATE_VIDEO_S = 0.5      # a sink buffer this late means the video is held back (the
                        # machine is shared: scheduling alone reaches 0.2 s at load 14)


def child(n, mode, seconds):
    import gi
    gi.require_version("Gst", "1.0")
    from gi.repository import Gst, GLib
    Gst.init(None)
    branches = []
    for i in range(n):
        name = {"separate": f" engine-name=e{i}", "unbatched": " max-batch=1"}.get(mode, "")
        element = (f"identity name=v{i}" if mode == "video" else
                   f"mustdropvqa name=v{i} window={WINDOW_S:g} sample-fps=2 stats=true{name}")
        branches.append(
            f"videotestsrc is-live=true pattern={i % 20} "
            "! video/x-raw,width=320,height=240,framerate=30/1 "
            f"! {element} ! fakesink name=s{i} sync=true signal-handoffs=true")
    pipe = Gst.parse_launch(" ".join(branches))
    lat, late, batched = [], [0.0], []
    dropped = {}
    missed = 0

    def now_rt():
        clock = pipe.get_clock()
        return (clock.get_time() - pipe.get_base_time()) / 1e9 if clock else 0.0

    def handoff(sink, buf, pad):
        rt = now_rt()
        # the first second is the pipeline starting, not inference
        if buf.pts != Gst.CLOCK_TIME_NONE and buf.pts >= Gst.SECOND:
            late[0] = max(late[0], rt - buf.pts / 1e9)
    for i in range(n):
        pipe.get_by_name(f"s{i}").connect("handoff", handoff)

    def on_message(bus, m):
        nonlocal missed
        if m.type == Gst.MessageType.ERROR:
            err, dbg = m.parse_error()
            print(json.dumps({"error": err.message}), flush=True)
            loop.quit()
        elif m.type == Gst.MessageType.ELEMENT:
            s = m.get_structure()
            src = m.src.get_name()
            if s.get_name() == "mustdrop-answer":
                ok, end = s.get_uint64("window-end-running-time")
                d = now_rt() - end / 1e9
                lat.append(d)
                missed += d > WINDOW_S
                ok, b = s.get_uint("batched")
                if ok:
                    batched.append(b)
            elif s.get_name() == "mustdrop-stats":
                ok, dr = s.get_uint64("dropped")
                dropped[src] = dr
        return True

    loop = GLib.MainLoop()
    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    pipe.set_state(Gst.State.PAUSED)
    pipe.get_state(Gst.CLOCK_TIME_NONE)
    t0 = os.times()
    pipe.set_state(Gst.State.PLAYING)
    GLib.timeout_add(int(seconds * 1000), loop.quit)
    loop.run()
    t1 = os.times()
    status = open("/proc/self/status").read()
    kib = {k: int(line.split()[1]) for line in status.splitlines()
           for k in ("VmRSS", "VmHWM") if line.startswith(k + ":")}
    pipe.set_state(Gst.State.NULL)
    lat.sort()

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None
    print(json.dumps({
        "n": n, "mode": mode, "seconds": seconds, "answers": len(lat),
        "windows_expected": n * int(seconds / WINDOW_S - 1),
        "missed": missed, "dropped": sum(dropped.values()),
        "batched_max": max(batched) if batched else None,
        "batched_mean": round(sum(batched) / len(batched), 2) if batched else None,
        "p50_s": pct(0.5), "p95_s": pct(0.95), "max_video_late_s": round(late[0], 3),
        "cpu_s": round((t1.user - t0.user) + (t1.system - t0.system), 2),
        "rss_kib": kib.get("VmRSS"), "peak_rss_kib": kib.get("VmHWM"),
        "loadavg": os.getloadavg()}), flush=True)


def keeps_up(r):
    return ("error" not in r and r["missed"] == 0 and r["dropped"] == 0
            and r["answers"] >= r["windows_expected"] and r["max_video_late_s"] < LATE_VIDEO_S)


def option(args, name, default):
    if name in args:
        i = args.index(name)
        value = args[i + 1]
        del args[i:i + 2]
        return value
    return default


def main():
    args = sys.argv[1:]
    modes = option(args, "--modes", "shared,unbatched,separate").split(",")
    ns = option(args, "--ns", None)
    repeat = int(option(args, "--repeat", "1"))
    build, out = os.path.realpath(args[0]), args[1]
    seconds = float(args[2]) if len(args) > 2 else 20
    max_n = int(args[3]) if len(args) > 3 else 16
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, GST_PLUGIN_PATH=os.path.join(build, "gst"))
    rows = []
    plan = [int(x) for x in ns.split(",")] * repeat if ns else None
    n = plan.pop(0) if plan else 1
    while n <= max_n:
        up = False
        for mode in modes:
            if mode == "separate" and n == 1:
                continue
            p = subprocess.run([sys.executable, __file__, "--child", str(n), mode, str(seconds)],
                               env=env, capture_output=True, text=True)
            line = (p.stdout.strip().splitlines() or ['{"error": "no output"}'])[-1]
            r = json.loads(line)
            r.setdefault("n", n)
            r.setdefault("mode", mode)
            r["keeps_up"] = "error" not in r and mode != "video" and keeps_up(r)
            up |= r["keeps_up"]
            rows.append(r)
            with open(os.path.join(out, "raw.jsonl"), "a") as f:
                f.write(json.dumps(r) + "\n")
            with open(os.path.join(out, "stderr.txt"), "a") as f:
                f.write(f"### n={n} {mode}\n{p.stderr[-4000:]}\n")
            print(json.dumps(r), flush=True)
        if plan is not None:
            if not plan:
                break
            n = plan.pop(0)
            continue
        if not up:
            break
        n *= 2
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write("N  mode      answers/expected missed dropped p50_s p95_s video_late_s "
                "cpu_s rss_MiB peak_MiB batched_mean loadavg1 keeps_up\n")
        for r in rows:
            if "error" in r:
                f.write(f"{r['n']:<2} {r['mode']:<9} error: {r['error']}\n")
                continue
            f.write(f"{r['n']:<2} {r['mode']:<9} {r['answers']:>3}/{r['windows_expected']:<3}"
                    f"            {r['missed']:>3} {r['dropped']:>7} {r['p50_s']} {r['p95_s']} "
                    f"{r['max_video_late_s']} {r['cpu_s']} {r['rss_kib'] / 1024:.0f} "
                    f"{r['peak_rss_kib'] / 1024:.0f} {r.get('batched_mean')} "
                    f"{r['loadavg'][0]:.2f} {r['keeps_up']}\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
    else:
        main()
