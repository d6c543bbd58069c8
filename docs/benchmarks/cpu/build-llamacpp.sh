#!/usr/bin/env bash
# Builds llama.cpp for the CPU from pip's source distribution of
# llama-cpp-python (its vendored vendor/llama.cpp), into an ignored folder,
# and prints the folder holding llama-bench and llama-quantize. A previous
# build in that folder is reused (cmake only rebuilds what changed).
#
#   docs/benchmarks/cpu/build-llamacpp.sh [DIR]     (default: build-llamacpp/ at the repo root)
#
# Network is needed once, to download the sdist from PyPI; it is kept in DIR/sdist.
set -euo pipefail
version=0.3.36
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
dir=$(mkdir -p "${1:-$root/build-llamacpp}" && cd "${1:-$root/build-llamacpp}" && pwd)
tarball=$dir/sdist/llama_cpp_python-$version.tar.gz
src=$dir/llama_cpp_python-$version/vendor/llama.cpp
bin=$dir/build/bin

if [ ! -f "$tarball" ]; then
    # The sdist file itself, checked against PyPI's SHA-256 (pip download
    # would build the package's build dependencies from source just to read
    # its metadata).
    mkdir -p "$dir/sdist"
    /usr/bin/python3 - "$version" "$tarball" >&2 <<'PY'
import hashlib, json, sys, urllib.request
version, dest = sys.argv[1], sys.argv[2]
name = f"llama_cpp_python-{version}.tar.gz"
index = urllib.request.Request("https://pypi.org/simple/llama-cpp-python/",
                               headers={"Accept": "application/vnd.pypi.simple.v1+json"})
(sdist,) = [f for f in json.load(urllib.request.urlopen(index))["files"] if f["filename"] == name]
data = urllib.request.urlopen(sdist["url"]).read()
if hashlib.sha256(data).hexdigest() != sdist["hashes"]["sha256"]:
    sys.exit(f"{name}: SHA-256 does not match PyPI's")
open(dest + ".part", "wb").write(data)
PY
    mv "$tarball.part" "$tarball"
fi
[ -d "$src" ] || tar -xzf "$tarball" -C "$dir"
# OpenMP on: it is llama.cpp's default CPU threading, so the comparison is
# against llama.cpp as users build it.
if [ ! -f "$dir/build/CMakeCache.txt" ]; then
    cmake -S "$src" -B "$dir/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DGGML_CUDA=OFF \
        -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
fi
targets=(llama-bench llama-quantize)
[ "${WITH_MTMD:-0}" = 1 ] && targets+=(llama-mtmd-cli)
cmake --build "$dir/build" --target "${targets[@]}" >&2
echo "$bin"
