#!/usr/bin/env python3
"""Checks what the private rsyslogd wrote (out.log, one line per message in
the template of run.sh) against what syslog_client sent and printed
(client.out). Usage: check.py CASE DIR. Exit 0 when every check holds."""
import collections
import os
import re
import sys
import time

case, d = sys.argv[1], sys.argv[2]
client = open(os.path.join(d, "client.out"), encoding="utf-8").read()
info = dict(re.findall(r"^(\w+)=(.*)$", client, re.M))
stats = {}
for name, rest in re.findall(r"^stats (\S+) (.*)$", client, re.M):
    stats[name] = {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", rest)}

KEYS = ["input", "pri", "time", "host", "app", "procid", "msgid", "sd", "msg"]


def read():
    try:
        text = open(os.path.join(d, "out.log"), encoding="utf-8").read()
    except FileNotFoundError:
        return []
    return [dict(zip(KEYS, l.split("|", 8))) for l in text.splitlines()]


def wait_for(pred, seconds=15):
    """Reads out.log until pred(lines) holds or the deadline passes."""
    end = time.time() + seconds
    while True:
        lines = read()
        if pred(lines) or time.time() > end:
            return lines
        time.sleep(0.05)


def fail(msg):
    print("CHECK FAILED:", msg)
    sys.exit(1)


def by_app(lines, app):
    return [l for l in lines if l["app"] == app]


RFC3339_US = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d$")


def check_fields():
    pid, tid = info["pid"], info["tid"]
    msg = 'hello w\u00f6rld\\nsecond ] " \\ 7'
    sd_warn = ('[ql@32473 logger="app.db" tid="%s" file="%s" line="%s" func="%s"]'
               '[fields@32473 user="al \\"ice\\"\\] \\\\x" n="-42" u="18446744073709551615"'
               ' d="0.5" ok="true" req="r-1"]') % (tid, info["file"], info["line"], info["func"])
    sd_info = '[ql@32473 logger="root" tid="%s"]' % tid
    tail3164 = (' logger=app.db user="al \\"ice\\"] \\\\x" n=-42 u=18446744073709551615'
                ' d=0.5 ok=true req=r-1')
    apps = {
        "ql-unix3164": ("imuxsock", 3164, None),
        "ql-unix5424": ("imuxsock", 5424, "qlhost"),
        "ql-udp3164": ("imudp", 3164, "qlhost"),
        "ql-udp5424": ("imudp", 5424, "qlhost"),
        "ql-tcp": ("imtcp", 5424, "qlhost"),
        "ql-tls": ("imtcp", 5424, "qlhost"),
        "ql-relp": ("imrelp", 5424, "qlhost"),
    }
    lines = wait_for(lambda ls: all(len(by_app(ls, a)) >= 3 for a in list(apps) + ["ql-cut"]))
    for l in lines:
        if l["app"] not in apps and l["app"] != "ql-cut":
            fail("unexpected line (a TLS handler that must not verify got through?): %r" % l)
    checked = 0
    for app, (inp, rfc, host) in apps.items():
        got = by_app(lines, app)
        if len(got) != 3:
            fail("%s: %d lines, want 3: %r" % (app, len(got), got))
        warn, inf, long_ = got
        want_long = "x" * 2000 + ("" if rfc == 5424 else " logger=long")
        if long_["msg"].lstrip(" ") != want_long:
            fail("%s: the 2000-byte message arrived as %d bytes" % (app, len(long_["msg"])))
        for l, pri in ((warn, "156"), (inf, "158")):
            want = {"input": inp, "pri": pri, "procid": pid}
            if host:
                want["host"] = host
            if rfc == 5424:
                want["msgid"] = "M1"
                if not RFC3339_US.match(l["time"]):
                    fail("%s: time %r is not RFC 3339 with microseconds" % (app, l["time"]))
            else:
                want["msgid"] = "-"
                want["sd"] = "-"
            for k, v in want.items():
                if l[k] != v:
                    fail("%s: %s is %r, want %r (line %r)" % (app, k, l[k], v, l))
                checked += 1
        if rfc == 5424:
            expect = [(warn, sd_warn, msg), (inf, sd_info, "plain")]
            for l, sd, m in expect:
                if l["sd"] != sd:
                    fail("%s: structured data\n got  %r\n want %r" % (app, l["sd"], sd))
                if l["msg"] != m:
                    fail("%s: msg\n got  %r\n want %r" % (app, l["msg"], m))
                checked += 2
        else:
            for l, m in ((warn, msg + tail3164), (inf, "plain logger=root")):
                got_msg = l["msg"][1:] if l["msg"].startswith(" ") else l["msg"]
                if got_msg != m:
                    fail("%s: msg\n got  %r\n want %r" % (app, got_msg, m))
                checked += 1
    # ql-cut: max_message_bytes 1024; the long record is cut to exactly that.
    cut = by_app(lines, "ql-cut")
    if len(cut) != 3:
        fail("ql-cut: %d lines, want 3" % len(cut))
    l = cut[2]
    header = "<158>1 %s qlhost ql-cut %s M1 %s " % (l["time"], pid, '[ql@32473 logger="long" tid="%s"]' % tid)
    if l["msg"] != "x" * (1024 - len(header.encode())):
        fail("ql-cut: message of %d bytes, want it cut to 1024 in all (%d of msg)"
             % (len(l["msg"]), 1024 - len(header.encode())))
    print("fields: %d lines, %d values checked: OK" % (len(lines), checked))


def counted(app, prefix, n):
    lines = by_app(read(), app)
    c = collections.Counter()
    for l in lines:
        m = re.fullmatch(re.escape(prefix) + r" (\d+)", l["msg"].strip())
        if not m or int(m.group(1)) >= n:
            fail("%s: a line that was never sent: %r" % (app, l))
        c[int(m.group(1))] += 1
    return c


def check_down():
    for app in ("ql-down-tcp", "ql-down-relp"):
        wait_for(lambda ls: len(by_app(ls, app)) >= 200)
        c = counted(app, "down", 200)
        if len(c) != 200 or max(c.values()) != 1:
            fail("%s: %d of 200 arrived, %d duplicated" % (app, len(c), sum(v > 1 for v in c.values())))
    print("down_at_start: 200 of 200 on TCP and on RELP, each once: OK")


def check_restart_relp():
    n, app = 3000, "ql-relp-restart"
    wait_for(lambda ls: len(set(l["msg"] for l in by_app(ls, app))) >= n)
    c = counted(app, app, n)
    missing = [i for i in range(n) if i not in c]
    dups = sum(v - 1 for v in c.values())
    s = stats[app]
    print("restart_relp: %d sent, %d arrived once or more, %d missing, %d duplicates, "
          "%d resent by the handler, %d reconnections" % (n, len(c), len(missing), dups, s["resent"], s["reopens"]))
    if missing:
        fail("RELP lost records: %s" % missing[:20])
    if dups > s["resent"]:
        fail("more duplicates (%d) than records resent (%d)" % (dups, s["resent"]))
    print("restart_relp: OK")


def check_restart_stream(kind):
    n, app = 3000, "ql-%s-restart" % kind
    s = stats[app]
    # Wait until rsyslog has written what it received (the count stops moving).
    last, stable_since, end = -1, time.time(), time.time() + 15
    while time.time() < end:
        k = len(by_app(read(), app))
        if k != last:
            last, stable_since = k, time.time()
        elif time.time() - stable_since > 1.0 or k >= s["written"]:
            break
        time.sleep(0.05)
    c = counted(app, app, n)
    dups = sum(v - 1 for v in c.values())
    after = int(info["after_last_restart"])
    missing = [i for i in range(n) if i not in c]
    late_missing = [i for i in missing if i >= after]
    print("restart_%s: %d sent, written %d, lost %d (counted), arrived %d, duplicates %d; "
          "written but not arrived (in the killed server's or the kernel's buffers): %d; "
          "missing after the last restart: %d" % (kind, n, s["written"], s["lost"], len(c), dups,
                                                  s["written"] - len(c), len(late_missing)))
    if dups:
        fail("%s duplicated records" % kind)
    if len(c) > s["written"]:
        fail("more arrived than counted written")
    if s["written"] + s["lost"] != n:
        fail("account does not balance")
    if late_missing:
        fail("records logged after the last restart were lost: %s" % late_missing[:20])
    print("restart_%s: OK" % kind)


def check_pause():
    app, s = "ql-pause", stats["pause"]
    want = s["written"]
    wait_for(lambda ls: len(by_app(ls, app)) >= want)
    lines = by_app(read(), app)
    msgs = collections.Counter(l["msg"] for l in lines)
    print("pause: written %d, lost %d, arrived %d" % (s["written"], s["lost"], len(lines)))
    if max(msgs.values()) != 1:
        fail("duplicates after a pause")
    if len(lines) != want:
        fail("arrived %d != written %d (nothing may vanish on a live connection)" % (len(lines), want))
    print("pause: OK")


def check_unix():
    app = "ql-unix-re"
    wait_for(lambda ls: len(by_app(ls, app)) >= 20)
    got = collections.Counter(l["msg"].strip() for l in by_app(read(), app))
    want = ["unix before %d" % i for i in range(10)] + ["unix after %d" % i for i in range(10)]
    if sorted(got) != sorted(want) or max(got.values()) != 1:
        fail("unix datagram: got %r" % got)
    print("unix_reconnect: 20 of 20: OK")


def check_example():
    wait_for(lambda ls: len(by_app(ls, "syslog_tls")) >= 3)
    got = by_app(read(), "syslog_tls")
    if len(got) != 3:
        fail("example: %d lines, want 3: %r" % (len(got), got))
    print("example: 3 records over TLS: OK")


def check_tls_big():
    app = "ql-tls-big"
    wait_for(lambda ls: len(by_app(ls, app)) >= 2)
    got = by_app(read(), app)
    # run.sh sets rsyslog's maxMessageSize to 256k: the 150 KiB one whole.
    if len(got) != 2 or got[0]["msg"].strip() != "big " + "b" * (150 * 1024 - 4) \
            or got[1]["msg"].strip() != "small after":
        fail("tls_big: %d lines: %r" % (len(got), [l["msg"][:40] for l in got]))
    print("tls_big: the big message and the one after it arrived: OK")


{
    "free_lost": lambda: None,  # the client checks it all
    "tls_big": check_tls_big,
    "fields": check_fields,
    "down_at_start": check_down,
    "restart_relp": check_restart_relp,
    "restart_tcp": lambda: check_restart_stream("tcp"),
    "restart_tls": lambda: check_restart_stream("tls"),
    "pause": check_pause,
    "unix_reconnect": check_unix,
    "example": check_example,
}[case]()
print("syslog %s: OK" % case)
