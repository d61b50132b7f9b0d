/*
 * test_bad_input: what every function does with bad arguments.
 *
 * - NULL for each pointer argument of each function: QL_ERR_NULL, nothing
 *   written, nothing taken; the free functions take NULL as a no-op;
 * - a missing required vtable slot (dequeue, enqueue_sentinel, a
 *   handler's handle): QL_ERR_INVALID, out untouched, nothing called;
 *   hooks overriding dequeue / enqueue_sentinel make those slots optional;
 * - handlers NULL: fine with count 0, QL_ERR_NULL with a count;
 * - ql_status_str: every status has its own text, unknown values give
 *   "unknown status"; ql_version looks like MAJOR.MINOR.PATCH;
 * - ql_listener_free of a running listener stops it first (all records
 *   handled, flush, then destroy once per handler);
 * - ql_listener_free from a handler: QL_ERR_WOULD_DEADLOCK.
 */
#include "ql_test.h"

/* A recognisable pointer value that no call may write over. */
static int marker;
#define UNTOUCHED ((void *)&marker)

static void null_arguments(void) {
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler handler = qlt_handler(&h, 0);
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_queue_put(q, QLT_REC(1)));

    /* constructors */
    ql_listener *l = (ql_listener *)UNTOUCHED;
    CHECK_EQ_STATUS(ql_listener_new(NULL, &handler, 1, NULL, false, &l), QL_ERR_NULL);
    CHECK_EQ_PTR(l, UNTOUCHED);
    CHECK_EQ_STATUS(ql_listener_new(&vt, NULL, 1, NULL, false, &l), QL_ERR_NULL);
    CHECK_EQ_PTR(l, UNTOUCHED);
    CHECK_EQ_STATUS(ql_listener_new(&vt, &handler, 1, NULL, false, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_listener_new_with_queue(NULL, &handler, 1, NULL, false, &l), QL_ERR_NULL);
    CHECK_EQ_PTR(l, UNTOUCHED);
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, NULL, 3, NULL, false, &l), QL_ERR_NULL);
    CHECK_EQ_PTR(l, UNTOUCHED);
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, &handler, 1, NULL, false, NULL), QL_ERR_NULL);
    CHECK_EQ_INT(atomic_load(&h.destroys), 0); /* the handler's ctx is still ours */
    CHECK_EQ_INT(cq.sentinel_calls + cq.dequeue_calls, 0);
    PASS("ql_listener_new / _with_queue: NULL queue, handlers (count 1 and 3), listener_out give "
         "QL_ERR_NULL, out untouched, nothing called");

    /* listener functions */
    bool running = true;
    ql_stats stats;
    memset(&stats, 0x5A, sizeof stats);
    ql_stats stats_copy = stats;
    CHECK_EQ_STATUS(ql_start(NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_stop(NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_stop_timeout(NULL, 0), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_stop_timeout(NULL, 100), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_enqueue_sentinel(NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_listener_is_running(NULL, &running), QL_ERR_NULL);
    CHECK(running == true);
    CHECK_EQ_STATUS(ql_listener_stats(NULL, &stats), QL_ERR_NULL);
    CHECK(memcmp(&stats, &stats_copy, sizeof stats) == 0);
    CHECK_OK(ql_listener_free(NULL));

    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &l));
    CHECK_EQ_STATUS(ql_listener_is_running(l, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_listener_stats(l, NULL), QL_ERR_NULL);
    CHECK(!qlt_is_running(l)); /* the NULL calls did nothing */
    CHECK_OK(ql_start(l));
    CHECK_EQ_STATUS(ql_listener_is_running(l, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_listener_stats(l, NULL), QL_ERR_NULL);
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 1);
    CHECK_OK(ql_listener_free(l));
    CHECK_EQ_INT(atomic_load(&h.destroys), 1);
    PASS("ql_start/stop/stop_timeout/enqueue_sentinel/is_running/stats: NULL listener or out "
         "gives QL_ERR_NULL, nothing written; ql_listener_free(NULL) is QL_OK");

    /* queue functions */
    ql_queue *q2 = (ql_queue *)UNTOUCHED;
    CHECK_EQ_STATUS(ql_queue_new(0, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_queue_new(4, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_queue_new((size_t)QL_QUEUE_MAX_CAPACITY + 1, NULL), QL_ERR_NULL);
    CHECK_EQ_PTR(q2, UNTOUCHED);
    ql_queue_free(NULL);
    CHECK_EQ_STATUS(ql_queue_put(NULL, QLT_REC(1)), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_queue_put_nowait(NULL, QLT_REC(1)), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_queue_put_timeout(NULL, QLT_REC(1), 10), QL_ERR_NULL);
    void *r = UNTOUCHED;
    CHECK_EQ_STATUS(ql_queue_get(NULL, &r), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_queue_get_nowait(NULL, &r), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_queue_get_timeout(NULL, 10, &r), QL_ERR_NULL);
    CHECK_EQ_PTR(r, UNTOUCHED);
    size_t len = 777;
    CHECK_EQ_STATUS(ql_queue_len(NULL, &len), QL_ERR_NULL);
    CHECK_EQ_INT(len, 777);
    /* a NULL out on a queue holding a record: refused, the record stays */
    CHECK_OK(ql_queue_put(q, QLT_REC(2)));
    CHECK_EQ_INT(qlt_queue_len(q), 1);
    CHECK_EQ_STATUS(ql_queue_get(q, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_queue_get_nowait(q, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_queue_get_timeout(q, 10, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_queue_len(q, NULL), QL_ERR_NULL);
    CHECK_EQ_INT(qlt_queue_len(q), 1);
    CHECK_OK(ql_queue_get_nowait(q, &r));
    CHECK_EQ_PTR(r, QLT_REC(2));
    ql_queue_free(q);
    qlt_cq_destroy(&cq);
    qlt_handler_fini(&h);
    PASS("ql_queue_*: NULL queue or out gives QL_ERR_NULL, nothing taken or written; "
         "ql_queue_free(NULL) is a no-op");
}

/* ---------------------------------------------------------------- required slots */

static void required_slots(void) {
    qlt_handler_ctx h[2];
    for (int i = 0; i < 2; i++) qlt_handler_init(&h[i], i, NULL);
    ql_handler handlers[2] = {qlt_handler(&h[0], 0), qlt_handler(&h[1], 0)};
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    ql_listener *l = (ql_listener *)UNTOUCHED;

    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    vt.dequeue = NULL;
    CHECK_EQ_STATUS(ql_listener_new(&vt, handlers, 2, NULL, false, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, UNTOUCHED);
    vt = qlt_cq_vtable(&cq);
    vt.enqueue_sentinel = NULL;
    CHECK_EQ_STATUS(ql_listener_new(&vt, handlers, 2, NULL, false, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, UNTOUCHED);
    vt.dequeue = NULL;
    CHECK_EQ_STATUS(ql_listener_new(&vt, handlers, 2, NULL, false, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, UNTOUCHED);
    /* hooks without the missing slot do not help */
    ql_hooks hooks;
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = &cq;
    hooks.dequeue = qlt_cq_dequeue;
    CHECK_EQ_STATUS(ql_listener_new(&vt, handlers, 2, &hooks, false, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, UNTOUCHED);
    /* a handler without handle: the second one */
    vt = qlt_cq_vtable(&cq);
    handlers[1].handle = NULL;
    CHECK_EQ_STATUS(ql_listener_new(&vt, handlers, 2, NULL, false, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, UNTOUCHED);
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_EQ_STATUS(ql_listener_new_with_queue(q, handlers, 2, NULL, false, &l), QL_ERR_INVALID);
    CHECK_EQ_PTR(l, UNTOUCHED);
    handlers[1].handle = qlt_handler_handle;
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(atomic_load(&h[i].destroys), 0);
        CHECK_EQ_INT(qlt_counter_get(&h[i].handled), 0);
    }
    CHECK_EQ_INT(cq.sentinel_calls + cq.dequeue_calls, 0);
    PASS("missing dequeue, enqueue_sentinel or handler handle: QL_ERR_INVALID, out untouched, "
         "no destroy, no callback");

    /* handlers NULL with count 0 is a listener without handlers */
    l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, NULL, 0, NULL, false, &l));
    CHECK(l != NULL);
    CHECK_OK(ql_start(l));
    for (long i = 1; i <= 3; i++) CHECK_OK(ql_queue_put(q, QLT_REC(i)));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(qlt_stats(l).handled, 3);
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    CHECK_OK(ql_listener_free(l));
    vt = qlt_cq_vtable(&cq);
    l = NULL;
    CHECK_OK(ql_listener_new(&vt, NULL, 0, NULL, false, &l));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    PASS("handlers NULL with count 0: QL_OK, a working listener without handlers");

    /* Hooks overriding dequeue and enqueue_sentinel make the slots optional. */
    vt = qlt_cq_vtable(&cq);
    vt.dequeue = NULL;
    vt.enqueue_sentinel = NULL;
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = &cq;
    hooks.dequeue = qlt_cq_dequeue;
    hooks.enqueue_sentinel = qlt_cq_enqueue_sentinel;
    l = NULL;
    CHECK_OK(ql_listener_new(&vt, handlers, 2, &hooks, false, &l));
    CHECK_OK(ql_start(l));
    for (long i = 1; i <= 4; i++) qlt_cq_put(&cq, QLT_REC(i));
    CHECK_OK(ql_stop(l));
    for (int i = 0; i < 2; i++) CHECK_EQ_INT(qlt_counter_get(&h[i].handled), 4);
    CHECK_EQ_INT(cq.dequeued_records, 4);
    CHECK_EQ_INT(cq.sentinel_calls, 1);
    CHECK_EQ_INT(cq.task_done_records, 4); /* the vtable's task_done is still used */
    CHECK_EQ_INT(cq.task_done_null, 1);
    CHECK_OK(ql_listener_free(l));
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(atomic_load(&h[i].destroys), 1);
        qlt_handler_fini(&h[i]);
    }
    qlt_cq_destroy(&cq);
    PASS("vtable dequeue and enqueue_sentinel NULL but overridden by hooks: QL_OK, records go "
         "through the hooks");
}

/* ---------------------------------------------------------------- status text */

static void status_strings(void) {
    const ql_status all[] = {QL_OK, QL_ERR_NULL, QL_ERR_INVALID, QL_ERR_ALREADY_STARTED,
                             QL_ERR_WOULD_DEADLOCK, QL_ERR_FULL, QL_ERR_TIMEOUT, QL_ERR_EMPTY,
                             QL_ERR_SENTINEL, QL_ERR_QUEUE, QL_ERR_THREAD, QL_ERR_PANIC,
                             QL_ERR_NOT_RUNNING, QL_ERR_UNSUPPORTED, QL_ERR_FORKED,
                             QL_ERR_LOST, QL_ERR_NOMEM};
    const int n = (int)(sizeof all / sizeof all[0]);
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(all[i], i); /* the documented values 0..16 */
        const char *s = ql_status_str(all[i]);
        CHECK(s != NULL);
        CHECK(s[0] != '\0');
        CHECK(strcmp(s, "unknown status") != 0);
        for (int j = 0; j < i; j++) {
            if (strcmp(s, ql_status_str(all[j])) == 0)
                QLT_FAIL("statuses %d and %d share the text '%s'", i, j, s);
        }
    }
    const ql_status unknown[] = {17, 12345, -1, INT32_MIN, INT32_MAX};
    for (int i = 0; i < 5; i++) {
        const char *s = ql_status_str(unknown[i]);
        CHECK(s != NULL);
        if (strcmp(s, "unknown status") != 0)
            QLT_FAIL("ql_status_str(%d) is '%s', want 'unknown status'", (int)unknown[i], s);
    }
    const char *v = ql_version();
    CHECK(v != NULL);
    unsigned a, b, c;
    char extra;
    if (sscanf(v, "%u.%u.%u%c", &a, &b, &c, &extra) != 3) QLT_FAIL("ql_version() is '%s'", v);
    PASS("ql_status_str: %d distinct texts, 'unknown status' for 17, 12345, -1, INT32_MIN, "
         "INT32_MAX; ql_version() = %s",
         n, v);
}

/* ---------------------------------------------------------------- free */

/* Handlers that note when flush and destroy came, relative to each other. */
typedef struct {
    qlt_handler_ctx base;
    atomic_long *clock;
    long flush_at, destroy_at;
} ordered_handler;

static void ordered_flush(void *ctx) {
    ordered_handler *h = (ordered_handler *)ctx;
    h->flush_at = atomic_fetch_add(h->clock, 1) + 1;
    qlt_handler_flush(&h->base);
}

static void ordered_destroy(void *ctx) {
    ordered_handler *h = (ordered_handler *)ctx;
    h->destroy_at = atomic_fetch_add(h->clock, 1) + 1;
    qlt_handler_destroy(&h->base);
}

static void free_running(void) {
    enum { N = 2000, H = 3 };
    atomic_long clock;
    atomic_init(&clock, 0);
    ordered_handler oh[H];
    ql_handler handlers[H];
    for (int i = 0; i < H; i++) {
        qlt_handler_init(&oh[i].base, i, NULL);
        oh[i].clock = &clock;
        oh[i].flush_at = oh[i].destroy_at = 0;
        handlers[i] = qlt_handler(&oh[i].base, 0);
        handlers[i].flush = ordered_flush;
        handlers[i].destroy = ordered_destroy;
    }
    ql_queue *q = NULL;
    ql_listener *l = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, handlers, H, NULL, false, &l));
    const int base = qlt_thread_count();
    CHECK_OK(ql_start(l));
    for (long i = 1; i <= N; i++) CHECK_OK(ql_queue_put(q, QLT_REC(i)));
    CHECK_OK(ql_listener_free(l)); /* stops first */
    for (int i = 0; i < H; i++) {
        CHECK_EQ_INT(qlt_counter_get(&oh[i].base.handled), N);
        CHECK_EQ_INT(atomic_load(&oh[i].base.flushes), 1);
        CHECK_EQ_INT(atomic_load(&oh[i].base.destroys), 1);
        CHECK(oh[i].flush_at > 0 && oh[i].flush_at <= H); /* every flush ... */
        CHECK(oh[i].destroy_at > H);                       /* ... before any destroy */
        qlt_handler_fini(&oh[i].base);
    }
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    qlt_wait_thread_count(base);
    ql_queue_free(q);
    PASS("ql_listener_free of a running listener: stopped first (all %d records handled, "
         "flushed), then destroy once per handler; thread gone",
         N);

    /* ql_listener_free of a never-started listener: destroy only. */
    qlt_handler_ctx h;
    qlt_handler_init(&h, 0, NULL);
    ql_handler one = qlt_handler(&h, 0);
    qlt_cq cq;
    qlt_cq_init(&cq, 0);
    ql_queue_vtable vt = qlt_cq_vtable(&cq);
    CHECK_OK(ql_listener_new(&vt, &one, 1, NULL, false, &l));
    qlt_cq_put(&cq, QLT_REC(1));
    CHECK_OK(ql_listener_free(l));
    CHECK_EQ_INT(atomic_load(&h.destroys), 1);
    CHECK_EQ_INT(atomic_load(&h.flushes), 0);
    CHECK_EQ_INT(qlt_counter_get(&h.handled), 0);
    CHECK_EQ_INT(cq.sentinel_calls, 0);
    CHECK_EQ_INT(cq.len, 1); /* records still queued stay on the queue */
    qlt_cq_destroy(&cq);
    qlt_handler_fini(&h);
    PASS("ql_listener_free of an idle listener: destroy once, no sentinel, queued records stay");
}

typedef struct {
    ql_listener *l;
    ql_status status;
    qlt_counter count;
} freeing_handler;

static int32_t freeing_handle(void *ctx, void *record) {
    (void)record;
    freeing_handler *h = (freeing_handler *)ctx;
    h->status = ql_listener_free(h->l);
    qlt_counter_add(&h->count, 1);
    return 0;
}

static void free_from_handler(void) {
    freeing_handler h;
    memset(&h, 0, sizeof h);
    h.status = -1;
    qlt_counter_init(&h.count);
    ql_handler handler = {&h, 0, freeing_handle, NULL, NULL, NULL};
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_listener_new_with_queue(q, &handler, 1, NULL, false, &h.l));
    CHECK_OK(ql_start(h.l));
    CHECK_OK(ql_queue_put(q, QLT_REC(1)));
    qlt_counter_wait_at_least(&h.count, 1);
    CHECK_EQ_STATUS(h.status, QL_ERR_WOULD_DEADLOCK);
    CHECK(qlt_is_running(h.l)); /* not freed: still answers */
    CHECK_OK(ql_queue_put(q, QLT_REC(2)));
    qlt_counter_wait_at_least(&h.count, 2);
    CHECK_EQ_STATUS(h.status, QL_ERR_WOULD_DEADLOCK);
    CHECK_OK(ql_stop(h.l));
    CHECK_OK(ql_listener_free(h.l));
    ql_queue_free(q);
    qlt_counter_destroy(&h.count);
    PASS("ql_listener_free from a handler: QL_ERR_WOULD_DEADLOCK, listener intact and usable");
}

/* Options structs carry their size (struct_size, set by the default
 * functions): a program built against an older header passes a smaller
 * struct, one built against a newer header a larger one. Here: the size
 * the header gives works; 0 (options not made by the default function) and
 * a size smaller than any layout are QL_ERR_INVALID; a larger struct whose
 * members unknown to the library are zero works, and one that sets any of
 * them is QL_ERR_UNSUPPORTED (the program asks for what this library
 * cannot do). Nothing is made on a refusal. */
#define SIZED_CASES(type, make_default, call)                                            \
    do {                                                                                 \
        union {                                                                          \
            type o;                                                                      \
            unsigned char bytes[sizeof(type) + 16];                                      \
        } u;                                                                             \
        memset(&u, 0, sizeof u);                                                         \
        u.o = make_default();                                                            \
        CHECK_EQ_INT(u.o.struct_size, sizeof(type));                                     \
        CHECK_OK(call);                                                                  \
        u.o.struct_size = 0;                                                             \
        CHECK_EQ_STATUS(call, QL_ERR_INVALID);                                           \
        u.o.struct_size = sizeof(type) - 8;                                              \
        CHECK_EQ_STATUS(call, QL_ERR_INVALID);                                           \
        u.o.struct_size = sizeof u;                                                      \
        CHECK_OK(call);                                                                  \
        u.bytes[sizeof(type) + 3] = 1;                                                   \
        CHECK_EQ_STATUS(call, QL_ERR_UNSUPPORTED);                                       \
    } while (0)

static ql_handler made;
static ql_queue *made_queue;

static ql_status handler_made(ql_status status) {
    if (status == QL_OK) ql_handler_free(&made);
    return status;
}

static ql_status queue_made(ql_status status) {
    if (status == QL_OK) ql_queue_free(made_queue);
    made_queue = NULL;
    return status;
}

static void sized_options(void) {
    SIZED_CASES(ql_queue_options, ql_queue_options_default,
                queue_made(ql_queue_new_with_options(&u.o, &made_queue)));
    SIZED_CASES(ql_handler_options, ql_handler_options_default,
                handler_made(ql_stream_handler_fd(2, &u.o, &made)));
    SIZED_CASES(ql_syslog_options, ql_syslog_options_default,
                handler_made(ql_syslog_handler(&u.o, &made)));
    SIZED_CASES(ql_journald_options, ql_journald_options_default,
                handler_made(ql_journald_handler(&u.o, &made)));
    PASS("options structs: their own size works; size 0 and smaller sizes are "
         "QL_ERR_INVALID; a larger struct works with its unknown members zero and is "
         "QL_ERR_UNSUPPORTED with one set (queue, handler, syslog, journald options)");
}

int main(void) {
    qlt_begin("test_bad_input");
    null_arguments();
    required_slots();
    status_strings();
    free_running();
    free_from_handler();
    sized_options();
    return qlt_end();
}
