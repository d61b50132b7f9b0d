/*
 * test_records: built-in records (ql_log, ql_log_user, ql_logf) as handlers
 * and ql_queue_get* see them.
 *
 * - every field: level, logger (+ logger_len, NUL), message (+ message_len,
 *   NUL), user, thread_id == the producer's gettid, timestamp_ns between
 *   two CLOCK_REALTIME readings around the call; a recycled record carries
 *   its new values (user NULL again, the new thread's id);
 * - NULL / "" logger -> "root"; embedded NUL bytes kept (message_len
 *   authoritative); message NULL with len 0 fine, with len > 0 QL_ERR_NULL;
 *   queue NULL QL_ERR_NULL (ql_log, ql_log_user, ql_logf);
 * - lengths around the inline limit (QL_RECORD_INLINE_TEXT) and 5000 bytes
 *   kept byte for byte; QL_MESSAGE_MAX kept whole; longer cut to
 *   QL_MESSAGE_MAX ending "...[cut]";
 * - ql_logf formats (stack and heap paths); below the queue's threshold
 *   nothing is formatted (a %n is never written), nothing queued, QL_OK;
 *   at it, a %n is refused (QL_ERR_INVALID): test_deferred has the rest;
 * - any int32 level passes the default threshold; respect_handler_level
 *   on built-in records without a record_level hook;
 * - ql_level_name;
 * - records taken with ql_queue_get / get_nowait / get_timeout, freed with
 *   ql_record_free (run under valgrind for leaks); a queue freed with
 *   built-in records on it frees them.
 *
 * ql_logf's format is checked by the compiler (QL_PRINTF_LIKE): a call
 * such as ql_logf(q, 20, NULL, "%d", "text") does not build with -Werror.
 * That is not tested here (it would need a build expected to fail).
 */
#include "ql_test.h"

#include <wchar.h>


/* ------------------------------------------------------------ fields */

typedef struct {
    const ql_queue *q;
    uint32_t tid;
    int64_t before, after;
    ql_status st;
} producer_arg;

static int user_a, user_b;

static void *producer_main(void *p) {
    producer_arg *a = (producer_arg *)p;
    a->tid = qlt_gettid();
    a->before = qlt_realtime_ns();
    a->st = ql_log_user(a->q, QL_LEVEL_ERROR, "app.db", "from a thread", 13, &user_a);
    a->after = qlt_realtime_ns();
    return NULL;
}

static void fields(void) {
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    ql_listener *l = qlt_start_sink(q, &s);

    /* from another thread */
    producer_arg a;
    memset(&a, 0, sizeof a);
    a.q = q;
    pthread_t t;
    QLT_PT(pthread_create(&t, NULL, producer_main, &a));
    QLT_PT(pthread_join(t, NULL));
    CHECK_OK(a.st);

    /* from this thread, with and without a user value */
    uint32_t me = qlt_gettid();
    CHECK(me != a.tid);
    int64_t before = qlt_realtime_ns();
    CHECK_OK(ql_log_user(q, QL_LEVEL_WARNING, "x", "second", 6, &user_b));
    int64_t mid = qlt_realtime_ns();
    CHECK_OK(ql_log(q, -7, "a.b.c", "third", 5));
    int64_t after = qlt_realtime_ns();
    CHECK_OK(ql_listener_flush(l, 10000));

    /* the records were handled and given back: these reuse them */
    int64_t before2 = qlt_realtime_ns();
    CHECK_OK(ql_log(q, QL_LEVEL_DEBUG, "reused", "fourth", 6));
    int64_t after2 = qlt_realtime_ns();
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(s.len, 4);

    qlt_rec r = qlt_sink_at(&s, 0);
    CHECK_EQ_INT(r.level, QL_LEVEL_ERROR);
    CHECK_EQ_INT(r.logger_len, 6);
    CHECK(strcmp(r.logger, "app.db") == 0);
    CHECK(qlt_rec_is(&r, "from a thread"));
    CHECK_EQ_PTR(r.user, &user_a);
    CHECK_EQ_INT(r.thread_id, a.tid);
    CHECK(r.timestamp_ns >= a.before && r.timestamp_ns <= a.after);

    r = qlt_sink_at(&s, 1);
    CHECK_EQ_INT(r.level, QL_LEVEL_WARNING);
    CHECK_EQ_INT(r.logger_len, 1);
    CHECK(strcmp(r.logger, "x") == 0);
    CHECK(qlt_rec_is(&r, "second"));
    CHECK_EQ_PTR(r.user, &user_b);
    CHECK_EQ_INT(r.thread_id, me);
    CHECK(r.timestamp_ns >= before && r.timestamp_ns <= mid);

    r = qlt_sink_at(&s, 2);
    CHECK_EQ_INT(r.level, -7);
    CHECK_EQ_INT(r.logger_len, 5);
    CHECK(strcmp(r.logger, "a.b.c") == 0);
    CHECK(qlt_rec_is(&r, "third"));
    CHECK_EQ_PTR(r.user, NULL);
    CHECK_EQ_INT(r.thread_id, me);
    CHECK(r.timestamp_ns >= mid && r.timestamp_ns <= after);

    r = qlt_sink_at(&s, 3);
    CHECK_EQ_INT(r.level, QL_LEVEL_DEBUG);
    CHECK(strcmp(r.logger, "reused") == 0);
    CHECK(qlt_rec_is(&r, "fourth"));
    CHECK_EQ_PTR(r.user, NULL);
    CHECK_EQ_INT(r.thread_id, me);
    CHECK(r.timestamp_ns >= before2 && r.timestamp_ns <= after2);
    CHECK_EQ_INT(atomic_load(&s.wrong_thread), 0);

    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("ql_log/ql_log_user: handlers get level, logger+len, message+len (NUL-terminated), user, "
         "thread_id == producer's gettid (2 threads), timestamp within the call's wall-clock "
         "window; a reused record carries its new values (user NULL, new thread)");
}

/* ------------------------------------------------------------ edges */

static void logger_and_message_edges(void) {
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));

    /* refused calls put nothing */
    CHECK_EQ_STATUS(ql_log(q, QL_LEVEL_INFO, "x", NULL, 1), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_log_user(q, QL_LEVEL_INFO, "x", NULL, 100, &user_a), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_log(NULL, QL_LEVEL_INFO, "x", "m", 1), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_log_user(NULL, QL_LEVEL_INFO, "x", "m", 1, &user_a), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_logf(NULL, QL_LEVEL_INFO, "x", "m %d", 1), QL_ERR_NULL);
    const char *volatile no_format = NULL;
    CHECK_EQ_STATUS(ql_logf(q, QL_LEVEL_INFO, "x", no_format), QL_ERR_NULL);
    CHECK_EQ_INT(qlt_queue_len(q), 0);

    qlt_sink s;
    qlt_sink_init(&s, 0);
    ql_listener *l = qlt_start_sink(q, &s);
    static const char nuls[] = {'a', '\0', 'b', '\0', '\0', 'c'};
    static const char not_terminated[5] = {'h', 'e', 'l', 'l', 'o'};
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, NULL, "one", 3));
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "", "two", 3));
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "nuls", nuls, sizeof nuls));
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "empty", NULL, 0));
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "empty2", "ignored", 0));
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "part", "hello world", 5));
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "raw", not_terminated, sizeof not_terminated));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(s.len, 7);

    qlt_rec r = qlt_sink_at(&s, 0);
    CHECK(strcmp(r.logger, "root") == 0 && r.logger_len == 4);
    CHECK(qlt_rec_is(&r, "one"));
    r = qlt_sink_at(&s, 1);
    CHECK(strcmp(r.logger, "root") == 0 && r.logger_len == 4);
    CHECK(qlt_rec_is(&r, "two"));
    r = qlt_sink_at(&s, 2);
    CHECK_EQ_INT(r.message_len, sizeof nuls);
    CHECK(memcmp(r.message, nuls, sizeof nuls) == 0);
    CHECK(r.message[sizeof nuls] == '\0');
    r = qlt_sink_at(&s, 3);
    CHECK(strcmp(r.logger, "empty") == 0);
    CHECK_EQ_INT(r.message_len, 0);
    CHECK(r.message[0] == '\0');
    r = qlt_sink_at(&s, 4);
    CHECK(strcmp(r.logger, "empty2") == 0);
    CHECK_EQ_INT(r.message_len, 0);
    r = qlt_sink_at(&s, 5);
    CHECK(qlt_rec_is(&r, "hello"));
    r = qlt_sink_at(&s, 6);
    CHECK(qlt_rec_is(&r, "hello"));

    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("NULL and \"\" logger -> \"root\" (len 4); embedded NULs kept (len 6); NULL message with "
         "len 0 -> empty NUL-terminated message; len bounds the copy; NULL message with len > 0, "
         "NULL queue (ql_log, ql_log_user, ql_logf), NULL format: QL_ERR_NULL, nothing queued");
}

/* ------------------------------------------------------------ lengths */

static void fill_pattern(char *buf, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) buf[i] = (char)((i * 131u + seed * 7u + 1u) % 251u + 1u);
}

static void long_messages(void) {
    static const size_t lens[] = {0, 1, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 255, 256,
                                  5000, 70000};
    static const char *const loggers[] = {NULL, "a", "app.component.sub"};
    enum { NL = sizeof lens / sizeof lens[0], NG = sizeof loggers / sizeof loggers[0] };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    ql_listener *l = qlt_start_sink(q, &s);
    char *buf = (char *)malloc(70000);
    CHECK(buf != NULL);
    /* twice: the second round reuses records made by the first */
    for (int round = 0; round < 2; round++) {
        for (size_t g = 0; g < NG; g++) {
            for (size_t i = 0; i < NL; i++) {
                fill_pattern(buf, lens[i], (unsigned)(g * 100 + i));
                CHECK_OK(ql_log(q, QL_LEVEL_INFO, loggers[g], buf, lens[i]));
            }
        }
        CHECK_OK(ql_listener_flush(l, 10000));
    }
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(s.len, 2 * NG * NL);
    size_t k = 0;
    for (int round = 0; round < 2; round++) {
        for (size_t g = 0; g < NG; g++) {
            for (size_t i = 0; i < NL; i++, k++) {
                qlt_rec r = qlt_sink_at(&s, k);
                const char *want_logger = loggers[g] ? loggers[g] : "root";
                if (strcmp(r.logger, want_logger) != 0)
                    QLT_FAIL("record %zu: logger \"%s\", want \"%s\"", k, r.logger, want_logger);
                fill_pattern(buf, lens[i], (unsigned)(g * 100 + i));
                if (r.message_len != lens[i] || memcmp(r.message, buf, lens[i]) != 0)
                    QLT_FAIL("logger \"%s\", %zu-byte message: got %zu bytes%s", want_logger,
                             lens[i], r.message_len,
                             r.message_len == lens[i] ? " with different content" : "");
            }
        }
    }
    free(buf);

    /* QL_MESSAGE_MAX: whole; one more: cut; +100: cut */
    size_t big = (size_t)QL_MESSAGE_MAX + 100;
    buf = (char *)malloc(big);
    CHECK(buf != NULL);
    fill_pattern(buf, big, 9);
    qlt_sink s2;
    qlt_sink_init(&s2, 1);
    ql_listener *l2 = qlt_start_sink(q, &s2);
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "big", buf, QL_MESSAGE_MAX));
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "big", buf, (size_t)QL_MESSAGE_MAX + 1));
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "big", buf, big));
    CHECK_OK(ql_stop(l2));
    CHECK_EQ_INT(s2.len, 3);
    qlt_rec r = qlt_sink_at(&s2, 0);
    CHECK_EQ_INT(r.message_len, QL_MESSAGE_MAX);
    CHECK(memcmp(r.message, buf, QL_MESSAGE_MAX) == 0);
    for (size_t i = 1; i < 3; i++) {
        r = qlt_sink_at(&s2, i);
        CHECK_EQ_INT(r.message_len, QL_MESSAGE_MAX);
        CHECK(memcmp(r.message, buf, QL_MESSAGE_MAX - 8) == 0);
        CHECK(memcmp(r.message + QL_MESSAGE_MAX - 8, "...[cut]", 8) == 0);
        CHECK(r.message[QL_MESSAGE_MAX] == '\0');
    }
    free(buf);
    CHECK_OK(ql_listener_free(l));
    CHECK_OK(ql_listener_free(l2));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    qlt_sink_fini(&s2);
    PASS("messages of 0..98 bytes (around the %d-byte inline limit, 3 loggers), 255, 256, 5000 "
         "and 70000 bytes kept byte for byte, also in reused records; QL_MESSAGE_MAX kept whole; "
         "QL_MESSAGE_MAX+1 and +100 arrive as QL_MESSAGE_MAX bytes: the prefix, then \"...[cut]\"",
         QL_RECORD_INLINE_TEXT);
}

/* ------------------------------------------------------------ ql_logf */

static void logf_formats(void) {
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    ql_listener *l = qlt_start_sink(q, &s);
    char big[1001], at_stack[QL_LOGF_STACK], over_stack[QL_LOGF_STACK + 1];
    memset(big, 'q', 1000);
    big[1000] = '\0';
    big[0] = 'B';
    big[999] = 'E';
    memset(at_stack, 's', sizeof at_stack - 1);
    at_stack[sizeof at_stack - 1] = '\0';
    memset(over_stack, 't', sizeof over_stack - 1);
    over_stack[sizeof over_stack - 1] = '\0';
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "fmt", "hello %d %s", 42, "world"));
    CHECK_OK(ql_logf(q, QL_LEVEL_ERROR, NULL, "%s", big));
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "fmt", "%s", at_stack));   /* 255: on the stack */
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "fmt", "%s", over_stack)); /* 256: on the heap */
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "fmt", "%5.2f|%-3s|%x|%%", 3.14159, "a", 255u));
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "fmt", "%s", ""));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(s.len, 6);
    qlt_rec r = qlt_sink_at(&s, 0);
    CHECK(qlt_rec_is(&r, "hello 42 world"));
    CHECK(strcmp(r.logger, "fmt") == 0);
    CHECK_EQ_INT(r.level, QL_LEVEL_INFO);
    CHECK_EQ_INT(r.thread_id, qlt_gettid());
    r = qlt_sink_at(&s, 1);
    CHECK(qlt_rec_is(&r, big));
    CHECK(strcmp(r.logger, "root") == 0);
    CHECK_EQ_INT(r.level, QL_LEVEL_ERROR);
    r = qlt_sink_at(&s, 2);
    CHECK_EQ_INT(r.message_len, QL_LOGF_STACK - 1);
    CHECK(qlt_rec_is(&r, at_stack));
    r = qlt_sink_at(&s, 3);
    CHECK_EQ_INT(r.message_len, QL_LOGF_STACK);
    CHECK(qlt_rec_is(&r, over_stack));
    r = qlt_sink_at(&s, 4);
    CHECK(qlt_rec_is(&r, " 3.14|a  |ff|%"));
    r = qlt_sink_at(&s, 5);
    CHECK_EQ_INT(r.message_len, 0);

    /* a format vsnprintf cannot convert (a wide character outside the C
     * locale's charset): QL_ERR_INVALID, nothing queued */
    static const wchar_t wide[] = {(wchar_t)0x263A, 0};
    size_t len_before = qlt_queue_len(q);
    CHECK_EQ_STATUS(ql_logf(q, QL_LEVEL_INFO, "fmt", "%ls", wide), QL_ERR_INVALID);
    CHECK_EQ_INT(qlt_queue_len(q), len_before);

    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("ql_logf: \"hello %%d %%s\" -> \"hello 42 world\"; a 1000-char %%s kept whole; 255 "
         "(stack) and 256 (heap) chars whole; flags/width/precision; a failing conversion "
         "QL_ERR_INVALID, nothing queued");
}

/* ------------------------------------------------------------ threshold */

static void threshold(void) {
    ql_queue_options o = ql_queue_options_default();
    CHECK_EQ_INT(o.level, QL_LEVEL_ALL);
    o.level = QL_LEVEL_WARNING;
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new_with_options(&o, &q));
    CHECK(!ql_queue_enabled(q, QL_LEVEL_INFO));
    CHECK(!ql_queue_enabled(q, QL_LEVEL_WARNING - 1));
    CHECK(!ql_queue_enabled(q, INT32_MIN));
    CHECK(ql_queue_enabled(q, QL_LEVEL_WARNING));
    CHECK(ql_queue_enabled(q, INT32_MAX));
    CHECK(!ql_queue_enabled(NULL, QL_LEVEL_CRITICAL));

    /* below: QL_OK, nothing queued, nothing formatted (%n never written) */
    int written = -1;
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "x", "below", 5));
    CHECK_OK(ql_log_user(q, QL_LEVEL_DEBUG, "x", "below", 5, &user_a));
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "x", "abc%n", &written));
    CHECK_OK(ql_logf(q, INT32_MIN, "x", "%s", "below"));
    CHECK_EQ_INT(written, -1);
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    /* at the threshold: queued, formatted; a %n is refused there (the
     * message is formatted later, off the calling thread), not written */
    CHECK_EQ_STATUS(ql_logf(q, QL_LEVEL_WARNING, "x", "abc%n", &written), QL_ERR_INVALID);
    CHECK_EQ_INT(written, -1);
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    CHECK_OK(ql_logf(q, QL_LEVEL_WARNING, "x", "ab%c", 'c'));
    CHECK_EQ_INT(qlt_queue_len(q), 1);

    /* set_level: takes effect for the next calls */
    CHECK_OK(ql_queue_set_level(q, QL_LEVEL_ERROR));
    CHECK(!ql_queue_enabled(q, QL_LEVEL_WARNING));
    CHECK_OK(ql_log(q, QL_LEVEL_WARNING, "x", "below", 5));
    CHECK_EQ_INT(qlt_queue_len(q), 1);
    CHECK_OK(ql_log(q, QL_LEVEL_ERROR, "x", "error", 5));
    CHECK_EQ_INT(qlt_queue_len(q), 2);
    CHECK_OK(ql_queue_set_level(q, QL_LEVEL_ALL));
    CHECK(ql_queue_enabled(q, INT32_MIN));
    CHECK_OK(ql_log(q, INT32_MIN, "x", "lowest", 6));
    CHECK_EQ_INT(qlt_queue_len(q), 3);
    CHECK_EQ_STATUS(ql_queue_set_level(NULL, 0), QL_ERR_NULL);

    /* handled: only what passed; skipped records are not drops */
    CHECK_OK(ql_queue_set_level(q, QL_LEVEL_CRITICAL));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    ql_listener *l = qlt_start_sink(q, &s);
    for (int i = 0; i < 100; i++) CHECK_OK(ql_logf(q, QL_LEVEL_ERROR, "x", "skipped %d", i));
    CHECK_OK(ql_log(q, QL_LEVEL_CRITICAL, "x", "last", 4));
    CHECK_OK(ql_stop(l));
    static const char *const want[] = {"abc", "error", "lowest", "last"};
    qlt_sink_expect(&s, want, 4);
    ql_stats st = qlt_stats(l);
    CHECK_EQ_INT(st.handled, 4);
    CHECK_EQ_INT(st.dropped, 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("threshold (options.level, ql_queue_set_level): below it ql_log/ql_log_user/ql_logf return "
         "QL_OK, queue nothing, format nothing (%%n unwritten), count no drop; "
         "ql_queue_enabled agrees (false for NULL); QL_LEVEL_ALL passes INT32_MIN");
}

/* ------------------------------------------------------------ levels */

static void any_level(void) {
    static const int32_t levels[] = {INT32_MIN, -100, -1, 0, 1, 25, 10, 20, 30, 40, 50, 51,
                                     INT32_MAX};
    enum { N = sizeof levels / sizeof levels[0] };
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(0, &q));

    /* default threshold: all pass */
    qlt_sink s;
    qlt_sink_init(&s, 0);
    ql_listener *l = qlt_start_sink(q, &s);
    for (int i = 0; i < N; i++) CHECK_OK(ql_log(q, levels[i], "lv", "m", 1));
    CHECK_OK(ql_stop(l));
    CHECK_EQ_INT(s.len, N);
    for (int i = 0; i < N; i++) CHECK_EQ_INT(qlt_sink_at(&s, (size_t)i).level, levels[i]);
    CHECK_OK(ql_listener_free(l));
    qlt_sink_fini(&s);

    /* respect_handler_level, no record_level hook: the record's level */
    static const int32_t hlevels[] = {0, 20, 40, -10};
    enum { H = sizeof hlevels / sizeof hlevels[0] };
    qlt_sink sinks[H];
    ql_handler hs[H];
    for (int h = 0; h < H; h++) {
        qlt_sink_init(&sinks[h], h);
        hs[h] = qlt_sink_handler(&sinks[h], hlevels[h]);
    }
    CHECK_OK(ql_listener_new_with_queue(q, hs, H, NULL, true, &l));
    CHECK_OK(ql_start(l));
    for (int i = 0; i < N; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "%d", (int)levels[i]);
        CHECK_OK(ql_log(q, levels[i], "lv", msg, (size_t)n));
    }
    CHECK_OK(ql_stop(l));
    for (int h = 0; h < H; h++) {
        size_t k = 0;
        for (int i = 0; i < N; i++) {
            bool due = hlevels[h] == 0 || levels[i] >= hlevels[h];
            if (!due) continue;
            if (k >= sinks[h].len)
                QLT_FAIL("handler at level %d did not get the record at level %d",
                         (int)hlevels[h], (int)levels[i]);
            qlt_rec r = qlt_sink_at(&sinks[h], k++);
            if (r.level != levels[i])
                QLT_FAIL("handler at level %d: record %zu has level %d, want %d", (int)hlevels[h],
                         k - 1, (int)r.level, (int)levels[i]);
        }
        if (k != sinks[h].len)
            QLT_FAIL("handler at level %d got %zu records, is due %zu", (int)hlevels[h],
                     sinks[h].len, k);
    }
    CHECK_EQ_INT(sinks[0].len, N);
    CHECK_EQ_INT(sinks[1].len, 7);  /* 25 20 30 40 50 51 MAX */
    CHECK_EQ_INT(sinks[2].len, 4);  /* 40 50 51 MAX */
    CHECK_EQ_INT(sinks[3].len, 11); /* all but INT32_MIN and -100 */
    CHECK_OK(ql_listener_free(l));
    for (int h = 0; h < H; h++) qlt_sink_fini(&sinks[h]);
    ql_queue_free(q);
    PASS("levels INT32_MIN, -100, -1, 0, 1, 25, ..., INT32_MAX pass the default threshold "
         "unchanged; respect_handler_level without a record_level hook filters built-in records "
         "by their level (handlers at 0, 20, 40, -10 got exactly their due, in order)");
}

/* ------------------------------------------------------------ names */

static void level_names(void) {
    static const struct {
        int32_t level;
        const char *name;
    } known[] = {{0, "NOTSET"}, {10, "DEBUG"},  {20, "INFO"},
                 {30, "WARNING"}, {40, "ERROR"}, {50, "CRITICAL"}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        const char *got = ql_level_name(known[i].level);
        if (got == NULL || strcmp(got, known[i].name) != 0)
            QLT_FAIL("ql_level_name(%d) = %s, want %s", (int)known[i].level, got ? got : "NULL",
                     known[i].name);
    }
    static const int32_t unknown[] = {25, -1, 5, 11, 60, 100, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        if (ql_level_name(unknown[i]) != NULL)
            QLT_FAIL("ql_level_name(%d) = %s, want NULL", (int)unknown[i],
                     ql_level_name(unknown[i]));
    }
    CHECK(ql_level_name(QL_LEVEL_INFO) == ql_level_name(QL_LEVEL_INFO)); /* static */
    PASS("ql_level_name: 0..50 -> NOTSET, DEBUG, INFO, WARNING, ERROR, CRITICAL; NULL for 25, -1, "
         "5, 11, 60, 100, INT32_MIN, INT32_MAX");
}

/* ------------------------------------------------------------ get */

static void get_built_in(void) {
    ql_queue *q = NULL;
    CHECK_OK(ql_queue_new(16, &q));
    char big[5000];
    fill_pattern(big, sizeof big, 3);
    int64_t t0 = qlt_realtime_ns();
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "g", "short", 5));
    CHECK_OK(ql_log_user(q, QL_LEVEL_ERROR, NULL, big, sizeof big, &user_a));
    CHECK_OK(ql_queue_put(q, QLT_REC(77))); /* a program pointer in between */
    CHECK_OK(ql_logf(q, -3, "g.f", "n=%d", 12));
    CHECK_OK(ql_log(q, QL_LEVEL_DEBUG, "", NULL, 0));
    int64_t t1 = qlt_realtime_ns();
    CHECK_EQ_INT(qlt_queue_len(q), 5);

    void *p = NULL;
    CHECK_OK(ql_queue_get(q, &p));
    ql_record *r = (ql_record *)p;
    CHECK(r != NULL);
    CHECK_EQ_INT(r->level, QL_LEVEL_INFO);
    CHECK(strcmp(r->logger, "g") == 0 && r->logger_len == 1);
    CHECK(r->message_len == 5 && memcmp(r->message, "short", 6) == 0);
    CHECK_EQ_PTR(r->user, NULL);
    CHECK_EQ_INT(r->thread_id, qlt_gettid());
    CHECK(r->timestamp_ns >= t0 && r->timestamp_ns <= t1);
    ql_record_free(r);

    CHECK_OK(ql_queue_get_nowait(q, &p));
    r = (ql_record *)p;
    CHECK_EQ_INT(r->level, QL_LEVEL_ERROR);
    CHECK(strcmp(r->logger, "root") == 0 && r->logger_len == 4);
    CHECK(r->message_len == sizeof big && memcmp(r->message, big, sizeof big) == 0);
    CHECK(r->message[sizeof big] == '\0');
    CHECK_EQ_PTR(r->user, &user_a);
    ql_record_free(r);

    CHECK_OK(ql_queue_get_timeout(q, 1000, &p));
    CHECK_EQ_PTR(p, QLT_REC(77));

    CHECK_OK(ql_queue_get_timeout(q, 1000, &p));
    r = (ql_record *)p;
    CHECK_EQ_INT(r->level, -3);
    CHECK(strcmp(r->logger, "g.f") == 0);
    CHECK(r->message_len == 4 && strcmp(r->message, "n=12") == 0);
    ql_record_free(r);

    CHECK_OK(ql_queue_get_nowait(q, &p));
    r = (ql_record *)p;
    CHECK(strcmp(r->logger, "root") == 0);
    CHECK(r->message_len == 0 && r->message[0] == '\0');
    ql_record_free(r);
    ql_record_free(NULL);

    p = QLT_REC(5);
    CHECK_EQ_STATUS(ql_queue_get_nowait(q, &p), QL_ERR_EMPTY);
    CHECK_EQ_PTR(p, QLT_REC(5));

    /* records still queued when the queue goes are freed with it
     * (valgrind --leak-check=full shows a leak otherwise) */
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "left", "behind", 6));
    CHECK_OK(ql_log(q, QL_LEVEL_INFO, "left", big, sizeof big));
    ql_queue_free(q);
    PASS("ql_queue_get / get_nowait / get_timeout hand out built-in records as ql_record * with "
         "their level, logger, message (5 and 5000 bytes, empty), user, thread_id, timestamp, in "
         "FIFO order with a program pointer; ql_record_free frees them (and NULL)");
}

int main(void) {
    qlt_begin("test_records");
    QLT_RUN(fields);
    QLT_RUN(logger_and_message_edges);
    QLT_RUN(long_messages);
    QLT_RUN(logf_formats);
    QLT_RUN(threshold);
    QLT_RUN(any_level);
    QLT_RUN(level_names);
    QLT_RUN(get_built_in);
    return qlt_end();
}
