#!/usr/bin/env bash
# Runs a test program that loads the plugin at $GST_PLUGIN_PATH (a Python
# test, or one that starts gst-launch-1.0): with a registry of its own, and,
# for an ASan build, the sanitizer runtime preloaded (launch-env.sh), which
# the processes it starts inherit.
set -euo pipefail
: "${GST_PLUGIN_PATH:?GST_PLUGIN_PATH must point at the folder of libgstmustdrop.so}"
export GST_PLUGIN_PATH
plugin="$GST_PLUGIN_PATH/libgstmustdrop.so"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export GST_REGISTRY="$tmp/registry.bin"
# shellcheck source=tests/gst/launch-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/launch-env.sh"   # run_env
"${run_env[@]}" "$@"
