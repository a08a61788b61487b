#!/usr/bin/env python3
"""The mutation round (issue 18): applies each mutant of tests/mutation/mutants.txt, one at a time, to a SCRATCH
copy of the repository (never to the checkout it is run from), rebuilds incrementally, runs the tests the mutant
names, reverts it, and prints killed / survived / build-failed per mutant and the kill rate over the
non-equivalent mutants.

    python3 tests/mutation/run.py                   # every mutant (about 10 minutes on 2 cores, 5 more for the first builds)
    python3 tests/mutation/run.py --only run-merge-touching,lm-dof
    python3 tests/mutation/run.py --list            # the mutants, checked against the sources, nothing run

The scratch copy (default /tmp/dualbragg-mutation/tree) is the checkout's working tree as git sees it (tracked and
untracked files that are not ignored: what would be committed), synchronised at each start; it keeps two build
folders configured once: build (static, the C tests: -DDUALBRAGG_CUDA=OFF -DDUALBRAGG_PLANTED_TEST=OFF
-DDUALBRAGG_AVX2=OFF -DDUALBRAGG_ENGINE_OPT=-O1) and build-shared (BUILD_SHARED_LIBS=ON, libraries only), which
the Python tests load through DUALBRAGG_LIBDIR with PYTHONPATH=<scratch>/python (no pip install). --tests-at REV
runs the same mutants against the tests as they were at an earlier revision (the 'before' of a round);
--cleanup removes the scratch folder.

A mutant is killed when one of its tests fails (or runs past --timeout); it survives when all pass; build-failed
when the mutated tree does not compile (such mutants are left out of the rate). Before any mutant, every test
named in the selection runs once on the unmutated copy: a test that fails there kills nothing, and the round
stops. Exit status: 0 when the kill rate reaches --goal (default 0.9), 1 when not, 2 on a setup error.

Mutant file format (tests/mutation/mutants.txt): blocks separated by blank lines; '#' starts a comment line.
    [id]
    file: src/run.c                   the file, relative to the repository root
    find: text                        exact text occurring exactly once in the file
    find+: text                       (optional) the text goes on, on a new line (so does replace+:)
    replace: text                     what it becomes
    desc: what the bug is
    tests: ctest:REGEX pytest:tests/python/test_bindings.py ...   ctest -R regexes (static build) and pytest paths
    equivalent: why no test can tell it from the real code (optional: the mutant is then left out of the rate)
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CMAKE_FLAGS = ["-DDUALBRAGG_CUDA=OFF", "-DDUALBRAGG_PLANTED_TEST=OFF", "-DDUALBRAGG_AVX2=OFF",
               "-DDUALBRAGG_ENGINE_OPT=-O1"]
LIB_TARGETS = ["dualbragg", "dualbragg_refine", "dualbragg_gradcheck"]


def parse_mutants(path):
    mutants, cur = [], None
    with open(path) as f:
        for no, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if line.startswith("#"):
                continue
            if not line.strip():
                cur = None
                continue
            m = re.match(r"^\[([A-Za-z0-9_.-]+)\]\s*$", line)
            if m:
                cur = {"id": m.group(1), "line": no}
                mutants.append(cur)
                continue
            m = re.match(r"^(file|find|replace|desc|tests|equivalent|find\+|replace\+): ?(.*)$", line)
            if not m or cur is None:
                sys.exit("%s:%d: expected '[id]' or 'key: value', got: %s" % (path, no, line))
            key = m.group(1)
            if key.endswith("+"):  # a continuation: the text goes on, on the next line
                if key[:-1] not in cur:
                    sys.exit("%s:%d: '%s:' before '%s:'" % (path, no, key, key[:-1]))
                cur[key[:-1]] += "\n" + m.group(2)
            else:
                cur[key] = m.group(2)
    for mu in mutants:
        for k in ("file", "find", "replace", "desc", "tests"):
            if k not in mu:
                sys.exit("%s:%d: mutant %s has no '%s:'" % (path, mu["line"], mu["id"], k))
        if mu["find"] == mu["replace"]:
            sys.exit("%s:%d: mutant %s changes nothing" % (path, mu["line"], mu["id"]))
        mu["tests"] = mu["tests"].split()
        for t in mu["tests"]:
            if not (t.startswith("ctest:") or t.startswith("pytest:")):
                sys.exit("%s:%d: mutant %s: test '%s' is neither ctest:REGEX nor pytest:PATH" % (path, mu["line"], mu["id"], t))
    ids = [m["id"] for m in mutants]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        sys.exit("%s: mutant ids used twice: %s" % (path, ", ".join(sorted(dup))))
    return mutants


def sh(cmd, cwd=None, env=None, timeout=None, log=None):
    """Runs cmd; returns (rc, output); rc 124 when it ran past timeout."""
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                           start_new_session=True)
        out = p.stdout.decode("utf-8", "replace")
        rc = p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace") + "\n[timed out after %ss]" % timeout
        rc = 124
    if log:
        with open(log, "a") as f:
            f.write("$ %s\n%s\n[rc %d]\n" % (" ".join(cmd), out, rc))
    return rc, out


def source_files():
    out = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "-co", "--exclude-standard"], check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    return [p for p in out.split("\0") if p and os.path.isfile(os.path.join(REPO, p))]


def sync_tree(tree):
    """The working tree's files into tree, copying only what differs (so the build there stays incremental)."""
    copied = 0
    for rel in source_files():
        src, dst = os.path.join(REPO, rel), os.path.join(tree, rel)
        with open(src, "rb") as f:
            data = f.read()
        if os.path.exists(dst):
            with open(dst, "rb") as f:
                if f.read() == data:
                    continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(data)
        shutil.copymode(src, dst)
        copied += 1
    return copied


def overlay_tests(tree, rev, mutants):
    """tests/ (less tests/mutation/) as at rev in the scratch copy; pytest tokens naming files rev lacks -> tests/python."""
    at = subprocess.run(["git", "-C", REPO, "ls-tree", "-r", "--name-only", rev, "--", "tests"], check=True,
                        stdout=subprocess.PIPE).stdout.decode().split()
    at = [p for p in at if not p.startswith("tests/mutation/")]
    changed = 0
    for rel in source_files():
        if rel.startswith("tests/") and not rel.startswith("tests/mutation/") and rel not in at:
            os.remove(os.path.join(tree, rel))
            changed += 1
    for rel in at:
        data = subprocess.run(["git", "-C", REPO, "show", "%s:%s" % (rev, rel)], check=True, stdout=subprocess.PIPE).stdout
        dst = os.path.join(tree, rel)
        if os.path.exists(dst) and open(dst, "rb").read() == data:
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as f:
            f.write(data)
        changed += 1
    for m in mutants:
        m["tests"] = sorted({("pytest:tests/python" if t.startswith("pytest:") and t[7:].split("::")[0] not in at else t)
                             for t in m["tests"]})
    print("tests/ as at %s: %d files replaced or removed" % (rev, changed), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mutants", default=os.path.join(HERE, "mutants.txt"))
    ap.add_argument("--scratch", default=os.environ.get("DB_MUTATION_SCRATCH", "/tmp/dualbragg-mutation"))
    ap.add_argument("--only", help="comma-separated mutant ids (or prefixes ending in *)")
    ap.add_argument("--list", action="store_true", help="check and list the mutants, run nothing")
    ap.add_argument("--cleanup", action="store_true", help="remove the scratch folder and exit")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per test command (default 300)")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="build jobs (default 2)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the tests")
    ap.add_argument("--python", default=os.environ.get("DB_MUTATION_PYTHON") or
                    ("/tmp/dbvenv/bin/python" if os.path.exists("/tmp/dbvenv/bin/python") else sys.executable),
                    help="the Python with numpy, scipy and pytest (default /tmp/dbvenv/bin/python when present)")
    ap.add_argument("--goal", type=float, default=0.9)
    ap.add_argument("--pytest-args", default="", help="more pytest arguments, one string (e.g. \"-k 'not cli'\": tests "
                    "that run the installed programs need `pip install .`)")
    ap.add_argument("--tests-at", metavar="REV",
                    help="the tests as they were at git revision REV (every file under tests/ but tests/mutation/ from "
                         "REV, those REV lacks removed; a pytest file REV lacks becomes tests/python): the same mutants "
                         "against the earlier tests (the 'before' column); its own scratch folder (<scratch>-REV)")
    a = ap.parse_args()

    scratch = os.path.abspath(a.scratch)
    if a.tests_at:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", a.tests_at], stdout=subprocess.PIPE,
                             check=True).stdout.decode().strip()
        scratch += "-" + rev
    tree, build, shared = os.path.join(scratch, "tree"), os.path.join(scratch, "build"), os.path.join(scratch, "build-shared")
    if os.path.commonpath([scratch, REPO]) == REPO:
        sys.exit("the scratch folder %s lies inside the checkout %s" % (scratch, REPO))
    if a.cleanup:
        shutil.rmtree(scratch, ignore_errors=True)
        print("removed %s" % scratch)
        return 0

    mutants = parse_mutants(a.mutants)
    if a.only:
        want = [w.strip() for w in a.only.split(",") if w.strip()]
        mutants = [m for m in mutants if any(m["id"] == w or (w.endswith("*") and m["id"].startswith(w[:-1])) for w in want)]
        if not mutants:
            sys.exit("no mutant matches --only %s" % a.only)

    # every mutant's text must be found exactly once in the checkout's file
    bad = 0
    for m in mutants:
        path = os.path.join(REPO, m["file"])
        text = open(path).read() if os.path.exists(path) else None
        n = text.count(m["find"]) if text is not None else -1
        if n != 1:
            print("BAD %-28s %s: the find text occurs %s times" % (m["id"], m["file"], n if n >= 0 else "(no file)"))
            bad += 1
    if a.list:
        for m in mutants:
            print("%-28s %-28s %s%s" % (m["id"], m["file"], m["desc"], "  [equivalent]" if "equivalent" in m else ""))
        print("%d mutants, %d equivalent, %d whose text is not found once" % (len(mutants),
              sum("equivalent" in m for m in mutants), bad))
        return 2 if bad else 0
    if bad:
        return 2

    os.makedirs(scratch, exist_ok=True)
    log = os.path.join(scratch, "mutation.log")
    open(log, "w").close()
    t_start = time.time()
    os.makedirs(tree, exist_ok=True)
    print("scratch copy %s: %d files updated from %s" % (tree, sync_tree(tree), REPO), flush=True)
    if a.tests_at:
        overlay_tests(tree, a.tests_at, mutants)

    need_py = any(t.startswith("pytest:") for m in mutants for t in m["tests"])
    need_c = any(t.startswith("ctest:") for m in mutants for t in m["tests"])

    def configure():
        if need_c and not os.path.exists(os.path.join(build, "CMakeCache.txt")):
            rc, out = sh(["cmake", "-S", tree, "-B", build] + CMAKE_FLAGS, log=log)
            if rc:
                sys.exit("configure failed (see %s)" % log)
        if need_py and not os.path.exists(os.path.join(shared, "CMakeCache.txt")):
            rc, out = sh(["cmake", "-S", tree, "-B", shared, "-DBUILD_SHARED_LIBS=ON", "-DBUILD_TESTING=OFF"] + CMAKE_FLAGS,
                         log=log)
            if rc:
                sys.exit("configure (shared) failed (see %s)" % log)

    def build_for(tests):
        """Builds what the tests need; returns (ok, seconds)."""
        t0 = time.time()
        if any(t.startswith("ctest:") for t in tests):
            rc, out = sh(["cmake", "--build", build, "-j", str(a.jobs)], log=log)
            if rc:
                return False, time.time() - t0, out
        if any(t.startswith("pytest:") for t in tests):
            rc, out = sh(["cmake", "--build", shared, "-j", str(a.jobs), "--target"] + LIB_TARGETS, log=log)
            if rc:
                return False, time.time() - t0, out
        return True, time.time() - t0, ""

    def run_test(t):
        """(passed, what) for one test token."""
        if t.startswith("ctest:"):
            rc, out = sh(["ctest", "--test-dir", build, "-R", t[6:], "--timeout", str(a.timeout), "--output-on-failure"],
                         timeout=a.timeout + 60, log=log)
            if "No tests were found" in out:
                return False, "no ctest matches %s" % t[6:]
            failed = re.findall(r"\d+ - (\S+) \(", out)
            return rc == 0, ("timeout" if rc == 124 or "Timeout" in out else ",".join(failed) or "rc %d" % rc)
        env = dict(os.environ, PYTHONPATH=os.path.join(tree, "python"), DUALBRAGG_LIBDIR=shared,
                   PYTHONDONTWRITEBYTECODE="1")
        rc, out = sh([a.python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"] + shlex.split(a.pytest_args) +
                     [t[7:]], cwd=tree, env=env,
                     timeout=a.timeout, log=log)
        first = re.search(r"^FAILED (\S+)", out, re.M)
        return rc == 0, ("timeout" if rc == 124 else first.group(1) if first else "pytest rc %d" % rc)

    configure()
    if not a.no_baseline:
        tokens = sorted({t for m in mutants for t in m["tests"]})
        print("baseline: building the unmutated copy and running %d test commands ..." % len(tokens), flush=True)
        ok, secs, out = build_for(tokens)
        if not ok:
            print(out[-3000:])
            sys.exit("the unmutated copy does not build (see %s)" % log)
        failing = []
        for t in tokens:
            passed, what = run_test(t)
            if not passed:
                failing.append("%s (%s)" % (t, what))
        if failing:
            print("the unmutated copy fails: " + "; ".join(failing))
            return 2
        print("baseline: all pass (%.0f s)" % (time.time() - t_start), flush=True)

    results = []
    for k, m in enumerate(mutants, 1):
        path = os.path.join(tree, m["file"])
        with open(path) as f:
            orig = f.read()
        if orig.count(m["find"]) != 1:
            results.append((m, "bad", "find text not once in the scratch copy", 0.0))
            print("[%2d/%d] %-28s BAD (find text not once in the scratch copy)" % (k, len(mutants), m["id"]), flush=True)
            continue
        t0 = time.time()
        with open(path, "w") as f:
            f.write(orig.replace(m["find"], m["replace"]))
        with open(log, "a") as f:
            f.write("\n===== mutant %s: %s\n" % (m["id"], m["desc"]))
        try:
            ok, bsecs, out = build_for(m["tests"])
            if not ok:
                status, what = "build-failed", out.strip().splitlines()[-1][:120] if out.strip() else ""
            else:
                status, what = "survived", ""
                for t in m["tests"]:
                    passed, why = run_test(t)
                    if not passed:
                        status, what = "killed", "%s: %s" % (t, why)
                        break
        finally:
            with open(path, "w") as f:
                f.write(orig)
        secs = time.time() - t0
        results.append((m, status, what, secs))
        tag = status.upper() + (" (marked equivalent)" if "equivalent" in m else "")
        print("[%2d/%d] %-28s %-30s %5.0f s  %s" % (k, len(mutants), m["id"], tag, secs, what), flush=True)

    # the summary
    print("\n%-28s %-26s %-13s %s" % ("mutant", "file", "result", "description"))
    for m, status, what, secs in results:
        shown = ("equiv/" + status) if "equivalent" in m else status
        print("%-28s %-26s %-13s %s" % (m["id"], m["file"], shown, m["desc"]))
    counted = [(m, s) for m, s, _, _ in results if "equivalent" not in m and s in ("killed", "survived")]
    killed = sum(s == "killed" for _, s in counted)
    equiv = [m for m, s, _, _ in results if "equivalent" in m]
    failed_build = [m for m, s, _, _ in results if s == "build-failed"]
    survivors = [m["id"] for m, s in counted if s == "survived"]
    rate = killed / len(counted) if counted else 0.0
    print("\n%d mutants: %d killed, %d survived, %d build-failed, %d marked equivalent (%s)" % (
        len(results), killed, len(survivors), len(failed_build), len(equiv),
        ", ".join("%s %s" % (m["id"], s) for m, s, _, _ in results if "equivalent" in m) or "none"))
    print("kill rate over the non-equivalent mutants that built: %d / %d = %.1f%% (goal %.0f%%)%s" % (
        killed, len(counted), 100.0 * rate, 100.0 * a.goal, "" if not survivors else "; survivors: " + ", ".join(survivors)))
    print("%.1f minutes; log: %s" % ((time.time() - t_start) / 60.0, log))
    return 0 if rate >= a.goal else 1


if __name__ == "__main__":
    sys.exit(main())
