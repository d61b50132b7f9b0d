/*
 * test_failures: failures never stop the listener.
 *
 * - a handler returning nonzero: counted in handler_errors, told to
 *   on_error (QL_STAGE_HANDLER, its index, the record, the code); the next
 *   handler and the next records still run;
 * - the handle hook returning nonzero: QL_STAGE_HANDLE;
 * - prepare returning nonzero: the record is skipped (no handler sees it),
 *   prepare_errors, on_error QL_STAGE_PREPARE; task_done and done still
 *   come for it;
 * - prepare that wrote a replacement before failing: the replacement
 *   still goes to release;
 * - task_done once per dequeued record and once (NULL) per sentinel, each
 *   before the next dequeue;
 * - dequeue failing (QL_DEQUEUE_ERROR, or any unknown value) then
 *   recovering: dequeue_errors, on_error QL_STAGE_DEQUEUE, later records
 *   handled; a stop while dequeue keeps failing returns QL_ERR_QUEUE, and the next run
 *   is not disturbed by it.
 */
#include "ql_test.h"

#define N 10

/* ---------------------------------------------------------------- on_error log */

typedef struct {
    ql_stage stage;
    size_t index;
    void *record;
    int32_t code;
} err_entry;

typedef struct {
    err_entry e[256];
    qlt_counter n;
    /* prepare: fail records whose number is a multiple of fail_mod */
    long fail_mod;
    int32_t prepare_code;
    long prepare_calls;
    long done_calls;
    qlt_counter done; /* waitable: done comes after every counter of a record */
    long done_seen[N + 2];
    long handle_calls;   /* handle hook */
    int32_t handle_code; /* handle hook: returned for even records */
    qlt_cq *cq;          /* when set, done checks task_done came first */
} err_state;

static void on_error_hook(void *ctx, ql_stage stage, size_t index, void *record, int32_t code) {
    err_state *st = (err_state *)ctx;
    long i = qlt_counter_get(&st->n);
    CHECK(i < 256);
    st->e[i].stage = stage;
    st->e[i].index = index;
    st->e[i].record = record;
    st->e[i].code = code;
    qlt_counter_add(&st->n, 1);
}

static int32_t failing_prepare(void *ctx, void *record, void **prepared_out) {
    (void)prepared_out;
    err_state *st = (err_state *)ctx;
    st->prepare_calls++;
    if (st->fail_mod && QLT_NUM(record) % st->fail_mod == 0) return st->prepare_code;
    return 0;
}

static void counting_done(void *ctx, void *record) {
    err_state *st = (err_state *)ctx;
    long r = QLT_NUM(record);
    CHECK(r >= 0 && r <= N + 1); /* 0: a NULL record */
    if (st->cq) { /* task_done came first, for this very record */
        qlt_cq_lock(st->cq);
        bool acked = !st->cq->awaiting_task_done && !st->cq->last_was_sentinel &&
                     st->cq->last_record == record;
        qlt_cq_unlock(st->cq);
        CHECK(acked);
    }
    st->done_seen[r]++;
    st->done_calls++;
    qlt_counter_add(&st->done, 1);
}

static int32_t failing_handle_hook(void *ctx, void *record) {
    err_state *st = (err_state *)ctx;
    st->handle_calls++;
    return QLT_NUM(record) % 2 == 0 ? st->handle_code : 0;
}

static void err_init(err_state *st) {
    memset(st, 0, sizeof *st);
    qlt_counter_init(&st->n);
    qlt_counter_init(&st->done);
}

static void err_fini(err_state *st) {
    qlt_counter_destroy(&st->n);
    qlt_counter_destroy(&st->done);
}

static ql_hooks err_hooks(err_state *st) {
    ql_hooks h;
    memset(&h, 0, sizeof h);
    h.ctx = st;
    h.on_error = on_error_hook;
    h.done = counting_done;
    return h;
}

/* ---------------------------------------------------------------- handlers fail */

static void handler_errors(void) {
    err_state st;
    err_init(&st);
    qlt_log log;
    qlt_log_init(&log, 16 * N);
    /* h0 fine, h1 fails every second call (code 7), h2 fine, h3 always fails (-1) */
    qlt_handler_ctx hc[4];
    ql_handler handlers[4];
    for (int i = 0; i < 4; i++) {
        qlt_handler_init(&hc[i], i, &log);
        handlers[i] = qlt_handler(&hc[i], 0);
    }
    hc[1].fail_every = 2;
    hc[1].fail_code = 7;
    hc[3].fail_every = 1;
    hc[3].fail_code = -1;
    ql_hooks hooks = err_hooks(&st);
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, handlers, 4, &hooks, false, &l));
    CHECK_OK(ql_start(l));
    for (long r = 1; r <= N; r++) CHECK_OK(ql_queue_put(q, QLT_REC(r)));
    qlt_counter_wait_at_least(&st.done, N); /* the last step of the N-th record */
    CHECK(qlt_is_running(l)); /* still running after 15 failures */
    ql_stats s = qlt_stats(l);
    CHECK_EQ_INT(s.handler_errors, N / 2 + N);
    /* still listening */
    CHECK_OK(ql_queue_put(q, QLT_REC(N + 1)));
    CHECK_OK(ql_stop(l));

    for (int i = 0; i < 4; i++) CHECK_EQ_INT(qlt_counter_get(&hc[i].handled), N + 1);
    /* every handler, in order, for every record */
    CHECK_EQ_INT(log.len, 4 * (N + 1));
    for (long r = 1; r <= N + 1; r++) {
        for (int i = 0; i < 4; i++) {
            CHECK_EQ_INT(log.ev[4 * (r - 1) + i].who, i);
            CHECK_EQ_PTR(log.ev[4 * (r - 1) + i].record, QLT_REC(r));
        }
    }
    /* the errors, in order: (h1, code 7) for even records, then (h3, -1) */
    long k = 0;
    for (long r = 1; r <= N + 1; r++) {
        if (r % 2 == 0) {
            CHECK_EQ_INT(st.e[k].stage, QL_STAGE_HANDLER);
            CHECK_EQ_INT(st.e[k].index, 1);
            CHECK_EQ_PTR(st.e[k].record, QLT_REC(r));
            CHECK_EQ_INT(st.e[k].code, 7);
            k++;
        }
        CHECK_EQ_INT(st.e[k].stage, QL_STAGE_HANDLER);
        CHECK_EQ_INT(st.e[k].index, 3);
        CHECK_EQ_PTR(st.e[k].record, QLT_REC(r));
        CHECK_EQ_INT(st.e[k].code, -1);
        k++;
    }
    CHECK_EQ_INT(qlt_counter_get(&st.n), k);
    s = qlt_stats(l);
    CHECK_EQ_INT(s.handler_errors, k);
    CHECK_EQ_INT(s.handled, N + 1);
    CHECK_EQ_INT(s.prepare_errors, 0);
    CHECK_EQ_INT(s.dequeue_errors, 0);
    CHECK_EQ_INT(st.done_calls, N + 1);
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(atomic_load(&hc[i].flushes), 1);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    for (int i = 0; i < 4; i++) qlt_handler_fini(&hc[i]);
    qlt_log_destroy(&log);
    err_fini(&st);
    PASS("handlers failing (codes 7 and -1): %ld errors counted and told to on_error with stage, "
         "index, record, code; every handler and record still ran",
         k);
}

/* ---------------------------------------------------------------- handle hook fails */

static void handle_hook_errors(void) {
    err_state st;
    err_init(&st);
    st.handle_code = 42;
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, 0);
    ql_hooks hooks = err_hooks(&st);
    hooks.handle = failing_handle_hook;
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, &hooks, false, &l));
    for (long r = 1; r <= N; r++) CHECK_OK(ql_queue_put(q, QLT_REC(r)));
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(st.handle_calls, N);
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 0); /* the hook replaces the dispatch */
    CHECK_EQ_INT(qlt_counter_get(&st.n), N / 2);
    for (long i = 0; i < N / 2; i++) {
        CHECK_EQ_INT(st.e[i].stage, QL_STAGE_HANDLE);
        CHECK_EQ_INT(st.e[i].index, 0);
        CHECK_EQ_PTR(st.e[i].record, QLT_REC(2 * (i + 1)));
        CHECK_EQ_INT(st.e[i].code, 42);
    }
    ql_stats s = qlt_stats(l);
    CHECK_EQ_INT(s.handler_errors, N / 2);
    CHECK_EQ_INT(s.handled, N);
    CHECK_EQ_INT(st.done_calls, N);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_handler_fini(&h);
    err_fini(&st);
    PASS("handle hook failing (code 42): counted in handler_errors, on_error QL_STAGE_HANDLE; "
         "all %d records went on", N);
}

/* ---------------------------------------------------------------- prepare fails */

static void prepare_errors_and_task_done(void) {
    err_state st;
    err_init(&st);
    st.fail_mod = 3;
    st.prepare_code = -2;
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    st.cq = &cq;
    qlt_log log;
    qlt_log_init(&log, 16 * N);
    qlt_handler_ctx hc[2];
    ql_handler handlers[2];
    for (int i = 0; i < 2; i++) {
        qlt_handler_init(&hc[i], i, &log);
        handlers[i] = qlt_handler(&hc[i], 0);
    }
    ql_hooks hooks = err_hooks(&st);
    hooks.prepare = failing_prepare;
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, handlers, 2, &hooks, false, &l));
    CHECK_OK(ql_start(l));
    for (long r = 1; r <= N; r++) qlt_cq_put(&cq, QLT_REC(r));
    CHECK_OK(ql_stop(l));

    const long skipped = N / 3; /* 3, 6, 9 */
    CHECK_EQ_INT(st.prepare_calls, N);
    ql_stats s = qlt_stats(l);
    CHECK_EQ_INT(s.prepare_errors, skipped);
    CHECK_EQ_INT(s.handled, N - skipped);
    CHECK_EQ_INT(s.handler_errors, 0);
    /* no handler saw a skipped record; the others went to both, in order */
    size_t k = 0;
    for (long r = 1; r <= N; r++) {
        if (r % 3 == 0) continue;
        for (int i = 0; i < 2; i++, k++) {
            CHECK_EQ_INT(log.ev[k].who, i);
            CHECK_EQ_PTR(log.ev[k].record, QLT_REC(r));
        }
    }
    CHECK_EQ_INT(log.len, k);
    CHECK_EQ_INT(qlt_counter_get(&st.n), skipped);
    for (long i = 0; i < skipped; i++) {
        CHECK_EQ_INT(st.e[i].stage, QL_STAGE_PREPARE);
        CHECK_EQ_INT(st.e[i].index, 0);
        CHECK_EQ_PTR(st.e[i].record, QLT_REC(3 * (i + 1)));
        CHECK_EQ_INT(st.e[i].code, -2);
    }
    /* task_done and done for every dequeued record, skipped ones included */
    CHECK_EQ_INT(cq.dequeued_records, N);
    CHECK_EQ_INT(cq.task_done_records, N);
    CHECK_EQ_INT(cq.task_done_null, 1);
    CHECK_EQ_INT(cq.task_done_too_many, 0);
    CHECK_EQ_INT(cq.unfinished, 0);
    CHECK_EQ_INT(st.done_calls, N);
    for (long r = 1; r <= N; r++) CHECK_EQ_INT(st.done_seen[r], 1);
    qlt_cq_check_pairing(&cq);
    PASS("prepare failing (code -2) for %ld of %d records: skipped by every handler, "
         "prepare_errors=%ld, on_error QL_STAGE_PREPARE; task_done and done still called",
         skipped, N, skipped);

    /* More runs, with NULL records too: one task_done(NULL) per sentinel,
     * one task_done per record, each for the item dequeued just before. */
    for (int run = 2; run <= 4; run++) {
        CHECK_OK(ql_start(l));
        qlt_cq_put(&cq, NULL);
        qlt_cq_put(&cq, QLT_REC(1));
        qlt_cq_put(&cq, NULL);
        CHECK_OK(ql_stop(l));
        CHECK_EQ_INT(cq.task_done_null, 1 + 3 * (run - 1)); /* sentinels and NULL records */
        CHECK_EQ_INT(cq.dequeued_sentinels, run);
        CHECK_EQ_INT(cq.task_done_records, N + run - 1);
        CHECK_EQ_INT(st.done_seen[0], 2 * (run - 1));
        CHECK_EQ_INT(cq.unfinished, 0);
        CHECK_EQ_INT(cq.task_done_too_many, 0);
        qlt_cq_check_pairing(&cq);
    }
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    for (int i = 0; i < 2; i++) qlt_handler_fini(&hc[i]);
    qlt_log_destroy(&log);
    err_fini(&st);
    PASS("task_done: once per dequeued record (before done), once with NULL per sentinel, "
         "each before the next dequeue, over 4 runs; unfinished tasks back to 0");
}

/* ------------------------------------------- prepare replaces, then fails */

typedef struct {
    long replacements[N + 2];  /* made by prepare, indexed by record */
    long released[N + 2];      /* given back to release */
    long bad_release;
    long handler_saw_replacement;
} replace_state;

static replace_state rs;

/* Replaces every record with &rs.replacements[r]; fails the even ones
 * after writing the replacement. */
static int32_t replace_then_fail(void *ctx, void *record, void **prepared_out) {
    (void)ctx;
    long r = QLT_NUM(record);
    CHECK(r >= 1 && r <= N);
    rs.replacements[r]++;
    *prepared_out = &rs.replacements[r];
    return r % 2 == 0 ? 9 : 0;
}

static void release_replacement(void *ctx, void *prepared) {
    (void)ctx;
    long *p = (long *)prepared;
    if (p < &rs.replacements[1] || p > &rs.replacements[N]) {
        rs.bad_release++;
        return;
    }
    rs.released[p - rs.replacements]++;
}

static int32_t replacement_handle(void *ctx, void *record) {
    qlt_handler_ctx *h = (qlt_handler_ctx *)ctx;
    long *p = (long *)record;
    if (p >= &rs.replacements[1] && p <= &rs.replacements[N]) {
        long r = p - rs.replacements;
        if (r % 2 == 0) rs.handler_saw_replacement++; /* a failed one */
    } else {
        rs.handler_saw_replacement++; /* an original: prepare's result was ignored */
    }
    return qlt_handler_handle(h, record);
}

static void prepare_replaces_then_fails(void) {
    memset(&rs, 0, sizeof rs);
    err_state st;
    err_init(&st);
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, 0);
    handler.handle = replacement_handle;
    ql_hooks hooks = err_hooks(&st);
    hooks.prepare = replace_then_fail;
    hooks.release = release_replacement;
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, &hooks, false, &l));
    for (long r = 1; r <= N; r++) CHECK_OK(ql_queue_put(q, QLT_REC(r)));
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&h.handled), N / 2); /* the odd records */
    CHECK_EQ_INT(rs.handler_saw_replacement, 0);
    CHECK_EQ_INT(rs.bad_release, 0);
    for (long r = 1; r <= N; r++) {
        CHECK_EQ_INT(rs.replacements[r], 1);
        CHECK_EQ_INT(rs.released[r], 1); /* failed or not, the replacement came back once */
    }
    CHECK_EQ_INT(qlt_counter_get(&st.n), N / 2);
    for (long i = 0; i < N / 2; i++) {
        CHECK_EQ_INT(st.e[i].stage, QL_STAGE_PREPARE);
        CHECK_EQ_PTR(st.e[i].record, QLT_REC(2 * (i + 1))); /* the dequeued record */
        CHECK_EQ_INT(st.e[i].code, 9);
    }
    ql_stats s = qlt_stats(l);
    CHECK_EQ_INT(s.prepare_errors, N / 2);
    CHECK_EQ_INT(s.handled, N / 2);
    CHECK_EQ_INT(st.done_calls, N);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_handler_fini(&h);
    err_fini(&st);
    PASS("prepare writing a replacement, then failing: the replacement still goes to release "
         "(once), no handler sees it, on_error gets the dequeued record");
}

/* ---------------------------------------------------------------- dequeue fails */

static void dequeue_errors(void) {
    err_state st;
    err_init(&st);
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    cq.fail_dequeues = 1;
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, 0);
    ql_hooks hooks = err_hooks(&st);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, &handler, 1, &hooks, false, &l));
    for (long r = 1; r <= 3; r++) qlt_cq_put(&cq, QLT_REC(r));
    CHECK_OK(ql_start(l));
    qlt_counter_wait_at_least(&st.done, 3); /* recovered after the error */
    ql_stats s = qlt_stats(l);
    CHECK_EQ_INT(s.dequeue_errors, 1);
    CHECK_EQ_INT(s.handled, 3);
    CHECK_EQ_INT(qlt_counter_get(&st.n), 1);
    CHECK_EQ_INT(st.e[0].stage, QL_STAGE_DEQUEUE);
    CHECK_EQ_INT(st.e[0].index, 0);
    CHECK_EQ_PTR(st.e[0].record, NULL);
    CHECK_EQ_INT(st.e[0].code, 0);
    PASS("dequeue returned QL_DEQUEUE_ERROR once: dequeue_errors=1, on_error QL_STAGE_DEQUEUE "
         "(record NULL, code 0), the records were handled after it");

    /* Unknown results count as errors too; the listener goes on. */
    qlt_cq_lock(&cq);
    cq.fail_dequeue_code = 42;
    cq.fail_dequeues = 2;
    QLT_PT(pthread_cond_broadcast(&cq.cv));
    qlt_cq_unlock(&cq);
    qlt_counter_wait_at_least(&st.n, 3);
    for (long r = 4; r <= 6; r++) qlt_cq_put(&cq, QLT_REC(r));
    qlt_counter_wait_at_least(&h.handled, 6);
    CHECK(qlt_is_running(l));
    CHECK_OK(ql_stop(l));
    s = qlt_stats(l);
    CHECK_EQ_INT(s.dequeue_errors, 3);
    CHECK_EQ_INT(s.handled, 6);
    CHECK_EQ_INT(qlt_counter_get(&st.n), 3);
    for (int i = 1; i < 3; i++) {
        CHECK_EQ_INT(st.e[i].stage, QL_STAGE_DEQUEUE);
        CHECK_EQ_PTR(st.e[i].record, NULL);
    }
    CHECK_EQ_INT(cq.dequeued_sentinels, 1);
    CHECK_EQ_INT(cq.len, 0);
    PASS("dequeue returning 42 (unknown) twice: counted as errors (dequeue_errors=3), listener "
         "went on, all 6 records handled");

    /* A stop while every dequeue fails still returns... */
    qlt_cq_lock(&cq);
    cq.fail_dequeue_code = QL_DEQUEUE_ERROR;
    cq.fail_dequeues = 1L << 40;
    qlt_cq_unlock(&cq);
    const long errors_before = qlt_counter_get(&st.n);
    CHECK_OK(ql_start(l));
    qlt_counter_wait_at_least(&st.n, errors_before + 1);
    /* ...and says the queue failed: the sentinel was never reached. */
    CHECK_EQ_STATUS(ql_stop_timeout(l, 10000), QL_ERR_QUEUE);
    CHECK(!qlt_is_running(l));
    CHECK_OK(ql_stop(l)); /* stopped: a further stop is a no-op */
    PASS("stop while every dequeue fails: returns QL_ERR_QUEUE, thread joined, listener stopped");

    /* ... and, the queue repaired, the next run handles every record put
     * before its stop: nothing the failed run left behind (a sentinel its
     * stop put that no thread took) may end it early. */
    qlt_cq_lock(&cq);
    cq.fail_dequeues = 0;
    qlt_cq_unlock(&cq);
    CHECK_OK(ql_start(l));
    for (long r = 7; r <= 9; r++) qlt_cq_put(&cq, QLT_REC(r));
    CHECK_OK(ql_stop_timeout(l, 10000));
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 9);
    CHECK_EQ_INT(qlt_stats(l).handled, 9);
    CHECK_EQ_INT(cq.len, 0);
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    qlt_handler_fini(&h);
    err_fini(&st);
    PASS("after a stop during dequeue failures, the next run handles all records put before "
         "its stop");
}

int main(void) {
    qlt_begin("test_failures");
    handler_errors();
    handle_hook_errors();
    prepare_errors_and_task_done();
    prepare_replaces_then_fails();
    dequeue_errors();
    return qlt_end();
}
