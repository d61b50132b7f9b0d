#!/usr/bin/env python3
"""py_bench.py: the "python-queuelistener" contender of the benchmark.

Python's own logging.handlers.QueueListener over a queue.SimpleQueue with one
counting handler, standard library only. The record put on the queue is the
value itself (variant "value") or the string f"hello {v}" (variant
"message"); QueueListener.prepare() is the identity and, with
respect_handler_level False, the listener calls handler.handle(record)
directly, so plain objects do as records.

The handler does the work of bench_sink_take() in bench_common.h: per-producer
order check, count, and the wrapping 64-bit sum of bench_mix(v).

The file sink workload (after the others): logging.FileHandler behind a
QueueHandler and a QueueListener over a SimpleQueue, producers calling
logger.info("hello %d", v); the file is read back and checked.

Output: one JSON object per line on stdout, formatted like bench_emit_e2e()
and bench_emit_latency(); diagnostics on stderr.
Arguments: --records N --reps R --latency-calls C --file-records F
--file-dir DIR [--no-file | --file-only].
"""

import argparse
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time

CONTENDER = "python-queuelistener"
MAX_PRODUCERS = 8  # BENCH_MAX_PRODUCERS
MASK64 = (1 << 64) - 1
MIX_K = 0xFF51AFD7ED558CCD


def mix(v):
    """bench_mix(): v ^= v >> 33; v *= K (mod 2**64); v ^= v >> 33."""
    v ^= v >> 33
    v = (v * MIX_K) & MASK64
    v ^= v >> 33
    return v


def value(p, seq):
    return (p << 32) | seq


class CountingHandler(logging.Handler):
    """The sink: handle() does bench_sink_take() on the record's value."""

    def __init__(self, message):
        super().__init__()
        self.message = message
        self.next = [1] * MAX_PRODUCERS
        self.count = 0
        self.checksum = 0
        self.errors = 0

    def handle(self, record):
        if self.message:
            # bench_parse_hello(): "hello <decimal>", anything else is ~0.
            if record.startswith("hello ") and record.isascii() and record[6:].isdigit():
                v = int(record[6:])
            else:
                v = MASK64
        else:
            v = record
        p = v >> 32
        seq = v & 0xFFFFFFFF
        if p >= MAX_PRODUCERS or seq != self.next[p]:
            self.errors += 1
        else:
            self.next[p] = seq + 1
        self.count += 1
        v ^= v >> 33
        v = (v * MIX_K) & MASK64
        v ^= v >> 33
        self.checksum = (self.checksum + v) & MASK64
        return True

    def emit(self, record):  # never called: handle() does everything
        pass


_expected = {}


def expected_checksum(producers, n):
    """The checksum of records 1..n of producers 0..P-1 (computed once)."""
    key = (producers, n)
    if key not in _expected:
        total = 0
        for p in range(producers):
            for i in range(1, n + 1):
                total += mix(value(p, i))
        _expected[key] = total & MASK64
    return _expected[key]


def verify(h, producers, n):
    """bench_sink_verify(): '' if the handler saw exactly the records put."""
    want = expected_checksum(producers, n)
    if h.errors:
        return "%d records out of order, duplicated or unknown" % h.errors
    if h.count != producers * n:
        return "%d records arrived, %d were put" % (h.count, producers * n)
    for p in range(producers):
        if h.next[p] != n + 1:
            return "producer %d: last record %d of %d" % (p, h.next[p] - 1, n)
    if h.checksum != want:
        return "checksum %x, want %x" % (h.checksum, want)
    return ""


def emit(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def emit_e2e(variant, rep, producers, n, seconds, why):
    # Same keys, order and number formatting as bench_emit_e2e().
    emit(
        '{"workload":"e2e","contender":%s,"variant":%s,"rep":%d,"producers":%d,'
        '"records":%d,"seconds":%.6f,"ok":%s,"error":%s}'
        % (json.dumps(CONTENDER), json.dumps(variant), rep, producers, producers * n,
           seconds, "false" if why else "true", json.dumps(why))
    )


def emit_latency(mode, rep, ns):
    # Same keys, order, percentile index and formatting as bench_emit_latency().
    ns.sort()
    n = len(ns)

    def pct(q):
        return float(ns[int((n - 1) * q)])

    emit(
        '{"workload":"latency","contender":%s,"mode":%s,"rep":%d,"calls":%d,'
        '"p50_ns":%.1f,"p99_ns":%.1f,"p999_ns":%.1f,"max_ns":%.1f,"ok":true}'
        % (json.dumps(CONTENDER), json.dumps(mode), rep, n, pct(0.5), pct(0.99),
           pct(0.999), float(ns[-1]))
    )


def emit_latency_failure(mode, rep, calls, why):
    emit(
        '{"workload":"latency","contender":%s,"mode":%s,"rep":%d,"calls":%d,'
        '"ok":false,"error":%s}'
        % (json.dumps(CONTENDER), json.dumps(mode), rep, calls, json.dumps(why))
    )


def producer_values(q, p, n, go, starts):
    put = q.put
    base = p << 32
    go.wait()
    starts[p] = time.perf_counter()
    for i in range(1, n + 1):
        put(base | i)


def producer_messages(q, p, n, go, starts):
    put = q.put
    base = p << 32
    go.wait()
    starts[p] = time.perf_counter()
    for i in range(1, n + 1):
        put(f"hello {base | i}")


def run_e2e(variant, producers, n, rep):
    expected_checksum(producers, n)  # outside the measured span
    q = queue.SimpleQueue()
    h = CountingHandler(variant == "message")
    listener = logging.handlers.QueueListener(q, h, respect_handler_level=False)
    listener.start()
    go = threading.Barrier(producers + 1)
    target = producer_messages if variant == "message" else producer_values
    # Each producer reads the clock once released; the span starts at the
    # earliest (as in ql_bench.c and spdlog_bench.cpp).
    starts = [0.0] * producers
    threads = [
        threading.Thread(target=target, args=(q, p, n, go, starts)) for p in range(producers)
    ]
    for t in threads:
        t.start()
    go.wait()
    for t in threads:
        t.join()
    listener.stop()  # handles everything put before its sentinel, then joins
    seconds = time.perf_counter() - min(starts)
    emit_e2e(variant, rep, producers, n, seconds, verify(h, producers, n))


def run_latency(paced, calls, rep):
    mode = "paced" if paced else "saturating"
    expected_checksum(1, calls)
    q = queue.SimpleQueue()
    h = CountingHandler(False)
    listener = logging.handlers.QueueListener(q, h, respect_handler_level=False)
    listener.start()
    ns = [0] * calls
    put = q.put
    clock = time.perf_counter_ns
    if paced:
        for i in range(1, calls + 1):
            a = clock()
            put(i)
            b = clock()
            ns[i - 1] = b - a
            if i % 64 == 0:
                end = clock() + 50000
                while clock() < end:
                    pass
    else:
        for i in range(1, calls + 1):
            a = clock()
            put(i)
            b = clock()
            ns[i - 1] = b - a
    listener.stop()
    why = verify(h, 1, calls)
    if why:
        emit_latency_failure(mode, rep, calls, why)
    else:
        emit_latency(mode, rep, ns)


# ---------------------------------------------------------------- file sink

FILE_FORMAT = "%(asctime)s %(levelname)s [%(thread)d] %(name)s: %(message)s"
FILE_TAIL = "] bench: hello "


def file_producer(log, p, n, go, starts):
    info = log.info
    base = p << 32
    go.wait()
    starts[p] = time.perf_counter()
    for i in range(1, n + 1):
        info("hello %d", base | i)


def check_file(path, producers, n):
    """('' or why, lines read, bytes read): every producer's records 1..n once
    each, in order (bench_file_check in bench_file.h, without rotation)."""
    nxt = [1] * producers
    lines = 0
    size = 0
    with open(path, "rb") as f:
        for raw in f:
            lines += 1
            size += len(raw)
            line = raw.decode("ascii", "replace")
            at = line.rfind(FILE_TAIL)
            digits = line[at + len(FILE_TAIL):].rstrip("\n") if at > 0 else ""
            if not raw.endswith(b"\n") or not digits.isdigit() or not line[:1].isdigit():
                return "line %d is not a record: %.80s" % (lines, line), lines, size
            v = int(digits)
            p, seq = v >> 32, v & 0xFFFFFFFF
            if p >= producers or seq != nxt[p]:
                return "line %d: record %d of producer %d, expected %d" % (
                    lines, seq, p, nxt[p] if p < producers else -1), lines, size
            nxt[p] = seq + 1
    for p in range(producers):
        if nxt[p] != n + 1:
            return "producer %d: last record read %d of %d" % (p, nxt[p] - 1, n), lines, size
    return "", lines, size


def run_file(producers, n, rep, path):
    """logger.info -> QueueHandler -> SimpleQueue -> QueueListener ->
    FileHandler. The span ends when listener.stop() has returned (every
    record handled) and the handler is closed (its stream flushed)."""
    if os.path.exists(path):
        os.unlink(path)
    q = queue.SimpleQueue()
    fh = logging.FileHandler(path)
    fh.setFormatter(logging.Formatter(FILE_FORMAT))
    listener = logging.handlers.QueueListener(q, fh, respect_handler_level=False)
    log = logging.getLogger("bench")
    log.handlers.clear()
    log.addHandler(logging.handlers.QueueHandler(q))
    log.setLevel(logging.INFO)
    log.propagate = False
    listener.start()
    go = threading.Barrier(producers + 1)
    starts = [0.0] * producers
    threads = [threading.Thread(target=file_producer, args=(log, p, n, go, starts))
               for p in range(producers)]
    for t in threads:
        t.start()
    go.wait()
    for t in threads:
        t.join()
    listener.stop()
    fh.close()
    seconds = time.perf_counter() - min(starts)
    log.handlers.clear()
    why, lines, size = check_file(path, producers, n)
    os.unlink(path)
    emit('{"workload":"file","contender":%s,"variant":"file","rep":%d,"producers":%d,'
         '"records":%d,"seconds":%.6f,"lines_read":%d,"bytes_read":%d,"rotated_out":0,'
         '"files":1,"gz_files":0,"ok":%s,"error":%s}'
         % (json.dumps(CONTENDER), rep, producers, producers * n, seconds, lines, size,
            "false" if why else "true", json.dumps(why)))


def positive(s):
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=positive, default=1000000,
                    help="records per producer (end-to-end)")
    ap.add_argument("--reps", type=positive, default=5)
    ap.add_argument("--latency-calls", type=positive, default=128000,
                    help="calls per latency run, a multiple of 64")
    ap.add_argument("--file-records", type=positive,
                    help="records per producer of the file sink workload (default N)")
    ap.add_argument("--file-dir", default=".", help="where the file sink workload writes")
    only = ap.add_mutually_exclusive_group()
    only.add_argument("--no-file", action="store_true", help="skip the file sink workload")
    only.add_argument("--file-only", action="store_true", help="only the file sink workload")
    a = ap.parse_args()
    a.file_records = a.file_records or a.records
    if a.latency_calls % 64:
        ap.error("--latency-calls must be a multiple of 64")
    if max(a.records, a.latency_calls, a.file_records) > 0xFFFFFFFF:
        ap.error("--records, --latency-calls and --file-records must fit in 32 bits")

    for rep in range(0 if a.file_only else a.reps):
        for producers in (1, 2):
            for variant in ("value", "message"):
                run_e2e(variant, producers, a.records, rep)
        for paced in (True, False):
            run_latency(paced, a.latency_calls, rep)
    # The file sink, after the rest (as in ql_bench.c), with its own reps.
    for rep in range(0 if a.no_file else a.reps):
        for producers in (1, 2):
            run_file(producers, a.file_records, rep, os.path.join(a.file_dir, "python-file"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
