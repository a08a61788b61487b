#!/usr/bin/env python3
"""check_structure.py: two rules of the source tree's structure (issue 21); exit 1 when one is broken.
1. No two C files call each other, directly or around a circle: a new value should touch only what depends on it,
   in one direction. A file depends on another when it calls a db_* function the other defines (a definition: a
   line that starts with a type, names db_..., and opens a body). Static functions, headers' inline functions and
   calls through pointers (the renderer table) are not followed. Each circle is printed with the calls that close
   it.
2. struct db_sim (src/sim.h) is included only by the files that own it; gradcheck, refinement, the benches and the
   tests read a simulation through src/run_clients.h."""
import glob
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
files = sorted(f for d in ("src", "refine", "gradcheck", "kernels") for f in glob.glob(os.path.join(root, d, "*.c")))
text = {f: open(f, encoding="utf-8").read() for f in files}
definition = re.compile(r"^(?!static\b)(?:const\s+)?[A-Za-z][\w\*\s]*?\b(db_\w+)\s*\([^;{]*\)\s*\{", re.M)
owner = {}
for f in files:
    for m in definition.finditer(text[f]):
        owner.setdefault(m.group(1), f)
calls = {f: {} for f in files}
for f in files:
    for name in set(re.findall(r"\b(db_\w+)\s*\(", text[f])):
        g = owner.get(name)
        if g and g != f:
            calls[f].setdefault(g, []).append(name)

# Tarjan's strongly connected components
index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in calls[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            comps.append(sorted(comp))


sys.setrecursionlimit(10000)
for f in files:
    if f not in index:
        visit(f)
rel = lambda f: os.path.relpath(f, root)
for comp in comps:
    print("circle: " + ", ".join(rel(f) for f in comp))
    for a in comp:
        for b in comp:
            if b in calls[a]:
                print("  %s -> %s: %s" % (rel(a), rel(b), ", ".join(sorted(calls[a][b])[:6])))
print("%d files, %d calls between files, %d circles" % (len(files), sum(len(v) for v in calls.values()), len(comps)))

SIM_OWNERS = {"src/sim.c", "src/run.c", "src/values.c", "src/structure_factors.c", "src/engine_impl.h",
              "src/tables_impl.h"}
intruders = []
for d in ("src", "refine", "gradcheck", "kernels", "bench", "tests", "examples"):
    for f in sorted(glob.glob(os.path.join(root, d, "**", "*"), recursive=True)):
        if not f.endswith((".c", ".h", ".cu", ".cuh")) or rel(f) in SIM_OWNERS:
            continue
        if re.search(r'^\s*#\s*include\s+"sim\.h"', open(f, encoding="utf-8", errors="replace").read(), re.M):
            intruders.append(rel(f))
for f in intruders:
    print("includes sim.h without owning struct db_sim (use run_clients.h): " + f)
sys.exit(1 if comps or intruders else 0)
