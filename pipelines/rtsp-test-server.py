#!/usr/bin/python3
"""A local RTSP server for trying pipelines/rtsp.sh without a camera.

Serves videotestsrc (pattern=ball, 320x240, 10 fps) encoded as VP8
(vp8enc + rtpvp8pay, or --codec jpeg: jpegenc + rtpjpegpay) at
rtsp://127.0.0.1:PORT/test. It listens on the loopback address only.

  /usr/bin/python3 pipelines/rtsp-test-server.py [--port N] [--num-buffers N]
                                                 [--codec vp8|jpeg]

--port 0 (the default) takes a free port. When the server listens it prints
one line "rtsp://127.0.0.1:PORT/test" on stdout (flushed), so a script can
read the address. Each client gets its own stream; with --num-buffers N it
ends after N frames (the client sees EOS). Stops on SIGINT/SIGTERM.

Debian 12: python3-gi gir1.2-gst-rtsp-server-1.0 (which pulls
libgstrtspserver-1.0-0), gstreamer1.0-plugins-base/-good.
"""
import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ENCODERS = {
    "vp8": "vp8enc deadline=1 cpu-used=8 target-bitrate=300000 keyframe-max-dist=10 "
           "! rtpvp8pay name=pay0 pt=96",
    "jpeg": "jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0, help="TCP port (0 = any free port)")
    ap.add_argument("--num-buffers", type=int, default=-1,
                    help="frames per client stream, -1 = endless")
    ap.add_argument("--codec", choices=sorted(ENCODERS), default="vp8")
    args = ap.parse_args()

    Gst.init(None)
    for name in ("videotestsrc", "vp8enc" if args.codec == "vp8" else "jpegenc",
                 "rtpvp8pay" if args.codec == "vp8" else "rtpjpegpay"):
        if Gst.ElementFactory.find(name) is None:
            sys.exit("rtsp-test-server: GStreamer element %s not found "
                     "(Debian 12: gstreamer1.0-plugins-base gstreamer1.0-plugins-good)" % name)

    launch = ("( videotestsrc is-live=true pattern=ball num-buffers=%d "
              "! video/x-raw,width=320,height=240,framerate=10/1 ! videoconvert ! %s )"
              % (args.num_buffers, ENCODERS[args.codec]))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory("/test", factory)
    if server.attach(None) == 0:
        sys.exit("rtsp-test-server: cannot listen on 127.0.0.1:%d" % args.port)

    loop = GLib.MainLoop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("rtsp://127.0.0.1:%d/test" % server.get_bound_port(), flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
