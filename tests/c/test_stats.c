/*
 * test_stats: the counters of ql_listener_stats.
 *
 * - queue_depth: records put while the listener is held show up (== the
 *   queue's length), 0 once drained;
 * - queue_high_water: at least the depth built up while the listener was
 *   held (held at the first record after an idle wait, and held in the
 *   middle of a batch), never above the capacity, never decreasing;
 * - dropped: every record a policy refused, since the queue was made
 *   (drops before the listener existed included);
 * - batches: >= 1 after a burst, <= handled;
 * - a listener on a vtable queue: dropped, queue_depth, queue_high_water,
 *   batches all 0;
 * - handled, handler_errors (built-in and vtable queues), prepare_errors
 *   and dequeue_errors 0 when nothing fails there;
 * - NULL listener / out: QL_ERR_NULL.
 */
#include "ql_test.h"

static ql_listener *new_listener(ql_queue *q, qlt_sink *s) {
    ql_handler h = qlt_sink_handler(s, 0);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    return l;
}

/* ------------------------------------------------------------ depth */

static void depth_and_high_water(void) {
    enum { CAP = 16, HELD = 10 };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(CAP, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_latch gate1, gate2;
    qlt_latch_init(&gate1);
    qlt_latch_init(&gate2);
    s.gate_msg[0] = "hold1";
    s.gate[0] = &gate1;
    s.gate_msg[1] = "hold2";
    s.gate[1] = &gate2;
    ql_listener *l = new_listener(q, &s);
    ql_stats st = qlt_stats(l);
    CHECK_EQ_INT(st.queue_depth, 0);
    CHECK_EQ_INT(st.queue_high_water, 0);
    CHECK_OK(ql_start(l));

    /* round 1: HELD records behind a held handler */
    CHECK_OK(qlt_log_str(q, "hold1"));
    qlt_latch_wait_arrived(&gate1, 1);
    for (int i = 0; i < HELD; i++) {
        CHECK_OK(qlt_log_str(q, "r1"));
        st = qlt_stats(l);
        CHECK_EQ_INT(st.queue_depth, i + 1);
    }
    CHECK_EQ_INT(qlt_queue_len(q), HELD);
    qlt_latch_open(&gate1);
    CHECK_OK(ql_listener_flush(l, 10000));
    st = qlt_stats(l);
    CHECK_EQ_INT(st.queue_depth, 0);
    if (st.queue_high_water < HELD || st.queue_high_water > CAP)
        QLT_FAIL("queue_high_water %llu after %d records queued behind a held handler "
                 "(capacity %d)",
                 (unsigned long long)st.queue_high_water, HELD, CAP);
    uint64_t hw1 = st.queue_high_water;

    /* round 2: the queue full */
    CHECK_OK(qlt_log_str(q, "hold2"));
    qlt_latch_wait_arrived(&gate2, 1);
    for (int i = 0; i < CAP; i++) CHECK_OK(qlt_log_str(q, "r2"));
    st = qlt_stats(l);
    CHECK_EQ_INT(st.queue_depth, CAP);
    CHECK(st.queue_high_water >= hw1); /* never decreases */
    qlt_latch_open(&gate2);
    CHECK_OK(ql_listener_flush(l, 10000));
    st = qlt_stats(l);
    CHECK_EQ_INT(st.queue_depth, 0);
    if (st.queue_high_water != CAP)
        QLT_FAIL("queue_high_water %llu after the queue of %d was full behind a held handler",
                 (unsigned long long)st.queue_high_water, CAP);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_stats(l).handled, 2 + HELD + CAP);
    CHECK_EQ_INT(qlt_stats(l).dropped, 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate1);
    qlt_latch_destroy(&gate2);
    qlt_sink_fini(&s);
    PASS("queue_depth counts the records put behind a held handler (1..%d, then 0 once flushed); "
         "queue_high_water %llu >= %d after that, then == capacity %d after the queue was full; "
         "dropped 0",
         HELD, (unsigned long long)hw1, HELD, CAP);
}

/* The listener held in the middle of a batch (records were queued before
 * it started): the depth built up meanwhile shows in queue_high_water. */
static void high_water_mid_batch(void) {
    enum { CAP = 64, BEFORE = 3, HELD = 20 };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(CAP, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_latch gate;
    qlt_latch_init(&gate);
    s.gate_msg[0] = "hold";
    s.gate[0] = &gate;
    ql_listener *l = new_listener(q, &s);
    for (int i = 0; i < BEFORE; i++) CHECK_OK(qlt_log_str(q, "before"));
    CHECK_OK(qlt_log_str(q, "hold"));
    CHECK_OK(ql_start(l));
    qlt_latch_wait_arrived(&gate, 1);
    for (int i = 0; i < HELD; i++) CHECK_OK(qlt_log_str(q, "held"));
    ql_stats st = qlt_stats(l);
    CHECK_EQ_INT(st.queue_depth, HELD);
    qlt_latch_open(&gate);
    CHECK_OK(ql_listener_flush(l, 10000));
    CHECK_OK(ql_stop(l));
    st = qlt_stats(l);
    CHECK_EQ_INT(st.handled, BEFORE + 1 + HELD);
    if (st.queue_high_water < HELD || st.queue_high_water > CAP)
        QLT_FAIL("queue_high_water %llu, but %d records were queued at once while the listener "
                 "was held in the middle of a batch (%d records were queued before ql_start)",
                 (unsigned long long)st.queue_high_water, HELD, BEFORE + 1);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s);
    PASS("queue_high_water %llu >= %d after %d records were queued while the listener was held in "
         "the middle of a batch",
         (unsigned long long)st.queue_high_water, HELD, HELD);
}

/* Under load: depth and high water never above capacity, high water never
 * decreasing, batches never above handled. */
typedef struct {
    ql_queue *q;
    atomic_bool *stop;
} nonstop;

static void *nonstop_main(void *p) {
    nonstop *a = (nonstop *)p;
    while (!atomic_load(a->stop)) CHECK_OK(ql_log(a->q, QL_LEVEL_INFO, "load", "x", 1));
    return NULL;
}

static void under_load(void) {
    enum { CAP = 32, SAMPLES = 300 };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(CAP, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    s.copy = false;
    ql_listener *l = new_listener(q, &s);
    CHECK_OK(ql_start(l));
    atomic_bool stop;
    atomic_init(&stop, false);
    nonstop a[2] = {{q, &stop}, {q, &stop}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) QLT_PT(pthread_create(&t[i], NULL, nonstop_main, &a[i]));
    uint64_t last_hw = 0, max_depth = 0;
    for (int i = 0; i < SAMPLES; i++) {
        ql_stats st = qlt_stats(l);
        if (st.queue_depth > CAP || st.queue_high_water > CAP)
            QLT_FAIL("depth %llu / high water %llu above capacity %d",
                     (unsigned long long)st.queue_depth, (unsigned long long)st.queue_high_water,
                     CAP);
        if (st.queue_high_water < last_hw)
            QLT_FAIL("queue_high_water went down from %llu to %llu", (unsigned long long)last_hw,
                     (unsigned long long)st.queue_high_water);
        if (st.batches > st.handled)
            QLT_FAIL("batches %llu > handled %llu", (unsigned long long)st.batches,
                     (unsigned long long)st.handled);
        CHECK_EQ_INT(st.dropped, 0);
        last_hw = st.queue_high_water;
        if (st.queue_depth > max_depth) max_depth = st.queue_depth;
        if (i % 50 == 0) CHECK_OK(ql_listener_flush(l, 10000));
        qlt_sleep_us(100); /* paces the samples */
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++) QLT_PT(pthread_join(t[i], NULL));
    CHECK_OK(ql_stop(l));
    ql_stats st = qlt_stats(l);
    CHECK(st.queue_high_water <= CAP);
    CHECK(st.queue_high_water >= 1);
    CHECK(st.batches <= st.handled);
    CHECK_EQ_INT(st.queue_depth, 0);
    CHECK_EQ_INT((long)st.handled, qlt_sink_count(&s));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("under load (2 producers, capacity %d, %d samples): depth (max seen %llu) and high water "
         "(%llu) never above capacity, high water never decreasing, batches (%llu) <= handled "
         "(%llu), dropped 0",
         CAP, SAMPLES, (unsigned long long)max_depth, (unsigned long long)st.queue_high_water,
         (unsigned long long)st.batches, (unsigned long long)st.handled);
}

/* ------------------------------------------------------------ dropped */

static void dropped(void) {
    ql_queue_options o = ql_queue_options_default();
    o.capacity = 2;
    o.overflow = QL_OVERFLOW_DROP_NEWEST;
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new_with_options(&o, &q));
    /* before any listener exists */
    CHECK_OK(qlt_log_str(q, "a"));
    CHECK_OK(qlt_log_str(q, "b"));
    CHECK_EQ_STATUS(qlt_log_str(q, "c"), QL_ERR_FULL);
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_latch gate;
    qlt_latch_init(&gate);
    s.gate_msg[0] = "a";
    s.gate[0] = &gate;
    ql_listener *l = new_listener(q, &s);
    ql_stats st = qlt_stats(l);
    CHECK_EQ_INT(st.dropped, 1);
    CHECK_EQ_INT(st.queue_depth, 2);
    CHECK_EQ_INT(st.handled, 0);
    CHECK_OK(ql_start(l));
    qlt_latch_wait_arrived(&gate, 1); /* "a" taken, "b" queued */
    CHECK_OK(qlt_log_str(q, "d"));
    for (int i = 0; i < 5; i++) CHECK_EQ_STATUS(qlt_log_str(q, "refused"), QL_ERR_FULL);
    st = qlt_stats(l);
    CHECK_EQ_INT(st.dropped, 6);
    CHECK_EQ_INT(st.queue_depth, 2);
    qlt_latch_open(&gate);
    CHECK_OK(ql_stop(l));
    st = qlt_stats(l);
    CHECK_EQ_INT(st.dropped, 6);
    CHECK_EQ_INT(st.handled, 3);
    static const char *const want[] = {"a", "b", "d"};
    qlt_sink_expect(&s, want, 3);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_sink_fini(&s);
    PASS("dropped counts every refused record since the queue was made: 1 before the listener "
         "existed, 6 in all; queue_depth 2 on the full queue before start; handled 3");
}

/* ------------------------------------------------------------ handled, errors */

static void handled_and_errors(void) {
    enum { N = 30 };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    qlt_handler_ctx h;
    qlt_handler_init(&h, 1, NULL);
    h.fail_code = 7;
    h.fail_every = 3;
    ql_handler hs[2] = {qlt_sink_handler(&s, 0), qlt_handler(&h, 0)};
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, hs, 2, NULL, false, &l));
    CHECK_OK(ql_start(l));
    for (int i = 0; i < N; i++) CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", "%d", i));
    CHECK_OK(ql_listener_flush(l, 10000));
    ql_stats st = qlt_stats(l);
    CHECK_EQ_INT(st.handled, N);
    CHECK_EQ_INT(st.handler_errors, N / 3);
    CHECK_OK(ql_stop(l));
    st = qlt_stats(l);
    CHECK_EQ_INT(st.handled, N);
    CHECK_EQ_INT(st.handler_errors, N / 3);
    CHECK_EQ_INT(st.prepare_errors, 0);
    CHECK_EQ_INT(st.dequeue_errors, 0);
    CHECK_EQ_INT(st.dropped, 0);
    CHECK_EQ_INT(st.queue_depth, 0);
    CHECK(st.batches >= 1 && st.batches <= st.handled);
    CHECK_EQ_INT(qlt_counter_get(&h.handled), N);
    CHECK_EQ_INT(qlt_sink_count(&s), N);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    qlt_handler_fini(&h);

    ql_stats junk;
    memset(&junk, 0x5A, sizeof junk);
    ql_stats copy = junk;
    CHECK_EQ_STATUS(ql_listener_stats(NULL, &junk), QL_ERR_NULL);
    CHECK(memcmp(&junk, &copy, sizeof junk) == 0);
    PASS("built-in queue, %d records, 2 handlers, one failing every 3rd: handled %d, "
         "handler_errors %d (during the run and after stop), prepare/dequeue errors 0, batches in "
         "[1, handled]; ql_listener_stats(NULL) QL_ERR_NULL, nothing written",
         N, N, N / 3);
}

static void vtable_zeros(void) {
    enum { N = 10 };
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    h.fail_code = 3;
    h.fail_every = 2;
    ql_handler handler = qlt_handler(&h, 0);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    for (long i = 1; i <= N; i++) qlt_cq_put(&cq, QLT_REC(i));
    ql_stats st = qlt_stats(l);
    CHECK_EQ_INT(st.queue_depth, 0); /* 10 queued in the program's queue: not ours to count */
    CHECK_EQ_INT(st.queue_high_water, 0);
    CHECK_OK(ql_start(l));
    qlt_counter_wait_at_least(&h.handled, N);
    for (int r = 0; r < 3; r++) {
        for (long i = 1; i <= N; i++) qlt_cq_put(&cq, QLT_REC(i));
        qlt_counter_wait_at_least(&h.handled, (r + 2) * N);
    }
    CHECK_OK(ql_stop(l));
    st = qlt_stats(l);
    CHECK_EQ_INT(st.handled, 4 * N);
    CHECK_EQ_INT(st.handler_errors, 2 * N);
    CHECK_EQ_INT(st.dropped, 0);
    CHECK_EQ_INT(st.queue_depth, 0);
    CHECK_EQ_INT(st.queue_high_water, 0);
    CHECK_EQ_INT(st.batches, 0);
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    qlt_handler_fini(&h);
    PASS("a listener on a vtable queue: dropped, queue_depth (10 queued), queue_high_water, "
         "batches all 0 (4 bursts of %d handled); handled %d, handler_errors %d",
         N, 4 * N, 2 * N);
}

int main(void) {
    qlt_begin("test_stats");
    QLT_RUN(depth_and_high_water);
    QLT_RUN(dropped);
    QLT_RUN(handled_and_errors);
    QLT_RUN(vtable_zeros);
    QLT_RUN(under_load);
    QLT_RUN(high_water_mid_batch);
    return qlt_end();
}
