#!/usr/bin/env bash
# The public boundary as a user meets it: `meson install` into a staging
# directory (DESTDIR, so nothing is written outside the build's temp dir),
# then, against the staged files only:
#   - every file a user needs is there (library, headers, mustdrop.pc,
#     programs, plugin, CUDA module when built, the bundled model);
#   - the installed headers include nothing that is not installed beside
#     them, and each compiles on its own as C11 and as C++ (extern "C": a C++
#     program calling the library links);
#   - docs/examples/ask.c builds with `pkg-config --cflags --libs mustdrop`
#     exactly as docs/api.md says, and answers "Which shape enters last?"
#     about pipelines/shapes.webm with "star" (what the element answers over
#     the whole clip with md_vqa's defaults), using the installed model.
# Usage: test_install.sh MESON BUILD_ROOT SOURCE_ROOT 'CC...' PREFIX BINDIR LIBDIR
#                        INCLUDEDIR DATADIR PLUGIN(0/1) CUDA(0/1) FFMPEG(0/1)
# (directories absolute, as configured). pkg-config reads the staged .pc
# through PKG_CONFIG_SYSROOT_DIR, the standard way to use a DESTDIR install.
set -u
meson=$1 build=$2 src=$3 prefix=$5 bindir=$6 libdir=$7 includedir=$8 datadir=$9
plugin=${10} cuda=${11} ffmpeg=${12}
read -ra cc <<<"$4"   # the build's C compiler command, e.g. "ccache gcc"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
stage=$tmp/stage

if ! "$meson" install -C "$build" --no-rebuild --quiet --destdir "$stage" >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log"
    echo "FAIL: meson install --destdir"
    exit 1
fi
echo "installed under $stage$prefix:"
(cd "$stage" && find . -type f -o -type l | sed 's|^\.||' | sort)

# --- the files ---------------------------------------------------------------
headers=(mustdrop.h mustdrop-tokenizer.h mustdrop-vision.h mustdrop-reduce.h mustdrop-vqa.h)
want=("$libdir/libmustdrop.a" "$libdir/pkgconfig/mustdrop.pc"
      "$bindir/mustdrop" "$bindir/mustdrop-bench"
      "$datadir/mustdrop/models/synthvqa-llm-f16.gguf"
      "$datadir/mustdrop/models/synthvqa-mmproj-f16.gguf")
for h in "${headers[@]}"; do want+=("$includedir/mustdrop/$h"); done
[ "$ffmpeg" = 1 ] && want+=("$bindir/mustdrop-eval")
[ "$plugin" = 1 ] && want+=("$libdir/gstreamer-1.0/libgstmustdrop.so")
[ "$cuda" = 1 ] && want+=("$libdir/mustdrop/libmustdrop-cuda.so")
for f in "${want[@]}"; do
    [ -f "$stage$f" ] || fail "not installed: $f"
done
# exactly the public headers: an internal one installed by mistake is caught too
got=$(cd "$stage$includedir/mustdrop" 2>/dev/null && ls | sort | tr '\n' ' ')
exp=$(printf '%s\n' "${headers[@]}" | sort | tr '\n' ' ')
[ "$got" = "$exp" ] || fail "installed headers: '$got', expected '$exp'"
# no shared libmustdrop: -lmustdrop must mean the archive (docs/api.md)
ls "$stage$libdir"/libmustdrop.so* >/dev/null 2>&1 && fail "a shared libmustdrop was installed"

# --- the headers -------------------------------------------------------------
inc=$stage$includedir
for h in "$inc"/mustdrop/*.h; do
    name=${h##*/}
    # quoted includes: only the installed headers beside it; angle ones: only
    # the C standard headers the API uses (anything else a user would need
    # installed, and pkg-config would have to name)
    while read -r q; do
        [ -f "$inc/mustdrop/$q" ] || fail "$name includes \"$q\", which is not installed"
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$h")
    while read -r a; do
        case $a in stddef.h|stdint.h|stdbool.h) ;;
            *) fail "$name includes <$a>, not a C standard header the API allows" ;; esac
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*<\([^>]*\)>.*/\1/p' "$h")
    grep -q 'extern "C"' "$h" || fail "$name has no extern \"C\" block"
    printf '#include <mustdrop/%s>\n' "$name" >"$tmp/one.c"
    "${cc[@]}" -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$inc" "$tmp/one.c" \
        2>"$tmp/cc.err" || fail "<mustdrop/$name> alone does not compile as C11: $(head -c 600 "$tmp/cc.err")"
    cp "$tmp/one.c" "$tmp/one.cpp"
    c++ -std=c++11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I"$inc" "$tmp/one.cpp" \
        2>"$tmp/cxx.err" || fail "<mustdrop/$name> does not compile as C++: $(head -c 600 "$tmp/cxx.err")"
done

# --- pkg-config ----------------------------------------------------------------
export PKG_CONFIG_SYSROOT_DIR=$stage PKG_CONFIG_PATH=$stage$libdir/pkgconfig
if ! flags=$(pkg-config --cflags --libs mustdrop 2>"$tmp/pc.err"); then
    fail "pkg-config --cflags --libs mustdrop: $(cat "$tmp/pc.err")"
    flags=""
fi
echo "pkg-config --cflags --libs mustdrop: $flags"
[ "$(pkg-config --modversion mustdrop 2>/dev/null)" = "$(sed -n "s/^#define MD_VERSION_STRING \"\(.*\)\"/\1/p" "$inc/mustdrop/mustdrop.h")" ] ||
    fail "mustdrop.pc's version is not MD_VERSION_STRING"

# C++ linking the library through the installed headers: without extern "C"
# the names would be mangled and the link would fail.
cat >"$tmp/cxx.cpp" <<'EOF'
#include <mustdrop/mustdrop-vqa.h>
#include <cstdio>
int main()
{
    struct md_vqa_params p = md_vqa_default_params();
    std::printf("%s %s %d\n", md_version(), md_status_str(MD_ERR_IO), p.max_frames);
    return 0;
}
EOF
# shellcheck disable=SC2086  # pkg-config's output is a list of words
if c++ -std=c++11 -Wall -Wextra -Werror "$tmp/cxx.cpp" $flags -o "$tmp/cxx" 2>"$tmp/cxx.err"; then
    out=$("$tmp/cxx")
    case $out in "$(pkg-config --modversion mustdrop) "*" 8") ;;
        *) fail "the C++ program printed '$out'" ;; esac
else
    fail "a C++ program does not link against libmustdrop: $(head -c 800 "$tmp/cxx.err")"
fi

# --- docs/examples/ask.c, built as docs/api.md says ---------------------------
# shellcheck disable=SC2086
if ! "${cc[@]}" -std=c11 -Wall -Wextra -Wpedantic -Werror "$src/docs/examples/ask.c" $flags \
        -o "$tmp/ask" 2>"$tmp/ask.err"; then
    fail "docs/examples/ask.c does not build: $(head -c 800 "$tmp/ask.err")"
else
    models=$stage$datadir/mustdrop/models
    # the staged model and CUDA module, not the ones the library's configured
    # prefix or the source tree would give (the prefix is not installed to)
    ffmpeg -v error -i "$src/pipelines/shapes.webm" -f rawvideo -pix_fmt rgb24 - |
        MUSTDROP_MODEL_DIR=$models MUSTDROP_BACKEND_DIR=$stage$libdir/mustdrop \
        "$tmp/ask" 128 128 8 "Which shape enters last?" >"$tmp/ask.out" 2>"$tmp/ask.log"
    rc=${PIPESTATUS[1]}
    cat "$tmp/ask.log"
    answer=$(cat "$tmp/ask.out")
    echo "ask: Which shape enters last? -> '$answer'"
    [ "$rc" = 0 ] || fail "ask exited $rc"
    [ "$answer" = star ] || fail "ask answered '$answer', expected 'star'"
    grep -qF "model $models/synthvqa-llm-f16.gguf " "$tmp/ask.log" ||
        fail "ask did not use the installed model in $models"
    grep -q '8 frames, 0.0-7.0 s' "$tmp/ask.log" || fail "ask did not answer over 8 frames 0-7 s"
fi

# --- the installed programs and plugin run from where they were installed ---
"$stage$bindir/mustdrop" --version >"$tmp/v" 2>&1 && grep -q '^mustdrop ' "$tmp/v" ||
    fail "installed mustdrop --version: $(cat "$tmp/v")"
if [ "$plugin" = 1 ]; then
    GST_REGISTRY=$tmp/registry.bin gst-inspect-1.0 "$stage$libdir/gstreamer-1.0/libgstmustdrop.so" \
        >"$tmp/inspect" 2>&1 && grep -q mustdropvqa "$tmp/inspect" ||
        fail "gst-inspect-1.0 of the installed plugin: $(head -c 600 "$tmp/inspect")"
fi

if [ "$fails" -gt 0 ]; then
    echo "$fails failure(s)"
    exit 1
fi
echo "install: all checks passed"
