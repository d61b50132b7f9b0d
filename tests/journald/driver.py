#!/usr/bin/env python3
"""Runs a journald test against a private systemd-journald in namespace mode.

    driver.py fields  PROGRAM   every field of every entry checked on arrival
    driver.py restart PROGRAM   journald stopped and restarted mid-stream
    driver.py pause   PROGRAM   journald paused (SIGSTOP) and resumed mid-stream
    driver.py example PROGRAM   c_examples/journald against its own journald

Each run starts `/lib/systemd/systemd-journald NAME` with a NAME of its own
(the driver's pid and the mode), so tests running in parallel never share a
server; it stops it by pid and removes /run/systemd/journal.NAME and
/var/log/journal/*.NAME afterwards. The system journal is never touched.
Entries are read back with `journalctl --namespace=NAME -o json --all`,
filtered by the test program's pid. Every wait has a deadline: a hung
server or program fails the test. Exit 0 when every check passed, 1 on a
failure, 77 (skipped, with the reason printed) when journald cannot run here.
"""
import glob
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

JOURNALD = "/lib/systemd/systemd-journald"
DEADLINE = 20.0  # seconds any wait may take


def fail(msg):
    print(f"driver: FAIL: {msg}", flush=True)
    sys.exit(1)


def note(msg):
    print(f"driver: {msg}", flush=True)


class Journald:
    """A private namespaced journald, started and stopped by pid."""

    def __init__(self, name, workdir):
        self.name = name
        self.dir = f"/run/systemd/journal.{name}"
        self.socket = f"{self.dir}/socket"
        self.log = os.path.join(workdir, f"journald-{name}.out")
        self.proc = None

    def start(self):
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([JOURNALD, self.name], stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        out.close()
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                fail(f"journald {self.name} exited with {self.proc.returncode}: "
                     f"{open(self.log, errors='replace').read()[-2000:]}")
            if self.listening():
                note(f"journald {self.name} up (pid {self.proc.pid})")
                return
            time.sleep(0.02)
        fail(f"journald {self.name} did not listen on {self.socket} within {DEADLINE} s")

    def listening(self):
        """True when a datagram socket can connect: bound by a live server
        (the socket file stays after journald exits)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a paused journald cannot end
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        note(f"journald {self.name} stopped (pid {self.proc.pid})")

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        for d in glob.glob(f"/var/log/journal/*.{self.name}"):
            shutil.rmtree(d, ignore_errors=True)

    def entries(self, pid):
        """The entries the process `pid` sent, oldest first."""
        p = subprocess.run(["journalctl", f"--namespace={self.name}", "-o", "json", "--all",
                            "--no-pager", f"_PID={pid}"], capture_output=True, timeout=DEADLINE)
        if p.returncode not in (0, 1):  # 1: no entries yet
            fail(f"journalctl: {p.returncode} {p.stderr.decode(errors='replace')}")
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]

    def wait_entries(self, pid, count):
        """Polls until at least `count` entries arrived (deadline), then
        returns them all."""
        end = time.monotonic() + DEADLINE
        while True:
            got = self.entries(pid)
            if len(got) >= count or time.monotonic() >= end:
                return got
            time.sleep(0.05)


def values(v):
    """A field of journalctl's JSON as a list of byte strings: a string is
    UTF-8 text, an array of numbers is bytes that are not, an array of
    those is a field with several values."""
    if isinstance(v, str):
        return [v.encode()]
    if isinstance(v, list) and all(isinstance(x, int) for x in v):
        return [bytes(v)]
    if isinstance(v, list):
        return [b for x in v for b in values(x)]
    fail(f"unexpected JSON value {v!r:.100}")


def short(b):
    return repr(b if len(b) <= 80 else b[:60] + b"..." + b[-10:]) + f" ({len(b)} bytes)"


def check_entry(i, got, want, t0, t1):
    """Every field the handler set must be exactly as expected, and no other
    field may be there (trusted `_` fields aside)."""
    if got.get("_TRANSPORT") != "journal":
        fail(f"entry {i}: _TRANSPORT {got.get('_TRANSPORT')!r}, want 'journal'")
    expect = {}
    for name, hexval in want["fields"]:
        expect.setdefault(name, []).append(bytes.fromhex(hexval))
    seen = {k: values(v) for k, v in got.items() if not k.startswith("_")}
    if want.get("time"):
        t = seen.pop("QL_TIME_USEC", None)
        if t is None or len(t) != 1:
            fail(f"entry {i}: QL_TIME_USEC {t!r}")
        t = int(t[0])
        rt = int(got["__REALTIME_TIMESTAMP"])
        if not t0 <= t <= t1 or t > rt:
            fail(f"entry {i}: QL_TIME_USEC {t} outside [{t0}, {t1}] or after reception {rt}")
    for name in sorted(set(expect) | set(seen)):
        w, g = sorted(expect.get(name, [])), sorted(seen.get(name, []))
        if w != g:
            fail(f"entry {i} field {name}: got {[short(x) for x in g]}, "
                 f"want {[short(x) for x in w]}")


def run(cmd, timeout=90):
    note("$ " + " ".join(cmd))
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail(f"{cmd[0]} timed out after {timeout} s")
    sys.stdout.write(p.stdout.decode(errors="replace"))
    sys.stdout.write(p.stderr.decode(errors="replace"))
    if p.returncode != 0:
        fail(f"{cmd[0]} exited with {p.returncode}")
    return p


def mode_fields(jd, prog, work):
    expect = os.path.join(work, "expect.jsonl")
    cmd = [prog, "fields", jd.socket, expect]
    note("$ " + " ".join(cmd))
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = child.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        child.kill()
        fail("test_journald fields timed out")
    sys.stdout.write(out.decode(errors="replace"))
    if child.returncode != 0:
        fail(f"test_journald fields exited with {child.returncode}")
    lines = [json.loads(line) for line in open(expect)]
    t0, t1 = lines[0]["t0"], lines[-1]["t1"]
    want = lines[1:-1]
    got = jd.wait_entries(child.pid, len(want))
    if len(got) != len(want):
        fail(f"{len(got)} entries arrived, {len(want)} sent")
    for i, (g, w) in enumerate(zip(got, want)):
        check_entry(i, g, w, t0, t1)
    sizes = sorted(len(values(g["MESSAGE"])[0]) for g in got)
    note(f"{len(got)} entries, every field checked (largest MESSAGE {sizes[-1]} bytes)")


class Interactive:
    """A test program driven step by step: it prints `@waiting STEP` and
    reads STEP back once the driver has done it."""

    def __init__(self, cmd):
        note("$ " + " ".join(cmd))
        self.child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.child.stdout, selectors.EVENT_READ)
        self.buf = b""
        self.end = time.monotonic() + 120
        self.lines = []

    def next_line(self):
        while b"\n" not in self.buf:
            left = self.end - time.monotonic()
            if left <= 0 or not self.sel.select(timeout=left):
                self.child.kill()
                fail(f"{self.child.args[0]}: no output in time")
            chunk = os.read(self.child.stdout.fileno(), 4096)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        text = line.decode(errors="replace")
        print(text, flush=True)
        self.lines.append(text)
        return text

    def say(self, step):
        self.child.stdin.write(step.encode() + b"\n")
        self.child.stdin.flush()

    def finish(self):
        try:
            rc = self.child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.child.kill()
            fail("the test program did not exit")
        if rc != 0:
            fail(f"the test program exited with {rc}")

    def value(self, key):
        for line in self.lines:
            if line.startswith(f"@{key} "):
                return int(line.split()[1])
        fail(f"the test program printed no @{key}")


def messages_by_ident(jd, pid):
    got = {}
    for e in jd.entries(pid):
        got.setdefault(e.get("SYSLOG_IDENTIFIER"), []).append(values(e["MESSAGE"])[0].decode())
    return got


def wait_for(what, cond, get):
    dl = time.monotonic() + DEADLINE
    while True:
        got = get()
        if cond(got):
            return got
        if time.monotonic() > dl:
            return got
        time.sleep(0.05)


def check_messages(ident, got, msgs):
    if sorted(got) != sorted(msgs):
        missing = sorted(set(msgs) - set(got))[:5]
        extra = sorted(set(got) - set(msgs))[:5]
        fail(f"{ident}: {len(got)} arrived, {len(msgs)} expected; missing {missing}, "
             f"unexpected {extra}, duplicates {len(got) - len(set(got))}")
    if got != msgs:
        note(f"{ident}: every entry arrived once, but not in order")


def phase(name, n, start=0):
    return [f"restart {name} {i}" for i in range(start, n)]


def mode_restart(jd, prog, work):
    t = Interactive([prog, "restart", jd.socket])
    pid = t.child.pid
    while (line := t.next_line()) is not None:
        if line == "@waiting down":
            # Every phase-A entry is in the journal before journald stops:
            # nothing is left unread in its socket to be lost silently.
            got = wait_for("phase A", lambda g: all(len(g.get(i, [])) >= 200
                                                    for i in ("ql-held", "ql-nohold")),
                           lambda: messages_by_ident(jd, pid))
            if not all(len(got.get(i, [])) >= 200 for i in ("ql-held", "ql-nohold")):
                fail(f"phase A did not arrive: { {k: len(v) for k, v in got.items()} }")
            jd.stop()
            t.say("down")
        elif line == "@waiting up":
            jd.start()
            t.say("up")
    t.finish()
    want = {"ql-held": phase("A", 200) + phase("B", 100) + phase("C", 200),
            "ql-nohold": phase("A", 200) + phase("C", 200)}
    got = wait_for("all", lambda g: all(len(g.get(k, [])) >= len(v) for k, v in want.items()),
                   lambda: messages_by_ident(jd, pid))
    for ident, msgs in want.items():
        check_messages(ident, got.get(ident, []), msgs)
    note("restart: held 500 arrived once each (0 lost), nohold 400 arrived (100 lost, counted)")


def mode_pause(jd, prog, work):
    t = Interactive([prog, "pause", jd.socket])
    pid = t.child.pid
    while (line := t.next_line()) is not None:
        if line == "@waiting paused":
            got = wait_for("phase A", lambda g: len(g.get("ql-pause", [])) >= 50,
                           lambda: messages_by_ident(jd, pid))
            if len(got.get("ql-pause", [])) < 50:
                fail("phase A did not arrive")
            jd.proc.send_signal(signal.SIGSTOP)
            note(f"journald {jd.name} paused (SIGSTOP)")
            t.say("paused")
        elif line == "@waiting resumed":
            jd.proc.send_signal(signal.SIGCONT)
            note(f"journald {jd.name} resumed (SIGCONT)")
            t.say("resumed")
    t.finish()
    w, total = t.value("paused_written"), t.value("total_written")
    want = phase("A", 50) + phase("B", w) + phase("C", 50)
    if len(want) != total:
        fail(f"written {total}, but A + {w} + C = {len(want)}")
    got = wait_for("all", lambda g: len(g.get("ql-pause", [])) >= total,
                   lambda: messages_by_ident(jd, pid)).get("ql-pause", [])
    check_messages("ql-pause", got, want)
    note(f"pause: the {total} entries counted written arrived (the {w} written while journald "
         f"was stopped among them), none of those counted lost")


def mode_example(jd, prog, work):
    cmd = [prog, jd.socket]
    note("$ " + " ".join(cmd))
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        fail("journald example timed out")
    sys.stdout.write(out.decode(errors="replace"))
    if child.returncode != 0 or b"journald: OK" not in out:
        fail(f"journald example exited with {child.returncode}")
    got = jd.wait_entries(child.pid, 3)
    want = [
        ("service started", "6", {"PORT": "8080", "VERSION": "1.4.2", "REQUEST_ID": None}),
        ("slow request", "4", {"REQUEST_ID": "req-42", "DURATION_MS": "1250.5",
                                "CODE_FUNC": "handle_request"}),
        ("connection lost\nretrying in 5 s", "3", {"REQUEST_ID": "req-42", "RETRY": "true",
                                                   "CODE_FUNC": "handle_request"}),
    ]
    if len(got) != len(want):
        fail(f"{len(got)} entries arrived, want {len(want)}")
    for e, (msg, prio, fields) in zip(got, want):
        vals = {k: values(v)[0].decode(errors="replace") for k, v in e.items()}
        if vals.get("MESSAGE") != msg or vals.get("PRIORITY") != prio:
            fail(f"entry {vals.get('MESSAGE')!r} priority {vals.get('PRIORITY')}")
        if vals.get("SYSLOG_IDENTIFIER") != "journald-example" or vals.get("QL_LOGGER") != "shop":
            fail(f"identifier/logger: {vals.get('SYSLOG_IDENTIFIER')} {vals.get('QL_LOGGER')}")
        for k, v in fields.items():
            if vals.get(k) != v:
                fail(f"entry {msg!r}: {k} = {vals.get(k)!r}, want {v!r}")
    note("example journald: 3 entries arrived with their fields")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("fields", "restart", "pause", "example"):
        sys.exit(__doc__)
    mode, prog = sys.argv[1], os.path.abspath(sys.argv[2])
    if not os.access(JOURNALD, os.X_OK) or shutil.which("journalctl") is None:
        print(f"SKIPPED: {JOURNALD} or journalctl not installed (apt-get install systemd)")
        sys.exit(77)
    if os.geteuid() != 0:
        print("SKIPPED: a namespaced journald needs root (it writes /run/systemd and /var/log/journal)")
        sys.exit(77)
    name = f"qltest{os.getpid()}{mode}"
    work = tempfile.mkdtemp(prefix=f"ql-{name}-")
    jd = Journald(name, work)
    try:
        jd.start()
        {"fields": mode_fields, "restart": mode_restart, "pause": mode_pause,
         "example": mode_example}[mode](
            jd, prog, work)
        print(f"journald {mode}: OK", flush=True)
    finally:
        jd.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
