/*
 * syslog_client: the C side of the syslog tests (tests/syslog/run.sh starts
 * a private rsyslogd and runs this with a case name; check.py then reads
 * what rsyslog wrote). Every case checks the handlers' own account here
 * and prints what check.py needs (pid, thread id, source line, counts).
 *
 * Environment (from run.sh): QLS_DIR, QLS_TCP, QLS_TLS, QLS_UDP, QLS_RELP
 * and QLS_HOOK (a command: QLS_HOOK ACTION DIR starts, stops, kills,
 * restarts, pauses or resumes the server).
 */
#include "ql_test.h"

#include <sys/syscall.h>
#include <sys/wait.h>

static const char *dir;
static char path_buf[4][512];

static uint16_t port(const char *name) {
    const char *v = getenv(name);
    CHECK(v != NULL);
    return (uint16_t)atoi(v);
}

static void hook(const char *action) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s %s", getenv("QLS_HOOK"), action, dir);
    long long t0 = qlt_now_ms();
    int rc = system(cmd);
    if (rc != 0) QLT_FAIL("hook %s failed: %d", action, rc);
    printf("hook %s: %lld ms\n", action, qlt_now_ms() - t0);
    fflush(stdout);
}

static const char *in_dir(int slot, const char *name) {
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", dir, name);
    return path_buf[slot];
}

static ql_syslog_options opts(int transport, int format, const char *app) {
    ql_syslog_options o = ql_syslog_options_default();
    o.transport = transport;
    o.format = format;
    o.app_name = app;
    o.hostname = "qlhost";
    o.msgid = "M1";
    o.facility = QL_SYSLOG_FACILITY_LOCAL3;
    o.host = "127.0.0.1";
    switch (transport) {
        case QL_SYSLOG_TCP: o.port = port("QLS_TCP"); break;
        case QL_SYSLOG_UDP: o.port = port("QLS_UDP"); break;
        case QL_SYSLOG_TLS:
            o.port = port("QLS_TLS");
            o.ca_file = in_dir(0, "ca.pem");
            o.server_name = "localhost";
            break;
        case QL_SYSLOG_RELP: o.port = port("QLS_RELP"); break;
        default: break;
    }
    return o;
}

static ql_handler make(const ql_syslog_options *o) {
    ql_handler h;
    CHECK_EQ_STATUS(ql_syslog_handler(o, &h), QL_OK);
    return h;
}

static ql_handler_stats hstats(const ql_listener *l, size_t i) {
    ql_handler_stats s;
    CHECK_EQ_STATUS(ql_listener_handler_stats(l, i, &s), QL_OK);
    CHECK(s.has_counts);
    CHECK(s.received == s.sink.written + s.sink.lost + s.sink.pending);
    return s;
}

static void print_stats(const char *name, const ql_listener *l, size_t i) {
    ql_handler_stats s = hstats(l, i);
    printf("stats %s received=%llu written=%llu lost=%llu pending=%llu write_errors=%llu "
           "reopens=%llu resent=%llu last_errno=%d\n",
           name, (unsigned long long)s.received, (unsigned long long)s.sink.written,
           (unsigned long long)s.sink.lost, (unsigned long long)s.sink.pending,
           (unsigned long long)s.sink.write_errors, (unsigned long long)s.sink.reopens,
           (unsigned long long)s.sink.resent, s.sink.last_errno);
    fflush(stdout);
}

static ql_queue *new_queue(int overflow, size_t capacity) {
    ql_queue_options qo = ql_queue_options_default();
    qo.overflow = overflow;
    qo.capacity = capacity;
    ql_queue *q;
    CHECK_EQ_STATUS(ql_queue_new_with_options(&qo, &q), QL_OK);
    return q;
}

/* ------------------------------------------------------------ bad options */

static void bad_options(void) {
    ql_handler h;
    ql_syslog_options o = ql_syslog_options_default();
    CHECK_EQ_STATUS(ql_syslog_handler(&o, NULL), QL_ERR_NULL);
    o.facility = 24;
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    o = ql_syslog_options_default();
    o.app_name = "two words";
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    o = ql_syslog_options_default();
    o.msgid = "123456789012345678901234567890123"; /* 33 > 32 */
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    o = ql_syslog_options_default();
    o.transport = 99;
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    o = ql_syslog_options_default();
    o.format = 7;
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    o = ql_syslog_options_default();
    o.max_message_bytes = 100;
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    o = ql_syslog_options_default();
    o.buffer_bytes = 1000; /* below max_message_bytes */
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    o = ql_syslog_options_default();
    o.transport = QL_SYSLOG_UDP;
    o.max_message_bytes = 70000;
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    o = ql_syslog_options_default();
    o.transport = QL_SYSLOG_TLS; /* no CA file */
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    o.ca_file = in_dir(1, "no-such-ca.pem");
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    o.ca_file = in_dir(1, "rsyslog.conf"); /* no certificate in it */
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    o = ql_syslog_options_default();
    o.timeout_ms = 0;
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    o = ql_syslog_options_default();
    o.transport = QL_SYSLOG_RELP;
    o.relp_window = 0;
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
    /* A unix socket path longer than sun_path (107 bytes and a NUL) can
     * never be connected: refused now, as the journald handler does. */
    {
        char long_path[200];
        memset(long_path, 'p', sizeof long_path - 1);
        long_path[0] = '/';
        long_path[sizeof long_path - 1] = '\0';
        o = ql_syslog_options_default();
        o.path = long_path;
        CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
        long_path[108] = '\0'; /* 108 bytes: no room for the NUL */
        CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_ERR_INVALID);
        long_path[107] = '\0'; /* 107: the longest there is */
        CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_OK);
        ql_handler_free(&h);
    }
    /* An unreachable server is no error: made, freed, nothing received. */
    o = ql_syslog_options_default();
    o.transport = QL_SYSLOG_TCP;
    o.host = "127.0.0.1";
    o.port = 1;
    o.flush_timeout_ms = 0;
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_OK);
    ql_handler_free(&h);
    PASS("bad options refused with QL_ERR_INVALID / QL_ERR_NULL; an unreachable server is no error");

    /* A fork child freeing an inherited handler returns at once (the
     * thread is the parent's); the parent's copy still works. */
    o = ql_syslog_options_default();
    o.transport = QL_SYSLOG_UDP;
    o.host = "127.0.0.1";
    o.port = port("QLS_UDP");
    o.flush_timeout_ms = 0;
    CHECK_EQ_STATUS(ql_syslog_handler(&o, &h), QL_OK);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        alarm(5); /* a hang becomes a SIGALRM death the parent sees */
        ql_handler_free(&h);
        _exit(h.handle == NULL ? 0 : 3);
    }
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ql_handler_free(&h);
    PASS("a fork child frees an inherited syslog handler without touching the parent's thread");
}

/* ------------------------------------------------------------ fields */

enum { N_FIELD_HANDLERS = 10 };

static int case_fields(void) {
    bad_options();
    ql_queue *q = new_queue(QL_OVERFLOW_BLOCK, 1024);
    ql_handler hs[N_FIELD_HANDLERS];
    ql_syslog_options o;
    o = opts(QL_SYSLOG_UNIX, QL_SYSLOG_RFC3164, "ql-unix3164");
    o.path = in_dir(2, "log.sock");
    hs[0] = make(&o);
    o = opts(QL_SYSLOG_UNIX, QL_SYSLOG_RFC5424, "ql-unix5424");
    o.path = in_dir(3, "log5424.sock");
    hs[1] = make(&o);
    o = opts(QL_SYSLOG_UDP, QL_SYSLOG_RFC3164, "ql-udp3164");
    hs[2] = make(&o);
    o = opts(QL_SYSLOG_UDP, QL_SYSLOG_RFC5424, "ql-udp5424");
    hs[3] = make(&o);
    o = opts(QL_SYSLOG_TCP, QL_SYSLOG_RFC5424, "ql-tcp");
    hs[4] = make(&o);
    o = opts(QL_SYSLOG_TLS, QL_SYSLOG_RFC5424, "ql-tls");
    hs[5] = make(&o);
    o = opts(QL_SYSLOG_RELP, QL_SYSLOG_RFC5424, "ql-relp");
    hs[6] = make(&o);
    /* TLS that must fail verification: a CA that signed nothing here, and
     * a name the certificate is not for. Nothing may reach the server. */
    o = opts(QL_SYSLOG_TLS, QL_SYSLOG_RFC5424, "ql-tls-badca");
    o.ca_file = in_dir(1, "other.pem");
    o.flush_timeout_ms = 300;
    hs[7] = make(&o);
    o = opts(QL_SYSLOG_TLS, QL_SYSLOG_RFC5424, "ql-tls-badname");
    o.server_name = "wrong.example";
    o.flush_timeout_ms = 300;
    hs[8] = make(&o);
    /* Messages longer than 1024 bytes are cut there. */
    o = opts(QL_SYSLOG_TCP, QL_SYSLOG_RFC5424, "ql-cut");
    o.max_message_bytes = 1024;
    hs[9] = make(&o);

    ql_listener *l;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, hs, N_FIELD_HANDLERS, NULL, false, &l), QL_OK);
    CHECK_EQ_STATUS(ql_start(l), QL_OK);

    CHECK_EQ_STATUS(ql_context_set(ql_field_str("req", "r-1")), QL_OK);
    ql_field f[5] = {
        ql_field_str("user", "al \"ice\"] \\x"),
        ql_field_int("n", -42),
        ql_field_uint("u", UINT64_MAX),
        ql_field_double("d", 0.5),
        ql_field_bool("ok", true),
    };
    int line = __LINE__ + 1;
    CHECK_EQ_STATUS(QL_LOG_FIELDS(q, QL_LEVEL_WARNING, "app.db", f, 5, "hello w\xc3\xb6rld\nsecond ] \" \\ %d", 7), QL_OK);
    ql_context_clear();
    CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, NULL, "plain", 5), QL_OK);
    static char longmsg[2000];
    memset(longmsg, 'x', sizeof longmsg);
    CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "long", longmsg, sizeof longmsg), QL_OK);
    printf("pid=%d\ntid=%ld\nfile=%s\nline=%d\nfunc=%s\n", (int)getpid(), (long)syscall(SYS_gettid),
           __FILE__, line, __func__);

    /* The bad-TLS handlers lose their two records: QL_ERR_LOST. */
    ql_status st = ql_stop(l);
    CHECK(st == QL_OK || st == QL_ERR_LOST);
    const char *names[N_FIELD_HANDLERS] = {"unix3164", "unix5424", "udp3164", "udp5424", "tcp",
                                           "tls", "relp", "tls-badca", "tls-badname", "cut"};
    for (size_t i = 0; i < N_FIELD_HANDLERS; i++) print_stats(names[i], l, i);
    for (size_t i = 0; i < N_FIELD_HANDLERS; i++) {
        if (i == 7 || i == 8) continue;
        ql_handler_stats s = hstats(l, i);
        if (s.received != 3 || s.sink.written != 3 || s.sink.lost != 0 || s.sink.pending != 0)
            QLT_FAIL("handler %s did not deliver its 3 records", names[i]);
    }
    PASS("7 transports (and a cut one): 3 records each, written == 3, lost == 0, pending == 0");
    for (size_t i = 7; i < 9; i++) {
        ql_handler_stats s = hstats(l, i);
        CHECK(s.sink.written == 0);
        CHECK(s.sink.write_errors >= 1);
        CHECK(s.sink.last_errno != 0);
    }
    PASS("TLS with a foreign CA or a wrong server name delivers nothing and counts the failures");
    /* Freeing closes each handler: the two that cannot deliver already
     * waited their flush timeout (300 ms) at the stop, count what is left
     * lost and join, and the free says so: bounded, and QL_ERR_LOST. */
    long long t0 = qlt_now_ms();
    CHECK_EQ_STATUS(ql_listener_free(l), QL_ERR_LOST);
    long long free_ms = qlt_now_ms() - t0;
    ql_queue_free(q);
    CHECK(free_ms < 3000);
    PASS("freeing with undeliverable records took %lld ms (bounded by the flush timeouts)", free_ms);
    return qlt_end();
}

/* ------------------------------------------------------------ counted streams */

typedef struct {
    ql_queue *q;
    const char *tag;
    int n;
    int pace_us;
    int gate_at;     /* stops before record gate_at until gate is set */
    atomic_int gate;
    atomic_int done;
} producer;

static void *produce(void *arg) {
    producer *p = arg;
    for (int i = 0; i < p->n; i++) {
        if (i == p->gate_at)
            while (!atomic_load(&p->gate)) qlt_sleep_ms(1);
        char msg[64];
        int len = snprintf(msg, sizeof msg, "%s %d", p->tag, i);
        CHECK_EQ_STATUS(ql_log(p->q, QL_LEVEL_INFO, "count", msg, (size_t)len), QL_OK);
        atomic_store(&p->done, i + 1);
        if (p->pace_us) qlt_sleep_us(p->pace_us);
    }
    return NULL;
}

static void wait_done(producer *p, int n) {
    long long deadline = qlt_now_ms() + QLT_WAIT_SECONDS * 1000;
    while (atomic_load(&p->done) < n) {
        if (qlt_now_ms() > deadline) QLT_FAIL("producer stuck at %d", atomic_load(&p->done));
        qlt_sleep_ms(1);
    }
}

/* N records through one handler while the server is killed (SIGKILL) and
 * restarted twice, at a third and two thirds of the stream. */
static int case_restart(int transport, const char *tag) {
    enum { N = 3000 };
    ql_queue *q = new_queue(QL_OVERFLOW_BLOCK, 8192);
    ql_syslog_options o = opts(transport, QL_SYSLOG_RFC5424, tag);
    o.flush_timeout_ms = 20000;
    ql_handler h = make(&o);
    ql_listener *l;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l), QL_OK);
    CHECK_EQ_STATUS(ql_start(l), QL_OK);
    /* The first kill comes while the producer goes on; the second at two
     * thirds, where the producer waits until the server is back, so that
     * the last third is logged after the last restart. */
    producer p = {q, tag, N, 300, 2 * N / 3, 0, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, produce, &p) == 0);
    wait_done(&p, N / 3);
    hook("kill_restart");
    wait_done(&p, 2 * N / 3);
    hook("kill_restart");
    int after = atomic_load(&p.done);
    atomic_store(&p.gate, 1);
    printf("after_last_restart=%d\n", after);
    CHECK(pthread_join(t, NULL) == 0);
    ql_status st = ql_listener_flush(l, 60000);
    CHECK(st == QL_OK || st == QL_ERR_LOST);
    print_stats(tag, l, 0);
    ql_handler_stats s = hstats(l, 0);
    CHECK(s.received == N);
    CHECK(s.sink.pending == 0);
    CHECK(s.sink.reopens >= 2);
    if (transport == QL_SYSLOG_RELP) {
        CHECK(s.sink.written == N);
        CHECK(s.sink.lost == 0);
        PASS("RELP: %d records, 2 server kills: all acknowledged, none lost, %llu resent", N,
             (unsigned long long)s.sink.resent);
    } else {
        PASS("%s: %d records, 2 server kills: written %llu + lost %llu == received", tag, N,
             (unsigned long long)s.sink.written, (unsigned long long)s.sink.lost);
    }
    CHECK_EQ_STATUS(ql_stop(l), QL_OK);
    CHECK_EQ_STATUS(ql_listener_free(l), QL_OK);
    ql_queue_free(q);
    return qlt_end();
}

/* The collector is down when the handlers are made and records logged. */
static int case_down_at_start(void) {
    enum { N = 200 };
    ql_queue *q = new_queue(QL_OVERFLOW_BLOCK, 1024);
    ql_handler hs[2];
    ql_syslog_options o = opts(QL_SYSLOG_TCP, QL_SYSLOG_RFC5424, "ql-down-tcp");
    o.flush_timeout_ms = 20000;
    hs[0] = make(&o);
    o = opts(QL_SYSLOG_RELP, QL_SYSLOG_RFC5424, "ql-down-relp");
    o.flush_timeout_ms = 20000;
    hs[1] = make(&o);
    ql_listener *l;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, hs, 2, NULL, false, &l), QL_OK);
    CHECK_EQ_STATUS(ql_start(l), QL_OK);
    long long worst = 0;
    for (int i = 0; i < N; i++) {
        char msg[64];
        int len = snprintf(msg, sizeof msg, "down %d", i);
        long long t0 = qlt_now_ms();
        CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "down", msg, (size_t)len), QL_OK);
        if (qlt_now_ms() - t0 > worst) worst = qlt_now_ms() - t0;
    }
    /* Both handlers must have tried and failed at least once. */
    long long deadline = qlt_now_ms() + QLT_WAIT_SECONDS * 1000;
    for (;;) {
        ql_handler_stats a = hstats(l, 0), b = hstats(l, 1);
        if (a.received == N && b.received == N && a.sink.write_errors >= 1 &&
            b.sink.write_errors >= 1)
            break;
        if (qlt_now_ms() > deadline) QLT_FAIL("no failed connection seen");
        qlt_sleep_ms(5);
    }
    for (size_t i = 0; i < 2; i++) {
        ql_handler_stats s = hstats(l, i);
        CHECK(s.sink.written == 0 && s.sink.pending == N && s.sink.last_errno == ECONNREFUSED);
    }
    PASS("collector down: %d records held by each handler, connections refused, ql_log worst %lld ms", N,
         worst);
    hook("start");
    CHECK_EQ_STATUS(ql_listener_flush(l, 60000), QL_OK);
    print_stats("down-tcp", l, 0);
    print_stats("down-relp", l, 1);
    for (size_t i = 0; i < 2; i++) {
        ql_handler_stats s = hstats(l, i);
        CHECK(s.sink.written == N && s.sink.lost == 0 && s.sink.pending == 0);
    }
    PASS("collector started later: all %d delivered on TCP and RELP", N);
    CHECK_EQ_STATUS(ql_stop(l), QL_OK);
    CHECK_EQ_STATUS(ql_listener_free(l), QL_OK);
    ql_queue_free(q);
    return qlt_end();
}

/* ------------------------------------------------------------ pause */

static atomic_long counted;

static int count_handle(void *ctx, void *record) {
    (void)ctx;
    (void)record;
    atomic_fetch_add(&counted, 1);
    return 0;
}

/* SIGSTOP: producers keep returning promptly, the listener keeps serving
 * another handler, the syslog buffer's bound drops the oldest. */
static int case_pause(void) {
    enum { M = 50000 }; /* 11 MB: more than any socket buffers take */
    ql_queue *q = new_queue(QL_OVERFLOW_DROP_NEWEST, 65536);
    ql_handler hs[2];
    ql_syslog_options o = opts(QL_SYSLOG_TCP, QL_SYSLOG_RFC5424, "ql-pause");
    o.buffer_bytes = 64 << 10;
    o.flush_timeout_ms = 20000;
    o.timeout_ms = 60000; /* a pause is no reason to reconnect */
    hs[0] = make(&o);
    memset(&hs[1], 0, sizeof hs[1]);
    hs[1].handle = count_handle;
    ql_listener *l;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, hs, 2, NULL, false, &l), QL_OK);
    CHECK_EQ_STATUS(ql_start(l), QL_OK);
    /* One record through first: the connection is up before the pause. */
    CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "pause", "pause first", 11), QL_OK);
    CHECK_EQ_STATUS(ql_listener_flush(l, 20000), QL_OK);
    CHECK(hstats(l, 0).sink.written == 1);
    hook("pause");
    char pad[201];
    memset(pad, 'p', 200);
    pad[200] = 0;
    long long worst_us = 0, t_start = qlt_now_ms();
    long full = 0;
    for (int i = 0; i < M; i++) {
        char msg[300];
        int len = snprintf(msg, sizeof msg, "pause %d %s", i, pad);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        ql_status st = ql_log(q, QL_LEVEL_INFO, "pause", msg, (size_t)len);
        clock_gettime(CLOCK_MONOTONIC, &b);
        CHECK(st == QL_OK || st == QL_ERR_FULL);
        full += st == QL_ERR_FULL;
        long long us = (b.tv_sec - a.tv_sec) * 1000000LL + (b.tv_nsec - a.tv_nsec) / 1000;
        if (us > worst_us) worst_us = us;
    }
    long long log_ms = qlt_now_ms() - t_start;
    long long deadline = qlt_now_ms() + QLT_WAIT_SECONDS * 1000;
    while (atomic_load(&counted) < 1 + M - full) {
        if (qlt_now_ms() > deadline)
            QLT_FAIL("the listener stopped serving the other handler: %ld of %ld", atomic_load(&counted),
                     1 + M - full);
        qlt_sleep_ms(1);
    }
    long long serve_ms = qlt_now_ms() - t_start;
    ql_handler_stats s = hstats(l, 0);
    printf("pause: %d ql_log calls in %lld ms, worst %lld us; queue refused %ld; other handler served all "
           "in %lld ms; syslog lost %llu so far\n",
           M, log_ms, worst_us, full, serve_ms, (unsigned long long)s.sink.lost);
    CHECK(worst_us < 500000);
    CHECK(s.sink.lost > 0); /* 11 MB into a 64 KiB buffer and a stopped reader */
    PASS("collector stopped: ql_log worst %lld us, listener kept serving, buffer bound dropped the oldest",
         worst_us);
    hook("cont");
    ql_status st = ql_listener_flush(l, 60000);
    CHECK(st == QL_OK || st == QL_ERR_LOST);
    print_stats("pause", l, 0);
    s = hstats(l, 0);
    CHECK(s.sink.pending == 0 && s.sink.written + s.sink.lost == s.received);
    CHECK(s.sink.reopens == 0);
    PASS("collector resumed: written %llu + lost %llu == received %llu", (unsigned long long)s.sink.written,
         (unsigned long long)s.sink.lost, (unsigned long long)s.received);
    st = ql_stop(l);
    CHECK(st == QL_OK || st == QL_ERR_LOST);
    CHECK(ql_listener_free(l) == QL_OK);
    ql_queue_free(q);
    return qlt_end();
}

/* ------------------------------------------------------------ unix reconnect */

static int case_unix_reconnect(void) {
    ql_queue *q = new_queue(QL_OVERFLOW_BLOCK, 1024);
    ql_syslog_options o = opts(QL_SYSLOG_UNIX, QL_SYSLOG_RFC5424, "ql-unix-re");
    o.path = in_dir(2, "log5424.sock");
    o.flush_timeout_ms = 20000;
    ql_handler h = make(&o);
    ql_listener *l;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l), QL_OK);
    CHECK_EQ_STATUS(ql_start(l), QL_OK);
    for (int i = 0; i < 10; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "unix before %d", i);
        CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "u", msg, (size_t)len), QL_OK);
    }
    CHECK_EQ_STATUS(ql_listener_flush(l, 30000), QL_OK);
    CHECK(hstats(l, 0).sink.written == 10);
    hook("restart");
    for (int i = 0; i < 10; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "unix after %d", i);
        CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "u", msg, (size_t)len), QL_OK);
    }
    CHECK_EQ_STATUS(ql_listener_flush(l, 30000), QL_OK);
    print_stats("unix-re", l, 0);
    ql_handler_stats s = hstats(l, 0);
    CHECK(s.sink.written == 20 && s.sink.lost == 0 && s.sink.reopens >= 1);
    PASS("unix datagram: reconnected after the daemon made its socket again, 20 of 20 sent");
    CHECK_EQ_STATUS(ql_stop(l), QL_OK);
    CHECK_EQ_STATUS(ql_listener_free(l), QL_OK);
    ql_queue_free(q);
    return qlt_end();
}

/* A message longer than rustls's 64 KiB output buffer, over TLS: it must be
 * delivered (it was refused by rustls's writer with WriteZero, and the
 * handler reconnected and retried it forever, every later record stuck
 * behind it), then a short one after it. */
static int case_tls_big(void) {
    ql_queue *q = new_queue(QL_OVERFLOW_BLOCK, 1024);
    ql_syslog_options o = opts(QL_SYSLOG_TLS, QL_SYSLOG_RFC5424, "ql-tls-big");
    o.max_message_bytes = 1 << 20;
    o.buffer_bytes = 8 << 20;
    o.flush_timeout_ms = 10000;
    ql_handler h = make(&o);
    ql_listener *l;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l), QL_OK);
    CHECK_EQ_STATUS(ql_start(l), QL_OK);
    size_t big = 150 * 1024; /* over 64 KiB, under imtcp's maxFrameSize (200000) */
    char *msg = malloc(big);
    CHECK(msg != NULL);
    memset(msg, 'b', big);
    memcpy(msg, "big ", 4);
    CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "t", msg, big), QL_OK);
    free(msg);
    CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "t", "small after", 11), QL_OK);
    ql_status st = ql_listener_flush(l, 15000);
    print_stats("tls-big", l, 0);
    ql_handler_stats s = hstats(l, 0);
    CHECK_EQ_STATUS(st, QL_OK);
    CHECK(s.sink.written == 2 && s.sink.lost == 0 && s.sink.pending == 0);
    PASS("TLS: a 150 KiB message and the one after it written, none lost");
    CHECK_EQ_STATUS(ql_stop(l), QL_OK);
    CHECK_EQ_STATUS(ql_listener_free(l), QL_OK);
    ql_queue_free(q);
    return qlt_end();
}

/* A collector that never comes: records stay pending after ql_stop (the
 * handler keeps trying), and ql_listener_free, which counts them lost, must
 * say so (QL_ERR_LOST, as for every built-in handler) and wait at most
 * about one flush_timeout_ms. */
static int case_free_lost(void) {
    ql_queue *q = new_queue(QL_OVERFLOW_BLOCK, 1024);
    ql_syslog_options o = opts(QL_SYSLOG_TCP, QL_SYSLOG_RFC5424, "ql-free-lost");
    o.port = 1; /* nothing listens on 127.0.0.1:1 */
    o.flush_timeout_ms = 1000;
    ql_handler h = make(&o);
    ql_listener *l;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l), QL_OK);
    CHECK_EQ_STATUS(ql_start(l), QL_OK);
    for (int i = 0; i < 3; i++) CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "t", "never", 5), QL_OK);
    CHECK_EQ_STATUS(ql_stop(l), QL_OK);
    print_stats("free-lost", l, 0);
    CHECK(hstats(l, 0).sink.pending == 3);
    long long t0 = qlt_now_ms();
    ql_status st = ql_listener_free(l);
    long long ms = qlt_now_ms() - t0;
    printf("ql_listener_free: %s in %lld ms\n", ql_status_str(st), ms);
    CHECK_EQ_STATUS(st, QL_ERR_LOST);
    CHECK(ms < 1900);
    PASS("ql_listener_free counted 3 undelivered records lost and said QL_ERR_LOST");
    ql_queue_free(q);
    return qlt_end();
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: syslog_client CASE\n");
        return 2;
    }
    dir = getenv("QLS_DIR");
    CHECK(dir != NULL);
    qlt_begin(argv[1]);
    const char *c = argv[1];
    if (!strcmp(c, "fields")) return case_fields();
    if (!strcmp(c, "down_at_start")) return case_down_at_start();
    if (!strcmp(c, "restart_relp")) return case_restart(QL_SYSLOG_RELP, "ql-relp-restart");
    if (!strcmp(c, "restart_tcp")) return case_restart(QL_SYSLOG_TCP, "ql-tcp-restart");
    if (!strcmp(c, "restart_tls")) return case_restart(QL_SYSLOG_TLS, "ql-tls-restart");
    if (!strcmp(c, "pause")) return case_pause();
    if (!strcmp(c, "unix_reconnect")) return case_unix_reconnect();
    if (!strcmp(c, "tls_big")) return case_tls_big();
    if (!strcmp(c, "free_lost")) return case_free_lost();
    QLT_FAIL("unknown case %s", c);
}
