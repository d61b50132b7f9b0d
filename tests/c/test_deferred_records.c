/*
 * test_deferred_records: a deferred record, once its message is formatted
 * as it leaves the queue, is whole: logger, message, file, function, line
 * and every field (call and context, keys and values) as given, for
 * messages that take the record's text just under, at and over the inline
 * limit, for a message of QL_MESSAGE_MAX bytes and over, with a NUL made by
 * %c, with 32 arguments (deferred) and 33 (eager), taken by the listener
 * and by ql_queue_get on another thread; threads logging more distinct
 * formats (each in a buffer of its own) than the table of formats holds
 * (the rest formatted eagerly, counted, every record right); and by ql_queue_get_nowait in an
 * atexit handler of a main thread that took deferred records before (its
 * thread-local storage is gone by then: glibc runs the thread's TLS
 * destructors before the atexit handlers).
 */
#include "ql_test.h"

#include <inttypes.h>
#include <limits.h>

/* What the next record must be (the handler checks it). */
static char want_msg[QL_MESSAGE_MAX + 64];
static size_t want_len;
static atomic_long bad;

static void check_record(const ql_record *r, const char *what) {
    bool ok = true;
    if (r->message_len != want_len || memcmp(r->message, want_msg, want_len) != 0 ||
        r->message[r->message_len] != '\0') {
        fprintf(stderr, "%s: message of %zu bytes, want %zu\n", what, r->message_len, want_len);
        ok = false;
    }
    if (r->logger_len != 6 || strcmp(r->logger, "attack") != 0) ok = false;
    if (strcmp(r->file, "the_file.c") != 0 || r->file_len != 10) ok = false;
    if (strcmp(r->func, "the_func") != 0 || r->func_len != 8 || r->line != 77) ok = false;
    if (r->field_count != 4) {
        ok = false;
    } else {
        const ql_field *f = r->fields;
        ok = ok && strcmp(f[0].key, "k1") == 0 && f[0].kind == QL_FIELD_STR &&
             f[0].value.s.len == 5 && memcmp(f[0].value.s.ptr, "value", 6) == 0;
        ok = ok && strcmp(f[1].key, "k2") == 0 && f[1].kind == QL_FIELD_INT &&
             f[1].value.i == -42;
        ok = ok && strcmp(f[2].key, "ctx_s") == 0 && f[2].kind == QL_FIELD_STR &&
             f[2].value.s.len == 3 && memcmp(f[2].value.s.ptr, "cvx", 4) == 0;
        ok = ok && strcmp(f[3].key, "ctx_i") == 0 && f[3].kind == QL_FIELD_INT &&
             f[3].value.i == 7;
    }
    if (!ok) {
        fprintf(stderr, "%s: record wrong (message_len %zu, fields %zu, file '%s' func '%s')\n",
                what, r->message_len, r->field_count, r->file, r->func);
        atomic_fetch_add(&bad, 1);
    }
}

static void on_record(qlt_sink *s, const ql_record *r) {
    (void)s;
    check_record(r, "handler");
}

static ql_status log_it(ql_queue *q, const char *format, ...) QL_PRINTF_LIKE(2, 3);
static ql_status log_it(ql_queue *q, const char *format, ...) {
    ql_field fields[2] = {ql_field_str("k1", "value"), ql_field_int("k2", -42)};
    va_list args;
    va_start(args, format);
    ql_source src = {"the_file.c", 77, "the_func"};
    ql_status st = ql_vlogf_src(q, QL_LEVEL_INFO, "attack", &src, fields, 2, format, args);
    va_end(args);
    return st;
}

/* Sets what the next record must be: snprintf's output of the call. */
#define EXPECT(...)                                                               \
    do {                                                                          \
        int n_ = snprintf(want_msg, sizeof want_msg, __VA_ARGS__);                \
        CHECK(n_ >= 0 && (size_t)n_ < sizeof want_msg);                           \
        want_len = (size_t)n_;                                                    \
    } while (0)

static char big[QL_MESSAGE_MAX + 32];

/* Logs one record and waits for the handler to have checked it. */
static void one(qlt_sink *s, long *count, const char *what, ql_status st) {
    CHECK_OK(st);
    ++*count;
    qlt_sink_wait(s, *count);
    if (atomic_load(&bad) != 0) QLT_FAIL("%s: the handler saw a wrong record", what);
}

static void through_the_listener(void) {
    ql_queue *q;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    s.on_record = on_record;
    ql_listener *l = qlt_start_sink(q, &s);
    CHECK_OK(ql_context_set(ql_field_str("ctx_s", "cvx")));
    CHECK_OK(ql_context_set(ql_field_int("ctx_i", 7)));
    long count = 0;
    memset(big, 'x', sizeof big - 1);
    /* Every message length from 0 to 400: the record's text crosses the
     * 256-byte inline limit somewhere in there, with and without %. */
    for (int len = 0; len <= 400; len++) {
        EXPECT("%.*s", len, big);
        one(&s, &count, "%.*s", log_it(q, "%.*s", len, big));
        EXPECT("%*d|", len, 5);
        one(&s, &count, "%*d", log_it(q, "%*d|", len, 5));
    }
    /* A NUL made by %c counts in message_len. */
    EXPECT("a%cb%c", 0, 0);
    CHECK_EQ_INT(want_len, 4);
    one(&s, &count, "%c of 0", log_it(q, "a%cb%c", 0, 0));
    /* QL_MESSAGE_MAX bytes exactly: whole. One more: cut, ending in the marker. */
    EXPECT("%.*s", QL_MESSAGE_MAX, big);
    one(&s, &count, "QL_MESSAGE_MAX", log_it(q, "%.*s", QL_MESSAGE_MAX, big));
    EXPECT("%.*s", QL_MESSAGE_MAX - 8, big);
    memcpy(want_msg + QL_MESSAGE_MAX - 8, "...[cut]", 8);
    want_len = QL_MESSAGE_MAX;
    one(&s, &count, "QL_MESSAGE_MAX + 1", log_it(q, "%.*s!", QL_MESSAGE_MAX, big));
    one(&s, &count, "QL_MESSAGE_MAX + 1 %s", log_it(q, "%s", big));
    /* 32 arguments: deferred; 33: eager; both right. */
    uint64_t eager = ql_printf_eager_count();
#define A8 "%d%s%c%ld%d%s%c%ld"
#define V8 1, "s", 'c', 2L, 3, "t", 'd', 4L
    EXPECT(A8 A8 A8 A8, V8, V8, V8, V8);
    one(&s, &count, "32 arguments", log_it(q, A8 A8 A8 A8, V8, V8, V8, V8));
    CHECK_EQ_INT(ql_printf_eager_count(), eager);
    EXPECT(A8 A8 A8 A8 "%d", V8, V8, V8, V8, 9);
    one(&s, &count, "33 arguments", log_it(q, A8 A8 A8 A8 "%d", V8, V8, V8, V8, 9));
    CHECK_EQ_INT(ql_printf_eager_count(), eager + 1);
    ql_context_clear();
    CHECK_OK(ql_listener_free(l));
    qlt_sink_fini(&s);
    ql_queue_free(q);
}

typedef struct {
    ql_queue *q;
    long n;
} getter_arg;

static void *getter(void *p) {
    getter_arg *g = (getter_arg *)p;
    for (long i = 0; i < g->n; i++) {
        void *rec;
        CHECK_OK(ql_queue_get(g->q, &rec));
        check_record((const ql_record *)rec, "ql_queue_get");
        ql_record_free((ql_record *)rec);
    }
    return NULL;
}

/* ql_queue_get on a thread that is no listener formats the message too. */
static void through_queue_get(void) {
    ql_queue *q;
    CHECK_OK(ql_queue_new(0, &q));
    CHECK_OK(ql_context_set(ql_field_str("ctx_s", "cvx")));
    CHECK_OK(ql_context_set(ql_field_int("ctx_i", 7)));
    for (int len = 200; len <= 300; len++) {
        EXPECT("%.*s", len, big);
        CHECK_OK(log_it(q, "%.*s", len, big));
        getter_arg g = {q, 1};
        pthread_t t;
        QLT_PT(pthread_create(&t, NULL, getter, &g));
        QLT_PT(pthread_join(t, NULL));
        if (atomic_load(&bad) != 0) QLT_FAIL("ql_queue_get: wrong record at %d", len);
    }
    ql_context_clear();
    ql_queue_free(q);
}

#define FORMAT_THREADS 4
#define FORMATS_EACH 2000

static atomic_long wrong_dynamic;
static char *dynamic_formats[FORMAT_THREADS][FORMATS_EACH];

static void on_dynamic(qlt_sink *s, const ql_record *r) {
    (void)s;
    int t, i, v;
    char word[8] = "";
    int n = -1;
    if (sscanf(r->message, "t%d i%d v=%d s=%7s%n", &t, &i, &v, word, &n) != 4 ||
        (size_t)n != r->message_len || v != i * 7 || strcmp(word, "str") != 0)
        atomic_fetch_add(&wrong_dynamic, 1);
}

static void *format_writer(void *p) {
    ql_queue *q = *(ql_queue **)((void **)p)[0];
    long t = (long)(intptr_t)((void **)p)[1];
    for (int i = 0; i < FORMATS_EACH; i++) {
        /* A format of its own, at an address of its own: all are kept
         * until the listener is freed, so no address is reused. */
        char *format = (char *)malloc(48);
        CHECK(format != NULL);
        dynamic_formats[t][i] = format;
        snprintf(format, 48, "t%ld i%d v=%%d s=%%s", t, i);
        CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "dyn", format, i * 7, "str"));
    }
    return NULL;
}

/* More distinct formats than the table holds, from several threads: the
 * ones past it are formatted eagerly and counted; no record is lost or
 * wrong. */
static void table_full(void) {
    ql_queue *q;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 1);
    s.copy = false;
    s.on_record = on_dynamic;
    ql_listener *l = qlt_start_sink(q, &s);
    atomic_init(&wrong_dynamic, 0);
    uint64_t eager = ql_printf_eager_count();
    pthread_t threads[FORMAT_THREADS];
    void *args[FORMAT_THREADS][2];
    for (long t = 0; t < FORMAT_THREADS; t++) {
        args[t][0] = &q;
        args[t][1] = (void *)(intptr_t)t;
        QLT_PT(pthread_create(&threads[t], NULL, format_writer, args[t]));
    }
    for (int t = 0; t < FORMAT_THREADS; t++) QLT_PT(pthread_join(threads[t], NULL));
    long total = FORMAT_THREADS * FORMATS_EACH;
    qlt_sink_wait(&s, total);
    CHECK_EQ_INT(qlt_sink_count(&s), total);
    CHECK_EQ_INT(atomic_load(&wrong_dynamic), 0);
    uint64_t counted = ql_printf_eager_count() - eager;
    /* The table holds 4096 formats; some slots hold earlier tests' ones. */
    if (counted < (uint64_t)(total - 4096) || counted > (uint64_t)total)
        QLT_FAIL("%" PRIu64 " of %ld calls counted eager", counted, total);
    CHECK_OK(ql_listener_free(l));
    qlt_sink_fini(&s);
    ql_queue_free(q);
    for (int t = 0; t < FORMAT_THREADS; t++)
        for (int i = 0; i < FORMATS_EACH; i++) free(dynamic_formats[t][i]);
}

static ql_queue *exit_queue;

/* Runs at exit, after the main thread's TLS destructors. */
static void drain_at_exit(void) {
    const char *want[] = {"second 2", "third (text)", "fourth 4.5"};
    for (size_t i = 0; i < 3; i++) {
        void *rec = NULL;
        ql_status st = ql_queue_get_nowait(exit_queue, &rec);
        if (st != QL_OK) {
            fprintf(stderr, "FAIL: at exit: record %zu: status %d\n", i, (int)st);
            _exit(1);
        }
        const ql_record *r = (const ql_record *)rec;
        if (r->message_len != strlen(want[i]) || strcmp(r->message, want[i]) != 0) {
            fprintf(stderr, "FAIL: at exit: record %zu is \"%s\", want \"%s\"\n", i, r->message,
                    want[i]);
            _exit(1);
        }
        ql_record_free((ql_record *)rec);
    }
    ql_queue_free(exit_queue);
    printf("at exit: 3 records taken and formatted\n");
}

/* The main thread takes a deferred record (its formatting scratch is made
 * then), logs more and leaves them for an atexit handler to take. */
static void queue_get_at_exit(void) {
    CHECK_OK(ql_queue_new(0, &exit_queue));
    CHECK(atexit(drain_at_exit) == 0);
    CHECK_OK(ql_logf(exit_queue, QL_LEVEL_INFO, "e", "first %d", 1));
    void *rec;
    CHECK_OK(ql_queue_get(exit_queue, &rec));
    CHECK(strcmp(((const ql_record *)rec)->message, "first 1") == 0);
    ql_record_free((ql_record *)rec);
    CHECK_OK(ql_logf(exit_queue, QL_LEVEL_INFO, "e", "second %d", 2));
    CHECK_OK(ql_log(exit_queue, QL_LEVEL_INFO, "e", "third (text)", 12));
    CHECK_OK(ql_logf(exit_queue, QL_LEVEL_INFO, "e", "fourth %.1f", 4.5));
}

int main(void) {
    qlt_begin("test_deferred_records");
    atomic_init(&bad, 0);
    through_the_listener();
    through_queue_get();
    table_full();
    queue_get_at_exit();
    return qlt_end();
}
