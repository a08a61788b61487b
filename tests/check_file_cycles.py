#!/usr/bin/env python3
"""check_file_cycles.py: no two C files of the project call each other, directly or around a circle (issue 21: a
new value should touch only what depends on it, in one direction). A file depends on another when it calls a
db_* function the other defines (a definition: a line that starts with a type, names db_..., and opens a body).
Static functions, headers' inline functions and calls through pointers (the renderer table) are not followed.
Prints each circle's files and the calls that close it; exit 1 when there is one."""
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
sys.exit(1 if comps else 0)
