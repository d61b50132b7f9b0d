/*
 * test_journald: the journald handler against a real systemd-journald
 * (namespace mode), driven by tests/journald/driver.py, and without one.
 *
 *   test_journald fields SOCKET EXPECT   logs every kind of record and
 *                                        writes what each entry must hold
 *                                        (EXPECT, JSON lines, values hex)
 *   test_journald restart SOCKET         logs while the driver stops and
 *                                        restarts journald (steps on stdin)
 *   test_journald pause SOCKET           logs while the driver pauses and
 *                                        resumes journald (SIGSTOP/SIGCONT)
 *   test_journald down                   no journald: ENOENT, ECONNREFUSED,
 *                                        bad options (needs no server)
 *
 * Lines starting with '@' are for the driver; the rest is the usual
 * "  ok: ..." output of ql_test.h.
 */
#include "../c/ql_test.h"

#include <math.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>

static long long now_usec(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000000 + tv.tv_usec;
}

static unsigned tid(void) { return (unsigned)syscall(SYS_gettid); }

/* ------------------------------------------------------------ expectations */

static FILE *ex;
static int ex_first;

static void ex_begin(void) {
    fputs("{\"fields\":[", ex);
    ex_first = 1;
}

static void ex_bytes(const char *name, const void *value, size_t len) {
    const unsigned char *p = value;
    fprintf(ex, "%s[\"%s\",\"", ex_first ? "" : ",", name);
    for (size_t i = 0; i < len; i++) fprintf(ex, "%02x", p[i]);
    fputs("\"]", ex);
    ex_first = 0;
}

static void ex_str(const char *name, const char *value) { ex_bytes(name, value, strlen(value)); }

static void ex_num(const char *name, long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    ex_str(name, buf);
}

/* The fields every entry of the `fields` handler has: identifier (the
 * program's name by default), facility 16, logger, TID, time. */
static void ex_common(const char *message, size_t len, int priority, const char *logger,
                      unsigned thread) {
    ex_begin();
    ex_bytes("MESSAGE", message, len);
    ex_num("PRIORITY", priority);
    ex_str("SYSLOG_IDENTIFIER", "test_journald");
    ex_str("SYSLOG_FACILITY", "16");
    ex_str("QL_LOGGER", logger);
    ex_num("TID", thread);
}

static void ex_end(void) {
    fputs("],\"time\":true}\n", ex);
    fflush(ex);
}

static void ex_src(const char *file, unsigned line, const char *func) {
    ex_str("CODE_FILE", file);
    ex_num("CODE_LINE", line);
    ex_str("CODE_FUNC", func);
}

static ql_handler_stats stats_of(ql_listener *l, size_t i) {
    ql_handler_stats s;
    CHECK_EQ_STATUS(ql_listener_handler_stats(l, i, &s), QL_OK);
    CHECK(s.has_counts);
    CHECK_EQ_INT(s.received, s.sink.written + s.sink.lost + s.sink.pending);
    return s;
}

/* ------------------------------------------------------------ fields */

static ql_queue *g_queue;
static unsigned g_thread_tid;

static void *other_thread(void *arg) {
    (void)arg;
    g_thread_tid = tid();
    CHECK_EQ_STATUS(ql_log(g_queue, QL_LEVEL_INFO, "app.thread", "from another thread", 19), QL_OK);
    return NULL;
}

static int run_fields(const char *socket_path, const char *expect_path) {
    qlt_begin("test_journald fields");
    ex = fopen(expect_path, "w");
    CHECK(ex != NULL);
    fprintf(ex, "{\"t0\":%lld}\n", now_usec());
    unsigned me = tid();
    int n = 0;

    ql_journald_options o = ql_journald_options_default();
    o.socket_path = socket_path;
    o.facility = 16;
    o.write_timeout_ms = 10000;
    ql_handler h;
    CHECK_EQ_STATUS(ql_journald_handler(&o, &h), QL_OK);
    ql_queue *q;
    CHECK_EQ_STATUS(ql_queue_new(1024, &q), QL_OK);
    g_queue = q;
    ql_listener *l;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l), QL_OK);
    CHECK_EQ_STATUS(ql_start(l), QL_OK);

    /* 1. A plain message. */
    CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "app", "plain message", 13), QL_OK);
    ex_common("plain message", 13, 6, "app", me);
    ex_end();
    n++;

    /* 2. A multi-line message: the binary form. */
    const char *multi = "line one\nline two\n";
    CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_WARNING, "app.multi", multi, strlen(multi)), QL_OK);
    ex_common(multi, strlen(multi), 4, "app.multi", me);
    ex_end();
    n++;

    /* 3. Hostile bytes in the message and in a field: NUL, invalid UTF-8,
     * '=', newlines, CR, a lone '\n' at the start. */
    static const char hostile[] = "\na\0b=c\nMESSAGE=forged\n\xff\xfe\xc3(end\r\t=";
    size_t hl = sizeof hostile - 1;
    ql_field hf[] = {ql_field_strn("payload", hostile, hl), ql_field_strn("eq", "k=v=w", 5)};
    CHECK_EQ_STATUS(ql_log_fields(q, QL_LEVEL_ERROR, "app.hostile", hf, 2, hostile, hl), QL_OK);
    ex_common(hostile, hl, 3, "app.hostile", me);
    ex_bytes("PAYLOAD", hostile, hl);
    ex_str("EQ", "k=v=w");
    ex_end();
    n++;

    /* 4. Every field type. */
    ql_field tf[] = {
        ql_field_str("s", "text value"),      ql_field_int("i", -42),
        ql_field_int("imin", INT64_MIN),      ql_field_uint("u", UINT64_MAX),
        ql_field_double("d", 0.5),            ql_field_double("big", 1e300),
        ql_field_double("nan", NAN),          ql_field_double("neg_inf", -INFINITY),
        ql_field_double("whole", 2.0),        ql_field_bool("yes", true),
        ql_field_bool("no", false),           ql_field_str("empty", ""),
    };
    CHECK_EQ_STATUS(ql_log_fields(q, QL_LEVEL_CRITICAL, "app.types", tf, 12, "types", 5), QL_OK);
    ex_common("types", 5, 2, "app.types", me);
    ex_str("S", "text value");
    ex_str("I", "-42");
    ex_str("IMIN", "-9223372036854775808");
    ex_str("U", "18446744073709551615");
    ex_str("D", "0.5");
    ex_str("BIG", "1e300");
    ex_str("NAN", "NaN");
    ex_str("NEG_INF", "-inf");
    ex_str("WHOLE", "2.0");
    ex_str("YES", "true");
    ex_str("NO", "false");
    ex_str("EMPTY", "");
    ex_end();
    n++;

    /* 5. Key mapping: collisions with the handler's own fields, names
     * journald would refuse, keys differing only in case (two values). */
    ql_field kf[] = {
        ql_field_str("message", "not the message"), ql_field_str("priority", "0"),
        ql_field_str("tid", "1"),                   ql_field_str("_hidden", "h"),
        ql_field_str("9lives", "cat"),              ql_field_str("http.status-code", "404"),
        ql_field_str("Req-Id", "first"),            ql_field_str("req_id", "second"),
        ql_field_str("message_id", "0123456789abcdef0123456789abcdef"),
        ql_field_str("ql.logger", "x"),
    };
    CHECK_EQ_STATUS(ql_log_fields(q, QL_LEVEL_DEBUG, "app.keys", kf, 10, "keys", 4), QL_OK);
    ex_common("keys", 4, 7, "app.keys", me);
    ex_str("F_MESSAGE", "not the message");
    ex_str("F_PRIORITY", "0");
    ex_str("F_TID", "1");
    ex_str("F__HIDDEN", "h");
    ex_str("F_9LIVES", "cat");
    ex_str("HTTP_STATUS_CODE", "404");
    ex_str("REQ_ID", "first");
    ex_str("REQ_ID", "second");
    ex_str("MESSAGE_ID", "0123456789abcdef0123456789abcdef");
    ex_str("F_QL_LOGGER", "x");
    ex_end();
    n++;

    /* 6. Context fields and the call-site macro's source location. */
    CHECK_EQ_STATUS(ql_context_set(ql_field_str("request_id", "r-77")), QL_OK);
    CHECK_EQ_STATUS(ql_context_set(ql_field_int("user", 5)), QL_OK);
    unsigned line = __LINE__; CHECK_EQ_STATUS(QL_INFO(q, "app.src", "macro %d", 6), QL_OK);
    ex_common("macro 6", 7, 6, "app.src", me);
    ex_src(__FILE__, line, __func__);
    ex_str("REQUEST_ID", "r-77");
    ex_str("USER", "5");
    ex_end();
    n++;

    /* 7. ql_log_src: an explicit source; the call's field wins over the
     * context field of the same key. */
    ql_source src = {"src/x.c", 99, "handler_fn"};
    ql_field cf[] = {ql_field_str("request_id", "call-wins")};
    CHECK_EQ_STATUS(ql_log_src(q, QL_LEVEL_WARNING, "app.src", &src, cf, 1, "src", 3, NULL), QL_OK);
    ex_common("src", 3, 4, "app.src", me);
    ex_src("src/x.c", 99, "handler_fn");
    ex_str("REQUEST_ID", "call-wins");
    ex_str("USER", "5");
    ex_end();
    n++;
    ql_context_clear();

    /* 8. Levels between and beyond the named ones. */
    int levels[][2] = {{25, 5}, {35, 4}, {45, 3}, {60, 1}, {70, 0}, {-5, 7}, {0, 7}};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        char m[32];
        int ml = snprintf(m, sizeof m, "level %d", levels[i][0]);
        CHECK_EQ_STATUS(ql_log(q, levels[i][0], "app.levels", m, (size_t)ml), QL_OK);
        ex_common(m, (size_t)ml, levels[i][1], "app.levels", me);
        ex_end();
        n++;
    }

    /* 9. A 1 MiB message (QL_MESSAGE_MAX, kept whole) with newlines: a
     * sealed memfd. */
    size_t big = QL_MESSAGE_MAX;
    char *bm = malloc(big);
    CHECK(bm != NULL);
    for (size_t i = 0; i < big; i++) bm[i] = (char)('a' + i % 26);
    for (size_t i = 1000; i < big; i += 4096) bm[i] = '\n';
    CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "app.big", bm, big), QL_OK);
    ex_common(bm, big, 6, "app.big", me);
    ex_end();
    n++;

    /* 10. A field of 300 KiB (over the 128 KiB datagram bound). */
    ql_field bf[] = {ql_field_strn("blob", bm, 300 * 1024)};
    CHECK_EQ_STATUS(ql_log_fields(q, QL_LEVEL_INFO, "app.big", bf, 1, "big field", 9), QL_OK);
    ex_common("big field", 9, 6, "app.big", me);
    ex_bytes("BLOB", bm, 300 * 1024);
    ex_end();
    n++;

    /* Everything so far is sent before the next record's thread runs, so
     * the order of the entries is the order above. */
    CHECK_EQ_STATUS(ql_listener_flush(l, 20000), QL_OK);

    /* 11. Another thread: its own TID, none of this thread's context. */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    ex_common("from another thread", 19, 6, "app.thread", g_thread_tid);
    ex_end();
    n++;

    CHECK_EQ_STATUS(ql_stop(l), QL_OK);
    ql_handler_stats s = stats_of(l, 0);
    CHECK_EQ_INT(s.received, n);
    CHECK_EQ_INT(s.sink.written, n);
    CHECK_EQ_INT(s.sink.lost, 0);
    CHECK_EQ_INT(s.errors, 0);
    CHECK_EQ_INT(s.sink.write_errors, 0);
    PASS("%d records sent, written == %d, lost == 0", n, n);
    CHECK_EQ_STATUS(ql_listener_free(l), QL_OK);
    ql_queue_free(q);
    free(bm);
    fprintf(ex, "{\"t1\":%lld}\n", now_usec());
    fclose(ex);
    printf("@entries %d\n", n);
    return qlt_end();
}

/* ------------------------------------------------------------ restart */

/* Waits for the driver's next line on stdin; it must be `want`. */
static void step(const char *want) {
    char line[64];
    printf("@waiting %s\n", want);
    fflush(stdout);
    alarm(QLT_WATCHDOG_SECONDS);
    if (fgets(line, sizeof line, stdin) == NULL) QLT_FAIL("driver gone before '%s'", want);
    line[strcspn(line, "\n")] = 0;
    if (strcmp(line, want) != 0) QLT_FAIL("driver said '%s', expected '%s'", line, want);
}

static void log_range(ql_queue *q, const char *phase, int from, int to) {
    for (int i = from; i < to; i++) {
        char m[64];
        int ml = snprintf(m, sizeof m, "restart %s %d", phase, i);
        CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "app.restart", m, (size_t)ml), QL_OK);
    }
}

/*
 * Two handlers: "held" keeps 4 MiB for a retry, "nohold" none. Phase A
 * (journald up): 200 records, flushed; the driver waits until they are all
 * in the journal, stops journald and says "down". Phase B: 100 records,
 * flushed: "held" holds them (ECONNREFUSED), "nohold" loses them. The
 * driver restarts journald and says "up". Phase C: 200 records, then the
 * stop: "held" sends B and C, "nohold" C.
 */
static int run_restart(const char *socket_path) {
    qlt_begin("test_journald restart");
    enum { A = 200, B = 100, C = 200 };
    ql_journald_options o = ql_journald_options_default();
    o.socket_path = socket_path;
    o.identifier = "ql-held";
    o.write_timeout_ms = 10000;
    ql_handler h[2];
    CHECK_EQ_STATUS(ql_journald_handler(&o, &h[0]), QL_OK);
    o.identifier = "ql-nohold";
    o.retry_bytes = 0;
    CHECK_EQ_STATUS(ql_journald_handler(&o, &h[1]), QL_OK);
    ql_queue *q;
    CHECK_EQ_STATUS(ql_queue_new(1024, &q), QL_OK);
    ql_listener *l;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, h, 2, NULL, false, &l), QL_OK);
    CHECK_EQ_STATUS(ql_start(l), QL_OK);

    log_range(q, "A", 0, A);
    CHECK_EQ_STATUS(ql_listener_flush(l, 20000), QL_OK);
    for (size_t i = 0; i < 2; i++) {
        ql_handler_stats s = stats_of(l, i);
        CHECK_EQ_INT(s.sink.written, A);
    }
    PASS("phase A: %d written by both handlers", A);
    printf("@sent A %d\n", A);
    step("down");

    /* Phase B is handled, not flushed (a flush is final: it would count
     * what it cannot send lost): the listener's batch ends retry, fail
     * and keep what "held" holds. */
    log_range(q, "B", 0, B);
    /* Wait until the listener handled B (both handlers received it). */
    for (int tries = 0;; tries++) {
        ql_handler_stats s0 = stats_of(l, 0), s1 = stats_of(l, 1);
        if (s0.received == A + B && s1.received == A + B) break;
        if (tries > 2000) QLT_FAIL("phase B not handled in 20 s");
        qlt_sleep_ms(10);
    }
    ql_handler_stats held = stats_of(l, 0), nohold = stats_of(l, 1);
    CHECK_EQ_INT(held.sink.written, A);
    CHECK_EQ_INT(held.sink.lost, 0);
    CHECK_EQ_INT(held.sink.pending, B);
    CHECK(held.sink.last_errno == ECONNREFUSED || held.sink.last_errno == ENOENT);
    CHECK(held.errors >= 1);
    CHECK_EQ_INT(nohold.sink.written, A);
    CHECK_EQ_INT(nohold.sink.lost, B);
    CHECK_EQ_INT(nohold.sink.pending, 0);
    CHECK(nohold.sink.last_errno == ECONNREFUSED || nohold.sink.last_errno == ENOENT);
    PASS("phase B (journald down, errno %d): held keeps %d pending, nohold lost %d",
         held.sink.last_errno, B, B);
    step("up");

    log_range(q, "C", 0, C);
    CHECK_EQ_STATUS(ql_stop(l), QL_ERR_LOST);
    held = stats_of(l, 0);
    nohold = stats_of(l, 1);
    CHECK_EQ_INT(held.sink.written, A + B + C);
    CHECK_EQ_INT(held.sink.lost, 0);
    CHECK_EQ_INT(held.sink.pending, 0);
    CHECK_EQ_INT(nohold.sink.written, A + C);
    CHECK_EQ_INT(nohold.sink.lost, B);
    CHECK_EQ_INT(nohold.sink.pending, 0);
    PASS("after the restart: held wrote %d (lost 0), nohold wrote %d (lost %d)", A + B + C,
         A + C, B);
    printf("@held written %d lost 0\n@nohold written %d lost %d\n", A + B + C, A + C, B);
    CHECK_EQ_STATUS(ql_listener_free(l), QL_OK);
    ql_queue_free(q);
    return qlt_end();
}

/* ------------------------------------------------------------ pause */

/*
 * journald paused (SIGSTOP) mid-stream. Phase A: 50 records arrive. The
 * driver stops journald. Phase B: 2000 records, then a flush: sends wait
 * write_timeout_ms (1000) once, then only probe, the flush once more; what fits in journald's
 * socket queue is written, the rest held within retry_bytes (16 KiB) and
 * lost at the flush, all within a bound of time. The driver resumes
 * journald. Phase C: 50 records. Every record counted written arrives
 * (the driver checks: A, the first W of B, C), every other one is lost.
 */
static int run_pause(const char *socket_path) {
    qlt_begin("test_journald pause");
    enum { A = 50, B = 2000, C = 50 };
    ql_journald_options o = ql_journald_options_default();
    o.socket_path = socket_path;
    o.identifier = "ql-pause";
    o.write_timeout_ms = 1000;
    o.retry_bytes = 16 * 1024;
    ql_handler h;
    CHECK_EQ_STATUS(ql_journald_handler(&o, &h), QL_OK);
    ql_queue *q;
    CHECK_EQ_STATUS(ql_queue_new(1024, &q), QL_OK);
    ql_listener *l;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l), QL_OK);
    CHECK_EQ_STATUS(ql_start(l), QL_OK);
    log_range(q, "A", 0, A);
    CHECK_EQ_STATUS(ql_listener_flush(l, 20000), QL_OK);
    CHECK_EQ_INT(stats_of(l, 0).sink.written, A);
    PASS("phase A: %d written", A);
    step("paused");

    long long t0 = now_usec();
    log_range(q, "B", 0, B);
    CHECK_EQ_STATUS(ql_listener_flush(l, 20000), QL_ERR_LOST);
    long long ms = (now_usec() - t0) / 1000;
    ql_handler_stats s = stats_of(l, 0);
    unsigned long long w = s.sink.written - A;
    CHECK_EQ_INT(s.received, A + B);
    CHECK_EQ_INT(s.sink.pending, 0);
    CHECK_EQ_INT(w + s.sink.lost, B);
    CHECK(s.sink.lost > 0);
    CHECK_EQ_INT(s.sink.last_errno, EAGAIN);
    /* One write timeout (1 s) while handling and one in the flush, not one
     * per record or per batch. */
    if (ms > 6000) QLT_FAIL("phase B took %lld ms", ms);
    PASS("phase B (journald stopped): %llu written, %llu lost (EAGAIN), %lld ms", w,
         (unsigned long long)s.sink.lost, ms);
    printf("@paused_written %llu\n", w);
    step("resumed");

    log_range(q, "C", 0, C);
    CHECK_EQ_STATUS(ql_stop(l), QL_OK);
    ql_handler_stats e = stats_of(l, 0);
    CHECK_EQ_INT(e.sink.written, A + w + C);
    CHECK_EQ_INT(e.sink.lost, s.sink.lost);
    PASS("phase C (resumed): %d more written", C);
    printf("@total_written %llu\n", (unsigned long long)e.sink.written);
    CHECK_EQ_STATUS(ql_listener_free(l), QL_OK);
    ql_queue_free(q);
    return qlt_end();
}

/* ------------------------------------------------------------ down */

/* Logs `count` records through one handler on `socket_path`, stops, and
 * returns its stats; the whole run must take under `max_ms`. */
static ql_handler_stats log_to(const char *socket_path, int count, uint64_t retry_bytes,
                               long max_ms) {
    ql_journald_options o = ql_journald_options_default();
    o.socket_path = socket_path;
    o.retry_bytes = retry_bytes;
    ql_handler h;
    CHECK_EQ_STATUS(ql_journald_handler(&o, &h), QL_OK);
    ql_queue *q;
    CHECK_EQ_STATUS(ql_queue_new(64, &q), QL_OK);
    ql_listener *l;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l), QL_OK);
    long long t0 = now_usec();
    CHECK_EQ_STATUS(ql_start(l), QL_OK);
    for (int i = 0; i < count; i++) {
        CHECK_EQ_STATUS(ql_logf(q, QL_LEVEL_INFO, "app", "nobody hears %d", i), QL_OK);
    }
    CHECK_EQ_STATUS(ql_stop(l), QL_ERR_LOST);
    long long ms = (now_usec() - t0) / 1000;
    if (ms > max_ms) QLT_FAIL("took %lld ms (bound %ld)", ms, max_ms);
    ql_handler_stats s = stats_of(l, 0);
    CHECK_EQ_STATUS(ql_listener_free(l), QL_OK);
    ql_queue_free(q);
    return s;
}

static int run_down(void) {
    qlt_begin("test_journald down");
    char dir[] = "/tmp/ql-jdown-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[100];

    /* No socket at all (journald not running, or not installed). */
    snprintf(path, sizeof path, "%s/missing/socket", dir);
    ql_handler_stats s = log_to(path, 1000, 4 << 20, 5000);
    CHECK_EQ_INT(s.received, 1000);
    CHECK_EQ_INT(s.sink.written, 0);
    CHECK_EQ_INT(s.sink.lost, 1000);
    CHECK_EQ_INT(s.sink.pending, 0);
    CHECK_EQ_INT(s.sink.last_errno, ENOENT);
    CHECK(s.errors >= 1);
    PASS("no socket: 1000 lost, errno ENOENT, %llu handle errors",
         (unsigned long long)s.errors);

    /* A socket file nobody listens on (journald stopped): ECONNREFUSED. */
    snprintf(path, sizeof path, "%s/socket", dir);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    close(fd);
    s = log_to(path, 1000, 0, 5000);
    CHECK_EQ_INT(s.sink.written, 0);
    CHECK_EQ_INT(s.sink.lost, 1000);
    CHECK_EQ_INT(s.sink.last_errno, ECONNREFUSED);
    PASS("socket without a reader, retry_bytes 0: 1000 lost, errno ECONNREFUSED");

    /* A reader that never reads: its queue fills, sends wait
     * write_timeout_ms (EAGAIN), held entries are dropped past retry_bytes
     * and the rest at the stop; bounded in time. */
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    unlink(path);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    {
        ql_journald_options o = ql_journald_options_default();
        o.socket_path = path;
        o.write_timeout_ms = 100;
        o.retry_bytes = 64 * 1024;
        ql_handler h;
        CHECK_EQ_STATUS(ql_journald_handler(&o, &h), QL_OK);
        ql_queue *q;
        CHECK_EQ_STATUS(ql_queue_new(64, &q), QL_OK);
        ql_listener *l;
        CHECK_EQ_STATUS(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l), QL_OK);
        long long t0 = now_usec();
        CHECK_EQ_STATUS(ql_start(l), QL_OK);
        for (int i = 0; i < 5000; i++) {
            CHECK_EQ_STATUS(ql_logf(q, QL_LEVEL_INFO, "app", "stalled reader %d", i), QL_OK);
        }
        CHECK_EQ_STATUS(ql_stop(l), QL_ERR_LOST);
        long long ms = (now_usec() - t0) / 1000;
        s = stats_of(l, 0);
        CHECK_EQ_INT(s.received, 5000);
        CHECK(s.sink.written > 0);
        CHECK(s.sink.lost > 0);
        CHECK_EQ_INT(s.sink.written + s.sink.lost, 5000);
        CHECK_EQ_INT(s.sink.last_errno, EAGAIN);
        /* The kernel's count of what the reader holds equals written. */
        int got = 0;
        char buf[512];
        while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) got++;
        CHECK_EQ_INT(got, s.sink.written);
        /* One write timeout (100 ms) while handling and one in the stop's
         * flush, not one per retry or batch. */
        if (ms > 1500) QLT_FAIL("stalled reader: %lld ms", ms);
        PASS("stalled reader: %llu written (all %d in its queue), %llu lost, EAGAIN, %lld ms",
             (unsigned long long)s.sink.written, got, (unsigned long long)s.sink.lost, ms);
        CHECK_EQ_STATUS(ql_listener_free(l), QL_OK);
        ql_queue_free(q);
    }

    /* No fd left for the memfd (RLIMIT_NOFILE at the limit): the big entry
     * alone is lost, counted with EMFILE; the entries around it go. */
    {
        char buf[512];
        while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
        }
        ql_journald_options o = ql_journald_options_default();
        o.socket_path = path;
        o.retry_bytes = 0;
        ql_handler h;
        CHECK_EQ_STATUS(ql_journald_handler(&o, &h), QL_OK);
        ql_queue *q;
        CHECK_EQ_STATUS(ql_queue_new(64, &q), QL_OK);
        ql_listener *l;
        CHECK_EQ_STATUS(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l), QL_OK);
        CHECK_EQ_STATUS(ql_start(l), QL_OK);
        CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "app", "before", 6), QL_OK);
        CHECK_EQ_STATUS(ql_listener_flush(l, 10000), QL_OK); /* connected now */
        struct rlimit old_lim, lim;
        CHECK(getrlimit(RLIMIT_NOFILE, &old_lim) == 0);
        int lowest = dup(0);
        CHECK(lowest >= 0);
        close(lowest);
        lim = old_lim;
        lim.rlim_cur = (rlim_t)lowest; /* every fd below it is in use */
        CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0);
        CHECK(dup(0) < 0 && errno == EMFILE);
        size_t big_len = 300 * 1024;
        char *big = malloc(big_len);
        CHECK(big != NULL);
        memset(big, 'm', big_len);
        CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "app", big, big_len), QL_OK);
        CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "app", "after", 5), QL_OK);
        ql_status st = ql_listener_flush(l, 10000);
        CHECK(setrlimit(RLIMIT_NOFILE, &old_lim) == 0);
        free(big);
        CHECK_EQ_STATUS(st, QL_ERR_LOST);
        s = stats_of(l, 0);
        CHECK_EQ_INT(s.received, 3);
        CHECK_EQ_INT(s.sink.written, 2);
        CHECK_EQ_INT(s.sink.lost, 1);
        CHECK_EQ_INT(s.sink.last_errno, EMFILE);
        int got = 0;
        while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) got++;
        CHECK_EQ_INT(got, 2);
        PASS("no fd for a memfd: the 300 KiB entry lost (EMFILE), the two around it written");
        CHECK_EQ_STATUS(ql_stop(l), QL_OK);
        CHECK_EQ_STATUS(ql_listener_free(l), QL_OK);
        ql_queue_free(q);
    }
    close(fd);
    unlink(path);

    /* Something else at the socket path: a regular file, a directory, a
     * stream socket. Every record lost and counted, bounded in time. */
    {
        const char *kinds[] = {"regular file", "directory", "stream socket"};
        for (int k = 0; k < 3; k++) {
            if (k == 0) {
                int f = open(path, O_CREAT | O_WRONLY, 0600);
                CHECK(f >= 0);
                close(f);
            } else if (k == 1) {
                CHECK(mkdir(path, 0700) == 0);
            } else {
                fd = socket(AF_UNIX, SOCK_STREAM, 0);
                CHECK(fd >= 0);
                CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
                CHECK(listen(fd, 4) == 0);
            }
            s = log_to(path, 100, 4 << 20, 5000);
            CHECK_EQ_INT(s.sink.written, 0);
            CHECK_EQ_INT(s.sink.lost, 100);
            CHECK(s.sink.last_errno != 0);
            PASS("%s at the socket path: 100 lost, errno %d (%s)", kinds[k],
                 s.sink.last_errno, strerror(s.sink.last_errno));
            if (k == 1) {
                CHECK(rmdir(path) == 0);
            } else {
                if (k == 2) close(fd);
                CHECK(unlink(path) == 0);
            }
        }
    }
    CHECK(rmdir(dir) == 0);

    /* Bad options. */
    ql_handler h;
    ql_journald_options o = ql_journald_options_default();
    CHECK_EQ_STATUS(ql_journald_handler(&o, NULL), QL_ERR_NULL);
    o.socket_path = "";
    CHECK_EQ_STATUS(ql_journald_handler(&o, &h), QL_ERR_INVALID);
    char longp[200];
    memset(longp, 'x', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = 0;
    o.socket_path = longp;
    CHECK_EQ_STATUS(ql_journald_handler(&o, &h), QL_ERR_INVALID);
    o = ql_journald_options_default();
    o.facility = 24;
    CHECK_EQ_STATUS(ql_journald_handler(&o, &h), QL_ERR_INVALID);
    o.facility = -2;
    CHECK_EQ_STATUS(ql_journald_handler(&o, &h), QL_ERR_INVALID);
    o = ql_journald_options_default();
    o.identifier = "two\nlines";
    CHECK_EQ_STATUS(ql_journald_handler(&o, &h), QL_ERR_INVALID);
    /* NULL options are the defaults: made, freed, never used (the system
     * journal is never written by the tests). */
    CHECK_EQ_STATUS(ql_journald_handler(NULL, &h), QL_OK);
    ql_handler_free(&h);
    PASS("bad options: QL_ERR_NULL / QL_ERR_INVALID");
    return qlt_end();
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "fields") == 0) return run_fields(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "restart") == 0) return run_restart(argv[2]);
    if (argc == 3 && strcmp(argv[1], "pause") == 0) return run_pause(argv[2]);
    if (argc == 2 && strcmp(argv[1], "down") == 0) return run_down();
    fprintf(stderr, "usage: test_journald fields SOCKET EXPECT | restart SOCKET | pause SOCKET | down\n");
    return 2;
}
