#!/usr/bin/python3
"""Everything the tests and pipelines/ use is installed (.ci/install-deps).

A test that needs a missing element, Python module or program would otherwise
skip or fail far from the cause, or pass only on a machine set up by hand.
This check fails, naming what is missing, when after install-deps:
  - a GStreamer element named in pipelines/ or tests/ (gst-launch lines, the
    SOURCE/SINK defaults of the scripts, launch strings and element factory
    calls in C and Python) is not in the registry (our own mustdropvqa is
    left to the element's tests: an ASan-built plugin only loads with the
    sanitizer preloaded);
  - a Python module imported by a test's Python file, a pipelines/ script or
    a models/ script the tests run, is not importable by this interpreter
    (meson runs it with the build's `python`, Debian's /usr/bin/python3), or
    a typelib they require through gi.require_version is missing;
  - a program the tests call is not on PATH.
Usage: check_deps.py SOURCE_ROOT [--no-gst]   (--no-gst: a build without the
plugin, whose GStreamer tests do not exist)
"""
import ast
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OWN_ELEMENTS = {"mustdropvqa"}
# Programs the tests run directly (the rest come from the build).
PROGRAMS = ["gst-launch-1.0", "gst-inspect-1.0", "ffmpeg", "timeout", "pkg-config", "c++"]
# Programs of the plugin's tests that Debian puts in sbin (off a user's PATH):
# the MQTT broker of tests/gst/test_mqtt.py and pipelines/fleet.sh.
SBIN_PROGRAMS = ["mosquitto"]
# Where a missing element usually comes from on Debian 12 (a hint only).
PACKAGE_HINT = {
    "textoverlay": "gstreamer1.0-x", "clockoverlay": "gstreamer1.0-x",
    "ximagesink": "gstreamer1.0-x", "xvimagesink": "gstreamer1.0-x",
}


def shell_launch_descriptions(text):
    """The pipeline descriptions of a shell script: what follows gst-launch-1.0
    (options skipped) up to the end of the command, and the arrays and the
    SOURCE / SINK values and defaults the scripts splice into pipelines."""
    text = text.replace("\\\n", " ")
    out = []
    # gst-launch-1.0 itself, or pipelines/common.sh's wrapper (PATTERN first)
    launch = r"(?:gst-launch-1\.0|gst_launch_filtered\s+\"[^\"]*\")((?:\s+-[-\w]+)*)\s"
    for m in re.finditer(launch, text):
        if in_code(text, m.start()):
            out.append(command_tail(text, m.end()))
    # bash arrays spliced into a pipeline: sink=(videoconvert ! autovideosink)
    for m in re.finditer(r"\b\w+=\(([^)]*!.*?)\)", text):
        out.append(m.group(1))
    for m in re.finditer(r"\b(?:SOURCE|SINK)=\"([^\"]*)\"", text):
        out.append(m.group(1))
    for m in re.finditer(r"\$\{(?:SOURCE|SINK):-([^}]*)\}", text):
        out.append(m.group(1))
    return out


def in_code(text, i):
    """Whether text[i] is shell code: not inside quotes (an echo's message)
    nor in a comment, on its line."""
    start = text.rfind("\n", 0, i) + 1
    quote = None
    for j in range(start, i):
        c = text[j]
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#" and (j == start or text[j - 1].isspace()):
            return False
    return quote is None


def command_tail(text, i):
    """text[i:] up to the first unquoted shell operator or end of line."""
    quote = None
    j = i
    while j < len(text):
        c = text[j]
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c in "|;&<>)\n`" or (c == "2" and text.startswith("2>", j)):
            break
        j += 1
    return text[i:j]


def string_literals(text):
    """C or Python string literals, adjacent ones joined (C splits long
    launch lines over several literals)."""
    lits = re.findall(r'"((?:[^"\\\n]|\\.)*)"((?:\s*"(?:[^"\\\n]|\\.)*")*)', text)
    out = []
    for first, rest in lits:
        out.append(first + "".join(re.findall(r'"((?:[^"\\\n]|\\.)*)"', rest)))
    return out


def elements_of(description):
    """Element names in a gst-launch description: every bare word that is not
    a property (=), caps or a path (/), a pad reference (name.) or a
    variable."""
    try:
        words = shlex.split(description.replace("!", " ! "), posix=True)
    except ValueError:
        words = description.replace("!", " ! ").split()
    names = set()
    for w in words:
        if re.fullmatch(r"[a-z][a-z0-9_-]*", w) and w not in ("!",):
            names.add(w)
    return names


def named_elements(root):
    """{element: [files naming it]} over pipelines/ and tests/."""
    found = {}

    def add(names, path):
        for n in names:
            found.setdefault(n, set()).add(str(path.relative_to(root)))

    files = sorted(list((root / "pipelines").rglob("*")) + list((root / "tests").rglob("*")))
    for path in files:
        if not path.is_file() or "fuzz" in path.parts:
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if path.suffix == ".sh":
            for d in shell_launch_descriptions(text):
                add(elements_of(d), path)
        elif path.suffix in (".c", ".py"):
            for s in string_literals(text) + re.findall(r"'([^'\n]*)'", text):
                if " ! " in s or s.startswith("( "):
                    add(elements_of(s), path)
            calls = r"(?:gst_element_factory_make|ElementFactory\.(?:make|find))\s*\(\s*[\"']([a-z0-9_-]+)[\"']"
            add(re.findall(calls, text), path)
    return found


def registry_elements():
    """Every element factory gst-inspect-1.0 lists (a registry of our own)."""
    with tempfile.TemporaryDirectory() as td:
        env = dict(os.environ, GST_REGISTRY=os.path.join(td, "registry.bin"))
        env.pop("GST_PLUGIN_PATH", None)
        r = subprocess.run(["gst-inspect-1.0"], capture_output=True, text=True, env=env)
    names = set()
    for line in r.stdout.splitlines():
        parts = [p.strip() for p in line.split(":")]
        if len(parts) >= 3 and parts[1]:
            names.add(parts[1])
    return names


def python_files(root):
    """The Python files of the tests and pipelines/, and the models/ scripts
    the tests run: named in a tests/ meson.build, or as a string literal in a
    test's Python (not in a message or a comment)."""
    files = set(root.glob("tests/**/*.py")) | set(root.glob("pipelines/*.py"))
    meson = "".join(p.read_text() for p in (root / "tests").rglob("meson.build"))
    literals = set()
    for p in root.glob("tests/**/*.py"):
        literals |= set(re.findall(r"[\"']([\w.-]+\.py)[\"']", p.read_text()))
    for p in root.glob("models/**/*.py"):
        if p.name in literals or re.search(r"[/'\"]" + re.escape(p.name) + r"'", meson):
            files.add(p)
    return sorted(f for f in files if "fuzz" not in f.parts)


def imports_of(path):
    """Top-level modules a file imports (anywhere in it) and the typelibs it
    asks gi for."""
    tree = ast.parse(path.read_text(), str(path))
    mods, typelibs = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "require_version" and len(node.args) == 2
              and all(isinstance(a, ast.Constant) for a in node.args)):
            typelibs.add((node.args[0].value, node.args[1].value))
    mods.discard("__future__")
    local = {p.stem for p in path.parent.glob("*.py")}
    return mods - local, typelibs


def main():
    root = Path(sys.argv[1]).resolve()
    gst = "--no-gst" not in sys.argv[2:]
    problems = []

    for prog in PROGRAMS:
        if (gst or not prog.startswith("gst-")) and not shutil.which(prog):
            problems.append(f"program {prog} not on PATH")
    for prog in SBIN_PROGRAMS if gst else []:
        if not shutil.which(prog) and not shutil.which(prog, path="/usr/sbin:/sbin"):
            problems.append(f"program {prog} not found (on PATH or in /usr/sbin)")

    named = named_elements(root) if gst else {}
    have = registry_elements() if gst and shutil.which("gst-inspect-1.0") else set()
    checked = sorted(set(named) - OWN_ELEMENTS)
    for e in checked:
        if e not in have:
            hint = PACKAGE_HINT.get(e, "a gstreamer1.0-* package")
            problems.append(f"GStreamer element {e} not found (named in "
                            f"{', '.join(sorted(named[e]))}; Debian 12: {hint})")
    print(f"elements: {len(checked)} named in pipelines/ and tests/: {' '.join(checked)}")

    typelibs_seen = set()
    for f in python_files(root):
        mods, typelibs = imports_of(f)
        for m in sorted(mods):
            if importlib.util.find_spec(m) is None:
                problems.append(f"Python module {m} not importable by {sys.executable} "
                                f"(imported by {f.relative_to(root)}; Debian 12: python3-{m.lower()})")
        typelibs_seen |= typelibs
    for name, version in sorted(typelibs_seen):
        try:
            import gi
            gi.require_version(name, version)
        except (ImportError, ValueError) as e:
            problems.append(f"typelib {name} {version} not available to {sys.executable} ({e})")
    print(f"python: {len(python_files(root))} files checked with {sys.executable}; "
          f"typelibs: {' '.join(n + '-' + v for n, v in sorted(typelibs_seen))}")

    if gst and not checked:
        problems.append("no element found in pipelines/ and tests/: the scan itself is broken")
    for p in problems:
        print("FAIL:", p)
    if problems:
        print("(bash .ci/install-deps installs everything the tests need; "
              "a missing item is a gap in .ci/debian-packages.txt)")
        return 1
    print("ok: every element, module, typelib and program is present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
