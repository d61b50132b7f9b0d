/*
 * stress_slow_handlers: one listener with three handlers, in this order:
 *   0. slow: sleeps 100 us on every record (the sleep is the behaviour
 *      under test, not a synchronization);
 *   1. failing: returns 7 on every 7th record (sequence numbers 7, 14, ...);
 *   2. blocking: on one chosen record, waits at a latch until the test
 *      opens it.
 * Handlers run in order on the one listener thread, so the blocked handler
 * holds the whole listener; what must hold is:
 *   - the failures are counted exactly (handler_errors == the number of
 *     7th records) and on_error is told each one, once, with
 *     QL_STAGE_HANDLER, index 1, code 7 and the failing record; a failure
 *     of handler 1 never keeps handler 2 from the record;
 *   - ql_stop_timeout(listener, 200 ms) returns QL_ERR_TIMEOUT on time
 *     (after at least 200 ms, within 2 s) while the blocking handler holds
 *     the listener, and leaves it running and usable (a second start is
 *     refused, stats answer, records can be logged);
 *   - once the latch is open, ql_stop returns QL_OK with every record
 *     handled by every handler, once, in order.
 * Three cases: the sentinel of the timed-out stop got into the queue and
 * nothing is logged after it; the queue was full so the sentinel could not
 * get in, and a producer logs more after the timeout; the sentinel got in
 * and more records are logged after the timeout (then ql_stop must still
 * handle every record put before it, as its contract says).
 *
 * Usage: stress_slow_handlers [records]   (default 2000, for the first case)
 */
#include "stress.h"

enum { FAIL_EVERY = 7, FAIL_CODE = 7, STOP_TIMEOUT_MS = 200, STOP_TIMEOUT_LIMIT_MS = 2000 };
enum { SLOW_US = 100 };
enum { H_SLOW = 0, H_FAILING = 1, H_BLOCKING = 2, HANDLERS = 3 };

static long n_records = 2000;

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------ records */

/* Records are "record <seq>" (ql_logf), seq from 1, one stream in order. */
static uint64_t seq_of(const ql_record *r) {
    static const char prefix[] = "record ";
    if (r->message_len <= sizeof prefix - 1 || memcmp(r->message, prefix, sizeof prefix - 1) != 0)
        QLT_FAIL("unexpected message '%.*s'", (int)r->message_len, r->message);
    char *end = NULL;
    unsigned long long v = strtoull(r->message + sizeof prefix - 1, &end, 10);
    if (end != r->message + r->message_len || v == 0)
        QLT_FAIL("unexpected message '%.*s'", (int)r->message_len, r->message);
    return (uint64_t)v;
}

static void log_record(const ql_queue *q, uint64_t seq) {
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "slow", "record %llu", (unsigned long long)seq));
}

/* ------------------------------------------------------ handlers */

typedef struct {
    int index;
    uint64_t last;  /* last sequence number handled */
    uint64_t count;
    long sleep_us;  /* slow: sleep this long per record */
    bool failing;   /* failing: return FAIL_CODE on every FAIL_EVERY-th */
    uint64_t failures;
    qlt_latch *gate; /* blocking: wait here on record block_at */
    uint64_t block_at;
} sh_handler;

static int32_t sh_handle(void *ctx, void *record) {
    sh_handler *h = (sh_handler *)ctx;
    uint64_t seq = seq_of((const ql_record *)record);
    if (h->gate && seq == h->block_at) qlt_latch_wait(h->gate);
    if (h->sleep_us) qlt_sleep_us(h->sleep_us);
    if (seq != h->last + 1)
        QLT_FAIL("handler %d: got record %llu after %llu (lost, duplicated or reordered)",
                 h->index, (unsigned long long)seq, (unsigned long long)h->last);
    h->last = seq;
    h->count++;
    if (h->failing && seq % FAIL_EVERY == 0) {
        h->failures++;
        return FAIL_CODE;
    }
    return 0;
}

/* on_error: each failure of the failing handler, once. */
typedef struct {
    unsigned char *told; /* per sequence number */
    size_t cap;
    uint64_t count;
} err_state;

static void on_error(void *ctx, ql_stage stage, size_t index, void *record, int32_t code) {
    err_state *e = (err_state *)ctx;
    if (stage != QL_STAGE_HANDLER || index != H_FAILING || code != FAIL_CODE || record == NULL)
        QLT_FAIL("on_error(stage %d, handler %zu, record %p, code %d): want stage %d, handler "
                 "%d, a record, code %d",
                 (int)stage, index, record, (int)code, QL_STAGE_HANDLER, H_FAILING, FAIL_CODE);
    uint64_t seq = seq_of((const ql_record *)record);
    if (seq % FAIL_EVERY != 0) QLT_FAIL("on_error told of record %llu, which did not fail",
                                        (unsigned long long)seq);
    if (seq >= e->cap) QLT_FAIL("on_error: record %llu out of range", (unsigned long long)seq);
    if (e->told[seq]++) QLT_FAIL("on_error told of record %llu twice", (unsigned long long)seq);
    e->count++;
}

typedef struct {
    ql_queue *q;
    ql_listener *l;
    sh_handler h[HANDLERS];
    qlt_latch gate;
    err_state err;
    uint64_t next_seq; /* the next record to log */
} fixture;

/* A listener with the three handlers on a queue of `capacity`; the
 * blocking handler stops at record block_at; room for max_records. */
static void fixture_init(fixture *f, size_t capacity, uint64_t block_at, uint64_t max_records) {
    memset(f, 0, sizeof *f);
    ql_queue_options qo = ql_queue_options_default();
    qo.capacity = capacity;
    CHECK_OK(ql_queue_new_with_options(&qo, &f->q));
    qlt_latch_init(&f->gate);
    f->err.cap = max_records + 1;
    f->err.told = (unsigned char *)calloc(f->err.cap, 1);
    CHECK(f->err.told != NULL);
    ql_handler handlers[HANDLERS];
    for (int i = 0; i < HANDLERS; i++) {
        f->h[i].index = i;
        handlers[i] = (ql_handler){&f->h[i], 0, sh_handle, NULL, NULL, NULL};
    }
    f->h[H_SLOW].sleep_us = SLOW_US;
    f->h[H_FAILING].failing = true;
    f->h[H_BLOCKING].gate = &f->gate;
    f->h[H_BLOCKING].block_at = block_at;
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = &f->err;
    hooks.on_error = on_error;
    CHECK_OK(ql_listener_new_with_queue(f->q, handlers, HANDLERS, &hooks, false, &f->l));
    f->next_seq = 1;
}

static void fixture_fini(fixture *f) {
    CHECK_OK(ql_listener_free(f->l));
    ql_queue_free(f->q);
    free(f->err.told);
    qlt_latch_destroy(&f->gate);
}

/* Logs records up to and including `last`. */
static void log_until(fixture *f, uint64_t last) {
    while (f->next_seq <= last) log_record(f->q, f->next_seq++);
}

/* With the blocking handler at its latch (so the listener thread writes
 * nothing until it opens): each handler's progress. */
static void check_held(fixture *f) {
    uint64_t b = f->h[H_BLOCKING].block_at;
    CHECK_EQ_INT(f->h[H_SLOW].count, b);
    CHECK_EQ_INT(f->h[H_FAILING].count, b);
    CHECK_EQ_INT(f->h[H_BLOCKING].count, b - 1);
    CHECK_EQ_INT(f->h[H_FAILING].failures, b / FAIL_EVERY);
    CHECK_EQ_INT(f->err.count, b / FAIL_EVERY);
    ql_stats st = qlt_stats(f->l);
    CHECK_EQ_INT(st.handler_errors, b / FAIL_EVERY);
}

/* ql_stop_timeout while held: QL_ERR_TIMEOUT after at least `ms`, within
 * the limit; still running; a second start refused. Returns its time. */
static long long timed_out_stop(fixture *f, uint64_t ms) {
    long long t0 = now_us();
    ql_status st = ql_stop_timeout(f->l, ms);
    long long took = now_us() - t0;
    CHECK_EQ_STATUS(st, QL_ERR_TIMEOUT);
    if (took < (long long)ms * 1000)
        QLT_FAIL("ql_stop_timeout(%llu ms) returned after %lld us, before its deadline",
                 (unsigned long long)ms, took);
    if (took >= STOP_TIMEOUT_LIMIT_MS * 1000LL)
        QLT_FAIL("ql_stop_timeout(%llu ms) returned after %lld us (limit %d ms)",
                 (unsigned long long)ms, took, STOP_TIMEOUT_LIMIT_MS);
    CHECK(qlt_is_running(f->l));
    CHECK_EQ_STATUS(ql_start(f->l), QL_ERR_ALREADY_STARTED);
    return took;
}

/* After a stop returned QL_OK: every record up to `last` handled by every
 * handler, in order; failures counted and told exactly. */
static void check_all_handled(fixture *f, uint64_t last, const char *when) {
    for (int i = 0; i < HANDLERS; i++) {
        if (f->h[i].last != last || f->h[i].count != last)
            QLT_FAIL("%s: handler %d handled records 1..%llu (%llu records), want 1..%llu: "
                     "records put before ql_stop were not handled when it returned QL_OK",
                     when, i, (unsigned long long)f->h[i].last,
                     (unsigned long long)f->h[i].count, (unsigned long long)last);
    }
    uint64_t want_failures = last / FAIL_EVERY;
    CHECK_EQ_INT(f->h[H_FAILING].failures, want_failures);
    CHECK_EQ_INT(f->err.count, want_failures);
    for (uint64_t s = FAIL_EVERY; s <= last; s += FAIL_EVERY) {
        if (f->err.told[s] != 1) QLT_FAIL("on_error told of record %llu %d times",
                                          (unsigned long long)s, f->err.told[s]);
    }
    ql_stats st = qlt_stats(f->l);
    CHECK_EQ_INT(st.handled, last);
    CHECK_EQ_INT(st.handler_errors, want_failures);
    CHECK_EQ_INT(st.prepare_errors, 0);
    CHECK_EQ_INT(st.dropped, 0);
    CHECK_EQ_INT(qlt_queue_len(f->q), 0);
}

/* ------------------------------------------------------ the cases */

/* The sentinel of the timed-out stop gets in; nothing is logged after it. */
static void blocked_with_room(void) {
    const uint64_t n = (uint64_t)n_records;
    uint64_t block_at = n * 3 / 4;
    if (block_at % FAIL_EVERY == 0) block_at--; /* not a failing record */
    if (block_at < 1) block_at = 1;
    const uint64_t more = 100;
    fixture f;
    fixture_init(&f, 8192 > n + 16 ? 8192 : n + 16, block_at, n + more);
    CHECK_OK(ql_start(f.l));
    long long t0 = now_us();
    log_until(&f, n); /* never waits: the queue holds them all */
    qlt_latch_wait_arrived(&f.gate, 1);
    long long to_block = now_us() - t0;
    check_held(&f);
    PASS("handler 2 holds the listener at record %llu of %llu (reached after %lld ms of %d us "
         "sleeps): handlers 0 and 1 saw %llu records, %llu failures counted and told to on_error",
         (unsigned long long)block_at, (unsigned long long)n, to_block / 1000, SLOW_US,
         (unsigned long long)block_at, (unsigned long long)(block_at / FAIL_EVERY));

    long long took = timed_out_stop(&f, STOP_TIMEOUT_MS);
    ql_stats st = qlt_stats(f.l);
    CHECK_EQ_INT(st.handler_errors, block_at / FAIL_EVERY);
    CHECK_EQ_INT(f.h[H_BLOCKING].count, block_at - 1); /* still held */
    long long took2 = timed_out_stop(&f, 50);
    PASS("ql_stop_timeout(%d ms) while held: QL_ERR_TIMEOUT after %lld ms; again with 50 ms "
         "after %lld ms; the listener still runs (second start refused, stats answer)",
         STOP_TIMEOUT_MS, took / 1000, took2 / 1000);

    qlt_latch_open(&f.gate);
    CHECK_OK(ql_stop(f.l));
    check_all_handled(&f, n, "latch opened, ql_stop");
    CHECK(!qlt_is_running(f.l));
    PASS("latch opened, ql_stop: QL_OK with all %llu records handled by each handler once, in "
         "order; handler_errors == %llu == the 7th records, on_error told each once (stage "
         "HANDLER, index 1, code 7)",
         (unsigned long long)n, (unsigned long long)(n / FAIL_EVERY));

    CHECK_OK(ql_start(f.l));
    log_until(&f, n + more);
    CHECK_OK(ql_stop(f.l));
    check_all_handled(&f, n + more, "restarted, ql_stop");
    PASS("and the listener is usable: started again, %llu more records, all handled, failures "
         "now %llu",
         (unsigned long long)more, (unsigned long long)((n + more) / FAIL_EVERY));
    fixture_fini(&f);
}

/* The queue is full while held: the sentinel cannot get in. */
typedef struct {
    fixture *f;
    uint64_t last;
} producer;

static void *producer_main(void *arg) {
    producer *p = (producer *)arg;
    log_until(p->f, p->last); /* waits for room */
    return NULL;
}

static void blocked_full_queue(void) {
    enum { CAP = 64, BLOCK_AT = 10, MORE = 200 };
    fixture f;
    fixture_init(&f, CAP, BLOCK_AT, BLOCK_AT + CAP + MORE + 16);
    CHECK_OK(ql_start(f.l));
    log_until(&f, BLOCK_AT);
    qlt_latch_wait_arrived(&f.gate, 1);
    /* The listener takes nothing while held: fill the queue to the brim
     * without ever waiting. */
    while (qlt_queue_len(f.q) < CAP) log_record(f.q, f.next_seq++);
    CHECK_EQ_INT(qlt_queue_len(f.q), CAP);
    check_held(&f);
    long long took = timed_out_stop(&f, STOP_TIMEOUT_MS);
    CHECK_EQ_INT(qlt_queue_len(f.q), CAP); /* no sentinel got in */
    PASS("full queue (%d) while held: ql_stop_timeout(%d ms) gave QL_ERR_TIMEOUT after %lld ms; "
         "still running",
         CAP, STOP_TIMEOUT_MS, took / 1000);

    /* A producer logs more after the timeout; it waits for room. */
    uint64_t last = f.next_seq - 1 + MORE;
    producer p = {&f, last};
    pthread_t t;
    QLT_PT(pthread_create(&t, NULL, producer_main, &p));
    qlt_latch_open(&f.gate);
    QLT_PT(pthread_join(t, NULL));
    CHECK_OK(ql_stop(f.l));
    check_all_handled(&f, last, "full queue, latch opened, ql_stop");
    PASS("latch opened, producer's %d later records in, ql_stop: QL_OK with all %llu records "
         "handled by each handler once, in order; %llu failures counted and told exactly",
         MORE, (unsigned long long)last, (unsigned long long)(last / FAIL_EVERY));
    fixture_fini(&f);
}

/* The sentinel of the timed-out stop gets in, then more records are
 * logged: ql_stop, called after them, must still handle them all.
 *
 * A failure here is reported without ending the program at once: the
 * test then shows whether the records were left on the queue (a further
 * start and stop handles them) or lost, frees everything (so a valgrind
 * run still checks for leaks) and exits with 1. */
static bool failed = false;

static bool all_handled(const fixture *f, uint64_t last) {
    for (int i = 0; i < HANDLERS; i++) {
        if (f->h[i].last != last || f->h[i].count != last) return false;
    }
    return true;
}

static void logged_after_timed_out_stop(void) {
    enum { BLOCK_AT = 10, BEFORE = 20, AFTER = 100 };
    fixture f;
    fixture_init(&f, 8192, BLOCK_AT, BEFORE + AFTER);
    CHECK_OK(ql_start(f.l));
    log_until(&f, BEFORE);
    qlt_latch_wait_arrived(&f.gate, 1);
    check_held(&f);
    long long took = timed_out_stop(&f, STOP_TIMEOUT_MS);
    log_until(&f, BEFORE + AFTER); /* the listener is "running and usable" */
    PASS("held at record %d: ql_stop_timeout(%d ms) gave QL_ERR_TIMEOUT after %lld ms; %d more "
         "records logged (QL_OK each)",
         BLOCK_AT, STOP_TIMEOUT_MS, took / 1000, AFTER);
    qlt_latch_open(&f.gate);
    CHECK_OK(ql_stop(f.l));
    if (!all_handled(&f, BEFORE + AFTER)) {
        size_t queued = qlt_queue_len(f.q);
        fprintf(stderr,
                "%s:%d: FAIL: ql_stop returned QL_OK, but the handlers had handled records "
                "1..%llu of the %d put before it (%zu items still queued): the %d records "
                "logged after the timed-out ql_stop_timeout, behind its sentinel, were not "
                "handled\n",
                __FILE__, __LINE__, (unsigned long long)f.h[H_SLOW].last, BEFORE + AFTER,
                queued, AFTER);
        failed = true;
        CHECK(!qlt_is_running(f.l));
        CHECK_OK(ql_start(f.l));
        CHECK_OK(ql_stop(f.l));
        fprintf(stderr, "  (they were left on the queue, not lost: a further ql_start + ql_stop "
                        "handled them)\n");
        fflush(stderr);
    }
    check_all_handled(&f, BEFORE + AFTER, "records logged after a timed-out stop");
    if (!failed)
        PASS("latch opened, ql_stop: QL_OK with all %d records handled, including the %d "
             "logged after the timed-out stop",
             BEFORE + AFTER, AFTER);
    fixture_fini(&f);
}

int main(int argc, char **argv) {
    n_records = stress_arg(argc, argv, 1, 2000);
    if (n_records < 8) QLT_FAIL("at least 8 records");
    qlt_begin("stress_slow_handlers");
    QLT_RUN(blocked_with_room);
    QLT_RUN(blocked_full_queue);
    QLT_RUN(logged_after_timed_out_stop);
    if (failed) {
        printf("FAILED\n");
        return 1;
    }
    return qlt_end();
}
