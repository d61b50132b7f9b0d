/*
 * test_stop: ql_stop and ql_stop_timeout.
 *
 * - stop puts the sentinel behind every queued record and returns only
 *   once all of them are handled;
 * - stop when never started, and stop twice: QL_OK, nothing enqueued;
 * - stop from inside a handler: QL_ERR_WOULD_DEADLOCK, nothing changed;
 * - a listener that takes the sentinel before the stopping thread goes on:
 *   every later stop still puts its own sentinel (no hang);
 * - two threads stopping at once: both QL_OK, one sentinel, one join;
 * - a full bounded queue: stop_timeout gives QL_ERR_TIMEOUT and leaves the
 *   listener running and usable; a plain stop waits until room appears;
 * - enqueue_sentinel failing: ql_stop and ql_listener_free give
 *   QL_ERR_QUEUE, the listener keeps running, nothing is freed.
 */
#include "ql_test.h"

/* ------------------------------------------------ a sequence-checking handler */

typedef struct {
    long expected; /* next sequence number */
    long bad;      /* out-of-order records */
    qlt_counter count;
    qlt_latch *gate; /* when set, each call waits here */
} seq_handler;

static int32_t seq_handle(void *ctx, void *record) {
    seq_handler *h = (seq_handler *)ctx;
    if (h->gate) qlt_latch_wait(h->gate);
    if (QLT_NUM(record) != h->expected) h->bad++;
    h->expected = QLT_NUM(record) + 1;
    qlt_counter_add(&h->count, 1);
    return 0;
}

static void seq_init(seq_handler *h) {
    memset(h, 0, sizeof *h);
    qlt_counter_init(&h->count);
}

static ql_handler seq_as_handler(seq_handler *h) {
    ql_handler out = {h, 0, seq_handle, NULL, NULL, NULL};
    return out;
}

/* ------------------------------------------------------------- everything handled */

static void stop_handles_everything(void) {
    enum { N = 10000 };
    seq_handler h;
    seq_init(&h);
    ql_handler handler = seq_as_handler(&h);
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    for (long i = 0; i < N; i++) CHECK_OK(ql_queue_put(q, QLT_REC(i)));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&h.count), N); /* immediately, no waiting */
    CHECK_EQ_INT(h.bad, 0);
    CHECK_EQ_INT(h.expected, N);
    CHECK_EQ_INT(qlt_stats(l).handled, N);
    CHECK_EQ_INT(qlt_queue_len(q), 0); /* the sentinel was consumed too */
    CHECK(!qlt_is_running(l));

    /* Records put before start are handled by the first stop too. */
    for (long i = N; i < 2 * N; i++) CHECK_OK(ql_queue_put(q, QLT_REC(i)));
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&h.count), 2 * N);
    CHECK_EQ_INT(h.bad, 0);
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_counter_destroy(&h.count);
    PASS("stop after %d puts: all %d handled in order when it returns, queue empty", N, N);

    /* The same on a vtable queue: one sentinel, behind the records. */
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    seq_init(&h);
    handler = seq_as_handler(&h);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    for (long i = 0; i < N; i++) qlt_cq_put(&cq, QLT_REC(i));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&h.count), N);
    CHECK_EQ_INT(h.bad, 0);
    CHECK_EQ_INT(cq.sentinel_calls, 1);
    CHECK_EQ_INT(cq.dequeued_sentinels, 1);
    CHECK_EQ_INT(cq.dequeued_records, N);
    CHECK_EQ_INT(cq.len, 0);
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    qlt_counter_destroy(&h.count);
    PASS("vtable queue: stop enqueues one sentinel behind %d records, all handled", N);
}

/* ------------------------------------------------------------- not running */

static void stop_when_not_running(void) {
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, 0);
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(4, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_stop_timeout(l, 0));
    CHECK_OK(ql_stop_timeout(l, 10));
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    CHECK(!qlt_is_running(l));
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_stop_timeout(l, 0));
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    CHECK_EQ_INT(atomic_load(&h.flushes), 1); /* one loop ended, one flush */
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_handler_fini(&h);
    PASS("built-in queue: stop before start and stop twice give QL_OK, queue stays empty");

    qlt_cq cq;
    qlt_cq_init(&cq, 4);
    qlt_handler_init(&h, 0, NULL);
    handler = qlt_handler(&h, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_stop_timeout(l, 10));
    CHECK_EQ_INT(cq.sentinel_calls, 0);
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(cq.sentinel_calls, 1);
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_stop_timeout(l, 10));
    CHECK_EQ_INT(cq.sentinel_calls, 1);
    CHECK_EQ_INT(cq.len, 0);
    CHECK_EQ_INT(cq.task_done_null, 1);
    CHECK_OK(ql_listener_free(l));
    CHECK_EQ_INT(cq.sentinel_calls, 1); /* free of a stopped listener enqueues nothing */
    qlt_cq_destroy(&cq);
    qlt_handler_fini(&h);
    PASS("vtable queue: enqueue_sentinel called 0 times before start, once for start+stop+stop");
}

/* ------------------------------------------------------------- from a handler */

typedef struct {
    const ql_listener *l;
    qlt_counter count;
    ql_status stop, stop_timeout, free_status, start;
    bool running;
} inside_handler;

static int32_t inside_handle(void *ctx, void *record) {
    inside_handler *h = (inside_handler *)ctx;
    if (QLT_NUM(record) == 1) {
        h->stop = ql_stop(h->l);
        h->stop_timeout = ql_stop_timeout(h->l, 100);
        h->start = ql_start(h->l);
        h->free_status = ql_listener_free((ql_listener *)h->l);
        CHECK_OK(ql_listener_is_running(h->l, &h->running));
    }
    qlt_counter_add(&h->count, 1);
    return 0;
}

static void stop_from_handler(void) {
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    inside_handler h;
    memset(&h, 0, sizeof h);
    qlt_counter_init(&h.count);
    ql_handler handler = {&h, 0, inside_handle, NULL, NULL, NULL};
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    h.l = l;
    CHECK_OK(ql_start(l));
    qlt_cq_put(&cq, QLT_REC(1));
    qlt_counter_wait_at_least(&h.count, 1);
    CHECK_EQ_STATUS(h.stop, QL_ERR_WOULD_DEADLOCK);
    CHECK_EQ_STATUS(h.stop_timeout, QL_ERR_WOULD_DEADLOCK);
    CHECK_EQ_STATUS(h.start, QL_ERR_ALREADY_STARTED);
    CHECK_EQ_STATUS(h.free_status, QL_ERR_WOULD_DEADLOCK);
    CHECK(h.running);
    CHECK_EQ_INT(qlt_cq_get(&cq, &cq.sentinel_calls), 0); /* nothing enqueued */
    CHECK(qlt_is_running(l));
    /* Still listening. */
    for (long i = 2; i <= 10; i++) qlt_cq_put(&cq, QLT_REC(i));
    qlt_counter_wait_at_least(&h.count, 10);
    CHECK_EQ_INT(qlt_cq_get(&cq, &cq.dequeued_sentinels), 0);
    CHECK(qlt_is_running(l));
    CHECK_OK(ql_stop(l));
    CHECK(!qlt_is_running(l));
    CHECK_EQ_INT(qlt_counter_get(&h.count), 10);
    CHECK_EQ_INT(cq.sentinel_calls, 1);
    CHECK_EQ_INT(cq.dequeued_sentinels, 1);
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    qlt_counter_destroy(&h.count);
    PASS("ql_stop/ql_stop_timeout/ql_listener_free from a handler: QL_ERR_WOULD_DEADLOCK, "
         "nothing enqueued, listener goes on; a later stop works");
}

/* ------------------------------------------------------------- a quick listener */

/* The listener may take the sentinel (and end) before the thread that put
 * it goes on: any thread can be preempted right after enqueue_sentinel
 * returns. The queue here forces that interleaving (its enqueue_sentinel
 * returns once the listener acknowledged the sentinel). Every later stop
 * must still put its own sentinel and return. A stop that believes a
 * sentinel is still on its way would wait forever: ql_stop_timeout turns
 * that hang into a failure. */
static void stop_after_sentinel_taken_at_once(void) {
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    cq.sentinel_wait_ack = true;
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    for (long round = 1; round <= 3; round++) {
        CHECK_OK(ql_start(l));
        qlt_cq_put(&cq, QLT_REC(round));
        CHECK_OK(ql_stop_timeout(l, 5000));
        CHECK(!qlt_is_running(l));
        CHECK_EQ_INT(qlt_counter_get(&h.handled), round);
        CHECK_EQ_INT(cq.sentinel_calls, round);
        CHECK_EQ_INT(cq.dequeued_sentinels, round);
        CHECK_EQ_INT(cq.len, 0);
    }
    /* ql_enqueue_sentinel has the same window. */
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_enqueue_sentinel(l));
    qlt_counter_wait_at_least(&h.flushed, 4); /* the loop ended at that sentinel */
    CHECK_OK(ql_stop_timeout(l, 5000));       /* joins it, no second sentinel */
    CHECK_EQ_INT(cq.sentinel_calls, 4);
    CHECK_OK(ql_start(l));
    qlt_cq_put(&cq, QLT_REC(4));
    CHECK_OK(ql_stop_timeout(l, 5000));
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 4);
    CHECK_EQ_INT(cq.sentinel_calls, 5);
    CHECK_EQ_INT(cq.dequeued_sentinels, 5);
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    qlt_handler_fini(&h);
    PASS("listener takes each sentinel before the stopping thread goes on: every later stop "
         "still puts its own sentinel and returns");
}

/* A sentinel put while the listener is idle is for the next run, as in
 * Python: that run ends at it, and the records behind it wait for the run
 * after. */
static void sentinel_put_while_idle(void) {
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    qlt_cq_put(&cq, QLT_REC(1));
    CHECK_OK(ql_enqueue_sentinel(l));
    qlt_cq_put(&cq, QLT_REC(2));
    CHECK_OK(ql_start(l));
    qlt_counter_wait_at_least(&h.flushed, 1); /* the loop ended at the sentinel */
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 1);
    CHECK_EQ_INT(cq.dequeued_sentinels, 1);
    CHECK_EQ_INT(cq.len, 1); /* record 2 waits */
    CHECK_OK(ql_start(l));  /* joins the ended run, starts the next */
    CHECK_OK(ql_stop_timeout(l, 5000));
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 2);
    CHECK_EQ_INT(cq.sentinel_calls, 2);
    CHECK_EQ_INT(cq.dequeued_sentinels, 2);
    CHECK_EQ_INT(cq.len, 0);
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    qlt_handler_fini(&h);
    PASS("a sentinel put while idle ends the next run at it; the records behind it are handled "
         "by the run after");
}

/* ------------------------------------------------------------- two stoppers */

typedef struct {
    const ql_listener *l;
    pthread_barrier_t *barrier;
    ql_status status;
} stopper;

static void *stopper_main(void *arg) {
    stopper *s = (stopper *)arg;
    int rc = pthread_barrier_wait(s->barrier);
    if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) QLT_FAIL("pthread_barrier_wait: %d", rc);
    s->status = ql_stop(s->l);
    return NULL;
}

static void concurrent_stops(int rounds, bool hold_in_handler) {
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    qlt_latch gate;
    seq_handler h;
    seq_init(&h);
    ql_handler handler = seq_as_handler(&h);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    const int base_threads = qlt_thread_count();
    long records = 0; /* records are 1, 2, ...: a NULL record's task_done would look like the sentinel's */
    h.expected = 1;
    for (int r = 0; r < rounds; r++) {
        pthread_barrier_t barrier;
        QLT_PT(pthread_barrier_init(&barrier, NULL, 3));
        qlt_latch_init(&gate);
        h.gate = hold_in_handler ? &gate : NULL;
        CHECK_OK(ql_start(l));
        for (int i = 0; i < 5; i++) qlt_cq_put(&cq, QLT_REC(++records));
        if (hold_in_handler) qlt_latch_wait_arrived(&gate, 1);
        stopper s[2] = {{l, &barrier, -1}, {l, &barrier, -1}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++) QLT_PT(pthread_create(&t[i], NULL, stopper_main, &s[i]));
        int rc = pthread_barrier_wait(&barrier);
        if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) QLT_FAIL("pthread_barrier_wait: %d", rc);
        if (hold_in_handler) {
            qlt_sleep_ms(5); /* only to make it likely both stops are waiting */
            qlt_latch_open(&gate);
        }
        for (int i = 0; i < 2; i++) QLT_PT(pthread_join(t[i], NULL));
        CHECK_EQ_STATUS(s[0].status, QL_OK);
        CHECK_EQ_STATUS(s[1].status, QL_OK);
        CHECK(!qlt_is_running(l));
        /* every record before the stops handled, one sentinel put and taken */
        CHECK_EQ_INT(qlt_counter_get(&h.count), records);
        CHECK_EQ_INT(cq.sentinel_calls, r + 1);
        CHECK_EQ_INT(cq.dequeued_sentinels, r + 1);
        CHECK_EQ_INT(cq.task_done_null, r + 1);
        CHECK_EQ_INT(cq.len, 0);
        qlt_wait_thread_count(base_threads);
        h.gate = NULL;
        qlt_latch_destroy(&gate);
        QLT_PT(pthread_barrier_destroy(&barrier));
    }
    CHECK_EQ_INT(h.bad, 0);
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    qlt_counter_destroy(&h.count);
    PASS("two threads stopping at once, %d rounds%s: both QL_OK, exactly one sentinel a round, "
         "thread joined",
         rounds, hold_in_handler ? " (handler held until both stops began)" : "");
}

/* ------------------------------------------------------------- full bounded queue */

static void stop_timeout_on_full_queue(void) {
    enum { CAP = 4 };
    qlt_latch gate;
    qlt_latch_init(&gate);
    seq_handler h;
    seq_init(&h);
    h.gate = &gate;
    ql_handler handler = seq_as_handler(&h);
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(CAP, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_queue_put(q, QLT_REC(0)));
    qlt_latch_wait_arrived(&gate, 1); /* the listener holds record 0 */
    for (long i = 1; i <= CAP; i++) CHECK_OK(ql_queue_put(q, QLT_REC(i)));
    CHECK_EQ_INT(qlt_queue_len(q), CAP);

    long long t0 = qlt_now_ms();
    CHECK_EQ_STATUS(ql_stop_timeout(l, 50), QL_ERR_TIMEOUT);
    long long took = qlt_now_ms() - t0;
    CHECK(took >= 45);
    CHECK(took < 10000);
    CHECK(qlt_is_running(l));
    CHECK_EQ_INT(qlt_queue_len(q), CAP); /* the sentinel did not get in */
    CHECK_EQ_INT(qlt_counter_get(&h.count), 0);
    /* usable: a second start is refused (still running), a zero-timeout stop times out too */
    CHECK_EQ_STATUS(ql_start(l), QL_ERR_ALREADY_STARTED);
    CHECK_EQ_STATUS(ql_stop_timeout(l, 0), QL_ERR_TIMEOUT);
    CHECK(qlt_is_running(l));
    CHECK_EQ_STATUS(ql_queue_put_nowait(q, QLT_REC(99)), QL_ERR_FULL);
    PASS("full bounded queue (capacity %d), handler blocked: stop_timeout(50) gives "
         "QL_ERR_TIMEOUT after %lld ms, listener still running",
         CAP, took);

    qlt_latch_open(&gate);
    /* Still usable: records put after the failed stop are handled too. */
    CHECK_OK(ql_queue_put(q, QLT_REC(CAP + 1)));
    CHECK_OK(ql_stop(l));
    CHECK(!qlt_is_running(l));
    CHECK_EQ_INT(qlt_counter_get(&h.count), CAP + 2);
    CHECK_EQ_INT(h.bad, 0);
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    /* and it starts again */
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_queue_put(q, QLT_REC(CAP + 2)));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&h.count), CAP + 3);
    CHECK_EQ_INT(h.bad, 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_counter_destroy(&h.count);
    PASS("after the timeout: handler released, ql_stop gives QL_OK with all %d records handled "
         "in order; restart works",
         CAP + 2);
}

/* The stop_timeout sentinel went in, but the thread did not reach it in
 * time: the listener stays usable, so that sentinel is skipped when
 * reached and a later ql_stop puts its own, handling the records put after
 * the timed-out stop too. */
static void stop_timeout_with_sentinel_in(void) {
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    qlt_latch gate;
    qlt_latch_init(&gate);
    seq_handler h;
    seq_init(&h);
    h.gate = &gate;
    ql_handler handler = seq_as_handler(&h);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    qlt_cq_put(&cq, QLT_REC(0));
    qlt_cq_put(&cq, QLT_REC(1));
    qlt_latch_wait_arrived(&gate, 1);
    CHECK_EQ_STATUS(ql_stop_timeout(l, 30), QL_ERR_TIMEOUT);
    CHECK(qlt_is_running(l));
    CHECK_EQ_INT(qlt_cq_get(&cq, &cq.sentinel_calls), 1);
    CHECK_EQ_INT(qlt_cq_len(&cq), 2); /* record 1 and the sentinel */
    qlt_cq_put(&cq, QLT_REC(2));       /* behind the timed-out stop's sentinel */
    qlt_latch_open(&gate);
    CHECK_OK(ql_stop(l));
    CHECK(!qlt_is_running(l));
    CHECK_EQ_INT(cq.sentinel_calls, 2);      /* the later stop put its own */
    CHECK_EQ_INT(cq.dequeued_sentinels, 2);  /* the first was taken and skipped */
    CHECK_EQ_INT(cq.len, 0);
    CHECK_EQ_INT(qlt_counter_get(&h.count), 3); /* record 2 handled too */
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    qlt_latch_destroy(&gate);
    qlt_counter_destroy(&h.count);
    PASS("stop_timeout with the sentinel in but not reached: QL_ERR_TIMEOUT; that sentinel is "
         "skipped, a later stop puts its own and handles the records put in between");
}

/* A plain stop on a full queue waits until the sentinel gets in. The
 * handler is released from another thread once the stop has found the
 * queue full (a vtable queue reports that), so the order is certain. */
typedef struct {
    qlt_cq *cq;
    qlt_latch *gate;
    long sleep_ms; /* built-in queue: no signal, a sleep only makes the order likely */
} releaser;

static void *releaser_main(void *arg) {
    releaser *r = (releaser *)arg;
    if (r->cq) qlt_cq_wait_at_least(r->cq, &r->cq->sentinel_full, 1);
    else qlt_sleep_ms(r->sleep_ms);
    qlt_latch_open(r->gate);
    return NULL;
}

static void stop_waits_on_full_queue(bool vtable_queue) {
    enum { CAP = 4 };
    qlt_cq cq;
    qlt_cq_init(&cq, CAP);
    qlt_latch gate;
    qlt_latch_init(&gate);
    seq_handler h;
    seq_init(&h);
    h.gate = &gate;
    ql_handler handler = seq_as_handler(&h);
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    if (vtable_queue) {
        ql_queue_vtable vt = qlt_cq_vtable(&cq);
        CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    } else {
        CHECK_OK(ql_queue_new(CAP, &q));
        CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    }
    CHECK_OK(ql_start(l));
    for (long i = 0; i <= CAP; i++) {
        if (vtable_queue) qlt_cq_put(&cq, QLT_REC(i));
        else CHECK_OK(ql_queue_put(q, QLT_REC(i)));
        if (i == 0) qlt_latch_wait_arrived(&gate, 1);
    }
    releaser r = {vtable_queue ? &cq : NULL, &gate, 20};
    pthread_t t;
    QLT_PT(pthread_create(&t, NULL, releaser_main, &r));
    CHECK_OK(ql_stop(l));
    QLT_PT(pthread_join(t, NULL));
    CHECK(!qlt_is_running(l));
    CHECK_EQ_INT(qlt_counter_get(&h.count), CAP + 1);
    CHECK_EQ_INT(h.bad, 0);
    if (vtable_queue) {
        CHECK(cq.sentinel_full >= 1);
        CHECK_EQ_INT(cq.sentinel_ok, 1);
        CHECK_EQ_INT(cq.dequeued_sentinels, 1);
        CHECK_EQ_INT(cq.len, 0);
    } else {
        CHECK_EQ_INT(qlt_queue_len(q), 0);
    }
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_cq_destroy(&cq);
    qlt_latch_destroy(&gate);
    qlt_counter_destroy(&h.count);
    if (vtable_queue)
        PASS("vtable queue full (sentinel refused %ld times): ql_stop waited, then all %d records "
             "handled and one sentinel",
             r.cq->sentinel_full, CAP + 1);
    else
        PASS("built-in queue full, handler released from another thread: ql_stop returns QL_OK "
             "with all %d records handled",
             CAP + 1);
}

/* ------------------------------------------------------------- enqueue failure */

static void stop_with_failing_enqueue(void) {
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    qlt_cq_lock(&cq);
    cq.force_sentinel_result = true;
    cq.sentinel_result = QL_ENQUEUE_ERROR;
    qlt_cq_unlock(&cq);
    CHECK_EQ_STATUS(ql_stop(l), QL_ERR_QUEUE);
    CHECK(qlt_is_running(l));
    qlt_cq_lock(&cq);
    cq.sentinel_result = 77; /* any other value is an error too */
    qlt_cq_unlock(&cq);
    CHECK_EQ_STATUS(ql_stop(l), QL_ERR_QUEUE);
    CHECK_EQ_STATUS(ql_stop_timeout(l, 1000), QL_ERR_QUEUE);
    CHECK(qlt_is_running(l));
    qlt_cq_put(&cq, QLT_REC(1));
    qlt_counter_wait_at_least(&h.handled, 1);
    qlt_cq_lock(&cq);
    cq.force_sentinel_result = false;
    qlt_cq_unlock(&cq);
    CHECK_OK(ql_stop(l));
    CHECK(!qlt_is_running(l));
    CHECK_EQ_INT(cq.sentinel_calls, 4);
    CHECK_EQ_INT(cq.sentinel_ok, 1);
    CHECK_EQ_INT(cq.dequeued_sentinels, 1);
    PASS("enqueue_sentinel failing (QL_ENQUEUE_ERROR, 77): ql_stop gives QL_ERR_QUEUE, the "
         "listener keeps running; a later stop works");

    /* ql_listener_free stops the same way: on failure it frees nothing. */
    CHECK_OK(ql_start(l));
    qlt_cq_lock(&cq);
    cq.force_sentinel_result = true;
    cq.sentinel_result = QL_ENQUEUE_ERROR;
    qlt_cq_unlock(&cq);
    CHECK_EQ_STATUS(ql_listener_free(l), QL_ERR_QUEUE);
    CHECK(qlt_is_running(l));
    CHECK_EQ_INT(atomic_load(&h.destroys), 0);
    qlt_cq_put(&cq, QLT_REC(2));
    qlt_counter_wait_at_least(&h.handled, 2); /* still listening */
    qlt_cq_lock(&cq);
    cq.force_sentinel_result = false;
    qlt_cq_unlock(&cq);
    qlt_cq_put(&cq, QLT_REC(3));
    CHECK_OK(ql_listener_free(l));
    CHECK_EQ_INT(atomic_load(&h.destroys), 1);
    CHECK_EQ_INT(atomic_load(&h.flushes), 2);
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 3);
    CHECK_EQ_INT(cq.sentinel_ok, 2);
    CHECK_EQ_INT(cq.dequeued_sentinels, 2);
    CHECK_EQ_INT(cq.len, 0);
    qlt_cq_destroy(&cq);
    qlt_handler_fini(&h);
    PASS("ql_listener_free while enqueue_sentinel fails: QL_ERR_QUEUE, nothing freed, listener "
         "runs on; once the queue works, free stops it (all records handled) and destroys");
}

int main(void) {
    qlt_begin("test_stop");
    stop_handles_everything();
    stop_when_not_running();
    stop_from_handler();
    stop_after_sentinel_taken_at_once();
    sentinel_put_while_idle();
    concurrent_stops(200, false);
    concurrent_stops(20, true);
    stop_timeout_on_full_queue();
    stop_timeout_with_sentinel_in();
    stop_waits_on_full_queue(true);
    stop_waits_on_full_queue(false);
    stop_with_failing_enqueue();
    return qlt_end();
}
