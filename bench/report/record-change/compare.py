#!/usr/bin/env python3
"""Prints median (min-max) of every ql-builtin figure over the runs of two
labels in a directory of ql_bench JSON lines (LABEL-I.jsonl), and new/old.
Usage: compare.py [DIR [OLD_LABEL NEW_LABEL]]; defaults: this directory,
old new (inline96/: var96 new)."""
import glob
import json
import os
import statistics
import sys

d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
labels = sys.argv[2:4] if len(sys.argv) > 3 else ["old", "new"]
vals, failed = {}, []
for label in labels:
    for f in sorted(glob.glob(os.path.join(d, f"{label}-*.jsonl"))):
        for line in open(f):
            r = json.loads(line)
            w = r["workload"]
            if w == "info" or r.get("contender") != "ql-builtin":
                continue
            if r.get("ok") is False:
                failed.append((f, r))
                continue
            sub = " ".join(x for x in (r.get("variant"), r.get("mode")) if x)
            key = (w, sub, r.get("producers", 0))
            ms = {}
            if w in ("e2e", "file"):
                ms["M/s"] = r["records"] / r["seconds"] / 1e6
            if w in ("latency", "file_latency"):
                ms.update(p50_ns=r["p50_ns"], p999_ns=r["p999_ns"])
            for m, v in ms.items():
                vals.setdefault(key + (m,), {}).setdefault(label, []).append(v)
for (w, sub, p, m), sides in vals.items():
    cells = []
    for label in labels:
        xs = sides.get(label, [])
        cells.append(f"{label} {statistics.median(xs):.4g} ({min(xs):.4g}-{max(xs):.4g}) n={len(xs)}"
                     if xs else f"{label} -")
    o, n = sides.get(labels[0]), sides.get(labels[1])
    ratio = f"{statistics.median(n) / statistics.median(o):.2f}" if o and n else "-"
    print(f"{w:12} {sub:24} P={p} {m:7} {cells[0]:34} {cells[1]:34} {labels[1]}/{labels[0]} {ratio}")
print("failed runs:", len(failed))
