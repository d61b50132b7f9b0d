/*
 * test_empty: a queue whose dequeue reports QL_DEQUEUE_EMPTY.
 *
 * - the loop ends cleanly by itself (handlers flushed, no error counted);
 * - a later ql_stop joins it without calling enqueue_sentinel, QL_OK;
 * - ql_start works again afterwards, any number of times;
 * - a stop racing with the loop's end leaves nothing behind that would
 *   end the next run early (records put before each stop are handled).
 */
#include "ql_test.h"

static void loop_ends_on_empty(void) {
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    cq.empty_mode = true;
    qlt_handler_ctx hc[2];
    ql_handler handlers[2];
    for (int i = 0; i < 2; i++) {
        qlt_handler_init(&hc[i], i, NULL);
        handlers[i] = qlt_handler(&hc[i], 0);
    }
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, handlers, 2, NULL, false, &l));
    const int base = qlt_thread_count();

    long total = 0;
    for (int run = 1; run <= 5; run++) {
        for (int i = 0; i < 5; i++) qlt_cq_put(&cq, QLT_REC(++total));
        CHECK_OK(ql_start(l));
        /* The dequeue reports EMPTY once the 5 records are taken ... */
        qlt_cq_wait_at_least(&cq, &cq.empties, run);
        /* ... and the loop is over once the handlers are flushed. */
        qlt_counter_wait_at_least(&hc[1].flushed, run);
        CHECK_EQ_INT(qlt_counter_get(&hc[0].handled), total);
        CHECK_EQ_INT(qlt_counter_get(&hc[1].handled), total);
        CHECK_EQ_INT(atomic_load(&hc[0].handled_at_flush), total); /* flushed after handling */
        CHECK_EQ_INT(qlt_cq_get(&cq, &cq.dequeue_calls), 6L * run); /* 5 records, 1 EMPTY */
        CHECK(qlt_is_running(l)); /* a thread until a stop joins it */
        CHECK_OK(ql_stop(l));
        CHECK(!qlt_is_running(l));
        CHECK_EQ_INT(cq.sentinel_calls, 0); /* joined without a sentinel */
        CHECK_EQ_INT(cq.len, 0);
        CHECK_EQ_INT(cq.task_done_null, 0);
        CHECK_EQ_INT(cq.task_done_records, total);
        CHECK_EQ_INT(cq.dequeue_calls, 6L * run); /* no dequeue after EMPTY */
        CHECK_OK(ql_stop(l)); /* and again: nothing */
        CHECK_EQ_INT(cq.sentinel_calls, 0);
        ql_stats s = qlt_stats(l);
        CHECK_EQ_INT(s.handled, total);
        CHECK_EQ_INT(s.dequeue_errors, 0);
        CHECK_EQ_INT(s.handler_errors + s.prepare_errors, 0);
        for (int i = 0; i < 2; i++) CHECK_EQ_INT(atomic_load(&hc[i].flushes), run);
        qlt_wait_thread_count(base);
        if (run == 1)
            PASS("dequeue reported EMPTY: loop ended by itself after 5 records, handlers flushed; "
                 "ql_stop joined it with QL_OK and no enqueue_sentinel call");
    }
    PASS("ql_start after such a stop works again: 5 runs, %ld records, enqueue_sentinel never "
         "called, no thread left",
         total);

    /* The same listener with a blocking queue: the ordinary sentinel. */
    qlt_cq_lock(&cq);
    cq.empty_mode = false;
    qlt_cq_unlock(&cq);
    CHECK_OK(ql_start(l));
    qlt_cq_put(&cq, QLT_REC(++total));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(cq.sentinel_calls, 1);
    CHECK_EQ_INT(cq.dequeued_sentinels, 1);
    CHECK_EQ_INT(qlt_counter_get(&hc[0].handled), total);
    CHECK_EQ_INT(cq.len, 0);
    CHECK_OK(ql_listener_free(l));
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(atomic_load(&hc[i].destroys), 1);
        qlt_handler_fini(&hc[i]);
    }
    qlt_cq_destroy(&cq);
    PASS("then with a blocking queue: one sentinel, all records handled");
}

/* ql_listener_free of a listener whose loop ended on EMPTY: joins it, no
 * sentinel. */
static void free_after_empty(void) {
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    cq.empty_mode = true;
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    const int base = qlt_thread_count();
    qlt_cq_put(&cq, QLT_REC(1));
    CHECK_OK(ql_start(l));
    qlt_counter_wait_at_least(&h.flushed, 1);
    CHECK_OK(ql_listener_free(l));
    CHECK_EQ_INT(cq.sentinel_calls, 0);
    CHECK_EQ_INT(cq.len, 0);
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 1);
    CHECK_EQ_INT(atomic_load(&h.destroys), 1);
    qlt_wait_thread_count(base);
    qlt_handler_fini(&h);
    qlt_cq_destroy(&cq);
    PASS("ql_listener_free after the loop ended on EMPTY: thread joined, no sentinel");
}

/* A stop that comes while the loop is ending on EMPTY (the queue decided
 * EMPTY, the listener has not yet seen it; a short pause inside dequeue
 * only makes that moment likely). Whatever the stop does then, the next
 * runs must not be cut short: the records put before each stop are
 * handled when it returns, and nothing is left on the queue at the end. */
static void stop_racing_with_empty(void) {
    enum { ROUNDS = 30 };
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    cq.empty_mode = true;
    cq.empty_sleep_ms = 2;
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    long total = 0;
    for (int round = 1; round <= ROUNDS; round++) {
        long empties = qlt_cq_get(&cq, &cq.empties);
        for (int i = 0; i < 3; i++) qlt_cq_put(&cq, QLT_REC(++total));
        CHECK_OK(ql_start(l));
        /* Stop as soon as the queue has decided EMPTY (the odd rounds), or
         * at once (the even rounds, racing with the records too). */
        if (round % 2) qlt_cq_wait_at_least(&cq, &cq.empties, empties + 1);
        CHECK_OK(ql_stop_timeout(l, 10000));
        if (qlt_counter_get(&h.handled) != total)
            QLT_FAIL("round %d: %ld of %ld records handled when ql_stop returned QL_OK "
                     "(enqueue_sentinel calls so far: %ld, sentinels dequeued: %ld)",
                     round, qlt_counter_get(&h.handled), total, cq.sentinel_calls,
                     cq.dequeued_sentinels);
    }
    /* A last ordinary run takes whatever was left. */
    qlt_cq_lock(&cq);
    cq.empty_mode = false;
    qlt_cq_unlock(&cq);
    CHECK_OK(ql_start(l));
    qlt_cq_put(&cq, QLT_REC(++total));
    CHECK_OK(ql_stop_timeout(l, 10000));
    CHECK_EQ_INT(qlt_counter_get(&h.handled), total);
    CHECK_EQ_INT(cq.len, 0);
    CHECK_OK(ql_listener_free(l));
    qlt_handler_fini(&h);
    PASS("%d stops racing with the loop ending on EMPTY (%ld sentinels put): every record put "
         "before each stop was handled, queue empty at the end",
         ROUNDS, cq.sentinel_calls);
    qlt_cq_destroy(&cq);
}

int main(void) {
    qlt_begin("test_empty");
    loop_ends_on_empty();
    free_after_empty();
    stop_racing_with_empty();
    return qlt_end();
}
