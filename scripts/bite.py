#!/usr/bin/env python3
"""Shows that the models bite: breaks the real code on purpose, one bug at a time, and checks
that the check meant to catch that bug fails. The mutations are data, in
`scripts/mutations.toml`; the source is restored after each run.

    python3 scripts/bite.py            # every mutation
    python3 scripts/bite.py fifo-lifo  # just these
    python3 scripts/bite.py --check    # only that every mutation still applies (CI)

Each mutation is an exact text replacement that must match exactly once, so a mutation that no
longer applies (the code moved on) is reported as an error rather than silently skipped.
The table printed at the end is the one in docs/verification.md.
"""

import os
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


def load():
    """The mutations, checked for the fields every one needs."""
    with open(MUTATIONS_FILE, "rb") as f:
        mutations = tomllib.load(f)["mutation"]
    names = set()
    for m in mutations:
        missing = {"name", "bug", "file", "check", "original", "broken"} - m.keys()
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


def command(check):
    """The cargo command of a check, and its environment."""
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
    if "name" in check:
        cmd += ["--", "--exact", check["name"]]
    return cmd, env


def check_name(check):
    return check.get("name", check.get("test"))


def run(m):
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
    elapsed = time.monotonic() - start
    if out.returncode == 0:
        verdict = "SURVIVED (the check did not catch it)"
    elif "error[E" in out.stderr or "could not compile" in out.stderr:
        verdict = "ERROR: the mutation does not compile"
    else:
        lines = out.stdout.splitlines() + out.stderr.splitlines()
        # The panic message is the line after "panicked at"; loom repeats it, take the first.
        msgs = [lines[i + 1] for i, l in enumerate(lines[:-1]) if "panicked at" in l]
        verdict = "caught: " + (msgs[0].strip() if msgs else "failed")
    return verdict[:160], elapsed


def check_anchors(mutations):
    """`--check`: only that every mutation still applies (its original text occurs exactly once),
    without building or running anything. CI runs it, so that a change to the code that moves a
    mutation's text away is seen at once, not at the next full run of this script."""
    stale = [(m["name"], m["file"], (ROOT / m["file"]).read_text().count(m["original"]))
             for m in mutations]
    stale = [s for s in stale if s[2] != 1]
    for name, path, count in stale:
        print(f"stale mutation {name}: its original text occurs {count} times in {path}",
              file=sys.stderr)
    if stale:
        sys.exit(1)
    print(f"all {len(mutations)} mutations apply")


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
