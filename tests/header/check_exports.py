#!/usr/bin/env python3
"""The shared library exports exactly the header's functions, each with
the symbol version named after the soname.

Usage: check_exports.py LIBRARY HEADER

Every function the header declares (not the static inline ones of its
trailer) must be a defined dynamic symbol of the library, and the library
must export no other function: no Rust runtime symbol, nothing without the
ql_ prefix. Prints both lists' differences and exits 1 when they differ.
"""
import re
import subprocess
import sys

library, header = sys.argv[1], sys.argv[2]
text = open(header).read()
# Strip comments, then take declarations "type ql_name(" that are not
# preceded by "static inline" (the trailer's helpers live in the program).
text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
declared = set()
for m in re.finditer(r"^([^\n#;{}]*?)\b(ql_[a-z0-9_]+)\s*\(", text, flags=re.M):
    prefix = m.group(1)
    # A declaration starts its line with a return type ("ql_status",
    # "const char *", "void", "struct ql_x *"); calls inside the inline
    # helpers and macros do not.
    if not re.fullmatch(r"\s*(const\s+)?(struct\s+)?[A-Za-z_][A-Za-z0-9_]*\s*\**\s*", prefix):
        continue
    if prefix.split()[0] in ("return", "static", "else"):
        continue
    declared.add(m.group(2))
out = subprocess.run(["nm", "-D", "--defined-only", library], capture_output=True, text=True,
                     check=True).stdout
exported = {f[2].split("@")[0] for f in (l.split() for l in out.splitlines()) if len(f) == 3 and f[1] in "TW"}
missing = sorted(declared - exported)
extra = sorted(exported - declared)
print(f"{len(declared)} functions declared, {len(exported)} exported")
if missing:
    print("declared in the header but not exported:", " ".join(missing))
if extra:
    print("exported but not in the header:", " ".join(extra))
# Each function carries the library's version node (the soname).
soname = re.search(r"SONAME\s+(\S+)",
                   subprocess.run(["objdump", "-p", library], capture_output=True, text=True,
                                  check=True).stdout)
versions = {}
for line in subprocess.run(["objdump", "-T", library], capture_output=True, text=True,
                           check=True).stdout.splitlines():
    f = line.split()
    if len(f) >= 7 and f[-1].startswith("ql_"):
        versions[f[-1]] = f[-2]
node = soname.group(1) if soname else None
unversioned = sorted(n for n in exported if versions.get(n) != node)
print(f"version node {node}")
if unversioned:
    print(f"exported without the version node {node}:",
          " ".join(f"{n}@{versions.get(n)}" for n in unversioned))
if missing or extra or unversioned or not declared or not node:
    sys.exit(1)
print("exports: OK")
