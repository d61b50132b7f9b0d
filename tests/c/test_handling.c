/*
 * test_handling: the life of a record.
 *
 * - every record is dequeued once and prepared exactly once;
 * - the prepared record (a new pointer) goes to every handler, in order;
 * - release gets the replaced record, task_done and done the original,
 *   in the documented order: prepare, handlers, release, task_done, done;
 * - respect_handler_level filters by level (record_level hook), level 0
 *   handlers get everything, negative levels included; without it every
 *   handler gets every record;
 * - respect_handler_level without a record_level hook is QL_ERR_INVALID;
 * - prepare does not change the producer's record (CPython bpo-35726).
 */
#include "ql_test.h"

#include <limits.h>

#define N_RECORDS 200
#define N_HANDLERS 3

/* Event tags in the shared log (handlers log their id 0..N_HANDLERS-1). */
enum { EV_PREPARE = 100, EV_RELEASE, EV_TASK_DONE, EV_DONE };

typedef struct {
    int seq;
    int level;
    char msg[32];
} rec_t;

#define PREP_MAGIC 0x50524550u

typedef struct {
    uint32_t magic;
    const rec_t *orig;
    int seq;
    int level;
    char msg[64];
} prep_t;

/* The hooks' state. The pool keeps every prepared record at its own
 * address, so a pointer identifies one preparation. */
typedef struct {
    qlt_log *log;
    rec_t *records; /* the producer's records, for range checks */
    prep_t pool[N_RECORDS];
    int prepare_calls[N_RECORDS];
    int release_calls[N_RECORDS];
    int done_calls[N_RECORDS];
    int level_calls;
    bool replace; /* prepare makes a new record */
} hook_state;

static int seq_of_original(hook_state *st, void *record) {
    rec_t *r = (rec_t *)record;
    CHECK(r >= st->records && r < st->records + N_RECORDS);
    return r->seq;
}

static int32_t prepare_hook(void *ctx, void *record, void **prepared_out) {
    hook_state *st = (hook_state *)ctx;
    CHECK_EQ_PTR(*prepared_out, record); /* documented: holds record on entry */
    int seq = seq_of_original(st, record);
    st->prepare_calls[seq]++;
    qlt_log_push(st->log, EV_PREPARE, record);
    if (!st->replace) return 0;
    const rec_t *r = (const rec_t *)record;
    prep_t *p = &st->pool[seq];
    p->magic = PREP_MAGIC;
    p->orig = r;
    p->seq = r->seq;
    p->level = r->level;
    snprintf(p->msg, sizeof p->msg, "prepared: %s", r->msg);
    *prepared_out = p;
    return 0;
}

static void release_hook(void *ctx, void *prepared) {
    hook_state *st = (hook_state *)ctx;
    prep_t *p = (prep_t *)prepared;
    CHECK(p >= st->pool && p < st->pool + N_RECORDS);
    CHECK_EQ_INT(p->magic, PREP_MAGIC);
    st->release_calls[p->seq]++;
    qlt_log_push(st->log, EV_RELEASE, prepared);
    p->magic = 0; /* taken back: no handler may see it again */
}

static void done_hook(void *ctx, void *record) {
    hook_state *st = (hook_state *)ctx;
    st->done_calls[seq_of_original(st, record)]++;
    qlt_log_push(st->log, EV_DONE, record);
}

static int32_t level_hook(void *ctx, void *record) {
    hook_state *st = (hook_state *)ctx;
    st->level_calls++;
    if (st->replace) {
        prep_t *p = (prep_t *)record;
        /* the level of the prepared record is asked, not the original's */
        CHECK(p >= st->pool && p < st->pool + N_RECORDS);
        CHECK_EQ_INT(p->magic, PREP_MAGIC);
        return p->level;
    }
    return ((rec_t *)record)->level;
}

/* A handler that checks it gets a live prepared record. */
typedef struct {
    qlt_handler_ctx base;
    hook_state *st;
} checking_handler;

static int32_t checking_handle(void *ctx, void *record) {
    checking_handler *h = (checking_handler *)ctx;
    if (h->st->replace) {
        prep_t *p = (prep_t *)record;
        CHECK(p >= h->st->pool && p < h->st->pool + N_RECORDS);
        CHECK_EQ_INT(p->magic, PREP_MAGIC);
    } else {
        (void)seq_of_original(h->st, record);
    }
    return qlt_handler_handle(&h->base, record);
}

/* The vtable queue's task_done, logged, then counted by qlt_cq. */
typedef struct {
    qlt_cq q;
    qlt_log *log;
} logged_queue;

static void logged_task_done(void *ctx, void *record) {
    logged_queue *lq = (logged_queue *)ctx;
    if (record) qlt_log_push(lq->log, EV_TASK_DONE, record);
    qlt_cq_task_done(&lq->q, record);
}

static ql_dequeue_result logged_dequeue(void *ctx, bool block, void **out) {
    return qlt_cq_dequeue(&((logged_queue *)ctx)->q, block, out);
}

static ql_enqueue_result logged_enqueue_sentinel(void *ctx) {
    return qlt_cq_enqueue_sentinel(&((logged_queue *)ctx)->q);
}

/* One run of the record life check: with a vtable queue (task_done is
 * logged) or the built-in queue; with prepare replacing records or not. */
static void run_life(bool vtable_queue, bool replace) {
    static rec_t records[N_RECORDS];
    static hook_state st;
    qlt_log log;
    qlt_log_init(&log, N_RECORDS * 8);
    memset(&st, 0, sizeof st);
    st.log = &log;
    st.records = records;
    st.replace = replace;
    for (int i = 0; i < N_RECORDS; i++) {
        records[i].seq = i;
        records[i].level = i % 60;
        snprintf(records[i].msg, sizeof records[i].msg, "message %d", i);
    }

    checking_handler hc[N_HANDLERS];
    ql_handler handlers[N_HANDLERS];
    for (int i = 0; i < N_HANDLERS; i++) {
        qlt_handler_init(&hc[i].base, i, &log);
        hc[i].st = &st;
        handlers[i] = qlt_handler(&hc[i].base, 0);
        handlers[i].handle = checking_handle;
    }
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = &st;
    hooks.prepare = prepare_hook;
    hooks.release = release_hook;
    hooks.done = done_hook;

    logged_queue lq;
    ql_queue *bq = NULL;
    ql_listener *l = NULL;
    if (vtable_queue) {
        qlt_cq_init(&lq.q, 0);
        lq.log = &log;
        ql_queue_vtable vt = {&lq, logged_dequeue, logged_enqueue_sentinel, logged_task_done};
        CHECK_OK(ql_listener_new(&vt, handlers, N_HANDLERS, &hooks, false, &l));
    } else {
        CHECK_OK(ql_queue_new(0, &bq));
        CHECK_OK(ql_listener_new_with_queue(bq, handlers, N_HANDLERS, &hooks, false, &l));
    }
    CHECK_OK(ql_start(l));
    for (int i = 0; i < N_RECORDS; i++) {
        if (vtable_queue) qlt_cq_put(&lq.q, &records[i]);
        else CHECK_OK(ql_queue_put(bq, &records[i]));
    }
    CHECK_OK(ql_stop(l));

    /* Exactly this sequence of events per record, records in FIFO order. */
    const size_t per = (size_t)N_HANDLERS + 2 + (replace ? 1 : 0) + (vtable_queue ? 1 : 0);
    CHECK_EQ_INT(qlt_log_len(&log), per * N_RECORDS);
    for (int i = 0; i < N_RECORDS; i++) {
        const qlt_event *e = &log.ev[per * (size_t)i];
        void *orig = &records[i];
        void *prep = replace ? (void *)&st.pool[i] : orig;
        size_t k = 0;
        CHECK_EQ_INT(e[k].who, EV_PREPARE);
        CHECK_EQ_PTR(e[k].record, orig);
        k++;
        for (int h = 0; h < N_HANDLERS; h++, k++) {
            CHECK_EQ_INT(e[k].who, h);
            CHECK_EQ_PTR(e[k].record, prep);
        }
        if (replace) {
            CHECK_EQ_INT(e[k].who, EV_RELEASE);
            CHECK_EQ_PTR(e[k].record, prep);
            k++;
        }
        if (vtable_queue) {
            CHECK_EQ_INT(e[k].who, EV_TASK_DONE);
            CHECK_EQ_PTR(e[k].record, orig);
            k++;
        }
        CHECK_EQ_INT(e[k].who, EV_DONE);
        CHECK_EQ_PTR(e[k].record, orig);
        k++;
        CHECK_EQ_INT(k, per);
        CHECK_EQ_INT(st.prepare_calls[i], 1);
        CHECK_EQ_INT(st.release_calls[i], replace ? 1 : 0);
        CHECK_EQ_INT(st.done_calls[i], 1);
        /* the producer's record is untouched */
        CHECK_EQ_INT(records[i].seq, i);
        CHECK_EQ_INT(records[i].level, i % 60);
    }
    ql_stats s = qlt_stats(l);
    CHECK_EQ_INT(s.handled, N_RECORDS);
    CHECK_EQ_INT(s.handler_errors, 0);
    CHECK_EQ_INT(s.prepare_errors, 0);
    CHECK_EQ_INT(s.dequeue_errors, 0);
    for (int h = 0; h < N_HANDLERS; h++) {
        CHECK_EQ_INT(qlt_counter_get(&hc[h].base.handled), N_RECORDS);
        CHECK_EQ_INT(atomic_load(&hc[h].base.flushes), 1);
        CHECK_EQ_INT(atomic_load(&hc[h].base.handled_at_flush), N_RECORDS);
    }
    if (vtable_queue) {
        CHECK_EQ_INT(lq.q.dequeued_records, N_RECORDS); /* each dequeued once */
        CHECK_EQ_INT(lq.q.dequeued_sentinels, 1);
        CHECK_EQ_INT(lq.q.task_done_records, N_RECORDS);
        CHECK_EQ_INT(lq.q.task_done_null, 1);
        CHECK_EQ_INT(lq.q.unfinished, 0);
        CHECK_EQ_INT(lq.q.len, 0);
        qlt_cq_check_pairing(&lq.q);
    } else {
        CHECK_EQ_INT(qlt_queue_len(bq), 0);
    }
    CHECK_OK(ql_listener_free(l));
    for (int h = 0; h < N_HANDLERS; h++) {
        CHECK_EQ_INT(atomic_load(&hc[h].base.destroys), 1);
        qlt_handler_fini(&hc[h].base);
    }
    if (vtable_queue) qlt_cq_destroy(&lq.q);
    ql_queue_free(bq);
    qlt_log_destroy(&log);
    PASS("%s queue, prepare %s: %d records, each prepared once, %d handlers in order, "
         "release/task_done/done in order",
         vtable_queue ? "vtable" : "built-in", replace ? "replacing" : "keeping", N_RECORDS,
         N_HANDLERS);
}

/* ---------------------------------------------------------------- levels */

static const int levels[] = {INT_MIN, -30, -5, -1, 0, 1, 10, 29, 30, 31, 40, 49, 50, 51, INT_MAX};
#define N_LEVELS ((int)(sizeof levels / sizeof levels[0]))

/* The records one handler (who) got, as levels, in order. */
static int levels_seen(qlt_log *log, int who, bool prepared, int *out) {
    int n = 0;
    for (size_t i = 0; i < log->len; i++) {
        if (log->ev[i].who != who) continue;
        int level = prepared ? ((const prep_t *)log->ev[i].record)->level
                             : ((const rec_t *)log->ev[i].record)->level;
        out[n++] = level;
    }
    return n;
}

static void run_levels(bool respect, bool replace) {
    static rec_t records[N_RECORDS];
    static hook_state st;
    qlt_log log;
    qlt_log_init(&log, N_LEVELS * 16);
    memset(&st, 0, sizeof st);
    st.log = &log;
    st.records = records;
    st.replace = replace;
    for (int i = 0; i < N_LEVELS; i++) {
        records[i].seq = i;
        records[i].level = levels[i];
        snprintf(records[i].msg, sizeof records[i].msg, "level %d", levels[i]);
    }
    enum { H30, H0, H50, HN };
    const int32_t hlevel[HN] = {30, 0, 50};
    checking_handler hc[HN];
    ql_handler handlers[HN];
    for (int i = 0; i < HN; i++) {
        qlt_handler_init(&hc[i].base, i, &log);
        hc[i].st = &st;
        handlers[i] = qlt_handler(&hc[i].base, hlevel[i]);
        handlers[i].handle = checking_handle;
    }
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = &st;
    hooks.prepare = prepare_hook;
    hooks.release = release_hook;
    hooks.done = done_hook;
    hooks.record_level = level_hook;

    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, handlers, HN, &hooks, respect, &l));
    for (int i = 0; i < N_LEVELS; i++) CHECK_OK(ql_queue_put(q, &records[i]));
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_stop(l));

    for (int h = 0; h < HN; h++) {
        int seen[N_LEVELS * 2];
        int n = levels_seen(&log, h, replace, seen);
        int want[N_LEVELS];
        int m = 0;
        for (int i = 0; i < N_LEVELS; i++) {
            if (!respect || hlevel[h] == 0 || levels[i] >= hlevel[h]) want[m++] = levels[i];
        }
        CHECK_EQ_INT(n, m);
        for (int i = 0; i < m; i++) CHECK_EQ_INT(seen[i], want[i]);
        CHECK_EQ_INT(qlt_counter_get(&hc[h].base.handled), m);
    }
    if (respect) CHECK(st.level_calls >= N_LEVELS); /* asked at least once a record */
    /* Filtered records are still handled records, prepared once, done once. */
    ql_stats s = qlt_stats(l);
    CHECK_EQ_INT(s.handled, N_LEVELS);
    for (int i = 0; i < N_LEVELS; i++) {
        CHECK_EQ_INT(st.prepare_calls[i], 1);
        CHECK_EQ_INT(st.done_calls[i], 1);
        CHECK_EQ_INT(st.release_calls[i], replace ? 1 : 0);
    }
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    for (int h = 0; h < HN; h++) qlt_handler_fini(&hc[h].base);
    qlt_log_destroy(&log);
    if (respect)
        PASS("respect_handler_level (prepare %s): level 30 handler got only >= 30, level 50 "
             "only >= 50, level 0 everything from INT_MIN to INT_MAX",
             replace ? "replacing" : "keeping");
    else
        PASS("without respect_handler_level (prepare %s): every handler got all %d records",
             replace ? "replacing" : "keeping", N_LEVELS);
}

static void respect_needs_record_level(void) {
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, 30);
    ql_listener *const untouched = (ql_listener *)&h; /* any recognisable value */
    ql_listener *l = untouched;

    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));

    /* No hooks at all. */
    CHECK_EQ_STATUS(ql_listener_new(&vt, &handler, 1, NULL, true, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, untouched);
    /* The built-in queue knows the level of its built-in records: valid
     * (program pointers are then refused, see builtin_levels_refuse_unknown). */
    ql_handler plain = handler; /* no destroy: h stays untouched */
    plain.destroy = NULL;
    plain.flush = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &plain, 1, NULL, true, &l));
    CHECK(l != untouched);
    CHECK_OK(ql_listener_free(l));
    l = untouched;
    /* Hooks without record_level. */
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.prepare = prepare_hook;
    hooks.done = done_hook;
    CHECK_EQ_STATUS(ql_listener_new(&vt, &handler, 1, &hooks, true, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, untouched);
    /* On the built-in queue too: a record prepare made is an opaque
     * pointer whose level the library cannot read. */
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, &plain, 1, &hooks, true, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, untouched);
    /* No handlers on a vtable queue: still invalid, the flag cannot work. */
    CHECK_EQ_STATUS(ql_listener_new(&vt, NULL, 0, NULL, true, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, untouched);
    /* Nothing was called, the handler's ctx is still ours. */
    CHECK_EQ_INT(atomic_load(&h.destroys), 0);
    CHECK_EQ_INT(atomic_load(&h.flushes), 0);
    CHECK_EQ_INT(cq.sentinel_calls + cq.dequeue_calls, 0);
    /* The same with record_level is fine. */
    hooks.record_level = level_hook;
    l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, &hooks, true, &l));
    CHECK(l != NULL && l != untouched);
    CHECK_OK(ql_listener_free(l));
    CHECK_EQ_INT(atomic_load(&h.destroys), 1);
    ql_queue_free(q);
    qlt_cq_destroy(&cq);
    qlt_handler_fini(&h);
    PASS("respect_handler_level without a record_level hook: QL_ERR_INVALID on a vtable queue "
         "and with a prepare hook on the built-in queue (QL_OK without one: built-in records "
         "carry their level), out untouched, nothing called");
}

/* ----------------------------------------- CPython: prepare and the producer */

/* Port of CPython's test_queue_listener_with_multiple_handlers (bpo-35726):
 * a QueueHandler formats the record, and one handler's formatting must not
 * leak into what the next handler, or the producer, sees. Here prepare
 * makes a new record with the formatted message; two handlers format it
 * with their own prefixes into their own outputs. */
typedef struct {
    const char *prefix;
    char out[N_RECORDS][96];
    int n;
} fmt_handler;

static int32_t fmt_handle(void *ctx, void *record) {
    fmt_handler *h = (fmt_handler *)ctx;
    const prep_t *p = (const prep_t *)record;
    CHECK_EQ_INT(p->magic, PREP_MAGIC);
    CHECK(h->n < N_RECORDS);
    snprintf(h->out[h->n++], sizeof h->out[0], "%s%s", h->prefix, p->msg);
    return 0;
}

static void prepare_keeps_producer_record(void) {
    static rec_t records[3];
    static rec_t snapshot[3];
    static hook_state st;
    static fmt_handler f1, f2;
    qlt_log log;
    qlt_log_init(&log, 64);
    memset(&st, 0, sizeof st);
    st.log = &log;
    st.records = records;
    st.replace = true;
    const char *msgs[3] = {"que -> ERROR", "que -> WARNING", "que -> CRITICAL"};
    const int lv[3] = {40, 30, 50};
    for (int i = 0; i < 3; i++) {
        memset(&records[i], 0, sizeof records[i]);
        records[i].seq = i;
        records[i].level = lv[i];
        snprintf(records[i].msg, sizeof records[i].msg, "%s", msgs[i]);
    }
    memcpy(snapshot, records, sizeof records);
    f1.prefix = "h1: ";
    f2.prefix = "h2: ";
    ql_handler handlers[2] = {{&f1, 0, fmt_handle, NULL, NULL, NULL}, {&f2, 0, fmt_handle, NULL, NULL, NULL}};
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = &st;
    hooks.prepare = prepare_hook;
    hooks.release = release_hook;
    hooks.done = done_hook;

    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(8, &q));
    CHECK_OK(ql_listener_new_with_queue(q, handlers, 2, &hooks, false, &l));
    CHECK_OK(ql_start(l));
    for (int i = 0; i < 3; i++) CHECK_OK(ql_queue_put(q, &records[i]));
    CHECK_OK(ql_stop(l));

    CHECK_EQ_INT(f1.n, 3);
    CHECK_EQ_INT(f2.n, 3);
    for (int i = 0; i < 3; i++) {
        char want[128];
        snprintf(want, sizeof want, "h1: prepared: %s", msgs[i]);
        if (strcmp(f1.out[i], want) != 0) QLT_FAIL("handler 1 wrote '%s', want '%s'", f1.out[i], want);
        snprintf(want, sizeof want, "h2: prepared: %s", msgs[i]);
        if (strcmp(f2.out[i], want) != 0) QLT_FAIL("handler 2 wrote '%s', want '%s'", f2.out[i], want);
        CHECK_EQ_INT(st.prepare_calls[i], 1);
    }
    CHECK(memcmp(records, snapshot, sizeof records) == 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_log_destroy(&log);
    PASS("prepare makes a new record: the producer's records are byte-for-byte unchanged, "
         "each handler formats the prepared message on its own");
}

/* ------------------------------- levels the library cannot read (issue 13.8) */

/* A record a prepare hook made: the program's own type, with its level. */
typedef struct {
    int32_t level;
} made_record;

static made_record made_error = {40};

/* Replaces every built-in record by made_error (level 40, whatever the
 * original's). */
static int32_t replace_with_error(void *ctx, void *record, void **prepared_out) {
    (void)ctx;
    (void)record;
    *prepared_out = &made_error;
    return 0;
}

static ql_dequeue_result empty_dequeue(void *ctx, bool block, void **record_out) {
    (void)ctx;
    (void)block;
    (void)record_out;
    return QL_DEQUEUE_EMPTY;
}

static int32_t made_level(void *ctx, void *record) {
    (void)ctx;
    if (record == &made_error) return made_error.level;
    return ((const ql_record *)record)->level;
}

typedef struct {
    ql_queue *q;
    pthread_barrier_t go;
    ql_status put;
    int token;
} race_arg;

static void *race_put(void *arg) {
    race_arg *a = (race_arg *)arg;
    pthread_barrier_wait(&a->go);
    a->put = ql_queue_put_nowait(a->q, &a->token);
    return NULL;
}

static void builtin_levels_refuse_unknown(void) {
    qlt_log log;
    qlt_log_init(&log, 64);
    qlt_handler_ctx low, high;
    qlt_handler_init(&low, 0, &log);
    qlt_handler_init(&high, 1, &log);
    ql_handler hs[2] = {qlt_handler(&low, 0), qlt_handler(&high, 40)};
    hs[0].destroy = hs[1].destroy = NULL;
    int token = 7;

    /* 1. A listener filtering by the built-in records' levels: the queue
     * then refuses program pointers, by every put, and the caller keeps
     * them; ql_log records are filtered by their own level. */
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, hs, 2, NULL, true, &l));
    CHECK_EQ_STATUS(ql_queue_put(q, &token), QL_ERR_INVALID);
    CHECK_EQ_STATUS(ql_queue_put_nowait(q, &token), QL_ERR_INVALID);
    CHECK_EQ_STATUS(ql_queue_put_timeout(q, &token, 10), QL_ERR_INVALID);
    CHECK_EQ_INT((long)qlt_queue_len(q), 0);
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_log(q, 20, "t", "info", 4));
    CHECK_OK(ql_log(q, 40, "t", "error", 5));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&low.handled), 2);
    CHECK_EQ_INT(qlt_counter_get(&high.handled), 1);
    /* Still refused after the listener is gone: the rule is the queue's. */
    CHECK_OK(ql_listener_free(l));
    CHECK_EQ_STATUS(ql_queue_put(q, &token), QL_ERR_INVALID);
    ql_queue_free(q);

    /* 2. A queue that has taken a program pointer: such a listener is
     * refused, out untouched; with a record_level hook it is fine. */
    ql_listener *const untouched = (ql_listener *)&token;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_queue_put(q, &token));
    l = untouched;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, hs, 2, NULL, true, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, untouched);
    CHECK_OK(ql_listener_new_with_queue(q, hs, 2, NULL, false, &l)); /* no filtering: fine */
    CHECK_OK(ql_listener_free(l));
    void *got = NULL;
    CHECK_OK(ql_queue_get_nowait(q, &got));
    CHECK_EQ_PTR(got, &token);
    ql_queue_free(q);

    /* 3. prepare replaces every record; record_level reads the replacement:
     * filtered by the prepared record's level, as Python does. An INFO
     * record replaced by a level-40 one reaches the level-40 handler. */
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.prepare = replace_with_error;
    CHECK_OK(ql_queue_new(0, &q));
    l = untouched;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, hs, 2, &hooks, true, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, untouched);
    /* A dequeue hook hands opaque pointers too: refused the same way. */
    ql_hooks taking;
    memset(&taking, 0, sizeof taking);
    taking.dequeue = empty_dequeue;
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, hs, 2, &taking, true, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, untouched);
    hooks.record_level = made_level;
    CHECK_OK(ql_listener_new_with_queue(q, hs, 2, &hooks, true, &l));
    long low0 = qlt_counter_get(&low.handled), high0 = qlt_counter_get(&high.handled);
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_log(q, 20, "t", "info", 4));
    CHECK_OK(ql_queue_put(q, &token)); /* a hook reads levels: pointers are fine */
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&low.handled) - low0, 2);
    CHECK_EQ_INT(qlt_counter_get(&high.handled) - high0, 2);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);

    /* 4. A put and such a listener racing on a fresh queue: exactly one of
     * them is refused, never both taken. */
    int listener_won = 0, put_won = 0;
    for (int round = 0; round < 200; round++) {
        race_arg a;
        memset(&a, 0, sizeof a);
        CHECK_OK(ql_queue_new(0, &a.q));
        QLT_PT(pthread_barrier_init(&a.go, NULL, 2));
        pthread_t t;
        QLT_PT(pthread_create(&t, NULL, race_put, &a));
        pthread_barrier_wait(&a.go);
        ql_listener *rl = NULL;
        ql_status made = ql_listener_new_with_queue(a.q, hs, 2, NULL, true, &rl);
        QLT_PT(pthread_join(t, NULL));
        if (made == QL_OK) {
            CHECK_EQ_STATUS(a.put, QL_ERR_INVALID);
            listener_won++;
            CHECK_OK(ql_listener_free(rl));
        } else {
            CHECK_EQ_STATUS(made, QL_ERR_INVALID);
            CHECK_OK(a.put);
            put_won++;
            CHECK_OK(ql_queue_get_nowait(a.q, &got));
        }
        QLT_PT(pthread_barrier_destroy(&a.go));
        ql_queue_free(a.q);
    }
    CHECK_EQ_INT(listener_won + put_won, 200);

    qlt_handler_fini(&low);
    qlt_handler_fini(&high);
    qlt_log_destroy(&log);
    PASS("respect_handler_level on the built-in queue: program pointers refused (QL_ERR_INVALID, "
         "caller keeps them) once such a listener exists, such a listener refused once the "
         "queue took one (race: exactly one side refused, %d/%d), a prepare or dequeue hook "
         "needs record_level, which filters by the prepared record's level",
         listener_won, put_won);
}

int main(void) {
    qlt_begin("test_handling");
    run_life(true, true);
    run_life(true, false);
    run_life(false, true);
    run_life(false, false);
    run_levels(true, false);
    run_levels(true, true);
    run_levels(false, false);
    run_levels(false, true);
    respect_needs_record_level();
    prepare_keeps_producer_record();
    builtin_levels_refuse_unknown();
    return qlt_end();
}
