/*
 * test_reentrancy: hostile callbacks, each with its documented result
 * (README, "Re-entrancy"):
 *
 * - a handler that calls ql_stop, ql_stop_timeout, ql_start,
 *   ql_listener_flush and ql_listener_free on its own listener:
 *   QL_ERR_WOULD_DEADLOCK / QL_ERR_ALREADY_STARTED, nothing changes, and
 *   the listener goes on; ql_enqueue_sentinel from a handler is allowed and
 *   ends the loop at that sentinel, behind the records already queued;
 * - a handler that logs onto its own full queue: under QL_OVERFLOW_BLOCK it
 *   gets QL_ERR_WOULD_DEADLOCK at once and the drop is counted;
 * - a prepare hook that writes NULL (the handlers then get NULL as the
 *   prepared record, and release gets it) or a new record (the handlers
 *   get the new one, release frees it, done gets the original);
 * - a dequeue hook that returns QL_DEQUEUE_ERROR, then recovers: counted,
 *   reported, every record handled afterwards;
 * - listeners whose handlers stop or flush each other in a cycle (2 and 3
 *   listeners): exactly one call of the cycle gets QL_ERR_WOULD_DEADLOCK,
 *   the others return QL_OK, and every listener goes on.
 * None deadlocks (a watchdog would fail the test), crashes or leaks (run
 * under valgrind by the valgrind label).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ql_test.h"

/* ------------------------------------------------------------ control calls */

static ql_queue *ql_test_queue;

typedef struct {
    ql_listener *l;
    int handled;
    ql_status stop, stop_timeout, start, flush, free_status, sentinel;
    qlt_counter flushes; /* a flush barrier, or the end of the loop */
    qlt_latch queued;     /* the test queued the record meant to be before the sentinel */
} controller;

static void controlling_flush(void *ctx) {
    controller *c = ctx;
    qlt_counter_add(&c->flushes, 1);
}

static int32_t controlling_handle(void *ctx, void *record) {
    controller *c = ctx;
    const ql_record *r = record;
    c->handled++;
    if (strcmp(r->message, "control") == 0) {
        c->stop = ql_stop(c->l);
        c->stop_timeout = ql_stop_timeout(c->l, 10);
        c->start = ql_start(c->l);
        c->flush = ql_listener_flush(c->l, 10);
        c->free_status = ql_listener_free(c->l);
    }
    if (strcmp(r->message, "sentinel") == 0) {
        /* "queued before the sentinel" must be put before it: the test's
         * put and this one are on two threads, ordered only by this wait. */
        qlt_latch_wait(&c->queued);
        c->sentinel = ql_enqueue_sentinel(c->l);
        /* put behind the sentinel: waits for the next run */
        if (ql_log(ql_test_queue, 20, "t", "behind", 6) != QL_OK) QLT_FAIL("ql_log");
    }
    return 0;
}

static void control_from_handler(void) {
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(64, &q));
    ql_test_queue = q;
    controller c;
    memset(&c, 0, sizeof c);
    c.stop = c.stop_timeout = c.start = c.flush = c.free_status = c.sentinel = -1;
    qlt_counter_init(&c.flushes);
    qlt_latch_init(&c.queued);
    ql_handler h = {&c, 0, controlling_handle, controlling_flush, NULL, NULL};
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &c.l));
    CHECK_OK(ql_log(q, 20, "t", "control", 7));
    CHECK_OK(ql_log(q, 20, "t", "after", 5));
    CHECK_OK(ql_start(c.l));
    CHECK_OK(ql_listener_flush(c.l, 10000)); /* still running after all that */
    CHECK_EQ_INT(c.handled, 2);
    CHECK_EQ_STATUS(c.stop, QL_ERR_WOULD_DEADLOCK);
    CHECK_EQ_STATUS(c.stop_timeout, QL_ERR_WOULD_DEADLOCK);
    CHECK_EQ_STATUS(c.start, QL_ERR_ALREADY_STARTED);
    CHECK_EQ_STATUS(c.flush, QL_ERR_WOULD_DEADLOCK);
    CHECK_EQ_STATUS(c.free_status, QL_ERR_WOULD_DEADLOCK);
    CHECK(qlt_is_running(c.l));

    /* ql_enqueue_sentinel from a handler: the loop ends at that sentinel,
     * after the records queued before it; the rest waits for a restart. */
    CHECK_OK(ql_log(q, 20, "t", "sentinel", 8));
    CHECK_OK(ql_log(q, 20, "t", "queued before the sentinel", 26));
    qlt_latch_open(&c.queued);
    qlt_counter_wait_at_least(&c.flushes, 2); /* the loop ended by itself */
    CHECK_OK(ql_stop(c.l)); /* joins it; puts no sentinel of its own */
    CHECK_EQ_STATUS(c.sentinel, QL_OK);
    CHECK_EQ_INT(c.handled, 4);
    size_t len = 0;
    CHECK_OK(ql_queue_len(q, &len));
    CHECK_EQ_INT(len, 1); /* "behind" waits for the next run */
    CHECK_OK(ql_start(c.l));
    CHECK_OK(ql_stop(c.l));
    CHECK_EQ_INT(c.handled, 5);
    CHECK_OK(ql_listener_free(c.l));
    ql_queue_free(q);
    qlt_counter_destroy(&c.flushes);
    qlt_latch_destroy(&c.queued);
    PASS("handler calling stop/stop_timeout/flush/free: QL_ERR_WOULD_DEADLOCK, start: "
         "QL_ERR_ALREADY_STARTED, listener unchanged; enqueue_sentinel from a handler ends the "
         "loop after the records queued before it");
}

/* ------------------------------------------------------------ full queue */

typedef struct {
    ql_queue *q;
    qlt_latch *gate;
    ql_status logged;
    long long took_ms;
} self_logger;

static int32_t self_logging_handle(void *ctx, void *record) {
    self_logger *s = ctx;
    const ql_record *r = record;
    if (strcmp(r->message, "first") == 0) {
        qlt_latch_wait(s->gate); /* the test fills the queue meanwhile */
        long long t0 = qlt_now_ms();
        s->logged = ql_log(s->q, 20, "handler", "from the handler", 16);
        s->took_ms = qlt_now_ms() - t0;
    }
    return 0;
}

static void log_onto_own_full_queue(void) {
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(4, &q));
    qlt_latch gate;
    qlt_latch_init(&gate);
    self_logger s = {q, &gate, -1, 0};
    ql_handler h = {&s, 0, self_logging_handle, NULL, NULL, NULL};
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_log(q, 20, "t", "first", 5));
    qlt_latch_wait_arrived(&gate, 1);
    for (int i = 0; i < 4; i++) CHECK_OK(ql_log(q, 20, "t", "fill", 4));
    qlt_latch_open(&gate);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_STATUS(s.logged, QL_ERR_WOULD_DEADLOCK);
    CHECK(s.took_ms < 1000);
    ql_stats st;
    CHECK_OK(ql_listener_stats(l, &st));
    CHECK_EQ_INT(st.dropped, 1);
    CHECK_EQ_INT(st.handled, 5);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_latch_destroy(&gate);
    PASS("a handler logging onto its own full queue: QL_ERR_WOULD_DEADLOCK at once, the drop "
         "counted, no hang");
}

/* ------------------------------------------------------------ prepare hooks */

typedef struct {
    long nulls_seen, replacements_seen, originals_seen;
    long released_null, released_new, done_count;
} prep_state;

static int32_t prep_prepare(void *ctx, void *record, void **prepared_out) {
    (void)ctx;
    const ql_record *r = record;
    if (strcmp(r->message, "to-null") == 0) *prepared_out = NULL;
    if (strcmp(r->message, "to-new") == 0) {
        int *fresh = malloc(sizeof *fresh);
        if (!fresh) return 12;
        *fresh = 42;
        *prepared_out = fresh;
    }
    return 0;
}

static int32_t prep_handle(void *ctx, void *record) {
    prep_state *p = ctx;
    if (record == NULL)
        p->nulls_seen++;
    else if (*(const int *)record == 42)
        p->replacements_seen++; /* a ql_record's first field is its level, 20 here */
    else
        p->originals_seen++;
    return 0;
}

static void prep_release(void *ctx, void *prepared) {
    prep_state *p = ctx;
    if (prepared == NULL) {
        p->released_null++;
    } else {
        p->released_new++;
        free(prepared);
    }
}

static void prep_done(void *ctx, void *record) {
    prep_state *p = ctx;
    const ql_record *r = record;
    CHECK(r != NULL && r->message != NULL); /* done gets the original */
    p->done_count++;
}

static void prepare_null_and_new(void) {
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(16, &q));
    prep_state p;
    memset(&p, 0, sizeof p);
    ql_handler h = {&p, 0, prep_handle, NULL, NULL, NULL};
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = &p;
    hooks.prepare = prep_prepare;
    hooks.release = prep_release;
    hooks.done = prep_done;
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, &hooks, false, &l));
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", "to-null", 7)); /* level 20, not 42 */
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", "to-new", 6));
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "t", "kept", 4));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(p.nulls_seen, 1);
    CHECK_EQ_INT(p.replacements_seen, 1);
    CHECK_EQ_INT(p.originals_seen, 1);
    CHECK_EQ_INT(p.released_null, 1);
    CHECK_EQ_INT(p.released_new, 1);
    CHECK_EQ_INT(p.done_count, 3);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    PASS("prepare writing NULL: handlers get NULL, release gets NULL; writing a new record: "
         "handlers get it, release frees it; done gets every original");
}

/* ------------------------------------------------------------ dequeue hook */

typedef struct {
    qlt_cq *cq;
    int errors_left;
    long errors_reported;
} failing_dequeue;

static ql_dequeue_result hook_dequeue(void *ctx, bool block, void **out) {
    failing_dequeue *f = ctx;
    if (f->errors_left > 0) {
        f->errors_left--;
        return QL_DEQUEUE_ERROR;
    }
    return qlt_cq_dequeue(f->cq, block, out);
}

static void hook_on_error(void *ctx, ql_stage stage, size_t index, void *record, int32_t code) {
    (void)index;
    (void)record;
    (void)code;
    failing_dequeue *f = ctx;
    if (stage == QL_STAGE_DEQUEUE) f->errors_reported++;
}

static void dequeue_hook_fails_then_recovers(void) {
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    failing_dequeue f = {&cq, 3, 0};
    qlt_handler_ctx hc;
    qlt_handler_init(&hc, 0, NULL);
    ql_handler h = qlt_handler(&hc, 0);
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = &f;
    hooks.dequeue = hook_dequeue;
    hooks.on_error = hook_on_error;
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, &h, 1, &hooks, false, &l));
    for (long i = 1; i <= 5; i++) qlt_cq_put(&cq, QLT_REC(i));
    CHECK_OK(ql_start(l));
    qlt_counter_wait_at_least(&hc.handled, 5);
    CHECK_OK(ql_stop(l));
    ql_stats s;
    CHECK_OK(ql_listener_stats(l, &s));
    CHECK_EQ_INT(s.dequeue_errors, 3);
    CHECK_EQ_INT(f.errors_reported, 3);
    CHECK_EQ_INT(s.handled, 5);
    CHECK_OK(ql_listener_free(l));
    qlt_handler_fini(&hc);
    qlt_cq_destroy(&cq);
    PASS("a dequeue hook returning QL_DEQUEUE_ERROR 3 times, then recovering: 3 errors "
         "counted and reported, all 5 records handled after");
}

/* ------------------------------------------------- cycles between listeners */

#define RING_MAX 3

typedef struct ring ring;
typedef struct {
    ring *ring;
    int index;
    qlt_counter handled;
} ring_member;

struct ring {
    int n;
    bool flush; /* each handler flushes (else stops) the next listener */
    ql_queue *queues[RING_MAX];
    ql_listener *listeners[RING_MAX];
    ring_member members[RING_MAX];
    ql_status results[RING_MAX];
    qlt_counter called; /* handlers that made their call */
    qlt_latch started;  /* every listener is started: the calls may go */
};

#define RING_CALL QLT_REC(1)

static int32_t ring_handle(void *ctx, void *record) {
    ring_member *m = ctx;
    ring *r = m->ring;
    if (record == RING_CALL) {
        /* Else the next one may not be running yet: its stop would be a
         * no-op, and no cycle would form. */
        qlt_latch_wait(&r->started);
        ql_listener *next = r->listeners[(m->index + 1) % r->n];
        r->results[m->index] = r->flush ? ql_listener_flush(next, QLT_WAIT_SECONDS * 1000) : ql_stop(next);
        qlt_counter_add(&r->called, 1);
    }
    qlt_counter_add(&m->handled, 1);
    return 0;
}

/* Listener i's handler stops (or flushes) listener i+1, listener n-1's
 * stops listener 0: each waits for the next one's thread, which is busy
 * in its own handler waiting for the one after. Without the cycle check
 * this hangs (the watchdog fails the test). With it, the call that would
 * close the cycle is refused; then each waiting call completes in turn. */
static void cycle_of_controls(int n, bool flush) {
    ring r;
    memset(&r, 0, sizeof r);
    r.n = n;
    r.flush = flush;
    qlt_counter_init(&r.called);
    qlt_latch_init(&r.started);
    for (int i = 0; i < n; i++) {
        r.members[i].ring = &r;
        r.members[i].index = i;
        qlt_counter_init(&r.members[i].handled);
        ql_handler h = {&r.members[i], 0, ring_handle, NULL, NULL, NULL};
        CHECK_OK(ql_queue_new(0, &r.queues[i]));
        CHECK_OK(ql_listener_new_with_queue(r.queues[i], &h, 1, NULL, false, &r.listeners[i]));
        /* Queued before any thread runs: each listener takes this record
         * before any sentinel or barrier another listener puts. */
        CHECK_OK(ql_queue_put(r.queues[i], RING_CALL));
    }
    for (int i = 0; i < n; i++) CHECK_OK(ql_start(r.listeners[i]));
    qlt_latch_open(&r.started);
    qlt_counter_wait_at_least(&r.called, n);
    int refused = 0;
    for (int i = 0; i < n; i++) {
        if (r.results[i] == QL_ERR_WOULD_DEADLOCK) {
            refused++;
        } else {
            CHECK_OK(r.results[i]);
        }
    }
    CHECK_EQ_INT(refused, 1);
    /* Every listener goes on (flush) or stopped cleanly (stop): a record
     * put now is handled by the next stop or start-and-stop. */
    for (int i = 0; i < n; i++) {
        CHECK_OK(ql_queue_put(r.queues[i], QLT_REC(2)));
        if (!qlt_is_running(r.listeners[i])) CHECK_OK(ql_start(r.listeners[i]));
        CHECK_OK(ql_stop(r.listeners[i]));
        CHECK_EQ_INT(qlt_counter_get(&r.members[i].handled), 2);
    }
    for (int i = 0; i < n; i++) {
        CHECK_OK(ql_listener_free(r.listeners[i]));
        ql_queue_free(r.queues[i]);
        qlt_counter_destroy(&r.members[i].handled);
    }
    qlt_counter_destroy(&r.called);
    qlt_latch_destroy(&r.started);
    PASS("%d listeners %s each other in a cycle: exactly one call refused with "
         "QL_ERR_WOULD_DEADLOCK, the others QL_OK, no hang, every listener goes on",
         n, flush ? "flushing" : "stopping");
}

int main(void) {
    qlt_begin("test_reentrancy");
    control_from_handler();
    log_onto_own_full_queue();
    prepare_null_and_new();
    dequeue_hook_fails_then_recovers();
    cycle_of_controls(2, false);
    cycle_of_controls(3, false);
    cycle_of_controls(2, true);
    cycle_of_controls(3, true);
    return qlt_end();
}
