/*
 * test_cpython_ports: CPython's own QueueListener tests
 * (Lib/test/test_logging.py), through the C API.
 *
 * - handler at level 0 gets WARNING, ERROR, CRITICAL; stop twice is
 *   harmless; everything logged before stop is handled when it returns
 *   (test_queue_listener);
 * - respect_handler_level with a CRITICAL handler: only CRITICAL gets
 *   through (test_queue_listener);
 * - start, stop, start again: the context manager's life
 *   (test_queue_listener_context_manager);
 * - start inside a running listener fails; restart after stop works
 *   (test_queue_listener_multi_start);
 * - 20 x (start, five records, stop): handle called exactly 100 times
 *   (test_no_messages_in_queue_after_stop's setup_and_log);
 * - nothing left on the queue after stop but at most the sentinel
 *   (test_no_messages_in_queue_after_stop);
 * - task_done balanced after start and stop with no records
 *   (test_calls_task_done_after_stop);
 * - prepare must not change the producer's record
 *   (test_queue_listener_with_multiple_handlers, bpo-35726).
 */
#include "ql_test.h"

enum { NOTSET = 0, DEBUG = 10, INFO = 20, WARNING = 30, ERROR = 40, CRITICAL = 50 };

typedef struct {
    int level;
    char msg[32];
} log_record;

static int32_t record_level(void *ctx, void *record) {
    (void)ctx;
    return ((log_record *)record)->level;
}

/* A handler remembering the levels it got, like a StreamHandler's output. */
typedef struct {
    int levels[256];
    int n;
} level_handler;

static int32_t level_handle(void *ctx, void *record) {
    level_handler *h = (level_handler *)ctx;
    CHECK(h->n < 256);
    h->levels[h->n++] = ((log_record *)record)->level;
    return 0;
}

static void put_three(ql_queue *q, log_record r[3]) {
    const int lv[3] = {WARNING, ERROR, CRITICAL};
    for (int i = 0; i < 3; i++) {
        r[i].level = lv[i];
        snprintf(r[i].msg, sizeof r[i].msg, "level %d", lv[i]);
        CHECK_OK(ql_queue_put(q, &r[i]));
    }
}

/* test_queue_listener: a handler at level 0 (its default) and no respect. */
static void queue_listener(void) {
    static log_record r[3];
    level_handler h;
    memset(&h, 0, sizeof h);
    ql_handler handler = {&h, NOTSET, level_handle, NULL, NULL, NULL};
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    put_three(q, r);
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_stop(l)); /* "stop twice raises nothing" */
    CHECK_EQ_INT(qlt_queue_len(q), 0); /* ... and leaves nothing behind */
    CHECK_EQ_INT(h.n, 3);
    CHECK_EQ_INT(h.levels[0], WARNING);
    CHECK_EQ_INT(h.levels[1], ERROR);
    CHECK_EQ_INT(h.levels[2], CRITICAL);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    PASS("test_queue_listener: level-0 handler got WARNING, ERROR, CRITICAL before stop "
         "returned; a second stop is harmless");

    /* The same with respect_handler_level and the handler at CRITICAL. */
    memset(&h, 0, sizeof h);
    handler.level = CRITICAL;
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.record_level = record_level;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, &hooks, true, &l));
    CHECK_OK(ql_start(l));
    put_three(q, r);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(h.n, 1);
    CHECK_EQ_INT(h.levels[0], CRITICAL);
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    PASS("test_queue_listener, respect_handler_level: the CRITICAL handler got only CRITICAL");
}

/* test_queue_listener_context_manager: `with listener:` is start + stop. */
static void context_manager(void) {
    static log_record r[3];
    level_handler h;
    memset(&h, 0, sizeof h);
    ql_handler handler = {&h, NOTSET, level_handle, NULL, NULL, NULL};
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    CHECK(!qlt_is_running(l));
    for (int pass = 1; pass <= 2; pass++) { /* a listener is reusable */
        CHECK_OK(ql_start(l)); /* __enter__ */
        CHECK(qlt_is_running(l));
        put_three(q, r);
        CHECK_OK(ql_stop(l)); /* __exit__ */
        CHECK(!qlt_is_running(l));
        CHECK_EQ_INT(h.n, 3 * pass);
    }
    CHECK_OK(ql_stop(l)); /* a further stop is harmless */
    CHECK(!qlt_is_running(l));
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    PASS("test_queue_listener_context_manager: running inside, stopped after, twice; further "
         "stop harmless");
}

/* test_queue_listener_multi_start */
static void multi_start(void) {
    level_handler h;
    memset(&h, 0, sizeof h);
    ql_handler handler = {&h, NOTSET, level_handle, NULL, NULL, NULL};
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    CHECK_OK(ql_start(l));
    CHECK_EQ_STATUS(ql_start(l), QL_ERR_ALREADY_STARTED);
    CHECK(qlt_is_running(l));
    CHECK_OK(ql_stop(l));
    CHECK(!qlt_is_running(l));
    CHECK_OK(ql_start(l)); /* restart after stop */
    CHECK(qlt_is_running(l));
    CHECK_EQ_STATUS(ql_start(l), QL_ERR_ALREADY_STARTED);
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    PASS("test_queue_listener_multi_start: start inside a running listener fails, restart after "
         "stop works");
}

/* test_no_messages_in_queue_after_stop: 20 x (start, five records, stop). */
static void repeated_runs(void) {
    static log_record r[5];
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, NOTSET);
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    for (int i = 0; i < 20; i++) {
        CHECK_OK(ql_start(l));
        for (int j = 0; j < 5; j++) {
            r[j].level = INFO;
            CHECK_OK(ql_queue_put(q, &r[j]));
        }
        CHECK_OK(ql_stop(l));
    }
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 100);
    PASS("20 x (start, five records, stop): handle called exactly 100 times");
    /* Python allows [] or [sentinel]; this queue's stop consumed its sentinel. */
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    void *left = QLT_REC(1);
    CHECK_EQ_STATUS(ql_queue_get_nowait(q, &left), QL_ERR_EMPTY);
    CHECK_EQ_PTR(left, QLT_REC(1));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_handler_fini(&h);
    PASS("nothing left on the queue after stop (not even the sentinel)");

    /* The same with a vtable queue: at most the sentinel may be left. */
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    qlt_handler_init(&h, 0, NULL);
    handler = qlt_handler(&h, NOTSET);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    CHECK_OK(ql_listener_new(&vt, &handler, 1, NULL, false, &l));
    for (int i = 0; i < 20; i++) {
        CHECK_OK(ql_start(l));
        for (int j = 0; j < 5; j++) qlt_cq_put(&cq, &r[j]);
        CHECK_OK(ql_stop(l));
    }
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 100);
    CHECK(cq.len == 0 || (cq.len == 1 && cq.items[cq.head].sentinel));
    CHECK_EQ_INT(cq.dequeued_records, 100);
    qlt_cq_check_pairing(&cq);
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    qlt_handler_fini(&h);
    PASS("vtable queue: 100 handled, at most the sentinel left");
}

/* test_calls_task_done_after_stop: a queue.Queue counts unfinished tasks;
 * task_done below zero raises ValueError. */
static void task_done_after_stop(void) {
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new(&vt, NULL, 0, NULL, false, &l));
    CHECK_OK(ql_start(l));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(cq.puts, 1);        /* the sentinel's put counted ... */
    CHECK_EQ_INT(cq.task_done_null, 1); /* ... and its task_done */
    CHECK_EQ_INT(cq.unfinished, 0);
    CHECK_EQ_INT(cq.task_done_too_many, 0);
    /* "with self.assertRaises(ValueError): log_queue.task_done()" */
    qlt_cq_task_done(&cq, NULL);
    CHECK_EQ_INT(cq.task_done_too_many, 1);
    CHECK_OK(ql_listener_free(l));
    qlt_cq_destroy(&cq);
    PASS("start+stop with no records: the sentinel's put and task_done balance (unfinished 0); "
         "one more task_done goes below zero");
}

/* test_queue_listener_with_multiple_handlers (bpo-35726): the formatting
 * one handler does must not change what the next handler or the producer
 * sees. prepare gives the handlers a new, formatted record. */
typedef struct {
    int level;
    char msg[64];
} formatted_record;

typedef struct {
    formatted_record copy;
    bool used;
} prepared_slot;

static prepared_slot slots[3];

static int32_t format_prepare(void *ctx, void *record, void **prepared_out) {
    (void)ctx;
    const log_record *r = (const log_record *)record;
    for (int i = 0; i < 3; i++) {
        if (!slots[i].used) {
            slots[i].used = true;
            slots[i].copy.level = r->level;
            snprintf(slots[i].copy.msg, sizeof slots[i].copy.msg, "que -> %s", r->msg);
            *prepared_out = &slots[i].copy;
            return 0;
        }
    }
    QLT_FAIL("more than 3 records prepared");
}

typedef struct {
    const char *fmt_prefix;
    char lines[3][96];
    int n;
} fmt_handler;

static int32_t fmt_handle(void *ctx, void *record) {
    fmt_handler *h = (fmt_handler *)ctx;
    const formatted_record *r = (const formatted_record *)record;
    CHECK(h->n < 3);
    snprintf(h->lines[h->n++], sizeof h->lines[0], "%s%s", h->fmt_prefix, r->msg);
    return 0;
}

static void multiple_handlers(void) {
    static log_record r[3];
    fmt_handler a = {"A: ", {{0}}, 0}, b = {"B: ", {{0}}, 0};
    ql_handler handlers[2] = {{&a, 0, fmt_handle, NULL, NULL, NULL}, {&b, 0, fmt_handle, NULL, NULL, NULL}};
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.prepare = format_prepare;
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, handlers, 2, &hooks, false, &l));
    CHECK_OK(ql_start(l));
    put_three(q, r);
    CHECK_OK(ql_stop(l));
    const char *names[3] = {"level 30", "level 40", "level 50"};
    for (int i = 0; i < 3; i++) {
        char want[96];
        snprintf(want, sizeof want, "A: que -> %s", names[i]);
        if (strcmp(a.lines[i], want) != 0) QLT_FAIL("A wrote '%s', want '%s'", a.lines[i], want);
        snprintf(want, sizeof want, "B: que -> %s", names[i]);
        if (strcmp(b.lines[i], want) != 0) QLT_FAIL("B wrote '%s', want '%s'", b.lines[i], want);
        if (strcmp(r[i].msg, names[i]) != 0) QLT_FAIL("producer's record changed to '%s'", r[i].msg);
    }
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    PASS("test_queue_listener_with_multiple_handlers: each handler formats the prepared record "
         "once; the producer's records are unchanged");
}

int main(void) {
    qlt_begin("test_cpython_ports");
    queue_listener();
    context_manager();
    multi_start();
    repeated_runs();
    task_done_after_stop();
    multiple_handlers();
    return qlt_end();
}
