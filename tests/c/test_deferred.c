/*
 * test_deferred: ql_logf and the call-site macros format later, on the
 * listener's thread, exactly as vsnprintf would have at the call.
 *
 * - a table of formats and arguments covering every conversion the
 *   deferred path supports (d i u o x X c s p e E f F g G a A %), flags,
 *   width and precision (with *), length modifiers (hh h l ll j z t):
 *   each message the handler sees equals snprintf's at the call, and none
 *   of them was formatted eagerly (ql_printf_eager_count unchanged);
 * - %s copies the string at the call: changed afterwards, the record keeps
 *   the text it had; a NULL %s;
 * - the message is formatted when the record leaves the queue: records
 *   taken with ql_queue_get carry it too, with their fields and source;
 * - %n is refused (QL_ERR_INVALID, nothing queued, nothing written);
 * - formats the deferred path does not support (positional arguments,
 *   %ls, the ' flag, long double) are formatted eagerly, counted, with the
 *   same output;
 * - a width, or a number's precision, past QL_MESSAGE_MAX is formatted
 *   eagerly (counted), as glibc does it, and cut like any long message;
 * - a format that is not a literal: one buffer, written with two formats
 *   in turn, logs each correctly (the library compares the bytes, not only
 *   the address).
 */
#include "ql_test.h"

#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <wchar.h>

#define MAX_CASES 256

static char *expected[MAX_CASES];
static size_t n_expected;

/* Logs fmt/args through ql_logf and keeps what snprintf makes of them. */
#define CASE(q, ...)                                                               \
    do {                                                                           \
        char buf_[4096];                                                           \
        int n_ = snprintf(buf_, sizeof buf_, __VA_ARGS__);                         \
        CHECK(n_ >= 0 && (size_t)n_ < sizeof buf_);                                \
        CHECK(n_expected < MAX_CASES);                                             \
        expected[n_expected++] = strdup(buf_);                                     \
        CHECK_OK(ql_logf((q), QL_LEVEL_INFO, "t", __VA_ARGS__));                   \
    } while (0)

static void check_all(qlt_sink *s, size_t first, const char *what) {
    qlt_sink_wait(s, (long)n_expected);
    for (size_t i = first; i < n_expected; i++) {
        qlt_rec r = qlt_sink_at(s, i);
        if (!qlt_rec_is(&r, expected[i]))
            QLT_FAIL("%s: case %zu: got \"%s\", want \"%s\"", what, i, r.message, expected[i]);
    }
}

static void every_conversion(void) {
    ql_queue *q;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    ql_listener *l = qlt_start_sink(q, &s);
    uint64_t eager_before = ql_printf_eager_count();
    n_expected = 0;
    int w = 7, p = 3;
    /* integers */
    CASE(q, "hello %d", 42);
    CASE(q, "%d %i %d %d", 0, -1, INT_MAX, INT_MIN);
    CASE(q, "%u %o %x %X", 4000000000u, 0777u, 0xbeefu, 0xbeefu);
    CASE(q, "[%5d] [%-5d] [%05d] [%+d] [% d]", 42, 42, 42, 42, 42);
    CASE(q, "[%.0d] [%.3d] [%8.3d] [%-8.3d]", 0, 7, -7, 7);
    /* Flags C says are ignored in these combinations (gcc warns of it). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat"
    CASE(q, "[%+ d] [%08.3d] [%-05d]", 42, 7, 7);
#pragma GCC diagnostic pop
    CASE(q, "[%#o] [%#x] [%#X] [%#o] [%#x]", 8u, 255u, 255u, 0u, 0u);
    CASE(q, "%hhd %hhu %hd %hu", 300, 300, 70000, 70000);
    CASE(q, "%ld %lu %lld %llu", LONG_MIN, ULONG_MAX, LLONG_MIN, ULLONG_MAX);
    CASE(q, "%jd %zu %td %zx", (intmax_t)-5, (size_t)SIZE_MAX, (ptrdiff_t)-9, (size_t)4096);
    CASE(q, "[%*d] [%-*d] [%.*d] [%*.*d]", w, 1, w, 2, p, 3, w, p, 4);
    CASE(q, "[%*d] [%.*d]", -w, 5, -p, 6);
    /* characters and strings */
    CASE(q, "[%c] [%3c] [%-3c] [%c]", 'a', 'b', 'c', 200);
    CASE(q, "[%s] [%10s] [%-10s] [%.2s] [%*.*s]", "abc", "abc", "abc", "abc", w, 2, "abcdef");
    /* glibc prints a NULL %s as "(null)" (or nothing, with a precision
     * under 6); gcc warns of the NULL. */
    const char *volatile null_text = NULL;
    CASE(q, "[%s] [%.3s] [%10s]", null_text, null_text, null_text);
    /* With a precision, C reads no further: the array needs no NUL. */
    const char unterminated[3] = {'a', 'b', 'c'};
    CASE(q, "[%.3s] [%.*s] [%.2s]", unterminated, 2, unterminated, unterminated);
    CASE(q, "utf-8 [%s] %% [%5s]", "h\xc3\xa9llo \xe2\x82\xac", "\xff\xfe");
    /* pointers */
    CASE(q, "[%p] [%p] [%20p] [%-20p]", (void *)NULL, (void *)&w, (void *)&w, (void *)&p);
    /* floating point */
    CASE(q, "%f %e %g %a", 1.5, 1.5, 1.5, 1.5);
    CASE(q, "%F %E %G %A", -2.25e-300, -2.25e-300, -2.25e-300, -2.25e-300);
    CASE(q, "[%.0f] [%.0f] [%.0f] [%.0f] [%.1f] [%.2f]", 0.5, 1.5, 2.5, -0.5, 0.25, 1.005);
    CASE(q, "[%.60f]", 0.1);
    CASE(q, "[%.20e] [%.17g] [%.0e] [%#.0e] [%#.0f] [%#g]", 1.0 / 3, 1.0 / 3, 12345.0, 5.0,
         5.0, 1.0);
    CASE(q, "[%f] [%f] [%f] [%e] [%g] [%a]", 1e308, 4.9e-324, -0.0, 0.0, 1e-5, 4.9e-324);
    CASE(q, "[%f] [%F] [%e] [%g] [%a] [%A]", 1.0 / 0.0, -1.0 / 0.0, 0.0 / 0.0, -(0.0 / 0.0),
         1.0 / 0.0, -(0.0 / 0.0));
    CASE(q, "[%10.3f] [%-10.3e] [%+010.2f] [% .3g] [%010a]", 3.14159, 3.14159, -3.14159,
         3.14159, 3.14159);
    CASE(q, "[%*.*f] [%.*g]", w, p, 2.71828, -1, 2.71828);
    CASE(q, "%g %g %g %g %g", 100000.0, 1000000.0, 1e-4, 1e-5, 123456789.0);
    CASE(q, "%.3a %.0a %#a %a", 1.0, 1.5, 2.0, 0.1);
    CASE(q, "no conversion at all");
    CASE(q, "%%d%% 100%%");
    CASE(q, "%d %s %f %p %c %lu %x", 1, "two", 3.0, (void *)4, '5', 6ul, 7u);
    check_all(&s, 0, "every conversion");
    CHECK_EQ_INT(ql_printf_eager_count(), eager_before);
    CHECK_EQ_INT(atomic_load(&s.wrong_thread), 0);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    for (size_t i = 0; i < n_expected; i++) free(expected[i]);
    PASS("every supported conversion, flag, width, precision and length formats as snprintf "
         "at the call (%zu calls), none eagerly", n_expected);
}

static void strings_are_copied_at_the_call(void) {
    ql_queue *q;
    CHECK_OK(ql_queue_new(0, &q));
    char buf[64];
    strcpy(buf, "before");
    uint64_t eager_before = ql_printf_eager_count();
    /* No listener yet: the record waits on the queue while buf changes. */
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", "name=%s n=%d", buf, 1));
    strcpy(buf, "AFTER!");
    ql_field f = ql_field_str("k", "v");
    CHECK_OK(QL_LOG_FIELDS(q, QL_LEVEL_WARNING, "m", &f, 1, "%s and %.1f", buf, 2.5));
    CHECK_EQ_INT(ql_printf_eager_count(), eager_before);
    void *got = NULL;
    CHECK_OK(ql_queue_get_nowait(q, &got));
    const ql_record *r = (const ql_record *)got;
    CHECK(r->message_len == strlen("name=before n=1") &&
          strcmp(r->message, "name=before n=1") == 0);
    ql_record_free((ql_record *)got);
    CHECK_OK(ql_queue_get_nowait(q, &got));
    r = (const ql_record *)got;
    if (strcmp(r->message, "AFTER! and 2.5") != 0) QLT_FAIL("got \"%s\"", r->message);
    CHECK_EQ_INT(r->level, QL_LEVEL_WARNING);
    CHECK_EQ_INT(r->field_count, 1);
    CHECK(strcmp(r->fields[0].key, "k") == 0);
    CHECK(r->file_len > 0 && strstr(r->file, "test_deferred.c") != NULL);
    CHECK(r->line > 0);
    CHECK(strcmp(r->func, "strings_are_copied_at_the_call") == 0);
    CHECK(r->logger_len == 1 && strcmp(r->logger, "m") == 0);
    ql_record_free((ql_record *)got);
    ql_queue_free(q);
    PASS("%%s is copied at the call; a record taken with ql_queue_get carries its formatted "
         "message, fields and source");
}

static void percent_n_is_refused(void) {
    ql_queue *q;
    CHECK_OK(ql_queue_new(0, &q));
    int written = -1;
    CHECK_EQ_STATUS(ql_logf(q, QL_LEVEL_INFO, "t", "abc%n", &written), QL_ERR_INVALID);
    CHECK_EQ_INT(written, -1);
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    ql_queue_free(q);
    PASS("%%n: QL_ERR_INVALID, nothing queued, nothing written");
}

static void unsupported_formats_are_eager_and_counted(void) {
    ql_queue *q;
    CHECK_OK(ql_queue_new(0, &q));
    uint64_t before = ql_printf_eager_count();
    char want[256];
    void *got;
    struct {
        const char *what;
        int n;
    } done[4];
    int k = 0;
    /* POSIX positional arguments (ISO C has none: gcc -Wpedantic warns). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat"
    snprintf(want, sizeof want, "%2$s %1$d", 7, "x");
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", "%2$s %1$d", 7, "x"));
#pragma GCC diagnostic pop
    CHECK_OK(ql_queue_get_nowait(q, &got));
    CHECK(strcmp(((const ql_record *)got)->message, want) == 0);
    ql_record_free((ql_record *)got);
    done[k].what = "positional";
    done[k++].n = 1;
    snprintf(want, sizeof want, "%ls|", L"wide");
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", "%ls|", L"wide"));
    CHECK_OK(ql_queue_get_nowait(q, &got));
    CHECK(strcmp(((const ql_record *)got)->message, want) == 0);
    ql_record_free((ql_record *)got);
    done[k].what = "%ls";
    done[k++].n = 1;
    snprintf(want, sizeof want, "%Lf", (long double)1.25);
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", "%Lf", (long double)1.25));
    CHECK_OK(ql_queue_get_nowait(q, &got));
    CHECK(strcmp(((const ql_record *)got)->message, want) == 0);
    ql_record_free((ql_record *)got);
    done[k].what = "%Lf";
    done[k++].n = 1;
    CHECK_EQ_INT(ql_printf_eager_count() - before, 3);
    (void)done;
    ql_queue_free(q);
    PASS("positional arguments, %%ls and long double are formatted eagerly, counted, with "
         "snprintf's output");
}

static void huge_fields_are_eager(void) {
    ql_queue *q;
    CHECK_OK(ql_queue_new(0, &q));
    uint64_t before = ql_printf_eager_count();
    void *got;
    /* Within QL_MESSAGE_MAX: deferred. */
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", "%*d|", 100, 5));
    CHECK_EQ_INT(ql_printf_eager_count(), before);
    CHECK_OK(ql_queue_get_nowait(q, &got));
    CHECK_EQ_INT(((const ql_record *)got)->message_len, 101);
    ql_record_free((ql_record *)got);
    /* Past it, from a `*` or written in the format: eager, counted, cut
     * like any message that long. */
    int wide = 2 * (int)QL_MESSAGE_MAX;
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", "%*d|", wide, 5));
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", "%.*f|", wide, 1.0));
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", "%3000000d|", 5));
    CHECK_EQ_INT(ql_printf_eager_count() - before, 3);
    for (int i = 0; i < 3; i++) {
        CHECK_OK(ql_queue_get_nowait(q, &got));
        const ql_record *r = (const ql_record *)got;
        CHECK_EQ_INT(r->message_len, QL_MESSAGE_MAX);
        CHECK(memcmp(r->message + r->message_len - 8, "...[cut]", 8) == 0);
        ql_record_free((ql_record *)got);
    }
    /* A %s precision only limits what is read: deferred, whatever it is. */
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", "%.*s|", wide, "abc"));
    CHECK_EQ_INT(ql_printf_eager_count() - before, 3);
    CHECK_OK(ql_queue_get_nowait(q, &got));
    CHECK(strcmp(((const ql_record *)got)->message, "abc|") == 0);
    ql_record_free((ql_record *)got);
    ql_queue_free(q);
    PASS("a width or a number's precision past QL_MESSAGE_MAX (from * or the format) is "
         "formatted eagerly, counted, and cut as any long message");
}

static void a_reused_format_buffer(void) {
    ql_queue *q;
    CHECK_OK(ql_queue_new(0, &q));
    char format[32];
    void *got;
    strcpy(format, "a=%d");
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", format, 1));
    strcpy(format, "b=%s");
    CHECK_OK(ql_logf(q, QL_LEVEL_INFO, "t", format, "two"));
    CHECK_OK(ql_queue_get_nowait(q, &got));
    CHECK(strcmp(((const ql_record *)got)->message, "a=1") == 0);
    ql_record_free((ql_record *)got);
    CHECK_OK(ql_queue_get_nowait(q, &got));
    CHECK(strcmp(((const ql_record *)got)->message, "b=two") == 0);
    ql_record_free((ql_record *)got);
    ql_queue_free(q);
    PASS("one buffer holding two formats in turn: each call is formatted with its own");
}

/* Four threads race through one call site's first call (the site's cache
 * is filled by whichever gets there; TSan checks the fill). */
typedef struct {
    ql_queue *q;
    int id;
} site_arg;

static void *site_thread(void *p) {
    site_arg *a = (site_arg *)p;
    for (int i = 0; i < 500; i++)
        CHECK_OK(QL_INFO(a->q, "site", "thread %d call %d of %s", a->id, i, "500"));
    return NULL;
}

static void call_sites_cache_literal_formats(void) {
    ql_queue *q;
    CHECK_OK(ql_queue_new(0, &q));
    qlt_sink s;
    qlt_sink_init(&s, 0);
    ql_listener *l = qlt_start_sink(q, &s);
    uint64_t eager_before = ql_printf_eager_count();
    pthread_t t[4];
    site_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].q = q;
        args[i].id = i;
        QLT_PT(pthread_create(&t[i], NULL, site_thread, &args[i]));
    }
    for (int i = 0; i < 4; i++) QLT_PT(pthread_join(t[i], NULL));
    /* A format that is not a literal, through a macro: never cached, so
     * one buffer holding two texts in turn is formatted right both times. */
    char format[32];
    strcpy(format, "a=%d");
    CHECK_OK(QL_INFO(q, "site", format, 1));
    strcpy(format, "b=%s");
    CHECK_OK(QL_INFO(q, "site", format, "two"));
    CHECK_OK(ql_listener_flush(l, 10000));
    CHECK_EQ_INT(qlt_sink_count(&s), 2002);
    long next[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < 2000; i++) {
        qlt_rec r = qlt_sink_at(&s, i);
        int id = -1, call = -1;
        if (sscanf(r.message, "thread %d call %d of 500", &id, &call) != 2 || id < 0 || id > 3)
            QLT_FAIL("record %zu: \"%s\"", i, r.message);
        char want[64];
        snprintf(want, sizeof want, "thread %d call %ld of 500", id, next[id]);
        if (!qlt_rec_is(&r, want)) QLT_FAIL("record %zu: \"%s\", want \"%s\"", i, r.message, want);
        next[id]++;
    }
    qlt_rec a = qlt_sink_at(&s, 2000), b = qlt_sink_at(&s, 2001);
    CHECK(qlt_rec_is(&a, "a=1") && qlt_rec_is(&b, "b=two"));
    CHECK_EQ_INT(ql_printf_eager_count(), eager_before);
    CHECK_OK(ql_listener_free(l));
    ql_queue_free(q);
    qlt_sink_fini(&s);
    PASS("call-site macros: 4 threads through one site (its cached format) log 2000 records, "
         "each right and in per-thread order; a non-literal format through a macro is looked "
         "up each call");
}

static void bad_input(void) {
    ql_queue *q;
    CHECK_OK(ql_queue_new(0, &q));
    const ql_printf *f = NULL;
    const uint8_t *kinds = NULL;
    size_t count = 99;
    CHECK_EQ_STATUS(ql_printf_find(NULL, &f, &kinds, &count), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_printf_find("%d", NULL, &kinds, &count), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_printf_find("%d", &f, NULL, &count), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_printf_find("%d", &f, &kinds, NULL), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_printf_find("%n", &f, &kinds, &count), QL_ERR_INVALID);
    CHECK_EQ_STATUS(ql_printf_find("%1$d", &f, &kinds, &count), QL_ERR_UNSUPPORTED);
    CHECK_OK(ql_printf_find("%d %s %f %p %ld", &f, &kinds, &count));
    CHECK_EQ_INT(count, 5);
    CHECK_EQ_INT(kinds[0], QL_ARG_INT);
    CHECK_EQ_INT(kinds[1], QL_ARG_STR);
    CHECK_EQ_INT(kinds[2], QL_ARG_DOUBLE);
    CHECK_EQ_INT(kinds[3], QL_ARG_PTR);
    CHECK_EQ_INT(kinds[4], QL_ARG_LONG);
    ql_arg args[5];
    memset(args, 0, sizeof args);
    CHECK_EQ_STATUS(ql_log_args(NULL, 20, "t", NULL, NULL, 0, f, args, 5), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_log_args(q, 20, "t", NULL, NULL, 0, NULL, args, 5), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_log_args(q, 20, "t", NULL, NULL, 0, f, NULL, 5), QL_ERR_NULL);
    CHECK_EQ_STATUS(ql_log_args(q, 20, "t", NULL, NULL, 0, f, args, 4), QL_ERR_INVALID);
    CHECK_EQ_STATUS(ql_log_args(q, 20, "t", NULL, NULL, 0, f, args, 6), QL_ERR_INVALID);
    CHECK_EQ_STATUS(ql_log_args(q, 20, "t", NULL, NULL, 1, f, args, 5), QL_ERR_NULL);
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    /* Below the threshold nothing is read, as for every ql_log call. */
    CHECK_OK(ql_queue_set_level(q, QL_LEVEL_ERROR));
    CHECK_OK(ql_log_args(q, 20, "t", NULL, NULL, 0, f, NULL, 5));
    CHECK_EQ_INT(qlt_queue_len(q), 0);
    CHECK_OK(ql_queue_set_level(q, QL_LEVEL_ALL));
    /* A NULL %s is "(null)", as glibc prints it. */
    args[4].bits = (uint64_t)-7;
    CHECK_OK(ql_log_args(q, 20, "t", NULL, NULL, 0, f, args, 5));
    void *got;
    CHECK_OK(ql_queue_get_nowait(q, &got));
    char want[128];
    snprintf(want, sizeof want, "%d %s %f %p %ld", 0, "(null)", 0.0, (void *)NULL, -7L);
    if (strcmp(((const ql_record *)got)->message, want) != 0)
        QLT_FAIL("got \"%s\", want \"%s\"", ((const ql_record *)got)->message, want);
    ql_record_free((ql_record *)got);
    ql_queue_free(q);
    PASS("ql_printf_find and ql_log_args: NULL pointers QL_ERR_NULL, a wrong count "
         "QL_ERR_INVALID, nothing queued; below the threshold nothing read");
}

int main(void) {
    qlt_begin("test_deferred");
    every_conversion();
    strings_are_copied_at_the_call();
    percent_n_is_refused();
    unsupported_formats_are_eager_and_counted();
    a_reused_format_buffer();
    huge_fields_are_eager();
    call_sites_cache_literal_formats();
    bad_input();
    return qlt_end();
}
