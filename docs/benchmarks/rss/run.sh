#!/usr/bin/env bash
# Peak RSS of a process that loads the mustdrop plugin (docs/benchmarks.md,
# "Memory of loading the plugin"): gst-inspect-1.0 with a fresh registry (the
# plugin scan) and a warm one, a CPU pipeline, the same pipeline with the
# default device=auto, and a pipeline without the element; plus the size of
# the plugin and of the CUDA libraries it maps.
#   docs/benchmarks/rss/run.sh BUILD LABEL OUTDIR [RUNS]    (from the repository root)
# BUILD is a meson build directory with the plugin (gst/libgstmustdrop.so);
# each case runs RUNS times (3) under /usr/bin/time -v, whose raw outputs go
# to OUTDIR/LABEL-CASE.txt; OUTDIR/LABEL-summary.txt has the medians in KiB.
set -u
BUILD=$(realpath "$1") LABEL=$2 OUT=$3 RUNS=${4:-3}
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
plugin=$BUILD/gst/libgstmustdrop.so
[ -f "$plugin" ] || { echo "no plugin in $BUILD/gst"; exit 1; }
pipeline_cpu="videotestsrc num-buffers=30 ! video/x-raw,width=320,height=240 ! mustdropvqa device=cpu window=1 ! fakesink"
pipeline_auto="videotestsrc num-buffers=30 ! video/x-raw,width=320,height=240 ! mustdropvqa window=1 ! fakesink"
pipeline_none="videotestsrc num-buffers=30 ! fakesink"

# case name, registry ("fresh": a new file each run, else a warm one), command...
measure() {
    local name=$1 reg=$2; shift 2
    local raw=$OUT/$LABEL-$name.txt
    : > "$raw"
    for i in $(seq "$RUNS"); do
        local r=$tmp/warm.bin
        [ "$reg" = fresh ] && r=$tmp/fresh-$name-$i.bin
        echo "### run $i: GST_REGISTRY=$reg $*" >> "$raw"
        env GST_REGISTRY="$r" /usr/bin/time -v "$@" > "$tmp/stdout" 2>> "$raw"
        echo "### exit $?, stdout lines $(wc -l < "$tmp/stdout")" >> "$raw"
    done
    local kib
    kib=$(grep "Maximum resident set size" "$raw" | awk '{ print $NF }' | sort -n |
          awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    printf '%-22s %8s KiB  (%s)\n' "$name" "$kib" \
        "$(grep "Maximum resident set size" "$raw" | awk '{ print $NF }' | paste -sd/)" >> "$OUT/$LABEL-summary.txt"
}

{ echo "label: $LABEL"; echo "build: $BUILD"
  echo "source: $(git -C "$(dirname "$BUILD")" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")"
  date -u; lscpu | grep -E "^Model name|^CPU\(s\)"; grep MemTotal /proc/meminfo; uptime
  gst-inspect-1.0 --version | sed -n 2p
  echo "runs per case: $RUNS (median, then every run)"; } > "$OUT/$LABEL-summary.txt"

# The scan: a new registry, so every plugin (ours included) is loaded, by the
# gst-plugin-scanner child (default) or in the process (GST_REGISTRY_FORK=no).
export GST_PLUGIN_PATH=$BUILD/gst
measure inspect-scan fresh gst-inspect-1.0 mustdropvqa
GST_REGISTRY_FORK=no measure inspect-scan-nofork fresh gst-inspect-1.0 mustdropvqa
# Warm registry: gst-inspect loads only our plugin.
GST_REGISTRY=$tmp/warm.bin gst-inspect-1.0 mustdropvqa > /dev/null 2>&1
measure inspect warm gst-inspect-1.0 mustdropvqa
measure pipeline-cpu warm gst-launch-1.0 -q $pipeline_cpu
measure pipeline-auto warm gst-launch-1.0 -q $pipeline_auto
measure pipeline-none warm gst-launch-1.0 -q $pipeline_none
unset GST_PLUGIN_PATH
measure inspect-scan-noplugin fresh gst-inspect-1.0 fakesink

# Sizes: the plugin, and the CUDA libraries the dynamic loader maps with it.
{ echo "plugin: $(stat -c %s "$plugin") bytes $plugin"
  cuda_libs=$(ldd "$plugin" | awk '/lib(cuda|cudart|cublas|cublasLt)[.-]/ { print $3 }')
  total=0
  for l in $cuda_libs; do s=$(stat -L -c %s "$l"); total=$((total + s)); echo "  maps $l: $s bytes"; done
  echo "CUDA libraries mapped by loading the plugin: $total bytes"
  m=$BUILD/cuda/libmustdrop-cuda.so
  [ -f "$m" ] && echo "module (loaded only for CUDA): $(stat -c %s "$m") bytes $m"
} >> "$OUT/$LABEL-summary.txt"
cat "$OUT/$LABEL-summary.txt"
