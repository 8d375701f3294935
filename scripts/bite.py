#!/usr/bin/env python3
"""Shows that the models bite: breaks the real code on purpose, one bug at a time, and checks
that the check meant to catch that bug fails. The mutations are data, in
`scripts/mutations.toml`; the source is restored after each run.

    python3 scripts/bite.py            # every mutation
    python3 scripts/bite.py fifo-lifo  # just these
    python3 scripts/bite.py --check    # only that every mutation still applies (CI)

A mutation is one of two kinds:

- a named fault point, `point = "<name>"`: the source says `cfg!(bite = "<name>")` where the
  bug goes, and the check runs on a build with `GIL_BITE=<name>` (the crates' build scripts
  turn it into that cfg). Code can move and change around a point without touching this list;
- a text edit, `file`, `original` and `broken`: an exact replacement whose original must match
  exactly once, so a mutation that no longer applies (the code moved on) is reported as an
  error rather than silently skipped.

`--check` also checks that every point named in the source has a mutation and every point
mutation names a point that occurs exactly once in the source. The table printed at the end is
the one in docs/verification.md.
"""

import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTATIONS_FILE = ROOT / "scripts" / "mutations.toml"
LOOM_ENV = {
    "RUSTFLAGS": "--cfg loom",
    "CARGO_TARGET_DIR": str(ROOT / "target" / "loom"),
}
KINDS = ("loom", "test", "unit")
# The crates whose build scripts read GIL_BITE, and so the sources fault points may be in.
POINT_SOURCES = ("gil-core/src", "gil-std/src")
POINT = re.compile(r'cfg!\(bite = "([^"]+)"\)')


def load():
    """The mutations, checked for the fields every one needs."""
    with open(MUTATIONS_FILE, "rb") as f:
        mutations = tomllib.load(f)["mutation"]
    names = set()
    for m in mutations:
        fields = {"point"} if "point" in m else {"file", "original", "broken"}
        missing = ({"name", "bug", "check"} | fields) - m.keys()
        if missing:
            sys.exit(f"{MUTATIONS_FILE}: mutation {m.get('name', '?')} lacks {sorted(missing)}")
        if m["name"] in names:
            sys.exit(f"{MUTATIONS_FILE}: two mutations are named {m['name']}")
        names.add(m["name"])
        check = m["check"]
        if check.get("kind") not in KINDS or "package" not in check:
            sys.exit(f"{MUTATIONS_FILE}: mutation {m['name']}: a check needs a kind in {KINDS} "
                     "and a package")
        if check["kind"] != "unit" and "test" not in check:
            sys.exit(f"{MUTATIONS_FILE}: mutation {m['name']}: a {check['kind']} check needs "
                     "its test target")
    return mutations


def command(check, point=None):
    """The cargo command of a check, and its environment (with the fault point, if any)."""
    cmd = ["cargo", "test", "-q", "-p", check["package"]]
    if check["kind"] == "unit":
        cmd += ["--lib"]
    else:
        cmd += ["--test", check["test"]]
    if check["kind"] == "loom":
        cmd += ["--profile", "loom"]
        env = dict(os.environ, **LOOM_ENV)
    else:
        env = dict(os.environ)
    if point is not None:
        env["GIL_BITE"] = point
    if "name" in check:
        cmd += ["--", "--exact", check["name"]]
    return cmd, env


def check_name(check):
    return check.get("name", check.get("test"))


def points():
    """Each fault point named in the source, with the places it occurs."""
    found = {}
    for base in POINT_SOURCES:
        for path in sorted((ROOT / base).rglob("*.rs")):
            for name in POINT.findall(path.read_text()):
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def run(m):
    if "point" in m:
        places = points().get(m["point"], [])
        if len(places) != 1:
            return f"ERROR: the fault point occurs {len(places)} times", 0.0
        cmd, env = command(m["check"], m["point"])
        start = time.monotonic()
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        return verdict(out), time.monotonic() - start
    file = ROOT / m["file"]
    text = file.read_text()
    count = text.count(m["original"])
    if count != 1:
        return f"ERROR: the original text occurs {count} times", 0.0
    file.write_text(text.replace(m["original"], m["broken"]))
    cmd, env = command(m["check"])
    start = time.monotonic()
    try:
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    finally:
        file.write_text(text)
    return verdict(out), time.monotonic() - start


def verdict(out):
    """What a check's run says of its mutation."""
    if out.returncode == 0:
        said = "SURVIVED (the check did not catch it)"
    elif "error[E" in out.stderr or "could not compile" in out.stderr:
        said = "ERROR: the mutation does not compile"
    else:
        lines = out.stdout.splitlines() + out.stderr.splitlines()
        # The panic message is the line after "panicked at"; loom repeats it, take the first.
        msgs = [lines[i + 1] for i, l in enumerate(lines[:-1]) if "panicked at" in l]
        said = "caught: " + (msgs[0].strip() if msgs else "failed")
    return said[:160]


def check_anchors(mutations):
    """`--check`: only that every mutation still applies (its original text, or its fault point,
    occurs exactly once, and every point in the source has a mutation), without building or
    running anything. CI runs it, so that a change to the code that moves a mutation's text or
    point away is seen at once, not at the next full run of this script."""
    found = points()
    problems = []
    for m in mutations:
        if "point" in m:
            count = len(found.get(m["point"], []))
            if count != 1:
                problems.append(f"stale mutation {m['name']}: its fault point occurs {count} "
                                "times in the source")
        else:
            count = (ROOT / m["file"]).read_text().count(m["original"])
            if count != 1:
                problems.append(f"stale mutation {m['name']}: its original text occurs {count} "
                                f"times in {m['file']}")
    named = {m["point"] for m in mutations if "point" in m}
    for name, places in sorted(found.items()):
        if name not in named:
            problems.append(f"fault point {name} ({', '.join(places)}) has no mutation")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"all {len(mutations)} mutations apply ({len(named)} fault points)")


def main():
    mutations = load()
    if sys.argv[1:] == ["--check"]:
        return check_anchors(mutations)
    wanted = set(sys.argv[1:])
    unknown = wanted - {m["name"] for m in mutations}
    if unknown:
        sys.exit(f"no such mutation: {', '.join(sorted(unknown))}")
    rows = [(m, *run(m)) for m in mutations if not wanted or m["name"] in wanted]
    bad = 0
    print("| mutation | the bug | check | result | seconds |")
    print("|---|---|---|---|---|")
    for m, verdict, secs in rows:
        bad += not verdict.startswith("caught")
        print(f"| `{m['name']}` | {m['bug']} | `{check_name(m['check'])}` | {verdict} | {secs:.0f} |")
    if bad:
        print(f"{bad} mutation(s) not caught", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
