# shellcheck shell=bash
# Sourced by the gst-launch-1.0 tests: sets run_env, the command prefix that
# lets gst-launch-1.0 load the plugin at $plugin.
# A plugin built with ASan (+UBSan) can only be loaded by gst-launch-1.0 when
# the sanitizer runtime comes first: preload the one the plugin links to.
run_env=()
asan_lib="$(ldd "$plugin" 2>/dev/null | awk '/libasan\.so/ { print $3; exit }')"
if [ -n "$asan_lib" ]; then
  # gst-launch-1.0 itself is not built for leak checking: keep ASan's error
  # checks in the plugin, drop the exit-time leak report of the whole process.
  # libstdc++ is preloaded too: plugins that rtspsrc/decodebin load pull it in
  # later, and ASan's __cxa_throw interceptor must find it at start-up.
  preload="$asan_lib"
  cxx_lib="$(dirname "$asan_lib")/libstdc++.so.6"
  [ -e "$cxx_lib" ] && preload="$preload $cxx_lib"
  run_env=(env "LD_PRELOAD=$preload" "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1")
fi
