#!/usr/bin/env bash
# Run the whole test suite twice: an optimized build and an ASan+UBSan build.
# Prints one closing line "tests: N passed, N failed, N skipped" (skips are
# never counted as passes) and exits non-zero if any test failed.
#   MD_SKIP_ASAN=1 tests/run-all.sh   # release build only (quicker, local use)
#   MD_ONLY_GPU_SKIPS=1 (set by .ci/run): a skip for any reason but a missing
#   CUDA device counts as a failure (on CI everything else is installed).
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
status=0
# The plugin, FFmpeg and MQTT are optional for a build, not for the suite: a missing
# development package fails the configure step instead of silently dropping
# the tests that need it.
required=(-Dgst=enabled -Dffmpeg=enabled -Dmqtt=enabled)

run_suite() {  # name, meson options...
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { mkdir -p "$dir"; cat "$dir.setup.log"; return 1; }
    fi
    ninja -C "$dir" || return 1
    meson test -C "$dir" --num-processes "$jobs" --print-errorlogs || return 1
}

run_suite build-test "${required[@]}" || status=1
if [ "${MD_SKIP_ASAN:-0}" != 1 ]; then
    run_suite build-asan "${required[@]}" -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized || status=1
fi

"${MD_PYTHON:-/usr/bin/python3}" - build-test build-asan <<'PY' || status=1
import json, os, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0, "EXPECTEDFAIL": 0, "UNEXPECTEDPASS": 0, "TIMEOUT": 0, "ERROR": 0}
seen = False
for d in sys.argv[1:]:
    p = os.path.join(d, "meson-logs", "testlog.json")
    if not os.path.exists(p):
        continue
    for line in open(p):
        r = json.loads(line)
        counts[r["result"]] = counts.get(r["result"], 0) + 1
        seen = True
        if r["result"] != "SKIP":
            continue
        out = (r.get("stdout") or "").strip().splitlines()
        why = out[-1] if out else ""
        print(f"SKIP [{d}] {r['name']}: {why}")
        if os.environ.get("MD_ONLY_GPU_SKIPS") == "1" and not why.startswith("SKIP: no CUDA device"):
            print(f"FAIL [{d}] {r['name']}: skipped, and only a missing GPU may skip here")
            counts["FAIL"] += 1
passed = counts["OK"] + counts["EXPECTEDFAIL"]
failed = counts["FAIL"] + counts["TIMEOUT"] + counts["ERROR"] + counts["UNEXPECTEDPASS"]
print(f"tests: {passed} passed, {failed} failed, {counts['SKIP']} skipped")
sys.exit(1 if failed or not seen else 0)
PY
exit $status
