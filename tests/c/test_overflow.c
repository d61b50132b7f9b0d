/*
 * test_overflow: the overflow policies of a bounded built-in queue
 * (ql_queue_new_with_options) and their drop accounting.
 *
 * - QL_OVERFLOW_BLOCK: a producer waits on a full queue and gets in once
 *   the listener makes room; nothing dropped, all handled in order;
 * - QL_OVERFLOW_BLOCK_TIMEOUT: with the listener held, ql_log on a full
 *   queue returns QL_ERR_TIMEOUT after block_timeout_ms and counts a drop;
 *   ql_queue_put of a pointer returns QL_ERR_TIMEOUT, not counted;
 * - QL_OVERFLOW_DROP_NEWEST: QL_ERR_FULL at once, counted; handled ==
 *   accepted, in order;
 * - QL_OVERFLOW_DROP_OLDEST: always QL_OK; the oldest are evicted and
 *   counted; handled == the newest, in order; evicted pointers go to
 *   on_drop once each, with drop_ctx, on the putting thread; a flush on a
 *   full queue waits for room rather than evicting a record; stop returns
 *   while producers keep evicting (the sentinel is never lost);
 * - report_drops: one WARNING record "N records dropped" from logger
 *   "queue_listener" before later records;
 * - a handler logging onto its own full queue: BLOCK refuses at once with
 *   QL_ERR_WOULD_DEADLOCK (counted), DROP_OLDEST succeeds;
 * - accepted + dropped == attempted for every policy, with 3 producers;
 * - option validation: unknown overflow, capacity over the maximum
 *   (QL_ERR_INVALID), NULL options / out (QL_ERR_NULL), out untouched.
 */
#include "ql_test.h"

/* A listener with one sink handler on q; started. */
static ql_listener *start_sink(ql_queue *q, qlt_sink *s) {
    ql_handler h = qlt_sink_handler(s, 0);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    return l;
}

static ql_queue *new_queue(size_t capacity, ql_overflow overflow, uint64_t timeout_ms,
                           bool report) {
    ql_queue_options o = ql_queue_options_default();
    o.capacity = capacity;
    o.overflow = overflow;
    o.block_timeout_ms = timeout_ms;
    o.report_drops = report;
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new_with_options(&o, &q));
    return q;
}

/* Logs "hold" and waits until the listener is inside the handler for it,
 * held at `gate` (the queue is then empty). */
static void hold_listener(ql_queue *q, qlt_sink *s, qlt_latch *gate) {
    s->gate_msg[0] = "hold";
    s->gate[0] = gate;
    CHECK_OK(qlt_log_str(q, "hold"));
    qlt_latch_wait_arrived(gate, 1);
    CHECK_EQ_INT(qlt_queue_len(q), 0);
}

static void log_num(ql_queue *q, int n, ql_status want) {
    char m[16];
    int len = snprintf(m, sizeof m, "%d", n);
    CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "test", m, (size_t)len), want);
}

/* want = "hold" followed by the numbers nums[0..n). */
static void expect_nums(qlt_sink *s, const int *nums, size_t n) {
    char(*text)[16] = calloc(n + 1, sizeof *text);
    const char **want = calloc(n + 1, sizeof *want);
    CHECK(text && want);
    want[0] = "hold";
    for (size_t i = 0; i < n; i++) {
        snprintf(text[i], sizeof text[i], "%d", nums[i]);
        want[i + 1] = text[i];
    }
    qlt_sink_expect(s, want, n + 1);
    free(text);
    free(want);
}

/* ------------------------------------------------------------ BLOCK */

typedef struct {
    ql_queue *q;
    int from, to;
    atomic_int done; /* records logged so far */
} block_producer;

static void *block_producer_main(void *p) {
    block_producer *a = (block_producer *)p;
    for (int i = a->from; i < a->to; i++) {
        log_num(a->q, i, QL_OK);
        atomic_fetch_add(&a->done, 1);
    }
    return NULL;
}

static void block_policy(void) {
    enum { CAP = 4, N = 200 };
    ql_queue *q = new_queue(CAP, QL_OVERFLOW_BLOCK, 0, false);
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_latch gate;
    qlt_latch_init(&gate);
    ql_listener *l = start_sink(q, &s);
    hold_listener(q, &s, &gate);
    for (int i = 0; i < CAP; i++) log_num(q, i, QL_OK);
    CHECK_EQ_INT(qlt_queue_len(q), CAP);

    block_producer a;
    a.q = q;
    a.from = CAP;
    a.to = N;
    atomic_init(&a.done, 0);
    pthread_t t;
    QLT_PT(pthread_create(&t, NULL, block_producer_main, &a));
    /* Give the producer time to reach the full queue (this only makes the
     * wait likely; the outcome is checked below, not assumed). */
    qlt_sleep_ms(50);
    CHECK_EQ_INT(atomic_load(&a.done), 0); /* it waits: no room, not dropped */
    CHECK_EQ_INT(qlt_queue_len(q), CAP);
    qlt_latch_open(&gate);
    QLT_PT(pthread_join(t, NULL));
    CHECK_EQ_INT(atomic_load(&a.done), N - CAP);
    CHECK_OK(ql_stop(l));
    int nums[N];
    for (int i = 0; i < N; i++) nums[i] = i;
    expect_nums(&s, nums, N);
    ql_stats st = qlt_stats(l);
    CHECK_EQ_INT(st.dropped, 0);
    CHECK_EQ_INT(st.handled, N + 1);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s);
    PASS("QL_OVERFLOW_BLOCK (capacity %d): a producer on the full queue waits (nothing returned "
         "while the listener was held), gets in once room returns; %d records handled in order, "
         "dropped 0",
         CAP, N);
}

/* ------------------------------------------------------------ BLOCK_TIMEOUT */

static void block_timeout_policy(void) {
    enum { CAP = 2, TIMEOUT = 200 };
    ql_queue *q = new_queue(CAP, QL_OVERFLOW_BLOCK_TIMEOUT, TIMEOUT, false);
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_latch gate;
    qlt_latch_init(&gate);
    ql_listener *l = start_sink(q, &s);
    hold_listener(q, &s, &gate);
    log_num(q, 1, QL_OK);
    log_num(q, 2, QL_OK);

    long long t0 = qlt_now_ms();
    log_num(q, 3, QL_ERR_TIMEOUT);
    long long took_log = qlt_now_ms() - t0;
    CHECK(took_log >= TIMEOUT - 10 && took_log < 10000);
    CHECK_EQ_INT(qlt_stats(l).dropped, 1);

    t0 = qlt_now_ms();
    CHECK_EQ_STATUS(ql_logf(q, QL_LEVEL_INFO, "test", "%d", 4), QL_ERR_TIMEOUT);
    long long took_logf = qlt_now_ms() - t0;
    CHECK(took_logf >= TIMEOUT - 10 && took_logf < 10000);
    CHECK_EQ_INT(qlt_stats(l).dropped, 2);

    /* a program pointer: refused, stays ours, not counted */
    t0 = qlt_now_ms();
    CHECK_EQ_STATUS(ql_queue_put(q, QLT_REC(99)), QL_ERR_TIMEOUT);
    long long took_put = qlt_now_ms() - t0;
    CHECK(took_put >= TIMEOUT - 10 && took_put < 10000);
    CHECK_EQ_STATUS(ql_queue_put_nowait(q, QLT_REC(99)), QL_ERR_FULL);
    CHECK_EQ_INT(qlt_stats(l).dropped, 2);
    CHECK_EQ_INT(qlt_queue_len(q), CAP);

    qlt_latch_open(&gate);
    CHECK_OK(ql_listener_flush(l, 10000));
    log_num(q, 5, QL_OK); /* room again: no wait */
    CHECK_OK(ql_stop(l));
    static const int nums[] = {1, 2, 5};
    expect_nums(&s, nums, 3);
    CHECK_EQ_INT(qlt_stats(l).dropped, 2);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s);
    PASS("QL_OVERFLOW_BLOCK_TIMEOUT (%d ms): ql_log / ql_logf on the full queue return "
         "QL_ERR_TIMEOUT after %lld / %lld ms, each counted in dropped; ql_queue_put of a pointer "
         "QL_ERR_TIMEOUT after %lld ms, not counted; handled exactly the accepted records",
         TIMEOUT, took_log, took_logf, took_put);
}

/* ------------------------------------------------------------ DROP_NEWEST */

static void drop_newest_policy(void) {
    enum { CAP = 3 };
    ql_queue *q = new_queue(CAP, QL_OVERFLOW_DROP_NEWEST, 0, false);
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_latch gate;
    qlt_latch_init(&gate);
    ql_listener *l = start_sink(q, &s);
    hold_listener(q, &s, &gate);
    long long t0 = qlt_now_ms();
    for (int i = 1; i <= 10; i++) log_num(q, i, i <= CAP ? QL_OK : QL_ERR_FULL);
    long long took = qlt_now_ms() - t0;
    CHECK(took < 1000); /* at once */
    CHECK_EQ_INT(qlt_stats(l).dropped, 10 - CAP);
    CHECK_EQ_STATUS(ql_queue_put(q, QLT_REC(1)), QL_ERR_FULL); /* pointer: not counted */
    CHECK_EQ_INT(qlt_stats(l).dropped, 10 - CAP);
    qlt_latch_open(&gate);
    CHECK_OK(ql_listener_flush(l, 10000));
    for (int i = 11; i <= 13; i++) log_num(q, i, QL_OK);
    CHECK_OK(ql_stop(l));
    static const int nums[] = {1, 2, 3, 11, 12, 13};
    expect_nums(&s, nums, 6);
    CHECK_EQ_INT(qlt_stats(l).dropped, 10 - CAP);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s);
    PASS("QL_OVERFLOW_DROP_NEWEST (capacity %d): on the full queue ql_log returns QL_ERR_FULL at "
         "once (10 calls in %lld ms), %d counted; a refused pointer not counted; handled exactly "
         "the accepted records, in order",
         CAP, took, 10 - CAP);
}

/* ------------------------------------------------------------ DROP_OLDEST */

static void drop_oldest_policy(void) {
    enum { CAP = 4, N = 20 };
    ql_queue *q = new_queue(CAP, QL_OVERFLOW_DROP_OLDEST, 0, false);
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_latch gate;
    qlt_latch_init(&gate);
    ql_listener *l = start_sink(q, &s);
    hold_listener(q, &s, &gate);
    long long t0 = qlt_now_ms();
    for (int i = 1; i <= N; i++) log_num(q, i, QL_OK);
    long long took = qlt_now_ms() - t0;
    CHECK(took < 1000);
    CHECK_EQ_INT(qlt_queue_len(q), CAP);
    CHECK_EQ_INT(qlt_stats(l).dropped, N - CAP);
    /* explicit non-blocking put ignores the policy: refused, nothing evicted */
    CHECK_EQ_STATUS(ql_queue_put_nowait(q, QLT_REC(1)), QL_ERR_FULL);
    CHECK_EQ_INT(qlt_stats(l).dropped, N - CAP);
    qlt_latch_open(&gate);
    CHECK_OK(ql_stop(l));
    static const int nums[] = {N - 3, N - 2, N - 1, N};
    expect_nums(&s, nums, 4);
    CHECK_EQ_INT(qlt_stats(l).dropped, N - CAP);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s);
    PASS("QL_OVERFLOW_DROP_OLDEST (capacity %d): %d ql_log all QL_OK at once (%lld ms), the %d "
         "oldest evicted and counted; handled exactly the newest %d, in order; put_nowait on full "
         "still QL_ERR_FULL without evicting",
         CAP, N, took, N - CAP, CAP);
}

typedef struct {
    int magic;
    pthread_t putter;
    atomic_int calls[64];
    atomic_int wrong_ctx, wrong_thread, order_errors;
    atomic_int last;
} drop_ctx;

static void on_drop(void *ctx, void *record) {
    drop_ctx *d = (drop_ctx *)ctx;
    if (d->magic != 0x5eed) {
        /* ctx is not ours: count where we can */
        return;
    }
    if (!pthread_equal(pthread_self(), d->putter)) atomic_fetch_add(&d->wrong_thread, 1);
    long n = QLT_NUM(record);
    if (n < 1 || n >= 64) QLT_FAIL("on_drop got record %ld, never put", n);
    atomic_fetch_add(&d->calls[n], 1);
    if (n <= atomic_load(&d->last)) atomic_fetch_add(&d->order_errors, 1);
    atomic_store(&d->last, (int)n);
}

static void drop_oldest_on_drop(void) {
    enum { CAP = 3, N = 40 };
    drop_ctx d;
    memset(&d, 0, sizeof d);
    d.magic = 0x5eed;
    d.putter = pthread_self();
    ql_queue_options o = ql_queue_options_default();
    o.capacity = CAP;
    o.overflow = QL_OVERFLOW_DROP_OLDEST;
    o.on_drop = on_drop;
    o.drop_ctx = &d;
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new_with_options(&o, &q));
    ql_listener *l = NULL; /* never started: only for its stats */
    qlt_sink s;
    qlt_sink_init(&s, 0);
    ql_handler h = qlt_sink_handler(&s, 0);
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));

    /* built-in records evicted first: freed by the library, never given to on_drop */
    CHECK_OK(qlt_log_str(q, "a"));
    CHECK_OK(qlt_log_str(q, "b"));
    for (long i = 1; i <= N; i++) CHECK_OK(ql_queue_put(q, QLT_REC(i)));
    CHECK_EQ_INT(qlt_stats(l).dropped, 2 + N - CAP);
    for (long i = 1; i <= N; i++) {
        int want = i <= N - CAP ? 1 : 0;
        if (atomic_load(&d.calls[i]) != want)
            QLT_FAIL("on_drop called %d times for record %ld, want %d", atomic_load(&d.calls[i]),
                     i, want);
    }
    CHECK_EQ_INT(atomic_load(&d.wrong_thread), 0);
    CHECK_EQ_INT(atomic_load(&d.order_errors), 0);
    for (long i = N - CAP + 1; i <= N; i++) {
        void *r = NULL;
        CHECK_OK(ql_queue_get_nowait(q, &r));
        CHECK_EQ_PTR(r, QLT_REC(i));
    }
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("QL_OVERFLOW_DROP_OLDEST with on_drop: of %d pointers on a queue of %d, the %d oldest "
         "went to on_drop exactly once each, oldest first, with drop_ctx, on the putting thread; "
         "2 evicted built-in records counted but not given to on_drop; the newest %d stay queued",
         N, CAP, N - CAP, CAP);
}

/* A flush barrier on a full DROP_OLDEST queue: the flush promises that every
 * record put before it is handled, and says it waits for room; it must not
 * evict a record to make room for its barrier. */
typedef struct {
    ql_listener *l;
    ql_status st;
} flush_arg;

static void *flush_main(void *p) {
    flush_arg *a = (flush_arg *)p;
    a->st = ql_listener_flush(a->l, 10000);
    return NULL;
}

static void drop_oldest_flush(void) {
    enum { CAP = 4 };
    ql_queue *q = new_queue(CAP, QL_OVERFLOW_DROP_OLDEST, 0, false);
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_latch gate;
    qlt_latch_init(&gate);
    ql_listener *l = start_sink(q, &s);
    hold_listener(q, &s, &gate);
    for (int i = 1; i <= CAP; i++) log_num(q, i, QL_OK);
    CHECK_EQ_INT(qlt_stats(l).dropped, 0);
    flush_arg a = {l, -1};
    pthread_t t;
    QLT_PT(pthread_create(&t, NULL, flush_main, &a));
    qlt_sleep_ms(50); /* makes it likely the flush meets the full queue */
    qlt_latch_open(&gate);
    QLT_PT(pthread_join(t, NULL));
    CHECK_OK(a.st);
    CHECK_OK(ql_stop(l));
    ql_stats st = qlt_stats(l);
    if (st.dropped != 0 || s.len != CAP + 1)
        QLT_FAIL("ql_listener_flush on a full QL_OVERFLOW_DROP_OLDEST queue evicted records put "
                 "before it: dropped %llu, handled %zu of %d",
                 (unsigned long long)st.dropped, s.len, CAP + 1);
    static const int nums[] = {1, 2, 3, 4};
    expect_nums(&s, nums, CAP);
    CHECK_EQ_INT(atomic_load(&s.flushes), 2); /* the barrier, then the stop */
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s);
    PASS("ql_listener_flush on a full QL_OVERFLOW_DROP_OLDEST queue waits for room: no record put "
         "before it evicted (dropped 0), all %d handled, QL_OK",
         CAP);
}

/* Producers evict continuously (capacity 2) while the listener is stopped and
 * restarted: every stop returns (the sentinel is never lost), every flush too. */
typedef struct {
    ql_queue *q;
    atomic_bool *stop;
    long attempts;
} evictor;

static void *evictor_main(void *p) {
    evictor *e = (evictor *)p;
    while (!atomic_load(e->stop)) {
        CHECK_OK(ql_log(e->q, QL_LEVEL_INFO, "evict", "x", 1));
        e->attempts++;
    }
    return NULL;
}

typedef struct {
    ql_listener *l;
    ql_status st;
} stop_arg;

static void *stop_main(void *p) {
    stop_arg *a = (stop_arg *)p;
    a->st = ql_stop_timeout(a->l, 10000);
    return NULL;
}

static void drop_oldest_stop(void) {
    enum { CAP = 2, PRODUCERS = 2, CYCLES = 20 };
    ql_queue *q = new_queue(CAP, QL_OVERFLOW_DROP_OLDEST, 0, false);
    qlt_sink s;
    qlt_sink_init(&s, 0);
    s.copy = false;
    ql_handler h = qlt_sink_handler(&s, 0);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));

    /* first, deterministic: the sentinel waits on the full queue while the
     * listener is held; a producer then evicts; the stop still returns */
    qlt_latch gate;
    qlt_latch_init(&gate);
    qlt_sink held;
    qlt_sink_init(&held, 1);
    ql_handler hh = qlt_sink_handler(&held, 0);
    ql_listener *l1 = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &hh, 1, NULL, false, &l1));
    CHECK_OK(ql_start(l1));
    hold_listener(q, &held, &gate);
    for (int i = 1; i <= CAP; i++) log_num(q, i, QL_OK);
    stop_arg sa = {l1, -1};
    pthread_t t;
    QLT_PT(pthread_create(&t, NULL, stop_main, &sa));
    qlt_sleep_ms(30); /* makes it likely the stop meets the full queue */
    for (int i = CAP + 1; i <= CAP + 10; i++) log_num(q, i, QL_OK); /* evicting */
    qlt_latch_open(&gate);
    QLT_PT(pthread_join(t, NULL));
    CHECK_OK(sa.st);
    CHECK(!qlt_is_running(l1));
    CHECK_OK(ql_listener_free(l1));
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&held);

    atomic_bool stop;
    atomic_init(&stop, false);
    evictor e[PRODUCERS];
    pthread_t th[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        e[i].q = q;
        e[i].stop = &stop;
        e[i].attempts = 0;
        QLT_PT(pthread_create(&th[i], NULL, evictor_main, &e[i]));
    }
    long long worst_stop = 0, worst_flush = 0;
    for (int c = 0; c < CYCLES; c++) {
        CHECK_OK(ql_start(l));
        long target = qlt_sink_count(&s) + 100;
        qlt_sink_wait(&s, target);
        long long t0 = qlt_now_ms();
        CHECK_OK(ql_listener_flush(l, 10000));
        long long tf = qlt_now_ms() - t0;
        if (tf > worst_flush) worst_flush = tf;
        t0 = qlt_now_ms();
        CHECK_OK(ql_stop_timeout(l, 10000));
        long long ts = qlt_now_ms() - t0;
        if (ts > worst_stop) worst_stop = ts;
        CHECK(!qlt_is_running(l));
    }
    atomic_store(&stop, true);
    long attempts = 0;
    for (int i = 0; i < PRODUCERS; i++) {
        QLT_PT(pthread_join(th[i], NULL));
        attempts += e[i].attempts;
    }
    ql_stats st = qlt_stats(l);
    CHECK(st.dropped > 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("QL_OVERFLOW_DROP_OLDEST, capacity %d, %d producers evicting nonstop (%ld records, %llu "
         "dropped): %d start/flush/stop cycles all returned QL_OK (slowest flush %lld ms, stop "
         "%lld ms); a stop whose sentinel met a full queue returned",
         CAP, PRODUCERS, attempts, (unsigned long long)st.dropped, CYCLES, worst_flush,
         worst_stop);
}

/* ------------------------------------------------------------ report_drops */

static void report_drops(void) {
    enum { CAP = 2 };
    ql_queue *q = new_queue(CAP, QL_OVERFLOW_DROP_NEWEST, 0, true);
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_latch gate, gate2;
    qlt_latch_init(&gate);
    qlt_latch_init(&gate2);
    s.gate_msg[1] = "hold2";
    s.gate[1] = &gate2;
    ql_listener *l = start_sink(q, &s);

    hold_listener(q, &s, &gate);
    for (int i = 1; i <= 7; i++) log_num(q, i, i <= CAP ? QL_OK : QL_ERR_FULL);
    qlt_latch_open(&gate);
    CHECK_OK(ql_listener_flush(l, 10000));

    CHECK_OK(qlt_log_str(q, "hold2"));
    qlt_latch_wait_arrived(&gate2, 1);
    for (int i = 8; i <= 12; i++) log_num(q, i, i <= 9 ? QL_OK : QL_ERR_FULL);
    qlt_latch_open(&gate2);
    CHECK_OK(ql_listener_flush(l, 10000));
    log_num(q, 13, QL_OK);
    CHECK_OK(ql_stop(l));

    static const char *const want[] = {"hold",  "5 records dropped", "1", "2", "hold2",
                                       "3 records dropped", "8", "9", "13"};
    qlt_sink_expect(&s, want, sizeof want / sizeof want[0]);
    for (size_t i = 1; i < 6; i += 4) {
        qlt_rec r = qlt_sink_at(&s, i);
        CHECK_EQ_INT(r.level, QL_LEVEL_WARNING);
        CHECK(strcmp(r.logger, "queue_listener") == 0 && r.logger_len == 14);
        CHECK_EQ_PTR(r.user, NULL);
    }
    CHECK_EQ_INT(qlt_stats(l).dropped, 8);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);

    /* DROP_OLDEST: evictions are reported too */
    q = new_queue(CAP, QL_OVERFLOW_DROP_OLDEST, 0, true);
    qlt_sink s2;
    qlt_sink_init(&s2, 1);
    qlt_latch gate3;
    qlt_latch_init(&gate3);
    l = start_sink(q, &s2);
    hold_listener(q, &s2, &gate3);
    for (int i = 1; i <= 6; i++) log_num(q, i, QL_OK);
    qlt_latch_open(&gate3);
    /* no flush here: a flush barrier would find the queue full (see
     * drop_oldest_flush); wait for the records instead */
    qlt_sink_wait(&s2, 4);
    log_num(q, 7, QL_OK);
    CHECK_OK(ql_stop(l));
    static const char *const want2[] = {"hold", "4 records dropped", "5", "6", "7"};
    qlt_sink_expect(&s2, want2, 5);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_latch_destroy(&gate2);
    qlt_latch_destroy(&gate3);
    qlt_sink_fini(&s);
    qlt_sink_fini(&s2);
    PASS("report_drops: after 5 refused records the handlers get one WARNING record from "
         "\"queue_listener\", \"5 records dropped\", right after the record in progress and before "
         "the queued ones; a second round reports its own 3; none without new drops; DROP_OLDEST "
         "evictions reported (\"4 records dropped\")");
}

/* ------------------------------------------------------------ from a handler */

typedef struct {
    ql_queue *q;
    qlt_latch *gate;
    ql_status full_log, full_logf, room_log;
    long long full_ms;
} self_log;

static void self_log_on_record(qlt_sink *s, const ql_record *r) {
    self_log *a = (self_log *)s->arg;
    if (r->message_len == 7 && memcmp(r->message, "trigger", 7) == 0) {
        qlt_latch_wait(a->gate); /* the test fills the queue meanwhile */
        long long t0 = qlt_now_ms();
        a->full_log = qlt_log_str(a->q, "from-handler");
        a->full_logf = ql_logf(a->q, QL_LEVEL_INFO, "test", "%s", "from-handler-f");
        a->full_ms = qlt_now_ms() - t0;
    }
    if (r->message_len == 1 && r->message[0] == '2') a->room_log = qlt_log_str(a->q, "from-2");
}

static void log_from_handler(void) {
    enum { CAP = 2 };
    static const ql_overflow policies[] = {QL_OVERFLOW_BLOCK, QL_OVERFLOW_DROP_OLDEST};
    long long full_ms[2] = {0, 0};
    for (int p = 0; p < 2; p++) {
        ql_queue *q = new_queue(CAP, policies[p], 0, false);
        qlt_latch gate;
        qlt_latch_init(&gate);
        self_log a = {q, &gate, -1, -1, -1, 0};
        qlt_sink s;
        qlt_sink_init(&s, 0);
        s.on_record = self_log_on_record;
        s.arg = &a;
        ql_listener *l = start_sink(q, &s);
        CHECK_OK(qlt_log_str(q, "trigger"));
        qlt_latch_wait_arrived(&gate, 1);
        log_num(q, 1, QL_OK);
        log_num(q, 2, QL_OK);
        CHECK_EQ_INT(qlt_queue_len(q), CAP);
        qlt_latch_open(&gate);
        /* wait for the records rather than flush: a flush barrier would meet
         * the full DROP_OLDEST queue (see drop_oldest_flush) */
        qlt_sink_wait(&s, policies[p] == QL_OVERFLOW_BLOCK ? 4 : 3);
        CHECK_OK(ql_stop(l));
        full_ms[p] = a.full_ms;
        CHECK(a.full_ms < 1000);
        if (policies[p] == QL_OVERFLOW_BLOCK) {
            CHECK_OK(a.room_log);
            CHECK_EQ_STATUS(a.full_log, QL_ERR_WOULD_DEADLOCK);
            CHECK_EQ_STATUS(a.full_logf, QL_ERR_WOULD_DEADLOCK);
            CHECK_EQ_INT(qlt_stats(l).dropped, 2);
            static const char *const want[] = {"trigger", "1", "2", "from-2"};
            qlt_sink_expect(&s, want, 4);
        } else {
            CHECK_OK(a.full_log);
            CHECK_OK(a.full_logf);
            CHECK_EQ_INT(qlt_stats(l).dropped, 2); /* "1" and "2" evicted */
            CHECK_EQ_INT(a.room_log, -1); /* "2" was evicted: never handled */
            static const char *const want[] = {"trigger", "from-handler", "from-handler-f"};
            qlt_sink_expect(&s, want, 3);
        }
        CHECK_OK(ql_listener_free(l));
        ql_queue_free(q);
        qlt_latch_destroy(&gate);
        qlt_sink_fini(&s);
    }
    PASS("a handler logging onto its own full queue: QL_OVERFLOW_BLOCK refuses ql_log and ql_logf "
         "at once (%lld ms) with QL_ERR_WOULD_DEADLOCK, both counted as dropped, with room QL_OK; "
         "QL_OVERFLOW_DROP_OLDEST accepts both (%lld ms), evicting the 2 oldest",
         full_ms[0], full_ms[1]);
}

/* ------------------------------------------------------------ accounting */

enum { ACC_PRODUCERS = 3, ACC_PER = 3000, ACC_CAP = 8 };

typedef struct {
    ql_queue *q;
    int id;
    ql_status refusal; /* the status a refused record gets under this policy */
    long accepted, refused, other;
    ql_status other_status;
    qlt_counter *attempts;
    qlt_latch *resume; /* lossy policies: wait here after 100 records */
} acc_producer;

static void *acc_main(void *p) {
    acc_producer *a = (acc_producer *)p;
    for (int i = 0; i < ACC_PER; i++) {
        if (i == 100 && a->resume) qlt_latch_wait(a->resume);
        ql_status st = ql_logf(a->q, QL_LEVEL_INFO, "acc", "p%d %d", a->id, i);
        if (st == QL_OK) a->accepted++;
        else if (st == a->refusal) a->refused++;
        else {
            a->other++;
            a->other_status = st;
        }
        qlt_counter_add(a->attempts, 1);
    }
    return NULL;
}

static void accounting(void) {
    static const struct {
        ql_overflow policy;
        ql_status refusal;
        const char *name;
    } policies[] = {{QL_OVERFLOW_BLOCK, QL_ERR_FULL, "BLOCK"},
                    {QL_OVERFLOW_BLOCK_TIMEOUT, QL_ERR_TIMEOUT, "BLOCK_TIMEOUT"},
                    {QL_OVERFLOW_DROP_NEWEST, QL_ERR_FULL, "DROP_NEWEST"},
                    {QL_OVERFLOW_DROP_OLDEST, QL_ERR_FULL, "DROP_OLDEST"}};
    char summary[4][96];
    for (size_t p = 0; p < 4; p++) {
        ql_queue *q = new_queue(ACC_CAP, policies[p].policy, 1, false);
        qlt_sink s;
        qlt_sink_init(&s, 0);
        qlt_latch gate;
        qlt_latch_init(&gate);
        qlt_counter attempts;
        qlt_counter_init(&attempts);
        qlt_latch resume;
        qlt_latch_init(&resume);
        bool lossy = policies[p].policy != QL_OVERFLOW_BLOCK;
        ql_listener *l = start_sink(q, &s);
        hold_listener(q, &s, &gate);
        acc_producer a[ACC_PRODUCERS];
        pthread_t t[ACC_PRODUCERS];
        for (int i = 0; i < ACC_PRODUCERS; i++) {
            memset(&a[i], 0, sizeof a[i]);
            a[i].q = q;
            a[i].id = i;
            a[i].refusal = policies[p].refusal;
            a[i].attempts = &attempts;
            a[i].resume = lossy ? &resume : NULL;
            QLT_PT(pthread_create(&t[i], NULL, acc_main, &a[i]));
        }
        /* lossy policies: hold the listener while the producers try 100
         * records each, so that drops surely happen; then let the rest run
         * along with the listener */
        if (lossy) qlt_counter_wait_at_least(&attempts, 100 * ACC_PRODUCERS);
        qlt_latch_open(&gate);
        qlt_latch_open(&resume);
        long attempted = 0, accepted = 0, refused = 0;
        for (int i = 0; i < ACC_PRODUCERS; i++) {
            QLT_PT(pthread_join(t[i], NULL));
            if (a[i].other)
                QLT_FAIL("%s: %ld records got status %d (%s)", policies[p].name, a[i].other,
                         (int)a[i].other_status, ql_status_str(a[i].other_status));
            attempted += a[i].accepted + a[i].refused;
            accepted += a[i].accepted;
            refused += a[i].refused;
        }
        CHECK_EQ_INT(attempted, ACC_PRODUCERS * ACC_PER);
        CHECK_OK(ql_stop(l));
        ql_stats st = qlt_stats(l);
        long handled = (long)s.len - 1; /* minus "hold" */
        /* each producer's records in its order */
        int next[ACC_PRODUCERS] = {0};
        for (size_t i = 1; i < s.len; i++) {
            qlt_rec r = qlt_sink_at(&s, i);
            int id = -1, n = -1;
            if (sscanf(r.message, "p%d %d", &id, &n) != 2 || id < 0 || id >= ACC_PRODUCERS)
                QLT_FAIL("%s: unexpected record \"%s\"", policies[p].name, r.message);
            if (n < next[id])
                QLT_FAIL("%s: producer %d's record %d after its record %d", policies[p].name, id,
                         n, next[id] - 1);
            next[id] = n + 1;
        }
        if ((long)st.handled != handled + 1)
            QLT_FAIL("%s: stats.handled %llu, the handler saw %ld", policies[p].name,
                     (unsigned long long)st.handled, handled + 1);
        if (handled + (long)st.dropped != attempted)
            QLT_FAIL("%s: handled %ld + dropped %llu != attempted %ld", policies[p].name, handled,
                     (unsigned long long)st.dropped, attempted);
        switch (policies[p].policy) {
        case QL_OVERFLOW_BLOCK:
            CHECK_EQ_INT(refused, 0);
            CHECK_EQ_INT(st.dropped, 0);
            break;
        case QL_OVERFLOW_DROP_OLDEST:
            CHECK_EQ_INT(refused, 0); /* never refuses */
            CHECK(st.dropped > 0);
            break;
        default:
            if ((long)st.dropped != refused || accepted != handled)
                QLT_FAIL("%s: refused %ld, dropped %llu; accepted %ld, handled %ld",
                         policies[p].name, refused, (unsigned long long)st.dropped, accepted,
                         handled);
            CHECK(refused > 0);
            break;
        }
        snprintf(summary[p], sizeof summary[p], "%s %ld+%llu", policies[p].name, handled,
                 (unsigned long long)st.dropped);
        CHECK_OK(ql_listener_free(l));
        ql_queue_free(q);
        qlt_latch_destroy(&gate);
        qlt_counter_destroy(&attempts);
        qlt_latch_destroy(&resume);
        qlt_sink_fini(&s);
    }
    PASS("every drop counted, %d producers x %d records on a queue of %d: handled + dropped == "
         "attempted (%s, %s, %s, %s); refused == dropped and accepted == handled for the refusing "
         "policies; each producer's records in order",
         ACC_PRODUCERS, ACC_PER, ACC_CAP, summary[0], summary[1], summary[2], summary[3]);
}

/* ------------------------------------------------------------ options */

static void options_validation(void) {
    ql_queue_options d = ql_queue_options_default();
    CHECK_EQ_INT(d.capacity, 8192);
    CHECK_EQ_INT(d.overflow, QL_OVERFLOW_BLOCK);
    CHECK_EQ_INT(d.block_timeout_ms, 1000);
    CHECK_EQ_INT(d.level, QL_LEVEL_ALL);
    CHECK(d.report_drops == false);
    CHECK_EQ_PTR(d.drop_ctx, NULL);
    CHECK(d.on_drop == NULL);

    ql_queue *const untouched = (ql_queue *)&untouched;
    ql_queue *q = untouched;
    static const ql_overflow bad[] = {4, 5, -1, 100, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ql_queue_options o = ql_queue_options_default();
        o.overflow = bad[i];
        if (ql_queue_new_with_options(&o, &q) != QL_ERR_INVALID || q != untouched)
            QLT_FAIL("overflow %d accepted (or out written)", (int)bad[i]);
    }
    static const size_t caps[] = {(size_t)QL_QUEUE_MAX_CAPACITY + 1, SIZE_MAX};
    for (size_t i = 0; i < 2; i++) {
        ql_queue_options o = ql_queue_options_default();
        o.capacity = caps[i];
        o.overflow = QL_OVERFLOW_DROP_OLDEST;
        CHECK_EQ_STATUS(ql_queue_new_with_options(&o, &q), QL_ERR_INVALID);
        CHECK_EQ_PTR(q, untouched);
    }
    CHECK_EQ_STATUS(ql_queue_new_with_options(NULL, &q), QL_ERR_NULL);
    CHECK_EQ_PTR(q, untouched);
    CHECK_EQ_STATUS(ql_queue_new_with_options(&d, NULL), QL_ERR_NULL);

    /* every policy valid; capacity 0 is unbounded under each */
    for (ql_overflow p = QL_OVERFLOW_BLOCK; p <= QL_OVERFLOW_DROP_OLDEST; p++) {
        ql_queue_options o = ql_queue_options_default();
        o.capacity = 0;
        o.overflow = p;
        o.block_timeout_ms = 0;
        q = untouched;
        CHECK_OK(ql_queue_new_with_options(&o, &q));
        CHECK(q != untouched && q != NULL);
        for (int i = 0; i < 10000; i++) CHECK_OK(ql_log(q, QL_LEVEL_INFO, "u", "m", 1));
        CHECK_EQ_INT(qlt_queue_len(q), 10000);
        ql_queue_free(q);
    }
    /* the default options make a queue of 8192 that blocks */
    q = untouched;
    CHECK_OK(ql_queue_new_with_options(&d, &q));
    for (int i = 0; i < 8192; i++) CHECK_OK(ql_queue_put_nowait(q, QLT_REC(i + 1)));
    CHECK_EQ_STATUS(ql_queue_put_nowait(q, QLT_REC(1)), QL_ERR_FULL);
    ql_queue_free(q);
    PASS("ql_queue_options_default: 8192, BLOCK, 1000 ms, QL_LEVEL_ALL, no report, no on_drop; "
         "unknown overflow (4, 5, -1, 100, INT32_MIN, INT32_MAX) and capacity > "
         "QL_QUEUE_MAX_CAPACITY: QL_ERR_INVALID, out untouched; NULL options / out: QL_ERR_NULL; "
         "capacity 0 unbounded under every policy");
}

int main(void) {
    qlt_begin("test_overflow");
    QLT_RUN(options_validation);
    QLT_RUN(block_policy);
    QLT_RUN(block_timeout_policy);
    QLT_RUN(drop_newest_policy);
    QLT_RUN(drop_oldest_policy);
    QLT_RUN(drop_oldest_on_drop);
    QLT_RUN(drop_oldest_stop);
    QLT_RUN(report_drops);
    QLT_RUN(log_from_handler);
    QLT_RUN(accounting);
    QLT_RUN(drop_oldest_flush);
    return qlt_end();
}
