/*
 * test_flush: ql_listener_flush (the flush barrier) and batch_end.
 *
 * - QL_OK only once every record put before the call was handled and
 *   every handler's flush ran (after them);
 * - it does not wait for records put after the call: with 2 producers
 *   logging nonstop, repeated flushes return QL_OK (the spdlog PR 3235
 *   deadlock scenario), on a bounded queue kept full and an unbounded one;
 * - QL_ERR_TIMEOUT while a handler is held past the timeout (barrier
 *   queued, or no room for it); later everything goes on and a flush
 *   succeeds;
 * - QL_ERR_NOT_RUNNING (never started, stopped, loop ended by a
 *   sentinel, sentinel queued ahead of the barrier), QL_ERR_WOULD_DEADLOCK
 *   from a handler, QL_ERR_UNSUPPORTED on a vtable queue and with a
 *   dequeue hook, QL_ERR_NULL;
 * - batch_end: called on the listener thread once the queue is found
 *   empty after records, once per batch, never without records, never for
 *   a vtable queue; stats.batches counts them and stays <= handled.
 */
#include "ql_test.h"

static ql_listener *new_listener(ql_queue *q, qlt_sink *sinks, int n) {
    ql_handler hs[4];
    CHECK(n <= 4);
    for (int i = 0; i < n; i++) hs[i] = qlt_sink_handler(&sinks[i], 0);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, hs, (size_t)n, NULL, false, &l));
    return l;
}

typedef struct {
    ql_listener *l;
    uint64_t timeout_ms;
    ql_status st;
    qlt_sink *sink;
    long count_at_return;
    atomic_bool returned;
} flush_arg;

static void *flush_main(void *p) {
    flush_arg *a = (flush_arg *)p;
    a->st = ql_listener_flush(a->l, a->timeout_ms);
    if (a->sink) a->count_at_return = qlt_sink_count(a->sink);
    atomic_store(&a->returned, true);
    return NULL;
}

/* ------------------------------------------------------------ waits */

static void waits_for_prior_records(void) {
    enum { N = 100 };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s[2];
    qlt_sink_init(&s[0], 0);
    qlt_sink_init(&s[1], 1);
    s[1].copy = false;
    qlt_latch gate;
    qlt_latch_init(&gate);
    s[0].gate_msg[0] = "hold";
    s[0].gate[0] = &gate;
    ql_listener *l = new_listener(q, s, 2);
    CHECK_OK(ql_start(l));

    /* a backlog behind a held handler: the flush must wait for all of it */
    CHECK_OK(qlt_log_str(q, "hold"));
    qlt_latch_wait_arrived(&gate, 1);
    for (int i = 1; i < N; i++) CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", "%d", i));
    flush_arg a;
    memset(&a, 0, sizeof a);
    a.l = l;
    a.timeout_ms = 10000;
    a.sink = &s[1];
    atomic_init(&a.returned, false);
    pthread_t t;
    QLT_PT(pthread_create(&t, NULL, flush_main, &a));
    qlt_sleep_ms(30); /* only makes it likely the flush is waiting */
    CHECK(!atomic_load(&a.returned));
    CHECK_EQ_INT(atomic_load(&s[0].flushes), 0);
    qlt_latch_open(&gate);
    QLT_PT(pthread_join(t, NULL));
    CHECK_OK(a.st);
    CHECK(a.count_at_return >= N);
    for (int h = 0; h < 2; h++) {
        CHECK_EQ_INT(atomic_load(&s[h].flushes), 1);
        CHECK(atomic_load(&s[h].count_at_flush) >= N); /* flush ran after the records */
    }

    /* no backlog held: 10000 records then a flush, from this thread */
    long before = qlt_sink_count(&s[1]);
    for (int i = 0; i < 10000; i++) CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", "x", 1));
    long long t0 = qlt_now_ms();
    CHECK_OK(ql_listener_flush(l, 10000));
    long long took = qlt_now_ms() - t0;
    CHECK(qlt_sink_count(&s[1]) >= before + 10000);
    CHECK(qlt_sink_count(&s[0]) >= before + 10000);
    for (int h = 0; h < 2; h++) {
        CHECK_EQ_INT(atomic_load(&s[h].flushes), 2);
        CHECK(atomic_load(&s[h].count_at_flush) >= before + 10000);
    }
    /* a flush of an idle listener: handlers flushed, nothing else */
    CHECK_OK(ql_listener_flush(l, 10000));
    CHECK_EQ_INT(atomic_load(&s[0].flushes), 3);
    CHECK_EQ_INT(atomic_load(&s[1].flushes), 3);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(atomic_load(&s[0].flushes), 4);
    CHECK_EQ_INT(atomic_load(&s[0].wrong_thread), 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s[0]);
    qlt_sink_fini(&s[1]);
    PASS("ql_listener_flush returns QL_OK only after every earlier record was handled (%d held "
         "behind a handler: not returned while held; 10000 more: all handled at return, %lld ms) "
         "and each of 2 handlers' flush ran once per flush, after those records, on the listener "
         "thread",
         N, took);
}

/* ------------------------------------------------------------ producers */

typedef struct {
    ql_queue *q;
    atomic_bool *stop;
    atomic_long logged;
} nonstop;

static void *nonstop_main(void *p) {
    nonstop *a = (nonstop *)p;
    while (!atomic_load(a->stop)) {
        CHECK_OK(ql_log(a->q, QL_LEVEL_INFO, "nonstop", "record", 6));
        atomic_fetch_add(&a->logged, 1);
    }
    return NULL;
}

static void continuous_producers_one(size_t capacity, long long *worst_out, long *handled_out) {
    enum { PRODUCERS = 2, FLUSHES = 10 };
    ql_queue_options o = ql_queue_options_default();
    o.capacity = capacity;
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new_with_options(&o, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    s.copy = false;
    ql_listener *l = new_listener(q, &s, 1);
    CHECK_OK(ql_start(l));
    atomic_bool stop;
    atomic_init(&stop, false);
    nonstop a[PRODUCERS];
    pthread_t t[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        a[i].q = q;
        a[i].stop = &stop;
        atomic_init(&a[i].logged, 0);
        QLT_PT(pthread_create(&t[i], NULL, nonstop_main, &a[i]));
    }
    long long worst = 0;
    for (int f = 0; f < FLUSHES; f++) {
        /* the producers are running: wait until they logged some more */
        long want = qlt_sink_count(&s) + 1000;
        qlt_sink_wait(&s, want);
        long before = 0;
        for (int i = 0; i < PRODUCERS; i++) before += atomic_load(&a[i].logged);
        long long t0 = qlt_now_ms();
        CHECK_OK(ql_listener_flush(l, 10000));
        long long took = qlt_now_ms() - t0;
        if (took > worst) worst = took;
        long handled = qlt_sink_count(&s);
        if (handled < before)
            QLT_FAIL("flush returned with %ld records handled, %ld were logged before it", handled,
                     before);
        CHECK_EQ_INT(atomic_load(&s.flushes), f + 1);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < PRODUCERS; i++) QLT_PT(pthread_join(t[i], NULL));
    CHECK_OK(ql_stop(l));
    *worst_out = worst;
    *handled_out = qlt_sink_count(&s);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
}

static void continuous_producers(void) {
    long long worst_bounded = 0, worst_small = 0;
    long n_bounded = 0, n_small = 0;
    continuous_producers_one(8192, &worst_bounded, &n_bounded);
    continuous_producers_one(64, &worst_small, &n_small);
    PASS("with 2 producers logging nonstop, 10 flushes each returned QL_OK with every record "
         "logged before the call handled (capacity 8192: slowest %lld ms, %ld records; capacity "
         "64: slowest %lld ms, %ld records)",
         worst_bounded, n_bounded, worst_small, n_small);
}

/* ------------------------------------------------------------ timeout */

static void timeout_then_recovers(void) {
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_latch gate;
    qlt_latch_init(&gate);
    s.gate_msg[0] = "hold";
    s.gate[0] = &gate;
    ql_listener *l = new_listener(q, &s, 1);
    CHECK_OK(ql_start(l));
    CHECK_OK(qlt_log_str(q, "hold"));
    qlt_latch_wait_arrived(&gate, 1);
    for (int i = 0; i < 5; i++) CHECK_OK(qlt_log_str(q, "after"));
    long long t0 = qlt_now_ms();
    CHECK_EQ_STATUS(ql_listener_flush(l, 100), QL_ERR_TIMEOUT);
    long long took = qlt_now_ms() - t0;
    CHECK(took >= 95 && took < 10000);
    CHECK_EQ_STATUS(ql_listener_flush(l, 0), QL_ERR_TIMEOUT);
    CHECK(qlt_is_running(l));
    CHECK_EQ_INT(atomic_load(&s.flushes), 0);
    qlt_latch_open(&gate);
    CHECK_OK(ql_listener_flush(l, 10000));
    CHECK_EQ_INT(qlt_sink_count(&s), 6);
    /* the timed-out barriers were queued: reached later, harmlessly */
    CHECK_EQ_INT(atomic_load(&s.flushes), 3);
    CHECK_OK(qlt_log_str(q, "later"));
    CHECK_OK(ql_listener_flush(l, 10000));
    CHECK_EQ_INT(qlt_sink_count(&s), 7);
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s);

    /* no room for the barrier on a full bounded queue */
    CHECK_OK(ql_queue_new(2, &q));
    qlt_sink_init(&s, 1);
    qlt_latch_init(&gate);
    s.gate_msg[0] = "hold";
    s.gate[0] = &gate;
    l = new_listener(q, &s, 1);
    CHECK_OK(ql_start(l));
    CHECK_OK(qlt_log_str(q, "hold"));
    qlt_latch_wait_arrived(&gate, 1);
    CHECK_OK(qlt_log_str(q, "a"));
    CHECK_OK(qlt_log_str(q, "b"));
    t0 = qlt_now_ms();
    CHECK_EQ_STATUS(ql_listener_flush(l, 100), QL_ERR_TIMEOUT);
    long long took_full = qlt_now_ms() - t0;
    CHECK(took_full >= 95 && took_full < 10000);
    CHECK_EQ_INT(qlt_queue_len(q), 2); /* the barrier did not get in */
    qlt_latch_open(&gate);
    CHECK_OK(ql_listener_flush(l, 10000));
    CHECK_EQ_INT(qlt_sink_count(&s), 3);
    CHECK_EQ_INT(atomic_load(&s.flushes), 1);
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s);
    PASS("a handler held past the timeout: flush returns QL_ERR_TIMEOUT after %lld ms (barrier "
         "queued) and %lld ms (full queue, barrier not put), timeout 0 at once; once released "
         "all records are handled, queued barriers served, and a later flush returns QL_OK",
         took, took_full);
}

/* ------------------------------------------------------------ errors */

typedef struct {
    ql_listener *l;
    ql_status from_handler;
    long long ms;
} inner_flush;

static void flush_from_handler(qlt_sink *s, const ql_record *r) {
    inner_flush *f = (inner_flush *)s->arg;
    (void)r;
    long long t0 = qlt_now_ms();
    f->from_handler = ql_listener_flush(f->l, 5000);
    f->ms = qlt_now_ms() - t0;
}


/* A dequeue hook on a built-in queue (ctx), through the queue's get. */
static ql_dequeue_result get_dequeue(void *ctx, bool block, void **record_out) {
    ql_queue *q = (ql_queue *)ctx;
    ql_status st = block ? ql_queue_get(q, record_out) : ql_queue_get_nowait(q, record_out);
    switch (st) {
    case QL_OK: return QL_DEQUEUE_RECORD;
    case QL_ERR_SENTINEL: return QL_DEQUEUE_SENTINEL;
    case QL_ERR_EMPTY: return QL_DEQUEUE_EMPTY;
    default: return QL_DEQUEUE_ERROR;
    }
}

static void errors(void) {
    CHECK_EQ_STATUS(ql_listener_flush(NULL, 1000), QL_ERR_NULL);

    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    ql_listener *l = new_listener(q, &s, 1);
    CHECK_OK(qlt_log_str(q, "queued"));
    CHECK_EQ_STATUS(ql_listener_flush(l, 1000), QL_ERR_NOT_RUNNING); /* never started */
    CHECK_EQ_INT(qlt_sink_count(&s), 0);
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_listener_flush(l, 10000));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_STATUS(ql_listener_flush(l, 1000), QL_ERR_NOT_RUNNING); /* stopped */

    /* the loop ended by itself at a sentinel */
    CHECK_OK(ql_start(l));
    long flushes = atomic_load(&s.flushes);
    CHECK_OK(ql_enqueue_sentinel(l));
    /* the barrier lands behind the sentinel: the loop ends first */
    CHECK_EQ_STATUS(ql_listener_flush(l, 10000), QL_ERR_NOT_RUNNING);
    CHECK_OK(ql_stop(l));
    CHECK(atomic_load(&s.flushes) > flushes);
    CHECK_OK(ql_start(l));
    qlt_latch gate;
    qlt_latch_init(&gate);
    s.gate_msg[0] = "hold";
    s.gate[0] = &gate;
    CHECK_OK(qlt_log_str(q, "hold"));
    qlt_latch_wait_arrived(&gate, 1);
    CHECK_OK(ql_enqueue_sentinel(l)); /* ahead of the barrier */
    flush_arg a;
    memset(&a, 0, sizeof a);
    a.l = l;
    a.timeout_ms = 10000;
    atomic_init(&a.returned, false);
    pthread_t t;
    QLT_PT(pthread_create(&t, NULL, flush_main, &a));
    qlt_sleep_ms(20); /* makes it likely the barrier is queued behind the sentinel */
    qlt_latch_open(&gate);
    QLT_PT(pthread_join(t, NULL));
    CHECK_EQ_STATUS(a.st, QL_ERR_NOT_RUNNING);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_STATUS(ql_listener_flush(l, 1000), QL_ERR_NOT_RUNNING);

    /* from inside a handler */
    CHECK_OK(ql_listener_free(l));
    qlt_sink_fini(&s);
    qlt_sink_init(&s, 1);
    inner_flush f = {NULL, -1, 0};
    s.on_record = flush_from_handler;
    s.arg = &f;
    l = new_listener(q, &s, 1);
    f.l = l;
    CHECK_OK(ql_start(l));
    CHECK_OK(qlt_log_str(q, "flush from here"));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_STATUS(f.from_handler, QL_ERR_WOULD_DEADLOCK);
    CHECK(f.ms < 1000);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    qlt_latch_destroy(&gate);

    /* a vtable queue cannot carry a barrier */
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, 0);
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    qlt_cq_put(&cq, QLT_REC(1));
    CHECK_EQ_STATUS(ql_listener_flush(l, 1000), QL_ERR_UNSUPPORTED);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 1);
    CHECK_EQ_INT(atomic_load(&h.flushes), 1); /* only the stop's */
    qlt_cq_check_pairing(&cq);
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    qlt_handler_fini(&h);
    PASS("ql_listener_flush: QL_ERR_NULL for NULL; QL_ERR_NOT_RUNNING never started, stopped, and "
         "when a sentinel ahead of the barrier ended the loop (no hang); QL_ERR_WOULD_DEADLOCK "
         "from a handler at once (%lld ms); QL_ERR_UNSUPPORTED on a vtable queue",
         f.ms);

    /* A dequeue hook taking from a built-in queue cannot hand a barrier on. */
    qlt_handler_init(&h, 0, NULL);
    handler = qlt_handler(&h, 0);
    ql_queue *bq = NULL;
    CHECK_OK(ql_queue_new(0, &bq));
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = bq;
    hooks.dequeue = get_dequeue;
    CHECK_OK(ql_listener_new_with_queue(bq, &handler, 1, &hooks, false, &l));
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_queue_put(bq, QLT_REC(1)));
    CHECK_EQ_STATUS(ql_listener_flush(l, 1000), QL_ERR_UNSUPPORTED);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 1);
    CHECK_EQ_INT(qlt_queue_len(bq), 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(bq);
    qlt_handler_fini(&h);
    PASS("ql_listener_flush: QL_ERR_UNSUPPORTED when a dequeue hook takes the records off a "
         "built-in queue (it has no way to hand a barrier on); the stop still works");
}

/* ------------------------------------------------------------ batch_end */

/* A record shaped like a built-in one, for a vtable queue. */
static ql_record fake = {.level = QL_LEVEL_INFO, .logger = "v", .logger_len = 1, .message = "m", .message_len = 1};

static void batch_end(void) {
    enum { BURST = 50, ROUNDS = 5 };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s[2];
    qlt_sink_init(&s[0], 0);
    qlt_sink_init(&s[1], 1);
    qlt_latch gate;
    qlt_latch_init(&gate);
    s[0].gate_msg[0] = "hold";
    s[0].gate[0] = &gate;
    ql_listener *l = new_listener(q, s, 2);

    /* no records: no batch */
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_listener_flush(l, 10000));
    CHECK_OK(ql_stop(l));
    if (qlt_counter_get(&s[0].batch_ends) != 0 || qlt_stats(l).batches != 0)
        QLT_FAIL("a listener on a vtable queue called batch_end %ld times (stats.batches %llu); "
                 "ql_handler.batch_end says: never called for a queue given as a vtable",
                 qlt_counter_get(&s[0].batch_ends), (unsigned long long)qlt_stats(l).batches);

    /* one burst behind a held handler: one batch, ending after all of it */
    CHECK_OK(ql_start(l));
    CHECK_OK(qlt_log_str(q, "hold"));
    qlt_latch_wait_arrived(&gate, 1);
    for (int i = 1; i < BURST; i++) CHECK_OK(qlt_log_str(q, "burst"));
    CHECK_EQ_INT(qlt_counter_get(&s[0].batch_ends), 0);
    qlt_latch_open(&gate);
    qlt_counter_wait_at_least(&s[0].batch_ends, 1);
    qlt_counter_wait_at_least(&s[1].batch_ends, 1);
    CHECK_EQ_INT(atomic_load(&s[0].count_at_batch_end), BURST);
    ql_stats st = qlt_stats(l);
    CHECK(st.batches >= 1);
    CHECK(st.batches <= st.handled);

    /* rounds: each burst, once the queue is found empty, ends one batch */
    for (int r = 2; r <= ROUNDS + 1; r++) {
        for (int i = 0; i < BURST; i++) CHECK_OK(qlt_log_str(q, "round"));
        CHECK_OK(ql_listener_flush(l, 10000));
        qlt_counter_wait_at_least(&s[0].batch_ends, r);
        st = qlt_stats(l);
        CHECK(st.batches >= (uint64_t)r);
        CHECK(st.batches <= st.handled);
    }
    CHECK_OK(ql_stop(l));
    st = qlt_stats(l);
    long be0 = qlt_counter_get(&s[0].batch_ends), be1 = qlt_counter_get(&s[1].batch_ends);
    CHECK_EQ_INT(be0, be1);              /* every handler, every batch */
    CHECK_EQ_INT(st.batches, (uint64_t)be0);
    CHECK(st.batches <= st.handled);
    CHECK_EQ_INT(st.handled, BURST * (ROUNDS + 1));
    CHECK_EQ_INT(atomic_load(&s[0].wrong_thread), 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s[0]);
    qlt_sink_fini(&s[1]);

    /* many records from 2 threads: batches never exceed records handled */
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink_init(&s[0], 2);
    s[0].copy = false;
    l = new_listener(q, s, 1);
    CHECK_OK(ql_start(l));
    atomic_bool stop;
    atomic_init(&stop, false);
    nonstop a[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        a[i].q = q;
        a[i].stop = &stop;
        atomic_init(&a[i].logged, 0);
        QLT_PT(pthread_create(&t[i], NULL, nonstop_main, &a[i]));
    }
    for (int i = 0; i < 200; i++) {
        st = qlt_stats(l);
        if (st.batches > st.handled)
            QLT_FAIL("batches %llu > handled %llu", (unsigned long long)st.batches,
                     (unsigned long long)st.handled);
        qlt_sleep_us(200); /* paces the samples */
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++) QLT_PT(pthread_join(t[i], NULL));
    CHECK_OK(ql_stop(l));
    st = qlt_stats(l);
    CHECK(st.batches <= st.handled);
    CHECK_EQ_INT(st.batches, qlt_counter_get(&s[0].batch_ends));
    uint64_t many_batches = st.batches, many_handled = st.handled;
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s[0]);

    /* a vtable queue: never */
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    qlt_sink_init(&s[0], 3);
    s[0].copy = false;
    ql_handler h = qlt_sink_handler(&s[0], 0);
    CHECK_OK(ql_listener_new(&vt, &h, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < 10; i++) qlt_cq_put(&cq, &fake);
        qlt_sink_wait(&s[0], (r + 1) * 10);
    }
    CHECK_OK(ql_stop(l));
    if (qlt_counter_get(&s[0].batch_ends) != 0 || qlt_stats(l).batches != 0)
        QLT_FAIL("a listener on a vtable queue called batch_end %ld times (stats.batches %llu); "
                 "ql_handler.batch_end says: never called for a queue given as a vtable",
                 qlt_counter_get(&s[0].batch_ends), (unsigned long long)qlt_stats(l).batches);
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    qlt_sink_fini(&s[0]);
    PASS("batch_end: not called without records; after a %d-record burst behind a held handler "
         "exactly when all %d were handled, for each handler, on the listener thread; one more "
         "per later burst (%ld in all == stats.batches <= handled); 2 nonstop producers: "
         "batches %llu <= handled %llu at every sample; never for a vtable queue",
         BURST, BURST, be0, (unsigned long long)many_batches, (unsigned long long)many_handled);
}

int main(void) {
    qlt_begin("test_flush");
    QLT_RUN(waits_for_prior_records);
    QLT_RUN(continuous_producers);
    QLT_RUN(timeout_then_recovers);
    QLT_RUN(errors);
    QLT_RUN(batch_end);
    return qlt_end();
}
