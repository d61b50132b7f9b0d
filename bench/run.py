#!/usr/bin/env python3
"""Benchmark driver for queue_listener: python3 bench/run.py [--quick] [--help]

Builds the project with -DQL_BENCH=ON into build-bench/, runs the contender
programs (each prints one JSON object per line on stdout), aggregates the reps
(median, min, max), prints a markdown report and writes results.jsonl,
results.csv, summary.md, throughput.svg, latency.svg and file_sink.svg to the
out dir. The file sink workload writes its files under build-bench/filesink/
(each program deletes them after checking them). Exits 1 when a program or
any measured rep failed.
"""
import argparse
import csv
import datetime
import glob
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(REPO, "build-bench")
REF = "ql-builtin"  # the reference contender of every ratio
SPDLOG_SKIP = "spdlog not found at configure time (apt-get install libspdlog-dev)"
# The field's leaders (bench/README.md, "The leaders"): (--only name, option,
# CMake variable, [(program, contender)]). Their sources are never in this
# repository: each is built from the directory given with its option (or the
# environment variable named like the CMake one) and skipped when none is given.
PEERS = [("quill", "quill", "QL_BENCH_QUILL_DIR",
          [("quill_bench_default", "quill"), ("quill_bench_lowlat", "quill-lowlat")]),
         ("fmtlog", "fmtlog", "QL_BENCH_FMTLOG_DIR",
          [("fmtlog_bench_shipped", "fmtlog"), ("fmtlog_bench_fixed", "fmtlog-fixed")]),
         ("nanolog", "nanolog", "QL_BENCH_NANOLOG_DIR", [("nanolog_bench", "nanolog")])]
PEER_URL = {"quill": "github.com/odygrd/quill", "fmtlog": "github.com/MengRao/fmtlog",
            "nanolog": "github.com/PlatformLab/NanoLog"}
FILE_DIR = os.path.join(BUILD, "filesink")
# The metrics aggregated per workload. Derived: e2e's mrec_s (records/seconds),
# the file sink's mlines_s (lines/seconds, in millions) and mlines_s_all (lines
# per second until ql_listener_free returned: the last gzip done).
LATENCY = ["p50_ns", "p99_ns", "p999_ns", "max_ns"]
METRICS = {"e2e": ["mrec_s"], "latency": LATENCY,
           "vtable": ["ns_per_record"], "idle": ["cpu_ms_per_s", "stop_us"],
           "file": ["mlines_s", "mlines_s_all", "rotations", "rotated_out"],
           "file_latency": LATENCY + ["mlines_s", "rotations"], "journald": ["mrec_s"]}
DERIVED = {"mrec_s": "seconds", "mlines_s": "seconds", "mlines_s_all": "seconds_all"}
OPTIONAL = {"mlines_s_all", "rotations"}  # only some contenders report them
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


def log(msg):
    print(f"run.py: {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    def positive(s):
        v = int(s)
        if v <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return v
    ap = argparse.ArgumentParser(description="Build and run the queue_listener benchmark.")
    ap.add_argument("--records", type=positive, help="records per producer (default 1000000)")
    ap.add_argument("--reps", type=positive, help="repetitions (default 5)")
    ap.add_argument("--latency-calls", type=positive, help="timed put calls (default 128000)")
    ap.add_argument("--python-records", type=positive, help="records for py_bench (default N)")
    ap.add_argument("--python-file-records", type=positive,
                    help="records per producer of py_bench's file sink (default N/10)")
    ap.add_argument("--quick", action="store_true", help="N=100000, R=3, C=12800")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--no-file", action="store_true", help="skip the file sink workload")
    only.add_argument("--file-only", action="store_true", help="run only the file sink workload")
    ap.add_argument("--no-journald", action="store_true", help="skip the journald workload")
    ap.add_argument("--journald-records", type=positive,
                    help="records per producer of the journald workload (default N/10)")
    ap.add_argument("--only", action="append",
                    choices=["ql", "spdlog", "python"] + [p[0] for p in PEERS], metavar="NAME",
                    help="run only this program: ql, spdlog, python, quill, fmtlog, nanolog "
                         "(repeatable)")
    for name, opt, var, _ in PEERS:
        ap.add_argument(f"--{opt}", metavar="DIR", default=os.environ.get(var) or None,
                        help=f"{name}'s source tree ({PEER_URL[name]}; default ${var}); "
                             "without it, skipped")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"), help="output dir")
    ap.add_argument("--timeout", type=positive, default=900, help="seconds per program")
    ap.add_argument("--from-jsonl", help=argparse.SUPPRESS)  # re-render saved results only
    a = ap.parse_args(argv)
    a.records = a.records or (100000 if a.quick else 1000000)
    a.reps = a.reps or (3 if a.quick else 5)
    a.latency_calls = a.latency_calls or (12800 if a.quick else 128000)
    a.python_records = a.python_records or a.records
    a.python_file_records = a.python_file_records or max(a.records // 10, 1)
    a.journald_records = a.journald_records or max(a.records // 10, 1)
    for _, opt, _, _ in PEERS:
        d = getattr(a, opt)
        setattr(a, opt, os.path.abspath(d) if d else None)
    return a


def machine_info():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


# ---------------------------------------------------------------- build and run

def build(a):
    if shutil.which("cmake") is None:
        sys.exit("run.py: cmake not found; install it first (apt-get install cmake)")
    # The tests are not built: the bench needs only the library and its programs.
    # Every peer's directory is passed, empty when not given, so an earlier
    # configure's value never lingers in the cache.
    peers = [f"-D{var}={getattr(a, opt) or ''}" for _, opt, var, _ in PEERS]
    for cmd in (["cmake", "-S", REPO, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release", "-DQL_BENCH=ON",
                 "-DBUILD_TESTING=OFF"] + peers,
                ["cmake", "--build", BUILD, "-j2"]):
        log("$ " + shlex.join(cmd))
        sys.stdout.flush()
        if subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr).returncode != 0:
            sys.exit(f"run.py: build failed: {shlex.join(cmd)} (see the output above)")


def parse_lines(text, source):
    """The JSON objects of a program's stdout; other lines are warned about."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if isinstance(obj, dict) and isinstance(obj.get("workload"), str):
                out.append(obj)
                continue
        except json.JSONDecodeError:
            pass
        log(f"warning: {source}:{n}: ignoring non-JSON line: {line[:100]}")
    return out


def run_one(cmd, timeout, cwd):
    """Runs one program; returns (stdout bytes, None or why it failed)."""
    try:  # stderr passes through; stdout is the JSON lines
        p = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=timeout, cwd=cwd)
        if p.returncode < 0:
            return p.stdout, f"killed by {signal.Signals(-p.returncode).name}"
        return p.stdout, f"exit status {p.returncode}" if p.returncode else None
    except subprocess.TimeoutExpired as e:
        return e.stdout or b"", f"timed out after {timeout} s"
    except OSError as e:
        return b"", f"could not start: {e}"


def peer_failed(contender, rep, why):
    """The rows a peer program that died would have printed in this rep, each
    failed: a crash fails the contender, not only the measurement it was in."""
    variant = "binary" if contender == "nanolog" else "message"
    return ([{"workload": "e2e", "contender": contender, "variant": variant, "producers": p,
              "rep": rep, "ok": False, "error": why} for p in (1, 2)] +
            [{"workload": "latency", "contender": contender, "mode": m, "rep": rep, "ok": False,
              "error": why} for m in ("paced", "saturating")])


def run_programs(a):
    """Runs the selected programs, each once per rep (--reps 1) and in turn
    within the rep, so that a noisy moment of the machine hits them all; the
    rep number of every line is the driver's. Returns (records, command lines)."""
    bench = lambda prog: os.path.join(BUILD, "bench", prog)
    progs = [("ql", "ql_bench", [bench("ql_bench")], a.records, None),
             ("spdlog", "spdlog_bench", [bench("spdlog_bench")], a.records, None),
             ("python", "py_bench.py", [sys.executable, os.path.join(REPO, "bench", "py_bench.py")],
              a.python_records, None)]
    progs += [(name, prog, [bench(prog)], a.records, (opt, contender))
              for name, opt, _, bins in PEERS for prog, contender in bins]
    records, commands, selected = [], [], []
    os.makedirs(FILE_DIR, exist_ok=True)
    for name, label, cmd, n, peer in progs:
        if a.only and name not in a.only:
            continue
        cmd += ["--records", str(n), "--reps", "1", "--latency-calls", str(a.latency_calls),
                "--file-dir", FILE_DIR]
        if peer:  # no file sink workload: they run with the main workloads
            if a.file_only:
                continue
            opt, contender = peer
            if not getattr(a, opt):
                records.append({"workload": "skip", "contender": contender,
                                "reason": f"no --{opt} DIR given ({PEER_URL[name]} source tree)"})
                continue
            if not os.path.exists(cmd[0]):
                records.append({"workload": "skip", "contender": contender,
                                "reason": f"not built from {getattr(a, opt)} (see the configure "
                                          "output of this run)"})
                continue
        else:
            if name == "python":
                cmd += ["--file-records", str(a.python_file_records)]
            cmd += ["--no-file"] if a.no_file else ["--file-only"] if a.file_only else []
            if name == "spdlog" and not os.path.exists(cmd[0]):
                records.append({"workload": "skip", "contender": "spdlog-async",
                                "reason": SPDLOG_SKIP})
                continue
        selected.append((label, cmd, peer))
        # NanoLog opens ./compressedLog at start-up: peers run in FILE_DIR.
        commands.append(shlex.join(cmd) + (f"  (in {os.path.relpath(FILE_DIR, REPO)})"
                                           if peer else "") + f"  (once per rep, {a.reps} reps)")
    for rep in range(a.reps):
        for label, cmd, peer in selected:
            log(f"rep {rep}: $ " + shlex.join(cmd))
            out, err = run_one(cmd, a.timeout, FILE_DIR if peer else REPO)
            for r in parse_lines(out.decode(errors="replace"), label):
                if r["workload"] == "info" and rep > 0:
                    continue  # the program's notes, once
                if "rep" in r:
                    r["rep"] = rep
                records.append(r)
            if err:  # a failure of this program's contenders, not of the driver
                log(f"{label} rep {rep}: {err}")
                records.append({"workload": "program", "contender": label, "ok": False,
                                "error": f"rep {rep}: {err}"})
                if peer:
                    records += peer_failed(peer[1], rep, f"program {label} {err}")
    return records, commands


# ---------------------------------------------------------------- journald

JOURNALD = "/lib/systemd/systemd-journald"


def journald_why_not():
    if not os.access(JOURNALD, os.X_OK) or shutil.which("journalctl") is None:
        return f"{JOURNALD} or journalctl not installed (apt-get install systemd)"
    if os.geteuid() != 0:
        return "a namespaced journald needs root (it writes /run/systemd and /var/log/journal)"
    return None


def journal_check(name, r, n):
    """Reads the entries of run `r` back from the journal (polling up to 30 s
    for the last ones journald has not read yet) and checks that every
    producer's records 1..n arrived once each, in order. Returns the error
    or None."""
    deadline = time.monotonic() + 30
    while True:
        p = subprocess.run(["journalctl", f"--namespace={name}", "-o", "cat", "--no-pager",
                            f"SYSLOG_IDENTIFIER={r['ident']}"], capture_output=True, timeout=120)
        lines = p.stdout.splitlines()
        if len(lines) >= r["records"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    nxt = [1] * r["producers"]
    for line in lines:
        try:
            v = int(line.split(b" ", 1)[1])
        except (IndexError, ValueError):
            return f"journal: unexpected entry {line[:60]!r}"
        prod, seq = v >> 32, v & 0xFFFFFFFF
        if prod >= len(nxt) or seq != nxt[prod]:
            return f"journal: producer {prod} record {seq} where {nxt[prod] if prod < len(nxt) else '?'} was due"
        nxt[prod] += 1
    if any(x != n + 1 for x in nxt) or len(lines) != r["records"]:
        return f"journal: {len(lines)} entries of {r['records']}, next per producer {nxt}"
    return None


def run_journald(a):
    """The journald workload: a fresh private namespaced journald per rep
    (stopped by pid, its files removed after the check), ql_bench
    --journald-only against it, every entry read back."""
    why = journald_why_not()
    if why:
        return [{"workload": "skip", "contender": "journald", "reason": why}], []
    records, commands = [], []
    for rep in range(a.reps):
        name = f"qlbench{os.getpid()}r{rep}"
        sock = f"/run/systemd/journal.{name}/socket"
        jd = subprocess.Popen([JOURNALD, name], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while True:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                try:
                    s.connect(sock)
                    break
                except OSError:
                    if time.monotonic() > deadline or jd.poll() is not None:
                        return records + [{"workload": "program", "contender": "journald",
                                           "ok": False, "error": "journald did not start"}], commands
                    time.sleep(0.02)
                finally:
                    s.close()
            cmd = [os.path.join(BUILD, "bench", "ql_bench"), "--journald-only", "--reps", "1",
                   "--journald-socket", sock, "--journald-records", str(a.journald_records)]
            cmd += ["--journald-raw-first"] if rep % 2 else []
            commands.append(shlex.join(cmd))
            log("$ " + commands[-1])
            try:
                p = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=a.timeout, cwd=REPO)
                out, err = p.stdout, (f"exit status {p.returncode}" if p.returncode else None)
            except subprocess.TimeoutExpired as e:
                out, err = e.stdout or b"", f"timed out after {a.timeout} s"
            for r in parse_lines(out.decode(errors="replace"), "ql_bench journald"):
                if r["workload"] != "journald":
                    continue
                r["rep"] = rep
                if r.get("ok") is True:
                    bad = journal_check(name, r, a.journald_records)
                    if bad:
                        r["ok"], r["error"] = False, bad
                records.append(r)
            if err:
                log(f"ql_bench journald: {err}")
                records.append({"workload": "program", "contender": "ql_bench journald",
                                "ok": False, "error": err})
        finally:
            jd.terminate()
            try:
                jd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                jd.kill()
                jd.wait()
            shutil.rmtree(f"/run/systemd/journal.{name}", ignore_errors=True)
            for d in glob.glob(f"/var/log/journal/*.{name}"):
                shutil.rmtree(d, ignore_errors=True)
    return records, commands


# ---------------------------------------------------------------- aggregation

def sub_of(r):
    """The variant, the mode, or both ("rotating paced") for file_latency."""
    return " ".join(x for x in (r.get("variant"), r.get("mode")) if x)


def aggregate(records):
    """{(workload, contender, variant/mode, producers): group}; a group holds
    stats {metric: (median, min, max)} and errors (any ok:false rep)."""
    groups = {}
    for r in records:
        w = r["workload"]
        if w not in METRICS:
            continue
        key = (w, str(r.get("contender", "?")), sub_of(r), r.get("producers") or 0)
        g = groups.setdefault(key, {"values": {m: [] for m in METRICS[w]}, "errors": []})
        rep = r.get("rep", "?")
        if r.get("ok", True) is not True:
            g["errors"].append(f"rep {rep}: {r.get('error') or 'failed'}")
            continue
        try:
            for m in METRICS[w]:
                if m in OPTIONAL and DERIVED.get(m, m) not in r:
                    continue
                v = r["records"] / r[DERIVED[m]] / 1e6 if m in DERIVED else float(r[m])
                g["values"][m].append(v)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
            g["errors"].append(f"rep {rep}: bad line ({type(e).__name__} {e})")
    for g in groups.values():
        g["stats"] = {m: (statistics.median(v), min(v), max(v))
                      for m, v in g["values"].items() if v}
        if not g["stats"] and not g["errors"]:
            g["errors"].append("no values")
    return groups


def ordered(names):
    """Contender names in first-seen order, the reference first."""
    names = list(dict.fromkeys(names))
    return sorted(names, key=lambda n: n != REF)


def num(v):
    """About three significant digits, without exponents for usual values."""
    a = abs(v)
    return (f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else
            f"{v:.2f}" if a >= 0.1 else f"{v:.3g}")


def cell(g, m, spread="()"):
    """Median with (min–max), or FAILED, or a dash for no data."""
    if g is None:
        return "–"
    if g["errors"]:
        return "FAILED: " + "; ".join(g["errors"]).replace("|", "\\|")
    med, lo, hi = g["stats"][m]
    return f"{num(med)} {spread[0]}{num(lo)}–{num(hi)}{spread[1]}" if spread else num(med)


def median_of(groups, skips, key, metric):
    """(median, None) or (None, why it was not measured)."""
    g = groups.get(key)
    if g is None:
        if key[1] in skips:
            return None, f"{key[1]} skipped: {skips[key[1]]}"
        return None, f"no data for {key[1]} {key[2]}".rstrip() + (f" P={key[3]}" if key[3] else "")
    if g["errors"]:
        return None, f"{key[1]} {key[2]} FAILED: {g['errors'][0]}"
    return g["stats"][metric][0], None


def vtable_diff(groups, skips):
    """(ql-ring-vtable minus plain-c-loop ns/record medians, None) or (None, why)."""
    a, why_a = median_of(groups, skips, ("vtable", "ql-ring-vtable", "", 0), "ns_per_record")
    b, why_b = median_of(groups, skips, ("vtable", "plain-c-loop", "", 0), "ns_per_record")
    return (a - b, None) if why_a is None and why_b is None else (None, why_a or why_b)


def e2e_ref(groups, variant, p):
    """The ql-builtin group a row is compared with (same variant, else message)."""
    k = ("e2e", REF, variant, p)
    return k if k in groups else ("e2e", REF, "message", p)


# ---------------------------------------------------------------- report

def table(header, rows):
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join(r) + " |" for r in rows] + [""]


EQUAL_PEERS = ["quill", "quill-lowlat", "fmtlog-fixed", "fmtlog"]  # the same work as ql's message
ALL_PEERS = EQUAL_PEERS + ["nanolog"]  # NanoLog: binary output, nothing formatted in the process
LEADER_ROWS = [("ql-builtin", "message", "ql-logf", "`ql_logf`"),
               ("spdlog-async", "message", "spdlog-async", "spdlog async (block)"),
               ("quill", "message", "quill", "quill, default options"),
               ("quill-lowlat", "message", "quill-lowlat", "quill, low-latency options"),
               ("fmtlog-fixed", "message", "fmtlog-fixed", "fmtlog, publish store made a release store"),
               ("fmtlog", "message", "fmtlog", "fmtlog as shipped"),
               ("nanolog", "binary", "nanolog", "NanoLog (binary output, no formatting: not equal work)")]


def best_peer(groups, peers, key_of, metric, better):
    """(name, median) of the best peer by metric, or (None, None). A peer
    with any failed row in the run is left out: a logger that lost or
    reordered a message in one run is not a peer in the others."""
    failed = {k[1] for k, g in groups.items() if g["errors"]}
    vals = [(c, stat(groups.get(key_of(c)), metric)) for c in peers if c not in failed]
    vals = [(c, v) for c, v in vals if v is not None]
    return (better(vals, key=lambda cv: cv[1]) if vals else (None, None))


def peer_key_e2e(p):
    return lambda c: ("e2e", c, "binary" if c == "nanolog" else "message", p)


def leader_goals(groups, verdict):
    """The goals of issue 12 against the field's leaders."""
    def ql(key, metric):
        return stat(groups.get(key), metric)
    for md in ("paced", "saturating"):
        a = ql(("latency", "ql-logf", md, 0), "p50_ns")
        c, b = best_peer(groups, ALL_PEERS, lambda c: ("latency", c, md, 0), "p50_ns", min)
        why = "ql-logf not measured" if a is None else "no peer measured" if b is None else None
        verdict(f"`ql_logf` p50 within 10 ns of the best peer's ({md})", None, why,
                why is None and a - b <= 10,
                f"{num(a or 0)} ns against {c} {num(b or 0)} ns: {(a or 0) - (b or 0):+.0f} ns")
        a = ql(("latency", "ql-logf", md, 0), "p999_ns")
        c, b = best_peer(groups, ALL_PEERS, lambda c: ("latency", c, md, 0), "p999_ns", min)
        why = "ql-logf not measured" if a is None else "no peer measured" if b is None else None
        verdict(f"`ql_logf` p99.9 no worse than the best peer's ({md})", None, why,
                why is None and a <= b, f"{num(a or 0)} ns against {c} {num(b or 0)} ns")
    for p in (1, 2):
        a = ql(("e2e", REF, "message", p), "mrec_s")
        c, b = best_peer(groups, EQUAL_PEERS, peer_key_e2e(p), "mrec_s", max)
        why = "ql-builtin message not measured" if a is None else \
            "no equal-work peer measured" if b is None else None
        verdict(f"e2e ≥ 2× the best equal-work peer (message, P={p})", None, why,
                why is None and a / b >= 2, f"{num((a or 0) / (b or 1))}× ({c} {num(b or 0)} Mmsg/s)")


def leaders_report(groups, skips):
    """The field's leaders beside ql_logf and spdlog, in the issue's table."""
    if not any(k[1] in ALL_PEERS for k in groups) and not any(c in ALL_PEERS for c in skips):
        return []
    out = ["## The leaders", "",
           "P producers each log N messages `hello <u64>`, each with its producer-side timestamp, "
           "formatted by the logger (NanoLog excepted) and checked on arrival, in order and by "
           "checksum (NanoLog's after the run, from its decompressed log). End to end: million "
           "messages per second, median (min–max); `vs ql`: contender / ql-builtin message. Per "
           "call: one producer, ns, p50 / p99 / p99.9 medians over reps (timer floor included). "
           "See bench/README.md, \"The leaders\", for each one's options.", ""]
    rows = []
    for c, v, lat, label in LEADER_ROWS:
        if c in skips:
            rows.append([label, f"skipped: {skips[c]}"] + [""] * 5)
            continue
        row = [label]
        for p in (1, 2):
            g = groups.get(("e2e", c, v, p))
            row += [cell(g, "mrec_s"),
                    ratio_cell(g, groups.get(("e2e", REF, "message", p)), "mrec_s")]
        for md in ("paced", "saturating"):
            g = groups.get(("latency", lat, md, 0))
            if g is None or g["errors"]:
                row.append(cell(g, "p50_ns"))
            else:
                row.append(" / ".join(num(stat(g, m)) for m in ("p50_ns", "p99_ns", "p999_ns")))
        rows.append(row)
    out += table(["contender", "P=1", "vs ql P=1", "P=2", "vs ql P=2", "paced p50 / p99 / p99.9",
                  "saturating p50 / p99 / p99.9"], rows)
    said = []
    for p in (1, 2):
        a = stat(groups.get(("e2e", REF, "message", p)), "mrec_s")
        c, b = best_peer(groups, EQUAL_PEERS, peer_key_e2e(p), "mrec_s", max)
        if a and b:
            said.append(f"P={p}: the best equal-work peer is {c} ({num(b)} Mmsg/s); "
                        f"ql_logf {num(a)}, {num(a / b)}× of it")
    for md in ("paced", "saturating"):
        a = stat(groups.get(("latency", "ql-logf", md, 0)), "p50_ns")
        c, b = best_peer(groups, ALL_PEERS, lambda c: ("latency", c, md, 0), "p50_ns", min)
        if a and b:
            said.append(f"{md} p50: ql_logf {num(a)} ns, best peer {c} {num(b)} ns ({a - b:+.0f} ns)")
    out += [f"- {x}" for x in said] + ([""] if said else [])
    return out


def goals(groups, skips):
    out = []

    def verdict(label, value, why, passed, shown):
        out.append(f"- {label}: " + (f"not measured: {why}" if why else
                                     f"{shown} — **{'met' if passed else 'missed'}**"))

    def ratio(label, k_num, k_den, target, metric="mrec_s"):
        a, why_a = median_of(groups, skips, k_num, metric)
        b, why_b = median_of(groups, skips, k_den, metric)
        r = a / b if a is not None and b else None
        verdict(label, r, why_a or why_b, r is not None and r >= target, f"{num(r or 0)}×")

    def bound(label, key, metric, limit, unit, strict=False):
        v, why = median_of(groups, skips, key, metric)
        verdict(label, v, why, v is not None and (v < limit if strict else v <= limit),
                f"{num(v or 0)} {unit}")

    for p in (1, 2):
        ratio(f"e2e ≥ 10× spdlog-async (message, P={p})", ("e2e", REF, "message", p),
              ("e2e", "spdlog-async", "message", p), 10)
    for v in ("value", "message"):
        for p in (1, 2):
            ratio(f"e2e ≥ 10× python-queuelistener ({v}, P={p})", ("e2e", REF, v, p),
                  ("e2e", "python-queuelistener", v, p), 10)
    ratio("e2e ≥ 0.15× spsc-reference (value, P=1)", ("e2e", REF, "value", 1),
          ("e2e", "spsc-reference", "value", 1), 0.15)
    bound("paced put p50 ≤ 50 ns", ("latency", REF, "paced", 0), "p50_ns", 50, "ns")
    bound("paced put p99.9 ≤ 1000 ns", ("latency", REF, "paced", 0), "p999_ns", 1000, "ns")
    bound("idle CPU < 1 ms per s", ("idle", REF, "", 0), "cpu_ms_per_s", 1, "ms/s", True)
    bound("ql_stop on an empty queue < 1 ms", ("idle", REF, "", 0), "stop_us", 1000, "µs", True)
    d, why = vtable_diff(groups, skips)
    verdict("vtable overhead ≤ 10 ns/record", d, why, d is not None and d <= 10,
            f"{num(d or 0)} ns/record")
    leader_goals(groups, verdict)
    for v, theirs in (("file", "basic_file_sink_mt"), ("rotating", "rotating_file_sink_mt")):
        for p in (1, 2):
            ratio(f"file sink ≥ 1× spdlog-async {theirs} ({v}, P={p})", ("file", REF, v, p),
                  ("file", "spdlog-async", v, p), 1, "mlines_s")
    for p in (1, 2):
        ratio(f"file sink ≥ 10× Python FileHandler behind QueueListener (P={p})",
              ("file", REF, "file", p), ("file", "python-queuelistener", "file", p), 10,
              "mlines_s")
    return out


def stat(g, m):
    """The median of metric m in group g, or None (no group, failed, absent)."""
    return g["stats"][m][0] if g and not g["errors"] and m in g["stats"] else None


def ratio_cell(g, ref, m):
    a, b = stat(g, m), stat(ref, m)
    return f"{num(a / b)}×" if a is not None and b else "–"


def file_sink_report(groups, meta):
    """The file sink section: throughput, the cost of rotation and gzip, and
    what the producers paid per call in those runs."""
    fk = [k for k in groups if k[0] == "file"]
    if not fk and not any(k[0] == "file_latency" for k in groups):
        return []
    ps = sorted({k[3] for k in fk})
    where = meta.get("file_dir") or "build-bench/filesink"
    out = ["## File sink", "",
           f"Lines written to a file in `{where}` (the repository's disk; no contender calls "
           "fsync, so this is the write path into the page cache), million lines per second, "
           "median (min–max) over reps. Each producer logs its records `hello <value>` at INFO; "
           "the span ends when every line is in the file (`ql_stop` returned; spdlog's "
           "`flush()` then its pool joined; Python's `listener.stop()` then the handler "
           "closed). Every run's files were read back: each producer's lines once each, in "
           "order (rotating runs: the backups that rotation deleted cannot be read; see "
           "bench/README.md). Ratio = contender / ql-builtin, same variant"
           + (f"; Python's rows log {meta['python_file_records']} records per producer"
              if "python_file_records" in meta else "") + ".", ""]
    rows = []
    for c in ordered(k[1] for k in fk):
        for v in dict.fromkeys(k[2] for k in fk if k[1] == c):
            row = [c, v]
            for p in ps:
                g, ref = groups.get(("file", c, v, p)), groups.get(("file", REF, v, p))
                row += [cell(g, "mlines_s"), ratio_cell(g, ref, "mlines_s")]
            rows.append(row)
    out += table(["contender", "variant"] + [h for p in ps for h in (f"P={p}", f"vs ql P={p}")],
                 rows)

    variants = [v for v in ("file", "rotating", "rotating+gzip")
                if any(("file", REF, v, p) in groups for p in ps)]
    if variants:
        out += ["### The cost of rotation and compression (ql-builtin)", "",
                "Rotation at 8 MiB with 3 backups; `rotating+gzip` also compresses each backup "
                "on a thread of the library's own. `to last gzip`: million lines per second "
                "until `ql_listener_free` returned, which waits for the last backup's "
                "compression (`ql_stop` does not). Rotations: median per run.", ""]
        rows = []
        for v in variants:
            row = [v]
            for p in ps:
                g, ref = groups.get(("file", REF, v, p)), groups.get(("file", REF, "file", p))
                rot = stat(g, "rotations")
                row += [num(rot) if rot is not None else "–", cell(g, "mlines_s"),
                        ratio_cell(g, ref, "mlines_s"),
                        num(stat(g, "mlines_s_all")) if stat(g, "mlines_s_all") else "–"]
            rows.append(row)
        out += table(["variant"] + [h for p in ps for h in (
            f"rotations P={p}", f"P={p}", f"vs file P={p}", f"to last gzip P={p}")], rows)

    lk = [k for k in groups if k[0] == "file_latency"]
    if lk:
        pairs = list(dict.fromkeys((k[1], k[2].rsplit(" ", 1)[0]) for k in lk))
        pairs.sort(key=lambda cv: (cv[0] != REF, cv[0]))
        cols = [("p50", "p50_ns", None), ("p99", "p99_ns", None), ("p99.9", "p999_ns", "[]"),
                ("max", "max_ns", "[]")]
        out += ["### Producer cost in the file runs", "",
                "One producer, every call timed (`ql_logf`, spdlog's `logger->info`): **paced** "
                "(64 calls, then a 50 µs pause) and **saturating** (back to back); ns per call, "
                "median over reps, p99.9 and max also [min–max]. `span`: million lines per "
                "second of the saturating run (timing included). A stall of the writing thread "
                "longer than the queue's 8192 records shows in the max.", ""]
        rows = []
        for c, v in pairs:
            row = [c, v]
            for md in ("paced", "saturating"):
                g = groups.get(("file_latency", c, f"{v} {md}", 0))
                row += [cell(g, key, sp) for _, key, sp in cols]
            g = groups.get(("file_latency", c, f"{v} saturating", 0))
            row.append(num(stat(g, "mlines_s")) if stat(g, "mlines_s") else "–")
            rows.append(row)
        out += table(["contender", "variant"] + [f"{md} {h}" for md in ("paced", "saturating")
                                                 for h, _, _ in cols] + ["span"], rows)

        def lat(v, md, m):
            return stat(groups.get(("file_latency", REF, f"{v} {md}", 0)), m)
        said = []
        for md in ("paced", "saturating"):
            a, b = lat("rotating+gzip", md, "max_ns"), lat("rotating", md, "max_ns")
            a9, b9 = lat("rotating+gzip", md, "p999_ns"), lat("rotating", md, "p999_ns")
            if None not in (a, b, a9, b9):
                said.append(f"{md}: p99.9 {num(a9)} ns with gzip, {num(b9)} ns without; "
                            f"max {num(a / 1e3)} µs with gzip, {num(b / 1e3)} µs without")
        if said:
            out += ["Compression and the producer (ql-builtin, medians): " + "; ".join(said)
                    + ".", ""]
    return out


def fields_report(groups):
    """Structured records: ql_logf against QL_INFO (source location) and
    ql_logf_fields (4 fields and a context field), the same message, end to
    end and per call."""
    variants = [("message", "ql-logf", "`ql_logf`"), ("macro", "ql-macro", "`QL_INFO`"),
                ("fields", "ql-fields", "`ql_logf_fields`, 4 fields + 1 context")]
    if not any(("e2e", REF, v, p) in groups for v, _, _ in variants[1:] for p in (1, 2)):
        return []
    out = ["## Structured records", "",
           "The same `hello <value>` message through `ql_logf`, `QL_INFO` (file, line and "
           "function) and `ql_logf_fields` (string, int, double and bool fields, plus one "
           "context field set on the producer thread); every record's message, source and "
           "fields checked by the handler. End to end: Mrec/s and ns per record (1 / rate), "
           "median (min–max); per call: one producer, each call timed, ns, median over reps. "
           "`+ns`: the difference from `ql_logf`'s median.", ""]
    rows = []
    for v, lat_name, label in variants:
        row = [label]
        for p in (1, 2):
            g, ref = groups.get(("e2e", REF, v, p)), groups.get(("e2e", REF, "message", p))
            a, b = stat(g, "mrec_s"), stat(ref, "mrec_s")
            row += [cell(g, "mrec_s"), f"{num(1e3 / a)}" if a else "–",
                    f"{1e3 / a - 1e3 / b:+.0f}" if a and b else "–"]
        for md in ("paced", "saturating"):
            g = groups.get(("latency", lat_name, md, 0))
            ref = groups.get(("latency", "ql-logf", md, 0))
            a, b = stat(g, "p50_ns"), stat(ref, "p50_ns")
            row += [num(a) if a else "–", f"{a - b:+.0f}" if a and b else "–",
                    num(stat(g, "p999_ns")) if stat(g, "p999_ns") else "–"]
        rows.append(row)
    out += table(["call"] + [h for p in (1, 2) for h in (f"P={p} Mrec/s", f"P={p} ns/rec",
                                                          f"P={p} +ns")]
                 + [h for md in ("paced", "saturating") for h in (f"{md} p50", f"{md} +ns",
                                                                   f"{md} p99.9")], rows)
    return out


def journald_report(groups, meta):
    """The journald section: records per second delivered to a private
    namespaced journald, the library against a bare sender (journald's own
    limit)."""
    jk = [k for k in groups if k[0] == "journald"]
    if not jk:
        return []
    ps = sorted({k[3] for k in jk})
    out = ["## journald", "",
           f"Records per second (thousands), median (min–max), {meta.get('journald_records', '?')} "
           "records per producer, a fresh namespaced journald per rep; every entry read back "
           "from the journal and checked (once each, in order). `ql-builtin`: `ql_logf` through "
           "`ql_journald_handler`, until `ql_stop` returned; `raw-socket`: the same entries "
           "sent by bare threads with one blocking `send` each (journald's own limit).", ""]
    rows = []
    for c in ordered(k[1] for k in jk):
        row = [c]
        for p in ps:
            g, ref = groups.get(("journald", c, "journald", p)), groups.get(
                ("journald", "raw-socket", "journald", p))
            if g and not g["errors"]:
                med, lo, hi = (x * 1000 for x in g["stats"]["mrec_s"])
                row.append(f"{num(med)} ({num(lo)}–{num(hi)})")
            else:
                row.append(cell(g, "mrec_s"))
            ok = g and ref and not g["errors"] and not ref["errors"]
            row.append(f"{num(g['stats']['mrec_s'][0] / ref['stats']['mrec_s'][0])}×" if ok else "–")
        rows.append(row)
    out += table(["contender"] + [h for p in ps for h in (f"P={p} krec/s", f"vs raw P={p}")], rows)
    return out


def report(records, meta):
    groups = aggregate(records)
    skips = {r.get("contender", "?"): r.get("reason", "") for r in records
             if r["workload"] == "skip"}
    m = meta["machine"]
    out = ["# queue_listener benchmark", "",
           f"- Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}",
           f"- Date: {m['date']}", f"- Command: `{meta['command']}`"]
    if "reps" in meta:
        out.append(f"- Parameters: records={meta['records']}, reps={meta['reps']}, latency calls="
                   f"{meta['latency_calls']}, python records={meta['python_records']}"
                   + (f", python file records={meta['python_file_records']}"
                      if "python_file_records" in meta else ""))
    out += [f"- Ran: `{c}`" for c in meta.get("programs", [])] + [""]

    e2e = [k for k in groups if k[0] == "e2e"]
    ps = sorted({k[3] for k in e2e})
    out += ["## End-to-end throughput", "",
            "Mrec/s, median (min–max) over reps; ratio = contender / ql-builtin, same variant "
            "and P (ql-builtin message when the variant has no ql-builtin row).", ""]
    rows = []
    for c in ordered(k[1] for k in e2e):
        for v in dict.fromkeys(k[2] for k in e2e if k[1] == c):
            row = [c, v]
            for p in ps:
                g, ref = groups.get(("e2e", c, v, p)), groups.get(e2e_ref(groups, v, p))
                ok = g and ref and not g["errors"] and not ref["errors"]
                r = g["stats"]["mrec_s"][0] / ref["stats"]["mrec_s"][0] if ok else None
                row += [cell(g, "mrec_s"), f"{num(r)}×" if r else "–"]
            rows.append(row)
    out += table(["contender", "variant"] + [h for p in ps for h in (f"P={p}", f"vs ql P={p}")],
                 rows)

    lat = [k for k in groups if k[0] == "latency"]
    modes = sorted({k[2] for k in lat}, key=lambda s: (s != "paced", s))
    cols = [("p50", "p50_ns", "[]"), ("p99", "p99_ns", None), ("p99.9", "p999_ns", "[]"),
            ("max", "max_ns", None)]
    out += ["## Producer cost (put call)", "",
            "ns per call, median over reps; p50 and p99.9 also show [min–max].", ""]
    rows = [[c] + [cell(groups.get(("latency", c, md, 0)), key, sp) for md in modes
                   for _, key, sp in cols] for c in ordered(k[1] for k in lat)]
    out += table(["contender"] + [f"{md} {h}" for md in modes for h, _, _ in cols], rows)

    vt = {c: groups.get(("vtable", c, "", 0)) for c in ("ql-ring-vtable", "plain-c-loop")}
    out += ["## Listener overhead through the vtable", ""]
    out += table(["contender", "ns/record, median (min–max)"],
                 [[c, cell(g, "ns_per_record")] for c, g in vt.items()])
    d, why = vtable_diff(groups, skips)
    out += [f"Difference of medians: {num(d)} ns/record" if why is None
            else f"Difference: not measured ({why})", ""]

    g = groups.get(("idle", REF, "", 0))
    out += ["## Idle", ""]
    out += table(["measure", "median (min–max)"],
                 [["CPU ms per second idle", cell(g, "cpu_ms_per_s")],
                  ["ql_stop latency, µs", cell(g, "stop_us")]])

    out += leaders_report(groups, skips)
    out += fields_report(groups)
    out += file_sink_report(groups, meta)
    out += journald_report(groups, meta)
    out += ["## Goals", ""] + goals(groups, skips) + [""]
    infos = [r for r in records if r["workload"] == "info"]
    if infos:
        out += ["## Notes", ""] + ["- " + ", ".join(f"{k}: {v}" for k, v in r.items()
                                                    if k != "workload") for r in infos] + [""]
    if skips:
        out += ["## Skipped", ""] + [f"- {c}: {why}" for c, why in skips.items()] + [""]
    fails = [f"- program {r.get('contender')}: {r.get('error')}" for r in records
             if r["workload"] == "program" and r.get("ok") is False]
    fails += [f"- {w} {c} {s}{f' P={p}' if p else ''}: " + "; ".join(g["errors"])
              for (w, c, s, p), g in groups.items() if g["errors"]]
    if fails:
        out += ["## Failures", ""] + fails + [""]
    return "\n".join(out), groups, bool(fails)


# ---------------------------------------------------------------- files

def write_csv(path, records):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "contender", "variant_or_mode", "producers", "rep", "metric",
                    "value", "ok"])
        for r in records:
            if r["workload"] not in METRICS:
                continue
            base = [r["workload"], r.get("contender", ""), sub_of(r), r.get("producers", ""),
                    r.get("rep", "")]
            vals = {k: v for k, v in r.items() if k not in ("rep", "producers", "records", "calls")
                    and isinstance(v, (int, float)) and not isinstance(v, bool)}
            if r["workload"] == "e2e" and vals.get("seconds") and "records" in r:
                vals["mrec_s"] = r["records"] / vals["seconds"] / 1e6
            if r["workload"] in ("file", "file_latency") and "records" in r:
                for m in ("mlines_s", "mlines_s_all"):
                    if vals.get(DERIVED[m]):
                        vals[m] = r["records"] / vals[DERIVED[m]] / 1e6
            for k, v in vals.items():
                w.writerow(base + [k, v, str(r.get("ok", True) is True).lower()])


def tick_label(v):
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def svg_hbars(title, note, xlabel, groups, series, log_scale):
    """A horizontal bar chart. groups: [(heading, [(label, [bar per series])])],
    a bar being (median, min, max, colour), an error string or None;
    series: [(legend name, colour)], a legend is drawn when there are two or more."""
    W, L, R, top, bar_h = 900, 250, 90, 64, 14
    vals = [x for _, rows in groups for _, bars in rows for b in bars
            if isinstance(b, tuple) for x in b[:3] if x > 0]
    lo, hi = (min(vals), max(vals)) if vals else (1.0, 10.0)
    if log_scale:
        lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
        hi = hi * 10 if hi <= lo else hi
        decades = range(round(math.log10(lo)), round(math.log10(hi)) + 1)
        ticks = [m * 10 ** d for d in decades for m in ((1, 2, 5) if len(decades) <= 3 else (1,))]
        ticks = [t for t in ticks if t <= hi]
        x = lambda v: L + (W - L - R) * math.log10(max(v, lo) / lo) / math.log10(hi / lo)
    else:
        step = 10 ** math.floor(math.log10(hi / 5))
        step *= next(m for m in (1, 2, 5, 10) if hi / (step * m) <= 6)
        hi = math.ceil(hi / step) * step
        lo, ticks = 0, [i * step for i in range(int(round(hi / step)) + 1)]
        x = lambda v: L + (W - L - R) * v / hi
    body, y = [], top
    for heading, rows in groups:
        body.append(f'<text x="10" y="{y + 14}" font-weight="bold">{escape(heading)}</text>')
        y += 22
        for label, bars in rows:
            row_h = bar_h * len(bars)
            body.append(f'<text x="{L - 8}" y="{y + row_h / 2 + 4}" text-anchor="end">'
                        f'{escape(label)}</text>')
            for i, b in enumerate(bars):
                yb, cy = y + i * bar_h, y + i * bar_h + bar_h / 2
                if not isinstance(b, tuple):
                    body.append(f'<text x="{L + 4}" y="{cy + 4}" fill="#c00">'
                                f'{escape(b or "no data")}</text>')
                    continue
                med, mn, mx, colour = b
                body.append(f'<rect x="{L}" y="{yb + 1}" width="{x(med) - L:.1f}" '
                            f'height="{bar_h - 2}" fill="{colour}"/>')
                body.append(f'<path d="M{x(mn):.1f},{cy}H{x(mx):.1f}M{x(mn):.1f},{cy - 4}'
                            f'v8M{x(mx):.1f},{cy - 4}v8" stroke="#222" fill="none"/>')
                body.append(f'<text x="{max(x(med), x(mx)) + 4:.1f}" y="{cy + 4}" '
                            f'font-size="11">{num(med)}</text>')
            y += row_h + 6
        y += 8
    grid = [f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{y}" stroke="#ddd"/>'
            f'<text x="{x(t):.1f}" y="{y + 16}" text-anchor="middle" font-size="11">'
            f'{tick_label(t)}</text>' for t in ticks]
    axis = [f'<line x1="{L}" y1="{y}" x2="{W - R}" y2="{y}" stroke="#222"/>',
            f'<text x="{(L + W - R) / 2}" y="{y + 36}" text-anchor="middle">'
            f'{escape(xlabel)}</text>']
    if len(series) > 1:
        for i, (name, colour) in enumerate(series):
            axis.append(f'<rect x="{L + i * 140}" y="{y + 48}" width="12" height="12" '
                        f'fill="{colour}"/><text x="{L + i * 140 + 18}" y="{y + 59}">'
                        f'{escape(name)}</text>')
    H = y + (72 if len(series) > 1 else 52)
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="13">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="10" y="24" font-size="16" font-weight="bold">{escape(title)}</text>',
        f'<text x="10" y="44" font-size="12" fill="#444">{escape(note)}</text>',
        *grid, *body, *axis, "</svg>", ""])


def charts(groups, meta):
    """(throughput.svg, latency.svg) texts."""
    m = meta["machine"]
    where = f"{m['cpu']}, {m['cores']} cores"

    def bar(g, metric, colour):
        if g is None or g["errors"]:
            return "FAILED" if g else None
        return (*g["stats"][metric], colour)
    e2e = [k for k in groups if k[0] == "e2e"]
    names = ordered(k[1] for k in e2e)
    colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(names)}
    rows_by_p = [(f"P = {p} producer{'s' if p > 1 else ''}",
                  [(f"{c} ({k[2]})", [bar(groups[k], "mrec_s", colour[c])])
                   for c in names for k in e2e if k[1] == c and k[3] == p])
                 for p in sorted({k[3] for k in e2e})]
    meds = [g["stats"]["mrec_s"][0] for k, g in groups.items() if k[0] == "e2e" and g["stats"]]
    log_x = bool(meds) and max(meds) / max(min(meds), 1e-12) > 50
    tp = svg_hbars(f"End-to-end throughput — {where}",
                   "median over reps, whiskers min–max" + ("; log scale" if log_x else ""),
                   "throughput, Mrec/s (million records per second)", rows_by_p,
                   [("median", PALETTE[0])], log_x)
    lat = ordered(k[1] for k in groups if k[0] == "latency" and k[2] == "paced")
    series = [("p50", "#8fbbe0"), ("p99.9", "#1f4e79")]
    rows = [(c, [bar(groups[("latency", c, "paced", 0)], key, col)
                 for key, (_, col) in zip(("p50_ns", "p999_ns"), series)]) for c in lat]
    lt = svg_hbars(f"Producer cost per put call, paced — {where}",
                   "median over reps, whiskers min–max; log scale", "ns per put call",
                   [("paced mode", rows)], series, True)
    fk = [k for k in groups if k[0] == "file"]
    fnames = ordered(k[1] for k in fk)
    fcolour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(fnames)}
    frows = [(f"P = {p} producer{'s' if p > 1 else ''}",
              [(f"{k[1]} ({k[2]})", [bar(groups[k], "mlines_s", fcolour[k[1]])])
               for c in fnames for k in fk if k[1] == c and k[3] == p])
             for p in sorted({k[3] for k in fk})]
    fmeds = [stat(groups[k], "mlines_s") for k in fk if stat(groups[k], "mlines_s")]
    flog = bool(fmeds) and max(fmeds) / min(fmeds) > 50
    fs = svg_hbars(f"File sink throughput — {where}",
                   "median over reps, whiskers min–max" + ("; log scale" if flog else ""),
                   "million lines per second written to a file", frows,
                   [("median", PALETTE[0])], flog)
    return tp, lt, fs


def main(argv):
    a = parse_args(argv)
    command = shlex.join(["python3"] + sys.argv)
    if a.from_jsonl:  # re-render: keep the original run's machine and command
        with open(a.from_jsonl) as f:
            records = parse_lines(f.read(), a.from_jsonl)
        metas = [r for r in records if r["workload"] == "meta"]
        records = [r for r in records if r["workload"] != "meta"]
        meta = metas[0] if metas else {"workload": "meta", "machine": machine_info(),
                                       "command": command, "programs": []}
    else:
        build(a)
        records, programs = run_programs(a)
        if not a.no_journald and not a.file_only and (not a.only or "ql" in a.only):
            jrecords, jprograms = run_journald(a)
            records += jrecords
            programs += jprograms
        meta = {"workload": "meta", "machine": machine_info(), "command": command,
                "programs": programs, "records": a.records, "reps": a.reps,
                "latency_calls": a.latency_calls, "python_records": a.python_records,
                "python_file_records": a.python_file_records,
                "journald_records": a.journald_records,
                "file_dir": os.path.relpath(FILE_DIR, REPO)}
    md, groups, failed = report(records, meta)
    print(md)
    os.makedirs(a.out, exist_ok=True)
    write_csv(os.path.join(a.out, "results.csv"), records)
    files = {"results.jsonl": "".join(json.dumps(r) + "\n" for r in [meta] + records),
             "summary.md": md + "\n",
             **dict(zip(("throughput.svg", "latency.svg", "file_sink.svg"), charts(groups, meta)))}
    for name, text in files.items():
        if name.endswith(".svg"):
            ET.fromstring(text)  # the charts must be well-formed XML
        with open(os.path.join(a.out, name), "w") as f:
            f.write(text)
    log(f"wrote results.csv, {', '.join(files)} to {a.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
