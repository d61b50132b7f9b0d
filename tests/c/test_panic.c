/*
 * test_panic: every exported function's panic boundary.
 *
 * ql_debug_panic_next_call() makes the next call into the library panic
 * inside its boundary, before it does anything. Each exported function is
 * called once that way: it must return QL_ERR_PANIC (status functions) or
 * its documented fallback, change nothing (out-params untouched, nothing
 * queued, nothing started or freed), and the library must work normally
 * afterwards. A panic that crossed into C would abort this program.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ql_test.h"

static int calls;
static int32_t count_handle(void *ctx, void *record) {
    (void)ctx;
    (void)record;
    calls++;
    return 0;
}

#define EXPECT_PANIC(call)                                                   \
    do {                                                                     \
        ql_debug_panic_next_call();                                          \
        CHECK_EQ_STATUS((call), QL_ERR_PANIC);                               \
        n_checked++;                                                         \
    } while (0)

static ql_status vtable_dequeue(void *ctx, bool block, void **out) {
    (void)ctx;
    (void)block;
    (void)out;
    return QL_DEQUEUE_EMPTY;
}
static ql_status vtable_sentinel(void *ctx) {
    (void)ctx;
    return QL_ENQUEUE_OK;
}

int main(void) {
    qlt_begin("test_panic");
    int n_checked = 0;
    const char *panic_text = "panic inside queue_listener";

    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(16, &q));
    ql_handler h = {NULL, 0, count_handle, NULL, NULL, NULL};
    ql_listener *l = NULL;
    CHECK_OK(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l));

    /* Constructors: out-params untouched. */
    ql_queue *q2 = (ql_queue *)&n_checked;
    EXPECT_PANIC(ql_queue_new(16, &q2));
    CHECK(q2 == (ql_queue *)&n_checked);
    ql_queue_options qo = ql_queue_options_default();
    EXPECT_PANIC(ql_queue_new_with_options(&qo, &q2));
    CHECK(q2 == (ql_queue *)&n_checked);
    ql_listener *l2 = (ql_listener *)&n_checked;
    EXPECT_PANIC(ql_listener_new_with_queue(q, &h, 1, NULL, false, &l2));
    CHECK(l2 == (ql_listener *)&n_checked);
    ql_queue_vtable vt = {NULL, vtable_dequeue, vtable_sentinel, NULL};
    EXPECT_PANIC(ql_listener_new(&vt, &h, 1, NULL, false, &l2));
    CHECK(l2 == (ql_listener *)&n_checked);
    ql_handler out;
    memset(&out, 0x33, sizeof out);
    const ql_handler untouched = out;
    ql_handler_options ho = ql_handler_options_default();
    EXPECT_PANIC(ql_stream_handler_fd(2, &ho, &out));
    EXPECT_PANIC(ql_stream_handler_file(stderr, &ho, &out));
    EXPECT_PANIC(ql_file_handler("/tmp/ql-test-panic.log", &ho, &out));
    EXPECT_PANIC(ql_null_handler(0, &out));
    ql_syslog_options so = ql_syslog_options_default();
    so.transport = QL_SYSLOG_UDP; /* made without any packet sent */
    EXPECT_PANIC(ql_syslog_handler(&so, &out));
    CHECK(memcmp(&out, &untouched, sizeof out) == 0);

    /* Listener control: nothing started, nothing stopped. */
    EXPECT_PANIC(ql_start(l));
    CHECK(!qlt_is_running(l));
    CHECK_OK(ql_start(l));
    EXPECT_PANIC(ql_stop(l));
    CHECK(qlt_is_running(l));
    EXPECT_PANIC(ql_stop_timeout(l, 100));
    CHECK(qlt_is_running(l));
    EXPECT_PANIC(ql_enqueue_sentinel(l));
    EXPECT_PANIC(ql_listener_flush(l, 1000));
    bool running = false;
    EXPECT_PANIC(ql_listener_is_running(l, &running));
    CHECK(!running);
    ql_stats st;
    memset(&st, 0x44, sizeof st);
    EXPECT_PANIC(ql_listener_stats(l, &st));
    CHECK(st.handled == 0x4444444444444444ULL);
    EXPECT_PANIC(ql_listener_drain_at_exit(l, 10));

    /* Producers: nothing queued. */
    EXPECT_PANIC(ql_queue_put(q, (void *)1));
    EXPECT_PANIC(ql_queue_put_nowait(q, (void *)1));
    EXPECT_PANIC(ql_queue_put_timeout(q, (void *)1, 10));
    EXPECT_PANIC(ql_log(q, 20, "t", "m", 1));
    EXPECT_PANIC(ql_log_user(q, 20, "t", "m", 1, NULL));
    ql_debug_panic_next_call(); /* ql_logf: ql_queue_enabled panics, says yes, */
    CHECK_OK(ql_logf(q, 20, "t", "%d", 1)); /* so the record goes through */
    EXPECT_PANIC(ql_queue_set_level(q, 30));
    CHECK(ql_queue_enabled(q, 20)); /* the level did not change */
    ql_debug_panic_next_call();
    CHECK(ql_queue_enabled(q, 20)); /* fallback: true, so ql_log reports */
    n_checked++;
    CHECK_OK(ql_listener_flush(l, 10000));
    CHECK_EQ_INT(calls, 1); /* only the ql_logf record got through */

    /* Consumers. */
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_queue_put(q, (void *)7));
    void *rec = (void *)&n_checked;
    EXPECT_PANIC(ql_queue_get(q, &rec));
    EXPECT_PANIC(ql_queue_get_nowait(q, &rec));
    EXPECT_PANIC(ql_queue_get_timeout(q, 10, &rec));
    CHECK(rec == (void *)&n_checked);
    size_t len = 99;
    EXPECT_PANIC(ql_queue_len(q, &len));
    CHECK_EQ_INT(len, 99);
    CHECK_OK(ql_queue_len(q, &len));
    CHECK_EQ_INT(len, 1); /* the record is still there */
    CHECK_OK(ql_queue_get_nowait(q, &rec));
    CHECK(rec == (void *)7);

    /* Functions that cannot return a status: their fallbacks. */
    ql_debug_panic_next_call();
    CHECK(strcmp(ql_status_str(QL_OK), panic_text) == 0);
    ql_debug_panic_next_call();
    CHECK(strcmp(ql_version(), panic_text) == 0);
    ql_debug_panic_next_call();
    CHECK(strcmp(ql_level_name(20), panic_text) == 0);
    ql_debug_panic_next_call();
    ql_queue_options d = ql_queue_options_default(); /* the defaults anyway */
    CHECK_EQ_INT(d.capacity, 8192);
    CHECK_EQ_INT(d.overflow, QL_OVERFLOW_BLOCK);
    ql_debug_panic_next_call();
    ql_handler_options hd = ql_handler_options_default();
    CHECK_EQ_INT(hd.flush, QL_FLUSH_BATCH);
    CHECK(hd.pattern == NULL);
    ql_debug_panic_next_call();
    ql_syslog_options sd = ql_syslog_options_default(); /* the defaults anyway */
    CHECK_EQ_INT(sd.transport, QL_SYSLOG_UNIX);
    CHECK_EQ_INT(sd.max_message_bytes, 8192);
    ql_handler null_h;
    CHECK_OK(ql_null_handler(0, &null_h));
    ql_debug_panic_next_call();
    CHECK_EQ_INT(ql_handler_lines_lost(&null_h), 0);
    n_checked += 7;

    /* Void frees do nothing when they panic: the objects stay usable. */
    ql_handler spare;
    CHECK_OK(ql_stream_handler_fd(2, NULL, &spare));
    ql_debug_panic_next_call();
    ql_handler_free(&spare);
    CHECK(spare.handle != NULL && spare.destroy != NULL); /* not freed */
    ql_handler_free(&spare);                              /* now freed */
    CHECK(spare.handle == NULL);
    ql_debug_panic_next_call();
    ql_queue_free(q); /* nothing happens: q stays alive */
    CHECK_OK(ql_queue_len(q, &len));
    CHECK_OK(ql_log(q, 20, "t", "m", 1));
    void *got = NULL;
    CHECK_OK(ql_queue_get_nowait(q, &got));
    ql_debug_panic_next_call();
    ql_record_free((ql_record *)got); /* nothing happens */
    CHECK(strcmp(((ql_record *)got)->message, "m") == 0);
    ql_record_free((ql_record *)got);
    EXPECT_PANIC(ql_listener_free(l)); /* refused, as when a stop fails */
    CHECK_OK(ql_start(l));              /* still usable */
    CHECK_OK(ql_stop(l));
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    n_checked += 3;

    /* The request is consumed by one call only. */
    CHECK_OK(ql_queue_new(4, &q));
    ql_queue_free(q);
    PASS("%d exported functions panicked inside their boundary on request: each returned "
         "QL_ERR_PANIC or its documented fallback and changed nothing; the library went on",
         n_checked);
    return qlt_end();
}
