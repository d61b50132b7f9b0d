/*
 * test_queue: the built-in queue.
 *
 * - capacity 0 is unbounded (100000 put_nowait, none refused);
 * - a capacity over QL_QUEUE_MAX_CAPACITY: QL_ERR_INVALID, out untouched;
 * - full queue: put_nowait QL_ERR_FULL, put_timeout QL_ERR_TIMEOUT;
 * - empty queue: get_nowait QL_ERR_EMPTY, get_timeout QL_ERR_TIMEOUT,
 *   out untouched; a sentinel taken by a get: QL_ERR_SENTINEL;
 * - FIFO order, several producers each in order; ql_queue_len;
 * - NULL is a record like any other (a listener handles it, no stop);
 * - a queue freed while a listener uses it still works;
 * - ql_queue_free(NULL) is a no-op;
 * - a put from a handler onto its own full queue: QL_ERR_WOULD_DEADLOCK
 *   at once; onto a queue with room: QL_OK;
 * - two listeners on one queue: every record handled once by one of them,
 *   each stop ends only its own listener, however the sentinels are taken.
 */
#include "ql_test.h"

static void unbounded(void) {
    enum { N = 100000 };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    for (long i = 1; i <= N; i++) CHECK_OK(ql_queue_put_nowait(q, QLT_REC(i)));
    CHECK_EQ_INT(qlt_queue_len(q), N);
    CHECK_OK(ql_queue_put(q, QLT_REC(N + 1)));
    CHECK_OK(ql_queue_put_timeout(q, QLT_REC(N + 2), 0));
    CHECK_EQ_INT(qlt_queue_len(q), N + 2);
    for (long i = 1; i <= N + 2; i++) {
        void *r = NULL;
        CHECK_OK(ql_queue_get_nowait(q, &r));
        if (r != QLT_REC(i)) QLT_FAIL("get %ld gave %ld: not FIFO", i, QLT_NUM(r));
    }
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    ql_queue_free(q);
    PASS("capacity 0: %d put_nowait all accepted, got back in FIFO order", N + 2);
}

static void capacity_limits(void) {
    ql_queue *const untouched = (ql_queue *)&untouched;
    ql_queue *q = untouched;
    CHECK_EQ_STATUS(ql_queue_new((size_t)QL_QUEUE_MAX_CAPACITY + 1, &q), QL_ERR_INVALID);
    CHECK_EQ_PTR(q, untouched);
    CHECK_EQ_STATUS(ql_queue_new(SIZE_MAX, &q), QL_ERR_INVALID);
    CHECK_EQ_PTR(q, untouched);
    CHECK_EQ_STATUS(ql_queue_new((size_t)QL_QUEUE_MAX_CAPACITY * 2, &q), QL_ERR_INVALID);
    CHECK_EQ_PTR(q, untouched);
    CHECK_EQ_INT(QL_QUEUE_MAX_CAPACITY, 16777216);
    CHECK_OK(ql_queue_new(1, &q));
    CHECK(q != NULL && q != untouched);
    ql_queue_free(q);
    PASS("capacity > QL_QUEUE_MAX_CAPACITY (and SIZE_MAX): QL_ERR_INVALID, out untouched");
}

static void bounded(void) {
    enum { CAP = 3 };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(CAP, &q));
    for (long i = 1; i <= CAP; i++) CHECK_OK(ql_queue_put_nowait(q, QLT_REC(i)));
    CHECK_EQ_INT(qlt_queue_len(q), CAP);
    CHECK_EQ_STATUS(ql_queue_put_nowait(q, QLT_REC(99)), QL_ERR_FULL);
    CHECK_EQ_STATUS(ql_queue_put_timeout(q, QLT_REC(99), 0), QL_ERR_TIMEOUT);
    long long t0 = qlt_now_ms();
    CHECK_EQ_STATUS(ql_queue_put_timeout(q, QLT_REC(99), 30), QL_ERR_TIMEOUT);
    long long took = qlt_now_ms() - t0;
    CHECK(took >= 25 && took < 10000);
    CHECK_EQ_INT(qlt_queue_len(q), CAP);
    void *r = NULL;
    CHECK_OK(ql_queue_get(q, &r));
    CHECK_EQ_PTR(r, QLT_REC(1));
    CHECK_OK(ql_queue_put_timeout(q, QLT_REC(4), 30)); /* room again */
    for (long i = 2; i <= CAP + 1; i++) {
        CHECK_OK(ql_queue_get_timeout(q, 1000, &r));
        CHECK_EQ_PTR(r, QLT_REC(i));
    }
    PASS("capacity %d: put_nowait on full QL_ERR_FULL, put_timeout QL_ERR_TIMEOUT after %lld ms, "
         "nothing put by them",
         CAP, took);

    r = QLT_REC(1234);
    CHECK_EQ_STATUS(ql_queue_get_nowait(q, &r), QL_ERR_EMPTY);
    CHECK_EQ_PTR(r, QLT_REC(1234));
    CHECK_EQ_STATUS(ql_queue_get_timeout(q, 0, &r), QL_ERR_TIMEOUT);
    t0 = qlt_now_ms();
    CHECK_EQ_STATUS(ql_queue_get_timeout(q, 30, &r), QL_ERR_TIMEOUT);
    took = qlt_now_ms() - t0;
    CHECK(took >= 25 && took < 10000);
    CHECK_EQ_PTR(r, QLT_REC(1234));
    ql_queue_free(q);
    PASS("empty: get_nowait QL_ERR_EMPTY, get_timeout QL_ERR_TIMEOUT after %lld ms, out untouched",
         took);
}

static void null_records_and_sentinel(void) {
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(8, &q));
    CHECK_OK(ql_queue_put(q, NULL));
    CHECK_OK(ql_queue_put_nowait(q, NULL));
    CHECK_OK(ql_queue_put_timeout(q, NULL, 10));
    CHECK_EQ_INT(qlt_queue_len(q), 3);
    for (int i = 0; i < 3; i++) {
        void *r = QLT_REC(7);
        CHECK_OK(ql_queue_get_nowait(q, &r));
        CHECK_EQ_PTR(r, NULL);
    }
    PASS("NULL records are records: put three ways, got back with QL_OK");

    /* A sentinel (from ql_enqueue_sentinel on an idle listener) comes back
     * from a get as QL_ERR_SENTINEL, behind the records put before it. */
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, NULL, 0, NULL, false, &l));
    CHECK_OK(ql_queue_put(q, QLT_REC(1)));
    CHECK_OK(ql_enqueue_sentinel(l));
    CHECK_OK(ql_queue_put(q, NULL));
    CHECK_EQ_INT(qlt_queue_len(q), 3);
    void *r = QLT_REC(7);
    CHECK_OK(ql_queue_get(q, &r));
    CHECK_EQ_PTR(r, QLT_REC(1));
    r = QLT_REC(7);
    CHECK_EQ_STATUS(ql_queue_get(q, &r), QL_ERR_SENTINEL);
    CHECK_EQ_PTR(r, QLT_REC(7));
    CHECK_OK(ql_queue_get(q, &r));
    CHECK_EQ_PTR(r, NULL);
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    PASS("a sentinel on the queue: the get removes it and gives QL_ERR_SENTINEL, out untouched");

    /* A listener treats NULL records as records, never as the sentinel. */
    qlt_log log;
    qlt_log_init(&log, 16);
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, &log);
    ql_handler handler = qlt_handler(&h, 0);
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_queue_put(q, NULL));
    CHECK_OK(ql_queue_put(q, QLT_REC(5)));
    CHECK_OK(ql_queue_put(q, NULL));
    qlt_counter_wait_at_least(&h.handled, 3);
    CHECK(qlt_is_running(l));
    CHECK_EQ_INT(atomic_load(&h.flushes), 0); /* the loop did not end */
    CHECK_OK(ql_queue_put(q, QLT_REC(6)));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(log.len, 4);
    CHECK_EQ_PTR(log.ev[0].record, NULL);
    CHECK_EQ_PTR(log.ev[1].record, QLT_REC(5));
    CHECK_EQ_PTR(log.ev[2].record, NULL);
    CHECK_EQ_PTR(log.ev[3].record, QLT_REC(6));
    CHECK_EQ_INT(qlt_stats(l).handled, 4);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_handler_fini(&h);
    qlt_log_destroy(&log);
    PASS("a listener handles NULL records and keeps running");
}

/* Several producers on a small bounded queue, one consumer: nothing lost,
 * each producer's records in its own order. */
enum { PRODUCERS = 4, PER_PRODUCER = 20000 };

typedef struct {
    const ql_queue *q;
    long id;
} prod_arg;

static void *prod_main(void *arg) {
    prod_arg *a = (prod_arg *)arg;
    for (long i = 0; i < PER_PRODUCER; i++) {
        /* record = id * 2^20 + i + 1: never NULL */
        CHECK_OK(ql_queue_put(a->q, QLT_REC((a->id << 20) + i + 1)));
    }
    return NULL;
}

static void fifo_many_producers(void) {
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(16, &q));
    pthread_t t[PRODUCERS];
    prod_arg args[PRODUCERS];
    for (long p = 0; p < PRODUCERS; p++) {
        args[p].q = q;
        args[p].id = p;
        QLT_PT(pthread_create(&t[p], NULL, prod_main, &args[p]));
    }
    long next[PRODUCERS] = {0};
    for (long n = 0; n < (long)PRODUCERS * PER_PRODUCER; n++) {
        void *r = NULL;
        CHECK_OK(ql_queue_get_timeout(q, 1000L * QLT_WAIT_SECONDS, &r));
        long v = QLT_NUM(r);
        long p = v >> 20, i = (v & ((1L << 20) - 1)) - 1;
        CHECK(p >= 0 && p < PRODUCERS);
        if (i != next[p]) QLT_FAIL("producer %ld: got record %ld, want %ld", p, i, next[p]);
        next[p]++;
        size_t len = qlt_queue_len(q);
        CHECK(len <= 16);
    }
    for (int p = 0; p < PRODUCERS; p++) QLT_PT(pthread_join(t[p], NULL));
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    ql_queue_free(q);
    PASS("%d producers x %d records through a queue of 16: all received, each producer's in "
         "order, len never above capacity",
         PRODUCERS, PER_PRODUCER);
}

static void freed_while_listening(void) {
    qlt_latch gate;
    qlt_latch_init(&gate);
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    h.gate = &gate;
    ql_handler handler = qlt_handler(&h, 0);
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(8, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    for (long i = 1; i <= 5; i++) CHECK_OK(ql_queue_put(q, QLT_REC(i)));
    qlt_latch_wait_arrived(&gate, 1); /* the listener is busy with record 1 */
    ql_queue_free(q); /* the program's reference only */
    q = NULL;
    qlt_latch_open(&gate);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 5);
    /* start/stop still work on the queue the listener keeps */
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_listener_free(l));
    qlt_handler_fini(&h);
    qlt_latch_destroy(&gate);
    PASS("queue freed by the program while its listener runs: all 5 queued records handled, stop "
         "and restart work");

    /* Freed before the listener even started. */
    qlt_handler_init(&h, 0, NULL);
    handler = qlt_handler(&h, 0);
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    for (long i = 1; i <= 5; i++) CHECK_OK(ql_queue_put(q, QLT_REC(i)));
    ql_queue_free(q);
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 5);
    CHECK_OK(ql_listener_free(l));
    qlt_handler_fini(&h);
    ql_queue_free(NULL);
    PASS("queue freed before start: records handled; ql_queue_free(NULL) is a no-op");
}

/* ---------------------------------------------------------------- shared queue */

/* Two listeners on one queue while the program puts. Each stop ends only
 * its own listener (a sentinel the other listener's thread takes is held
 * for its listener): every stop returns QL_OK, the other listener keeps
 * running, and every record is handled exactly once by one of the two. */
static void shared_by_two_listeners(void) {
    enum { ROUNDS = 40, PER_ROUND = 500, TOTAL = ROUNDS * PER_ROUND };
    qlt_log log;
    qlt_log_init(&log, TOTAL + 2);
    qlt_handler_ctx ha, hb;
    qlt_handler_init(&ha, 1, &log);
    qlt_handler_init(&hb, 2, &log);
    ql_handler handler_a = qlt_handler(&ha, 0), handler_b = qlt_handler(&hb, 0);
    ql_queue *q = NULL;
    ql_listener *a = NULL, *b = NULL;
    CHECK_OK(ql_queue_new(16, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler_a, 1, NULL, false, &a));
    CHECK_OK(ql_listener_new_with_queue(q, &handler_b, 1, NULL, false, &b));
    long put = 0;
    for (int round = 0; round < ROUNDS; round++) {
        CHECK_OK(ql_start(a));
        CHECK_OK(ql_start(b));
        for (long i = 0; i < PER_ROUND; i++) {
            put++;
            CHECK_OK(ql_queue_put(q, QLT_REC(put)));
        }
        ql_listener *first = round % 2 ? a : b, *second = round % 2 ? b : a;
        CHECK_OK(ql_stop(first));
        CHECK(!qlt_is_running(first));
        CHECK(qlt_is_running(second));
        CHECK_OK(ql_stop(second));
        CHECK_EQ_INT(qlt_queue_len(q), 0);
    }
    CHECK_EQ_INT(put, TOTAL);
    CHECK_EQ_INT(qlt_log_len(&log), TOTAL);
    CHECK_EQ_INT(qlt_counter_get(&ha.handled) + qlt_counter_get(&hb.handled), TOTAL);
    unsigned char *seen = (unsigned char *)calloc(TOTAL + 1, 1);
    CHECK(seen != NULL);
    for (size_t i = 0; i < log.len; i++) {
        long r = QLT_NUM(log.ev[i].record);
        CHECK(r >= 1 && r <= TOTAL);
        if (seen[r]++) QLT_FAIL("record %ld handled twice", r);
    }
    free(seen);
    PASS("two listeners on one queue, %d rounds: each stop ended its own listener only; %d "
         "records handled once each (%ld by one, %ld by the other)",
         ROUNDS, TOTAL, qlt_counter_get(&ha.handled), qlt_counter_get(&hb.handled));

    /* A sentinel put for an idle listener, taken by the other one's thread,
     * waits for its own listener: the next run of `a` ends at once. */
    CHECK_OK(ql_enqueue_sentinel(a));
    CHECK_OK(ql_start(b));
    CHECK_OK(ql_queue_put(q, QLT_REC(put + 1)));
    CHECK_OK(ql_listener_flush(b, 1000L * QLT_WAIT_SECONDS));
    CHECK(qlt_is_running(b));
    CHECK_EQ_INT(qlt_counter_get(&hb.handled) + qlt_counter_get(&ha.handled), TOTAL + 1);
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    /* With a's sentinel held, b is idle and sleeps: over a 300 ms window
     * the process uses far less than the 300 ms of CPU a thread looking
     * for work nonstop would. (A window to measure in, not a wait.) */
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    qlt_sleep_ms(300);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    long long cpu_us = (c1.tv_sec - c0.tv_sec) * 1000000LL + (c1.tv_nsec - c0.tv_nsec) / 1000;
    if (cpu_us > 100000) QLT_FAIL("idle listener b used %lld us of CPU in 300 ms", cpu_us);
    CHECK_OK(ql_stop(b));
    long a_before = qlt_counter_get(&ha.handled);
    CHECK_OK(ql_queue_put(q, QLT_REC(put + 2)));
    CHECK_OK(ql_start(a));
    CHECK_OK(ql_stop_timeout(a, 1000L * QLT_WAIT_SECONDS));
    CHECK_EQ_INT(qlt_counter_get(&ha.handled), a_before);
    CHECK_EQ_INT(qlt_queue_len(q), 1); /* record put+2 waits behind the sentinel */
    CHECK_OK(ql_start(a));
    CHECK_OK(ql_stop(a));
    CHECK_EQ_INT(qlt_counter_get(&ha.handled), a_before + 1);
    PASS("ql_enqueue_sentinel(a) while a is idle and b runs: b takes it and goes on, idle b "
         "sleeps (%lld us of CPU in 300 ms); a's next run ends at it, before the record put "
         "behind it",
         cpu_us);

    CHECK_OK(ql_listener_free(a));
    CHECK_OK(ql_listener_free(b));
    ql_queue_free(q);
    qlt_handler_fini(&ha);
    qlt_handler_fini(&hb);
    qlt_log_destroy(&log);
}

/* ---------------------------------------------------------------- put from a handler */

typedef struct {
    const ql_queue *q;
    qlt_latch *gate;
    ql_status full_put;
    ql_status room_put;
    long long full_put_ms;
    qlt_counter count;
    long seen[16];
} putting_handler;

static int32_t putting_handle(void *ctx, void *record) {
    putting_handler *h = (putting_handler *)ctx;
    long n = qlt_counter_get(&h->count);
    CHECK(n < 16);
    h->seen[n] = QLT_NUM(record);
    if (QLT_NUM(record) == 1) {
        qlt_latch_wait(h->gate); /* the test fills the queue meanwhile */
        long long t0 = qlt_now_ms();
        h->full_put = ql_queue_put(h->q, QLT_REC(100));
        h->full_put_ms = qlt_now_ms() - t0;
    }
    if (QLT_NUM(record) == 2) h->room_put = ql_queue_put(h->q, QLT_REC(200));
    qlt_counter_add(&h->count, 1);
    return 0;
}

static void put_from_handler(void) {
    enum { CAP = 2 };
    qlt_latch gate;
    qlt_latch_init(&gate);
    putting_handler h;
    memset(&h, 0, sizeof h);
    h.gate = &gate;
    h.full_put = h.room_put = -1;
    qlt_counter_init(&h.count);
    ql_handler handler = {&h, 0, putting_handle, NULL, NULL, NULL};
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(CAP, &q));
    h.q = q;
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_queue_put(q, QLT_REC(1)));
    qlt_latch_wait_arrived(&gate, 1);
    CHECK_OK(ql_queue_put(q, QLT_REC(2)));
    CHECK_OK(ql_queue_put(q, QLT_REC(3)));
    CHECK_EQ_INT(qlt_queue_len(q), CAP); /* full */
    qlt_latch_open(&gate);
    qlt_counter_wait_at_least(&h.count, 1);
    CHECK_EQ_STATUS(h.full_put, QL_ERR_WOULD_DEADLOCK);
    CHECK(h.full_put_ms < 1000); /* at once, not after a wait */
    /* record 2 frees a slot for the handler's own put of 200 */
    qlt_counter_wait_at_least(&h.count, 4);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_STATUS(h.room_put, QL_OK);
    CHECK_EQ_INT(qlt_counter_get(&h.count), 4);
    CHECK_EQ_INT(h.seen[0], 1);
    CHECK_EQ_INT(h.seen[1], 2);
    CHECK_EQ_INT(h.seen[2], 3);
    CHECK_EQ_INT(h.seen[3], 200); /* 100 was never put */
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    qlt_counter_destroy(&h.count);
    PASS("put from a handler onto its own full queue: QL_ERR_WOULD_DEADLOCK after %lld ms, no "
         "hang; with room: QL_OK and the record handled",
         h.full_put_ms);
}

int main(void) {
    qlt_begin("test_queue");
    unbounded();
    capacity_limits();
    bounded();
    null_records_and_sentinel();
    fifo_many_producers();
    freed_while_listening();
    put_from_handler();
    shared_by_two_listeners();
    return qlt_end();
}
