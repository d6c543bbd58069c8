#!/usr/bin/env bash
# The programs and the plugin must not load CUDA: only the module
# libmustdrop-cuda.so links cudart and cuBLAS (cuda/meson.build), so that a
# GStreamer plugin scan or a CPU run does not map them.
# Usage: test_not_linked.sh FILE...
set -u
command -v ldd >/dev/null || { echo "SKIP: no ldd"; exit 77; }
fails=0
for f in "$@"; do
    libs=$(ldd "$f" 2>&1) || { echo "FAIL: ldd $f: $libs"; fails=$((fails + 1)); continue; }
    bad=$(grep -E 'lib(cuda|cudart|cublas|cublasLt|mustdrop-cuda)[.-]' <<<"$libs")
    if [ -n "$bad" ]; then
        echo "FAIL: $f links CUDA:"; echo "$bad"; fails=$((fails + 1))
    else
        echo "ok: $(basename "$f") links no CUDA library"
    fi
done
[ "$fails" = 0 ] || exit 1
